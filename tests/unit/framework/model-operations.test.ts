// Goal: the operational repositories of the framework model: tasks follow queued -> running ->
// succeeded | failed with progress, result, error and timestamps from the injected clock, and the
// finished ones kept are bounded; schedules are validated CRUD and their run history is the
// scheduler's RunHistoryStore, bounded per job; API clients and users keep only scrypt hashes (the
// auth store's format), verify the right secret or password and refuse a wrong one, and never show a
// hash or secret.
import assert from "node:assert/strict";
import { FrameworkModel } from "../../../framework/src/model/framework-model.ts";
import { isModelError, type ModelErrorKind } from "../../../framework/src/model/model-error.ts";
import { Scheduler } from "../../../framework/src/scheduler/scheduler.ts";

function modelError(kind: ModelErrorKind, ...fragments: string[]) {
  return (error: unknown): boolean => {
    assert.ok(isModelError(error, kind), `expected ModelError(${kind}), got ${String(error)}`);
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    return true;
  };
}

describe("framework model: tasks, schedules, clients and users", function () {
  let model: FrameworkModel;
  let nowMs: number;
  let nextId: number;

  /** A second model with small bounds or a stuck id source; closed with the test's own. */
  const extraModels: FrameworkModel[] = [];
  function openExtra(options: Parameters<typeof FrameworkModel.open>[1]): FrameworkModel {
    const extra = FrameworkModel.open(":memory:", { nowMs: () => nowMs, newId: () => `id-${nextId++}`, ...options });
    extraModels.push(extra);
    return extra;
  }

  beforeEach(function () {
    nowMs = Date.parse("2024-05-01T12:00:00.000Z");
    nextId = 1;
    model = FrameworkModel.open(":memory:", { nowMs: () => nowMs, newId: () => `id-${nextId++}` });
  });

  afterEach(function () {
    model.close();
    for (const extra of extraModels.splice(0)) extra.close();
  });

  describe("tasks", function () {
    it("task_keeps_its_subject_and_refuses_unknown_fields", function () {
      const task = model.tasks.create({ kind: "vpool-create", subject: "pool-2" });
      assert.equal(model.tasks.get(task.id).subject, "pool-2");
      assert.throws(() => model.tasks.create({ kind: "scrub", vdisk: "x" } as unknown as { kind: string }), /unknown field "vdisk"/);
      assert.throws(() => model.tasks.create({ kind: "scrub", subject: "" }), /task subject must be a non-empty string/);
    });

    it("task_runs_to_success_with_progress_and_timestamps", function () {
      const queued = model.tasks.create({ kind: "scrub" });
      assert.deepEqual(queued, {
        id: "id-1", kind: "scrub", subject: null, state: "queued", progress: 0, result: null, error: null,
        createdAt: "2024-05-01T12:00:00.000Z", startedAt: null, finishedAt: null,
      });
      nowMs += 1000;
      model.tasks.update("id-1", { state: "running" });
      nowMs += 1000;
      assert.equal(model.tasks.update("id-1", { progress: 0.25 }).progress, 0.25);
      nowMs += 1000;
      const done = model.tasks.update("id-1", { state: "succeeded", result: { scosRewritten: 3 } });
      assert.deepEqual(done, {
        id: "id-1", kind: "scrub", subject: null, state: "succeeded", progress: 1, result: { scosRewritten: 3 }, error: null,
        createdAt: "2024-05-01T12:00:00.000Z", startedAt: "2024-05-01T12:00:01.000Z", finishedAt: "2024-05-01T12:00:03.000Z",
      });
      assert.deepEqual(model.tasks.get("id-1"), done);
    });

    it("task_fails_with_an_error_and_stays_finished", function () {
      model.tasks.create({ kind: "clone" });
      model.tasks.update("id-1", { state: "running", progress: 0.5 });
      const failed = model.tasks.update("id-1", { state: "failed", error: { code: "IO_ERROR", message: "the backend is down" } });
      assert.deepEqual([failed.state, failed.progress, failed.error], ["failed", 0.5, { code: "IO_ERROR", message: "the backend is down" }]);
      assert.throws(() => model.tasks.update("id-1", { state: "running" }), modelError("Conflict", "is failed and cannot become running", "finished"));
      assert.throws(() => model.tasks.update("id-1", { progress: 0.9 }), modelError("Conflict", "cannot become failed"));
      model.tasks.create({ kind: "clone" });
      assert.equal(model.tasks.update("id-2", { state: "failed", error: { code: "CANCELLED", message: "cancelled" } }).startedAt, null, "a queued task can be cancelled");
    });

    it("task_invalid_changes", function () {
      model.tasks.create({ kind: "scrub" });
      assert.throws(() => model.tasks.create({ kind: "Scrub Now" }), modelError("Invalid", "task kind"));
      assert.throws(() => model.tasks.update("id-1", { state: "succeeded" }), modelError("Conflict", "queued and cannot become succeeded"));
      model.tasks.update("id-1", { state: "running" });
      assert.throws(() => model.tasks.update("id-1", { progress: 1.5 }), modelError("Invalid", "fraction from 0 to 1"));
      assert.throws(() => model.tasks.update("id-1", { progress: Number.NaN }), modelError("Invalid", "fraction"));
      assert.throws(() => model.tasks.update("id-1", { result: 1 }), modelError("Invalid", "result only once it has succeeded"));
      assert.throws(() => model.tasks.update("id-1", { state: "failed" }), modelError("Invalid", "needs an error"));
      assert.throws(() => model.tasks.update("id-1", { state: "failed", error: { code: "X" } as never }), modelError("Invalid", "task error message"));
      assert.throws(() => model.tasks.update("id-1", { state: "succeeded", result: { big: "x".repeat(70_000) } }), modelError("Invalid", "larger than"));
      assert.throws(() => model.tasks.get("id-9"), modelError("NotFound", "no task id-9"));
      assert.equal(model.tasks.get("id-1").state, "running", "refused changes change nothing");
    });

    it("task_list_delete_and_bounded_history", function () {
      const tasks = openExtra({ finishedTasksKeptMax: 2 }).tasks;
      for (let index = 0; index < 4; index++) {
        nowMs += 1000;
        const task = tasks.create({ kind: "scrub" });
        tasks.update(task.id, { state: "running" });
        tasks.update(task.id, { state: "succeeded" });
      }
      nowMs += 1000;
      tasks.create({ kind: "clone" });
      assert.deepEqual(tasks.list().map((task) => task.id), ["id-5", "id-4", "id-3"], "newest first; only 2 finished ones are kept");
      assert.deepEqual(tasks.list({ state: "queued" }).map((task) => task.id), ["id-5"]);
      assert.deepEqual(tasks.list({ limit: 1 }).map((task) => task.id), ["id-5"]);
      assert.throws(() => tasks.delete("id-5"), modelError("Conflict", "wait until it has finished"));
      tasks.delete("id-4");
      assert.throws(() => tasks.get("id-4"), modelError("NotFound"));
    });
  });

  describe("schedules and run history", function () {
    it("schedule_crud", function () {
      const created = model.schedules.create({ job: "snapshots", spec: { hourlyAtMinute: 0 } });
      assert.deepEqual(created, { job: "snapshots", spec: { hourlyAtMinute: 0 }, enabled: true, updatedAt: "2024-05-01T12:00:00.000Z" });
      model.schedules.create({ job: "alba-maintenance", spec: { everyMinutes: 30 }, enabled: false });
      assert.deepEqual(model.schedules.list().map((schedule) => schedule.job), ["alba-maintenance", "snapshots"]);
      nowMs += 60_000;
      const updated = model.schedules.update("snapshots", { spec: { dailyAt: { hour: 2, minute: 15 } }, enabled: false });
      assert.deepEqual(updated, { job: "snapshots", spec: { dailyAt: { hour: 2, minute: 15 } }, enabled: false, updatedAt: "2024-05-01T12:01:00.000Z" });
      model.schedules.delete("alba-maintenance");
      assert.throws(() => model.schedules.get("alba-maintenance"), modelError("NotFound", "no schedule for job alba-maintenance"));
    });

    it("schedule_invalid_and_conflict", function () {
      model.schedules.create({ job: "scrub", spec: { dailyAt: { hour: 3, minute: 0 } } });
      assert.throws(() => model.schedules.create({ job: "scrub", spec: { hourlyAtMinute: 1 } }), modelError("Conflict", "update it instead"));
      assert.throws(() => model.schedules.create({ job: "Scrub", spec: { hourlyAtMinute: 1 } }), modelError("Invalid", "schedule job"));
      assert.throws(() => model.schedules.create({ job: "x", spec: { hourlyAtMinute: 60 } as never }), modelError("Invalid", "hourlyAtMinute"));
      assert.throws(() => model.schedules.update("scrub", { enabled: "no" as never }), modelError("Invalid", "enabled"));
      assert.throws(() => model.schedules.update("backup", { enabled: true }), modelError("NotFound"));
    });

    it("run_history_is_bounded_per_job_and_goes_with_the_schedule", function () {
      const small = openExtra({ runsPerJobKeptMax: 3 });
      const runs = small.scheduleRuns;
      small.schedules.create({ job: "scrub", spec: { dailyAt: { hour: 3, minute: 0 } } });
      for (let day = 1; day <= 5; day++) {
        runs.append({ job: "scrub", dueAt: `2024-05-0${day}T03:00:00.000Z`, startedAt: `2024-05-0${day}T03:00:00.000Z`, finishedAt: `2024-05-0${day}T03:10:00.000Z`, outcome: "succeeded", summary: { day } });
      }
      runs.append({ job: "snapshots", dueAt: "2024-05-01T12:00:00.000Z", outcome: "skipped", error: "the previous run was still running" });
      assert.deepEqual(runs.list("scrub", 10).map((run) => run.summary), [{ day: 3 }, { day: 4 }, { day: 5 }], "oldest first, the 3 newest kept");
      assert.deepEqual(runs.list("scrub", 1), [{
        job: "scrub", dueAt: "2024-05-05T03:00:00.000Z", startedAt: "2024-05-05T03:00:00.000Z", finishedAt: "2024-05-05T03:10:00.000Z",
        outcome: "succeeded", summary: { day: 5 },
      }]);
      assert.deepEqual(runs.list("snapshots", 5), [{ job: "snapshots", dueAt: "2024-05-01T12:00:00.000Z", outcome: "skipped", error: "the previous run was still running" }]);
      small.schedules.delete("scrub");
      assert.deepEqual(runs.list("scrub", 10), [], "deleting the schedule deleted its runs in the same transaction");
      assert.equal(runs.list("snapshots", 5).length, 1);
    });

    it("run_history_serves_the_scheduler", async function () {
      const scheduler = new Scheduler({ history: model.scheduleRuns });
      scheduler.add({ name: "scrub", schedule: { everyMinutes: 60 }, run: () => Promise.resolve({ scrubbed: 2 }) });
      const record = await scheduler.runNow("scrub");
      await scheduler.stop();
      assert.equal(record.outcome, "succeeded");
      assert.deepEqual(model.scheduleRuns.list("scrub", 5), [record]);
    });
  });

  describe("API clients", function () {
    it("api_client_crud_and_secret_verification", async function () {
      const { client, secret } = await model.apiClients.create({ description: "backup script", role: "read" });
      assert.deepEqual(client, { clientId: "id-1", description: "backup script", role: "read", createdAt: "2024-05-01T12:00:00.000Z" });
      assert.match(secret, /^[A-Za-z0-9_-]{43}$/, "32 random bytes, base64url");
      assert.deepEqual(await model.apiClients.verify("id-1", secret), client);
      assert.equal(await model.apiClients.verify("id-1", `${secret}x`), undefined, "wrong secret");
      assert.equal(await model.apiClients.verify("id-1", ""), undefined, "empty secret");
      assert.equal(await model.apiClients.verify("id-9", secret), undefined, "unknown client");
      assert.equal(model.apiClients.update("id-1", { role: "write" }).role, "write");
      const rotated = await model.apiClients.rotateSecret("id-1");
      assert.equal(await model.apiClients.verify("id-1", secret), undefined, "the old secret stops working");
      assert.equal((await model.apiClients.verify("id-1", rotated))?.role, "write");
      await model.apiClients.create({ description: "dashboard", role: "manage" });
      assert.deepEqual(model.apiClients.list().map((each) => each.description), ["backup script", "dashboard"]);
      const shown = JSON.stringify([model.apiClients.list(), model.apiClients.get("id-1")]);
      assert.ok(!shown.includes(rotated) && !shown.includes("scrypt"), "no secret and no hash in a view");
      assert.match(rotated, /^[A-Za-z0-9_-]{43}$/, "32 random bytes, base64url");
      model.apiClients.delete("id-1");
      assert.throws(() => model.apiClients.get("id-1"), modelError("NotFound", "no API client id-1"));
      assert.equal(await model.apiClients.verify("id-1", rotated), undefined);
    });

    it("api_client_invalid_input", async function () {
      await assert.rejects(model.apiClients.create({ description: "x", role: "admin" as never }), modelError("Invalid", "role must be one of read, write, manage"));
      await assert.rejects(model.apiClients.create({ description: "", role: "read" }), modelError("Invalid", "API client description"));
      await assert.rejects(model.apiClients.rotateSecret("id-9"), modelError("NotFound"));
    });

    it("api_client_id_clash_is_conflict", async function () {
      const clients = openExtra({ newId: () => "same" }).apiClients;
      await clients.create({ description: "a", role: "read" });
      await assert.rejects(clients.create({ description: "b", role: "read" }), modelError("Conflict", "client id same is taken"));
    });
  });

  describe("users", function () {
    it("user_crud_and_password_verification", async function () {
      const admin = await model.users.create({ name: "admin", password: "correct horse", role: "manage" });
      assert.deepEqual(admin, { name: "admin", role: "manage", createdAt: "2024-05-01T12:00:00.000Z" });
      assert.deepEqual(await model.users.verifyPassword("admin", "correct horse"), admin);
      assert.equal(await model.users.verifyPassword("admin", "correct horsE"), undefined, "wrong password");
      assert.equal(await model.users.verifyPassword("nobody", "correct horse"), undefined, "unknown user");
      await model.users.update("admin", { password: "battery staple" });
      assert.equal(await model.users.verifyPassword("admin", "correct horse"), undefined, "the old password stops working");
      assert.equal((await model.users.verifyPassword("admin", "battery staple"))?.role, "manage");
      assert.equal((await model.users.update("admin", { role: "write" })).role, "write");
      assert.ok(await model.users.verifyPassword("admin", "battery staple"), "a role change keeps the password");
      await model.users.create({ name: "viewer", password: "look but don't touch", role: "read" });
      assert.deepEqual(model.users.list().map((user) => user.name), ["admin", "viewer"]);
      assert.ok(!JSON.stringify(model.users.list()).includes("scrypt"), "no hash in a view");
      model.users.delete("viewer");
      assert.throws(() => model.users.get("viewer"), modelError("NotFound", "no user named viewer"));
    });

    it("user_invalid_and_conflict", async function () {
      await model.users.create({ name: "admin", password: "correct horse", role: "manage" });
      await assert.rejects(model.users.create({ name: "admin", password: "another one", role: "read" }), modelError("Conflict", "a user named admin exists already"));
      await assert.rejects(model.users.create({ name: "bob", password: "short", role: "read" }), modelError("Invalid", "8 to 1024 characters"));
      await assert.rejects(model.users.create({ name: "Bob Smith", password: "long enough", role: "read" }), modelError("Invalid", "user name"));
      await assert.rejects(model.users.update("admin", { password: "x".repeat(2000) }), modelError("Invalid", "8 to 1024"));
      await assert.rejects(model.users.update("nobody", { role: "read" }), modelError("NotFound"));
      assert.equal(await model.users.verifyPassword("admin", "x".repeat(2000)), undefined, "an over-long password is simply wrong");
    });
  });
});

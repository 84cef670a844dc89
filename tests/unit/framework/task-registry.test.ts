// Goal: the StorageDriver's task registry runs tasks in submission order within its bounds (running,
// queued, remembered), refuses a second active task of the same kind for the same vDisk and a full
// queue with errors that say what to do, records progress, result, error and timestamps, and fails
// the waiting tasks when it closes. The clock and the ids are injected; the work is controlled.
import assert from "node:assert/strict";
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import { TaskRegistry, type TaskInfo, type TaskProgress } from "../../../volumedriver/src/storagedriver/task-registry.ts";

/** Work that waits until the test settles it, and lets the test report progress for it. */
class ControlledWork {
  report: (progress: TaskProgress) => void = () => {};
  private settle: { resolve: (value: unknown) => void; reject: (error: unknown) => void } | undefined;
  started = false;
  readonly work = (report: (progress: TaskProgress) => void): Promise<unknown> => {
    this.started = true;
    this.report = report;
    return new Promise((resolve, reject) => { this.settle = { resolve, reject }; });
  };
  succeed(result: unknown): void {
    this.settle?.resolve(result);
  }
  fail(error: unknown): void {
    this.settle?.reject(error);
  }
}

function settled(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe("volumedriver: StorageDriver task registry", function () {
  let nowMs: number;
  let nextId: number;

  function registry(settings: { runningTasksMax?: number; queuedTasksMax?: number; finishedTasksKeptMax?: number } = {}): TaskRegistry {
    return new TaskRegistry({
      ...settings,
      describeError: (error) => ({ code: "TEST", message: error instanceof Error ? error.message : String(error) }),
      nowMs: () => nowMs,
      newId: () => `task-${nextId++}`,
    });
  }

  beforeEach(function () {
    nowMs = Date.parse("2024-05-01T00:00:00.000Z");
    nextId = 1;
  });

  it("runs a task, records its progress, result and timestamps", async function () {
    const tasks = registry();
    const work = new ControlledWork();
    const submitted = tasks.submit("scrub", "disk1", work.work);
    assert.equal(submitted.id, "task-1");
    assert.equal(submitted.state, "running", "a free slot starts the task at once");
    assert.equal(submitted.startedAt, "2024-05-01T00:00:00.000Z");
    nowMs += 1500;
    work.report({ phase: "rewriting", done: 2, total: 5 });
    assert.deepEqual(tasks.get("task-1")?.progress, { phase: "rewriting", done: 2, total: 5 });
    work.succeed({ scosRewritten: 3 });
    await settled();
    const finished = tasks.get("task-1") as TaskInfo;
    assert.equal(finished.state, "succeeded");
    assert.deepEqual(finished.result, { scosRewritten: 3 });
    assert.deepEqual(finished.progress, { phase: "done", done: 5, total: 5 });
    assert.equal(finished.finishedAt, "2024-05-01T00:00:01.500Z");
    assert.equal(finished.error, undefined);
  });

  it("records a failure in the API's error form", async function () {
    const tasks = registry();
    const work = new ControlledWork();
    tasks.submit("scrub", "disk1", work.work);
    work.fail(new Error("backend gone"));
    await settled();
    const failed = tasks.get("task-1") as TaskInfo;
    assert.equal(failed.state, "failed");
    assert.deepEqual(failed.error, { code: "TEST", message: "backend gone" });
    assert.equal(failed.result, undefined);
  });

  it("queues beyond runningTasksMax and starts the next one when a slot frees", async function () {
    const tasks = registry({ runningTasksMax: 1 });
    const first = new ControlledWork();
    const second = new ControlledWork();
    tasks.submit("scrub", "disk1", first.work);
    const queued = tasks.submit("scrub", "disk2", second.work);
    assert.equal(queued.state, "queued");
    assert.deepEqual(queued.progress, { phase: "queued", done: 0, total: 0 });
    assert.equal(second.started, false);
    first.succeed({});
    await settled();
    assert.equal(second.started, true);
    assert.equal(tasks.get(queued.id)?.state, "running");
  });

  it("refuses a second active task of the same kind for the same vDisk, naming the first", function () {
    const tasks = registry();
    tasks.submit("scrub", "disk1", new ControlledWork().work);
    assert.throws(() => tasks.submit("scrub", "disk1", new ControlledWork().work),
      (error: unknown) => error instanceof HttpError && error.statusCode === 409 && /running already as task task-1: follow it/.test(error.message));
    assert.doesNotThrow(() => tasks.submit("scrub", "disk2", new ControlledWork().work));
  });

  it("refuses a task when queuedTasksMax wait already, with 503 BUSY", function () {
    const tasks = registry({ runningTasksMax: 1, queuedTasksMax: 2 });
    for (const vdisk of ["a", "b", "c"]) tasks.submit("scrub", vdisk, new ControlledWork().work);
    assert.throws(() => tasks.submit("scrub", "d", new ControlledWork().work),
      (error: unknown) => error instanceof HttpError && error.statusCode === 503 && error.code === "BUSY");
  });

  it("forgets the oldest finished tasks beyond finishedTasksKeptMax, never active ones", async function () {
    const tasks = registry({ runningTasksMax: 4, finishedTasksKeptMax: 2 });
    const works = ["a", "b", "c"].map(() => new ControlledWork());
    for (const [index, work] of works.entries()) tasks.submit("scrub", `disk${index}`, work.work);
    tasks.submit("scrub", "active", new ControlledWork().work);
    for (const work of works) work.succeed({});
    await settled();
    assert.deepEqual(tasks.list().map((task) => task.id), ["task-2", "task-3", "task-4"]);
    assert.equal(tasks.get("task-1"), undefined);
    assert.equal(tasks.get("task-4")?.state, "running");
  });

  it("on close fails the waiting tasks, refuses new ones, and lets running ones finish", async function () {
    const tasks = registry({ runningTasksMax: 1 });
    const running = new ControlledWork();
    tasks.submit("scrub", "disk1", running.work);
    const waiting = tasks.submit("scrub", "disk2", new ControlledWork().work);
    tasks.close();
    assert.equal(tasks.get(waiting.id)?.state, "failed");
    assert.equal(tasks.get(waiting.id)?.error?.code, "CLOSED");
    assert.throws(() => tasks.submit("scrub", "disk3", new ControlledWork().work), (error: unknown) => error instanceof HttpError && error.statusCode === 503);
    running.succeed({});
    await settled();
    assert.equal(tasks.get("task-1")?.state, "succeeded");
  });

  it("hands out copies: callers cannot change a task", function () {
    const tasks = registry();
    const info = tasks.submit("scrub", "disk1", new ControlledWork().work);
    info.state = "failed";
    info.progress.done = 99;
    assert.equal(tasks.get(info.id)?.state, "running");
    assert.equal(tasks.get(info.id)?.progress.done, 0);
  });
});

// Goal: the cluster's periodic jobs work on a real `ovs up` (Alba backend): /api/schedules lists
// snapshots, scrub and alba-maintenance with their next runs; running the snapshot job makes an
// auto- snapshot of every vDisk (a second run in the same minute makes none and does not fail) and
// never touches an operator's snapshot; the scrub job scrubs what a deleted snapshot left; Alba
// maintenance runs through the proxy; a vPool can schedule snapshots and scrubs its own way (its own
// job, or none) and the cluster's jobs then leave it out; schedule edits are validated, take effect, and are kept in
// the model (framework.db) with the run history across a restart; `ovs schedule ...` and `ovs status` show and do the same.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { readPidFile } from "../../framework/src/cluster/pid-file.ts";
import { FrameworkModel } from "../../framework/src/model/framework-model.ts";
import { authHeaders, forgetToken, useAdminToken } from "../helpers/ovs-auth.ts";
import { ChildHarness, freePort, killPid, runOvs } from "../helpers/process-harness.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const START_TIMEOUT_MS = 90_000;

describe("cluster schedules: snapshots with retention, scrub, Alba maintenance", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("cluster-schedules");
  const clusters: ChildHarness[] = [];
  let dataDirectory: string | undefined;
  let apiUrl = "";
  let args: string[] = [];

  async function up(): Promise<ChildHarness> {
    const cluster = ChildHarness.ovs(args);
    clusters.push(cluster);
    await cluster.waitForOutput(/ovs ready/, START_TIMEOUT_MS);
    await useAdminToken(apiUrl, dataDirectory!);
    return cluster;
  }

  async function stop(cluster: ChildHarness): Promise<void> {
    killPid(cluster.pid, "SIGINT");
    assert.deepEqual(await cluster.waitForExit(30_000), { code: 0, signal: null }, cluster.describe());
  }

  async function api(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
    const response = await fetch(`${apiUrl}/api${pathname}`, {
      method, headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...authHeaders() },
      body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(120_000),
    });
    const text = await response.text();
    return { status: response.status, body: text.length === 0 ? undefined : JSON.parse(text) };
  }

  before(async function () {
    dataDirectory = path.join(await tempDirs.make(), "data");
    const apiPort = await freePort();
    apiUrl = `http://127.0.0.1:${apiPort}`;
    args = ["up", "--data", dataDirectory, "--api-port", String(apiPort), "--storagedriver-port", String(await freePort()),
      "--nbd-port", String(await freePort()), "--iscsi-port", String(await freePort())];
  });

  after(async () => {
    forgetToken();
    for (const cluster of clusters) if (cluster.running) await cluster.killHard();
    if (dataDirectory !== undefined) {
      const pid = readPidFile(path.join(dataDirectory, "storagedrivers", "vpool1.pid"));
      if (pid !== undefined) killPid(pid, "SIGKILL");
    }
    await tempDirs.removeAll();
  });

  it("runs the jobs on demand, validates and keeps schedule edits", async function () {
    let cluster = await up();
    assert.match(cluster.stdout, /^scheduled: snapshots \(next \S+\), scrub \(next \S+\), alba-maintenance \(next \S+\)$/m);
    const listed = await api("GET", "/schedules");
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.schedules.map((job: { name: string; schedule: unknown; enabled: boolean }) => [job.name, job.schedule, job.enabled]), [
      ["snapshots", { hourlyAtMinute: 0 }, true],
      ["scrub", { dailyAt: { hour: 3, minute: 0 } }, true],
      ["alba-maintenance", { hourlyAtMinute: 30 }, true],
    ]);

    // An operator's snapshot, then the snapshot job twice.
    assert.equal((await api("POST", "/vdisks/demo/snapshots", { name: "mine" })).status, 201);
    const first = await api("POST", "/schedules/snapshots/run");
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.outcome, "succeeded", JSON.stringify(first.body));
    assert.equal(first.body.summary.created, 1);
    const second = await api("POST", "/schedules/snapshots/run");
    assert.equal(second.body.outcome, "succeeded", JSON.stringify(second.body));
    const snapshots = (await api("GET", "/vdisks/demo/snapshots")).body.snapshots.map((snapshot: { name: string }) => snapshot.name);
    assert.equal(snapshots[0], "mine");
    assert.ok(snapshots.slice(1).every((name: string) => /^auto-\d{8}-\d{4}$/.test(name)) && snapshots.length >= 2, JSON.stringify(snapshots));
    const runs = await api("GET", "/schedules/snapshots/runs");
    assert.deepEqual(runs.body.runs.map((run: { outcome: string }) => run.outcome), ["succeeded", "succeeded"]);

    // A deleted snapshot leaves garbage: the scrub job collects it.
    assert.equal((await api("DELETE", "/vdisks/demo/snapshots/mine")).status, 204);
    const scrub = await api("POST", "/schedules/scrub/run");
    assert.equal(scrub.body.outcome, "succeeded", JSON.stringify(scrub.body));
    assert.deepEqual(scrub.body.summary.scrubbed, ["demo"]);
    const maintenance = await api("POST", "/schedules/alba-maintenance/run");
    assert.equal(maintenance.body.outcome, "succeeded", JSON.stringify(maintenance.body));

    // A vPool's own schedules: its own snapshot job, scrubs off for it; the cluster's jobs leave it out.
    const own = await api("PATCH", "/vpools/vpool1", { schedules: { snapshots: { everyMinutes: 5 }, scrub: null } });
    assert.equal(own.status, 200, JSON.stringify(own.body));
    assert.deepEqual(own.body.schedules, { snapshots: { everyMinutes: 5 }, scrub: null });
    const withOwn = (await api("GET", "/schedules")).body.schedules as Array<{ name: string; schedule: unknown }>;
    assert.deepEqual(withOwn.find((job) => job.name === "snapshots@vpool1")?.schedule, { everyMinutes: 5 });
    assert.equal(withOwn.some((job) => job.name === "scrub@vpool1"), false, "null: no scrub job for the vPool");
    const clusterRun = await api("POST", "/schedules/snapshots/run");
    assert.equal(clusterRun.body.summary.vdisks, 0, "the cluster's snapshot job leaves vpool1 to its own job");
    const ownRun = await api("POST", "/schedules/snapshots@vpool1/run");
    assert.equal(ownRun.body.outcome, "succeeded", JSON.stringify(ownRun.body));
    assert.equal(ownRun.body.summary.vdisks, 1);
    assert.equal((await api("POST", "/vdisks/demo/snapshots", { name: "mine2" })).status, 201);
    assert.equal((await api("DELETE", "/vdisks/demo/snapshots/mine2")).status, 204);
    assert.deepEqual((await api("POST", "/schedules/scrub/run")).body.summary.scrubbed, [], "scrubs are off for vpool1");
    const badOwn = await api("PATCH", "/vpools/vpool1", { schedules: { snapshots: { everyMinutes: 0 } } });
    assert.equal(badOwn.status, 400);
    assert.match(badOwn.body.error.message, /everyMinutes/);
    // Through /api/schedules: disabling a vPool's own job keeps it off for the vPool (null in the model).
    assert.equal((await api("PUT", "/schedules/snapshots@vpool1", { enabled: false })).status, 200);
    assert.deepEqual((await api("GET", "/vpools/vpool1")).body.schedules, { snapshots: null, scrub: null });

    // Edits: invalid ones refused, valid ones applied and stored.
    const invalid = await api("PUT", "/schedules/scrub", { schedule: { dailyAt: { hour: 25, minute: 0 } } });
    assert.equal(invalid.status, 400);
    assert.match(invalid.body.error.message, /a schedule is \{"everyMinutes": 1-10080\}/);
    assert.equal((await api("PUT", "/schedules/nope", { enabled: false })).status, 404);
    const edited = await api("PUT", "/schedules/scrub", { schedule: { dailyAt: { hour: 1, minute: 15 } } });
    assert.equal(edited.status, 200);
    assert.match(edited.body.nextRunAt, /T01:15:00\.000Z$/);
    const disabled = await api("PUT", "/schedules/alba-maintenance", { enabled: false });
    assert.equal(disabled.body.nextRunAt, undefined);
    const stored = JSON.parse(await readFile(path.join(dataDirectory!, "config.json"), "utf8")) as { firstStartCompleted: boolean };
    assert.equal(stored.firstStartCompleted, true);
    const runsBefore = (await api("GET", "/schedules/snapshots/runs")).body.runs as unknown[];
    await stop(cluster);
    // The edits and the run history are in the model.
    const model = FrameworkModel.open(path.join(dataDirectory!, "framework.db"));
    try {
      assert.deepEqual(model.schedules.list().map((schedule) => [schedule.job, schedule.spec, schedule.enabled]), [
        ["alba-maintenance", { hourlyAtMinute: 30 }, false],
        ["scrub", { dailyAt: { hour: 1, minute: 15 } }, true],
      ]);
    } finally {
      model.close();
    }

    cluster = await up();
    const again = (await api("GET", "/schedules")).body.schedules as Array<{ name: string; schedule: unknown; enabled: boolean }>;
    assert.deepEqual(again.map((job) => [job.name, job.schedule, job.enabled]), [
      ["snapshots", { hourlyAtMinute: 0 }, true],
      ["scrub", { dailyAt: { hour: 1, minute: 15 } }, true],
      ["alba-maintenance", { hourlyAtMinute: 30 }, false],
    ]);
    assert.deepEqual((await api("GET", "/schedules/snapshots/runs")).body.runs, runsBefore, "the run history survives the restart");
    assert.deepEqual((await api("GET", "/vpools/vpool1")).body.schedules, { snapshots: null, scrub: null }, "the vPool's schedules survive it");
    assert.equal((await api("POST", "/schedules/snapshots/run")).body.summary.vdisks, 0, "and still leave vpool1 out of the cluster's job");
    assert.equal((await api("PATCH", "/vpools/vpool1", { schedules: {} })).status, 200, "{} follows the cluster's schedules again");

    // The same through the CLI: ovs schedule ls/set/run/runs and ovs status.
    const ovs = async (...cliArgs: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => runOvs([...cliArgs, "--api", apiUrl], 120_000);
    let result = await ovs("schedule", "ls");
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^scrub\s+daily at 01:15 UTC\s+yes\s+\S+T01:15:00\.000Z/m);
    assert.match(result.stdout, /^alba-maintenance\s+hourly at :30\s+no\s+-/m);
    result = await ovs("schedule", "set", "alba-maintenance", "--enable", "--every-minutes", "45");
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^alba-maintenance: every 45 min, next run \S+$/m);
    result = await ovs("schedule", "set", "scrub", "--daily-at", "7");
    assert.equal(result.code, 1);
    assert.match(result.stderr, /--daily-at 7: give a UTC time as HH:MM/);
    result = await ovs("schedule", "run", "snapshots");
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^snapshots succeeded: \{"created":[01],"deleted":0,"vdisks":1\}$/m);
    result = await ovs("schedule", "runs", "snapshots");
    assert.match(result.stdout, /succeeded/);
    result = await ovs("status");
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^status\s+ok$/m);
    assert.match(result.stdout, /^alba\s+3\/3 ASDs up$/m);
    assert.match(result.stdout, /^vdisks\s+1$/m);
    assert.match(result.stdout, /^node-1\s|^[0-9a-f]{12}\s+node-1\s+127\.0\.0\.1:\d+\s+up/m);
    const json = await ovs("status", "--json");
    assert.equal((JSON.parse(json.stdout) as { health: { status: string } }).health.status, "ok");
    await stop(cluster);
  });
});

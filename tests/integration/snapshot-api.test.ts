// Goal: snapshots, clones, rollback, templates and scrubs work end to end on a real `ovs up` cluster:
// through the StorageDriver's management API, through the framework API (which forwards it), and
// through the `ovs` CLI, with data written and read over NBD (the project's test client, no external
// tools): a clone reads its snapshot's data and takes writes of its own, a rollback brings the old
// data back, a snapshot with clones cannot be deleted (409), a template refuses writes and clones by
// name, a scrub runs as a task that reaches succeeded with a result, and invalid requests get 400
// with a message naming the field. Every process is stopped by PID.
import assert from "node:assert/strict";
import path from "node:path";
import { readPidFile } from "../../framework/src/cluster/pid-file.ts";
import { ChildHarness, freePort, killPid, runOvs } from "../helpers/process-harness.ts";
import { authHeaders, forgetToken, useAdminToken } from "../helpers/ovs-auth.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { NBD, type NbdTestClient, openNbdClient } from "../unit/volumedriver/nbd/nbd-test-client.ts";

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const TASK_TIMEOUT_MS = 60_000;
const MIB = 1024 * 1024;
const DISK_SIZE_BYTES = 64 * MIB;
/** Where the tests write: 1 MiB at 8 MiB into the vDisk. */
const REGION_OFFSET_BYTES = 8 * MIB;
const REGION_LENGTH_BYTES = MIB;

interface Answer { status: number; body: any; location: string | null }

describe("snapshots, clones, rollback, templates and scrubs over the APIs and the CLI", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("snapshot-api");
  const clients: NbdTestClient[] = [];
  let dataDirectory: string;
  let cluster: ChildHarness;
  let apiUrl: string;
  let storagedriverUrl: string;
  let nbdPort: number;

  async function call(baseUrl: string, method: string, pathname: string, body?: unknown): Promise<Answer> {
    const response = await fetch(`${baseUrl}${pathname}`, {
      method,
      // The StorageDriver's own API has no auth (loopback only); the framework's needs the token.
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(baseUrl === apiUrl ? authHeaders() : {}) },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    return { status: response.status, body: text.length === 0 ? undefined : JSON.parse(text), location: response.headers.get("location") };
  }

  const storagedriver = (method: string, pathname: string, body?: unknown): Promise<Answer> => call(storagedriverUrl, method, pathname, body);
  const api = (method: string, pathname: string, body?: unknown): Promise<Answer> => call(apiUrl, `${method}`, `/api${pathname}`, body);

  async function ovs(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return runOvs([...args, "--api", apiUrl], 90_000);
  }

  async function ovsOk(...args: string[]): Promise<string> {
    const result = await ovs(...args);
    assert.equal(result.code, 0, `ovs ${args.join(" ")}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
    return result.stdout;
  }

  async function nbd(exportName: string): Promise<NbdTestClient> {
    const client = await openNbdClient(nbdPort, exportName);
    clients.push(client);
    return client;
  }

  async function writeRegion(vdisk: string, fill: number): Promise<void> {
    const client = await nbd(vdisk);
    const written = await client.write(REGION_OFFSET_BYTES, Buffer.alloc(REGION_LENGTH_BYTES, fill));
    assert.equal(written.error, 0, `write to ${vdisk}: ${written.errorMessage ?? ""}`);
    assert.equal((await client.flush()).error, 0);
    await client.disconnect();
  }

  async function assertRegion(exportName: string, fill: number): Promise<void> {
    const client = await nbd(exportName);
    const read = await client.read(REGION_OFFSET_BYTES, REGION_LENGTH_BYTES);
    assert.equal(read.error, 0, `read from ${exportName}: ${read.errorMessage ?? ""}`);
    const firstDifferent = read.data?.findIndex((byte) => byte !== fill);
    assert.equal(firstDifferent, -1, `${exportName} holds 0x${fill.toString(16)} in the region (first other byte at +${firstDifferent})`);
    await client.disconnect();
  }

  async function waitForTask(id: string): Promise<any> {
    const deadlineMs = Date.now() + TASK_TIMEOUT_MS;
    for (;;) {
      const task = await api("GET", `/tasks/${id}`);
      assert.equal(task.status, 200, JSON.stringify(task.body));
      if (task.body.state === "succeeded" || task.body.state === "failed") return task.body;
      if (Date.now() > deadlineMs) throw new Error(`task ${id} did not finish within ${TASK_TIMEOUT_MS} ms: ${JSON.stringify(task.body)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  before(async function () {
    dataDirectory = path.join(await tempDirs.make(), "data");
    const apiPort = await freePort();
    const storagedriverPort = await freePort();
    nbdPort = await freePort();
    apiUrl = `http://127.0.0.1:${apiPort}`;
    storagedriverUrl = `http://127.0.0.1:${storagedriverPort}`;
    cluster = ChildHarness.ovs(["up", "--data", dataDirectory, "--api-port", String(apiPort), "--storagedriver-port", String(storagedriverPort),
      "--nbd-port", String(nbdPort), "--iscsi-port", String(await freePort())]);
    await cluster.waitForOutput(/ovs ready/, START_TIMEOUT_MS);
    await useAdminToken(apiUrl, dataDirectory);
  });

  after(async function () {
    forgetToken();
    for (const client of clients) client.close();
    if (cluster !== undefined) {
      if (cluster.running) killPid(cluster.pid, "SIGINT");
      await cluster.waitForExit(STOP_TIMEOUT_MS).catch(() => undefined);
      await cluster.killHard();
    }
    // The StorageDriver stops by itself when its parent dies; make sure of it by PID.
    const pid = dataDirectory === undefined ? undefined : readPidFile(path.join(dataDirectory, "storagedrivers", "vpool1.pid"));
    if (pid !== undefined) killPid(pid, "SIGKILL");
    await tempDirs.removeAll();
  });

  it("takes and lists snapshots through the StorageDriver API", async function () {
    assert.equal((await api("POST", "/vdisks", { name: "base", size: DISK_SIZE_BYTES })).status, 201);
    await writeRegion("base", 0xa1);
    const first = await storagedriver("POST", "/vdisks/base/snapshots", { name: "s1" });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.equal(first.body.name, "s1");
    assert.equal(first.body.sizeBytes, DISK_SIZE_BYTES);
    assert.deepEqual(first.body.clones, []);
    await writeRegion("base", 0xb2);
    assert.equal((await storagedriver("POST", "/vdisks/base/snapshots", { name: "s2" })).status, 201);
    await writeRegion("base", 0xc3);
    const listed = await storagedriver("GET", "/vdisks/base/snapshots");
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.snapshots.map((snapshot: { name: string }) => snapshot.name), ["s1", "s2"]);
    const shown = await api("GET", "/vdisks/base");
    assert.equal(shown.body.snapshotCount, 2);
    assert.equal(shown.body.template, false);
    const twice = await storagedriver("POST", "/vdisks/base/snapshots", { name: "s1" });
    assert.equal(twice.status, 409);
    assert.equal(twice.body.error.code, "EXISTS");
  });

  it("clones a snapshot through the framework API: the clone reads the snapshot and takes its own writes", async function () {
    const clone = await api("POST", "/vdisks", { name: "clone1", parent: "base@s1" });
    assert.equal(clone.status, 201, JSON.stringify(clone.body));
    assert.deepEqual(clone.body.parent, { volume: "base", snapshot: "s1" });
    assert.equal(clone.body.sizeBytes, DISK_SIZE_BYTES);
    await assertRegion("clone1", 0xa1);
    await writeRegion("clone1", 0xd4);
    await assertRegion("clone1", 0xd4);
    await assertRegion("base", 0xc3);
    const listed = await api("GET", "/vdisks/base/snapshots");
    assert.deepEqual(listed.body.snapshots[0].clones, ["clone1"]);
    const wrongSize = await api("POST", "/vdisks", { name: "clone2", parent: "base@s1", size: "32M" });
    assert.equal(wrongSize.status, 400);
    assert.match(wrongSize.body.error.message, /a clone has at least the size of its snapshot/);
  });

  it("refuses to delete a snapshot while a clone exists (409), and deletes it once the clone is gone", async function () {
    for (const call of [storagedriver, api]) {
      const refused = await call("DELETE", "/vdisks/base/snapshots/s1");
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.equal(refused.body.error.code, "EXISTS");
      assert.match(refused.body.error.message, /clone1/);
    }
    const vdiskWithClone = await api("DELETE", "/vdisks/base");
    assert.equal(vdiskWithClone.status, 409, "a vDisk with clones cannot be deleted either");
    assert.equal((await api("DELETE", "/vdisks/clone1")).status, 204);
    assert.equal((await api("DELETE", "/vdisks/base/snapshots/s2")).status, 204);
    assert.equal((await api("GET", "/vdisks/base")).body.scrubPending, true);
  });

  it("rolls a vDisk back to a snapshot: the old data is back, later snapshots are gone", async function () {
    assert.equal((await api("POST", "/vdisks/base/snapshots", { name: "s3" })).status, 201);
    const rolled = await api("POST", "/vdisks/base/rollback", { snapshot: "s1" });
    assert.equal(rolled.status, 200, JSON.stringify(rolled.body));
    assert.equal(rolled.body.name, "base");
    assert.equal(rolled.body.snapshotCount, 1);
    await assertRegion("base", 0xa1);
    const listed = await storagedriver("GET", "/vdisks/base/snapshots");
    assert.deepEqual(listed.body.snapshots.map((snapshot: { name: string }) => snapshot.name), ["s1"]);
  });

  it("scrubs as a task that reaches succeeded with a result (API)", async function () {
    await writeRegion("base", 0xe5);
    const started = await api("POST", "/vdisks/base/scrub");
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const id = started.body.task.id as string;
    assert.equal(started.location, `/api/tasks/${id}`);
    assert.equal(started.body.task.kind, "scrub");
    assert.equal(started.body.task.vdisk, "base");
    const done = await waitForTask(id);
    assert.equal(done.state, "succeeded", JSON.stringify(done));
    for (const field of ["scosRewritten", "objectsCollected", "backendBytesBefore", "backendBytesAfter"]) {
      assert.equal(typeof done.result[field], "number", `result.${field}`);
    }
    assert.ok(Date.parse(done.finishedAt) >= Date.parse(done.startedAt));
    const tasks = await storagedriver("GET", "/tasks");
    assert.ok(tasks.body.tasks.some((task: { id: string }) => task.id === id));
    await assertRegion("base", 0xe5);
    const missing = await api("GET", "/tasks/00000000-0000-4000-8000-000000000000");
    assert.equal(missing.status, 404);
  });

  it("makes a template that refuses writes and clones by name (API)", async function () {
    assert.equal((await api("POST", "/vdisks", { name: "golden", size: DISK_SIZE_BYTES })).status, 201);
    await writeRegion("golden", 0x6f);
    const template = await api("POST", "/vdisks/golden/template");
    assert.equal(template.status, 200, JSON.stringify(template.body));
    assert.equal(template.body.template, true);
    const client = await nbd("golden");
    assert.notEqual((client.info?.transmissionFlags ?? 0) & NBD.FLAG_READ_ONLY, 0, "a template is a read-only export");
    const write = await client.write(0, Buffer.alloc(4096, 1));
    assert.notEqual(write.error, 0, "a template refuses writes over NBD");
    await client.disconnect();
    const clone = await api("POST", "/vdisks", { name: "vm1", parent: "golden" });
    assert.equal(clone.status, 201, JSON.stringify(clone.body));
    assert.equal(clone.body.parent.volume, "golden");
    await assertRegion("vm1", 0x6f);
  });

  it("refuses invalid bodies and paths with 400 and a clear message, at both APIs", async function () {
    const invalid: Array<[string, string, unknown, RegExp]> = [
      ["POST", "/vdisks/base/snapshots", { name: "bad name" }, /body\.name must match pattern.*a snapshot name is 1-63 characters/],
      ["POST", "/vdisks/base/snapshots", { snapshot: "s9" }, /must have the field "name".*unknown field "snapshot"|unknown field "snapshot".*must have the field "name"/],
      ["POST", "/vdisks/base/rollback", {}, /body must have the field "snapshot": a snapshot name is/],
      ["POST", "/vdisks", { name: "c3" }, /must have the field "size".*or the field "parent" to clone/],
      ["POST", "/vdisks", { name: "c3", parent: "base@@s1" }, /body\.parent must match pattern.*a parent is "VDISK@SNAPSHOT"/],
      ["POST", "/vdisks/base/scrub", { now: true }, /unknown field "now"/],
      ["POST", "/vdisks/base/snapshots", "{not json", /JSON/],
      ["DELETE", "/vdisks/base/snapshots/a%40b", undefined, /params\.snapshot must match pattern/],
    ];
    for (const [method, pathname, body, message] of invalid) {
      for (const [where, answer] of [["StorageDriver", await storagedriver(method, pathname, body)], ["framework", await api(method, pathname, body)]] as const) {
        assert.equal(answer.status, 400, `${where} ${method} ${pathname} ${JSON.stringify(body)}: ${JSON.stringify(answer.body)}`);
        assert.equal(answer.body.error.code, "INVALID_REQUEST");
        assert.match(answer.body.error.message, message, `${where} ${method} ${pathname}`);
      }
    }
    const missing = await api("POST", "/vdisks/nope/snapshots", { name: "s1" });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, "NOT_FOUND");
  });

  it("the CLI: snapshot, snapshots, clone, rollback, rm-snapshot, set-template, ls and show", async function () {
    assert.match(await ovsOk("vdisk", "create", "cli", "--size", "64M"), /created vDisk cli/);
    await writeRegion("cli", 0x11);
    assert.match(await ovsOk("vdisk", "snapshot", "cli", "first"), /took snapshot first of vDisk cli .*export cli@first/);
    await writeRegion("cli", 0x22);
    await ovsOk("vdisk", "snapshot", "cli", "second");
    const table = await ovsOk("vdisk", "snapshots", "cli");
    assert.match(table, /^NAME\s+CREATED\s+SIZE\s+SYNCED\s+CLONES/m);
    assert.match(table, /^first\s+\S+\s+64 MiB\s+(yes|no)\s+-/m);
    const json = JSON.parse(await ovsOk("vdisk", "snapshots", "cli", "--json")) as Array<{ name: string }>;
    assert.deepEqual(json.map((snapshot) => snapshot.name), ["first", "second"]);

    assert.match(await ovsOk("vdisk", "clone", "cli-clone", "--from", "cli@first"), /cloned vDisk cli-clone \(64 MiB\) from cli@first/);
    await assertRegion("cli-clone", 0x11);
    const listed = await ovsOk("vdisk", "ls");
    assert.match(listed, /^NAME\s+SIZE\s+STATE\s+SNAPSHOTS\s+TEMPLATE\s+PARENT/m);
    assert.match(listed, /^cli\s+64 MiB\s+running\s+2\s+no\s+-/m);
    assert.match(listed, /^cli-clone\s+64 MiB\s+running\s+0\s+no\s+cli@first/m);
    const shown = await ovsOk("vdisk", "show", "cli-clone");
    assert.match(shown, /^parent\s+cli@first$/m);
    assert.match(shown, /^template\s+no$/m);

    const refused = await ovs("vdisk", "rm-snapshot", "cli", "first");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /has clones \(cli-clone\).*\(EXISTS, HTTP 409\)/);
    assert.match(await ovsOk("vdisk", "rollback", "cli", "first"), /rolled vDisk cli back to snapshot first \(1 snapshots left\)/);
    await assertRegion("cli", 0x11);
    await ovsOk("vdisk", "rm", "cli-clone");
    assert.match(await ovsOk("vdisk", "rm-snapshot", "cli", "first"), /removed snapshot first of vDisk cli: run `ovs vdisk scrub cli`/);
    assert.match(await ovsOk("vdisk", "snapshots", "cli"), /vDisk cli has no snapshots/);

    assert.match(await ovsOk("vdisk", "set-template", "cli"), /vDisk cli is now a template/);
    assert.match(await ovsOk("vdisk", "show", "cli"), /^template\s+yes$/m);
    assert.match(await ovsOk("vdisk", "clone", "cli-vm", "--from", "cli"), /cloned vDisk cli-vm .* from cli@/);
    await assertRegion("cli-vm", 0x11);
    const badName = await ovs("vdisk", "snapshot", "cli-vm", "no/slash");
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /a snapshot name is 1-63 characters.*INVALID_REQUEST, HTTP 400/);
  });

  it("the CLI: resize grows a vDisk that a new NBD connection sees whole (old data kept, new range writable); config sets, unsets and clears overrides", async function () {
    await ovsOk("vdisk", "create", "grow", "--size", "64M");
    await writeRegion("grow", 0x33);
    const open = await nbd("grow");
    assert.equal(open.info?.sizeBytes, 64 * MIB);
    assert.match(await ovsOk("vdisk", "resize", "grow", "256M"), /^vDisk grow is now 256 MiB \(268435456 bytes\)$/m);
    const beyond = await open.read(128 * MIB, 4096);
    assert.notEqual(beyond.error, 0, "a connection keeps the size it negotiated");
    const fresh = await nbd("grow");
    assert.equal(fresh.info?.sizeBytes, 256 * MIB, "a new connection sees the new size");
    const tail = Buffer.alloc(MIB, 0x44);
    assert.equal((await fresh.write(255 * MIB, tail)).error, 0);
    assert.equal((await fresh.flush()).error, 0);
    assert.ok((await fresh.read(255 * MIB, MIB)).data?.equals(tail));
    await assertRegion("grow", 0x33);
    const shrink = await ovs("vdisk", "resize", "grow", "64M");
    assert.equal(shrink.code, 1);
    assert.match(shrink.stderr, /can only grow: shrinking would cut off data.*INVALID_REQUEST, HTTP 400/);
    assert.match(await ovsOk("vdisk", "show", "grow"), /^size\s+256 MiB \(268435456 bytes\)$/m);

    assert.match(await ovsOk("vdisk", "config", "grow"), /^scoMaxAgeMs\s+\d+\s+vPool$/m);
    const set = await ovsOk("vdisk", "config", "grow", "--set", "scoMaxAgeMs=2000", "--set", "uploadConcurrency=4");
    assert.match(set, /^scoMaxAgeMs\s+2000\s+vDisk$/m);
    assert.match(set, /^uploadConcurrency\s+4\s+vDisk$/m);
    const unset = await ovsOk("vdisk", "config", "grow", "--unset", "uploadConcurrency");
    assert.match(unset, /^scoMaxAgeMs\s+2000\s+vDisk$/m);
    assert.match(unset, /^uploadConcurrency\s+\d+\s+vPool$/m);
    assert.match(await ovsOk("vdisk", "show", "grow"), /^settings\s+scoMaxAgeMs=2000 \(`ovs vdisk config grow`\)$/m);
    const details = (await storagedriver("GET", "/vdisks/grow")).body as { overrides: Record<string, number> };
    assert.deepEqual(details.overrides, { scoMaxAgeMs: 2000 }, "the StorageDriver runs with what the CLI set");
    const bad = await ovs("vdisk", "config", "grow", "--set", "writeBufferSizeBytes=1");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown field "writeBufferSizeBytes".*scoMaxAgeMs/);
    const cleared = JSON.parse(await ovsOk("vdisk", "config", "grow", "--clear", "--json")) as { overrides: object };
    assert.deepEqual(cleared.overrides, {});
  });

  it("the CLI: scrub waits for its task and summarizes it; --no-wait prints the id for `ovs task show`", async function () {
    const scrubbed = await ovs("vdisk", "scrub", "base");
    assert.equal(scrubbed.code, 0, scrubbed.stderr);
    assert.match(scrubbed.stdout, /^scrubbed vDisk base in \d+\.\d s: \d+ SCOs rewritten, \d+ backend objects collected, backend .* -> .* \(task [0-9a-f-]+\)$/m);
    const started = await ovsOk("vdisk", "scrub", "base", "--no-wait");
    const id = started.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    await waitForTask(id);
    const shown = await ovsOk("task", "show", id);
    assert.match(shown, /^state\s+succeeded$/m);
    assert.match(shown, /^kind\s+scrub$/m);
    assert.match(shown, /^result\.scosRewritten\s+\d+$/m);
    assert.match(await ovsOk("task", "ls"), new RegExp(`^${id}\\s+scrub\\s+vdisk base\\s+succeeded`, "m"));
    const missing = await ovs("task", "show", "00000000-0000-4000-8000-000000000000");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no task .*NOT_FOUND/);
  });

  it("the cluster still stops cleanly", async function () {
    assert.ok(killPid(cluster.pid, "SIGINT"));
    const exit = await cluster.waitForExit(STOP_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 0, signal: null }, cluster.describe());
  });
});

// Goal: the snapshot, clone, rollback, template, scrub and task endpoints of the StorageDriver API
// call the vPool as documented and answer with the documented statuses (201, 200, 204, 202 with a
// task to follow, engine errors through the one mapping), and both APIs refuse invalid bodies and
// paths with 400 and the hint of the right field (a snapshot name's, not a vDisk name's). The vPool
// is a small fake with the engine's rules, so these tests need no engine and no sockets (inject()).
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildFrameworkApi } from "../../../framework/src/api/framework-api.ts";
import { StorageDriverClient } from "../../../framework/src/api/storagedriver-client.ts";
import { VolumeError } from "../../../volumedriver/src/engine/block-device.ts";
import type { ScrubProgress, ScrubResult, SnapshotInfo, Volume, VolumeInfo, VPool } from "../../../volumedriver/src/engine/vpool-types.ts";
import { buildManagementApi } from "../../../volumedriver/src/storagedriver/management-api.ts";

const MIB = 1024 * 1024;

interface FakeVolume {
  info: VolumeInfo;
  snapshots: SnapshotInfo[];
}

/** The engine's snapshot rules over plain objects: enough to check what the API asks and answers. */
class FakeVPool {
  readonly name = "pool";
  readonly volumes = new Map<string, FakeVolume>();
  readonly calls: string[] = [];
  scrubFailure: Error | undefined;

  private volume(name: string): FakeVolume {
    const volume = this.volumes.get(name);
    if (volume === undefined) throw new VolumeError("NotFound", `no vDisk named ${name} in vPool pool`);
    return volume;
  }

  private handle(volume: FakeVolume): Volume {
    volume.info.snapshotCount = volume.snapshots.length;
    return { name: volume.info.name, sizeBytes: volume.info.sizeBytes, readOnly: volume.info.template, info: () => ({ ...volume.info }), stats: () => ({}) } as unknown as Volume;
  }

  private add(name: string, sizeBytes: number, parent?: { volume: string; snapshot: string }): Volume {
    if (this.volumes.has(name)) throw new VolumeError("Exists", `vDisk ${name} already exists`);
    const info: VolumeInfo = {
      name, uuid: `uuid-${name}`, vpool: "pool", namespace: `vd-${name}`, sizeBytes, clusterSizeBytes: 4096, scoSizeBytes: 4 * MIB,
      createdAt: "2024-05-01T00:00:00.000Z", state: "running", template: false, snapshotCount: 0, scrubPending: false, overrides: {},
      ...(parent === undefined ? {} : { parent }),
    };
    const volume = { info, snapshots: [] };
    this.volumes.set(name, volume);
    return this.handle(volume);
  }

  async createVolume(name: string, sizeBytes: number): Promise<Volume> {
    return this.add(name, sizeBytes);
  }

  getVolume(name: string): Volume | undefined {
    const volume = this.volumes.get(name);
    return volume === undefined ? undefined : this.handle(volume);
  }

  listVolumes(): VolumeInfo[] {
    return [...this.volumes.values()].map((volume) => this.handle(volume).info());
  }

  async createSnapshot(name: string, snapshot: string): Promise<SnapshotInfo> {
    const volume = this.volume(name);
    if (volume.snapshots.some((existing) => existing.name === snapshot)) throw new VolumeError("Exists", `snapshot ${snapshot} of ${name} already exists`);
    const info: SnapshotInfo = { name: snapshot, uuid: `uuid-${snapshot}`, createdAt: "2024-05-01T01:00:00.000Z", sizeBytes: volume.info.sizeBytes, synced: false, clones: [] };
    volume.snapshots.push(info);
    return { ...info };
  }

  listSnapshots(name: string): SnapshotInfo[] {
    return this.volume(name).snapshots.map((snapshot) => ({ ...snapshot, clones: [...snapshot.clones] }));
  }

  private snapshot(name: string, snapshot: string): SnapshotInfo {
    const found = this.volume(name).snapshots.find((candidate) => candidate.name === snapshot);
    if (found === undefined) throw new VolumeError("NotFound", `vDisk ${name} has no snapshot ${snapshot}`);
    return found;
  }

  async deleteSnapshot(name: string, snapshot: string): Promise<void> {
    const found = this.snapshot(name, snapshot);
    if (found.clones.length > 0) throw new VolumeError("Exists", `snapshot ${snapshot} of ${name} has clones (${found.clones.join(", ")})`);
    const volume = this.volume(name);
    volume.snapshots = volume.snapshots.filter((candidate) => candidate !== found);
    volume.info.scrubPending = true;
  }

  async rollbackVolume(name: string, snapshot: string): Promise<Volume> {
    const volume = this.volume(name);
    const index = volume.snapshots.indexOf(this.snapshot(name, snapshot));
    volume.snapshots = volume.snapshots.slice(0, index + 1);
    this.calls.push(`rollback ${name}@${snapshot}`);
    return this.handle(volume);
  }

  async cloneVolume(name: string, from: { volume: string; snapshot?: string }): Promise<Volume> {
    const source = this.volume(from.volume);
    if (from.snapshot === undefined && !source.info.template) throw new VolumeError("Invalid", `vDisk ${from.volume} is not a template: name a snapshot`);
    const snapshot = from.snapshot === undefined ? source.snapshots.at(-1) : this.snapshot(from.volume, from.snapshot);
    if (snapshot === undefined) throw new VolumeError("NotFound", `vDisk ${from.volume} has no snapshot`);
    const clone = this.add(name, snapshot.sizeBytes, { volume: from.volume, snapshot: snapshot.name });
    snapshot.clones.push(name);
    return clone;
  }

  async setTemplate(name: string): Promise<void> {
    const volume = this.volume(name);
    await this.createSnapshot(name, "template");
    volume.info.template = true;
  }

  async scrubVolume(name: string, options?: { onProgress?: (progress: ScrubProgress) => void }): Promise<ScrubResult> {
    this.volume(name);
    options?.onProgress?.({ phase: "rewriting", done: 1, total: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    if (this.scrubFailure !== undefined) throw this.scrubFailure;
    this.volume(name).info.scrubPending = false;
    return { scosRewritten: 1, objectsCollected: 3, backendBytesBefore: 8 * MIB, backendBytesAfter: 4 * MIB };
  }
}

interface Answer {
  statusCode: number;
  body: any;
  headers: Record<string, unknown>;
}

describe("volumedriver: StorageDriver API for snapshots, clones, templates and scrubs", function () {
  let vpool: FakeVPool;
  let app: FastifyInstance;

  async function call(method: "GET" | "POST" | "DELETE", url: string, body?: unknown): Promise<Answer> {
    const response = await app.inject({ method, url, ...(body === undefined ? {} : { payload: body as object }) });
    return { statusCode: response.statusCode, body: response.body.length === 0 ? undefined : response.json(), headers: response.headers };
  }

  async function taskDone(id: string): Promise<any> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const task = await call("GET", `/tasks/${id}`);
      if (task.body.state === "succeeded" || task.body.state === "failed") return task.body;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    throw new Error(`task ${id} did not finish`);
  }

  beforeEach(async function () {
    vpool = new FakeVPool();
    app = buildManagementApi({ vpool: vpool as unknown as VPool, backendDescription: "memory" });
    await app.ready();
    assert.equal((await call("POST", "/vdisks", { name: "disk1", size: "16M" })).statusCode, 201);
  });

  afterEach(async function () {
    await app.close();
  });

  it("takes (201), lists and deletes (204) snapshots", async function () {
    const taken = await call("POST", "/vdisks/disk1/snapshots", { name: "before-upgrade" });
    assert.equal(taken.statusCode, 201, JSON.stringify(taken.body));
    assert.equal(taken.body.name, "before-upgrade");
    assert.equal(taken.body.sizeBytes, 16 * MIB);
    const listed = await call("GET", "/vdisks/disk1/snapshots");
    assert.deepEqual(listed.body.snapshots.map((snapshot: SnapshotInfo) => snapshot.name), ["before-upgrade"]);
    assert.equal((await call("GET", "/vdisks/disk1")).body.snapshotCount, 1);
    assert.equal((await call("DELETE", "/vdisks/disk1/snapshots/before-upgrade")).statusCode, 204);
    assert.deepEqual((await call("GET", "/vdisks/disk1/snapshots")).body.snapshots, []);
    assert.equal((await call("GET", "/vdisks/disk1")).body.scrubPending, true);
  });

  it("answers engine refusals through the one mapping: 404, 409", async function () {
    const missing = await call("GET", "/vdisks/nope/snapshots");
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.body.error.code, "NOT_FOUND");
    await call("POST", "/vdisks/disk1/snapshots", { name: "s1" });
    const twice = await call("POST", "/vdisks/disk1/snapshots", { name: "s1" });
    assert.equal(twice.statusCode, 409);
    assert.equal(twice.body.error.code, "EXISTS");
    assert.equal((await call("DELETE", "/vdisks/disk1/snapshots/s9")).statusCode, 404);
  });

  it("clones from VDISK@SNAP (201), and refuses to delete the snapshot while the clone exists (409)", async function () {
    await call("POST", "/vdisks/disk1/snapshots", { name: "s1" });
    const clone = await call("POST", "/vdisks", { name: "clone1", parent: "disk1@s1" });
    assert.equal(clone.statusCode, 201, JSON.stringify(clone.body));
    assert.deepEqual(clone.body.parent, { volume: "disk1", snapshot: "s1" });
    assert.equal(clone.body.sizeBytes, 16 * MIB);
    const refused = await call("DELETE", "/vdisks/disk1/snapshots/s1");
    assert.equal(refused.statusCode, 409);
    assert.match(refused.body.error.message, /has clones \(clone1\)/);
  });

  it("refuses a clone smaller than its snapshot (a bigger one is grown: framework-routes, real engine)", async function () {
    await call("POST", "/vdisks/disk1/snapshots", { name: "s1" });
    assert.equal((await call("POST", "/vdisks", { name: "same", parent: "disk1@s1", size: "16M" })).statusCode, 201);
    const refused = await call("POST", "/vdisks", { name: "other", parent: "disk1@s1", size: "8M" });
    assert.equal(refused.statusCode, 400);
    assert.match(refused.body.error.message, /a clone has at least the size of its snapshot \(16777216 bytes\), not 8388608: leave "size" out or give a bigger one/);
  });

  it("rolls back (200 with the vDisk)", async function () {
    await call("POST", "/vdisks/disk1/snapshots", { name: "s1" });
    await call("POST", "/vdisks/disk1/snapshots", { name: "s2" });
    const rolled = await call("POST", "/vdisks/disk1/rollback", { snapshot: "s1" });
    assert.equal(rolled.statusCode, 200, JSON.stringify(rolled.body));
    assert.equal(rolled.body.name, "disk1");
    assert.equal(rolled.body.snapshotCount, 1);
    assert.deepEqual(vpool.calls, ["rollback disk1@s1"]);
  });

  it("makes a template (200, with or without an empty body) and clones it by name", async function () {
    const template = await call("POST", "/vdisks/disk1/template");
    assert.equal(template.statusCode, 200, JSON.stringify(template.body));
    assert.equal(template.body.template, true);
    assert.equal((await call("POST", "/vdisks", { name: "disk2", size: "4M" })).statusCode, 201);
    assert.equal((await call("POST", "/vdisks/disk2/template", {})).statusCode, 200);
    const clone = await call("POST", "/vdisks", { name: "from-template", parent: "disk1" });
    assert.equal(clone.statusCode, 201, JSON.stringify(clone.body));
    assert.deepEqual(clone.body.parent, { volume: "disk1", snapshot: "template" });
  });

  it("starts a scrub as a task (202, Location) that reaches succeeded with the result", async function () {
    const started = await call("POST", "/vdisks/disk1/scrub");
    assert.equal(started.statusCode, 202, JSON.stringify(started.body));
    const id = started.body.task.id as string;
    assert.equal(started.headers.location, `/tasks/${id}`);
    assert.equal(started.body.task.kind, "scrub");
    assert.equal(started.body.task.vdisk, "disk1");
    const done = await taskDone(id);
    assert.equal(done.state, "succeeded");
    assert.deepEqual(done.result, { scosRewritten: 1, objectsCollected: 3, backendBytesBefore: 8 * MIB, backendBytesAfter: 4 * MIB });
    assert.ok(done.startedAt !== undefined && done.finishedAt !== undefined);
    assert.deepEqual((await call("GET", "/tasks")).body.tasks.map((task: { id: string }) => task.id), [id]);
  });

  it("a scrub that fails is a failed task with the error as the API tells it; a missing vDisk is 404 at once", async function () {
    vpool.scrubFailure = new VolumeError("Io", "SCO 7 is missing on the backend");
    const started = await call("POST", "/vdisks/disk1/scrub", {});
    const done = await taskDone(started.body.task.id);
    assert.equal(done.state, "failed");
    assert.equal(done.error.code, "IO_ERROR");
    assert.match(done.error.message, /SCO 7 is missing/);
    assert.equal((await call("POST", "/vdisks/nope/scrub")).statusCode, 404);
    const unknownTask = await call("GET", "/tasks/0b7d2c4e-0000-4000-8000-000000000000");
    assert.equal(unknownTask.statusCode, 404);
    assert.match(unknownTask.body.error.message, /GET \/tasks lists them/);
  });

  const invalid: Array<[string, "GET" | "POST" | "DELETE", string, unknown, RegExp]> = [
    ["a snapshot name with '@'", "POST", "/vdisks/disk1/snapshots", { name: "a@b" }, /body\.name must match pattern.*a snapshot name is 1-63 characters/],
    ["a snapshot name starting with '.'", "POST", "/vdisks/disk1/snapshots", { name: ".hidden" }, /a snapshot name is/],
    ["a snapshot body without name", "POST", "/vdisks/disk1/snapshots", {}, /body must have the field "name": a snapshot name is/],
    ["a snapshot body with an extra field", "POST", "/vdisks/disk1/snapshots", { name: "s", at: 1 }, /unknown field "at"/],
    ["a rollback without snapshot", "POST", "/vdisks/disk1/rollback", {}, /body must have the field "snapshot": a snapshot name is/],
    ["a rollback with a bad snapshot", "POST", "/vdisks/disk1/rollback", { snapshot: "x/y" }, /body\.snapshot must match pattern/],
    ["a clone parent with two '@'", "POST", "/vdisks", { name: "c", parent: "a@b@c" }, /body\.parent must match pattern.*a parent is "VDISK@SNAPSHOT"/],
    ["a create with neither size nor parent", "POST", "/vdisks", { name: "c" }, /must have the field "size".*or the field "parent" to clone/],
    ["a body for template", "POST", "/vdisks/disk1/template", { force: true }, /unknown field "force"/],
    ["a body for scrub", "POST", "/vdisks/disk1/scrub", [], /body must be object: send no body, or \{\}/],
    ["a bad snapshot in the path", "DELETE", "/vdisks/disk1/snapshots/a%20b", undefined, /params\.snapshot must match pattern.*a snapshot name is/],
    ["a bad task id", "GET", "/tasks/..%2F..", undefined, /params\.id must match pattern/],
  ];
  for (const [what, method, url, body, message] of invalid) {
    it(`refuses ${what} with 400 and the field's hint`, async function () {
      const response = await call(method, url, body);
      assert.equal(response.statusCode, 400, JSON.stringify(response.body));
      assert.equal(response.body.error.code, "INVALID_REQUEST");
      assert.match(response.body.error.message, message);
    });
  }
});

describe("framework: API validation of the snapshot, clone and task routes", function () {
  let app: FastifyInstance;

  before(async function () {
    // Nothing listens on port 1: a request that passes validation is forwarded and gets 503.
    const storagedriver = new StorageDriverClient({ vpool: "vpool1", baseUrl: "http://127.0.0.1:1", logHint: "the log", requestTimeoutMs: 5_000 });
    app = buildFrameworkApi({ storagedriver });
    await app.ready();
  });

  after(async function () {
    await app.close();
  });

  const cases: Array<[string, "GET" | "POST" | "DELETE", string, unknown, number, RegExp]> = [
    ["a bad snapshot name", "POST", "/api/vdisks/disk1/snapshots", { name: "a b" }, 400, /a snapshot name is/],
    ["a rollback without snapshot", "POST", "/api/vdisks/disk1/rollback", {}, 400, /must have the field "snapshot"/],
    ["a create without size or parent", "POST", "/api/vdisks", { name: "c" }, 400, /or the field "parent" to clone/],
    ["a bad parent", "POST", "/api/vdisks", { name: "c", parent: "Disk@s" }, 400, /a parent is/],
    ["a bad task id", "GET", "/api/tasks/a%20b", undefined, 400, /params\.id/],
    ["a valid snapshot", "POST", "/api/vdisks/disk1/snapshots", { name: "s1" }, 503, /not reachable/],
    ["a valid clone", "POST", "/api/vdisks", { name: "c", parent: "disk1@s1" }, 503, /not reachable/],
    ["a valid scrub without body", "POST", "/api/vdisks/disk1/scrub", undefined, 503, /not reachable/],
    ["the task list", "GET", "/api/tasks", undefined, 503, /not reachable/],
  ];
  for (const [what, method, url, body, statusCode, message] of cases) {
    it(`answers ${what} with ${statusCode}`, async function () {
      const response = await app.inject({ method, url, ...(body === undefined ? {} : { payload: body as object }) });
      assert.equal(response.statusCode, statusCode, response.body);
      assert.match(response.json<{ error: { message: string } }>().error.message, message);
    });
  }
});

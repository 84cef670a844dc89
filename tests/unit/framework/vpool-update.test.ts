// Goal: VPoolControl.update (PATCH /api/vpools/:name) against a real StorageDriver management API over
// a real engine vPool: accepted sizes reach the running vPool at once and its recorded launch; a size
// the model accepts but the StorageDriver refuses (its SCOs are bigger than the model says, so the
// write buffer is too small for it) answers with the StorageDriver's error and leaves the model, the
// vPool's schedules and the running settings as they were; an unreachable StorageDriver does the same.
import assert from "node:assert/strict";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { FrameworkTasks } from "../../../framework/src/api/framework-tasks.ts";
import { StorageDriverClient } from "../../../framework/src/api/storagedriver-client.ts";
import { StorageDriverRouter } from "../../../framework/src/api/storagedriver-router.ts";
import { defaultClusterConfig } from "../../../framework/src/cluster/cluster-config.ts";
import { recordInventory } from "../../../framework/src/cluster/inventory.ts";
import { VPoolControl } from "../../../framework/src/cluster/vpool-control.ts";
import { VPoolRuntimes, type RunningVPool } from "../../../framework/src/cluster/vpool-runtimes.ts";
import { FrameworkModel } from "../../../framework/src/model/framework-model.ts";
import { MemoryObjectStore } from "../../../volumedriver/src/backend/memory-store.ts";
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import { MIB, type VPool } from "../../../volumedriver/src/engine/vpool-types.ts";
import { buildManagementApi } from "../../../volumedriver/src/storagedriver/management-api.ts";
import { unreachableStorageDriver } from "../../helpers/framework-fixtures.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

/** The runtimes of `ovs up` with one "running" StorageDriver: the real API client, no child process. */
class OneRunningStorageDriver extends VPoolRuntimes {
  recorded: Array<Record<string, number>> = [];
  constructor(private readonly client: StorageDriverClient) {
    super({ dataDirectory: "/nonexistent", output: { out: () => {}, err: () => {} }, logger: pino({ level: "silent" }) });
  }

  override get(name: string): RunningVPool | undefined {
    if (name !== "vpool1") return undefined;
    // What the vPool view reads of a running StorageDriver; the requests go to the real API.
    return { client: this.client, service: { up: () => true }, launch: { managementApi: { host: "127.0.0.1", port: 1 } }, ready: {} } as unknown as RunningVPool;
  }

  override async updateSettings(_name: string, settings: Record<string, number>): Promise<void> {
    this.recorded.push(settings);
  }
}

describe("framework: vPool settings reach the running StorageDriver, or change nothing", function () {
  this.timeout(60_000);
  const tempDirs = new TempDirs("vpool-update");
  let model: FrameworkModel;
  let engine: VPool;
  let api: FastifyInstance;
  let runtimes: OneRunningStorageDriver;

  const control = (client: StorageDriverClient): VPoolControl => {
    runtimes = new OneRunningStorageDriver(client);
    const logger = pino({ level: "silent" });
    const config = defaultClusterConfig("2026-11-22T12:00:00.000Z");
    config.vpools[0].backend = { type: "local", path: "backend" };
    return new VPoolControl({
      model, runtimes, router: new StorageDriverRouter(client), tasks: new FrameworkTasks(model.tasks), config, storageRouter: "node-1",
      stopRequested: new Promise(() => {}), logger, saveConfig: async () => {},
    });
  };

  before(async function () {
    const work = await tempDirs.make();
    model = FrameworkModel.open(path.join(work, "framework.db"));
    const config = defaultClusterConfig("2026-11-22T12:00:00.000Z");
    config.vpools[0].backend = { type: "local", path: "backend" };
    recordInventory({ model, config, dataDirectory: work, storageRouter: "node-1", ports: { management: 8510, nbd: 10809, iscsi: 3260 } });
    // The model says 4 MiB SCOs; the running vPool uses 64 MiB ones (so it needs a 128 MiB buffer at least).
    model.vpools.update("vpool1", { scoSizeBytes: 4 * MIB, writeBufferSizeBytes: 256 * MIB, readCacheSizeBytes: 64 * MIB, schedules: { scrub: null } });
    engine = await openVPool({ name: "vpool1", directory: path.join(work, "vpool"), backend: new MemoryObjectStore(), scoSizeBytes: 64 * MIB, writeBufferSizeBytes: 256 * MIB });
    api = buildManagementApi({ vpool: engine, backendDescription: "memory" });
    await api.listen({ host: "127.0.0.1", port: 0 });
  });

  after(async function () {
    await api?.close();
    await engine?.close();
    model?.close();
    await tempDirs.removeAll();
  });

  const client = (): StorageDriverClient =>
    new StorageDriverClient({ vpool: "vpool1", baseUrl: `http://127.0.0.1:${(api.server.address() as { port: number }).port}`, logHint: "-" });

  it("applies accepted sizes to the running vPool at once and records them for its restarts", async function () {
    const view = await control(client()).update("vpool1", { readCacheSizeBytes: 32 * MIB, writeBufferSizeBytes: 512 * MIB });
    assert.equal(view.readCacheSizeBytes, 32 * MIB);
    assert.deepEqual([engine.settings.readCacheSizeBytes, engine.settings.writeBufferSizeBytes], [32 * MIB, 512 * MIB]);
    assert.deepEqual(runtimes.recorded, [{ writeBufferSizeBytes: 512 * MIB, readCacheSizeBytes: 32 * MIB }]);
  });

  it("a size the StorageDriver refuses changes nothing: not the model, not its schedules, not the engine", async function () {
    const before = model.vpools.get("vpool1");
    await assert.rejects(control(client()).update("vpool1", { writeBufferSizeBytes: 64 * MIB, schedules: { snapshots: { everyMinutes: 10 } } }), (error: unknown) => {
      assert.ok(error instanceof HttpError, String(error));
      assert.equal(error.statusCode, 400);
      assert.match(error.message, /writeBufferSizeBytes = 67108864 must be an integer in \[134217728,/);
      return true;
    });
    assert.deepEqual(model.vpools.get("vpool1"), before);
    assert.equal(engine.settings.writeBufferSizeBytes, 512 * MIB);
    assert.deepEqual(runtimes.recorded, []);
  });

  it("an unreachable StorageDriver changes nothing either", async function () {
    const before = model.vpools.get("vpool1");
    await assert.rejects(control(unreachableStorageDriver()).update("vpool1", { readCacheSizeBytes: 16 * MIB }), /StorageDriver/);
    assert.deepEqual(model.vpools.get("vpool1"), before);
  });
});

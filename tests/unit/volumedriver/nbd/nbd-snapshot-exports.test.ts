// Goal: snapshot exports (VDISK@SNAP) of the StorageDriver's export registry are listed and found
// beside their vDisk, served read-only, and their view is opened once, on the first connection that
// enters transmission (never by LIST or INFO), shared by later connections, and closed when the last
// one closes, when the client leaves while it opens, or when the registry closes; a view that fails
// to open disconnects the client and the next connection tries again. The vPool is a fake, so the
// test drives exactly what the engine answers; the NBD server and client are real.
import assert from "node:assert/strict";
import pino from "pino";
import { type BlockExtent, VolumeError } from "../../../../volumedriver/src/engine/block-device.ts";
import type { SnapshotDevice, SnapshotInfo, Volume, VolumeInfo, VPool } from "../../../../volumedriver/src/engine/vpool-types.ts";
import { startNbdServer } from "../../../../volumedriver/src/frontends/nbd/nbd-server.ts";
import type { NbdServer } from "../../../../volumedriver/src/frontends/nbd/nbd-types.ts";
import { vpoolExportRegistry, type VPoolExportRegistry } from "../../../../volumedriver/src/storagedriver/nbd-exports.ts";
import { NBD, NbdTestClient, openNbdClient } from "./nbd-test-client.ts";

const MIB = 1024 * 1024;
const VOLUME_SIZE_BYTES = 8 * MIB;
const SNAPSHOT_SIZE_BYTES = 4 * MIB;

/** A snapshot view in memory: every byte is the snapshot's fill byte. */
class MemorySnapshotDevice implements SnapshotDevice {
  readonly readOnly = true;
  readonly sizeBytes = SNAPSHOT_SIZE_BYTES;
  closed = false;
  constructor(readonly volume: string, readonly snapshot: string, private readonly fill: number) {}
  get name(): string {
    return `${this.volume}@${this.snapshot}`;
  }
  async read(_offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    if (this.closed) throw new VolumeError("Closed", "view closed");
    return Buffer.alloc(lengthBytes, this.fill);
  }
  async write(): Promise<void> {
    throw new VolumeError("ReadOnly", "a snapshot is read-only");
  }
  async flush(): Promise<void> {}
  async trim(): Promise<void> {
    throw new VolumeError("ReadOnly", "a snapshot is read-only");
  }
  async writeZeroes(): Promise<void> {
    throw new VolumeError("ReadOnly", "a snapshot is read-only");
  }
  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    return [{ offsetBytes, lengthBytes, allocated: true }];
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

function snapshotInfo(name: string): SnapshotInfo {
  return { name, uuid: `uuid-${name}`, createdAt: "2024-05-01T12:00:00.000Z", sizeBytes: SNAPSHOT_SIZE_BYTES, synced: true, clones: [] };
}

function volumeInfo(name: string, state: VolumeInfo["state"]): VolumeInfo {
  return {
    name, state, uuid: `uuid-${name}`, vpool: "pool", namespace: `vd-${name}`, sizeBytes: VOLUME_SIZE_BYTES, clusterSizeBytes: 4096,
    scoSizeBytes: 4 * MIB, createdAt: "2024-05-01T00:00:00.000Z", template: false, snapshotCount: 1, scrubPending: false, overrides: {},
  };
}

/** The parts of a VPool the registry uses, with counters and hooks on openSnapshot. */
class FakeVPool {
  readonly name = "pool";
  readonly infos = [volumeInfo("alpha", "running"), volumeInfo("beta", "recovering")];
  readonly snapshots = new Map<string, SnapshotInfo[]>([["alpha", [snapshotInfo("snap1"), snapshotInfo("snap2")]], ["beta", [snapshotInfo("old")]]]);
  readonly opened: MemorySnapshotDevice[] = [];
  /** Set to make the next opens fail. */
  openFailure: Error | undefined;
  /** Set to hold opens until the promise resolves. */
  openGate: Promise<void> | undefined;

  listVolumes(): VolumeInfo[] {
    return this.infos;
  }

  /** The same object for every call, as the engine's, until a test replaces it (a reopened vDisk). */
  readonly handles = new Map<string, Volume>();

  getVolume(name: string): Volume | undefined {
    const info = this.infos.find((candidate) => candidate.name === name);
    if (info === undefined) return undefined;
    let handle = this.handles.get(name);
    if (handle === undefined) {
      handle = { name, sizeBytes: info.sizeBytes, readOnly: false, info: () => info } as unknown as Volume;
      this.handles.set(name, handle);
    }
    return handle;
  }

  listSnapshots(volume: string): SnapshotInfo[] {
    return this.snapshots.get(volume) ?? [];
  }

  async openSnapshot(volume: string, snapshot: string): Promise<SnapshotDevice> {
    await this.openGate;
    if (this.openFailure !== undefined) throw this.openFailure;
    const device = new MemorySnapshotDevice(volume, snapshot, snapshot === "snap1" ? 0x11 : 0x22);
    this.opened.push(device);
    return device;
  }

  openViews(): MemorySnapshotDevice[] {
    return this.opened.filter((device) => !device.closed);
  }
}

async function eventually(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadlineMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("volumedriver NBD: snapshot exports of the StorageDriver", function () {
  this.timeout(30_000);
  let vpool: FakeVPool;
  let registry: VPoolExportRegistry;
  let server: NbdServer;
  const clients: NbdTestClient[] = [];

  async function open(name: string): Promise<NbdTestClient> {
    const client = await openNbdClient(server.port, name, { structured: true });
    clients.push(client);
    return client;
  }

  beforeEach(async function () {
    vpool = new FakeVPool();
    registry = vpoolExportRegistry(vpool as unknown as VPool);
    server = await startNbdServer(registry, { host: "127.0.0.1", port: 0, logger: pino({ level: process.env.NBD_TEST_LOG ?? "silent" }) });
  });

  afterEach(async function () {
    for (const client of clients.splice(0)) client.close();
    await server.close();
    await registry.close();
  });

  it("lists each snapshot of a running vDisk after it, described as a read-only snapshot", async function () {
    const listed = registry.listExports();
    assert.deepEqual(listed.map((entry) => entry.name), ["alpha", "alpha@snap1", "alpha@snap2"]);
    assert.equal(listed[1]?.description, "read-only snapshot snap1 of vDisk alpha (4 MiB, taken 2024-05-01T12:00:00.000Z) in vPool pool");
    assert.equal(listed[1]?.device.readOnly, true);
    assert.equal(listed[1]?.device.sizeBytes, SNAPSHOT_SIZE_BYTES);
    const client = await NbdTestClient.connect(server.port);
    clients.push(client);
    assert.deepEqual((await client.list()).map((entry) => entry.name), ["alpha", "alpha@snap1", "alpha@snap2"]);
  });

  it("finds snapshot exports by VDISK@SNAP only for existing snapshots of running vDisks", function () {
    assert.equal(registry.findExport("alpha@snap2")?.name, "alpha@snap2");
    assert.equal(registry.findExport("alpha@nope"), undefined, "no such snapshot");
    assert.equal(registry.findExport("beta@old"), undefined, "vDisk not running");
    assert.equal(registry.findExport("gamma@snap1"), undefined, "no such vDisk");
    assert.equal(registry.findExport("alpha@"), undefined, "empty snapshot name");
  });

  it("INFO announces the snapshot's size and READ_ONLY without opening the view", async function () {
    const client = await NbdTestClient.connect(server.port);
    clients.push(client);
    const { final, info } = await client.infoOrGo(NBD.OPT_INFO, "alpha@snap1");
    assert.equal(final.type, NBD.REP_ACK);
    assert.equal(info.sizeBytes, SNAPSHOT_SIZE_BYTES);
    assert.notEqual(info.transmissionFlags & NBD.FLAG_READ_ONLY, 0);
    assert.equal(info.transmissionFlags & NBD.FLAG_SEND_TRIM, 0);
    assert.equal(vpool.opened.length, 0);
  });

  it("serves the view read-only: reads its data, refuses writes with EPERM", async function () {
    const client = await open("alpha@snap1");
    const read = await client.read(MIB, 64 * 1024);
    assert.equal(read.error, 0);
    assert.ok(read.data?.equals(Buffer.alloc(64 * 1024, 0x11)));
    assert.equal((await client.write(0, Buffer.alloc(4096, 1))).error, NBD.EPERM);
    assert.equal((await client.flush()).error, 0);
  });

  it("opens one view for every connection to the export and closes it after the last one", async function () {
    const first = await open("alpha@snap1");
    const second = await open("alpha@snap1");
    const other = await open("alpha@snap2");
    assert.equal(vpool.opened.length, 2, "one view per export name");
    assert.equal(registry.openSnapshotViewCount(), 2);
    await first.disconnect();
    assert.equal((await second.read(0, 4096)).error, 0, "the view stays open for the other connection");
    assert.equal(vpool.openViews().length, 2);
    await second.disconnect();
    await eventually(() => vpool.openViews().length === 1, "the view of alpha@snap1 is closed");
    assert.equal(vpool.openViews()[0]?.snapshot, "snap2");
    await other.disconnect();
    await eventually(() => vpool.openViews().length === 0, "every view is closed");
    const again = await open("alpha@snap1");
    assert.equal((await again.read(0, 4096)).error, 0);
    assert.equal(vpool.opened.length, 3, "a later connection opens a new view");
  });

  it("a snapshot replaced since its view opened (new uuid, or the vDisk reopened) gets a new view", async function () {
    const old = await open("alpha@snap1");
    vpool.snapshots.set("alpha", [{ ...snapshotInfo("snap1"), uuid: "uuid-snap1-again" }, snapshotInfo("snap2")]);
    const renewed = await open("alpha@snap1");
    assert.equal(vpool.opened.length, 2, "the recreated snapshot has its own view");
    vpool.handles.delete("alpha");
    const reopened = await open("alpha@snap1");
    assert.equal(vpool.opened.length, 3, "the reopened vDisk (after a rollback) has its own view");
    for (const client of [old, renewed, reopened]) await client.disconnect();
    await eventually(() => vpool.openViews().length === 0, "each view is closed after its last connection");
  });

  it("a view that fails to open disconnects the client; the next connection tries again", async function () {
    vpool.openFailure = new VolumeError("Io", "snapshot TLog missing");
    const client = await NbdTestClient.connect(server.port);
    clients.push(client);
    await client.go("alpha@snap1");
    await client.waitForClose();
    assert.equal(registry.openSnapshotViewCount(), 0);
    vpool.openFailure = undefined;
    const retried = await open("alpha@snap1");
    assert.equal((await retried.read(0, 512)).error, 0);
  });

  it("a client that leaves while the view opens leaves no view open", async function () {
    let openNow: () => void = () => {};
    vpool.openGate = new Promise((resolve) => { openNow = resolve; });
    const client = await NbdTestClient.connect(server.port);
    clients.push(client);
    await client.go("alpha@snap2");
    client.close();
    await eventually(() => server.connectionCount() === 0, "the server saw the connection close");
    openNow();
    await eventually(() => vpool.opened.length === 1 && vpool.openViews().length === 0, "the late view is closed at once");
  });

  it("closing the registry closes the views still open and refuses new ones", async function () {
    await open("alpha@snap1");
    await registry.close();
    assert.equal(vpool.openViews().length, 0);
    await assert.rejects(registry.findExport("alpha@snap2")?.open?.() ?? Promise.resolve(), (error: unknown) => error instanceof VolumeError && error.kind === "Closed");
  });
});

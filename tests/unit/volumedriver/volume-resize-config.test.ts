// Goal: a vDisk grows in place and keeps its data; the new size is on the backend and locally, so a
// restart and a restore on a new host both see it; snapshots and their clones keep the size they were
// taken at; shrinking and growing a template are refused with errors that say why. Per-vDisk setting
// overrides are checked, stored in volume.json (so they follow the vDisk), applied at once (a short
// SCO age on one vDisk gets its data to the backend while its neighbour keeps it local), and cleared.
// vPool settings change while it runs: a write stalled on a full write buffer goes through once the
// buffer grows; a shrunk read cache keeps its most recently used clusters; settings read only at open
// are refused with a message saying so.
import assert from "node:assert/strict";
import { FailingObjectStore } from "../../../volumedriver/src/backend/failing-store.ts";
import { MemoryObjectStore } from "../../../volumedriver/src/backend/memory-store.ts";
import { ReadCache } from "../../../volumedriver/src/engine/read-cache.ts";
import { decodeVolumeConfig, VOLUME_CONFIG_KEY } from "../../../volumedriver/src/engine/formats/volume-config.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import { MIB, type VPool, type VPoolConfig } from "../../../volumedriver/src/engine/vpool-types.ts";
import { readWholeDevice } from "../../helpers/device-hash.ts";
import { SeededRandom, seedFromEnvironment } from "../../helpers/seeded-random.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";
import { expectVolumeError, sleep, waitFor } from "../../helpers/volume-assertions.ts";

const SIZE_BYTES = 8 * MIB;

describe("vDisk resize (grow) and per-vDisk settings", function () {
  this.timeout(60_000);
  const tempDirs = new TempDirs("resize");
  const pools = new Set<VPool>();
  let backend: MemoryObjectStore;
  let random: SeededRandom;

  const open = async (directory: string, overrides: Partial<VPoolConfig> = {}): Promise<VPool> => {
    const vpool = await openVPool({ name: "grow", directory, backend, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 600_000, ...overrides });
    pools.add(vpool);
    return vpool;
  };
  const close = async (vpool: VPool): Promise<void> => {
    await vpool.close();
    pools.delete(vpool);
  };
  const backendConfig = async (vpool: VPool, name: string) => {
    const info = vpool.listVolumes().find((volume) => volume.name === name)!;
    return decodeVolumeConfig(await backend.get(info.namespace, VOLUME_CONFIG_KEY));
  };

  beforeEach(function () {
    backend = new MemoryObjectStore();
    random = new SeededRandom(seedFromEnvironment());
  });
  afterEach(async function () {
    for (const vpool of pools) await vpool.close().catch(() => undefined);
    pools.clear();
  });
  after(async function () {
    await tempDirs.removeAll();
  });

  it("grows in place: the old data stays, the new range reads zeros and takes writes; restart and restore keep the size", async function () {
    const directory = await tempDirs.make();
    const vpool = await open(directory);
    const volume = await vpool.createVolume("disk", SIZE_BYTES);
    const head = random.bytes(SIZE_BYTES);
    await volume.write(0, head);
    await expectVolumeError(volume.write(SIZE_BYTES, Buffer.alloc(4096, 1)), "OutOfRange", "before the resize: ");

    const info = await vpool.resizeVolume("disk", 3 * SIZE_BYTES);
    assert.equal(info.sizeBytes, 3 * SIZE_BYTES);
    assert.equal(volume.sizeBytes, 3 * SIZE_BYTES, "the running Volume has the new size");
    assert.deepEqual(await volume.read(SIZE_BYTES, 4 * MIB), Buffer.alloc(4 * MIB), "the new range is a hole");
    const tail = random.bytes(SIZE_BYTES);
    await volume.write(2 * SIZE_BYTES, tail);
    await volume.flush();
    assert.equal((await backendConfig(vpool, "disk")).sizeBytes, 3 * SIZE_BYTES, "volume.json on the backend");
    const expected = Buffer.concat([head, Buffer.alloc(SIZE_BYTES), tail]);
    assert.ok((await readWholeDevice(volume)).equals(expected));

    await close(vpool);
    const restarted = await open(directory);
    assert.equal(restarted.getVolume("disk")?.sizeBytes, 3 * SIZE_BYTES, "local restart");
    assert.ok((await readWholeDevice(restarted.getVolume("disk")!)).equals(expected));
    await close(restarted);

    const newHost = await open(await tempDirs.make());
    assert.equal(newHost.getVolume("disk")?.sizeBytes, 3 * SIZE_BYTES, "restore from the backend");
    assert.ok((await readWholeDevice(newHost.getVolume("disk")!)).equals(expected));
  });

  it("refuses to shrink, to grow a template, and sizes that are not whole clusters; the same size is a no-op", async function () {
    const vpool = await open(await tempDirs.make());
    await vpool.createVolume("disk", SIZE_BYTES);
    const shrink = await expectVolumeError(vpool.resizeVolume("disk", SIZE_BYTES / 2), "Invalid");
    assert.match(shrink.message, /can only grow: shrinking would cut off data/);
    assert.match((await expectVolumeError(vpool.resizeVolume("disk", SIZE_BYTES + 512), "Invalid")).message, /multiple of 4096/);
    await expectVolumeError(vpool.resizeVolume("nope", 2 * SIZE_BYTES), "NotFound");
    assert.equal((await vpool.resizeVolume("disk", SIZE_BYTES)).sizeBytes, SIZE_BYTES);
    await vpool.setTemplate("disk");
    assert.match((await expectVolumeError(vpool.resizeVolume("disk", 2 * SIZE_BYTES), "ReadOnly")).message, /grow a clone instead/);
  });

  it("snapshots and their clones keep the size they were taken at; a rollback keeps the grown size", async function () {
    const vpool = await open(await tempDirs.make());
    const volume = await vpool.createVolume("disk", SIZE_BYTES);
    const data = random.bytes(SIZE_BYTES);
    await volume.write(0, data);
    await vpool.createSnapshot("disk", "small");
    await vpool.resizeVolume("disk", 2 * SIZE_BYTES);
    await volume.write(SIZE_BYTES, Buffer.alloc(SIZE_BYTES, 7));
    await vpool.createSnapshot("disk", "big");
    assert.deepEqual(vpool.listSnapshots("disk").map((snapshot) => [snapshot.name, snapshot.sizeBytes]), [["small", SIZE_BYTES], ["big", 2 * SIZE_BYTES]]);
    const small = await vpool.cloneVolume("from-small", { volume: "disk", snapshot: "small" });
    assert.equal(small.sizeBytes, SIZE_BYTES);
    assert.ok((await readWholeDevice(small)).equals(data));
    const big = await vpool.cloneVolume("from-big", { volume: "disk", snapshot: "big" });
    assert.equal(big.sizeBytes, 2 * SIZE_BYTES);
    await vpool.resizeVolume("from-small", 2 * SIZE_BYTES);
    assert.ok((await small.read(SIZE_BYTES, SIZE_BYTES)).equals(Buffer.alloc(SIZE_BYTES)), "a grown clone reads zeros past its snapshot");
    await vpool.deleteVolume("from-small");
    await vpool.deleteVolume("from-big");
    const rolledBack = await vpool.rollbackVolume("disk", "small");
    assert.equal(rolledBack.sizeBytes, 2 * SIZE_BYTES);
    assert.ok((await readWholeDevice(rolledBack)).equals(Buffer.concat([data, Buffer.alloc(SIZE_BYTES)])));
  });

  it("per-vDisk overrides: checked, stored on the backend, applied at once, restored on a new host, cleared with {}", async function () {
    const vpool = await open(await tempDirs.make());
    const quick = await vpool.createVolume("quick", SIZE_BYTES);
    const slow = await vpool.createVolume("slow", SIZE_BYTES);
    assert.deepEqual(quick.info().overrides, {});
    assert.match((await expectVolumeError(vpool.setVolumeOverrides("quick", { writeBufferSizeBytes: 1 } as never), "Invalid")).message,
      /writeBufferSizeBytes cannot be set per vDisk; these can: scoMaxAgeMs/);
    assert.match((await expectVolumeError(vpool.setVolumeOverrides("quick", { uploadConcurrency: 0 }), "Invalid")).message,
      /vDisk quick setting uploadConcurrency = 0 must be an integer in \[1, 64\]/);
    assert.match((await expectVolumeError(vpool.setVolumeOverrides("quick", { scrubLiveFractionKeep: 2 }), "Invalid")).message, /must be in \[0, 1\]/);
    assert.deepEqual(quick.info().overrides, {}, "nothing changed by a refused request");

    const info = await vpool.setVolumeOverrides("quick", { scoMaxAgeMs: 50, uploadConcurrency: 4 });
    assert.deepEqual(info.overrides, { scoMaxAgeMs: 50, uploadConcurrency: 4 });
    assert.equal(vpool.volumeSettings("quick").scoMaxAgeMs, 50);
    assert.equal(vpool.volumeSettings("slow").scoMaxAgeMs, 600_000, "the neighbour keeps the vPool's settings");
    assert.deepEqual((await backendConfig(vpool, "quick")).overrides, { scoMaxAgeMs: 50, uploadConcurrency: 4 });

    await quick.write(0, random.bytes(MIB));
    await slow.write(0, random.bytes(MIB));
    assert.ok(await waitFor(() => quick.stats().notUploadedBytes === 0, 10_000), "the short SCO age got quick's data to the backend");
    assert.ok(slow.stats().notUploadedBytes > 0, "slow's data waits for its (vPool) SCO age");

    await close(vpool);
    const newHost = await open(await tempDirs.make());
    assert.deepEqual(newHost.getVolume("quick")?.info().overrides, { scoMaxAgeMs: 50, uploadConcurrency: 4 });
    assert.deepEqual((await newHost.setVolumeOverrides("quick", {})).overrides, {});
    assert.equal((await backendConfig(newHost, "quick")).overrides, undefined, "cleared: volume.json has no overrides field");
    assert.equal(newHost.volumeSettings("quick").scoMaxAgeMs, 600_000);
  });

  it("vPool settings change while it runs: a bigger write buffer lets a stalled write through; checked like at start", async function () {
    const failing = new FailingObjectStore(backend, { seed: random.seed });
    const vpool = await openVPool({ name: "live", directory: await tempDirs.make(), backend: failing, scoSizeBytes: 4 * MIB, writeBufferSizeBytes: 8 * MIB, scoMaxAgeMs: 20 });
    pools.add(vpool);
    const volume = await vpool.createVolume("disk", 64 * MIB);
    failing.startOutage();
    const data = random.bytes(16 * MIB);
    let done = false;
    const writing = (async () => {
      for (let offset = 0; offset < data.length; offset += MIB) await volume.write(offset, data.subarray(offset, offset + MIB));
      done = true;
    })();
    assert.ok(await waitFor(() => volume.stats().stalledWritesNow > 0, 10_000), "the 8 MiB buffer fills while the backend is down");
    await sleep(200);
    assert.equal(done, false);
    const settings = vpool.updateSettings({ writeBufferSizeBytes: 64 * MIB, readCacheSizeBytes: 32 * MIB });
    assert.equal(settings.writeBufferSizeBytes, 64 * MIB);
    assert.equal(settings.writeBufferTriggerGapBytes, 8 * MIB, "the gap keeps its default proportion");
    await writing;
    assert.ok((await volume.read(0, data.length)).equals(data));
    failing.endOutage();
    await volume.flush();

    assert.match((await expectVolumeError(Promise.resolve().then(() => vpool.updateSettings({ writeBufferSizeBytes: 4 * MIB })), "Invalid")).message,
      /writeBufferSizeBytes = 4194304 must be an integer in \[8388608,/);
    assert.match((await expectVolumeError(Promise.resolve().then(() => vpool.updateSettings({ metadataCacheSizeBytes: 8 * MIB })), "Invalid")).message,
      /read when a vDisk opens: set it in the StorageDriver's config and restart it/);
    assert.equal(vpool.settings.writeBufferSizeBytes, 64 * MIB, "a refused change changes nothing");
    vpool.updateSettings({ scoSizeBytes: 8 * MIB });
    assert.equal((await vpool.createVolume("later", 64 * MIB)).info().scoSizeBytes, 8 * MIB, "a new SCO size applies to new vDisks");
    assert.equal(volume.info().scoSizeBytes, 4 * MIB);
  });

  it("a read cache resized smaller keeps its most recently used clusters", function () {
    const cache = new ReadCache(8 * 4096);
    for (let index = 0; index < 8; index++) cache.set(`k${index}`, Buffer.alloc(4096, index));
    cache.get("k0"); // k0 becomes the most recent
    cache.resize(3 * 4096);
    assert.equal(cache.sizeBytes, 3 * 4096);
    assert.deepEqual(["k0", "k7", "k6", "k5", "k1"].map((key) => cache.has(key)), [true, true, true, false, false]);
    assert.deepEqual(cache.get("k0"), Buffer.alloc(4096, 0));
    cache.resize(0);
    assert.equal(cache.has("k0"), false);
  });
});

// Goal: pin down the engine behaviour the model and crash tests only see indirectly: group commit
// (concurrent flushes share fsyncs), FUA, the metadata being only a cache of the TLogs (lost or
// damaged metadata.sqlite is rebuilt), the read cache and coalesced ranged backend reads, prefetch
// on sequential reads, and eviction of uploaded SCOs under a small write buffer.
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MemoryObjectStore } from "../../../volumedriver/src/backend/memory-store.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import { CLUSTER_SIZE_BYTES, MIB, type Volume, type VPool, type VPoolConfig } from "../../../volumedriver/src/engine/vpool-types.ts";
import { readWholeDevice, sha256 } from "../../helpers/device-hash.ts";
import { SeededRandom } from "../../helpers/seeded-random.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

const DEVICE_SIZE_BYTES = 32 * MIB;

describe("volumedriver engine: durability details and caches", function () {
  this.timeout(60_000);
  const tempDirs = new TempDirs("engine-durability");
  let backend: MemoryObjectStore;
  const pools: VPool[] = [];

  async function open(directory: string, overrides: Partial<VPoolConfig> = {}): Promise<VPool> {
    const vpool = await openVPool({ name: "caches", directory, backend, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 60_000, ...overrides });
    pools.push(vpool);
    return vpool;
  }

  function volumeOf(vpool: VPool): Volume {
    const volume = vpool.getVolume("disk");
    assert.ok(volume, `disk is present: ${JSON.stringify(vpool.listVolumes())}`);
    return volume;
  }

  beforeEach(function () {
    backend = new MemoryObjectStore();
  });

  afterEach(async function () {
    for (const vpool of pools.splice(0)) await vpool.close({ timeoutMs: 1_000 });
    await backend.close();
    await tempDirs.removeAll();
  });

  it("shares fsyncs among concurrent flushes, and flushed data survives a crash", async function () {
    // Goal: 64 writers that each write then flush make far fewer fsync rounds than flushes (group commit).
    const directory = await tempDirs.make();
    const vpool = await open(directory);
    const volume = await vpool.createVolume("disk", DEVICE_SIZE_BYTES);
    const model = Buffer.alloc(DEVICE_SIZE_BYTES);
    const random = new SeededRandom(7);
    await Promise.all(Array.from({ length: 64 }, async (_, writer) => {
      for (let round = 0; round < 8; round++) {
        const data = random.bytes(CLUSTER_SIZE_BYTES);
        const offset = (writer * 8 + round) * CLUSTER_SIZE_BYTES;
        await volume.write(offset, data);
        data.copy(model, offset);
        await volume.flush();
      }
    }));
    const stats = volume.stats();
    assert.equal(stats.flushOps, 512);
    assert.ok(stats.flushSyncs > 0 && stats.flushSyncs <= stats.flushOps / 4, `fsync rounds ${stats.flushSyncs} for ${stats.flushOps} flushes`);
    await vpool.simulateCrash();
    const reopened = volumeOf(await open(directory));
    assert.equal(sha256(await readWholeDevice(reopened)), sha256(model));
  });

  it("makes a FUA write durable without a separate flush", async function () {
    // Goal: a write with fua resolves only once durable: it survives a crash right after.
    const directory = await tempDirs.make();
    const vpool = await open(directory);
    const volume = await vpool.createVolume("disk", DEVICE_SIZE_BYTES);
    const data = new SeededRandom(8).bytes(3 * CLUSTER_SIZE_BYTES + 100);
    await volume.write(5 * CLUSTER_SIZE_BYTES + 7, data, { fua: true });
    assert.ok(volume.stats().flushSyncs >= 1);
    await vpool.simulateCrash();
    const reopened = volumeOf(await open(directory));
    assert.ok((await reopened.read(5 * CLUSTER_SIZE_BYTES + 7, data.length)).equals(data));
  });

  for (const damage of ["deleted", "overwritten with garbage"] as const) {
    it(`rebuilds metadata.sqlite from the TLogs when it is ${damage}`, async function () {
      // Goal: the metadata is a cache: losing it loses nothing, whether the TLogs are on the backend or only local.
      const directory = await tempDirs.make();
      const vpool = await open(directory);
      const volume = await vpool.createVolume("disk", DEVICE_SIZE_BYTES);
      const model = Buffer.alloc(DEVICE_SIZE_BYTES);
      const random = new SeededRandom(9);
      const writeSome = async (count: number): Promise<void> => {
        for (let index = 0; index < count; index++) {
          const length = random.integer(1, 64 * 1024);
          const offset = random.integer(0, DEVICE_SIZE_BYTES - length);
          const data = random.bytes(length);
          await volume.write(offset, data);
          data.copy(model, offset);
        }
      };
      await writeSome(300);
      await volume.trim(MIB, 2 * MIB);
      model.fill(0, MIB, 3 * MIB);
      await volume.drain(); // these TLogs are on the backend and gone locally
      await writeSome(300); // these only in local TLogs
      await volume.flush();
      await vpool.simulateCrash();
      const metadataPath = join(directory, "volumes", "disk", "metadata.sqlite");
      if (damage === "deleted") {
        for (const suffix of ["", "-wal", "-shm"]) await rm(`${metadataPath}${suffix}`, { force: true });
      } else {
        for (const suffix of ["-wal", "-shm"]) await rm(`${metadataPath}${suffix}`, { force: true });
        await writeFile(metadataPath, new SeededRandom(10).bytes(64 * 1024));
      }
      const reopened = volumeOf(await open(directory));
      assert.equal(sha256(await readWholeDevice(reopened)), sha256(model));
    });
  }

  it("serves repeated backend reads from the read cache and coalesces adjacent clusters", async function () {
    // Goal: after a restart from the backend, one 64 KiB read of clusters adjacent in one SCO is one ranged
    // get, and reading it again costs no backend request.
    const first = await open(await tempDirs.make());
    const volume = await first.createVolume("disk", DEVICE_SIZE_BYTES);
    const data = new SeededRandom(11).bytes(4 * MIB);
    await volume.write(0, data);
    await volume.drain();
    await first.close();
    const restored = volumeOf(await open(await tempDirs.make()));
    assert.ok((await restored.read(128 * 1024, 64 * 1024)).equals(data.subarray(128 * 1024, 192 * 1024)));
    const afterFirst = restored.stats();
    assert.equal(afterFirst.backendReads, 1, "one ranged get for 16 adjacent clusters");
    assert.ok((await restored.read(128 * 1024, 64 * 1024)).equals(data.subarray(128 * 1024, 192 * 1024)));
    const afterSecond = restored.stats();
    assert.equal(afterSecond.backendReads, 1, "the second read is served from the read cache");
    assert.equal(afterSecond.readCacheHits - afterFirst.readCacheHits, 16);
  });

  it("prefetches ahead of sequential reads", async function () {
    // Goal: 64 KiB sequential reads over 4 MiB on the backend need far fewer backend requests than reads.
    const first = await open(await tempDirs.make());
    const volume = await first.createVolume("disk", DEVICE_SIZE_BYTES);
    const data = new SeededRandom(12).bytes(4 * MIB);
    await volume.write(0, data);
    await volume.drain();
    await first.close();
    const restored = volumeOf(await open(await tempDirs.make()));
    const readBytes = 64 * 1024;
    for (let offset = 0; offset < data.length; offset += readBytes) {
      assert.ok((await restored.read(offset, readBytes)).equals(data.subarray(offset, offset + readBytes)), `bytes at ${offset}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    const stats = restored.stats();
    const reads = data.length / readBytes;
    assert.ok(stats.readCacheHits > 0, `prefetched clusters were read from the cache (${JSON.stringify(stats)})`);
    assert.ok(stats.backendReads <= reads / 2, `${stats.backendReads} backend reads for ${reads} sequential reads`);
  });

  it("evicts uploaded SCOs to keep the write buffer bounded, and still reads them back", async function () {
    // Goal: with a 16 MiB write buffer, writing 48 MiB leaves at most the buffer locally; evicted data reads from the backend.
    const vpool = await open(await tempDirs.make(), { writeBufferSizeBytes: 16 * MIB, scoMaxAgeMs: 200 });
    const volume = await vpool.createVolume("disk", 64 * MIB);
    const data = new SeededRandom(13).bytes(48 * MIB);
    for (let offset = 0; offset < data.length; offset += MIB) await volume.write(offset, data.subarray(offset, offset + MIB));
    await volume.drain();
    const deadline = Date.now() + 10_000;
    while (volume.stats().writeBufferBytes > 16 * MIB && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const stats = volume.stats();
    assert.ok(stats.writeBufferBytes <= 16 * MIB, `local SCO bytes ${stats.writeBufferBytes} within the 16 MiB buffer`);
    const before = stats.backendReads;
    assert.ok((await volume.read(0, 48 * MIB)).equals(data));
    assert.ok(volume.stats().backendReads > before, "evicted clusters came from the backend");
  });
});

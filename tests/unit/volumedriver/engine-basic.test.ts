// Goal: pin down the basic behaviour of one vDisk through the public engine interface (openVPool):
// thin reads, byte-granular writes, trim, write-zeroes, block status, range checks, management
// errors, reopen, SCO sealing and the statistics counters.
import assert from "node:assert/strict";
import { MemoryObjectStore } from "../../../volumedriver/src/backend/memory-store.ts";
import type { ObjectStore } from "../../../volumedriver/src/backend/object-store.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import type { BlockExtent } from "../../../volumedriver/src/engine/block-device.ts";
import { CLUSTER_SIZE_BYTES, MIB, type Volume, type VPool, type VPoolConfig } from "../../../volumedriver/src/engine/vpool-types.ts";
import { readWholeDevice, sha256 } from "../../helpers/device-hash.ts";
import { SeededRandom } from "../../helpers/seeded-random.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";
import { expectVolumeError } from "../../helpers/volume-assertions.ts";

const CLUSTER = CLUSTER_SIZE_BYTES;
const DEVICE_SIZE_BYTES = 16 * MIB;

describe("volumedriver engine: basic volume behaviour", function () {
  this.timeout(60_000);
  const tempDirs = new TempDirs("engine-basic");
  let backend: ObjectStore;
  let directory: string;
  let vpool: VPool | undefined;
  let volume: Volume;

  function config(overrides: Partial<VPoolConfig> = {}): VPoolConfig {
    return { name: "basic", directory, backend, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 1_000, ...overrides };
  }

  beforeEach(async function () {
    backend = new MemoryObjectStore();
    directory = await tempDirs.make();
    vpool = await openVPool(config());
    volume = await vpool.createVolume("disk0", DEVICE_SIZE_BYTES);
  });

  afterEach(async function () {
    if (vpool !== undefined) await vpool.close();
    vpool = undefined;
    await backend.close();
    await tempDirs.removeAll();
  });

  /** Closes the vPool cleanly and opens it again on the same directory and backend. */
  async function reopen(): Promise<Volume> {
    await vpool!.close();
    vpool = undefined;
    vpool = await openVPool(config());
    const reopened = vpool.getVolume("disk0");
    assert.ok(reopened, "disk0 is back after reopening the vPool");
    return reopened;
  }

  function pattern(lengthBytes: number, seed: number): Buffer {
    return new SeededRandom(seed).bytes(lengthBytes);
  }

  function assertExtentsCover(extents: BlockExtent[], offsetBytes: number, lengthBytes: number): void {
    let cursor = offsetBytes;
    for (const extent of extents) {
      assert.equal(extent.offsetBytes, cursor, `extents are contiguous: ${JSON.stringify(extents)}`);
      assert.ok(extent.lengthBytes > 0, "no empty extents");
      cursor += extent.lengthBytes;
    }
    assert.equal(cursor, offsetBytes + lengthBytes, `extents cover the range: ${JSON.stringify(extents)}`);
    for (let index = 1; index < extents.length; index++) {
      assert.notEqual(extents[index]!.allocated, extents[index - 1]!.allocated, `adjacent extents are merged: ${JSON.stringify(extents)}`);
    }
  }

  it("a fresh volume reads as zeros and is one hole", async function () {
    // Goal: a thin volume never written reads zeros everywhere and reports no allocation.
    assert.equal(volume.sizeBytes, DEVICE_SIZE_BYTES);
    assert.equal(volume.readOnly, false);
    const whole = await readWholeDevice(volume);
    assert.ok(whole.equals(Buffer.alloc(DEVICE_SIZE_BYTES)), "fresh volume is all zeros");
    assert.deepEqual(await volume.blockStatus(0, DEVICE_SIZE_BYTES), [{ offsetBytes: 0, lengthBytes: DEVICE_SIZE_BYTES, allocated: false }]);
    const info = volume.info();
    assert.equal(info.name, "disk0");
    assert.equal(info.sizeBytes, DEVICE_SIZE_BYTES);
    assert.equal(info.clusterSizeBytes, CLUSTER);
    assert.equal(info.vpool, "basic");
    assert.equal(info.state, "running");
  });

  it("aligned writes read back exactly", async function () {
    // Goal: cluster-aligned writes of one and many clusters read back, neighbours stay zero.
    const one = pattern(CLUSTER, 1);
    const many = pattern(16 * CLUSTER, 2);
    await volume.write(0, one);
    await volume.write(100 * CLUSTER, many);
    assert.ok((await volume.read(0, CLUSTER)).equals(one));
    assert.ok((await volume.read(100 * CLUSTER, 16 * CLUSTER)).equals(many));
    assert.ok((await volume.read(CLUSTER, 99 * CLUSTER)).equals(Buffer.alloc(99 * CLUSTER)), "gap stays zero");
    assert.ok((await volume.read(116 * CLUSTER, CLUSTER)).equals(Buffer.alloc(CLUSTER)), "after stays zero");
    // The last cluster of the device.
    const last = pattern(CLUSTER, 3);
    await volume.write(DEVICE_SIZE_BYTES - CLUSTER, last);
    assert.ok((await volume.read(DEVICE_SIZE_BYTES - CLUSTER, CLUSTER)).equals(last));
  });

  it("unaligned writes read-modify-write the touched clusters", async function () {
    // Goal: byte-granular writes inside one cluster and across a cluster edge keep the bytes around them.
    const base = pattern(4 * CLUSTER, 10);
    await volume.write(8 * CLUSTER, base);
    const expected = Buffer.from(base);
    const small = pattern(7, 11);
    await volume.write(8 * CLUSTER + 3, small);
    small.copy(expected, 3);
    const straddle = pattern(CLUSTER + 1000, 12);
    await volume.write(9 * CLUSTER + 3000, straddle);
    straddle.copy(expected, CLUSTER + 3000);
    assert.ok((await volume.read(8 * CLUSTER, 4 * CLUSTER)).equals(expected));
    // Unaligned reads of the same data.
    assert.ok((await volume.read(8 * CLUSTER + 1, 5)).equals(expected.subarray(1, 6)));
    assert.ok((await volume.read(9 * CLUSTER + 2999, 1002)).equals(expected.subarray(CLUSTER + 2999, CLUSTER + 4001)));
    // An unaligned write into a hole: the rest of the cluster reads as zeros.
    const single = Buffer.from([0xab]);
    await volume.write(50 * CLUSTER + 4095, single);
    const cluster50 = await volume.read(50 * CLUSTER, CLUSTER);
    assert.equal(cluster50[4095], 0xab);
    assert.ok(cluster50.subarray(0, 4095).equals(Buffer.alloc(4095)));
  });

  it("a write spanning many clusters with unaligned edges reads back", async function () {
    // Goal: a 1 MiB write starting and ending mid-cluster lands exactly, including both partial edges.
    const before = pattern(300 * CLUSTER, 20);
    await volume.write(1000 * CLUSTER, before);
    const data = pattern(MIB + 3, 21);
    const offset = 1000 * CLUSTER + 4095;
    await volume.write(offset, data);
    const expected = Buffer.from(before);
    data.copy(expected, 4095);
    assert.ok((await volume.read(1000 * CLUSTER, 300 * CLUSTER)).equals(expected));
  });

  it("concurrent unaligned writes to disjoint bytes of one cluster all land", async function () {
    // Goal: read-modify-write of partial clusters is serialised; no concurrent write is lost.
    const writes: Promise<void>[] = [];
    const expected = Buffer.alloc(2 * CLUSTER);
    for (let index = 0; index < 64; index++) {
      const data = Buffer.alloc(100, index + 1);
      const offset = index * 128;
      data.copy(expected, offset);
      writes.push(volume.write(200 * CLUSTER + offset, data));
    }
    await Promise.all(writes);
    assert.ok((await volume.read(200 * CLUSTER, 2 * CLUSTER)).equals(expected));
  });

  it("trim makes whole clusters holes and zeroes partial edges", async function () {
    // Goal: trim reads back as zeros; whole clusters become holes, partially trimmed ones stay allocated.
    await volume.write(0, pattern(10 * CLUSTER, 30));
    await volume.trim(2 * CLUSTER + 100, 4 * CLUSTER);
    const after = await volume.read(0, 10 * CLUSTER);
    const expected = pattern(10 * CLUSTER, 30);
    expected.fill(0, 2 * CLUSTER + 100, 6 * CLUSTER + 100);
    assert.ok(after.equals(expected));
    const extents = await volume.blockStatus(0, 10 * CLUSTER);
    assertExtentsCover(extents, 0, 10 * CLUSTER);
    assert.deepEqual(extents, [
      { offsetBytes: 0, lengthBytes: 3 * CLUSTER, allocated: true },
      { offsetBytes: 3 * CLUSTER, lengthBytes: 3 * CLUSTER, allocated: false },
      { offsetBytes: 6 * CLUSTER, lengthBytes: 4 * CLUSTER, allocated: true },
    ]);
    // Trimming a hole is fine.
    await volume.trim(3000 * CLUSTER, 10 * CLUSTER);
    assert.ok((await volume.read(3000 * CLUSTER, 10 * CLUSTER)).equals(Buffer.alloc(10 * CLUSTER)));
  });

  it("writeZeroes punches holes unless noHole is set", async function () {
    // Goal: writeZeroes reads back zeros; without noHole whole clusters become holes, with noHole they stay allocated.
    await volume.write(0, pattern(8 * CLUSTER, 40));
    await volume.writeZeroes(CLUSTER, 2 * CLUSTER);
    await volume.writeZeroes(4 * CLUSTER, 2 * CLUSTER, { noHole: true });
    const expected = pattern(8 * CLUSTER, 40);
    expected.fill(0, CLUSTER, 3 * CLUSTER);
    expected.fill(0, 4 * CLUSTER, 6 * CLUSTER);
    assert.ok((await volume.read(0, 8 * CLUSTER)).equals(expected));
    assert.deepEqual(await volume.blockStatus(0, 8 * CLUSTER), [
      { offsetBytes: 0, lengthBytes: CLUSTER, allocated: true },
      { offsetBytes: CLUSTER, lengthBytes: 2 * CLUSTER, allocated: false },
      { offsetBytes: 3 * CLUSTER, lengthBytes: 5 * CLUSTER, allocated: true },
    ]);
    // writeZeroes with noHole on a hole allocates it; unaligned writeZeroes zeroes just the bytes.
    await volume.writeZeroes(100 * CLUSTER, CLUSTER, { noHole: true });
    assert.deepEqual(await volume.blockStatus(100 * CLUSTER, CLUSTER), [{ offsetBytes: 100 * CLUSTER, lengthBytes: CLUSTER, allocated: true }]);
    await volume.write(200 * CLUSTER, Buffer.alloc(CLUSTER, 0xff));
    await volume.writeZeroes(200 * CLUSTER + 10, 20, { fua: true });
    const cluster200 = await volume.read(200 * CLUSTER, CLUSTER);
    const expected200 = Buffer.alloc(CLUSTER, 0xff).fill(0, 10, 30);
    assert.ok(cluster200.equals(expected200));
  });

  it("blockStatus returns merged extents clipped to the range", async function () {
    // Goal: block status merges adjacent clusters of the same kind and clips the first and last extent to the range.
    await volume.write(0, pattern(3 * CLUSTER, 50));
    await volume.write(5 * CLUSTER, pattern(CLUSTER, 51));
    await volume.write(6 * CLUSTER + 10, pattern(10, 52));
    assert.deepEqual(await volume.blockStatus(0, 10 * CLUSTER), [
      { offsetBytes: 0, lengthBytes: 3 * CLUSTER, allocated: true },
      { offsetBytes: 3 * CLUSTER, lengthBytes: 2 * CLUSTER, allocated: false },
      { offsetBytes: 5 * CLUSTER, lengthBytes: 2 * CLUSTER, allocated: true },
      { offsetBytes: 7 * CLUSTER, lengthBytes: 3 * CLUSTER, allocated: false },
    ]);
    const clipped = await volume.blockStatus(CLUSTER + 100, 3 * CLUSTER);
    assertExtentsCover(clipped, CLUSTER + 100, 3 * CLUSTER);
    assert.deepEqual(
      clipped.map((extent) => extent.allocated),
      [true, false],
    );
    assert.equal(clipped[0]!.lengthBytes, 2 * CLUSTER - 100);
    // The whole device: data, then one big hole up to the end.
    const whole = await volume.blockStatus(0, DEVICE_SIZE_BYTES);
    assertExtentsCover(whole, 0, DEVICE_SIZE_BYTES);
    assert.deepEqual(whole.at(-1), { offsetBytes: 7 * CLUSTER, lengthBytes: DEVICE_SIZE_BYTES - 7 * CLUSTER, allocated: false });
  });

  it("out-of-range I/O fails with OutOfRange and the volume keeps working", async function () {
    // Goal: every request outside the device is refused with OutOfRange, changes nothing, and later I/O works.
    const data = pattern(CLUSTER, 60);
    await volume.write(0, data);
    const size = DEVICE_SIZE_BYTES;
    await expectVolumeError(volume.read(size, 1), "OutOfRange", "read at end: ");
    await expectVolumeError(volume.read(size - CLUSTER, CLUSTER + 1), "OutOfRange", "read past end: ");
    await expectVolumeError(volume.read(size * 2, CLUSTER), "OutOfRange", "read far past end: ");
    await expectVolumeError(volume.write(size, Buffer.alloc(1)), "OutOfRange", "write at end: ");
    await expectVolumeError(volume.write(size - 10, Buffer.alloc(11)), "OutOfRange", "write past end: ");
    await expectVolumeError(volume.trim(size - CLUSTER, 2 * CLUSTER), "OutOfRange", "trim past end: ");
    await expectVolumeError(volume.writeZeroes(size, CLUSTER), "OutOfRange", "writeZeroes past end: ");
    await expectVolumeError(volume.blockStatus(size, CLUSTER), "OutOfRange", "blockStatus past end: ");
    // Negative offsets are refused too (OutOfRange or Invalid are both clear errors).
    for (const operation of [volume.read(-1, 10), volume.write(-CLUSTER, Buffer.alloc(CLUSTER))]) {
      await assert.rejects(operation, (error: Error) => /OutOfRange|Invalid/.test(error.name));
    }
    // Nothing changed and the volume still works.
    assert.ok((await volume.read(size - CLUSTER, CLUSTER)).equals(Buffer.alloc(CLUSTER)));
    assert.ok((await volume.read(0, CLUSTER)).equals(data));
    const tail = pattern(CLUSTER, 61);
    await volume.write(size - CLUSTER, tail);
    assert.ok((await volume.read(size - CLUSTER, CLUSTER)).equals(tail));
    await volume.flush();
  });

  it("createVolume refuses a taken name, a bad size and a bad name", async function () {
    // Goal: management errors are the documented coarse kinds: Exists for a taken name, Invalid for bad input.
    await expectVolumeError(vpool!.createVolume("disk0", DEVICE_SIZE_BYTES), "Exists", "taken name: ");
    await expectVolumeError(vpool!.createVolume("disk1", 4097), "Invalid", "size not a multiple of 4096: ");
    await expectVolumeError(vpool!.createVolume("disk1", 0), "Invalid", "size 0: ");
    await expectVolumeError(vpool!.createVolume("disk1", -CLUSTER), "Invalid", "negative size: ");
    await expectVolumeError(vpool!.createVolume("Bad Name!", MIB), "Invalid", "bad name: ");
    await expectVolumeError(vpool!.createVolume("", MIB), "Invalid", "empty name: ");
    assert.deepEqual(
      vpool!.listVolumes().map((info) => info.name),
      ["disk0"],
    );
    const second = await vpool!.createVolume("disk1", MIB);
    assert.equal(vpool!.getVolume("disk1"), second);
    assert.deepEqual(vpool!.listVolumes().map((info) => info.name).sort(), ["disk0", "disk1"]);
    await vpool!.deleteVolume("disk1");
    assert.equal(vpool!.getVolume("disk1"), undefined);
    await expectVolumeError(vpool!.deleteVolume("disk1"), "NotFound", "delete missing: ");
    // The name is free again after deletion.
    const again = await vpool!.createVolume("disk1", MIB);
    assert.ok((await again.read(0, MIB)).equals(Buffer.alloc(MIB)), "a re-created volume starts empty");
  });

  it("close then reopen on the same directory keeps the data", async function () {
    // Goal: a clean close and openVPool on the same directory and backend bring back every byte.
    const random = new SeededRandom(70);
    const expected = Buffer.alloc(DEVICE_SIZE_BYTES);
    for (let index = 0; index < 200; index++) {
      const lengthBytes = random.integer(1, 64 * 1024);
      const offset = random.integer(0, DEVICE_SIZE_BYTES - lengthBytes);
      const data = random.bytes(lengthBytes);
      await volume.write(offset, data);
      data.copy(expected, offset);
    }
    await volume.trim(CLUSTER, 64 * CLUSTER);
    expected.fill(0, CLUSTER, 65 * CLUSTER);
    const closedVolume = volume;
    volume = await reopen();
    await expectVolumeError(closedVolume.read(0, CLUSTER), "Closed", "read on a closed volume: ");
    assert.equal(sha256(await readWholeDevice(volume)), sha256(expected));
    // And once more, with writes after the reopen.
    const late = pattern(3 * CLUSTER, 71);
    await volume.write(7 * CLUSTER, late);
    late.copy(expected, 7 * CLUSTER);
    volume = await reopen();
    assert.equal(sha256(await readWholeDevice(volume)), sha256(expected));
  });

  it("small SCOs are sealed and uploaded, and the data survives", async function () {
    // Goal: with 4 MiB SCOs, 24 MiB of writes seal several SCOs and TLogs that drain to the backend.
    const random = new SeededRandom(80);
    const expected = Buffer.alloc(DEVICE_SIZE_BYTES);
    for (let round = 0; round < 24; round++) {
      const data = random.bytes(MIB);
      const offset = random.integer(0, DEVICE_SIZE_BYTES / CLUSTER - 256) * CLUSTER;
      await volume.write(offset, data);
      data.copy(expected, offset);
    }
    await volume.drain();
    const stats = volume.stats();
    assert.equal(stats.notUploadedBytes, 0, "nothing left to upload after drain");
    assert.ok(stats.backendTlogNumber >= 1, `a TLog reached the backend (backendTlogNumber ${stats.backendTlogNumber})`);
    const namespace = volume.info().namespace;
    const objects = (await backend.list(namespace, { limitKeys: 1000 })).objects;
    const scoBytes = objects.filter((object) => object.sizeBytes >= MIB).reduce((sum, object) => sum + object.sizeBytes, 0);
    assert.ok(scoBytes >= 24 * MIB, `at least 24 MiB of SCO data on the backend, found ${scoBytes} in ${objects.length} objects`);
    assert.ok(objects.filter((object) => object.sizeBytes >= MIB).length >= 6, `24 MiB in 4 MiB SCOs means at least 6 SCOs: ${objects.map((object) => object.key).join(", ")}`);
    assert.equal(sha256(await readWholeDevice(volume)), sha256(expected));
  });

  it("statistics counters move with I/O", async function () {
    // Goal: stats() counts reads, writes, bytes and flushes.
    const before = volume.stats();
    await volume.write(0, pattern(2 * CLUSTER, 90));
    await volume.write(10, Buffer.from("hello"), { fua: true });
    await volume.read(0, CLUSTER);
    await Promise.all([volume.flush(), volume.flush(), volume.flush()]);
    const after = volume.stats();
    assert.ok(after.writeOps >= before.writeOps + 2, `writeOps ${before.writeOps} -> ${after.writeOps}`);
    assert.ok(after.writeBytes >= before.writeBytes + 2 * CLUSTER + 5, `writeBytes ${before.writeBytes} -> ${after.writeBytes}`);
    assert.ok(after.readOps >= before.readOps + 1, `readOps ${before.readOps} -> ${after.readOps}`);
    assert.ok(after.readBytes >= before.readBytes + CLUSTER, `readBytes ${before.readBytes} -> ${after.readBytes}`);
    assert.ok(after.flushOps >= before.flushOps + 1, `flushOps ${before.flushOps} -> ${after.flushOps}`);
    assert.ok(after.writeBufferBytes > 0, "written data is in the write buffer");
    assert.ok(after.notUploadedBytes > 0, "nothing was drained yet");
    await volume.drain();
    assert.equal(volume.stats().notUploadedBytes, 0);
  });

  it("the age-based seal uploads a slow writer's data without flush or drain", async function () {
    // Goal: the age-based seal (scoMaxAgeMs) uploads a slow writer's data without a flush or drain.
    await vpool!.close();
    vpool = await openVPool(config({ scoMaxAgeMs: 100 }));
    volume = vpool.getVolume("disk0")!;
    const data = pattern(CLUSTER, 100);
    await volume.write(0, data);
    const deadline = Date.now() + 10_000;
    while (volume.stats().notUploadedBytes > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(volume.stats().notUploadedBytes, 0, "a 100 ms scoMaxAgeMs uploads the data within 10 s");
    assert.ok((await volume.read(0, CLUSTER)).equals(data));
  });
});

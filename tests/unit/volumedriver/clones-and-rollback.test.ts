// Goal: the snapshot operations one by one, with the cases a model test rarely hits: a snapshot taken
// while writes are in flight holds exactly the writes acknowledged before it; names and states are
// checked with clear errors; clone chains 9 deep read through every level, also after a restore from
// the backend; what clones depend on cannot be deleted or rolled back away; a template refuses writes
// and clones without a snapshot name; rollback drops later data, later snapshots and their backend
// objects; a snapshot is `synced` only once the backend has it; snapshot views are read-only.
import assert from "node:assert/strict";
import { FailingObjectStore } from "../../../volumedriver/src/backend/failing-store.ts";
import { MemoryObjectStore } from "../../../volumedriver/src/backend/memory-store.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import { CLUSTER_SIZE_BYTES, MIB, type VPool, type VPoolConfig } from "../../../volumedriver/src/engine/vpool-types.ts";
import { hashDevice, sha256 } from "../../helpers/device-hash.ts";
import { SeededRandom, seedFromEnvironment } from "../../helpers/seeded-random.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";
import { expectVolumeError, waitFor } from "../../helpers/volume-assertions.ts";

const DEVICE_SIZE_BYTES = 8 * MIB;

describe("snapshots, clones, templates and rollback", function () {
  this.timeout(120_000);
  const tempDirs = new TempDirs("clones");
  const pools = new Set<VPool>();
  let backend: MemoryObjectStore;
  let random: SeededRandom;

  const open = async (overrides: Partial<VPoolConfig> = {}): Promise<VPool> => {
    const vpool = await openVPool({ name: "snaps", directory: await tempDirs.make(), backend, scoSizeBytes: 4 * MIB, ...overrides });
    pools.add(vpool);
    return vpool;
  };
  const close = async (vpool: VPool): Promise<void> => {
    await vpool.close();
    pools.delete(vpool);
  };
  const snapshotHash = async (vpool: VPool, volume: string, snapshot: string): Promise<string> => {
    const view = await vpool.openSnapshot(volume, snapshot);
    try {
      return await hashDevice(view);
    } finally {
      await view.close();
    }
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

  it("a snapshot holds the writes acknowledged before it and none started after it", async function () {
    const vpool = await open();
    const volume = await vpool.createVolume("a", DEVICE_SIZE_BYTES);
    const before = random.bytes(MIB);
    await volume.write(0, before);
    const taking = vpool.createSnapshot("a", "s1");
    const after = volume.write(0, random.bytes(MIB)); // issued after the snapshot call
    await Promise.all([taking, after]);
    const view = await vpool.openSnapshot("a", "s1");
    try {
      assert.ok((await view.read(0, MIB)).equals(before), "the snapshot holds the write acknowledged before it, not the later one");
      assert.equal(view.readOnly, true);
      await expectVolumeError(view.write(0, Buffer.alloc(CLUSTER_SIZE_BYTES)), "ReadOnly");
      await expectVolumeError(view.trim(0, CLUSTER_SIZE_BYTES), "ReadOnly");
      await expectVolumeError(view.read(DEVICE_SIZE_BYTES - 1, 2), "OutOfRange");
      const extents = await view.blockStatus(0, DEVICE_SIZE_BYTES);
      assert.deepEqual(extents, [
        { offsetBytes: 0, lengthBytes: MIB, allocated: true },
        { offsetBytes: MIB, lengthBytes: DEVICE_SIZE_BYTES - MIB, allocated: false },
      ]);
    } finally {
      await view.close();
    }
    await expectVolumeError(view.read(0, 1), "Closed");
  });

  it("checks names, duplicates and missing objects with clear errors", async function () {
    const vpool = await open();
    await vpool.createVolume("a", DEVICE_SIZE_BYTES);
    await expectVolumeError(vpool.createSnapshot("a", "bad@name"), "Invalid");
    await expectVolumeError(vpool.createSnapshot("a", ""), "Invalid");
    await expectVolumeError(vpool.createSnapshot("nope", "s"), "NotFound");
    await vpool.createSnapshot("a", "s");
    await expectVolumeError(vpool.createSnapshot("a", "s"), "Exists");
    await expectVolumeError(vpool.deleteSnapshot("a", "missing"), "NotFound");
    await expectVolumeError(vpool.rollbackVolume("a", "missing"), "NotFound");
    await expectVolumeError(vpool.openSnapshot("a", "missing"), "NotFound");
    await expectVolumeError(vpool.cloneVolume("a", { volume: "a", snapshot: "s" }), "Exists");
    await expectVolumeError(vpool.cloneVolume("b", { volume: "a" }), "Invalid"); // not a template
    await expectVolumeError(vpool.cloneVolume("Bad Name", { volume: "a", snapshot: "s" }), "Invalid");
  });

  it("reads through a clone chain 9 deep, also after a restore from the backend", async function () {
    let vpool = await open();
    const expected = Buffer.alloc(DEVICE_SIZE_BYTES);
    const base = await vpool.createVolume("level0", DEVICE_SIZE_BYTES);
    const first = random.bytes(DEVICE_SIZE_BYTES);
    await base.write(0, first);
    first.copy(expected);
    let parent = "level0";
    for (let level = 1; level <= 9; level++) {
      await vpool.createSnapshot(parent, `snap${level}`);
      const clone = await vpool.cloneVolume(`level${level}`, { volume: parent, snapshot: `snap${level}` });
      assert.deepEqual(clone.info().parent, { volume: parent, snapshot: `snap${level}` });
      assert.equal(sha256(await clone.read(0, DEVICE_SIZE_BYTES)), sha256(expected), `level ${level} reads its parent's snapshot`);
      // Each level overwrites one cluster-aligned run and trims another: reads must pick the right level.
      const offset = random.integer(0, DEVICE_SIZE_BYTES / CLUSTER_SIZE_BYTES - 16) * CLUSTER_SIZE_BYTES;
      const data = random.bytes(8 * CLUSTER_SIZE_BYTES);
      await clone.write(offset, data);
      data.copy(expected, offset);
      const trimmed = random.integer(0, DEVICE_SIZE_BYTES / CLUSTER_SIZE_BYTES - 4) * CLUSTER_SIZE_BYTES;
      await clone.trim(trimmed, 2 * CLUSTER_SIZE_BYTES);
      expected.fill(0, trimmed, trimmed + 2 * CLUSTER_SIZE_BYTES);
      assert.equal(sha256(await clone.read(0, DEVICE_SIZE_BYTES)), sha256(expected), `level ${level} after its own writes`);
      parent = `level${level}`;
    }
    const hashes = new Map<string, string>();
    for (const info of vpool.listVolumes()) hashes.set(info.name, await hashDevice(vpool.getVolume(info.name)!));
    await close(vpool);
    vpool = await open(); // an empty directory: everything comes from the backend
    for (const [name, hash] of hashes) assert.equal(await hashDevice(vpool.getVolume(name)!), hash, `${name} after restore from the backend`);
    assert.equal(await hashDevice(vpool.getVolume("level9")!), sha256(expected));
  });

  it("refuses to delete what clones depend on", async function () {
    const vpool = await open();
    const volume = await vpool.createVolume("a", DEVICE_SIZE_BYTES);
    await volume.write(0, random.bytes(MIB));
    await vpool.createSnapshot("a", "s1");
    await volume.write(0, random.bytes(MIB));
    await vpool.createSnapshot("a", "s2");
    await vpool.cloneVolume("c", { volume: "a", snapshot: "s2" });
    assert.deepEqual(vpool.listSnapshots("a").map((snapshot) => snapshot.clones), [[], ["c"]]);
    await expectVolumeError(vpool.deleteSnapshot("a", "s2"), "Exists");
    await expectVolumeError(vpool.deleteVolume("a"), "Exists");
    await expectVolumeError(vpool.rollbackVolume("a", "s1"), "Exists");
    await vpool.deleteSnapshot("a", "s1"); // no clone: fine, and its TLogs merge into s2
    assert.equal(vpool.listVolumes().find((info) => info.name === "a")?.scrubPending, true);
    await vpool.deleteVolume("c");
    await vpool.deleteSnapshot("a", "s2");
    await vpool.deleteVolume("a");
  });

  it("a template refuses writes and clones without a snapshot name, across restarts", async function () {
    let vpool = await open();
    const directory = await tempDirs.make();
    await close(vpool);
    vpool = await open({ directory });
    const volume = await vpool.createVolume("golden", DEVICE_SIZE_BYTES);
    const image = random.bytes(2 * MIB);
    await volume.write(0, image);
    await vpool.setTemplate("golden");
    assert.equal(volume.readOnly, true);
    assert.equal(volume.info().template, true);
    await expectVolumeError(volume.write(0, Buffer.alloc(CLUSTER_SIZE_BYTES)), "ReadOnly");
    await expectVolumeError(volume.trim(0, CLUSTER_SIZE_BYTES), "ReadOnly");
    await expectVolumeError(volume.writeZeroes(0, CLUSTER_SIZE_BYTES), "ReadOnly");
    const clone = await vpool.cloneVolume("vm1", { volume: "golden" });
    assert.ok((await clone.read(0, 2 * MIB)).equals(image));
    await clone.write(0, Buffer.alloc(CLUSTER_SIZE_BYTES, 7));
    assert.ok((await volume.read(0, 2 * MIB)).equals(image), "writing the clone leaves the template alone");
    await close(vpool);
    vpool = await open({ directory });
    assert.equal(vpool.getVolume("golden")?.readOnly, true, "template after a restart");
    await close(vpool);
    vpool = await open();
    assert.equal(vpool.getVolume("golden")?.readOnly, true, "template after a restore from the backend");
    const second = await vpool.cloneVolume("vm2", { volume: "golden" });
    assert.ok((await second.read(0, 2 * MIB)).equals(image));
  });

  it("rollback drops later data, later snapshots and their backend objects", async function () {
    const vpool = await open();
    let volume = await vpool.createVolume("a", DEVICE_SIZE_BYTES);
    const kept = random.bytes(DEVICE_SIZE_BYTES);
    await volume.write(0, kept);
    await vpool.createSnapshot("a", "good");
    for (let round = 0; round < 3; round++) {
      await volume.write(0, random.bytes(DEVICE_SIZE_BYTES));
      await vpool.createSnapshot("a", `later${round}`);
    }
    await volume.write(0, random.bytes(MIB));
    await volume.drain();
    const namespace = volume.info().namespace;
    const countObjects = async (): Promise<number> => (await backend.list(namespace, { limitKeys: 1000 })).objects.length;
    const objectsBefore = await countObjects();
    volume = await vpool.rollbackVolume("a", "good");
    assert.equal(sha256(await volume.read(0, DEVICE_SIZE_BYTES)), sha256(kept));
    assert.deepEqual(vpool.listSnapshots("a").map((snapshot) => snapshot.name), ["good"]);
    const objectsAfter = await countObjects();
    assert.ok(objectsAfter < objectsBefore / 2, `rollback deleted the dropped TLogs and SCOs (${objectsBefore} -> ${objectsAfter} objects)`);
    const next = random.bytes(MIB);
    await volume.write(MIB, next);
    kept.set(next, MIB);
    await vpool.createSnapshot("a", "later0"); // the name is free again
    await close(vpool);
    const restored = await open();
    assert.equal(sha256(await restored.getVolume("a")!.read(0, DEVICE_SIZE_BYTES)), sha256(kept), "after a restore from the backend");
    assert.deepEqual(restored.listSnapshots("a").map((snapshot) => snapshot.name), ["good", "later0"]);
  });

  it("a snapshot is synced only once the backend holds it", async function () {
    const failing = new FailingObjectStore(backend, { seed: random.seed });
    const vpool = await open({ backend: failing });
    const volume = await vpool.createVolume("a", DEVICE_SIZE_BYTES);
    await volume.write(0, random.bytes(MIB));
    failing.startOutage();
    const snapshot = await vpool.createSnapshot("a", "offline");
    assert.equal(snapshot.synced, false);
    assert.equal(vpool.listSnapshots("a")[0].synced, false);
    failing.endOutage();
    assert.ok(await waitFor(() => vpool.listSnapshots("a")[0].synced, 30_000), "the snapshot becomes synced when the backend is back");
    const hash = await snapshotHash(vpool, "a", "offline");
    await close(vpool);
    const restored = await open();
    assert.equal(await snapshotHash(restored, "a", "offline"), hash);
  });
});

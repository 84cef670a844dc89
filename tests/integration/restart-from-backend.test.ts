// Goal: restart from backend (the local disk is lost, or the vDisk moves host) reproduces the device
// bit for bit: ~64 MiB of random writes and some trims on the local backend, then openVPool on a
// fresh empty directory against the same backend directory, and the SHA-256 of the whole device
// must match the model. Replay with OVS_SEED=<seed>.
import assert from "node:assert/strict";
import { LocalObjectStore } from "../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { CLUSTER_SIZE_BYTES, MIB, type Volume, type VPool } from "../../volumedriver/src/engine/vpool-types.ts";
import { firstDifference, hashDevice, readWholeDevice, sha256 } from "../helpers/device-hash.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const DEVICE_SIZE_BYTES = 256 * MIB;
const WRITTEN_BYTES_TARGET = 64 * MIB;
const VPOOL_NAME = "restart";
const VOLUME_NAME = "movingdisk";

describe("integration: restart from backend on a fresh directory", function () {
  this.timeout(180_000);
  const tempDirs = new TempDirs("restart-backend");
  const openPools = new Set<VPool>();
  const stores = new Set<LocalObjectStore>();

  after(async function () {
    for (const vpool of openPools) await vpool.close().catch(() => undefined);
    for (const store of stores) await store.close().catch(() => undefined);
    await tempDirs.removeAll();
  });

  async function open(directory: string, backendDirectory: string): Promise<{ vpool: VPool; backend: LocalObjectStore }> {
    // A new store instance on the same backend directory, as a new host would have.
    const backend = new LocalObjectStore(backendDirectory);
    stores.add(backend);
    const vpool = await openVPool({ name: VPOOL_NAME, directory, backend, scoSizeBytes: 8 * MIB, scoMaxAgeMs: 2_000 });
    openPools.add(vpool);
    return { vpool, backend };
  }

  async function close(vpool: VPool, backend: LocalObjectStore): Promise<void> {
    await vpool.close();
    openPools.delete(vpool);
    await backend.close();
    stores.delete(backend);
  }

  /** Random writes (aligned and not, 1 B..1 MiB) adding up to `targetBytes`, plus trims, mirrored in `model`. */
  async function writeRandomly(volume: Volume, model: Buffer, random: SeededRandom, targetBytes: number): Promise<number> {
    let writtenBytes = 0;
    let trims = 0;
    const inFlight: Promise<void>[] = [];
    const inFlightClusters: Array<[number, number]> = [];
    while (writtenBytes < targetBytes) {
      if (random.chance(0.03)) {
        const lengthBytes = random.integer(1, 2 * MIB);
        const offset = random.integer(0, DEVICE_SIZE_BYTES - lengthBytes);
        // Let earlier writes land first so the model's order is the device's order.
        await Promise.all(inFlight.splice(0));
        inFlightClusters.length = 0;
        await volume.trim(offset, lengthBytes);
        model.fill(0, offset, offset + lengthBytes);
        trims++;
        continue;
      }
      const aligned = random.chance(0.5);
      let lengthBytes = random.chance(0.2) ? random.integer(1, 64) : random.integer(1, MIB);
      let offset = random.integer(0, DEVICE_SIZE_BYTES - lengthBytes);
      if (aligned) {
        lengthBytes = Math.max(CLUSTER_SIZE_BYTES, lengthBytes - (lengthBytes % CLUSTER_SIZE_BYTES));
        offset -= offset % CLUSTER_SIZE_BYTES;
      }
      const data = random.bytes(lengthBytes);
      data.copy(model, offset);
      // Up to 4 writes in flight, but never two that touch the same cluster, so the order in which
      // concurrent writes land cannot matter.
      const firstCluster = Math.floor(offset / CLUSTER_SIZE_BYTES);
      const endCluster = Math.ceil((offset + lengthBytes) / CLUSTER_SIZE_BYTES);
      if (inFlight.length >= 4 || inFlightClusters.some(([first, end]) => firstCluster < end && first < endCluster)) {
        await Promise.all(inFlight.splice(0));
        inFlightClusters.length = 0;
      }
      inFlight.push(volume.write(offset, data));
      inFlightClusters.push([firstCluster, endCluster]);
      writtenBytes += lengthBytes;
    }
    await Promise.all(inFlight.splice(0));
    return trims;
  }

  async function assertDeviceEquals(volume: Volume, model: Buffer, context: string): Promise<void> {
    const actualHash = await hashDevice(volume);
    if (actualHash !== sha256(model)) {
      const device = await readWholeDevice(volume);
      const offset = firstDifference(device, model);
      assert.fail(`${context}: device hash ${actualHash} differs from the model ${sha256(model)}; first difference at byte ${offset} (cluster ${Math.floor(offset / CLUSTER_SIZE_BYTES)})`);
    }
  }

  for (const variant of ["drain then close", "clean close only"] as const) {
    it(`reproduces the device bit for bit after ${variant}`, async function () {
      // Goal: after `variant`, a host with an empty directory restores the exact device from the backend.
      const seed = seedFromEnvironment();
      const context = `seed ${seed} (replay: OVS_SEED=${seed}), ${variant}`;
      const random = new SeededRandom(seed);
      const backendDirectory = await tempDirs.make("backend");
      const model = Buffer.alloc(DEVICE_SIZE_BYTES);

      const first = await open(await tempDirs.make("host-a"), backendDirectory);
      const volume = await first.vpool.createVolume(VOLUME_NAME, DEVICE_SIZE_BYTES);
      const trims = await writeRandomly(volume, model, random, WRITTEN_BYTES_TARGET);
      assert.ok(trims > 0, "the workload includes trims");
      await assertDeviceEquals(volume, model, `${context}, before the move`);
      if (variant === "drain then close") {
        await volume.drain();
        assert.equal(volume.stats().notUploadedBytes, 0, "drain leaves nothing to upload");
      }
      await close(first.vpool, first.backend);

      // Host B: empty directory, same backend.
      const second = await open(await tempDirs.make("host-b"), backendDirectory);
      const restored = second.vpool.getVolume(VOLUME_NAME);
      assert.ok(restored, `${context}: the volume is found on the backend (names: ${second.vpool.listVolumes().map((info) => info.name).join(", ")})`);
      assert.equal(restored.sizeBytes, DEVICE_SIZE_BYTES);
      await assertDeviceEquals(restored, model, `${context}, after restart from backend`);

      // The restored volume keeps working and can move again.
      await writeRandomly(restored, model, random, 8 * MIB);
      await restored.drain();
      await close(second.vpool, second.backend);
      const third = await open(await tempDirs.make("host-c"), backendDirectory);
      const movedAgain = third.vpool.getVolume(VOLUME_NAME);
      assert.ok(movedAgain, `${context}: the volume is found again after a second move`);
      await assertDeviceEquals(movedAgain, model, `${context}, after the second restart from backend`);
      // Holes survive the move: every all-zero cluster range the model trimmed reads as zeros (checked
      // by the hash); block status must never call a cluster with data a hole.
      const extents = await movedAgain.blockStatus(0, DEVICE_SIZE_BYTES);
      for (const extent of extents) {
        if (extent.allocated) continue;
        const slice = model.subarray(extent.offsetBytes, extent.offsetBytes + extent.lengthBytes);
        assert.ok(slice.equals(Buffer.alloc(slice.length)), `${context}: block status reports a hole at ${extent.offsetBytes}+${extent.lengthBytes} where the model has data`);
      }
      assert.ok(extents.some((extent) => !extent.allocated), "a 256 MiB device with 72 MiB written has holes");
      await close(third.vpool, third.backend);
    });
  }
});

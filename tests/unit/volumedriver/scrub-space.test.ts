// Goal: scrubbing gives the space back. An overwrite-heavy workload (4x the vDisk size in random
// 64 KiB writes, with a snapshot after every eighth of it, as hourly snapshots would be) leaves most
// SCOs mostly dead once all but the last snapshot are deleted; a scrub must then leave backend bytes
// (SCOs, TLogs, volume.json, snapshots.json) at most 1.25x the live data, without changing the data.
// The test prints the figure.
import assert from "node:assert/strict";
import { MemoryObjectStore } from "../../../volumedriver/src/backend/memory-store.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import { MIB, type VPool } from "../../../volumedriver/src/engine/vpool-types.ts";
import { hashDevice } from "../../helpers/device-hash.ts";
import { SeededRandom, seedFromEnvironment } from "../../helpers/seeded-random.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

const DEVICE_SIZE_BYTES = 32 * MIB;
const WRITE_BYTES = 64 * 1024;
const OVERWRITE_FACTOR = 4;
const SNAPSHOTS = 8;
const SPACE_RATIO_MAX = 1.25;

async function namespaceBytes(backend: MemoryObjectStore, namespace: string): Promise<number> {
  let total = 0;
  let startAfter: string | undefined;
  for (;;) {
    const page = await backend.list(namespace, { startAfter, limitKeys: 1000 });
    for (const object of page.objects) total += object.sizeBytes;
    if (page.nextStartAfter === undefined) return total;
    startAfter = page.nextStartAfter;
  }
}

describe("scrub: space after deleting snapshots", function () {
  this.timeout(120_000);
  const tempDirs = new TempDirs("scrub-space");
  let vpool: VPool | undefined;

  after(async function () {
    await vpool?.close();
    await tempDirs.removeAll();
  });

  it(`leaves backend bytes at most ${SPACE_RATIO_MAX}x the live data`, async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const backend = new MemoryObjectStore();
    vpool = await openVPool({ name: "space", directory: await tempDirs.make(), backend, scoSizeBytes: 4 * MIB, scrubGracePeriodMs: 0 });
    const volume = await vpool.createVolume("busy", DEVICE_SIZE_BYTES);
    const writes = (OVERWRITE_FACTOR * DEVICE_SIZE_BYTES) / WRITE_BYTES;
    for (let index = 0; index < writes; index++) {
      await volume.write(random.integer(0, DEVICE_SIZE_BYTES / WRITE_BYTES - 1) * WRITE_BYTES, random.bytes(WRITE_BYTES));
      if ((index + 1) % (writes / SNAPSHOTS) === 0) await vpool.createSnapshot("busy", `hourly-${(index + 1) / (writes / SNAPSHOTS)}`);
    }
    const snapshots = vpool.listSnapshots("busy");
    const last = snapshots[snapshots.length - 1].name;
    for (const snapshot of snapshots.slice(0, -1)) await vpool.deleteSnapshot("busy", snapshot.name);
    await volume.drain();
    const headHash = await hashDevice(volume);
    const liveBytes = (await volume.blockStatus(0, DEVICE_SIZE_BYTES))
      .filter((extent) => extent.allocated).reduce((sum, extent) => sum + extent.lengthBytes, 0);
    const namespace = volume.info().namespace;
    const before = await namespaceBytes(backend, namespace);

    const result = await vpool.scrubVolume("busy");
    const after = await namespaceBytes(backend, namespace);
    const ratio = after / liveBytes;
    console.log(`      seed ${seed}: live ${(liveBytes / MIB).toFixed(1)} MiB; backend ${(before / MIB).toFixed(1)} MiB before the scrub `
      + `(${(before / liveBytes).toFixed(2)}x), ${(after / MIB).toFixed(1)} MiB after (${ratio.toFixed(2)}x); ${result.scosRewritten} SCOs rewritten, `
      + `${result.objectsCollected} objects collected`);
    assert.ok(ratio <= SPACE_RATIO_MAX, `seed ${seed}: backend holds ${ratio.toFixed(2)}x the live data after the scrub (at most ${SPACE_RATIO_MAX}x)`);
    assert.equal(await hashDevice(volume), headHash, `seed ${seed}: the scrub changed the vDisk`);
    const view = await vpool.openSnapshot("busy", last);
    try {
      assert.equal(await hashDevice(view), headHash, `seed ${seed}: the scrub changed snapshot ${last}`);
    } finally {
      await view.close();
    }
    assert.equal(vpool.listVolumes()[0].scrubPending, false);
  });
});

// Goal: the volume engine runs end to end on an Alba backend of real processes (6 ASDs on 3 node
// ids, preset (4,2,5,2), the proxy as its own process, the vPool through the `alba` backend spec as
// a StorageDriver opens it): random 4 KiB and 1 MiB writes with flushes, drain, close, then the vPool
// restarts from the backend alone on an empty directory and the vDisk hashes the same as the model
// of every write; the same restart with 2 ASDs (on different node ids) killed reads from parity.
import assert from "node:assert/strict";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { MIB } from "../../volumedriver/src/engine/vpool-types.ts";
import { openBackend } from "../../volumedriver/src/storagedriver/backend-opener.ts";
import { readWholeDevice, firstDifference } from "../helpers/device-hash.ts";
import { startAlbaCluster, type AlbaCluster } from "../helpers/alba-cluster.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const DEVICE_SIZE_BYTES = 128 * MIB;
const SCO_SIZE_BYTES = 8 * MIB;

describe("integration: the volume engine on an Alba backend", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("alba-engine");
  let cluster: AlbaCluster | undefined;

  after(async function () {
    await cluster?.stop();
    await tempDirs.removeAll();
  });

  it("writes, flushes, restores from the backend alone, and restores again with 2 ASDs dead", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    cluster = await startAlbaCluster({
      directory: await tempDirs.make("cluster"),
      asdNodeIds: ["n1", "n1", "n2", "n2", "n3", "n3"],
      preset: {
        name: "ec42", policies: [{ k: 4, m: 2, c: 5, x: 2 }], fragmentSizeBytes: 256 * 1024,
        compression: "lz4", encryption: "none", checksum: "crc32c",
      },
    });
    const spec = { type: "alba" as const, proxyUrl: cluster.proxyUrl };
    const open = async (directory: string) => {
      const backend = openBackend(spec);
      const vpool = await openVPool({ name: "alba-e2e", directory, backend: backend.store, scoSizeBytes: SCO_SIZE_BYTES });
      return { vpool, backend };
    };

    let state = await open(await tempDirs.make("vpool"));
    const volume = await state.vpool.createVolume("disk", DEVICE_SIZE_BYTES);
    const model = Buffer.alloc(DEVICE_SIZE_BYTES);
    for (let index = 0; index < 600; index++) {
      const large = index % 10 === 0;
      const lengthBytes = large ? MIB : 4096 * random.integer(1, 4);
      const offsetBytes = random.integer(0, (DEVICE_SIZE_BYTES - lengthBytes) / 4096) * 4096;
      const data = random.bytes(lengthBytes);
      await volume.write(offsetBytes, data);
      data.copy(model, offsetBytes);
      if (index % 97 === 0) await volume.flush();
    }
    // A second pass of sequential 1 MiB writes, half of them compressible, over a quarter of the disk.
    for (let offsetBytes = 0; offsetBytes < DEVICE_SIZE_BYTES / 4; offsetBytes += MIB) {
      const data = offsetBytes % (2 * MIB) === 0 ? random.bytes(MIB) : Buffer.alloc(MIB, offsetBytes / MIB);
      await volume.write(offsetBytes, data);
      data.copy(model, offsetBytes);
    }
    await volume.flush();
    assert.equal(firstDifference(await readWholeDevice(volume), model), -1, `seed ${seed}: the vDisk differs from the model before the restart`);
    await volume.drain();
    await state.vpool.close();
    await state.backend.store.close();

    state = await open(await tempDirs.make("vpool-restored"));
    const restored = state.vpool.getVolume("disk");
    assert.ok(restored !== undefined, `seed ${seed}: the vDisk was not found on the Alba backend`);
    assert.equal(firstDifference(await readWholeDevice(restored), model), -1, `seed ${seed}: the restored vDisk differs from the model`);
    await state.vpool.close();
    await state.backend.store.close();

    // Two ASDs on different node ids die: every chunk keeps at least 4 of its 6 fragments.
    await cluster.asds[1]!.kill();
    await cluster.asds[4]!.kill();
    state = await open(await tempDirs.make("vpool-degraded"));
    const degraded = state.vpool.getVolume("disk");
    assert.ok(degraded !== undefined, `seed ${seed}: the vDisk was not found with 2 ASDs down`);
    assert.equal(firstDifference(await readWholeDevice(degraded), model), -1, `seed ${seed}: the vDisk restored with 2 ASDs down differs from the model`);
    await state.vpool.close();
    await state.backend.store.close();
  });
});

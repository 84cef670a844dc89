// Goal: a vPool on CodecObjectStore(local) with lz4 + AES-256-GCM restarts from the backend bit for
// bit: 64 MiB of random and compressible writes, drain, close, openVPool on a fresh empty directory
// with a new store on the same backend directory and the same key; the SHA-256 of the device must
// match the model. The backend holds no plain bytes, and the compressible half is stored smaller.
// Replay with OVS_SEED=<seed>.
import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { CodecObjectStore } from "../../volumedriver/src/backend/codec-store.ts";
import { LocalObjectStore } from "../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { MIB, type VPool } from "../../volumedriver/src/engine/vpool-types.ts";
import { hashDevice, sha256 } from "../helpers/device-hash.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const DEVICE_SIZE_BYTES = 128 * MIB;
const WRITTEN_BYTES_TARGET = 64 * MIB;
const MARKER = Buffer.from("plain-text marker that must never reach the backend ");

describe("integration: restart from an lz4 + AES-256-GCM backend on a fresh directory", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("codec-restart");
  const openPools = new Set<VPool>();

  after(async function () {
    for (const vpool of openPools) await vpool.close().catch(() => undefined);
    await tempDirs.removeAll();
  });

  async function open(directory: string, backendDirectory: string, key: Buffer): Promise<{ vpool: VPool; store: CodecObjectStore }> {
    const store = new CodecObjectStore(new LocalObjectStore(backendDirectory), { compression: "lz4", encryption: { key } });
    const vpool = await openVPool({ name: "codec", directory, backend: store, scoSizeBytes: 8 * MIB, scoMaxAgeMs: 2_000 });
    openPools.add(vpool);
    return { vpool, store };
  }

  async function close(vpool: VPool, store: CodecObjectStore): Promise<void> {
    await vpool.close();
    openPools.delete(vpool);
    await store.close();
  }

  /** Sizes of every file under `directory`, and whether any holds `needle`. */
  async function scanBackend(directory: string, needle: Buffer): Promise<{ sizeBytes: number; found: boolean }> {
    let sizeBytes = 0;
    let found = false;
    for (const entry of await readdir(directory, { withFileTypes: true, recursive: true })) {
      if (!entry.isFile()) continue;
      const filePath = path.join(entry.parentPath, entry.name);
      sizeBytes += (await stat(filePath)).size;
      if ((await readFile(filePath)).includes(needle)) found = true;
    }
    return { sizeBytes, found };
  }

  it("codec_restart_from_backend_bit_for_bit", async function () {
    // Goal: the device written through the codec comes back exactly on a new host with the same key.
    const seed = seedFromEnvironment();
    const context = `seed ${seed} (replay: OVS_SEED=${seed})`;
    const random = new SeededRandom(seed);
    const key = random.bytes(32);
    const backendDirectory = await tempDirs.make("backend");
    const model = Buffer.alloc(DEVICE_SIZE_BYTES);
    const compressible = Buffer.alloc(MIB);
    for (let offset = 0; offset < MIB; offset += MARKER.length) MARKER.copy(compressible, offset);

    const first = await open(await tempDirs.make("host-a"), backendDirectory, key);
    const volume = await first.vpool.createVolume("codecdisk", DEVICE_SIZE_BYTES);
    let writtenBytes = 0;
    for (let index = 0; writtenBytes < WRITTEN_BYTES_TARGET; index++) {
      const lengthBytes = random.integer(1, MIB);
      const offset = random.integer(0, DEVICE_SIZE_BYTES - lengthBytes);
      const data = index % 2 === 0 ? random.bytes(lengthBytes) : Buffer.from(compressible.subarray(0, lengthBytes));
      data.copy(model, offset);
      await volume.write(offset, data);
      writtenBytes += lengthBytes;
    }
    await volume.drain();
    assert.equal(volume.stats().notUploadedBytes, 0, "drain leaves nothing to upload");
    assert.equal(await hashDevice(volume), sha256(model), `${context}: before the move`);
    await close(first.vpool, first.store);

    const backend = await scanBackend(backendDirectory, MARKER.subarray(0, 32));
    assert.equal(backend.found, false, "plain bytes reached the backend");
    assert.ok(backend.sizeBytes < 0.75 * writtenBytes, `backend holds ${backend.sizeBytes} bytes for ${writtenBytes} written, half of them compressible`);

    const second = await open(await tempDirs.make("host-b"), backendDirectory, key);
    const restored = second.vpool.getVolume("codecdisk");
    assert.ok(restored, `${context}: the volume is found on the backend`);
    assert.equal(await hashDevice(restored), sha256(model), `${context}: after restart from backend`);
    await close(second.vpool, second.store);
  });
});

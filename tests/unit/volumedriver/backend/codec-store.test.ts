// The codec wrapper (per-chunk compression and encryption) keeps the ObjectStore contract over the
// memory and the local store, with lz4 + AES-256-GCM, snappy, and encryption without compression.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Compression } from "../../../../volumedriver/src/backend/chunk-codec.ts";
import { CodecObjectStore } from "../../../../volumedriver/src/backend/codec-store.ts";
import { LocalObjectStore } from "../../../../volumedriver/src/backend/local-store.ts";
import { MemoryObjectStore } from "../../../../volumedriver/src/backend/memory-store.ts";
import { runObjectStoreContract, seededBytes } from "./object-store-contract.ts";

const TEST_KEY = seededBytes(32, 2024);

const CODECS: Array<{ name: string; compression: Compression; encrypted: boolean; chunkSizeBytes?: number }> = [
  { name: "lz4+aes-256-gcm", compression: "lz4", encrypted: true },
  { name: "snappy, 4 KiB chunks", compression: "snappy", encrypted: false, chunkSizeBytes: 4096 },
  { name: "none+aes-256-gcm", compression: "none", encrypted: true },
];

for (const codec of CODECS) {
  const options = { compression: codec.compression, encryption: codec.encrypted ? { key: TEST_KEY } : undefined, chunkSizeBytes: codec.chunkSizeBytes };
  runObjectStoreContract(`codec(${codec.name}) over memory`, async () => ({
    store: new CodecObjectStore(new MemoryObjectStore(), options),
    cleanup: async () => undefined,
  }));
  runObjectStoreContract(`codec(${codec.name}) over local`, async () => {
    const rootDirectory = await mkdtemp(path.join(os.tmpdir(), "ovs-codec-store-"));
    return {
      store: new CodecObjectStore(await LocalObjectStore.open(rootDirectory), options),
      cleanup: () => rm(rootDirectory, { recursive: true, force: true }),
    };
  });
}

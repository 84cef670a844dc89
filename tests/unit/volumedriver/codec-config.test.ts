// Goal: the StorageDriver config's "compression" and "encryption" are checked on load with errors
// that say what to write, the key is read from a file or an environment variable (never the config),
// and the backend opener wraps the store in the codec when asked.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CodecObjectStore } from "../../../volumedriver/src/backend/codec-store.ts";
import { openBackend } from "../../../volumedriver/src/storagedriver/backend-opener.ts";
import { loadEncryptionKey } from "../../../volumedriver/src/storagedriver/codec-config.ts";
import { parseStorageDriverConfig } from "../../../volumedriver/src/storagedriver/config.ts";

const HEX_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

describe("StorageDriver config: compression and encryption", function () {
  const valid = { vpool: "vpool1", directory: "d", backend: { type: "local", path: "backend" } };
  let directory: string;

  beforeEach(async function () {
    directory = await mkdtemp(path.join(os.tmpdir(), "ovs-codec-config-"));
  });

  afterEach(async function () {
    await rm(directory, { recursive: true, force: true });
  });

  it("codec_config_parsed_with_paths_resolved", function () {
    assert.equal(parseStorageDriverConfig(valid, "/srv", "sd.json").codec, undefined);
    assert.deepEqual(parseStorageDriverConfig({ ...valid, compression: "lz4" }, "/srv", "sd.json").codec, { compression: "lz4" });
    assert.deepEqual(parseStorageDriverConfig({ ...valid, encryption: { keyFile: "vpool.key" } }, "/srv", "sd.json").codec,
      { compression: "none", encryption: { keyFile: "/srv/vpool.key" } });
    assert.deepEqual(parseStorageDriverConfig({ ...valid, compression: "snappy", encryption: { keyEnv: "OVS_KEY" } }, "/srv", "sd.json").codec,
      { compression: "snappy", encryption: { keyEnv: "OVS_KEY" } });
  });

  const mistakes: Array<[string, unknown, RegExp]> = [
    ["an unknown compression", { ...valid, compression: "zstd" }, /"compression" must be one of none, lz4, snappy/],
    ["a key in the config", { ...valid, encryption: { key: HEX_KEY } }, /unknown field "key"/],
    ["a key as a string", { ...valid, encryption: HEX_KEY }, /the key itself never goes into a config/],
    ["both key sources", { ...valid, encryption: { keyFile: "k", keyEnv: "K" } }, /exactly one of keyFile and keyEnv/],
    ["a bad variable name", { ...valid, encryption: { keyEnv: "1-x" } }, /keyEnv must be the name of an environment variable/],
  ];
  for (const [what, value, message] of mistakes) {
    it(`codec_config_refuses ${what}`, function () {
      assert.throws(() => parseStorageDriverConfig(value, "/srv", "sd.json"), message);
    });
  }

  it("codec_key_loaded_from_file_or_environment", async function () {
    const keyFile = path.join(directory, "vpool.key");
    await writeFile(keyFile, `${HEX_KEY}\n`);
    assert.equal(loadEncryptionKey({ keyFile }).toString("hex"), HEX_KEY);
    assert.equal(loadEncryptionKey({ keyEnv: "K" }, { K: HEX_KEY.toUpperCase() }).toString("hex"), HEX_KEY);
    assert.throws(() => loadEncryptionKey({ keyEnv: "K" }, {}), /K \(the vPool's encryption key\) is not set: set it to 64 hex digits/);
    assert.throws(() => loadEncryptionKey({ keyEnv: "K" }, { K: "short" }), /does not hold an AES-256 key/);
    assert.throws(() => loadEncryptionKey({ keyFile: path.join(directory, "missing") }), /cannot read the encryption key file/);
  });

  it("codec_backend_opener_wraps_store", async function () {
    const keyFile = path.join(directory, "vpool.key");
    await writeFile(keyFile, HEX_KEY);
    const plain = openBackend({ type: "local", path: directory });
    assert.ok(!(plain.store instanceof CodecObjectStore));
    const encoded = openBackend({ type: "local", path: directory }, { compression: "lz4", encryption: { keyFile } });
    assert.ok(encoded.store instanceof CodecObjectStore);
    assert.match(encoded.store.description, /^codec\(lz4\+aes-256-gcm\)/);
    await encoded.store.createNamespace("ns");
    await encoded.store.put("ns", "k", Buffer.from("hello"));
    assert.deepEqual(await encoded.store.get("ns", "k"), Buffer.from("hello"));
    assert.notDeepEqual(await plain.store.get("ns", "k"), Buffer.from("hello"));
    assert.equal(encoded.instrumented.snapshot().operations.put?.requests, 1);
    await plain.store.close();
    await encoded.store.close();
  });
});

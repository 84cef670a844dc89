// The local store keeps the ObjectStore contract, survives reopening, ignores and cleans temp
// files, detects corruption, and keeps ifAbsent atomic between two instances on one directory.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { LocalObjectStore } from "../../../../volumedriver/src/backend/local-store.ts";
import { isStoreError } from "../../../../volumedriver/src/backend/object-store.ts";
import { expectStoreError, listAllKeys, runObjectStoreContract, seededBytes } from "./object-store-contract.ts";

async function makeTempDirectory(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), "ovs-local-store-"));
}

runObjectStoreContract("local", async () => {
  const rootDirectory = await makeTempDirectory();
  return {
    store: await LocalObjectStore.open(rootDirectory),
    cleanup: () => rm(rootDirectory, { recursive: true, force: true }),
  };
});

describe("LocalObjectStore", function () {
  let rootDirectory: string;
  const openStores: LocalObjectStore[] = [];

  async function openStore(): Promise<LocalObjectStore> {
    const store = await LocalObjectStore.open(rootDirectory);
    openStores.push(store);
    return store;
  }

  beforeEach(async function () {
    rootDirectory = await makeTempDirectory();
  });

  afterEach(async function () {
    await Promise.all(openStores.splice(0).map((store) => store.close()));
    await rm(rootDirectory, { recursive: true, force: true });
  });

  it("local_data_survives_reopen", async function () {
    // Goal: namespaces, objects and etags written by one store are there when the directory is opened again.
    const first = await openStore();
    await first.createNamespace("ns");
    const info = await first.put("ns", "a/b", seededBytes(10_000, 1));
    await first.put("ns", "k".repeat(600), Buffer.from("long key"));
    await first.close();
    const second = await openStore();
    assert.deepEqual(await second.listNamespaces(), ["ns"]);
    assert.deepEqual(await second.head("ns", "a/b"), info);
    assert.ok((await second.get("ns", "a/b")).equals(seededBytes(10_000, 1)));
    assert.deepEqual(await listAllKeys(second, "ns"), ["a/b", "k".repeat(600)]);
  });

  it("local_temp_file_ignored_and_cleaned_on_open", async function () {
    // Goal: a temp file left by a crashed put is never listed or read, and the next open removes it.
    const store = await openStore();
    await store.createNamespace("ns");
    await store.put("ns", "kept", Buffer.from("x"));
    const namespaceDirectory = path.join(rootDirectory, "ns");
    // A pid far above any pid_max: that writer is certainly gone.
    const abandoned = "~tmp-2147483646-abcdef-1";
    await writeFile(path.join(namespaceDirectory, abandoned), "half a put");
    assert.deepEqual(await listAllKeys(store, "ns"), ["kept"]);
    await expectStoreError(store.get("ns", abandoned), "NotFound");
    await store.close();
    await openStore();
    assert.deepEqual((await readdir(namespaceDirectory)).sort(), ["kept"]);
  });

  it("local_temp_file_of_live_instance_kept_on_open", async function () {
    // Goal: opening a second store does not remove temp files that belong to a store still open in this process.
    const first = await openStore();
    await first.createNamespace("ns");
    const liveTempName = `~tmp-${process.pid}-${(first as unknown as { instanceId: string }).instanceId}-99`;
    await writeFile(path.join(rootDirectory, "ns", liveTempName), "in flight");
    await openStore();
    assert.ok((await readdir(path.join(rootDirectory, "ns"))).includes(liveTempName));
  });

  it("local_foreign_files_ignored", async function () {
    // Goal: files whose names are no canonical key spelling (and directories) are not listed.
    const store = await openStore();
    await store.createNamespace("ns");
    await store.put("ns", "real", Buffer.from("x"));
    const namespaceDirectory = path.join(rootDirectory, "ns");
    for (const name of ["%41", "%zz", "%2f", ".hidden", "bad%"]) await writeFile(path.join(namespaceDirectory, name), "junk");
    await writeFile(path.join(rootDirectory, "not-a-namespace-file"), "junk");
    assert.deepEqual(await listAllKeys(store, "ns"), ["real"]);
    assert.deepEqual(await store.listNamespaces(), ["ns"]);
  });

  it("local_key_encoding_on_disk", async function () {
    // Goal: keys map to the documented file names: plain, percent-encoded (leading '.' too), or hashed when long.
    const store = await openStore();
    await store.createNamespace("ns");
    await store.put("ns", "plain-key_1.x", Buffer.from("1"));
    await store.put("ns", "a/b c", Buffer.from("2"));
    await store.put("ns", ".", Buffer.from("3"));
    await store.put("ns", "é".repeat(100), Buffer.from("4"));
    const names = (await readdir(path.join(rootDirectory, "ns"))).sort();
    assert.equal(names.length, 4);
    assert.ok(names.includes("plain-key_1.x"));
    assert.ok(names.includes("a%2Fb%20c"));
    assert.ok(names.includes("%2E"));
    assert.ok(names.some((name) => /^#[0-9a-f]{64}$/.test(name)), names.join(" "));
  });

  it("local_corrupt_data_detected", async function () {
    // Goal: a flipped data byte fails Corrupt for reads that cover its block, while other blocks still read.
    const store = await openStore();
    await store.createNamespace("ns");
    const data = seededBytes(3 * 4096, 2);
    await store.put("ns", "k", data);
    const filePath = path.join(rootDirectory, "ns", "k");
    const file = await readFile(filePath);
    file[file.length - 4096 - 10] ^= 0xff; // a byte in the second block
    await writeFile(filePath, file);
    await expectStoreError(store.get("ns", "k"), "Corrupt");
    await expectStoreError(store.get("ns", "k", { offsetBytes: 4096, lengthBytes: 1 }), "Corrupt");
    assert.ok((await store.get("ns", "k", { offsetBytes: 8192, lengthBytes: 4096 })).equals(data.subarray(8192)));
  });

  it("local_corrupt_header_and_truncation_detected", async function () {
    // Goal: a damaged header and a truncated file fail Corrupt rather than returning wrong bytes.
    const store = await openStore();
    await store.createNamespace("ns");
    await store.put("ns", "header", seededBytes(100, 3));
    await store.put("ns", "short", seededBytes(20_000, 4));
    const headerPath = path.join(rootDirectory, "ns", "header");
    const file = await readFile(headerPath);
    file[10] ^= 0x01;
    await writeFile(headerPath, file);
    await expectStoreError(store.get("ns", "header"), "Corrupt");
    await expectStoreError(store.head("ns", "header"), "Corrupt");
    await truncate(path.join(rootDirectory, "ns", "short"), 10_000);
    await expectStoreError(store.get("ns", "short"), "Corrupt");
  });

  it("local_if_absent_atomic_across_instances", async function () {
    // Goal: ifAbsent puts racing from two store instances (separate lock maps) on one directory have one winner.
    const first = await openStore();
    const second = await openStore();
    await first.createNamespace("ns");
    for (let round = 0; round < 5; round++) {
      const key = `race-${round}`;
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, index) => (index % 2 === 0 ? first : second).put("ns", key, Buffer.from(`${index}`), { ifAbsent: true })),
      );
      const winners = results.filter((result) => result.status === "fulfilled");
      assert.equal(winners.length, 1, `round ${round}`);
      for (const result of results) {
        if (result.status === "rejected") assert.ok(isStoreError(result.reason, "PreconditionFailed"), String(result.reason));
      }
    }
    assert.equal((await readdir(path.join(rootDirectory, "ns"))).filter((name) => name.startsWith("~")).length, 0, "temp files left");
  });

  it("local_delete_namespace_during_put", async function () {
    // Goal: a put racing with deletion of its namespace either lands before it or fails NotFound, leaving nothing behind.
    const store = await openStore();
    await store.createNamespace("ns");
    const puts = Array.from({ length: 20 }, (_, index) => store.put("ns", `k${index}`, seededBytes(50_000, index)));
    const deletion = store.deleteNamespace("ns");
    const results = await Promise.allSettled([...puts, deletion]);
    for (const result of results) {
      if (result.status === "rejected") assert.ok(isStoreError(result.reason, "NotFound"), String(result.reason));
    }
    assert.deepEqual(await readdir(rootDirectory), []);
  });

  it("local_errors_map_to_kinds", async function () {
    // Goal: a root that cannot be created fails every call with a clear, non-retryable error.
    const blocker = path.join(rootDirectory, "file");
    await writeFile(blocker, "not a directory");
    const store = new LocalObjectStore(path.join(blocker, "root"));
    openStores.push(store);
    await assert.rejects(store.listNamespaces(), (error: unknown) => {
      assert.ok(isStoreError(error, "Internal"), String(error));
      assert.match(String(error), /ENOTDIR/);
      return true;
    });
  });
});

// The local store keeps the ObjectStore contract, survives reopening, ignores and cleans temp
// files, detects corruption, and keeps ifAbsent atomic between two instances on one directory.
// putFile adopts files by hard link (meta file + data file), verifies them like any object, and
// leaves no file behind that a later open would not sweep.
import assert from "node:assert/strict";
import { mkdtemp, open, readdir, readFile, rm, stat, symlink, truncate, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { LocalObjectStore } from "../../../../volumedriver/src/backend/local-store.ts";
import { isStoreError } from "../../../../volumedriver/src/backend/object-store.ts";
import { crc32c } from "../../../../alba/src/codec/crc32c.ts";
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

  describe("putFile", function () {
    let sourceDirectory: string;

    beforeEach(async function () {
      sourceDirectory = await makeTempDirectory();
    });

    afterEach(async function () {
      await rm(sourceDirectory, { recursive: true, force: true });
    });

    async function writeSource(name: string, data: Uint8Array, directory = sourceDirectory): Promise<string> {
      const filePath = path.join(directory, name);
      await writeFile(filePath, data);
      return filePath;
    }

    /** The names in the namespace directory that are data files (they hold a '~' after the key's name). */
    async function dataFileNames(namespace: string): Promise<string[]> {
      return (await readdir(path.join(rootDirectory, namespace))).filter((name) => /^[^~]+~/.test(name)).sort();
    }

    /** Flips one byte of a file in place (the same inode, so every hard link sees it). */
    async function flipByte(filePath: string, offsetBytes: number): Promise<void> {
      const handle = await open(filePath, "r+");
      try {
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, offsetBytes);
        byte[0] ^= 0xff;
        await handle.write(byte, 0, 1, offsetBytes);
      } finally {
        await handle.close();
      }
    }

    it("local_put_file_adopts_by_hard_link", async function () {
      // Goal: putFile links the caller's file as the data file (same inode, no copy) next to a small meta file, and list shows only the key.
      const store = await openStore();
      await store.createNamespace("ns");
      const data = seededBytes(64 * 4096, 5);
      const source = await writeSource("sco", data);
      await store.putFile("ns", "sco/1", source);
      const dataFiles = await dataFileNames("ns");
      assert.equal(dataFiles.length, 1);
      assert.match(dataFiles[0], new RegExp(`^sco%2F1~${process.pid}-[0-9a-f]+-\\d+$`));
      const dataFile = await stat(path.join(rootDirectory, "ns", dataFiles[0]));
      const sourceFile = await stat(source);
      assert.equal(dataFile.ino, sourceFile.ino, "the data file is the caller's file");
      assert.equal(sourceFile.nlink, 2);
      const metaFile = await stat(path.join(rootDirectory, "ns", "sco%2F1"));
      assert.ok(metaFile.size < 4096 + 100, `meta file of ${metaFile.size} bytes`);
      assert.deepEqual(await listAllKeys(store, "ns"), ["sco/1"]);
      assert.deepEqual((await readdir(path.join(rootDirectory, "ns"))).sort(), ["sco%2F1", dataFiles[0]].sort());
    });

    it("local_put_file_corrupt_data_block_detected", async function () {
      // Goal: a flipped byte in the data file fails Corrupt for exactly the reads that touch its block.
      const store = await openStore();
      await store.createNamespace("ns");
      const data = seededBytes(3 * 4096 + 100, 6);
      await store.putFile("ns", "k", await writeSource("k", data));
      const [dataFile] = await dataFileNames("ns");
      await flipByte(path.join(rootDirectory, "ns", dataFile), 4096 + 77); // in the second block
      await expectStoreError(store.get("ns", "k"), "Corrupt");
      await expectStoreError(store.get("ns", "k", { offsetBytes: 4096, lengthBytes: 1 }), "Corrupt");
      await expectStoreError(store.get("ns", "k", { offsetBytes: 4095, lengthBytes: 2 }), "Corrupt");
      await expectStoreError(store.get("ns", "k", { offsetBytes: 8191, lengthBytes: 10 }), "Corrupt");
      assert.ok((await store.get("ns", "k", { offsetBytes: 0, lengthBytes: 4096 })).equals(data.subarray(0, 4096)));
      assert.ok((await store.get("ns", "k", { offsetBytes: 8192, lengthBytes: 10_000 })).equals(data.subarray(8192)));
      assert.equal((await store.head("ns", "k"))?.sizeBytes, data.length, "head reads only the meta file");
    });

    it("local_put_file_adopts_caller_block_checksums", async function () {
      // Goal: putFile with the caller's block checksums stores a readable object; a wrong entry fails exactly its block as Corrupt; a table of the wrong length is ignored.
      const store = await openStore();
      await store.createNamespace("ns");
      const data = seededBytes(3 * 4096 + 100, 11);
      const blockCrc32cs = Uint32Array.from([0, 1, 2, 3].map((block) => crc32c(data.subarray(block * 4096, (block + 1) * 4096))));
      await store.putFile("ns", "right", await writeSource("right", data), { blockCrc32cs });
      assert.ok((await store.get("ns", "right")).equals(data));
      const wrong = blockCrc32cs.slice();
      wrong[2] ^= 1;
      await store.putFile("ns", "wrong", await writeSource("wrong", data), { blockCrc32cs: wrong });
      await expectStoreError(store.get("ns", "wrong"), "Corrupt");
      await expectStoreError(store.get("ns", "wrong", { offsetBytes: 2 * 4096, lengthBytes: 1 }), "Corrupt");
      assert.ok((await store.get("ns", "wrong", { offsetBytes: 0, lengthBytes: 2 * 4096 })).equals(data.subarray(0, 2 * 4096)));
      await store.putFile("ns", "short-table", await writeSource("short-table", data), { blockCrc32cs: wrong.subarray(0, 3) });
      assert.ok((await store.get("ns", "short-table")).equals(data), "a table of the wrong length is ignored, the file checksummed");
    });

    it("local_put_file_missing_or_short_data_file_detected", async function () {
      // Goal: a data file that is gone (while the meta file names it) or truncated fails Corrupt, not NotFound or short data.
      const store = await openStore();
      await store.createNamespace("ns");
      await store.putFile("ns", "gone", await writeSource("gone", seededBytes(10_000, 7)));
      await store.putFile("ns", "short", await writeSource("short", seededBytes(10_000, 8)));
      const [goneDataFile, shortDataFile] = await dataFileNames("ns");
      await unlink(path.join(rootDirectory, "ns", goneDataFile));
      await expectStoreError(store.get("ns", "gone"), "Corrupt");
      await truncate(path.join(rootDirectory, "ns", shortDataFile), 5000);
      await expectStoreError(store.get("ns", "short", { offsetBytes: 8192, lengthBytes: 100 }), "Corrupt");
      assert.equal((await store.get("ns", "short", { offsetBytes: 0, lengthBytes: 4096 })).length, 4096);
    });

    it("local_put_file_replace_and_delete_remove_data_files", async function () {
      // Goal: overwriting by putFile or put, and delete, remove the old data file: only the current object's files remain.
      const store = await openStore();
      await store.createNamespace("ns");
      await store.putFile("ns", "k", await writeSource("1", seededBytes(9000, 9)));
      const [first] = await dataFileNames("ns");
      await store.putFile("ns", "k", await writeSource("2", seededBytes(9000, 10)));
      const [second] = await dataFileNames("ns");
      assert.notEqual(second, first);
      assert.equal((await dataFileNames("ns")).length, 1);
      await store.put("ns", "k", Buffer.from("inline"));
      assert.deepEqual(await readdir(path.join(rootDirectory, "ns")), ["k"]);
      await store.putFile("ns", "k", await writeSource("3", seededBytes(9000, 11)));
      await store.delete("ns", "k");
      assert.deepEqual(await readdir(path.join(rootDirectory, "ns")), []);
      await expectStoreError(store.putFile("ns", "k", await writeSource("4", Buffer.from("x")), { ifMatch: "0000000000000000" }), "PreconditionFailed");
      assert.deepEqual(await readdir(path.join(rootDirectory, "ns")), [], "a failed ifMatch putFile leaves no file");
      await store.putFile("ns", "k", await writeSource("5", Buffer.from("x")), { ifAbsent: true });
      await expectStoreError(store.putFile("ns", "k", await writeSource("6", Buffer.from("y")), { ifAbsent: true }), "PreconditionFailed");
      assert.equal((await dataFileNames("ns")).length, 1, "a failed ifAbsent putFile leaves no data file");
    });

    it("local_put_file_long_keys_survive_reopen", async function () {
      // Goal: objects stored by putFile under long keys (hashed and 198-character names) list, read and survive reopening and its sweep.
      const first = await openStore();
      await first.createNamespace("ns");
      const keys = ["k".repeat(600), "é".repeat(33), "a/b"];
      const infos = [];
      for (const [index, key] of keys.entries()) infos.push(await first.putFile("ns", key, await writeSource(`${index}`, seededBytes(5000 + index, 12 + index))));
      await first.close();
      const second = await openStore();
      assert.deepEqual(await listAllKeys(second, "ns"), ["a/b", "k".repeat(600), "é".repeat(33)]);
      for (const [index, key] of keys.entries()) {
        assert.deepEqual(await second.head("ns", key), infos[index]);
        assert.ok((await second.get("ns", key)).equals(seededBytes(5000 + index, 12 + index)), `key ${key.slice(0, 10)}`);
      }
      assert.equal((await dataFileNames("ns")).length, 3);
    });

    it("local_put_file_crash_leftovers_swept_on_open", async function () {
      // Goal: opening a store removes data files no meta file names and temp files, of writers that are gone, and keeps everything else.
      const first = await openStore();
      await first.createNamespace("ns");
      await first.putFile("ns", "kept", await writeSource("kept", seededBytes(9000, 13)));
      await first.put("ns", "inline", Buffer.from("x"));
      const liveInstanceId = (first as unknown as { instanceId: string }).instanceId;
      const namespaceDirectory = path.join(rootDirectory, "ns");
      const [keptDataFile] = await dataFileNames("ns");
      // A pid far above any pid_max: that writer is certainly gone.
      const swept = [
        "kept~2147483646-abcdef-1", // an orphan beside a meta file that names another data file
        "inline~2147483646-abcdef-2", // beside an object file with the data inline
        "never-published~2147483646-abcdef-3", // a putFile that crashed before its meta file
        "~tmp-2147483646-abcdef-4", // a meta file not yet published
      ];
      const kept = [
        `kept~${process.pid}-${liveInstanceId}-99`, // an open store of this process is still writing it
        "other~1-abcdef-5", // pid 1 runs: its writer may still publish it
      ];
      for (const name of [...swept, ...kept]) await writeFile(path.join(namespaceDirectory, name), "leftover");
      assert.deepEqual(await listAllKeys(first, "ns"), ["inline", "kept"]);
      await openStore();
      assert.deepEqual((await readdir(namespaceDirectory)).sort(), ["inline", "kept", keptDataFile, ...kept].sort());
      assert.ok((await first.get("ns", "kept")).equals(seededBytes(9000, 13)));
      await first.close();
      await openStore();
      assert.deepEqual((await readdir(namespaceDirectory)).sort(), ["inline", "kept", keptDataFile, kept[1]].sort());
    });

    it("local_put_file_concurrent_reads_see_whole_objects", async function () {
      // Goal: gets racing with putFile overwrites (which remove the old data file) return one whole version, never an error.
      const store = await openStore();
      await store.createNamespace("ns");
      const versions = [seededBytes(40_000, 14), seededBytes(40_000, 15)];
      await store.putFile("ns", "k", await writeSource("initial", versions[0]));
      let writing = true;
      const writer = (async () => {
        for (let round = 0; round < 40; round++) await store.putFile("ns", "k", await writeSource(`v${round}`, versions[round % 2]));
        writing = false;
      })();
      const reader = async () => {
        let reads = 0;
        while (writing || reads === 0) {
          const data = await store.get("ns", "k", { offsetBytes: 100, lengthBytes: 30_000 });
          assert.ok(versions.some((version) => data.equals(version.subarray(100, 30_100))), "a read mixes versions");
          reads += 1;
        }
      };
      await Promise.all([writer, reader(), reader(), reader()]);
    });

    it("local_put_file_other_file_system_copied", async function () {
      // Goal: a file on another file system (link fails EXDEV) is copied into an ordinary object file, and reads back.
      const otherDirectory = "/dev/shm";
      const sameDevice = await stat(otherDirectory).then((other) => stat(rootDirectory).then((root) => root.dev === other.dev), () => true);
      if (sameDevice) this.skip();
      const store = await openStore();
      await store.createNamespace("ns");
      const data = seededBytes(20_000, 16);
      const source = await writeSource(`ovs-local-store-${process.pid}`, data, otherDirectory);
      try {
        const info = await store.putFile("ns", "k", source);
        assert.equal(info.sizeBytes, data.length);
      } finally {
        await unlink(source);
      }
      assert.deepEqual(await readdir(path.join(rootDirectory, "ns")), ["k"]);
      assert.ok((await store.get("ns", "k")).equals(data));
    });

    it("local_put_file_symbolic_link_copied", async function () {
      // Goal: a symbolic link is not adopted (that would keep the link, not the bytes): its target's bytes are copied.
      const store = await openStore();
      await store.createNamespace("ns");
      const data = seededBytes(5000, 17);
      const target = await writeSource("target", data);
      const link = path.join(sourceDirectory, "link");
      await symlink(target, link);
      await store.putFile("ns", "k", link);
      await unlink(target);
      assert.deepEqual(await readdir(path.join(rootDirectory, "ns")), ["k"]);
      assert.ok((await store.get("ns", "k")).equals(data));
    });
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

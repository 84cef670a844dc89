// The ObjectStore contract as one mocha suite, run over every implementation and wrapper stack
// (memory, local, retrying(failing(memory)), instrumented, failing). A store passes when it keeps
// the invariants in volumedriver/src/backend/object-store.ts and volumedriver/docs/backends.md.
// putFile needs real files: each test gets a temp directory for its source files.
import assert from "node:assert/strict";
import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { isStoreError, KEY_SIZE_BYTES_MAX } from "../../../../volumedriver/src/backend/object-store.ts";
import type { ListOptions, ObjectInfo, ObjectStore, StoreErrorKind } from "../../../../volumedriver/src/backend/object-store.ts";
import { mulberry32 } from "../../../../volumedriver/src/backend/failing-store.ts";

export interface StoreUnderTest {
  store: ObjectStore;
  cleanup: () => Promise<void>;
  /** The longest key (UTF-8 bytes) the store takes in the contract's namespace, when under 1024 (an S3 shared bucket's prefix counts). */
  keySizeBytesMax?: number;
}

const MIB = 1024 * 1024;
const NAMESPACE = "contract";

/** Deterministic pseudo-random bytes. */
export function seededBytes(sizeBytes: number, seed: number): Buffer {
  const random = mulberry32(seed);
  const bytes = Buffer.alloc(sizeBytes);
  let index = 0;
  for (; index + 4 <= sizeBytes; index += 4) bytes.writeUInt32LE(Math.floor(random() * 2 ** 32), index);
  for (; index < sizeBytes; index++) bytes[index] = Math.floor(random() * 256);
  return bytes;
}

/** Awaits `promise` and checks it failed with a StoreError of `kind`. */
export async function expectStoreError(promise: Promise<unknown>, kind: StoreErrorKind): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isStoreError(error, kind), `expected StoreError(${kind}), got ${String(error)}`);
    return true;
  });
}

/** Every key of a namespace, walking its pages; checks each page's bound and the page count. */
export async function listAllKeys(store: ObjectStore, namespace: string, options: ListOptions = {}): Promise<string[]> {
  const keys: string[] = [];
  let startAfter = options.startAfter;
  for (let pageCount = 1; ; pageCount++) {
    const page = await store.list(namespace, { ...options, startAfter });
    assert.ok(page.objects.length <= Math.min(options.limitKeys ?? 1000, 1000), `page of ${page.objects.length} keys`);
    keys.push(...page.objects.map((object) => object.key));
    if (page.nextStartAfter === undefined) return keys;
    assert.ok(pageCount <= 10_000, "list does not end");
    startAfter = page.nextStartAfter;
  }
}

/** Ascending UTF-8 byte order, computed independently of the stores' own comparison. */
function sortByUtf8Bytes(keys: readonly string[]): string[] {
  return [...keys].sort((left, right) => Buffer.compare(Buffer.from(left, "utf8"), Buffer.from(right, "utf8")));
}

async function putMany(store: ObjectStore, namespace: string, keys: readonly string[], inFlightMax = 50): Promise<void> {
  for (let start = 0; start < keys.length; start += inFlightMax) {
    await Promise.all(keys.slice(start, start + inFlightMax).map((key) => store.put(namespace, key, Buffer.from(key, "utf8"))));
  }
}

export function runObjectStoreContract(name: string, makeStore: () => Promise<StoreUnderTest>): void {
  describe(`ObjectStore contract: ${name}`, function () {
    let underTest: StoreUnderTest;
    let store: ObjectStore;
    let sourceDirectory: string;
    let sourceCount = 0;

    /** A new source file for putFile holding `data`; its path. */
    async function writeSource(data: Uint8Array): Promise<string> {
      sourceCount += 1;
      const filePath = path.join(sourceDirectory, `source-${sourceCount}`);
      await writeFile(filePath, data);
      return filePath;
    }

    beforeEach(async function () {
      underTest = await makeStore();
      store = underTest.store;
      sourceDirectory = await mkdtemp(path.join(os.tmpdir(), "ovs-contract-source-"));
    });

    afterEach(async function () {
      await store.close().catch(() => undefined);
      await underTest.cleanup();
      await rm(sourceDirectory, { recursive: true, force: true });
    });

    describe("namespaces", function () {
      it("namespace_create_list_exists", async function () {
        // Goal: created namespaces exist and are listed in ascending order; others do not exist.
        await store.createNamespace("zeta");
        await store.createNamespace("alpha");
        await store.createNamespace("alpha.2");
        assert.deepEqual(await store.listNamespaces(), ["alpha", "alpha.2", "zeta"]);
        assert.equal(await store.namespaceExists("alpha"), true);
        assert.equal(await store.namespaceExists("beta"), false);
      });

      it("namespace_create_existing_is_noop", async function () {
        // Goal: creating an existing namespace succeeds and keeps its objects.
        await store.createNamespace(NAMESPACE);
        await store.put(NAMESPACE, "kept", Buffer.from("data"));
        await store.createNamespace(NAMESPACE);
        assert.deepEqual(await store.get(NAMESPACE, "kept"), Buffer.from("data"));
      });

      it("namespace_delete_removes_content", async function () {
        // Goal: deleting a namespace removes it and everything in it; a new one of that name is empty.
        await store.createNamespace(NAMESPACE);
        await putMany(store, NAMESPACE, ["a", "b/c", "d"]);
        await store.deleteNamespace(NAMESPACE);
        assert.equal(await store.namespaceExists(NAMESPACE), false);
        assert.deepEqual(await store.listNamespaces(), []);
        await store.createNamespace(NAMESPACE);
        assert.deepEqual((await store.list(NAMESPACE)).objects, []);
        await expectStoreError(store.get(NAMESPACE, "a"), "NotFound");
      });

      it("namespace_delete_missing_not_found", async function () {
        // Goal: deleting a namespace that does not exist fails NotFound.
        await expectStoreError(store.deleteNamespace("missing"), "NotFound");
      });

      it("namespace_missing_object_calls_not_found", async function () {
        // Goal: every object call in a namespace that does not exist fails NotFound.
        await expectStoreError(store.put("missing", "k", Buffer.from("x")), "NotFound");
        await expectStoreError(store.put("missing", "k", Buffer.from("x"), { ifAbsent: true }), "NotFound");
        await expectStoreError(store.get("missing", "k"), "NotFound");
        await expectStoreError(store.head("missing", "k"), "NotFound");
        await expectStoreError(store.delete("missing", "k"), "NotFound");
        await expectStoreError(store.list("missing"), "NotFound");
        await expectStoreError(store.putFile("missing", "k", await writeSource(Buffer.from("x"))), "NotFound");
      });
    });

    describe("objects", function () {
      beforeEach(async function () {
        await store.createNamespace(NAMESPACE);
      });

      it("put_get_round_trip_sizes", async function () {
        // Goal: binary objects of 0 bytes to a few MiB come back byte for byte, with consistent info.
        const sizesBytes = [0, 1, 4095, 4096, 4097, 100_000, 3 * MIB + 17];
        for (const [index, sizeBytes] of sizesBytes.entries()) {
          const data = seededBytes(sizeBytes, index + 1);
          const key = `object-${sizeBytes}`;
          const info = await store.put(NAMESPACE, key, data);
          assert.equal(info.key, key);
          assert.equal(info.sizeBytes, sizeBytes);
          assert.ok(info.etag.length > 0, "etag is empty");
          assert.ok((await store.get(NAMESPACE, key)).equals(data), `${sizeBytes}-byte object differs`);
          assert.deepEqual(await store.head(NAMESPACE, key), info);
        }
        const listed = (await store.list(NAMESPACE)).objects.find((object) => object.key === `object-${3 * MIB + 17}`);
        assert.equal(listed?.sizeBytes, 3 * MIB + 17);
      });

      it("put_get_copies_buffers", async function () {
        // Goal: changing a buffer after put, or one returned by get, does not change the stored object.
        const data = Buffer.from("original");
        await store.put(NAMESPACE, "k", data);
        data.fill(0);
        const first = await store.get(NAMESPACE, "k");
        first.fill(1);
        assert.deepEqual(await store.get(NAMESPACE, "k"), Buffer.from("original"));
      });

      it("put_overwrite_replaces_and_changes_etag", async function () {
        // Goal: a plain put replaces the object and yields a new etag.
        const first = await store.put(NAMESPACE, "k", Buffer.from("first version"));
        const second = await store.put(NAMESPACE, "k", Buffer.from("second"));
        assert.notEqual(second.etag, first.etag);
        assert.equal(second.sizeBytes, 6);
        assert.deepEqual(await store.get(NAMESPACE, "k"), Buffer.from("second"));
        assert.deepEqual(await store.head(NAMESPACE, "k"), second);
      });

      it("put_if_absent", async function () {
        // Goal: ifAbsent succeeds only while the key is absent, and a failed one changes nothing.
        await store.put(NAMESPACE, "k", Buffer.from("winner"), { ifAbsent: true });
        await expectStoreError(store.put(NAMESPACE, "k", Buffer.from("loser"), { ifAbsent: true }), "PreconditionFailed");
        assert.deepEqual(await store.get(NAMESPACE, "k"), Buffer.from("winner"));
        await store.delete(NAMESPACE, "k");
        await store.put(NAMESPACE, "k", Buffer.from("again"), { ifAbsent: true });
        assert.deepEqual(await store.get(NAMESPACE, "k"), Buffer.from("again"));
      });

      it("put_if_absent_concurrent_one_winner", async function () {
        // Goal: of 20 concurrent ifAbsent puts of one key exactly one wins, and its bytes are stored.
        const contenders = Array.from({ length: 20 }, (_, index) => Buffer.from(`contender ${index}`));
        const results = await Promise.allSettled(contenders.map((data) => store.put(NAMESPACE, "race", data, { ifAbsent: true })));
        const winners = results.flatMap((result, index) => (result.status === "fulfilled" ? [index] : []));
        assert.equal(winners.length, 1, `winners: ${winners.join(", ")}`);
        for (const result of results) {
          if (result.status === "rejected") assert.ok(isStoreError(result.reason, "PreconditionFailed"), String(result.reason));
        }
        assert.deepEqual(await store.get(NAMESPACE, "race"), contenders[winners[0]]);
      });

      it("put_if_match", async function () {
        // Goal: ifMatch succeeds only against the current etag; a stale or absent one fails and changes nothing.
        const first = await store.put(NAMESPACE, "k", Buffer.from("v1"));
        const second = await store.put(NAMESPACE, "k", Buffer.from("v2"), { ifMatch: first.etag });
        assert.notEqual(second.etag, first.etag);
        await expectStoreError(store.put(NAMESPACE, "k", Buffer.from("v3"), { ifMatch: first.etag }), "PreconditionFailed");
        assert.deepEqual(await store.get(NAMESPACE, "k"), Buffer.from("v2"));
        await expectStoreError(store.put(NAMESPACE, "absent", Buffer.from("v1"), { ifMatch: first.etag }), "PreconditionFailed");
        assert.equal(await store.head(NAMESPACE, "absent"), undefined);
      });

      it("get_ranges", async function () {
        // Goal: ranged gets return exactly the bytes asked for, clamped at the end, across block boundaries.
        const data = seededBytes(3 * 4096 + 100, 7);
        await store.put(NAMESPACE, "k", data);
        const ranges: Array<[number, number]> = [
          [1000, 2000], // middle of the first block
          [4095, 2], // across a block boundary
          [4096, 4096], // exactly one block
          [100, data.length - 100], // to the end
          [8191, 100_000], // past the end: clamped
          [0, data.length], // everything
          [data.length - 1, 1], // the last byte
          [data.length, 10], // starts at the end: empty
          [500, 0], // empty
        ];
        const random = mulberry32(11);
        for (let index = 0; index < 40; index++) {
          const offsetBytes = Math.floor(random() * data.length);
          ranges.push([offsetBytes, Math.floor(random() * 9000)]);
        }
        for (const [offsetBytes, lengthBytes] of ranges) {
          const expected = data.subarray(offsetBytes, Math.min(data.length, offsetBytes + lengthBytes));
          const actual = await store.get(NAMESPACE, "k", { offsetBytes, lengthBytes });
          assert.ok(actual.equals(expected), `range offset ${offsetBytes} length ${lengthBytes}`);
        }
      });

      it("get_range_offset_past_end_invalid", async function () {
        // Goal: a range starting past the end fails Invalid, as do malformed ranges.
        await store.put(NAMESPACE, "k", Buffer.from("0123456789"));
        await expectStoreError(store.get(NAMESPACE, "k", { offsetBytes: 11, lengthBytes: 1 }), "Invalid");
        await expectStoreError(store.get(NAMESPACE, "k", { offsetBytes: -1, lengthBytes: 1 }), "Invalid");
        await expectStoreError(store.get(NAMESPACE, "k", { offsetBytes: 0, lengthBytes: -1 }), "Invalid");
        await expectStoreError(store.get(NAMESPACE, "k", { offsetBytes: 1.5, lengthBytes: 1 }), "Invalid");
        await expectStoreError(store.get(NAMESPACE, "k", { offsetBytes: Number.NaN, lengthBytes: 1 }), "Invalid");
        await store.put(NAMESPACE, "empty", Buffer.alloc(0));
        assert.equal((await store.get(NAMESPACE, "empty", { offsetBytes: 0, lengthBytes: 5 })).length, 0);
        await expectStoreError(store.get(NAMESPACE, "empty", { offsetBytes: 1, lengthBytes: 0 }), "Invalid");
      });

      it("head_present_and_missing", async function () {
        // Goal: head reports size and etag of a present object and undefined for a missing one.
        const info = await store.put(NAMESPACE, "k", Buffer.from("12345"));
        assert.deepEqual(await store.head(NAMESPACE, "k"), { key: "k", sizeBytes: 5, etag: info.etag });
        assert.equal(await store.head(NAMESPACE, "missing"), undefined);
      });

      it("delete_idempotent", async function () {
        // Goal: delete removes the object, and deleting a missing key succeeds.
        await store.put(NAMESPACE, "k", Buffer.from("x"));
        await store.delete(NAMESPACE, "k");
        await store.delete(NAMESPACE, "k");
        await store.delete(NAMESPACE, "never-there");
        await expectStoreError(store.get(NAMESPACE, "k"), "NotFound");
        assert.equal(await store.head(NAMESPACE, "k"), undefined);
        assert.deepEqual((await store.list(NAMESPACE)).objects, []);
      });

      it("get_missing_not_found", async function () {
        // Goal: get of a key never put fails NotFound, ranged or not.
        await expectStoreError(store.get(NAMESPACE, "missing"), "NotFound");
        await expectStoreError(store.get(NAMESPACE, "missing", { offsetBytes: 0, lengthBytes: 1 }), "NotFound");
      });
    });

    describe("putFile", function () {
      beforeEach(async function () {
        await store.createNamespace(NAMESPACE);
      });

      it("put_file_round_trip_sizes_and_ranges", async function () {
        // Goal: files of 0 bytes to a few MiB come back byte for byte, whole and in ranges, with consistent info in put, head and list.
        const sizesBytes = [0, 1, 4095, 4096, 4097, 100_000, 3 * MIB + 17];
        const infos = new Map<string, ObjectInfo>();
        for (const [index, sizeBytes] of sizesBytes.entries()) {
          const data = seededBytes(sizeBytes, 100 + index);
          const key = `file-${sizeBytes}`;
          const info = await store.putFile(NAMESPACE, key, await writeSource(data));
          assert.equal(info.key, key);
          assert.equal(info.sizeBytes, sizeBytes);
          assert.ok(info.etag.length > 0, "etag is empty");
          infos.set(key, info);
          assert.ok((await store.get(NAMESPACE, key)).equals(data), `${sizeBytes}-byte object differs`);
          assert.deepEqual(await store.head(NAMESPACE, key), info);
          const random = mulberry32(sizeBytes);
          const ranges: Array<[number, number]> = [[0, sizeBytes], [sizeBytes, 3], [0, 0]];
          for (let rangeIndex = 0; rangeIndex < 12 && sizeBytes > 0; rangeIndex++) {
            ranges.push([Math.floor(random() * sizeBytes), Math.floor(random() * 9000)]);
          }
          if (sizeBytes > 8192) ranges.push([4095, 2], [4096, 4096], [sizeBytes - 1, 1]);
          for (const [offsetBytes, lengthBytes] of ranges) {
            const expected = data.subarray(offsetBytes, Math.min(sizeBytes, offsetBytes + lengthBytes));
            const actual = await store.get(NAMESPACE, key, { offsetBytes, lengthBytes });
            assert.ok(actual.equals(expected), `${sizeBytes}-byte object, range offset ${offsetBytes} length ${lengthBytes}`);
          }
        }
        const listed = (await store.list(NAMESPACE)).objects;
        assert.deepEqual(listed, sortByUtf8Bytes([...infos.keys()]).map((key) => infos.get(key)));
      });

      it("put_file_source_unlinked_still_readable", async function () {
        // Goal: the object keeps its bytes after the caller unlinks the file, and after a new file takes its name.
        const data = seededBytes(5 * 4096 + 3, 21);
        const source = await writeSource(data);
        const info = await store.putFile(NAMESPACE, "k", source);
        await unlink(source);
        assert.ok((await store.get(NAMESPACE, "k")).equals(data));
        await writeFile(source, "another file under the same name");
        assert.ok((await store.get(NAMESPACE, "k", { offsetBytes: 4096, lengthBytes: 5000 })).equals(data.subarray(4096, 9096)));
        assert.deepEqual(await store.head(NAMESPACE, "k"), info);
      });

      it("put_file_overwrite_mixed_with_put", async function () {
        // Goal: put, putFile and put again replace one another whole, each with a new etag; delete then removes the object.
        const versions = [seededBytes(10_000, 31), seededBytes(20_000, 32), seededBytes(300, 33), seededBytes(4096, 34)];
        const etags = new Set<string>();
        for (const [index, data] of versions.entries()) {
          const info = index % 2 === 0 ? await store.put(NAMESPACE, "k", data) : await store.putFile(NAMESPACE, "k", await writeSource(data));
          etags.add(info.etag);
          assert.equal(info.sizeBytes, data.length);
          assert.ok((await store.get(NAMESPACE, "k")).equals(data), `version ${index}`);
          assert.deepEqual(await store.head(NAMESPACE, "k"), info);
          assert.deepEqual((await store.list(NAMESPACE)).objects, [info]);
        }
        assert.equal(etags.size, versions.length);
        await store.delete(NAMESPACE, "k");
        await store.delete(NAMESPACE, "k");
        await expectStoreError(store.get(NAMESPACE, "k"), "NotFound");
        assert.deepEqual((await store.list(NAMESPACE)).objects, []);
      });

      it("put_file_if_absent", async function () {
        // Goal: ifAbsent putFile succeeds only while the key is absent (also against put), and of 10 racing ones exactly one wins.
        await store.putFile(NAMESPACE, "k", await writeSource(Buffer.from("winner")), { ifAbsent: true });
        await expectStoreError(store.putFile(NAMESPACE, "k", await writeSource(Buffer.from("loser")), { ifAbsent: true }), "PreconditionFailed");
        await expectStoreError(store.put(NAMESPACE, "k", Buffer.from("loser"), { ifAbsent: true }), "PreconditionFailed");
        assert.deepEqual(await store.get(NAMESPACE, "k"), Buffer.from("winner"));
        const contenders = Array.from({ length: 10 }, (_, index) => seededBytes(5000 + index, 40 + index));
        const sources = await Promise.all(contenders.map((data) => writeSource(data)));
        const results = await Promise.allSettled(sources.map((source) => store.putFile(NAMESPACE, "race", source, { ifAbsent: true })));
        const winners = results.flatMap((result, index) => (result.status === "fulfilled" ? [index] : []));
        assert.equal(winners.length, 1, `winners: ${winners.join(", ")}`);
        for (const result of results) {
          if (result.status === "rejected") assert.ok(isStoreError(result.reason, "PreconditionFailed"), String(result.reason));
        }
        assert.ok((await store.get(NAMESPACE, "race")).equals(contenders[winners[0]]));
      });

      it("put_file_if_match", async function () {
        // Goal: ifMatch putFile succeeds only against the current etag, from put or putFile; a stale or absent one changes nothing.
        const first = await store.put(NAMESPACE, "k", Buffer.from("v1"));
        const second = await store.putFile(NAMESPACE, "k", await writeSource(Buffer.from("v2")), { ifMatch: first.etag });
        await expectStoreError(store.putFile(NAMESPACE, "k", await writeSource(Buffer.from("v3")), { ifMatch: first.etag }), "PreconditionFailed");
        assert.deepEqual(await store.get(NAMESPACE, "k"), Buffer.from("v2"));
        const third = await store.put(NAMESPACE, "k", Buffer.from("v4"), { ifMatch: second.etag });
        await store.putFile(NAMESPACE, "k", await writeSource(Buffer.from("v5")), { ifMatch: third.etag });
        assert.deepEqual(await store.get(NAMESPACE, "k"), Buffer.from("v5"));
        await expectStoreError(store.putFile(NAMESPACE, "absent", await writeSource(Buffer.from("v1")), { ifMatch: first.etag }), "PreconditionFailed");
        assert.equal(await store.head(NAMESPACE, "absent"), undefined);
      });

      it("put_file_empty_file", async function () {
        // Goal: an empty file stores an empty object: size 0 in head and list, empty whole and ranged gets.
        const info = await store.putFile(NAMESPACE, "empty", await writeSource(Buffer.alloc(0)));
        assert.equal(info.sizeBytes, 0);
        assert.deepEqual(await store.head(NAMESPACE, "empty"), info);
        assert.deepEqual((await store.list(NAMESPACE)).objects, [info]);
        assert.equal((await store.get(NAMESPACE, "empty")).length, 0);
        assert.equal((await store.get(NAMESPACE, "empty", { offsetBytes: 0, lengthBytes: 5 })).length, 0);
        await expectStoreError(store.get(NAMESPACE, "empty", { offsetBytes: 1, lengthBytes: 0 }), "Invalid");
      });

      it("put_file_missing_file_invalid", async function () {
        // Goal: putFile of a file that does not exist fails Invalid and stores nothing.
        await expectStoreError(store.putFile(NAMESPACE, "k", path.join(sourceDirectory, "never-written")), "Invalid");
        assert.equal(await store.head(NAMESPACE, "k"), undefined);
        assert.deepEqual((await store.list(NAMESPACE)).objects, []);
      });
    });

    describe("list", function () {
      beforeEach(async function () {
        await store.createNamespace(NAMESPACE);
      });

      it("list_pages_2500_keys", async function () {
        // Goal: 2500 keys come back complete, in order, without duplicates, in pages of 1000 and of 97
        // (a size that divides nothing; pages of 7 are covered by the smaller listings below).
        const keys = Array.from({ length: 2500 }, (_, index) => `sco_${String((index * 7919) % 2500).padStart(8, "0")}`);
        await putMany(store, NAMESPACE, keys);
        const expected = sortByUtf8Bytes(keys);
        const firstPage = await store.list(NAMESPACE);
        assert.equal(firstPage.objects.length, 1000);
        assert.equal(firstPage.nextStartAfter, expected[999]);
        assert.deepEqual(firstPage.objects[0], { key: expected[0], sizeBytes: 12, etag: (await store.head(NAMESPACE, expected[0]))?.etag });
        assert.deepEqual(await listAllKeys(store, NAMESPACE), expected);
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { limitKeys: 97 }), expected);
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { limitKeys: 7, startAfter: expected[2299] }), expected.slice(2300));
        assert.equal((await store.list(NAMESPACE, { limitKeys: 5000 })).objects.length, 1000, "limitKeys is capped at 1000");
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { startAfter: expected[2400] }), expected.slice(2401));
        assert.deepEqual((await store.list(NAMESPACE, { startAfter: expected[2499] })).objects, []);
      });

      it("list_prefix", async function () {
        // Goal: a prefix selects exactly the keys that start with it, also combined with startAfter and paging.
        const keys = ["p", "p/", "p/a", "p/b/c", "p0", "pa", "q/a", "o", "p/z", "p/a/b"];
        await putMany(store, NAMESPACE, keys);
        const withPrefix = sortByUtf8Bytes(keys.filter((key) => key.startsWith("p/")));
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { prefix: "p/" }), withPrefix);
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { prefix: "p/", limitKeys: 2 }), withPrefix);
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { prefix: "p/", startAfter: "p/a" }), withPrefix.slice(withPrefix.indexOf("p/a") + 1));
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { prefix: "p/", startAfter: "a" }), withPrefix);
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { prefix: "nothing" }), []);
      });

      it("list_unusual_keys_sorted_by_utf8_bytes", async function () {
        // Goal: keys with '/', '%', spaces, dots, non-ASCII and astral characters round-trip and list in UTF-8 byte order.
        const keySizeBytesMax = underTest.keySizeBytesMax ?? KEY_SIZE_BYTES_MAX;
        const keys = [
          "a", "a/b", "a/b/c", "a-b", "a.b", "a b", "a%2Fb", "%", "A", "~x", "#hash", ".hidden", ".", "...", "dir/",
          "x\ny", "é", "日本", "😀", "\uE000", "\uFFFD", "z😀", "z\uFFFF", "tab\there", "'quote\"",
          "k".repeat(keySizeBytesMax), "é".repeat(Math.floor(keySizeBytesMax / 2)), "😀".repeat(Math.floor(keySizeBytesMax / 4)), `${"%".repeat(300)}end`,
        ];
        await putMany(store, NAMESPACE, keys);
        assert.deepEqual(await listAllKeys(store, NAMESPACE), sortByUtf8Bytes(keys));
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { limitKeys: 3 }), sortByUtf8Bytes(keys));
        for (const key of keys) {
          assert.deepEqual(await store.get(NAMESPACE, key), Buffer.from(key, "utf8"), `key ${JSON.stringify(key)}`);
        }
        assert.deepEqual(await listAllKeys(store, NAMESPACE, { prefix: "z" }), sortByUtf8Bytes(["z😀", "z\uFFFF"]));
      });

      it("list_limit_invalid", async function () {
        // Goal: a limit that is not a positive integer fails Invalid.
        await expectStoreError(store.list(NAMESPACE, { limitKeys: 0 }), "Invalid");
        await expectStoreError(store.list(NAMESPACE, { limitKeys: -3 }), "Invalid");
        await expectStoreError(store.list(NAMESPACE, { limitKeys: 2.5 }), "Invalid");
      });
    });

    describe("validation and lifecycle", function () {
      it("invalid_names_rejected", async function () {
        // Goal: malformed namespace names and keys fail Invalid on every call that takes them.
        for (const namespace of ["", "A", "-x", "a/b", "x".repeat(64), "..", "a b", "é"]) {
          await expectStoreError(store.createNamespace(namespace), "Invalid");
          await expectStoreError(store.namespaceExists(namespace), "Invalid");
          await expectStoreError(store.put(namespace, "k", Buffer.from("x")), "Invalid");
          await expectStoreError(store.putFile(namespace, "k", await writeSource(Buffer.from("x"))), "Invalid");
          await expectStoreError(store.list(namespace), "Invalid");
        }
        await store.createNamespace(NAMESPACE);
        for (const key of ["", "/a", "a/../b", "..", "a\0b", "x".repeat(1025), "é".repeat(513)]) {
          await expectStoreError(store.put(NAMESPACE, key, Buffer.from("x")), "Invalid");
          await expectStoreError(store.putFile(NAMESPACE, key, await writeSource(Buffer.from("x"))), "Invalid");
          await expectStoreError(store.get(NAMESPACE, key), "Invalid");
          await expectStoreError(store.head(NAMESPACE, key), "Invalid");
          await expectStoreError(store.delete(NAMESPACE, key), "Invalid");
        }
        assert.deepEqual((await store.list(NAMESPACE)).objects, []);
      });

      it("calls_after_close_fail_closed", async function () {
        // Goal: after close every call fails Closed, and closing again is harmless.
        await store.createNamespace(NAMESPACE);
        await store.put(NAMESPACE, "k", Buffer.from("x"));
        const source = await writeSource(Buffer.from("y"));
        await store.close();
        const calls: Array<() => Promise<unknown>> = [
          () => store.createNamespace("other"),
          () => store.deleteNamespace(NAMESPACE),
          () => store.listNamespaces(),
          () => store.namespaceExists(NAMESPACE),
          () => store.put(NAMESPACE, "k", Buffer.from("y")),
          () => store.putFile(NAMESPACE, "k", source),
          () => store.get(NAMESPACE, "k"),
          () => store.head(NAMESPACE, "k"),
          () => store.delete(NAMESPACE, "k"),
          () => store.list(NAMESPACE),
        ];
        for (const call of calls) await expectStoreError(call(), "Closed");
        await store.close();
      });
    });
  });
}

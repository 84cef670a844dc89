// Goal: the ASD store applies batches atomically in arrival order with asserts, shares one commit among concurrent batches, enforces capacity (deletes and reads still work), reads ranges, keeps data across reopen, and removes orphan value files at open.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { isAsdError, type AsdBatch } from "../../../alba/src/asd/asd-api.ts";
import { ASD_FILES_DIRECTORY, AsdStore, valueFileKeyHash, type AsdStoreOptions } from "../../../alba/src/asd/asd-store.ts";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

const INLINE_MAX_BYTES = 64 * 1024;
const temp = new TempDirs("asd-store");

function set(key: string, value: Uint8Array): AsdBatch["updates"][number] {
  return { kind: "set", key, value };
}

async function valueFiles(directory: string): Promise<string[]> {
  return (await readdir(path.join(directory, ASD_FILES_DIRECTORY))).sort();
}

async function rejectsWith(promise: Promise<unknown>, kind: "AssertFailed" | "Full" | "Invalid" | "Closed"): Promise<void> {
  await assert.rejects(promise, (error: unknown) => isAsdError(error, kind));
}

describe("ASD store", () => {
  const open: AsdStore[] = [];
  async function openStore(options: Partial<AsdStoreOptions> & { directory: string }): Promise<AsdStore> {
    const store = await AsdStore.open({ nodeId: "node-a", ...options });
    open.push(store);
    return store;
  }
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
  });
  after(() => temp.removeAll());

  it("applies sets and deletes, checks absent/present/checksum asserts, and reads every value back", async () => {
    const store = await openStore({ directory: await temp.make() });
    const small = Buffer.from("small value");
    const large = randomBytes(INLINE_MAX_BYTES + 1);
    await store.applyBatch({ asserts: [{ kind: "absent", key: "a" }], updates: [set("a", small), set("b", large), set("empty", new Uint8Array(0))] });
    assert.deepEqual(await store.get("a"), small);
    assert.deepEqual(await store.get("b"), large);
    assert.deepEqual(await store.get("empty"), Buffer.alloc(0));
    assert.equal(await store.get("missing"), undefined);

    await rejectsWith(store.applyBatch({ asserts: [{ kind: "absent", key: "a" }], updates: [set("c", small)] }), "AssertFailed");
    await rejectsWith(store.applyBatch({ asserts: [{ kind: "present", key: "zz" }], updates: [set("c", small)] }), "AssertFailed");
    await rejectsWith(store.applyBatch({ asserts: [{ kind: "checksum", key: "b", crc32c: (crc32c(large) + 1) >>> 0 }], updates: [set("c", small)] }), "AssertFailed");
    assert.equal(await store.get("c"), undefined);

    await store.applyBatch({ asserts: [{ kind: "present", key: "a" }, { kind: "checksum", key: "b", crc32c: crc32c(large) }], updates: [{ kind: "delete", key: "a" }, { kind: "delete", key: "never-there" }] });
    assert.equal(await store.get("a"), undefined);
    const listed = store.list();
    assert.deepEqual(listed.keys, [
      { key: "b", sizeBytes: large.length, crc32c: crc32c(large) },
      { key: "empty", sizeBytes: 0, crc32c: 0 },
    ]);
    const statistics = await store.statistics();
    assert.equal(statistics.keyCount, 2);
    assert.equal(statistics.usedBytes, large.length);
    assert.equal(statistics.batchCount, 2);
    assert.equal(statistics.writtenBytes, small.length + large.length);
    assert.match(statistics.asdId, /^[0-9a-f]{32}$/);
    assert.equal(statistics.nodeId, "node-a");
  });

  it("applies nothing of a batch whose last assert fails, and leaves no value file of it", async () => {
    const directory = await temp.make();
    const store = await openStore({ directory });
    await store.applyBatch({ asserts: [], updates: [set("keep", Buffer.from("old"))] });
    await rejectsWith(store.applyBatch({
      asserts: [{ kind: "present", key: "keep" }, { kind: "absent", key: "keep" }],
      updates: [set("x", randomBytes(100_000)), set("y", Buffer.from("y")), set("keep", Buffer.from("new"))],
    }), "AssertFailed");
    assert.equal(await store.get("x"), undefined);
    assert.equal(await store.get("y"), undefined);
    assert.deepEqual(await store.get("keep"), Buffer.from("old"));
    assert.deepEqual(await valueFiles(directory), []);
    await rejectsWith(store.applyBatch({ asserts: [], updates: [set("", Buffer.from("x"))] }), "Invalid");
    await rejectsWith(store.applyBatch({ asserts: [], updates: [set("d", Buffer.from("1")), { kind: "delete", key: "d" }] }), "Invalid");
  });

  it("commits concurrent batches together (fewer fsyncs than batches), in arrival order, rejecting only failing batches", async () => {
    const directory = await temp.make();
    const store = await openStore({ directory });
    const batchCount = 40;
    const results = await Promise.allSettled(Array.from({ length: batchCount }, (_unused, index) => store.applyBatch({
      // Batch 20 asserts "k0" absent, but batch 0 (earlier in the same group) set it: only 20 fails.
      asserts: index === 20 ? [{ kind: "absent", key: "k0" }] : index === 30 ? [{ kind: "present", key: "k29" }] : [],
      updates: [set(`k${index}`, Buffer.from(`value ${index}`)), ...(index % 10 === 5 ? [set(`big${index}`, randomBytes(70_000))] : [])],
    })));
    results.forEach((result, index) => {
      if (index === 20) assert.ok(result.status === "rejected" && isAsdError(result.reason, "AssertFailed"), `batch 20: ${JSON.stringify(result)}`);
      else assert.equal(result.status, "fulfilled", `batch ${index}`);
    });
    for (let index = 0; index < batchCount; index++) {
      assert.deepEqual(await store.get(`k${index}`), index === 20 ? undefined : Buffer.from(`value ${index}`));
    }
    const statistics = await store.statistics();
    assert.equal(statistics.batchCount, batchCount - 1);
    // 4 value files (one fsync each) + 1 directory fsync + 1 commit if all joined one group.
    assert.ok(statistics.fsyncCount < batchCount - 1, `fsyncs ${statistics.fsyncCount} should be fewer than batches ${batchCount - 1}`);
    assert.equal((await valueFiles(directory)).length, 4);
  });

  it("refuses batches that add bytes beyond capacity with Full, but still applies deletes and serves reads", async () => {
    const directory = await temp.make();
    const store = await openStore({ directory, capacityBytes: 200_000 });
    const first = randomBytes(150_000);
    await store.applyBatch({ asserts: [], updates: [set("first", first), set("small", Buffer.alloc(1000, 7))] });
    await rejectsWith(store.applyBatch({ asserts: [], updates: [set("second", randomBytes(60_000))] }), "Full");
    // Growing a value is adding bytes too; replacing it by a smaller one is not.
    await rejectsWith(store.applyBatch({ asserts: [], updates: [set("small", Buffer.alloc(60_000))] }), "Full");
    await store.applyBatch({ asserts: [], updates: [set("small", Buffer.alloc(10, 1))] });
    assert.deepEqual(await store.get("first"), first);
    assert.deepEqual(await store.getRanges("first", [{ offsetBytes: 10, lengthBytes: 5 }]), [first.subarray(10, 15)]);
    assert.equal(await store.get("second"), undefined);
    await store.applyBatch({ asserts: [], updates: [{ kind: "delete", key: "first" }] });
    assert.equal((await store.statistics()).usedBytes, 10);
    assert.deepEqual(await valueFiles(directory), []);
    const second = randomBytes(60_000);
    await store.applyBatch({ asserts: [], updates: [set("second", second)] });
    assert.deepEqual(await store.get("second"), second);
  });

  it("reads ranges of inline and file values: clamped at the end, empty at the end, Invalid past it", async () => {
    const store = await openStore({ directory: await temp.make() });
    const inline = randomBytes(1000);
    const large = randomBytes(300_000);
    await store.applyBatch({ asserts: [], updates: [set("inline", inline), set("large", large)] });
    for (const [key, value] of [["inline", inline], ["large", large]] as const) {
      const size = value.length;
      const ranges = [
        { offsetBytes: 0, lengthBytes: 10 }, { offsetBytes: size - 100, lengthBytes: 1000 }, { offsetBytes: 5, lengthBytes: 0 },
        { offsetBytes: size, lengthBytes: 10 }, { offsetBytes: 3, lengthBytes: 500 }, { offsetBytes: 3, lengthBytes: 500 },
      ];
      assert.deepEqual(await store.getRanges(key, ranges), [
        value.subarray(0, 10), value.subarray(size - 100), Buffer.alloc(0), Buffer.alloc(0), value.subarray(3, 503), value.subarray(3, 503),
      ]);
      await rejectsWith(store.getRanges(key, [{ offsetBytes: size + 1, lengthBytes: 1 }]), "Invalid");
      await rejectsWith(store.getRanges(key, [{ offsetBytes: -1, lengthBytes: 1 }]), "Invalid");
    }
    assert.equal(await store.getRanges("missing", [{ offsetBytes: 0, lengthBytes: 1 }]), undefined);
    await rejectsWith(store.getRanges("large", []), "Invalid");
  });

  it("keeps keys, values and identity across reopen, and refuses another node id", async () => {
    const directory = await temp.make();
    const first = await openStore({ directory });
    const large = randomBytes(200_000);
    await first.applyBatch({ asserts: [], updates: [set("a", Buffer.from("A")), set("large", large)] });
    const asdId = first.asdId;
    await first.close();
    const second = await openStore({ directory });
    assert.equal(second.asdId, asdId);
    assert.deepEqual(await second.get("a"), Buffer.from("A"));
    assert.deepEqual(await second.get("large"), large);
    const statistics = await second.statistics();
    assert.equal(statistics.keyCount, 2);
    assert.equal(statistics.usedBytes, 1 + large.length);
    await second.close();
    await assert.rejects(AsdStore.open({ directory, nodeId: "node-b" }), /node node-a, not node node-b/);
    await rejectsWith(second.applyBatch({ asserts: [], updates: [] }), "Closed");
  });

  it("removes orphan value files at open (a crash before the commit or before an unlink), keeping referenced ones", async () => {
    const directory = await temp.make();
    const store = await openStore({ directory });
    const large = randomBytes(100_000);
    await store.applyBatch({ asserts: [], updates: [set("large", large)] });
    const [referenced] = await valueFiles(directory);
    assert.ok(referenced!.startsWith(valueFileKeyHash("large")), "a value file is named after its key's hash");
    await store.close();
    const filesDirectory = path.join(directory, ASD_FILES_DIRECTORY);
    await writeFile(path.join(filesDirectory, `${valueFileKeyHash("ghost")}-0123456789abcdef.value`), randomBytes(70_000));
    await writeFile(path.join(filesDirectory, "stray.tmp"), "x");
    const reopened = await openStore({ directory });
    assert.deepEqual(await valueFiles(directory), [referenced]);
    assert.deepEqual(await reopened.get("large"), large);
  });

  it("returns a value that rotted on disk as it is, and counts it", async () => {
    const directory = await temp.make();
    const store = await openStore({ directory });
    const large = randomBytes(100_000);
    await store.applyBatch({ asserts: [], updates: [set("large", large)] });
    const [fileName] = await valueFiles(directory);
    const filePath = path.join(directory, ASD_FILES_DIRECTORY, fileName!);
    const rotten = await readFile(filePath);
    rotten[5000] ^= 0x40;
    await writeFile(filePath, rotten);
    assert.deepEqual(await store.get("large"), rotten);
    assert.equal(store.corruptReadCount, 1);
    assert.deepEqual(store.list().keys[0]!.crc32c, crc32c(large), "the listing keeps the CRC of what was written");
  });

  it("lists keys in byte order by prefix, in pages that resume after the last key", async () => {
    const store = await openStore({ directory: await temp.make() });
    const keys = [...Array.from({ length: 23 }, (_unused, index) => `f/${String(index).padStart(3, "0")}`), "e", "g", "f", "f0", "é"];
    await store.applyBatch({ asserts: [], updates: keys.map((key) => set(key, Buffer.from(key))) });
    const pageKeys: string[] = [];
    let startAfter: string | undefined;
    let pages = 0;
    do {
      const page = store.list({ prefix: "f/", limitKeys: 10, ...(startAfter === undefined ? {} : { startAfter }) });
      pageKeys.push(...page.keys.map((info) => info.key));
      startAfter = page.nextStartAfter;
      pages++;
    } while (startAfter !== undefined);
    assert.deepEqual(pageKeys, keys.slice(0, 23));
    assert.equal(pages, 3);
    assert.deepEqual(store.list().keys.map((info) => info.key), [...keys.slice(0, 23)].concat(["e", "f", "f0", "g", "é"])
      .sort((left, right) => Buffer.compare(Buffer.from(left), Buffer.from(right))));
    assert.deepEqual(store.list({ prefix: "f", startAfter: "f/022" }).keys.map((info) => info.key), ["f0"]);
    assert.deepEqual(store.list({ prefix: "é" }).keys.map((info) => info.key), ["é"]);
    assert.equal(store.list({ limitKeys: 5000 }).keys.length, keys.length);
    assert.throws(() => store.list({ limitKeys: 0 }), (error: unknown) => isAsdError(error, "Invalid"));
  });

  it("replaces a large value by writing a new file and unlinking the old one after the commit", async () => {
    const directory = await temp.make();
    const store = await openStore({ directory });
    await store.applyBatch({ asserts: [], updates: [set("v", randomBytes(80_000))] });
    const [before] = await valueFiles(directory);
    const replacement = randomBytes(90_000);
    await store.applyBatch({ asserts: [], updates: [set("v", replacement)] });
    const after = await valueFiles(directory);
    assert.equal(after.length, 1);
    assert.notEqual(after[0], before);
    assert.deepEqual(await store.get("v"), replacement);
    await store.applyBatch({ asserts: [], updates: [set("v", Buffer.from("now inline"))] });
    assert.deepEqual(await valueFiles(directory), []);
    assert.deepEqual(await store.get("v"), Buffer.from("now inline"));
  });
});

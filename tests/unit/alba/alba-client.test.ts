// Goal: AlbaClient keeps its promises on a real SQLite metadata store and in-memory ASDs: put/get/
// ranged get/delete/list/overwrite with ifMatch round-trip byte for byte; reads survive 1 and 2
// fragments missing, corrupt or on down ASDs (and fail Unavailable beyond that); full or down ASDs
// make writes fall back to the next policy or fail "no satisfiable policy"; a failed upload leaves
// no visible object and a pending record. The in-memory ASD is a test double of the ASD daemon
// (the integration tests use real processes).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { AsdError, type AsdApi, type AsdBatch, type ByteRange } from "../../../alba/src/asd/asd-api.ts";
import { AlbaClient } from "../../../alba/src/client/alba-client.ts";
import { isAlbaError, type AlbaErrorKind } from "../../../alba/src/client/alba-client-api.ts";
import { AsdPool } from "../../../alba/src/client/asd-pool.ts";
import { fragmentKey } from "../../../alba/src/client/fragment-key.ts";
import type { AsdRecord } from "../../../alba/src/metadata/metadata-store.ts";
import { SqliteMetadataStore } from "../../../alba/src/metadata/sqlite-metadata-store.ts";
import { validatePreset } from "../../../alba/src/preset/preset-validation.ts";
import type { Preset } from "../../../alba/src/preset/preset.ts";
import { SeededRandom, seedFromEnvironment } from "../../helpers/seeded-random.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";
import { MemoryAsd } from "../../helpers/memory-asd.ts";

const KIB = 1024;
const PRESET: Preset = validatePreset({
  name: "p42", policies: [{ k: 4, m: 2, c: 5, x: 2 }, { k: 2, m: 2, c: 3, x: 4 }], fragmentSizeBytes: 16 * KIB,
  compression: "none", encryption: "none", checksum: "crc32c",
});
const ENCRYPTED_PRESET: Preset = validatePreset({
  name: "lz4-aes", policies: [{ k: 4, m: 2, c: 5, x: 2 }], fragmentSizeBytes: 8 * KIB, compression: "lz4", encryption: "aes-256-ctr",
  encryptionKeyHex: "ab".repeat(32), checksum: "crc32c",
});

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

async function expectAlbaError(promise: Promise<unknown>, kind: AlbaErrorKind, messagePattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isAlbaError(error, kind), `expected AlbaError(${kind}), got ${String(error)}`);
    if (messagePattern !== undefined) assert.match((error as Error).message, messagePattern);
    return true;
  });
}

describe("AlbaClient (in-memory ASDs)", function () {
  const temp = new TempDirs("alba-client");
  const seed = seedFromEnvironment();
  let random: SeededRandom;
  let asds: MemoryAsd[];
  let metadata: SqliteMetadataStore;
  let client: AlbaClient;

  function bytes(sizeBytes: number): Buffer {
    return Buffer.from(random.fill(new Uint8Array(sizeBytes)));
  }

  /** The ASD holding fragment (chunk, fragment) of the current version of `key`. */
  async function fragmentHolder(namespace: string, key: string, chunkIndex: number, fragmentIndex: number): Promise<MemoryAsd> {
    const manifest = (await client.getManifest(namespace, key))!;
    const asdId = manifest.chunks[chunkIndex]!.fragments[fragmentIndex]!.asdId;
    const asd = asds.find((candidate) => candidate.asdId === asdId);
    assert.ok(asd !== undefined, `fragment ${chunkIndex}/${fragmentIndex} has no ASD`);
    return asd;
  }

  beforeEach(async function () {
    random = new SeededRandom(seed);
    const directory = await temp.make();
    metadata = SqliteMetadataStore.open(path.join(directory, "metadata.sqlite"));
    asds = Array.from({ length: 6 }, (_, index) => new MemoryAsd(`asd-${index}`, `node-${index % 3}`));
    const byAddress = new Map(asds.map((asd, index) => [`host-${index}`, asd]));
    const connect = (record: AsdRecord): AsdApi => byAddress.get(record.host)!;
    const pool = new AsdPool({ metadata, connect, background: false });
    client = new AlbaClient({ metadata, pool, settings: { putAttemptsMax: 2 } });
    for (const [index] of asds.entries()) await client.claimAsd(`host-${index}`, 7000 + index);
    await client.addPreset(PRESET);
    await client.addPreset(ENCRYPTED_PRESET);
    await client.createNamespace("ns", { presetName: PRESET.name });
  });

  afterEach(async function () {
    await client.close();
  });

  after(async function () {
    await temp.removeAll();
  });

  it("put_get_sizes_round_trip", async function () {
    // Goal (seed printed on failure): objects of 0 bytes to several chunks come back byte for byte, with 6 fragments per chunk on 6 ASDs, 2 per node.
    for (const sizeBytes of [0, 1, 7, 4095, 16 * KIB, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, 300 * KIB + 5]) {
      const data = bytes(sizeBytes);
      const info = await client.put("ns", `object-${sizeBytes}`, data);
      assert.deepEqual({ key: info.key, sizeBytes: info.sizeBytes }, { key: `object-${sizeBytes}`, sizeBytes }, `seed ${seed}`);
      assert.equal(sha256(await client.get("ns", `object-${sizeBytes}`)), sha256(data), `size ${sizeBytes} seed ${seed}`);
      assert.deepEqual(await client.head("ns", `object-${sizeBytes}`), info);
      const manifest = (await client.getManifest("ns", `object-${sizeBytes}`))!;
      assert.deepEqual(manifest.policy, PRESET.policies[0]);
      for (const chunk of manifest.chunks) {
        const holders = chunk.fragments.map((fragment) => fragment.asdId);
        assert.equal(new Set(holders).size, 6, "6 distinct ASDs");
        const perNode = new Map<string, number>();
        for (const asdId of holders) perNode.set(asdId!.slice(-1), 0);
        for (const asdId of holders) {
          const node = asds.find((asd) => asd.asdId === asdId)!.nodeId;
          perNode.set(node, (perNode.get(node) ?? 0) + 1);
        }
        assert.ok([...perNode.values()].every((count) => count <= 2), "at most 2 fragments per node");
      }
    }
  });

  it("ranged_get_and_get_ranges", async function () {
    // Goal: ranged reads (partial, whole-fragment and cached paths) return exactly the asked bytes, clamped at the end.
    const data = bytes(200 * KIB + 333);
    await client.put("ns", "k", data);
    const ranges: ByteRange[] = [
      { offsetBytes: 0, lengthBytes: 1 }, { offsetBytes: 16 * KIB - 3, lengthBytes: 10 }, { offsetBytes: 64 * KIB - 5, lengthBytes: 70 * KIB },
      { offsetBytes: 100_000, lengthBytes: 1_000_000 }, { offsetBytes: data.length, lengthBytes: 5 }, { offsetBytes: 5, lengthBytes: 0 },
    ];
    for (let index = 0; index < 30; index++) ranges.push({ offsetBytes: random.integer(0, data.length), lengthBytes: random.integer(0, 90 * KIB) });
    const parts = await client.getRanges("ns", "k", ranges);
    for (const [index, range] of ranges.entries()) {
      const expected = data.subarray(range.offsetBytes, Math.min(data.length, range.offsetBytes + range.lengthBytes));
      assert.ok(parts[index]!.equals(expected), `range ${JSON.stringify(range)} seed ${seed}`);
    }
    // Again, now partly from the fragment cache.
    const again = await client.getRanges("ns", "k", ranges);
    for (const [index] of ranges.entries()) assert.ok(again[index]!.equals(parts[index]!));
    await expectAlbaError(client.getRanges("ns", "k", [{ offsetBytes: data.length + 1, lengthBytes: 1 }]), "Invalid");
    await expectAlbaError(client.getRanges("ns", "k", [{ offsetBytes: -1, lengthBytes: 1 }]), "Invalid");
  });

  it("partial_reads_when_enabled", async function () {
    // Goal: with partial reads enabled, small ranges of an uncompressed object are served from ASD range reads (fewer bytes read) and are exact.
    const partial = new AlbaClient({ metadata, pool: client.pool, settings: { partialReadSizeBytesMax: 64 * KIB } });
    const data = bytes(150 * KIB + 7);
    await partial.put("ns", "k", data);
    const ranges: ByteRange[] = [{ offsetBytes: 5, lengthBytes: 10 }, { offsetBytes: 16 * KIB - 4, lengthBytes: 8 }, { offsetBytes: 150 * KIB, lengthBytes: 100 }];
    for (let index = 0; index < 20; index++) ranges.push({ offsetBytes: random.integer(0, data.length), lengthBytes: random.integer(0, 20 * KIB) });
    let rangeCalls = 0;
    for (const asd of asds) {
      const original = asd.getRanges.bind(asd);
      asd.getRanges = async (key, requested) => { rangeCalls++; return original(key, requested); };
    }
    const parts = await partial.getRanges("ns", "k", ranges);
    for (const [index, range] of ranges.entries()) {
      assert.ok(parts[index]!.equals(data.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes)), `range ${JSON.stringify(range)} seed ${seed}`);
    }
    assert.ok(rangeCalls > 0, "ASD range reads were used");
    // A down ASD makes the partial path fall back to decoding.
    (await fragmentHolder("ns", "k", 0, 0)).down = true;
    const [first] = await partial.getRanges("ns", "k", [{ offsetBytes: 5, lengthBytes: 10 }]);
    assert.ok(first!.equals(data.subarray(5, 15)));
  });

  it("compressed_encrypted_preset_round_trip", async function () {
    // Goal: lz4 + AES-256-CTR fragments round-trip (compressible and random data), whole and ranged, and degraded.
    await client.createNamespace("secret", { presetName: ENCRYPTED_PRESET.name });
    const compressible = Buffer.alloc(100 * KIB, "abcdefgh");
    const randomData = bytes(70 * KIB + 3);
    await client.put("secret", "text", compressible);
    await client.put("secret", "random", randomData);
    assert.ok((await client.get("secret", "text")).equals(compressible));
    assert.ok((await client.get("secret", "random")).equals(randomData));
    const manifest = (await client.getManifest("secret", "text"))!;
    assert.ok(manifest.chunks[0]!.fragments[0]!.compressed, "compressible fragment stored compressed");
    const stored = await (await fragmentHolder("secret", "random", 0, 0)).get(fragmentKey({ objectId: (await client.head("secret", "random"))!.etag, chunkIndex: 0, fragmentIndex: 0 }));
    assert.ok(!stored!.equals(randomData.subarray(0, stored!.length)), "stored bytes are encrypted");
    const [slice] = await client.getRanges("secret", "random", [{ offsetBytes: 9000, lengthBytes: 20 * KIB }]);
    assert.ok(slice!.equals(randomData.subarray(9000, 9000 + 20 * KIB)));
    (await fragmentHolder("secret", "text", 0, 1)).down = true;
    assert.ok((await client.get("secret", "text")).equals(compressible));
  });

  it("overwrite_if_match_if_absent_delete_list", async function () {
    // Goal: overwrite with ifMatch, ifAbsent conflicts, delete (idempotent, ifMatch) and paged listing behave like the object store contract; replaced fragments are deleted.
    const first = await client.put("ns", "k", bytes(50 * KIB));
    const secondData = bytes(10 * KIB);
    const second = await client.put("ns", "k", secondData, { ifMatch: first.etag });
    assert.notEqual(second.etag, first.etag);
    await expectAlbaError(client.put("ns", "k", bytes(5), { ifMatch: first.etag }), "PreconditionFailed");
    await expectAlbaError(client.put("ns", "k", bytes(5), { ifAbsent: true }), "PreconditionFailed");
    assert.ok((await client.get("ns", "k")).equals(secondData));
    await client.backgroundIdle(5_000);
    const stale = asds.flatMap((asd) => [...asd.values.keys()]).filter((key) => key.startsWith(`f/${first.etag}/`));
    assert.deepEqual(stale, [], "the replaced version's fragments are deleted");

    const keys = Array.from({ length: 25 }, (_, index) => `key-${String(index).padStart(3, "0")}`);
    for (const key of keys) await client.put("ns", key, Buffer.from(key));
    const listed: string[] = [];
    for (let startAfter: string | undefined; ;) {
      const page = await client.list("ns", { prefix: "key-", limitKeys: 7, ...(startAfter === undefined ? {} : { startAfter }) });
      assert.ok(page.objects.length <= 7);
      listed.push(...page.objects.map((object) => object.key));
      if (page.nextStartAfter === undefined) break;
      startAfter = page.nextStartAfter;
    }
    assert.deepEqual(listed, keys);
    await expectAlbaError(client.delete("ns", "k", { ifMatch: first.etag }), "PreconditionFailed");
    await client.delete("ns", "k", { ifMatch: second.etag });
    await client.delete("ns", "k");
    await expectAlbaError(client.get("ns", "k"), "NotFound");
    assert.equal(await client.head("ns", "k"), undefined);
    await expectAlbaError(client.get("missing", "k"), "NotFound");
    await expectAlbaError(client.put("ns", "", bytes(1)), "Invalid");

    await client.deleteNamespace("ns");
    await client.backgroundIdle(5_000);
    assert.equal(asds.reduce((sum, asd) => sum + asd.values.size, 0), 0, "namespace delete removes every fragment");
    await expectAlbaError(client.list("ns"), "NotFound");
  });

  for (const failureCount of [1, 2]) {
    for (const mode of ["missing", "corrupt", "down"] as const) {
      it(`degraded_read_${failureCount}_${mode}`, async function () {
        // Goal: with data fragments missing, corrupt or on a down ASD, whole and ranged reads still return the right bytes.
        const data = bytes(3 * 64 * KIB + 100);
        const info = await client.put("ns", "k", data);
        for (let fragmentIndex = 0; fragmentIndex < failureCount; fragmentIndex++) {
          for (let chunkIndex = 0; chunkIndex < 4; chunkIndex++) {
            const asd = await fragmentHolder("ns", "k", chunkIndex, fragmentIndex * 2);
            const key = fragmentKey({ objectId: info.etag, chunkIndex, fragmentIndex: fragmentIndex * 2 });
            if (mode === "missing") asd.values.delete(key);
            if (mode === "corrupt") asd.values.get(key)![100] ^= 0x40;
            if (mode === "down") asd.down = true;
          }
        }
        assert.ok((await client.get("ns", "k")).equals(data), `seed ${seed}`);
        const ranges = [{ offsetBytes: 10, lengthBytes: 100 }, { offsetBytes: 64 * KIB + 32 * KIB, lengthBytes: 40 * KIB }, { offsetBytes: 0, lengthBytes: data.length }];
        const parts = await client.getRanges("ns", "k", ranges);
        for (const [index, range] of ranges.entries()) {
          assert.ok(parts[index]!.equals(data.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes)), `range ${index} (${mode})`);
        }
      });
    }
  }

  it("three_failures_unavailable_or_corrupt", async function () {
    // Goal: with 3 of 6 fragments unusable a read fails (Unavailable when ASDs are down, Corrupt when fragments are damaged) and never returns wrong bytes.
    const data = bytes(20 * KIB);
    const info = await client.put("ns", "k", data);
    for (const fragmentIndex of [0, 1, 4]) {
      const asd = await fragmentHolder("ns", "k", 0, fragmentIndex);
      asd.values.get(fragmentKey({ objectId: info.etag, chunkIndex: 0, fragmentIndex }))![7] ^= 1;
    }
    await expectAlbaError(client.get("ns", "k"), "Corrupt");
    await client.put("ns", "k2", data);
    for (const fragmentIndex of [0, 3, 5]) (await fragmentHolder("ns", "k2", 0, fragmentIndex)).down = true;
    await expectAlbaError(client.get("ns", "k2"), "Unavailable");
  });

  it("policy_fallback_and_no_satisfiable_policy", async function () {
    // Goal: with one node's ASDs down the write falls back to (2,2,3,4); with only 2 ASDs left it fails "no satisfiable policy"; full ASDs count as unavailable.
    asds[0]!.down = true; // node-0
    asds[3]!.down = true; // node-0
    const data = bytes(40 * KIB);
    await client.put("ns", "fallback", data);
    // The first put discovers the down ASDs; either it already fell back or wrote 4 of 6 (< c = 5) and retried.
    const manifest = (await client.getManifest("ns", "fallback"))!;
    assert.deepEqual(manifest.policy, PRESET.policies[1]);
    assert.ok((await client.get("ns", "fallback")).equals(data));
    assert.ok(manifest.chunks.every((chunk) => chunk.fragments.filter((fragment) => fragment.asdId !== null).length >= 3));

    asds[1]!.capacityBytes = 0; // full
    asds[4]!.capacityBytes = 0;
    await expectAlbaError(client.put("ns", "none", bytes(1000)), "NoSatisfiablePolicy", /^no satisfiable policy/);
    assert.equal(await client.head("ns", "none"), undefined);
  });

  it("failed_upload_leaves_no_object_and_a_pending_record", async function () {
    // Goal: an upload that cannot get c fragments durable leaves no visible object (the old version stays); its fragments are deleted and its pending record ended, or, when that cleanup fails, the record stays for GC.
    const data = bytes(100 * KIB);
    await client.put("ns", "k", data);
    const committedKeys = new Set(asds.flatMap((asd) => [...asd.values.keys()]));
    // Writes to 4 of the 6 ASDs fail (reads still work): attempt 1 stores 2 fragments per chunk (< c),
    // attempt 2 finds only 2 live ASDs, which no policy accepts.
    const refuse = async (): Promise<void> => { throw new AsdError("Unavailable", "write refused"); };
    for (const asd of asds.slice(0, 4)) asd.applyBatch = refuse;
    await expectAlbaError(client.put("ns", "k", bytes(100 * KIB)), "NoSatisfiablePolicy", /^no satisfiable policy/);
    assert.deepEqual(new Set(asds.flatMap((asd) => [...asd.values.keys()])), committedKeys, "the failed upload's fragments were deleted");
    assert.deepEqual(metadata.listPendingUploads(), [], "cleanup worked, so no pending record");

    // Same (the 4 still refuse writes), but the 2 ASDs that take fragments refuse the cleanup deletes.
    for (const asd of asds.slice(4)) {
      const original = asd.applyBatch.bind(asd);
      asd.applyBatch = async (batch: AsdBatch) => {
        if (batch.updates.some((update) => update.kind === "delete")) throw new AsdError("Unavailable", "gone during cleanup");
        return original(batch);
      };
    }
    await client.pool.probeAll();
    await expectAlbaError(client.put("ns", "new", bytes(70 * KIB)), "NoSatisfiablePolicy");
    assert.equal(await client.head("ns", "new"), undefined, "no visible object");
    await expectAlbaError(client.get("ns", "new"), "NotFound");
    const pending = metadata.listPendingUploads();
    assert.equal(pending.length, 1, "the pending record stays for GC");
    assert.equal(pending[0]!.key, "new");
    const orphans = asds.flatMap((asd) => [...asd.values.keys()]).filter((key) => key.startsWith(`f/${pending[0]!.objectId}/`));
    assert.equal(orphans.length, 2 * 2, "2 chunks x 2 fragments left for GC, all under the pending object id");
    // ASDs 0-3 are marked down after refusing writes; reads still try them as a last resort.
    assert.ok((await client.get("ns", "k")).equals(data), "the old version stays readable");
  });
});

// The encoded object format and the codec wrapper's read path: ranged reads fetch only the chunks
// they touch (one inner request once the table is cached), incompressible chunks are stored raw, a
// wrong key or a flipped byte is Corrupt for exactly the reads that touch it, and no truncated or
// mutated object and no malformed compressed chunk makes a decoder do anything but return the right
// bytes or fail with StoreError("Corrupt").
import assert from "node:assert/strict";
import fc from "fast-check";
import { decompressChunk } from "../../../../volumedriver/src/backend/chunk-codec.ts";
import type { Compression } from "../../../../volumedriver/src/backend/chunk-codec.ts";
import { decodeObject, encodeObject, parseHeader } from "../../../../volumedriver/src/backend/chunked-object-format.ts";
import type { EncodedObjectHeader } from "../../../../volumedriver/src/backend/chunked-object-format.ts";
import { CodecObjectStore } from "../../../../volumedriver/src/backend/codec-store.ts";
import { InstrumentedObjectStore } from "../../../../volumedriver/src/backend/instrumented-store.ts";
import { MemoryObjectStore } from "../../../../volumedriver/src/backend/memory-store.ts";
import { isStoreError } from "../../../../volumedriver/src/backend/object-store.ts";
import { expectStoreError, seededBytes } from "./object-store-contract.ts";

const KEY = seededBytes(32, 1);
const OTHER_KEY = seededBytes(32, 2);
const CHUNK = 4096;
const NS = "fmt";

/** Half random, half runs of one byte: chunks that do and do not compress. */
function mixedBytes(sizeBytes: number, seed: number): Buffer {
  const data = seededBytes(sizeBytes, seed);
  for (let offset = 0; offset < sizeBytes; offset += 2 * CHUNK) data.fill(offset % 251, offset, Math.min(sizeBytes, offset + CHUNK));
  return data;
}

function expectCorruptSync(call: () => unknown): void {
  assert.throws(call, (error: unknown) => {
    assert.ok(isStoreError(error, "Corrupt"), `expected StoreError(Corrupt), got ${String(error)}`);
    return true;
  });
}

describe("encoded object format", function () {
  it("format_incompressible_chunks_stored_raw", async function () {
    // Goal: chunks that compress are stored compressed and smaller; random chunks are stored raw, at their plain size.
    for (const compression of ["lz4", "snappy"] as Compression[]) {
      const plain = mixedBytes(8 * CHUNK, 3);
      const encoded = await encodeObject(plain, { compression, encryptionKey: undefined, chunkSizeBytes: CHUNK });
      const header = parseHeader(encoded, "test", true) as EncodedObjectHeader;
      assert.deepEqual([...header.compressedFlags], [1, 0, 1, 0, 1, 0, 1, 0], compression);
      for (let index = 0; index < 8; index++) {
        if (index % 2 === 1) assert.equal(header.storedSizesBytes[index], CHUNK);
        else assert.ok(header.storedSizesBytes[index] < CHUNK / 10, `${compression} chunk ${index}: ${header.storedSizesBytes[index]} bytes`);
      }
      assert.ok(decodeObject(encoded, undefined, "test").plain.equals(plain));
    }
  });

  it("format_encrypted_chunks_carry_tag_and_hide_plain", async function () {
    // Goal: an encrypted object stores each chunk with a 16-byte tag, never the plain bytes, and two puts of one plain differ.
    const plain = Buffer.alloc(3 * CHUNK, 0x41);
    const codec = { compression: "none" as const, encryptionKey: KEY, chunkSizeBytes: CHUNK };
    const first = await encodeObject(plain, codec);
    const second = await encodeObject(plain, codec);
    assert.notDeepEqual(first, second);
    assert.equal(first.indexOf(Buffer.alloc(64, 0x41)), -1, "plain bytes visible");
    const header = parseHeader(first, "test", true) as EncodedObjectHeader;
    assert.deepEqual([...header.storedSizesBytes], [CHUNK + 16, CHUNK + 16, CHUNK + 16]);
    assert.ok(decodeObject(first, KEY, "test").plain.equals(plain));
  });

  it("format_wrong_or_missing_key_corrupt", async function () {
    // Goal: reading an encrypted object with another key, or none, fails Corrupt and says which key id it needs.
    const backend = new MemoryObjectStore();
    const writer = new CodecObjectStore(backend, { compression: "lz4", encryption: { key: KEY }, chunkSizeBytes: CHUNK });
    await writer.createNamespace(NS);
    await writer.put(NS, "k", mixedBytes(5 * CHUNK, 4));
    for (const reader of [
      new CodecObjectStore(backend, { compression: "lz4", encryption: { key: OTHER_KEY } }),
      new CodecObjectStore(backend, { compression: "lz4" }),
    ]) {
      await expectStoreError(reader.get(NS, "k"), "Corrupt");
      await expectStoreError(reader.get(NS, "k", { offsetBytes: CHUNK, lengthBytes: 10 }), "Corrupt");
      await assert.rejects(reader.get(NS, "k"), /key id [0-9a-f]{16}/);
    }
    // A forged key id does not help: the GCM tag still fails.
    const encoded = await backend.get(NS, "k");
    const header = parseHeader(encoded, "test", true) as EncodedObjectHeader;
    assert.equal(header.encrypted, true);
    expectCorruptSync(() => decodeObject(encoded, OTHER_KEY, "test"));
  });

  it("format_plain_object_corrupt", async function () {
    // Goal: an object written without the codec reads as Corrupt with a hint, not as garbage.
    const backend = new MemoryObjectStore();
    await backend.createNamespace(NS);
    await backend.put(NS, "plain", Buffer.from("x".repeat(1000)));
    const reader = new CodecObjectStore(backend, { compression: "lz4" });
    await assert.rejects(reader.get(NS, "plain"), /not an encoded object/);
    await expectStoreError(reader.get(NS, "plain", { offsetBytes: 0, lengthBytes: 10 }), "Corrupt");
  });

  it("format_ranged_reads_fetch_only_needed_chunks", async function () {
    // Goal: ranged gets across chunk boundaries are exact, read only the covering chunks, and take one inner get once the table is cached.
    const meter = new InstrumentedObjectStore(new MemoryObjectStore());
    const store = new CodecObjectStore(meter, { compression: "lz4", encryption: { key: KEY }, chunkSizeBytes: CHUNK, headerReadSizeBytes: 128 });
    await store.createNamespace(NS);
    const plain = mixedBytes(10 * CHUNK + 123, 5);
    await store.put(NS, "k", plain);
    const header = parseHeader(await meter.get(NS, "k"), "test", true) as EncodedObjectHeader;
    const ranges: Array<[number, number]> = [[0, 1], [CHUNK - 1, 2], [CHUNK, CHUNK], [3 * CHUNK - 5, 2 * CHUNK + 10], [10 * CHUNK, 123], [10 * CHUNK + 122, 50], [0, plain.length]];
    for (const [offsetBytes, lengthBytes] of ranges) {
      meter.reset();
      const actual = await store.get(NS, "k", { offsetBytes, lengthBytes });
      assert.ok(actual.equals(plain.subarray(offsetBytes, offsetBytes + lengthBytes)), `range ${offsetBytes}+${lengthBytes}`);
      const stats = meter.snapshot().operations.get;
      assert.equal(stats?.requests, 1, `range ${offsetBytes}+${lengthBytes}: inner gets`);
      const first = Math.floor(offsetBytes / CHUNK);
      const last = Math.floor((Math.min(plain.length, offsetBytes + lengthBytes) - 1) / CHUNK);
      assert.equal(stats?.bytesOut, header.storedOffsetsBytes[last + 1] - header.storedOffsetsBytes[first]);
    }
    // A fresh store (no cached table) needs the header first: two inner gets.
    const fresh = new CodecObjectStore(meter, { compression: "lz4", encryption: { key: KEY }, headerReadSizeBytes: 256 });
    meter.reset();
    assert.ok((await fresh.get(NS, "k", { offsetBytes: 5 * CHUNK, lengthBytes: 100 })).equals(plain.subarray(5 * CHUNK, 5 * CHUNK + 100)));
    assert.equal(meter.snapshot().operations.get?.requests, 2);
    assert.equal((await fresh.head(NS, "k"))?.sizeBytes, plain.length);
  });

  it("format_stale_table_after_overwrite_rereads", async function () {
    // Goal: a ranged get through a cached table of an object another writer replaced returns the new object's bytes.
    const backend = new MemoryObjectStore();
    const reader = new CodecObjectStore(backend, { compression: "snappy", chunkSizeBytes: CHUNK });
    const writer = new CodecObjectStore(backend, { compression: "snappy", chunkSizeBytes: CHUNK });
    await reader.createNamespace(NS);
    await reader.put(NS, "k", mixedBytes(6 * CHUNK, 6));
    const replacement = seededBytes(9 * CHUNK, 7);
    await writer.put(NS, "k", replacement);
    assert.ok((await reader.get(NS, "k", { offsetBytes: 7 * CHUNK, lengthBytes: 50 })).equals(replacement.subarray(7 * CHUNK, 7 * CHUNK + 50)));
    await writer.put(NS, "k", Buffer.from("short"));
    assert.ok((await reader.get(NS, "k", { offsetBytes: 1, lengthBytes: 3 })).equals(Buffer.from("hor")));
    assert.equal((await reader.head(NS, "k"))?.sizeBytes, 5);
  });

  it("format_flipped_byte_corrupts_exactly_its_chunk", async function () {
    // Goal: a byte flipped in one chunk's stored bytes fails exactly the reads that touch that chunk; one in the header fails all.
    for (const encrypted of [false, true]) {
      const backend = new MemoryObjectStore();
      const store = new CodecObjectStore(backend, { compression: "lz4", encryption: encrypted ? { key: KEY } : undefined, chunkSizeBytes: CHUNK });
      await store.createNamespace(NS);
      const plain = mixedBytes(8 * CHUNK, 8);
      await store.put(NS, "k", plain);
      const encoded = await backend.get(NS, "k");
      const header = parseHeader(encoded, "test", true) as EncodedObjectHeader;
      const damagedChunk = 3;
      const damaged = Buffer.from(encoded);
      damaged[header.storedOffsetsBytes[damagedChunk] + 1] ^= 0x10;
      await backend.put(NS, "k", damaged);
      for (let chunk = 0; chunk < 8; chunk++) {
        const read = store.get(NS, "k", { offsetBytes: chunk * CHUNK + 10, lengthBytes: 100 });
        if (chunk === damagedChunk) await expectStoreError(read, "Corrupt");
        else assert.ok((await read).equals(plain.subarray(chunk * CHUNK + 10, chunk * CHUNK + 110)), `chunk ${chunk}`);
      }
      await expectStoreError(store.get(NS, "k", { offsetBytes: 2 * CHUNK, lengthBytes: 2 * CHUNK }), "Corrupt");
      await expectStoreError(store.get(NS, "k"), "Corrupt");
      const headerDamaged = Buffer.from(encoded);
      headerDamaged[17] ^= 1;
      await backend.put(NS, "k", headerDamaged);
      const fresh = new CodecObjectStore(backend, { compression: "lz4", encryption: encrypted ? { key: KEY } : undefined });
      await expectStoreError(fresh.get(NS, "k", { offsetBytes: 0, lengthBytes: 1 }), "Corrupt");
      await expectStoreError(fresh.head(NS, "k"), "Corrupt");
    }
  });

  it("fuzz_mutated_objects_read_right_or_corrupt", async function () {
    // Goal: a truncated, bit-flipped, overwritten or extended object gives, on every whole and ranged read, the original bytes or StoreError(Corrupt), nothing else.
    this.timeout(120_000);
    const codecs: Array<{ compression: Compression; key: Buffer | undefined }> = [
      { compression: "lz4", key: KEY }, { compression: "snappy", key: undefined }, { compression: "lz4", key: undefined }, { compression: "none", key: KEY },
    ];
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant("overwrite" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
      fc.record({ kind: fc.constant("append" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    );
    const property = fc.asyncProperty(
      fc.integer({ min: 0, max: codecs.length - 1 }), fc.integer({ min: 0, max: 5 * CHUNK }), fc.integer(), fc.array(mutation, { minLength: 1, maxLength: 3 }),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 3 * CHUNK })), { maxLength: 4 }),
      async (codecIndex, sizeBytes, seed, mutations, ranges) => {
        const { compression, key } = codecs[codecIndex];
        const plain = mixedBytes(sizeBytes, seed);
        let object = await encodeObject(plain, { compression, encryptionKey: key, chunkSizeBytes: CHUNK });
        for (const change of mutations) {
          if (change.kind === "truncate") object = object.subarray(0, change.at % (object.length + 1));
          else if (change.kind === "append") object = Buffer.concat([object, change.bytes]);
          else if (object.length > 0) {
            object = Buffer.from(object);
            if (change.kind === "flip") object[change.at % object.length] ^= 1 << change.bit;
            else Buffer.from(change.bytes).copy(object, change.at % object.length);
          }
        }
        const backend = new MemoryObjectStore();
        await backend.createNamespace(NS);
        await backend.put(NS, "k", object);
        const store = new CodecObjectStore(backend, { compression, encryption: key === undefined ? undefined : { key }, headerReadSizeBytes: 100 });
        const attempts: Array<[Promise<Buffer>, Buffer]> = [[store.get(NS, "k"), plain]];
        for (const [offset, length] of ranges) {
          const offsetBytes = offset % (sizeBytes + 1);
          attempts.push([store.get(NS, "k", { offsetBytes, lengthBytes: length }), plain.subarray(offsetBytes, offsetBytes + length)]);
        }
        attempts.push([store.head(NS, "k").then((info) => Buffer.from(String(info?.sizeBytes))), Buffer.from(String(sizeBytes))]);
        for (const [attempt, expected] of attempts) {
          try {
            const actual = await attempt;
            assert.ok(actual.equals(expected), "a read of a mutated object returned wrong bytes");
          } catch (error) {
            if (!isStoreError(error, "Corrupt")) throw error;
          }
        }
      },
    );
    await fc.assert(property, { numRuns: 400, seed: 20240605 });
  });

  it("fuzz_decompressors_bounded_and_never_crash", async function () {
    // Goal: lz4 and snappy decoders fed arbitrary bytes (as a chunk with a valid CRC would) return exactly the plain size or fail Corrupt.
    fc.assert(fc.property(
      fc.constantFrom<Compression>("lz4", "snappy"), fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 70_000 }),
      (compression, bytes, plainSizeBytes) => {
        try {
          assert.equal(decompressChunk(compression, Buffer.from(bytes), plainSizeBytes, "fuzz").length, plainSizeBytes);
        } catch (error) {
          if (!isStoreError(error, "Corrupt")) throw error;
        }
      },
    ), { numRuns: 20_000, seed: 7 });
    // Valid compressed chunks, truncated or mutated.
    const plain = mixedBytes(CHUNK, 9).subarray(0, CHUNK);
    for (const compression of ["lz4", "snappy"] as Compression[]) {
      const encoded = await encodeObject(Buffer.alloc(CHUNK, 3), { compression, encryptionKey: undefined, chunkSizeBytes: CHUNK });
      const header = parseHeader(encoded, "t", true) as EncodedObjectHeader;
      const chunk = encoded.subarray(header.storedOffsetsBytes[0]);
      fc.assert(fc.property(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (cut, at, value) => {
        const mutated = Buffer.from(chunk.subarray(0, cut % (chunk.length + 1)));
        if (mutated.length > 0) mutated[at % mutated.length] = value;
        try {
          assert.equal(decompressChunk(compression, mutated, plain.length, "fuzz").length, plain.length);
        } catch (error) {
          if (!isStoreError(error, "Corrupt")) throw error;
        }
      }), { numRuns: 5000, seed: 11 });
    }
  });
});

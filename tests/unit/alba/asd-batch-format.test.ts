// Goal: every valid batch survives encode/decode unchanged, and any malformed, truncated or mutated input makes the decoder throw AsdError("Invalid") and nothing else.
import assert from "node:assert/strict";
import fc from "fast-check";
import { AsdError, isAsdError, type AsdAssert, type AsdBatch, type AsdUpdate } from "../../../alba/src/asd/asd-api.ts";
import {
  ASD_BATCH_ENTRIES_MAX, ASD_BATCH_HEADER_SIZE_BYTES, asdKeyBytes, decodeAsdBatch, encodeAsdBatch,
} from "../../../alba/src/asd/asd-batch-format.ts";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import { SeededRandom, seedFromEnvironment } from "../../helpers/seeded-random.ts";

const keyArbitrary = fc.string({ unit: "binary", minLength: 1, maxLength: 40 })
  .filter((key) => {
    try {
      asdKeyBytes(key);
      return true;
    } catch {
      return false;
    }
  });

const assertArbitrary: fc.Arbitrary<AsdAssert> = fc.oneof(
  keyArbitrary.map((key) => ({ kind: "absent" as const, key })),
  keyArbitrary.map((key) => ({ kind: "present" as const, key })),
  fc.record({ kind: fc.constant("checksum" as const), key: keyArbitrary, crc32c: fc.integer({ min: 0, max: 0xffff_ffff }) }),
);

const updatesArbitrary: fc.Arbitrary<AsdUpdate[]> = fc.uniqueArray(
  fc.oneof(
    fc.record({ kind: fc.constant("set" as const), key: keyArbitrary, value: fc.uint8Array({ maxLength: 300 }) }),
    keyArbitrary.map((key) => ({ kind: "delete" as const, key })),
  ),
  { selector: (update) => update.key, maxLength: 12 },
);

const batchArbitrary: fc.Arbitrary<AsdBatch> = fc.record({ asserts: fc.array(assertArbitrary, { maxLength: 8 }), updates: updatesArbitrary });

function encodeToBuffer(batch: AsdBatch): Buffer {
  const encoded = encodeAsdBatch(batch);
  const buffer = Buffer.concat(encoded.parts);
  assert.equal(buffer.length, encoded.sizeBytes);
  return buffer;
}

/** The decoded batch with values as plain arrays, so deepEqual compares contents, not Buffer vs Uint8Array. */
function normalized(batch: AsdBatch): unknown {
  return {
    asserts: batch.asserts.map((check) => ({ ...check })),
    updates: batch.updates.map((update) => (update.kind === "set" ? { ...update, value: [...update.value] } : { ...update })),
  };
}

function assertInvalid(input: Uint8Array): void {
  try {
    decodeAsdBatch(input);
  } catch (error) {
    assert.ok(isAsdError(error, "Invalid"), `expected AsdError(Invalid), got ${String(error)}`);
    return;
  }
  assert.fail("the decoder accepted malformed input");
}

/** Rewrites the trailer so only the structural checks (not the checksum) can reject the input. */
function withValidChecksum(buffer: Buffer): Buffer {
  const copy = Buffer.from(buffer);
  if (copy.length >= 4) copy.writeUInt32LE(crc32c(copy.subarray(0, copy.length - 4)), copy.length - 4);
  return copy;
}

describe("ASD batch format", () => {
  it("round-trips any valid batch", () => {
    fc.assert(fc.property(batchArbitrary, (batch) => {
      const decoded = decodeAsdBatch(encodeToBuffer(batch));
      assert.deepEqual(normalized(decoded), normalized(batch));
    }), { numRuns: 300 });
  });

  it("round-trips an empty batch and a batch with an empty value", () => {
    for (const batch of [
      { asserts: [], updates: [] },
      { asserts: [{ kind: "absent" as const, key: "k" }], updates: [{ kind: "set" as const, key: "k", value: new Uint8Array(0) }] },
    ]) {
      assert.deepEqual(normalized(decodeAsdBatch(encodeToBuffer(batch))), normalized(batch));
    }
  });

  it("rejects every truncation of a valid batch", () => {
    const buffer = encodeToBuffer({
      asserts: [{ kind: "checksum", key: "a", crc32c: 7 }],
      updates: [{ kind: "set", key: "b", value: Buffer.from("hello") }, { kind: "delete", key: "c" }],
    });
    for (let length = 0; length < buffer.length; length++) assertInvalid(buffer.subarray(0, length));
  });

  it("rejects any single-byte change (checksum) and, with the checksum fixed up, decodes or throws Invalid only", () => {
    fc.assert(fc.property(batchArbitrary, fc.nat(), fc.integer({ min: 1, max: 255 }), (batch, position, xor) => {
      const buffer = encodeToBuffer(batch);
      const mutated = Buffer.from(buffer);
      mutated[position % mutated.length] ^= xor;
      assertInvalid(mutated);
      try {
        decodeAsdBatch(withValidChecksum(mutated));
      } catch (error) {
        assert.ok(isAsdError(error, "Invalid"), `expected AsdError(Invalid), got ${String(error)}`);
      }
    }), { numRuns: 500 });
  });

  it("throws only AsdError(Invalid) on random bytes, with or without a valid header and checksum", () => {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    for (let round = 0; round < 3000; round++) {
      const bytes = Buffer.alloc(random.integer(0, 200));
      for (let index = 0; index < bytes.length; index++) bytes[index] = random.integer(0, 255);
      if (bytes.length >= ASD_BATCH_HEADER_SIZE_BYTES + 4 && random.chance(0.7)) {
        bytes.writeUInt32LE(0x42445341, 0);
        bytes.writeUInt16LE(1, 4);
        bytes.writeUInt16LE(0, 6);
        bytes.writeUInt32LE(random.integer(0, 6), 8);
        bytes.writeUInt32LE(random.integer(0, 6), 12);
        bytes.writeUInt32LE(bytes.length - ASD_BATCH_HEADER_SIZE_BYTES - 4, 16);
      }
      const input = random.chance(0.8) ? withValidChecksum(bytes) : bytes;
      try {
        decodeAsdBatch(input);
      } catch (error) {
        assert.ok(isAsdError(error, "Invalid"), `seed ${seed} round ${round}: expected AsdError(Invalid), got ${String(error)}`);
      }
    }
  });

  it("does not trust counts or lengths in the header: huge counts are Invalid without allocating", () => {
    const header = Buffer.alloc(ASD_BATCH_HEADER_SIZE_BYTES + 4);
    header.writeUInt32LE(0x42445341, 0);
    header.writeUInt16LE(1, 4);
    header.writeUInt32LE(0xffff_ffff, 8);
    header.writeUInt32LE(0xffff_ffff, 12);
    header.writeUInt32LE(0, 16);
    assertInvalid(withValidChecksum(header));
    header.writeUInt32LE(ASD_BATCH_ENTRIES_MAX, 8);
    header.writeUInt32LE(0, 12);
    assertInvalid(withValidChecksum(header));
    header.writeUInt32LE(0, 8);
    header.writeUInt32LE(0xffff_fff0, 16); // payload length beyond the input
    assertInvalid(withValidChecksum(header));
  });

  it("rejects bad keys and duplicate updates on both sides", () => {
    for (const key of ["", "a\u0000b", "x".repeat(513), "\ud800"]) {
      assert.throws(() => encodeAsdBatch({ asserts: [], updates: [{ kind: "delete", key }] }), (error) => isAsdError(error, "Invalid"));
    }
    assert.throws(() => encodeAsdBatch({
      asserts: [], updates: [{ kind: "delete", key: "k" }, { kind: "set", key: "k", value: new Uint8Array(1) }],
    }), (error: unknown) => error instanceof AsdError && error.kind === "Invalid");
    // The same duplicate, forged on the wire: two updates of key "k".
    const single = encodeToBuffer({ asserts: [], updates: [{ kind: "delete", key: "k" }] });
    const entry = single.subarray(ASD_BATCH_HEADER_SIZE_BYTES, single.length - 4);
    const forged = Buffer.concat([single.subarray(0, ASD_BATCH_HEADER_SIZE_BYTES), entry, entry, Buffer.alloc(4)]);
    forged.writeUInt32LE(2, 12);
    forged.writeUInt32LE(entry.length * 2, 16);
    assertInvalid(withValidChecksum(forged));
    // A NUL and an invalid UTF-8 sequence inside a forged key.
    for (const badKey of [Buffer.from([0x61, 0x00]), Buffer.from([0xc3, 0x28])]) {
      const body = Buffer.concat([Buffer.from([2, badKey.length, 0]), badKey]);
      const bad = Buffer.concat([single.subarray(0, ASD_BATCH_HEADER_SIZE_BYTES), body, Buffer.alloc(4)]);
      bad.writeUInt32LE(body.length, 16);
      assertInvalid(withValidChecksum(bad));
    }
  });
});

// Goal: fragments round-trip through every compression x encryption, and any damage to stored bytes is a FragmentCorruptError, never a crash or wrong bytes.
import assert from "node:assert/strict";
import { createCipheriv } from "node:crypto";
import fc from "fast-check";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import {
  FragmentCorruptError, decodeFragment, decryptFragmentRange, encodeFragment, fragmentIv,
} from "../../../alba/src/encoding/fragment-codec.ts";
import type { FragmentCodecPreset, FragmentContext } from "../../../alba/src/encoding/fragment-codec.ts";
import type { FragmentManifest } from "../../../alba/src/metadata/metadata-store.ts";
import { PRESET_COMPRESSIONS, PRESET_ENCRYPTIONS } from "../../../alba/src/preset/preset.ts";
import { SeededRandom } from "../../helpers/seeded-random.ts";

const KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const CONTEXT: FragmentContext = { objectId: "0123456789abcdef0123456789abcdef", chunkIndex: 3, fragmentIndex: 5 };

const PRESETS: FragmentCodecPreset[] = PRESET_COMPRESSIONS.flatMap((compression) =>
  PRESET_ENCRYPTIONS.map((encryption) => (encryption === "none" ? { compression, encryption } : { compression, encryption, encryptionKeyHex: KEY_HEX })));

/** Compressible bytes: runs of repeated random bytes. */
function compressibleBytes(sizeBytes: number, seed: number): Buffer {
  const random = new SeededRandom(seed);
  const bytes = Buffer.alloc(sizeBytes);
  for (let offset = 0; offset < sizeBytes;) {
    const run = random.integer(1, 40);
    bytes.fill(random.integer(0, 255), offset, Math.min(sizeBytes, offset + run));
    offset += run;
  }
  return bytes;
}

function manifestOf(encoded: { stored: Buffer; compressed: boolean; crc32c: number }): FragmentManifest {
  return { asdId: "asd-1", storedSizeBytes: encoded.stored.length, crc32c: encoded.crc32c, compressed: encoded.compressed };
}

function isCorrupt(error: unknown): boolean {
  return error instanceof FragmentCorruptError && error.objectId === CONTEXT.objectId && error.chunkIndex === CONTEXT.chunkIndex && error.fragmentIndex === CONTEXT.fragmentIndex;
}

describe("alba fragment codec", function () {
  for (const preset of PRESETS) {
    const name = `${preset.compression}+${preset.encryption}`;
    it(`round_trip_${name}`, async function () {
      // Goal: compressible, incompressible, tiny and empty fragments decode to their plain bytes; stored bytes and CRC are what the manifest records.
      for (const plain of [compressibleBytes(65_536, 1), new SeededRandom(2).bytes(65_536), Buffer.from("x"), Buffer.alloc(0), Buffer.alloc(4096)]) {
        const encoded = await encodeFragment(plain, preset, CONTEXT);
        assert.equal(encoded.crc32c, crc32c(encoded.stored));
        if (preset.compression === "none") assert.equal(encoded.compressed, false);
        if (encoded.compressed) assert.ok(encoded.stored.length < plain.length);
        else assert.equal(encoded.stored.length, plain.length);
        if (preset.encryption === "none" && !encoded.compressed) assert.ok(encoded.stored.equals(plain));
        if (preset.encryption !== "none" && plain.length > 16) assert.ok(!encoded.stored.equals(plain), "encrypted bytes differ from plain");
        const decoded = await decodeFragment(encoded.stored, manifestOf(encoded), preset, CONTEXT, plain.length);
        assert.ok(decoded.equals(plain), `${name} of ${plain.length} bytes`);
        // Deterministic: re-encoding (as repair does) gives the same stored bytes.
        assert.ok((await encodeFragment(plain, preset, CONTEXT)).stored.equals(encoded.stored));
      }
      const compressible = await encodeFragment(compressibleBytes(65_536, 3), preset, CONTEXT);
      assert.equal(compressible.compressed, preset.compression !== "none", "compressible data is stored compressed when the preset compresses");
    });
  }

  it("iv_is_unique_per_fragment_context", function () {
    // Goal: different objects, chunks or fragments get different IVs; the same context the same IV.
    const ivs = new Set<string>();
    for (const objectId of ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"]) {
      for (let chunkIndex = 0; chunkIndex < 20; chunkIndex++) {
        for (let fragmentIndex = 0; fragmentIndex < 12; fragmentIndex++) ivs.add(fragmentIv({ objectId, chunkIndex, fragmentIndex }).toString("hex"));
      }
    }
    assert.equal(ivs.size, 2 * 20 * 12);
    assert.ok(fragmentIv(CONTEXT).equals(fragmentIv({ ...CONTEXT })));
    assert.equal(fragmentIv(CONTEXT).length, 16);
  });

  it("wrong_context_or_key_does_not_decode_to_plain", async function () {
    // Goal: the IV binds stored bytes to their fragment: decoding under another context yields other bytes (caught by the volumedriver's checksums) or Corrupt.
    const preset = PRESETS.find((candidate) => candidate.compression === "none" && candidate.encryption === "aes-256-ctr")!;
    const plain = new SeededRandom(4).bytes(1000);
    const encoded = await encodeFragment(plain, preset, CONTEXT);
    const other = await decodeFragment(encoded.stored, manifestOf(encoded), preset, { ...CONTEXT, fragmentIndex: 4 }, plain.length);
    assert.ok(!other.equals(plain));
  });

  it("size_crc_and_flag_mismatches_are_corrupt", async function () {
    // Goal: a short or long fragment, a changed byte, a wrong CRC or an impossible compressed flag fail FragmentCorruptError before decoding.
    for (const preset of PRESETS) {
      const plain = compressibleBytes(8192, 5);
      const encoded = await encodeFragment(plain, preset, CONTEXT);
      const manifest = manifestOf(encoded);
      const cases: Array<[Buffer, FragmentManifest, number]> = [
        [encoded.stored.subarray(1), manifest, plain.length],
        [Buffer.concat([encoded.stored, Buffer.from([0])]), manifest, plain.length],
        [Buffer.from(encoded.stored).fill(7, 10, 11), manifest, plain.length],
        [encoded.stored, { ...manifest, crc32c: (manifest.crc32c + 1) >>> 0 }, plain.length],
        [encoded.stored, { ...manifest, compressed: !manifest.compressed }, plain.length],
        [encoded.stored, manifest, plain.length + 1],
      ];
      for (const [index, [stored, fragment, plainSizeBytes]] of cases.entries()) {
        await assert.rejects(decodeFragment(stored, fragment, preset, CONTEXT, plainSizeBytes), isCorrupt, `${preset.compression}+${preset.encryption} case ${index}`);
      }
    }
  });

  it("fuzz_mutated_stored_bytes_with_matching_crc_never_crash", async function () {
    // Goal: stored bytes mutated or truncated, with a manifest CRC that matches them (the worst case), decode to exactly the plain size or fail Corrupt.
    for (const preset of PRESETS.filter((candidate) => candidate.compression !== "none")) {
      const plain = compressibleBytes(20_000, 6);
      const encoded = await encodeFragment(plain, preset, CONTEXT);
      assert.ok(encoded.compressed);
      await fc.assert(fc.asyncProperty(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 70_000 }), async (cut, at, value, plainSizeBytes) => {
        const mutated = Buffer.from(encoded.stored.subarray(0, 1 + (cut % encoded.stored.length)));
        mutated[at % mutated.length] = value;
        const fragment: FragmentManifest = { asdId: "a", storedSizeBytes: mutated.length, crc32c: crc32c(mutated), compressed: true };
        try {
          const decoded = await decodeFragment(mutated, fragment, preset, CONTEXT, plainSizeBytes);
          assert.equal(decoded.length, plainSizeBytes);
        } catch (error) {
          if (!isCorrupt(error)) throw error;
        }
      }), { numRuns: 1500, seed: 17 });
      // Arbitrary bytes as a compressed fragment.
      await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.integer({ min: 0, max: 70_000 }), async (bytes, plainSizeBytes) => {
        const stored = Buffer.from(bytes);
        const fragment: FragmentManifest = { asdId: "a", storedSizeBytes: stored.length, crc32c: crc32c(stored), compressed: true };
        try {
          assert.equal((await decodeFragment(stored, fragment, preset, CONTEXT, plainSizeBytes)).length, plainSizeBytes);
        } catch (error) {
          if (!isCorrupt(error)) throw error;
        }
      }), { numRuns: 3000, seed: 18 });
    }
  });

  it("decrypt_fragment_range_matches_whole_decrypt", async function () {
    // Goal: any slice of an uncompressed encrypted fragment decrypts on its own to the same bytes as that slice of the plain fragment.
    const plain = new SeededRandom(8).bytes(5000);
    for (const preset of PRESETS.filter((candidate) => candidate.compression === "none")) {
      const encoded = await encodeFragment(plain, preset, CONTEXT);
      assert.equal(encoded.compressed, false);
      fc.assert(fc.property(fc.nat(5000), fc.nat(5000), (start, length) => {
        const end = Math.min(5000, start + length);
        const slice = decryptFragmentRange(encoded.stored.subarray(start, end), preset, CONTEXT, start);
        assert.ok(slice.equals(plain.subarray(start, end)), `${preset.encryption} [${start}, ${end})`);
      }), { numRuns: 300, seed: 9 });
    }
  });

  it("decrypt_fragment_range_carries_across_counter_bytes", function () {
    // Goal: the counter advance carries across bytes of the 128-bit block, as OpenSSL's CTR increments the whole block.
    const preset: FragmentCodecPreset = { compression: "none", encryption: "aes-256-ctr", encryptionKeyHex: KEY_HEX };
    const key = Buffer.from(KEY_HEX, "hex");
    const iv = fragmentIv(CONTEXT);
    // Encrypt a long zero stream from the IV: the keystream itself. 300 blocks cover low-byte wraps.
    const cipher = createCipheriv("aes-256-ctr", key, iv);
    const keystream = Buffer.concat([cipher.update(Buffer.alloc(300 * 16)), cipher.final()]);
    for (const offset of [0, 1, 15, 16, 255 * 16, 256 * 16 + 3, 299 * 16]) {
      const piece = decryptFragmentRange(keystream.subarray(offset, offset + 16), preset, CONTEXT, offset);
      assert.ok(piece.equals(Buffer.alloc(piece.length)), `offset ${offset}`);
    }
  });
});

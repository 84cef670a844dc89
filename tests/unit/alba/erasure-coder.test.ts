// Goal: the Reed-Solomon coder is systematic and any k of its k + m fragments give back the chunk or any lost fragment.
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ERASURE_DATA_FRAGMENTS_MAX, ERASURE_PARITY_FRAGMENTS_MAX, FRAGMENT_ALIGNMENT_BYTES,
  decodeChunk, encodeChunk, fragmentSizeForChunk, reconstructFragments,
} from "../../../alba/src/encoding/erasure-coder.ts";
import { SeededRandom } from "../../helpers/seeded-random.ts";

/** `count` distinct indexes of 0..total-1 chosen by `random`. */
function someIndexes(random: SeededRandom, total: number, count: number): number[] {
  const indexes = Array.from({ length: total }, (_, index) => index);
  for (let index = total - 1; index > 0; index--) {
    const other = random.integer(0, index);
    [indexes[index], indexes[other]] = [indexes[other]!, indexes[index]!];
  }
  return indexes.slice(0, count);
}

describe("alba erasure coder", function () {
  it("fragment_size_is_aligned_ceiling", function () {
    // Goal: fragment sizes are ceil(chunk / k) rounded up to 8 and full chunks of k * 4 KiB map to 4 KiB.
    assert.equal(FRAGMENT_ALIGNMENT_BYTES, 8);
    assert.equal(fragmentSizeForChunk(1, 4), 8);
    assert.equal(fragmentSizeForChunk(32, 4), 8);
    assert.equal(fragmentSizeForChunk(33, 4), 16);
    assert.equal(fragmentSizeForChunk(4 * 1024 * 1024, 4), 1024 * 1024);
    assert.equal(fragmentSizeForChunk(4 * 1024 * 1024 - 1, 4), 1024 * 1024);
    fc.assert(fc.property(fc.integer({ min: 1, max: 1 << 26 }), fc.integer({ min: 1, max: 24 }), (chunk, k) => {
      const size = fragmentSizeForChunk(chunk, k);
      assert.equal(size % 8, 0);
      assert.ok(size * k >= chunk, "fragments hold the chunk");
      assert.ok(size - 8 < Math.ceil(chunk / k), "no more than one alignment unit of padding");
    }));
  });

  it("encode_4_2_is_systematic_and_any_4_decode", async function () {
    // Goal: with (4, 2), data fragments are the chunk's bytes in order (zero-padded) and every 4-of-6 subset decodes, for sizes 1 byte up.
    const random = new SeededRandom(61);
    for (const chunkSizeBytes of [1, 7, 8, 31, 33, 4095, 4096, 65_537, 1 << 20]) {
      const chunk = random.bytes(chunkSizeBytes);
      const fragmentSizeBytes = fragmentSizeForChunk(chunkSizeBytes, 4);
      const fragments = await encodeChunk(chunk, 4, 2, fragmentSizeBytes);
      assert.equal(fragments.length, 6);
      const padded = Buffer.alloc(4 * fragmentSizeBytes);
      chunk.copy(padded);
      for (const [index, fragment] of fragments.entries()) {
        assert.equal(fragment.length, fragmentSizeBytes);
        if (index < 4) assert.ok(fragment.equals(padded.subarray(index * fragmentSizeBytes, (index + 1) * fragmentSizeBytes)), `data fragment ${index}`);
      }
      for (let mask = 0; mask < 64; mask++) {
        const present = fragments.map((fragment, index) => ((mask >> index) & 1 ? fragment : undefined));
        const presentCount = present.filter((fragment) => fragment !== undefined).length;
        if (presentCount < 4) {
          await assert.rejects(decodeChunk(present, 4, 2, fragmentSizeBytes, chunkSizeBytes), /at least 4 are needed/);
          continue;
        }
        const decoded = await decodeChunk(present, 4, 2, fragmentSizeBytes, chunkSizeBytes);
        assert.ok(decoded.equals(chunk), `size ${chunkSizeBytes}, fragments ${mask.toString(2)}`);
      }
    }
  });

  it("any_k_of_k_plus_m_decode_and_reconstruct_property", async function () {
    // Goal: for random (k, m), chunk sizes and surviving subsets of size >= k, decode returns the chunk and reconstruct returns the lost fragments bit for bit.
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: ERASURE_DATA_FRAGMENTS_MAX }), fc.integer({ min: 0, max: ERASURE_PARITY_FRAGMENTS_MAX }),
      fc.integer({ min: 1, max: 20_000 }), fc.integer(),
      async (k, m, chunkSizeBytes, seed) => {
        const random = new SeededRandom(seed);
        const chunk = random.bytes(chunkSizeBytes);
        const fragmentSizeBytes = fragmentSizeForChunk(chunkSizeBytes, k);
        const fragments = await encodeChunk(chunk, k, m, fragmentSizeBytes);
        assert.equal(fragments.length, k + m);
        const survivors = new Set(someIndexes(random, k + m, random.integer(k, k + m)));
        const present = fragments.map((fragment, index) => (survivors.has(index) ? Buffer.from(fragment) : undefined));
        assert.ok((await decodeChunk(present, k, m, fragmentSizeBytes, chunkSizeBytes)).equals(chunk));
        const lost = fragments.map((_, index) => index).filter((index) => !survivors.has(index));
        const wanted = [...lost, ...someIndexes(random, k + m, 1)];
        const rebuilt = await reconstructFragments(present, k, m, fragmentSizeBytes, wanted);
        assert.equal(rebuilt.length, wanted.length);
        for (const [position, index] of wanted.entries()) assert.ok(rebuilt[position]!.equals(fragments[index]!), `fragment ${index} of (${k}, ${m})`);
      },
    ), { numRuns: 150, seed: 6 });
  });

  it("decode_with_too_few_fragments_fails", async function () {
    // Goal: k - 1 fragments are refused with an Error, not decoded into garbage.
    const chunk = Buffer.from("twelve bytes");
    const fragments = await encodeChunk(chunk, 3, 3, 8);
    const present = [fragments[0], undefined, undefined, fragments[3], undefined, undefined];
    await assert.rejects(decodeChunk(present, 3, 3, 8, chunk.length), /only 2 of 6 fragments/);
    await assert.rejects(reconstructFragments(present, 3, 3, 8, [1]), /at least 3 are needed/);
  });

  it("encode_is_deterministic_and_concurrent_safe", async function () {
    // Goal: concurrent encodes sharing the cached context give the same parity as one at a time (repair re-creates identical fragments).
    const random = new SeededRandom(7);
    const chunks = Array.from({ length: 8 }, () => random.bytes(random.integer(1, 300_000)));
    const sequential: Buffer[][] = [];
    for (const chunk of chunks) sequential.push(await encodeChunk(chunk, 5, 3, fragmentSizeForChunk(chunk.length, 5)));
    const concurrent = await Promise.all(chunks.map((chunk) => encodeChunk(chunk, 5, 3, fragmentSizeForChunk(chunk.length, 5))));
    for (const [index, fragments] of concurrent.entries()) {
      for (const [fragmentIndex, fragment] of fragments.entries()) assert.ok(fragment.equals(sequential[index]![fragmentIndex]!));
    }
  });
});

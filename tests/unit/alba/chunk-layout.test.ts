// Goal: chunk ranges tile an object, and the data-fragment slices of any byte range reassemble exactly that range of the object.
import assert from "node:assert/strict";
import fc from "fast-check";
import { chunkRanges, fragmentSlicesForRange } from "../../../alba/src/encoding/chunk-layout.ts";
import { fragmentSizeForChunk } from "../../../alba/src/encoding/erasure-coder.ts";
import { SeededRandom } from "../../helpers/seeded-random.ts";

describe("alba chunk layout", function () {
  it("chunk_ranges_tile_the_object", function () {
    // Goal: an empty object has no chunks; otherwise chunks are full but the last, contiguous, summing to the size.
    assert.deepEqual(chunkRanges(0, 4096), []);
    assert.deepEqual(chunkRanges(1, 4096), [{ chunkIndex: 0, offsetBytes: 0, sizeBytes: 1 }]);
    assert.deepEqual(chunkRanges(8192, 4096).map((range) => range.sizeBytes), [4096, 4096]);
    assert.deepEqual(chunkRanges(8193, 4096).map((range) => range.sizeBytes), [4096, 4096, 1]);
    fc.assert(fc.property(fc.integer({ min: 1, max: 1 << 20 }), fc.integer({ min: 0, max: 1000 }), fc.nat(), (chunkSizeBytes, chunkCount, extra) => {
      const objectSizeBytes = chunkCount * chunkSizeBytes + (extra % chunkSizeBytes);
      const ranges = chunkRanges(objectSizeBytes, chunkSizeBytes);
      let offset = 0;
      for (const [index, range] of ranges.entries()) {
        assert.equal(range.chunkIndex, index);
        assert.equal(range.offsetBytes, offset);
        assert.ok(range.sizeBytes >= 1 && range.sizeBytes <= chunkSizeBytes);
        if (index < ranges.length - 1) assert.equal(range.sizeBytes, chunkSizeBytes);
        offset += range.sizeBytes;
      }
      assert.equal(offset, objectSizeBytes);
    }));
  });

  it("fragment_slices_reassemble_any_range_model_check", function () {
    // Goal: against the model "slice the object", the slices of data fragments (as the coder lays them out) rebuild every range exactly.
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 5000 }), fc.nat(), fc.nat(), fc.integer(),
      (k, fragmentUnits, objectSizeBytes, offsetSeed, lengthSeed, seed) => {
        const presetFragmentSizeBytes = fragmentUnits * 64;
        const chunkSizeBytes = k * presetFragmentSizeBytes;
        const object = new SeededRandom(seed).bytes(objectSizeBytes);
        // The fragments each chunk would have: data fragment i = chunk bytes [i * fs, (i + 1) * fs), zero-padded.
        const chunks = chunkRanges(objectSizeBytes, chunkSizeBytes).map((range) => {
          const fragmentSizeBytes = fragmentSizeForChunk(range.sizeBytes, k);
          const padded = Buffer.alloc(k * fragmentSizeBytes);
          object.copy(padded, 0, range.offsetBytes, range.offsetBytes + range.sizeBytes);
          const fragments = Array.from({ length: k }, (_, index) => padded.subarray(index * fragmentSizeBytes, (index + 1) * fragmentSizeBytes));
          return { sizeBytes: range.sizeBytes, fragmentSizeBytes, fragments };
        });
        const offsetBytes = offsetSeed % (objectSizeBytes + 1);
        const lengthBytes = lengthSeed % (objectSizeBytes - offsetBytes + 1);
        const slices = fragmentSlicesForRange(chunks, chunkSizeBytes, { offsetBytes, lengthBytes });
        const assembled = Buffer.alloc(lengthBytes, 0xee);
        let covered = 0;
        for (const slice of slices) {
          assert.equal(slice.offsetInRangeBytes, covered, "slices are in range order and contiguous");
          assert.ok(slice.lengthBytes >= 1);
          assert.ok(slice.fragmentIndex < k, "only data fragments");
          const fragment = chunks[slice.chunkIndex]!.fragments[slice.fragmentIndex]!;
          assert.ok(slice.offsetInFragmentBytes + slice.lengthBytes <= fragment.length);
          fragment.copy(assembled, slice.offsetInRangeBytes, slice.offsetInFragmentBytes, slice.offsetInFragmentBytes + slice.lengthBytes);
          covered += slice.lengthBytes;
        }
        assert.equal(covered, lengthBytes);
        assert.ok(assembled.equals(object.subarray(offsetBytes, offsetBytes + lengthBytes)));
      },
    ), { numRuns: 2000, seed: 3 });
  });

  it("fragment_slices_example_4_2", function () {
    // Goal: a range spanning a chunk boundary of a (4, 2) object with 4 KiB fragments maps to the expected fragments.
    const chunks = [{ sizeBytes: 16384, fragmentSizeBytes: 4096 }, { sizeBytes: 100, fragmentSizeBytes: 32 }];
    assert.deepEqual(fragmentSlicesForRange(chunks, 16384, { offsetBytes: 12288 + 4000, lengthBytes: 196 }), [
      { chunkIndex: 0, fragmentIndex: 3, offsetInFragmentBytes: 4000, lengthBytes: 96, offsetInRangeBytes: 0 },
      { chunkIndex: 1, fragmentIndex: 0, offsetInFragmentBytes: 0, lengthBytes: 32, offsetInRangeBytes: 96 },
      { chunkIndex: 1, fragmentIndex: 1, offsetInFragmentBytes: 0, lengthBytes: 32, offsetInRangeBytes: 128 },
      { chunkIndex: 1, fragmentIndex: 2, offsetInFragmentBytes: 0, lengthBytes: 32, offsetInRangeBytes: 160 },
      { chunkIndex: 1, fragmentIndex: 3, offsetInFragmentBytes: 0, lengthBytes: 4, offsetInRangeBytes: 192 },
    ]);
    assert.deepEqual(fragmentSlicesForRange(chunks, 16384, { offsetBytes: 5, lengthBytes: 0 }), []);
  });
});

// Where an object's bytes live: the object is cut into chunks of chunkSizeBytes (k times the
// preset's fragment size; the last chunk may be short), and each chunk into k data fragments of its
// own fragment size (erasure-coder.ts), data fragment i holding chunk bytes [i * fs, (i + 1) * fs).
// Because the code is systematic, a byte range of the object maps to slices of data fragments only.
import assert from "node:assert/strict";

export interface ChunkRange {
  chunkIndex: number;
  offsetBytes: number;
  sizeBytes: number;
}

/** The chunks of an object of `objectSizeBytes`: all full but the last; an empty object has none. */
export function chunkRanges(objectSizeBytes: number, chunkSizeBytes: number): ChunkRange[] {
  assert.ok(Number.isSafeInteger(objectSizeBytes) && objectSizeBytes >= 0, `object size ${objectSizeBytes} must be a non-negative integer`);
  assert.ok(Number.isSafeInteger(chunkSizeBytes) && chunkSizeBytes >= 1, `chunk size ${chunkSizeBytes} must be a positive integer`);
  const ranges: ChunkRange[] = [];
  for (let chunkIndex = 0, offsetBytes = 0; offsetBytes < objectSizeBytes; chunkIndex++, offsetBytes += chunkSizeBytes) {
    ranges.push({ chunkIndex, offsetBytes, sizeBytes: Math.min(chunkSizeBytes, objectSizeBytes - offsetBytes) });
  }
  return ranges;
}

export interface FragmentSlice {
  chunkIndex: number;
  /** A data fragment, 0..k-1. */
  fragmentIndex: number;
  /** Where the slice starts in the fragment's plain (decoded) bytes. */
  offsetInFragmentBytes: number;
  lengthBytes: number;
  /** Where the slice goes in the requested range. */
  offsetInRangeBytes: number;
}

/**
 * The slices of data fragments that make up `range` of the object, in range order (they tile it
 * exactly). The caller validates the range (within the object); here it is only asserted.
 */
export function fragmentSlicesForRange(
  manifestChunks: ReadonlyArray<{ sizeBytes: number; fragmentSizeBytes: number }>,
  chunkSizeBytes: number,
  range: { offsetBytes: number; lengthBytes: number },
): FragmentSlice[] {
  assert.ok(Number.isSafeInteger(chunkSizeBytes) && chunkSizeBytes >= 1, `chunk size ${chunkSizeBytes} must be a positive integer`);
  assert.ok(Number.isSafeInteger(range.offsetBytes) && range.offsetBytes >= 0, `range offset ${range.offsetBytes} must be a non-negative integer`);
  assert.ok(Number.isSafeInteger(range.lengthBytes) && range.lengthBytes >= 0, `range length ${range.lengthBytes} must be a non-negative integer`);
  const slices: FragmentSlice[] = [];
  if (range.lengthBytes === 0) return slices;
  const rangeEndBytes = range.offsetBytes + range.lengthBytes;
  const firstChunk = Math.floor(range.offsetBytes / chunkSizeBytes);
  const lastChunk = Math.floor((rangeEndBytes - 1) / chunkSizeBytes);
  for (let chunkIndex = firstChunk; chunkIndex <= lastChunk; chunkIndex++) {
    const chunk = manifestChunks[chunkIndex];
    assert.ok(chunk !== undefined, `range ends at ${rangeEndBytes}, past the object's ${manifestChunks.length} chunks`);
    const chunkStartBytes = chunkIndex * chunkSizeBytes;
    const startInChunk = Math.max(range.offsetBytes, chunkStartBytes) - chunkStartBytes;
    const endInChunk = Math.min(rangeEndBytes, chunkStartBytes + chunk.sizeBytes) - chunkStartBytes;
    assert.ok(endInChunk > startInChunk, `range ends at ${rangeEndBytes}, past chunk ${chunkIndex} of ${chunk.sizeBytes} bytes`);
    const fragmentSizeBytes = chunk.fragmentSizeBytes;
    assert.ok(fragmentSizeBytes >= 1, `chunk ${chunkIndex} has fragment size ${fragmentSizeBytes}`);
    const firstFragment = Math.floor(startInChunk / fragmentSizeBytes);
    const lastFragment = Math.floor((endInChunk - 1) / fragmentSizeBytes);
    for (let fragmentIndex = firstFragment; fragmentIndex <= lastFragment; fragmentIndex++) {
      const fragmentStartBytes = fragmentIndex * fragmentSizeBytes;
      const sliceStart = Math.max(startInChunk, fragmentStartBytes);
      const sliceEnd = Math.min(endInChunk, fragmentStartBytes + fragmentSizeBytes);
      slices.push({
        chunkIndex,
        fragmentIndex,
        offsetInFragmentBytes: sliceStart - fragmentStartBytes,
        lengthBytes: sliceEnd - sliceStart,
        offsetInRangeBytes: chunkStartBytes + sliceStart - range.offsetBytes,
      });
    }
  }
  return slices;
}

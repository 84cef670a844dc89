// Systematic Reed-Solomon erasure coding of one chunk into k data fragments and m parity
// fragments, with @ronomon/reed-solomon (Cauchy bit-matrix coding, runs in libuv's thread pool).
// Invariants: data fragment i is bytes [i * fragmentSize, (i + 1) * fragmentSize) of the chunk, the
// last one zero-padded, so reads of healthy objects never decode; every fragment of a chunk has the
// same size, a multiple of FRAGMENT_ALIGNMENT_BYTES; any k of the k + m fragments give the chunk.
import assert from "node:assert/strict";
import type { BufferPool } from "../memory/buffer-pool.ts";
import { createRequire } from "node:module";
import type { ReedSolomonContext } from "@ronomon/reed-solomon";

// The addon is a CommonJS .node binary, which the ESM loader cannot import directly.
const reedSolomon = createRequire(import.meta.url)("@ronomon/reed-solomon") as typeof import("@ronomon/reed-solomon");

/**
 * Every fragment size is a multiple of this: the addon requires shard sizes that are multiples of
 * 8 bytes (and of its word size w, which is 2, 4 or 8). 8 wastes at most 7 bytes per fragment.
 */
export const FRAGMENT_ALIGNMENT_BYTES = 8;
/** Largest k the coder supports (the addon's MAX_K, 24). */
export const ERASURE_DATA_FRAGMENTS_MAX: number = reedSolomon.MAX_K;
/** Largest m the coder supports (the addon's MAX_M, 6); m = 0 (no parity) is handled here without the addon. */
export const ERASURE_PARITY_FRAGMENTS_MAX: number = reedSolomon.MAX_M;

const contexts = new Map<string, ReedSolomonContext>();

/** The cached context of (k, m); contexts are immutable and shared by concurrent encodes. */
function contextFor(k: number, m: number): ReedSolomonContext {
  const cacheKey = `${k}/${m}`;
  let context = contexts.get(cacheKey);
  if (context === undefined) {
    context = reedSolomon.create(k, m);
    contexts.set(cacheKey, context);
  }
  return context;
}

function assertGeometry(k: number, m: number, fragmentSizeBytes: number): void {
  assert.ok(Number.isInteger(k) && k >= 1 && k <= ERASURE_DATA_FRAGMENTS_MAX, `k ${k} outside 1..${ERASURE_DATA_FRAGMENTS_MAX}`);
  assert.ok(Number.isInteger(m) && m >= 0 && m <= ERASURE_PARITY_FRAGMENTS_MAX, `m ${m} outside 0..${ERASURE_PARITY_FRAGMENTS_MAX}`);
  assert.ok(
    Number.isInteger(fragmentSizeBytes) && fragmentSizeBytes > 0 && fragmentSizeBytes % FRAGMENT_ALIGNMENT_BYTES === 0,
    `fragment size ${fragmentSizeBytes} is not a positive multiple of ${FRAGMENT_ALIGNMENT_BYTES}`,
  );
}

/** The fragment size of a chunk of `chunkSizeBytes` (>= 1): ceil(chunk / k) rounded up to FRAGMENT_ALIGNMENT_BYTES. */
export function fragmentSizeForChunk(chunkSizeBytes: number, k: number): number {
  assert.ok(Number.isSafeInteger(chunkSizeBytes) && chunkSizeBytes >= 1, `chunk size ${chunkSizeBytes} must be a positive integer`);
  assert.ok(Number.isInteger(k) && k >= 1, `k ${k} must be a positive integer`);
  const perFragmentBytes = Math.ceil(chunkSizeBytes / k);
  return Math.ceil(perFragmentBytes / FRAGMENT_ALIGNMENT_BYTES) * FRAGMENT_ALIGNMENT_BYTES;
}

/** Runs the addon: computes `targets` from `sources` in place in `data` (k shards) and `parity` (m shards). */
function runCoder(k: number, m: number, fragmentSizeBytes: number, sources: number, targets: number, data: Buffer, parity: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    // Argument errors throw synchronously inside the executor and so reject the promise.
    reedSolomon.encode(contextFor(k, m), sources, targets, data, 0, k * fragmentSizeBytes, parity, 0, m * fragmentSizeBytes, (error) => {
      if (error) reject(error);
      else resolve();
    });
  });
}

/**
 * Splits `chunk` into k data fragments (the last zero-padded) and computes m parity fragments, each
 * exactly fragmentSizeBytes. The data fragments are views of one buffer holding the padded chunk.
 */
export async function encodeChunk(chunk: Buffer, k: number, m: number, fragmentSizeBytes: number, buffers?: BufferPool): Promise<Buffer[]> {
  assertGeometry(k, m, fragmentSizeBytes);
  assert.ok(chunk.length >= 1 && chunk.length <= k * fragmentSizeBytes, `chunk of ${chunk.length} bytes does not fit ${k} fragments of ${fragmentSizeBytes}`);
  // With a pool, the two backing buffers come from it: fragment 0 and fragment k start them, so a
  // caller done with every fragment gives them back by releasing each fragment (BufferPool ignores
  // the views that do not start a buffer).
  const data = buffers?.take(k * fragmentSizeBytes) ?? Buffer.allocUnsafe(k * fragmentSizeBytes);
  chunk.copy(data, 0);
  data.fill(0, chunk.length);
  const fragments: Buffer[] = [];
  for (let index = 0; index < k; index++) fragments.push(data.subarray(index * fragmentSizeBytes, (index + 1) * fragmentSizeBytes));
  if (m === 0) return fragments;
  // Zeroed, not allocUnsafe: every parity shard is a target and fully written, but if that ever
  // failed, zeros rather than stale process memory would reach the disks.
  const parity = buffers === undefined ? Buffer.alloc(m * fragmentSizeBytes) : buffers.take(m * fragmentSizeBytes).fill(0);
  await runCoder(k, m, fragmentSizeBytes, bitRange(0, k), bitRange(k, k + m), data, parity);
  for (let index = 0; index < m; index++) fragments.push(parity.subarray(index * fragmentSizeBytes, (index + 1) * fragmentSizeBytes));
  return fragments;
}

/** A bit mask with bits [from, to) set. */
function bitRange(from: number, to: number): number {
  let mask = 0;
  for (let bit = from; bit < to; bit++) mask |= 1 << bit;
  return mask;
}

function assertFragments(fragments: ReadonlyArray<Buffer | undefined>, k: number, m: number, fragmentSizeBytes: number): number {
  assertGeometry(k, m, fragmentSizeBytes);
  assert.equal(fragments.length, k + m, `expected ${k + m} fragment slots, got ${fragments.length}`);
  let presentCount = 0;
  for (const [index, fragment] of fragments.entries()) {
    if (fragment === undefined) continue;
    assert.equal(fragment.length, fragmentSizeBytes, `fragment ${index} has ${fragment.length} bytes, expected ${fragmentSizeBytes}`);
    presentCount++;
  }
  if (presentCount < k) throw new Error(`only ${presentCount} of ${k + m} fragments are available; at least ${k} are needed to decode`);
  return presentCount;
}

/**
 * Lays the present fragments out as the addon wants them (k data shards in one buffer, m parity
 * shards in another), computes those in `wantedMask` that are missing, and returns both buffers.
 */
async function restore(fragments: ReadonlyArray<Buffer | undefined>, k: number, m: number, fragmentSizeBytes: number, wantedMask: number): Promise<{ data: Buffer; parity: Buffer }> {
  const data = Buffer.allocUnsafe(k * fragmentSizeBytes);
  // At least one byte so the addon gets a valid buffer when m = 0 (it is never called then).
  const parity = Buffer.allocUnsafe(Math.max(m, 1) * fragmentSizeBytes);
  let sources = 0;
  let targets = 0;
  for (let index = 0; index < k + m; index++) {
    const fragment = fragments[index];
    const [target, offset] = index < k ? [data, index * fragmentSizeBytes] : [parity, (index - k) * fragmentSizeBytes];
    if (fragment !== undefined) {
      fragment.copy(target, offset);
      sources |= 1 << index;
    } else {
      // Missing shards the addon does not compute may serve as its scratch space; zero them so a
      // bug shows as zeros, never as stale memory.
      target.fill(0, offset, offset + fragmentSizeBytes);
      if ((wantedMask & (1 << index)) !== 0) targets |= 1 << index;
    }
  }
  // With at least k sources, at most m shards are missing, which is the addon's bound on targets.
  if (targets !== 0) await runCoder(k, m, fragmentSizeBytes, sources, targets, data, parity);
  return { data, parity };
}

/** The first `chunkSizeBytes` bytes of the chunk, from any k of its k + m fragments (undefined = missing). */
export async function decodeChunk(
  fragments: ReadonlyArray<Buffer | undefined>, k: number, m: number, fragmentSizeBytes: number, chunkSizeBytes: number,
): Promise<Buffer> {
  assertFragments(fragments, k, m, fragmentSizeBytes);
  assert.ok(Number.isInteger(chunkSizeBytes) && chunkSizeBytes >= 1 && chunkSizeBytes <= k * fragmentSizeBytes, `chunk size ${chunkSizeBytes} does not fit ${k} fragments of ${fragmentSizeBytes}`);
  const dataFragmentsNeeded = Math.ceil(chunkSizeBytes / fragmentSizeBytes);
  if (fragments.slice(0, dataFragmentsNeeded).every((fragment) => fragment !== undefined)) {
    // The systematic fast path: the chunk is its data fragments, no decoding.
    const chunk = Buffer.allocUnsafe(chunkSizeBytes);
    for (let index = 0; index < dataFragmentsNeeded; index++) {
      (fragments[index] as Buffer).copy(chunk, index * fragmentSizeBytes, 0, Math.min(fragmentSizeBytes, chunkSizeBytes - index * fragmentSizeBytes));
    }
    return chunk;
  }
  const { data } = await restore(fragments, k, m, fragmentSizeBytes, bitRange(0, dataFragmentsNeeded));
  return data.subarray(0, chunkSizeBytes);
}

/**
 * The fragments at the `wanted` indexes (data or parity, 0..k+m-1), rebuilt from any k present
 * ones; a wanted fragment that is present is returned as given. For repair.
 */
export async function reconstructFragments(
  fragments: ReadonlyArray<Buffer | undefined>, k: number, m: number, fragmentSizeBytes: number, wanted: readonly number[],
): Promise<Buffer[]> {
  assertFragments(fragments, k, m, fragmentSizeBytes);
  let wantedMask = 0;
  for (const index of wanted) {
    assert.ok(Number.isInteger(index) && index >= 0 && index < k + m, `wanted fragment ${index} outside 0..${k + m - 1}`);
    wantedMask |= 1 << index;
  }
  const { data, parity } = await restore(fragments, k, m, fragmentSizeBytes, wantedMask);
  return wanted.map((index) => {
    const present = fragments[index];
    if (present !== undefined) return present;
    const [source, offset] = index < k ? [data, index * fragmentSizeBytes] : [parity, (index - k) * fragmentSizeBytes];
    return source.subarray(offset, offset + fragmentSizeBytes);
  });
}

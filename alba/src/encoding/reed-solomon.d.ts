// Types for @ronomon/reed-solomon 6.0.0, a native addon without its own declarations (its README
// and binding.c are the reference). It is a CommonJS `.node` binary, which Node's ESM loader cannot
// import, so erasure-coder.ts loads it with createRequire and casts to this module's type.
declare module "@ronomon/reed-solomon" {
  /** Largest k the addon accepts (24 in 6.0.0). */
  export const MAX_K: number;
  /** Largest m the addon accepts (6 in 6.0.0); m must be at least 1. */
  export const MAX_M: number;

  /** An opaque encoding context for (k, m): safe to cache and to share between concurrent encodes. */
  export type ReedSolomonContext = Buffer & { readonly __brand: "ReedSolomonContext" };

  /** Throws for k outside 1..MAX_K or m outside 1..MAX_M. */
  export function create(k: number, m: number): ReedSolomonContext;

  /**
   * Computes the shards flagged in `targets` from those flagged in `sources`, in libuv's thread
   * pool. Bit i (0 <= i < k) is data shard i at buffer[bufferOffset + i * shardSize]; bit k + j is
   * parity shard j at parity[parityOffset + j * shardSize]. shardSize = bufferSize / k =
   * paritySize / m and must be a multiple of 8. At least k sources, 1..m targets, disjoint. Shards
   * that are neither source nor target may be overwritten as scratch. Argument errors throw
   * synchronously; the callback gets only internal errors.
   */
  export function encode(
    context: ReedSolomonContext,
    sources: number,
    targets: number,
    buffer: Buffer,
    bufferOffset: number,
    bufferSize: number,
    parity: Buffer,
    parityOffset: number,
    paritySize: number,
    callback: (error: Error | undefined | null) => void,
  ): void;
}

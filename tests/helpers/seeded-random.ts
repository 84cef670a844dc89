// Seeded pseudo-random numbers and data for tests, so every failure can be replayed from its seed.
// The generator is SplitMix32-style mixing over a 32-bit counter (fast, good enough for test data).

/** Seed from the OVS_SEED environment variable if set, else a fresh random one. */
export function seedFromEnvironment(): number {
  const fromEnvironment = process.env.OVS_SEED;
  if (fromEnvironment !== undefined && fromEnvironment !== "") {
    const seed = Number(fromEnvironment);
    if (!Number.isSafeInteger(seed)) throw new Error(`OVS_SEED must be an integer, got ${fromEnvironment}`);
    return seed | 0;
  }
  return (Math.random() * 0x1_0000_0000) | 0;
}

export class SeededRandom {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed | 0;
  }

  /** Next uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    this.state = (this.state + 0x9e3779b9) | 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform float in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }

  /** Uniform integer in [min, max] (inclusive). */
  integer(min: number, max: number): number {
    if (max < min) throw new Error(`integer(${min}, ${max}): empty range`);
    return min + Math.floor(this.nextFloat() * (max - min + 1));
  }

  /** true with the given probability. */
  chance(probability: number): boolean {
    return this.nextFloat() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.integer(0, items.length - 1)] as T;
  }

  /** Fills `target` with pseudo-random bytes. */
  fill(target: Uint8Array): Uint8Array {
    const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
    let offset = 0;
    for (; offset + 4 <= target.byteLength; offset += 4) view.setUint32(offset, this.nextUint32(), true);
    if (offset < target.byteLength) {
      let word = this.nextUint32();
      for (; offset < target.byteLength; offset++) {
        target[offset] = word & 0xff;
        word >>>= 8;
      }
    }
    return target;
  }

  /** A new buffer of `lengthBytes` pseudo-random bytes. */
  bytes(lengthBytes: number): Buffer {
    return this.fill(Buffer.allocUnsafe(lengthBytes)) as Buffer;
  }
}

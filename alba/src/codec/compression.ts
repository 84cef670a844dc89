// Block compression shared by Alba fragments and the volumedriver's encoded objects: lz4 (the
// napi-rs binding of lz4_flex) and snappy (of snap). Invariants: a decoder is never handed a size it
// did not get from the caller's trusted metadata (both formats announce their plain size, and the
// decoders allocate what is announced), output is accepted only if it is exactly that size, and
// every failure is a DecompressionError, never a crash: both Rust decoders return errors on
// malformed input instead of reading or writing out of bounds.
import lz4 from "lz4-napi";
import snappy from "snappy";

export const COMPRESSIONS = ["none", "lz4", "snappy"] as const;
export type Compression = (typeof COMPRESSIONS)[number];

/**
 * Largest plain block either decoder is asked to produce: lz4's size prefix and snappy's varint
 * are 32-bit. Callers keep blocks far smaller (fragments are at most 16 MiB).
 */
export const COMPRESSED_BLOCK_PLAIN_SIZE_BYTES_MAX = 0xffff_ffff;

/** Stored bytes that do not decompress to the expected plain bytes. */
export class DecompressionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DecompressionError";
  }
}

/**
 * Compresses one block; undefined when compression does not make it smaller (the caller then
 * stores it plain) or when `compression` is "none". lz4 blocks are returned without lz4-napi's
 * 4-byte size prefix: the caller records the plain size, and the decoder gets that trusted size
 * instead of one read from the stored bytes. Runs in libuv's thread pool.
 */
export async function compressBlock(compression: Compression, data: Buffer): Promise<Buffer | undefined> {
  let compressed: Buffer;
  switch (compression) {
    case "none":
      return undefined;
    case "lz4":
      compressed = (await lz4.compress(data)).subarray(4);
      break;
    case "snappy":
      compressed = await snappy.compress(data);
      break;
  }
  return compressed.length < data.length ? compressed : undefined;
}

/**
 * Decompresses one block to exactly `plainSizeBytes` bytes (a size from trusted metadata), or
 * throws DecompressionError. Synchronous: blocks are small (at most a few MiB) and decode at GB/s.
 */
export function decompressBlock(compression: Exclude<Compression, "none">, stored: Buffer, plainSizeBytes: number): Buffer {
  if (!Number.isSafeInteger(plainSizeBytes) || plainSizeBytes < 0 || plainSizeBytes > COMPRESSED_BLOCK_PLAIN_SIZE_BYTES_MAX) {
    throw new DecompressionError(`plain size ${plainSizeBytes} is outside 0..${COMPRESSED_BLOCK_PLAIN_SIZE_BYTES_MAX}`);
  }
  let plain: Buffer;
  try {
    switch (compression) {
      case "lz4": {
        // lz4_flex's size-prepended decoder allocates the prefix and fails if the block would
        // write past it, so the trusted size bounds both allocation and output.
        const sized = Buffer.allocUnsafe(4 + stored.length);
        sized.writeUInt32LE(plainSizeBytes, 0);
        stored.copy(sized, 4);
        plain = lz4.uncompressSync(sized);
        break;
      }
      case "snappy": {
        // The raw snappy format opens with the plain size as a varint; check it before the
        // decoder allocates that much.
        const announced = readVarint32(stored);
        if (announced !== plainSizeBytes) {
          throw new DecompressionError(`snappy block announces ${announced ?? "no"} plain bytes, expected ${plainSizeBytes}`);
        }
        plain = snappy.uncompressSync(stored, { asBuffer: true }) as Buffer;
        break;
      }
    }
  } catch (error) {
    if (error instanceof DecompressionError) throw error;
    throw new DecompressionError(`${compression} block does not decompress: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (plain.length !== plainSizeBytes) {
    throw new DecompressionError(`${compression} block decompresses to ${plain.length} bytes, expected ${plainSizeBytes}`);
  }
  return plain;
}

/** A little-endian base-128 varint of at most 5 bytes at the start of `bytes`, or undefined. */
function readVarint32(bytes: Buffer): number | undefined {
  let value = 0;
  for (let index = 0; index < 5 && index < bytes.length; index++) {
    value += (bytes[index] & 0x7f) * 2 ** (7 * index);
    if ((bytes[index] & 0x80) === 0) return value;
  }
  return undefined;
}

// What an ASD stores for one fragment: the fragment's plain bytes, compressed when that shrinks
// them, encrypted with AES-256-CTR when the preset says so, and checksummed with CRC-32C (kept in
// the manifest, not in the stored bytes). Byte format: alba/docs/fragment-format.md.
// Invariants: decodeFragment verifies size and CRC before anything else, never lets a decoder
// allocate from a size read out of the stored bytes, accepts only exactly plainSizeBytes of output,
// and reports every failure as FragmentCorruptError.
//
// The IV of a fragment is derived from (objectId, chunkIndex, fragmentIndex), so a repair that
// re-creates a fragment produces the same stored bytes (same CRC, manifest entry unchanged). That is
// safe because CTR only needs each (key, counter block) to encrypt one plaintext: the object id is
// fresh and random per stored version (128 bits), a version's chunks never change, and the erasure
// code and compressors are deterministic, so the same IV always encrypts the same plaintext. IVs of
// different fragments are 128-bit hash outputs whose counter ranges (at most 2^20 blocks for a
// 16 MiB fragment) overlap with negligible probability. One residual case: if a compressor upgrade
// changed the compressed bytes between the write and a repair, the lost copy and its replacement
// would share a keystream; only someone holding both (the lost disk and the new one) learns the XOR
// of two compressions of the same data. The compressors are pinned in package.json.
import { createCipheriv, createDecipheriv, createHash } from "node:crypto";
import assert from "node:assert/strict";
import { DecompressionError, compressBlock, decompressBlock } from "../codec/compression.ts";
import { crc32c } from "../codec/crc32c.ts";
import type { FragmentManifest } from "../metadata/metadata-store.ts";
import type { Preset } from "../preset/preset.ts";

export type FragmentCodecPreset = Pick<Preset, "compression" | "encryption" | "encryptionKeyHex">;

export interface FragmentContext {
  objectId: string;
  chunkIndex: number;
  fragmentIndex: number;
}

/** Largest plain fragment this codec handles: the largest preset fragment size (16 MiB). */
export const FRAGMENT_PLAIN_SIZE_BYTES_MAX = 16 * 1024 * 1024;
const AES_BLOCK_SIZE_BYTES = 16;
const AES_KEY_HEX_PATTERN = /^[0-9a-fA-F]{64}$/;
const IV_LABEL = Buffer.from("ovs alba fragment iv v1", "ascii");

/** A fragment whose stored bytes are not what the manifest says: the caller decodes from others and repairs it. */
export class FragmentCorruptError extends Error {
  readonly objectId: string;
  readonly chunkIndex: number;
  readonly fragmentIndex: number;
  constructor(context: FragmentContext, reason: string, options?: { cause?: unknown }) {
    super(`fragment ${context.objectId}/${context.chunkIndex}/${context.fragmentIndex} is corrupt: ${reason}`, options);
    this.name = "FragmentCorruptError";
    this.objectId = context.objectId;
    this.chunkIndex = context.chunkIndex;
    this.fragmentIndex = context.fragmentIndex;
  }
}

/** The AES-256 key of an encrypting preset (validated by preset-validation.ts; asserted here). */
function encryptionKey(preset: FragmentCodecPreset): Buffer | undefined {
  if (preset.encryption === "none") return undefined;
  assert.equal(preset.encryption, "aes-256-ctr");
  const keyHex = preset.encryptionKeyHex;
  assert.ok(keyHex !== undefined && AES_KEY_HEX_PATTERN.test(keyHex), "an aes-256-ctr preset needs a 64-hex-digit key");
  return Buffer.from(keyHex, "hex");
}

/**
 * The initial 128-bit counter block of a fragment: the first 16 bytes of SHA-256(label, objectId,
 * chunkIndex, fragmentIndex), each field length-prefixed or fixed-width so no two contexts collide.
 */
export function fragmentIv(context: FragmentContext): Buffer {
  assert.ok(Number.isInteger(context.chunkIndex) && context.chunkIndex >= 0 && context.chunkIndex <= 0xffff_ffff, `chunk index ${context.chunkIndex}`);
  assert.ok(Number.isInteger(context.fragmentIndex) && context.fragmentIndex >= 0 && context.fragmentIndex <= 0xffff_ffff, `fragment index ${context.fragmentIndex}`);
  const objectId = Buffer.from(context.objectId, "utf8");
  const fields = Buffer.alloc(12);
  fields.writeUInt32BE(objectId.length, 0);
  fields.writeUInt32BE(context.chunkIndex, 4);
  fields.writeUInt32BE(context.fragmentIndex, 8);
  return createHash("sha256").update(IV_LABEL).update(fields.subarray(0, 4)).update(objectId).update(fields.subarray(4)).digest().subarray(0, AES_BLOCK_SIZE_BYTES);
}

/** The counter block `blocks` AES blocks after `iv` (CTR increments all 128 bits, big-endian, wrapping). */
function advanceCounter(iv: Buffer, blocks: number): Buffer {
  const counter = Buffer.from(iv);
  let carry = blocks;
  for (let index = AES_BLOCK_SIZE_BYTES - 1; index >= 0 && carry > 0; index--) {
    const sum = counter[index] + (carry % 256);
    counter[index] = sum & 0xff;
    carry = Math.floor(carry / 256) + (sum >> 8);
  }
  return counter;
}

function aes256Ctr(key: Buffer, counter: Buffer, data: Buffer): Buffer {
  const cipher = createCipheriv("aes-256-ctr", key, counter);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

/** Compresses (when it shrinks), encrypts and checksums one fragment's plain bytes. */
export async function encodeFragment(
  plain: Buffer, preset: FragmentCodecPreset, context: FragmentContext,
): Promise<{ stored: Buffer; compressed: boolean; crc32c: number }> {
  assert.ok(plain.length <= FRAGMENT_PLAIN_SIZE_BYTES_MAX, `fragment of ${plain.length} bytes exceeds ${FRAGMENT_PLAIN_SIZE_BYTES_MAX}`);
  const compressedBytes = await compressBlock(preset.compression, plain);
  const payload = compressedBytes ?? plain;
  const key = encryptionKey(preset);
  const stored = key === undefined ? payload : aes256Ctr(key, fragmentIv(context), payload);
  return { stored, compressed: compressedBytes !== undefined, crc32c: crc32c(stored) };
}

/**
 * The plain bytes of a stored fragment: checks its size and CRC-32C against the manifest, then
 * decrypts and decompresses to exactly plainSizeBytes (a trusted size from the manifest).
 */
export async function decodeFragment(
  stored: Buffer, fragment: FragmentManifest, preset: FragmentCodecPreset, context: FragmentContext, plainSizeBytes: number,
): Promise<Buffer> {
  assert.ok(Number.isSafeInteger(plainSizeBytes) && plainSizeBytes >= 0 && plainSizeBytes <= FRAGMENT_PLAIN_SIZE_BYTES_MAX, `plain size ${plainSizeBytes}`);
  if (stored.length !== fragment.storedSizeBytes) {
    throw new FragmentCorruptError(context, `${stored.length} bytes stored, the manifest says ${fragment.storedSizeBytes}`);
  }
  const actualCrc = crc32c(stored);
  if (actualCrc !== fragment.crc32c >>> 0) {
    throw new FragmentCorruptError(context, `CRC-32C ${actualCrc.toString(16)} does not match the manifest's ${(fragment.crc32c >>> 0).toString(16)}`);
  }
  if (!fragment.compressed && stored.length !== plainSizeBytes) {
    throw new FragmentCorruptError(context, `uncompressed fragment of ${stored.length} bytes, expected ${plainSizeBytes}`);
  }
  if (fragment.compressed && (preset.compression === "none" || stored.length >= plainSizeBytes)) {
    // The encoder stores compressed bytes only when they are smaller than the plain bytes.
    throw new FragmentCorruptError(context, `flagged compressed (${stored.length} bytes for ${plainSizeBytes}) under compression ${preset.compression}`);
  }
  const key = encryptionKey(preset);
  const payload = key === undefined ? stored : aes256Ctr(key, fragmentIv(context), stored);
  if (!fragment.compressed) return payload;
  try {
    return decompressBlock(preset.compression as Exclude<Preset["compression"], "none">, payload, plainSizeBytes);
  } catch (error) {
    if (error instanceof DecompressionError) throw new FragmentCorruptError(context, error.message, { cause: error });
    throw error;
  }
}

/**
 * Decrypts a slice of an uncompressed fragment that starts `offsetInFragmentBytes` into it (CTR is
 * random access), for ranged reads that fetch only the bytes they need. Nothing is verified: the
 * CRC covers the whole fragment, so a slice cannot be checked here. The volumedriver, which does
 * most ranged reads, verifies its own per-cluster checksums; other callers that need verified
 * bytes read whole fragments.
 */
export function decryptFragmentRange(storedSlice: Buffer, preset: FragmentCodecPreset, context: FragmentContext, offsetInFragmentBytes: number): Buffer {
  assert.ok(Number.isSafeInteger(offsetInFragmentBytes) && offsetInFragmentBytes >= 0, `offset ${offsetInFragmentBytes}`);
  const key = encryptionKey(preset);
  if (key === undefined) return storedSlice;
  const skipBytes = offsetInFragmentBytes % AES_BLOCK_SIZE_BYTES;
  const counter = advanceCounter(fragmentIv(context), Math.floor(offsetInFragmentBytes / AES_BLOCK_SIZE_BYTES));
  const decipher = createDecipheriv("aes-256-ctr", key, counter);
  if (skipBytes > 0) decipher.update(Buffer.alloc(skipBytes));
  return Buffer.concat([decipher.update(storedSlice), decipher.final()]);
}

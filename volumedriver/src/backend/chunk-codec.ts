// Compression and encryption of one chunk of an encoded object (chunked-object-format.ts; byte
// format in volumedriver/docs/formats.md, "Encoded objects"). Invariants: no decoder here is ever
// handed a size it did not check first (lz4 and snappy allocate what their input announces), a
// decoder's output is accepted only if it is exactly the chunk's plain size, and every failure is a
// StoreError("Corrupt"), never a crash. The compression primitives live in
// alba/src/codec/compression.ts (shared with Alba's fragments); this file maps their errors.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from "node:crypto";
import { COMPRESSIONS, DecompressionError, compressBlock, decompressBlock } from "../../../alba/src/codec/compression.ts";
import type { Compression } from "../../../alba/src/codec/compression.ts";
import { StoreError } from "./object-store.ts";

export { COMPRESSIONS };
export type { Compression };

/** The codes of the header's compression byte. */
export const COMPRESSION_CODES: Readonly<Record<Compression, number>> = { none: 0, lz4: 1, snappy: 2 };

export const ENCRYPTION_KEY_SIZE_BYTES = 32;
export const GCM_TAG_SIZE_BYTES = 16;
export const GCM_IV_SIZE_BYTES = 12;
export const KEY_ID_SIZE_BYTES = 8;
const CHUNK_KEY_INFO = Buffer.from("ovs encoded object v1 chunk key", "ascii");
const KEY_ID_LABEL = Buffer.from("ovs encoded object v1 key id", "ascii");

/** 8 bytes that name a key without revealing it: HMAC-SHA256(key, label), truncated. */
export function encryptionKeyId(key: Buffer): Buffer {
  return createHmac("sha256", key).update(KEY_ID_LABEL).digest().subarray(0, KEY_ID_SIZE_BYTES);
}

/**
 * The AES-256 key of one object: HKDF-SHA256 of the vPool key with the object's random 16-byte
 * nonce as salt. Each object thus has its own key, so the chunk index alone can be the GCM nonce
 * (unique per key by construction) and no nonce is ever reused with one key, however many objects
 * there are.
 */
export function deriveObjectKey(key: Buffer, objectNonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync("sha256", key, objectNonce, CHUNK_KEY_INFO, ENCRYPTION_KEY_SIZE_BYTES));
}

/** The 12-byte GCM IV of chunk `chunkIndex`: the index, little-endian, then zeros. */
function chunkIv(chunkIndex: number): Buffer {
  const iv = Buffer.alloc(GCM_IV_SIZE_BYTES);
  iv.writeUInt32LE(chunkIndex, 0);
  return iv;
}

/** Encrypts one chunk: ciphertext followed by the 16-byte GCM tag. `aad` binds it to its header and place. */
export function encryptChunk(objectKey: Buffer, chunkIndex: number, aad: Buffer, data: Uint8Array): Buffer {
  const cipher = createCipheriv("aes-256-gcm", objectKey, chunkIv(chunkIndex), { authTagLength: GCM_TAG_SIZE_BYTES });
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(data), cipher.final(), cipher.getAuthTag()]);
}

/** Decrypts and authenticates one chunk; a wrong key or any changed byte is Corrupt. */
export function decryptChunk(objectKey: Buffer, chunkIndex: number, aad: Buffer, stored: Buffer, where: string): Buffer {
  if (stored.length < GCM_TAG_SIZE_BYTES) {
    throw new StoreError("Corrupt", `${where}: chunk ${chunkIndex} is shorter than its GCM tag`);
  }
  const ciphertextSizeBytes = stored.length - GCM_TAG_SIZE_BYTES;
  try {
    const decipher = createDecipheriv("aes-256-gcm", objectKey, chunkIv(chunkIndex), { authTagLength: GCM_TAG_SIZE_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(stored.subarray(ciphertextSizeBytes));
    return Buffer.concat([decipher.update(stored.subarray(0, ciphertextSizeBytes)), decipher.final()]);
  } catch (error) {
    throw new StoreError("Corrupt", `${where}: chunk ${chunkIndex} fails authentication (AES-256-GCM tag): the bytes were changed or the key is not the one it was written with`, { cause: error });
  }
}

/**
 * Compresses one chunk; undefined when compression does not make it smaller (it is then stored
 * raw). The block format (lz4 without its size prefix, raw snappy) is alba/src/codec/compression.ts's.
 */
export async function compressChunk(compression: Compression, data: Buffer): Promise<Buffer | undefined> {
  return compressBlock(compression, data);
}

/** Decompresses one chunk to exactly `plainSizeBytes` bytes, or fails Corrupt. */
export function decompressChunk(compression: Compression, stored: Buffer, plainSizeBytes: number, where: string): Buffer {
  if (compression === "none") {
    throw new StoreError("Corrupt", `${where}: a chunk is flagged compressed in an object without compression`);
  }
  try {
    return decompressBlock(compression, stored, plainSizeBytes);
  } catch (error) {
    if (error instanceof DecompressionError) throw new StoreError("Corrupt", `${where}: ${compression} chunk: ${error.message}`, { cause: error });
    throw error;
  }
}

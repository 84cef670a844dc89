// Compression and encryption of one chunk of an encoded object (chunked-object-format.ts; byte
// format in volumedriver/docs/formats.md, "Encoded objects"). Invariants: no decoder here is ever
// handed a size it did not check first (lz4 and snappy allocate what their input announces), a
// decoder's output is accepted only if it is exactly the chunk's plain size, and every failure is a
// StoreError("Corrupt"), never a crash: lz4 and snappy are the napi-rs bindings of the Rust crates
// lz4_flex and snap, whose block decoders return errors on malformed input.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from "node:crypto";
import lz4 from "lz4-napi";
import snappy from "snappy";
import { StoreError } from "./object-store.ts";

export const COMPRESSIONS = ["none", "lz4", "snappy"] as const;
export type Compression = (typeof COMPRESSIONS)[number];

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
 * raw). lz4 blocks are stored without lz4-napi's 4-byte size prefix: the size is known from the
 * header, and the decoder gets that trusted size instead of one read from the object.
 */
export async function compressChunk(compression: Compression, data: Buffer): Promise<Buffer | undefined> {
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

/** Decompresses one chunk to exactly `plainSizeBytes` bytes, or fails Corrupt. */
export function decompressChunk(compression: Compression, stored: Buffer, plainSizeBytes: number, where: string): Buffer {
  let plain: Buffer;
  try {
    switch (compression) {
      case "none":
        throw new StoreError("Corrupt", `${where}: a chunk is flagged compressed in an object without compression`);
      case "lz4": {
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
          throw new StoreError("Corrupt", `${where}: snappy chunk announces ${announced ?? "no"} plain bytes, the table says ${plainSizeBytes}`);
        }
        plain = snappy.uncompressSync(stored, { asBuffer: true }) as Buffer;
        break;
      }
    }
  } catch (error) {
    if (error instanceof StoreError) throw error;
    throw new StoreError("Corrupt", `${where}: ${compression} chunk does not decompress: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (plain.length !== plainSizeBytes) {
    throw new StoreError("Corrupt", `${where}: ${compression} chunk decompresses to ${plain.length} bytes, the table says ${plainSizeBytes}`);
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

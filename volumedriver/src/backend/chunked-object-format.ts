// The encoded object format, version 1 (byte by byte in volumedriver/docs/formats.md, "Encoded
// objects (compression and encryption)"): a 64-byte header, a table of 8 bytes per chunk, then the
// chunks. Each chunk of `chunkSizeBytes` plain bytes (the last may be short) is compressed when that
// makes it smaller, then encrypted (AES-256-GCM), and its stored bytes carry a CRC-32C in the table,
// checked before anything decrypts or decompresses them. The header and table carry their own
// CRC-32C. Plain offsets map to chunks by division, so a ranged read needs only the table and the
// stored bytes of the chunks it touches.
import { randomBytes } from "node:crypto";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import {
  COMPRESSION_CODES, COMPRESSIONS, compressChunk, decompressChunk, decryptChunk, deriveObjectKey, encryptChunk, encryptionKeyId,
  ENCRYPTION_KEY_SIZE_BYTES, GCM_TAG_SIZE_BYTES, KEY_ID_SIZE_BYTES,
} from "./chunk-codec.ts";
import type { Compression } from "./chunk-codec.ts";
import { mapBounded } from "./local-store-concurrency.ts";
import { StoreError } from "./object-store.ts";

export const ENCODED_OBJECT_MAGIC = Buffer.from("OVSC", "ascii");
export const ENCODED_OBJECT_VERSION = 1;
export const HEADER_SIZE_BYTES = 64;
export const TABLE_ENTRY_SIZE_BYTES = 8;
export const CHUNK_SIZE_BYTES_DEFAULT = 64 * 1024;
export const CHUNK_SIZE_BYTES_MIN = 4096;
export const CHUNK_SIZE_BYTES_MAX = 16 * 1024 * 1024;
/** Bit 31 of a table entry's first word: the chunk is compressed. */
const COMPRESSED_FLAG = 0x8000_0000;
const OBJECT_NONCE_SIZE_BYTES = 16;
const ENCRYPTION_CODE_NONE = 0;
const ENCRYPTION_CODE_AES_256_GCM = 1;
/** Bytes of the header the AAD of every chunk repeats: magic to plain size. */
const AAD_HEADER_SIZE_BYTES = 24;
/** Chunks compressed at once while encoding (each on a libuv worker thread). */
const COMPRESSIONS_IN_FLIGHT_MAX = 4;

export interface ObjectCodec {
  compression: Compression;
  /** The vPool's AES-256 key (32 bytes), or undefined for no encryption. */
  encryptionKey: Buffer | undefined;
  chunkSizeBytes: number;
}

/** A parsed, verified header and table. */
export interface EncodedObjectHeader {
  compression: Compression;
  encrypted: boolean;
  chunkSizeBytes: number;
  chunkCount: number;
  plainSizeBytes: number;
  objectNonce: Buffer;
  keyId: Buffer;
  /** Stored size and compressed flag of each chunk, from the table. */
  storedSizesBytes: Uint32Array;
  compressedFlags: Uint8Array;
  crcs: Uint32Array;
  /** Offset of each chunk's stored bytes in the object, plus one entry for the end. */
  storedOffsetsBytes: Float64Array;
  /** The AAD prefix: header bytes 0-23. */
  aadHeader: Buffer;
}

export function headerAndTableSizeBytes(chunkCount: number): number {
  return HEADER_SIZE_BYTES + TABLE_ENTRY_SIZE_BYTES * chunkCount;
}

function chunkPlainSizeBytes(plainSizeBytes: number, chunkSizeBytes: number, chunkIndex: number): number {
  return Math.min(chunkSizeBytes, plainSizeBytes - chunkIndex * chunkSizeBytes);
}

function chunkAad(aadHeader: Buffer, chunkIndex: number, compressed: boolean): Buffer {
  const aad = Buffer.alloc(AAD_HEADER_SIZE_BYTES + 5);
  aadHeader.copy(aad, 0, 0, AAD_HEADER_SIZE_BYTES);
  aad.writeUInt32LE(chunkIndex, AAD_HEADER_SIZE_BYTES);
  aad[AAD_HEADER_SIZE_BYTES + 4] = compressed ? 1 : 0;
  return aad;
}

/** Encodes `plain` as one object: header, table, chunks. */
export async function encodeObject(plain: Uint8Array, codec: ObjectCodec, random: (sizeBytes: number) => Buffer = randomBytes): Promise<Buffer> {
  const { chunkSizeBytes, encryptionKey } = codec;
  const plainBuffer = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  const chunkCount = Math.ceil(plain.length / chunkSizeBytes);
  const header = Buffer.alloc(headerAndTableSizeBytes(chunkCount));
  ENCODED_OBJECT_MAGIC.copy(header, 0);
  header.writeUInt16LE(ENCODED_OBJECT_VERSION, 4);
  header[6] = COMPRESSION_CODES[codec.compression];
  header[7] = encryptionKey === undefined ? ENCRYPTION_CODE_NONE : ENCRYPTION_CODE_AES_256_GCM;
  header.writeUInt32LE(chunkSizeBytes, 8);
  header.writeUInt32LE(chunkCount, 12);
  header.writeUInt32LE(plain.length % 2 ** 32, 16);
  header.writeUInt32LE(Math.floor(plain.length / 2 ** 32), 20);
  const objectNonce = random(OBJECT_NONCE_SIZE_BYTES);
  objectNonce.copy(header, 24);
  const objectKey = encryptionKey === undefined ? undefined : deriveObjectKey(encryptionKey, objectNonce);
  if (encryptionKey !== undefined) encryptionKeyId(encryptionKey).copy(header, 40);
  const aadHeader = header.subarray(0, AAD_HEADER_SIZE_BYTES);
  const indexes = Array.from({ length: chunkCount }, (_, index) => index);
  const chunks = await mapBounded(indexes, COMPRESSIONS_IN_FLIGHT_MAX, async (chunkIndex) => {
    const start = chunkIndex * chunkSizeBytes;
    const data = plainBuffer.subarray(start, Math.min(plain.length, start + chunkSizeBytes));
    const compressed = await compressChunk(codec.compression, data);
    const payload = compressed ?? data;
    const stored = objectKey === undefined ? Buffer.from(payload) : encryptChunk(objectKey, chunkIndex, chunkAad(aadHeader, chunkIndex, compressed !== undefined), payload);
    const entryOffset = HEADER_SIZE_BYTES + chunkIndex * TABLE_ENTRY_SIZE_BYTES;
    header.writeUInt32LE((stored.length | (compressed === undefined ? 0 : COMPRESSED_FLAG)) >>> 0, entryOffset);
    header.writeUInt32LE(crc32c(stored), entryOffset + 4);
    return stored;
  });
  header.writeUInt32LE(headerCrc(header), 60);
  return Buffer.concat([header, ...chunks]);
}

/** CRC-32C of header bytes 0-59 followed by the table. */
function headerCrc(headerAndTable: Buffer): number {
  return crc32c(headerAndTable.subarray(HEADER_SIZE_BYTES), crc32c(headerAndTable.subarray(0, 60)));
}

/**
 * Parses the start of an object. Returns the header when `prefix` holds the header and the whole
 * table, or the number of bytes needed when it is a proper prefix of them. Fails Corrupt when the
 * bytes are not a well-formed, checksummed header (`objectSizeKnown`: `prefix` is the whole object,
 * so a short one is truncated).
 */
export function parseHeader(prefix: Buffer, where: string, objectSizeKnown: boolean): EncodedObjectHeader | { bytesNeeded: number } {
  if (prefix.length < HEADER_SIZE_BYTES) {
    if (!objectSizeKnown) return { bytesNeeded: HEADER_SIZE_BYTES };
    throw new StoreError("Corrupt", `${where}: ${prefix.length} bytes are too short for an encoded object (header ${HEADER_SIZE_BYTES} bytes)`);
  }
  if (!prefix.subarray(0, 4).equals(ENCODED_OBJECT_MAGIC)) {
    throw new StoreError("Corrupt", `${where}: not an encoded object (magic ${JSON.stringify(prefix.subarray(0, 4).toString("latin1"))}, expected "OVSC"): was it written without this vPool's compression/encryption settings?`);
  }
  const version = prefix.readUInt16LE(4);
  if (version !== ENCODED_OBJECT_VERSION) {
    throw new StoreError("Corrupt", `${where}: encoded object format version ${version} is not supported (this build reads version ${ENCODED_OBJECT_VERSION})`);
  }
  const compression = COMPRESSIONS.find((name) => COMPRESSION_CODES[name] === prefix[6]);
  const encryptionCode = prefix[7];
  const chunkSizeBytes = prefix.readUInt32LE(8);
  const chunkCount = prefix.readUInt32LE(12);
  const plainSizeBytes = prefix.readUInt32LE(16) + prefix.readUInt32LE(20) * 2 ** 32;
  const fieldsValid = compression !== undefined && (encryptionCode === ENCRYPTION_CODE_NONE || encryptionCode === ENCRYPTION_CODE_AES_256_GCM)
    && chunkSizeBytes >= CHUNK_SIZE_BYTES_MIN && chunkSizeBytes <= CHUNK_SIZE_BYTES_MAX
    && Number.isSafeInteger(plainSizeBytes) && chunkCount === Math.ceil(plainSizeBytes / chunkSizeBytes)
    && prefix.subarray(48, 60).every((byte) => byte === 0);
  if (!fieldsValid) {
    throw new StoreError("Corrupt", `${where}: encoded object header has invalid fields (compression ${prefix[6]}, encryption ${encryptionCode}, chunk size ${chunkSizeBytes}, ${chunkCount} chunks for ${plainSizeBytes} bytes)`);
  }
  const tableEndBytes = headerAndTableSizeBytes(chunkCount);
  if (prefix.length < tableEndBytes) {
    if (!objectSizeKnown) return { bytesNeeded: tableEndBytes };
    throw new StoreError("Corrupt", `${where}: truncated: ${prefix.length} bytes, the header and table alone take ${tableEndBytes}`);
  }
  const headerAndTable = prefix.subarray(0, tableEndBytes);
  if (headerCrc(headerAndTable) !== prefix.readUInt32LE(60)) {
    throw new StoreError("Corrupt", `${where}: encoded object header fails its CRC-32C`);
  }
  const encrypted = encryptionCode === ENCRYPTION_CODE_AES_256_GCM;
  const overheadBytes = encrypted ? GCM_TAG_SIZE_BYTES : 0;
  const storedSizesBytes = new Uint32Array(chunkCount);
  const compressedFlags = new Uint8Array(chunkCount);
  const crcs = new Uint32Array(chunkCount);
  const storedOffsetsBytes = new Float64Array(chunkCount + 1);
  storedOffsetsBytes[0] = tableEndBytes;
  for (let index = 0; index < chunkCount; index++) {
    const entryOffset = HEADER_SIZE_BYTES + index * TABLE_ENTRY_SIZE_BYTES;
    const word = prefix.readUInt32LE(entryOffset);
    const compressed = (word & COMPRESSED_FLAG) !== 0;
    const storedSizeBytes = (word & ~COMPRESSED_FLAG) >>> 0;
    const plainChunkSizeBytes = chunkPlainSizeBytes(plainSizeBytes, chunkSizeBytes, index);
    // A raw chunk is exactly its plain size (plus the tag); a compressed one is smaller.
    const sizeValid = compressed ? storedSizeBytes < plainChunkSizeBytes + overheadBytes && storedSizeBytes >= overheadBytes
      : storedSizeBytes === plainChunkSizeBytes + overheadBytes;
    if (!sizeValid || (compressed && compression === "none")) {
      throw new StoreError("Corrupt", `${where}: chunk ${index} has an invalid table entry (${storedSizeBytes} bytes, ${compressed ? "compressed" : "raw"})`);
    }
    storedSizesBytes[index] = storedSizeBytes;
    compressedFlags[index] = compressed ? 1 : 0;
    crcs[index] = prefix.readUInt32LE(entryOffset + 4);
    storedOffsetsBytes[index + 1] = storedOffsetsBytes[index] + storedSizeBytes;
  }
  return {
    compression, encrypted, chunkSizeBytes, chunkCount, plainSizeBytes,
    objectNonce: Buffer.from(prefix.subarray(24, 40)),
    keyId: Buffer.from(prefix.subarray(40, 40 + KEY_ID_SIZE_BYTES)),
    storedSizesBytes, compressedFlags, crcs, storedOffsetsBytes,
    aadHeader: Buffer.from(prefix.subarray(0, AAD_HEADER_SIZE_BYTES)),
  };
}

/** The object key for decrypting `header`'s chunks with `encryptionKey`, checked by key id; undefined if not encrypted. */
export function objectKeyFor(header: EncodedObjectHeader, encryptionKey: Buffer | undefined, where: string): Buffer | undefined {
  if (!header.encrypted) return undefined;
  if (encryptionKey === undefined) {
    throw new StoreError("Corrupt", `${where}: the object is encrypted (key id ${header.keyId.toString("hex")}) but no encryption key is configured: configure the vPool's key`);
  }
  if (encryptionKey.length !== ENCRYPTION_KEY_SIZE_BYTES) throw new Error(`encryption key of ${encryptionKey.length} bytes`);
  const keyId = encryptionKeyId(encryptionKey);
  if (!keyId.equals(header.keyId)) {
    throw new StoreError("Corrupt", `${where}: the object was encrypted with key id ${header.keyId.toString("hex")}, the configured key has id ${keyId.toString("hex")}: configure the key it was written with`);
  }
  return deriveObjectKey(encryptionKey, header.objectNonce);
}

/** The chunks [firstChunk, lastChunk] covering plain bytes [startBytes, endBytes), endBytes > startBytes. */
export function chunkSpan(header: EncodedObjectHeader, startBytes: number, endBytes: number): { firstChunk: number; lastChunk: number; storedStartBytes: number; storedEndBytes: number } {
  const firstChunk = Math.floor(startBytes / header.chunkSizeBytes);
  const lastChunk = Math.floor((endBytes - 1) / header.chunkSizeBytes);
  return { firstChunk, lastChunk, storedStartBytes: header.storedOffsetsBytes[firstChunk], storedEndBytes: header.storedOffsetsBytes[lastChunk + 1] };
}

/**
 * Decodes chunks [firstChunk, lastChunk] from `stored`, their stored bytes back to back, and returns
 * their plain bytes concatenated. Each chunk's CRC-32C is checked before it is decrypted or decompressed.
 */
export function decodeChunks(header: EncodedObjectHeader, objectKey: Buffer | undefined, stored: Buffer, firstChunk: number, lastChunk: number, where: string): Buffer {
  const expectedSizeBytes = header.storedOffsetsBytes[lastChunk + 1] - header.storedOffsetsBytes[firstChunk];
  if (stored.length !== expectedSizeBytes) {
    throw new StoreError("Corrupt", `${where}: truncated: chunks ${firstChunk}-${lastChunk} take ${expectedSizeBytes} bytes, ${stored.length} were read`);
  }
  const plains: Buffer[] = [];
  for (let index = firstChunk; index <= lastChunk; index++) {
    const offset = header.storedOffsetsBytes[index] - header.storedOffsetsBytes[firstChunk];
    const chunk = stored.subarray(offset, offset + header.storedSizesBytes[index]);
    if (crc32c(chunk) !== header.crcs[index]) {
      throw new StoreError("Corrupt", `${where}: chunk ${index} fails its CRC-32C`);
    }
    const compressed = header.compressedFlags[index] === 1;
    const payload = objectKey === undefined ? chunk : decryptChunk(objectKey, index, chunkAad(header.aadHeader, index, compressed), chunk, where);
    const plainChunkSizeBytes = chunkPlainSizeBytes(header.plainSizeBytes, header.chunkSizeBytes, index);
    plains.push(compressed ? decompressChunk(header.compression, payload, plainChunkSizeBytes, where) : payload);
  }
  return plains.length === 1 ? plains[0] : Buffer.concat(plains);
}

/** Decodes a whole encoded object. */
export function decodeObject(object: Buffer, encryptionKey: Buffer | undefined, where: string): { header: EncodedObjectHeader; plain: Buffer } {
  const header = parseHeader(object, where, true) as EncodedObjectHeader;
  const objectKey = objectKeyFor(header, encryptionKey, where);
  if (header.chunkCount === 0) {
    if (object.length !== header.storedOffsetsBytes[0]) throw new StoreError("Corrupt", `${where}: ${object.length - header.storedOffsetsBytes[0]} bytes after the end of an empty object`);
    return { header, plain: Buffer.alloc(0) };
  }
  const stored = object.subarray(header.storedOffsetsBytes[0]);
  return { header, plain: decodeChunks(header, objectKey, stored, 0, header.chunkCount - 1, where) };
}

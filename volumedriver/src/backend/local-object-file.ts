// The byte formats of the local store's object files (volumedriver/docs/backends.md "Object file
// format"). All integers little-endian. Two versions, both current:
//
// Version 1, an object file: the data inline, after the header and the checksum table (put).
// Version 2, a meta file: the header and the checksum table only; the data is the whole of a
// separate data file in the same directory, named in the header (putFile adopts the caller's file
// as that data file by hard link, so the bytes are not copied).
//
//   offset        size  field
//   0             4     magic "OVSO"
//   4             2     format version: 1 (data inline) or 2 (data in a data file)
//   6             2     key size in bytes, k (UTF-8; validateKey bounds it at 1024)
//   8             8     data size in bytes, d (below 2^53)
//   16            4     block size in bytes, b (4096)
//   20            8     put nonce: 8 random bytes drawn for each put; the etag is their hex
//   28            2     version 1: reserved, zero; version 2: data file name size in bytes, m (1-255)
//   30            2     reserved, zero
//   32            4     CRC-32C of bytes 0-31, then the k key bytes, then (version 2) the m name bytes
//   36            k     the key, UTF-8
//   36+k          m     version 2 only: the data file name, ASCII (m = 0 in version 1)
//   36+k+m        4n    CRC-32C of each data block, n = ceil(d / b); the last block may be short
//   36+k+m+4n     d     version 1 only: the data (version 2: bytes 0 to d-1 of the data file)
//
// Per-block checksums let a ranged get verify exactly the blocks it reads, so every read is
// checked (STYLE.md habit 4) without reading the whole object. The key is stored so a file whose
// name is a hash (long keys) can be listed, and so a misplaced file is caught on read.
import { randomFillSync } from "node:crypto";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import { StoreError } from "./object-store.ts";

export const OBJECT_FILE_MAGIC = 0x4f53564f; // "OVSO" read as a little-endian u32
/** Version 1: the data inline. */
export const OBJECT_FILE_FORMAT_VERSION = 1;
/** Version 2: a meta file; the data lives in the data file it names. */
export const META_FILE_FORMAT_VERSION = 2;
export const OBJECT_FILE_FIXED_HEADER_SIZE_BYTES = 36;
export const OBJECT_FILE_BLOCK_SIZE_BYTES = 4096;
/** A data file name is one file name: at most 255 bytes. */
export const DATA_FILE_NAME_SIZE_BYTES_MAX = 255;
/** Any header (fixed part, key and data file name: 36 + 3072 + 255) fits in this many bytes, so one read of it at offset 0 always holds the header. */
export const OBJECT_FILE_HEADER_SIZE_BYTES_MAX = 4096;
const PUT_NONCE_SIZE_BYTES = 8;

export interface ObjectFileHeader {
  key: string;
  dataSizeBytes: number;
  blockSizeBytes: number;
  etag: string;
  /** Version 2: the name of the data file (same directory) that holds the data from its offset 0. Version 1: undefined. */
  dataFileName: string | undefined;
  /** File offset of the block checksum table. */
  tableOffsetBytes: number;
  /** Offset of the first data byte: in this file (version 1), in the data file (version 2, always 0). */
  dataOffsetBytes: number;
}

/** Number of checksum table entries (blocks) of `dataSizeBytes` bytes of data. */
export function blockCountOf(dataSizeBytes: number): number {
  return Math.ceil(dataSizeBytes / OBJECT_FILE_BLOCK_SIZE_BYTES);
}

/**
 * Writes the checksums of the blocks in `bytes` (block `firstBlock` and on; only the last may be
 * short) into `table`, the whole checksum table.
 */
export function writeBlockChecksums(table: Buffer, firstBlock: number, bytes: Uint8Array): void {
  for (let start = 0, block = firstBlock; start < bytes.length; start += OBJECT_FILE_BLOCK_SIZE_BYTES, block++) {
    table.writeUInt32LE(crc32c(bytes.subarray(start, Math.min(bytes.length, start + OBJECT_FILE_BLOCK_SIZE_BYTES))), 4 * block);
  }
}

/** Version 1: the header and block checksum table for an object; the file is this followed by `data`. */
export function encodeObjectFilePrefix(key: string, data: Uint8Array): { prefix: Buffer; etag: string } {
  const { file, tableOffsetBytes, etag } = encodeHeader(OBJECT_FILE_FORMAT_VERSION, key, undefined, data.length);
  writeBlockChecksums(file.subarray(tableOffsetBytes), 0, data);
  return { prefix: file, etag };
}

/**
 * Version 2: the whole meta file of `dataSizeBytes` bytes held in the data file `dataFileName`,
 * with `table` (4 bytes per block, from writeBlockChecksums) as its checksum table.
 */
export function encodeMetaFile(key: string, dataFileName: string, dataSizeBytes: number, table: Buffer): { file: Buffer; etag: string } {
  const { file, tableOffsetBytes, etag } = encodeHeader(META_FILE_FORMAT_VERSION, key, dataFileName, dataSizeBytes);
  if (table.length !== file.length - tableOffsetBytes) throw new Error(`assertion: a table of ${table.length} bytes for ${dataSizeBytes} data bytes`);
  table.copy(file, tableOffsetBytes);
  return { file, etag };
}

/** A buffer holding the header of either version followed by a zeroed checksum table. */
function encodeHeader(
  version: number,
  key: string,
  dataFileName: string | undefined,
  dataSizeBytes: number,
): { file: Buffer; tableOffsetBytes: number; etag: string } {
  const keyBytes = Buffer.from(key, "utf8");
  const nameBytes = Buffer.from(dataFileName ?? "", "ascii");
  if (nameBytes.length > DATA_FILE_NAME_SIZE_BYTES_MAX || (version === META_FILE_FORMAT_VERSION) !== nameBytes.length > 0) {
    throw new Error(`assertion: version ${version} with a data file name of ${nameBytes.length} bytes`);
  }
  const tableOffsetBytes = OBJECT_FILE_FIXED_HEADER_SIZE_BYTES + keyBytes.length + nameBytes.length;
  const file = Buffer.alloc(tableOffsetBytes + 4 * blockCountOf(dataSizeBytes));
  file.writeUInt32LE(OBJECT_FILE_MAGIC, 0);
  file.writeUInt16LE(version, 4);
  file.writeUInt16LE(keyBytes.length, 6);
  file.writeBigUInt64LE(BigInt(dataSizeBytes), 8);
  file.writeUInt32LE(OBJECT_FILE_BLOCK_SIZE_BYTES, 16);
  randomFillSync(file, 20, PUT_NONCE_SIZE_BYTES);
  file.writeUInt16LE(nameBytes.length, 28);
  keyBytes.copy(file, OBJECT_FILE_FIXED_HEADER_SIZE_BYTES);
  nameBytes.copy(file, OBJECT_FILE_FIXED_HEADER_SIZE_BYTES + keyBytes.length);
  file.writeUInt32LE(headerChecksum(file, file.subarray(OBJECT_FILE_FIXED_HEADER_SIZE_BYTES, tableOffsetBytes)), 32);
  return { file, tableOffsetBytes, etag: file.toString("hex", 20, 20 + PUT_NONCE_SIZE_BYTES) };
}

/**
 * Decodes and verifies the header from the first bytes of an object or meta file (`bytes` holds
 * the start of the file: all of it, or at least OBJECT_FILE_HEADER_SIZE_BYTES_MAX bytes).
 * A malformed header is Corrupt; `fileDescription` names the file in the message.
 */
export function decodeObjectFileHeader(bytes: Buffer, fileDescription: string): ObjectFileHeader {
  const corrupt = (reason: string) => new StoreError("Corrupt", `object file ${fileDescription}: ${reason}`);
  if (bytes.length < OBJECT_FILE_FIXED_HEADER_SIZE_BYTES) throw corrupt(`truncated header (${bytes.length} bytes)`);
  if (bytes.readUInt32LE(0) !== OBJECT_FILE_MAGIC) throw corrupt("bad magic");
  const version = bytes.readUInt16LE(4);
  if (version !== OBJECT_FILE_FORMAT_VERSION && version !== META_FILE_FORMAT_VERSION) throw corrupt(`unknown format version ${version}`);
  const keySizeBytes = bytes.readUInt16LE(6);
  // Version 1 has no name; its bytes 28-29 are reserved and do not count.
  const nameSizeBytes = version === META_FILE_FORMAT_VERSION ? bytes.readUInt16LE(28) : 0;
  const keyEndBytes = OBJECT_FILE_FIXED_HEADER_SIZE_BYTES + keySizeBytes;
  const tableOffsetBytes = keyEndBytes + nameSizeBytes;
  if (bytes.length < tableOffsetBytes) throw corrupt("truncated key or data file name");
  if (bytes.readUInt32LE(32) !== headerChecksum(bytes, bytes.subarray(OBJECT_FILE_FIXED_HEADER_SIZE_BYTES, tableOffsetBytes))) {
    throw corrupt("header checksum mismatch");
  }
  if (version === META_FILE_FORMAT_VERSION && (nameSizeBytes === 0 || nameSizeBytes > DATA_FILE_NAME_SIZE_BYTES_MAX)) {
    throw corrupt(`data file name of ${nameSizeBytes} bytes`);
  }
  const dataSizeBigInt = bytes.readBigUInt64LE(8);
  const blockSizeBytes = bytes.readUInt32LE(16);
  if (dataSizeBigInt > BigInt(Number.MAX_SAFE_INTEGER) || blockSizeBytes === 0) throw corrupt("impossible sizes");
  const dataSizeBytes = Number(dataSizeBigInt);
  const tableSizeBytes = 4 * Math.ceil(dataSizeBytes / blockSizeBytes);
  return {
    key: bytes.toString("utf8", OBJECT_FILE_FIXED_HEADER_SIZE_BYTES, keyEndBytes),
    dataSizeBytes,
    blockSizeBytes,
    etag: bytes.toString("hex", 20, 20 + PUT_NONCE_SIZE_BYTES),
    dataFileName: version === META_FILE_FORMAT_VERSION ? bytes.toString("latin1", keyEndBytes, tableOffsetBytes) : undefined,
    tableOffsetBytes,
    dataOffsetBytes: version === META_FILE_FORMAT_VERSION ? 0 : tableOffsetBytes + tableSizeBytes,
  };
}

/**
 * Checks the blocks `firstBlock`, `firstBlock + 1`, ... held in `blocks` against their entries in
 * `table` (the checksum table slice starting at `firstBlock`). A mismatch is Corrupt.
 */
export function verifyObjectFileBlocks(
  header: ObjectFileHeader,
  firstBlock: number,
  table: Buffer,
  blocks: Buffer,
  fileDescription: string,
): void {
  const blockCount = table.length / 4;
  for (let index = 0; index < blockCount; index++) {
    const start = index * header.blockSizeBytes;
    const block = blocks.subarray(start, Math.min(blocks.length, start + header.blockSizeBytes));
    if (crc32c(block) !== table.readUInt32LE(4 * index)) {
      const offsetBytes = (firstBlock + index) * header.blockSizeBytes;
      throw new StoreError("Corrupt", `object file ${fileDescription}: checksum mismatch in the block at data offset ${offsetBytes}`);
    }
  }
}

/** CRC-32C of the fixed header's first 32 bytes followed by the variable part (key, then the data file name in version 2). */
function headerChecksum(fixedHeader: Buffer, variablePart: Buffer): number {
  return crc32c(variablePart, crc32c(fixedHeader.subarray(0, 32)));
}

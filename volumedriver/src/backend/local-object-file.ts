// The byte format of one object file of the local store, version 1 (volumedriver/docs/backends.md
// "Object file format"). All integers little-endian.
//
//   offset      size  field
//   0           4     magic "OVSO"
//   4           2     format version, 1
//   6           2     key size in bytes, k (UTF-8; validateKey bounds it at 3072)
//   8           8     data size in bytes, d (below 2^53)
//   16          4     block size in bytes, b (4096)
//   20          8     put nonce: 8 random bytes drawn for each put; the etag is their hex
//   28          4     reserved, zero
//   32          4     CRC-32C of bytes 0-31 followed by the k key bytes
//   36          k     the key, UTF-8
//   36+k        4n    CRC-32C of each data block, n = ceil(d / b); the last block may be short
//   36+k+4n     d     the data
//
// Per-block checksums let a ranged get verify exactly the blocks it reads, so every read is
// checked (STYLE.md habit 4) without reading the whole object. The key is stored so a file whose
// name is a hash (long keys) can be listed, and so a misplaced file is caught on read.
import { randomFillSync } from "node:crypto";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import { StoreError } from "./object-store.ts";

export const OBJECT_FILE_MAGIC = 0x4f53564f; // "OVSO" read as a little-endian u32
export const OBJECT_FILE_FORMAT_VERSION = 1;
export const OBJECT_FILE_FIXED_HEADER_SIZE_BYTES = 36;
export const OBJECT_FILE_BLOCK_SIZE_BYTES = 4096;
/** Any header (fixed part and key) fits in this many bytes, so one read of it at offset 0 always holds the header. */
export const OBJECT_FILE_HEADER_SIZE_BYTES_MAX = 4096;
const PUT_NONCE_SIZE_BYTES = 8;

export interface ObjectFileHeader {
  key: string;
  dataSizeBytes: number;
  blockSizeBytes: number;
  etag: string;
  /** File offset of the block checksum table. */
  tableOffsetBytes: number;
  /** File offset of the first data byte. */
  dataOffsetBytes: number;
}

/** The header and block checksum table for an object; the file is this followed by `data`. */
export function encodeObjectFilePrefix(key: string, data: Uint8Array): { prefix: Buffer; etag: string } {
  const keyBytes = Buffer.from(key, "utf8");
  const blockCount = Math.ceil(data.length / OBJECT_FILE_BLOCK_SIZE_BYTES);
  const tableOffsetBytes = OBJECT_FILE_FIXED_HEADER_SIZE_BYTES + keyBytes.length;
  const prefix = Buffer.alloc(tableOffsetBytes + 4 * blockCount);
  prefix.writeUInt32LE(OBJECT_FILE_MAGIC, 0);
  prefix.writeUInt16LE(OBJECT_FILE_FORMAT_VERSION, 4);
  prefix.writeUInt16LE(keyBytes.length, 6);
  prefix.writeBigUInt64LE(BigInt(data.length), 8);
  prefix.writeUInt32LE(OBJECT_FILE_BLOCK_SIZE_BYTES, 16);
  randomFillSync(prefix, 20, PUT_NONCE_SIZE_BYTES);
  keyBytes.copy(prefix, OBJECT_FILE_FIXED_HEADER_SIZE_BYTES);
  prefix.writeUInt32LE(headerChecksum(prefix, keyBytes), 32);
  for (let block = 0; block < blockCount; block++) {
    const start = block * OBJECT_FILE_BLOCK_SIZE_BYTES;
    const checksum = crc32c(data.subarray(start, Math.min(data.length, start + OBJECT_FILE_BLOCK_SIZE_BYTES)));
    prefix.writeUInt32LE(checksum, tableOffsetBytes + 4 * block);
  }
  return { prefix, etag: prefix.toString("hex", 20, 20 + PUT_NONCE_SIZE_BYTES) };
}

/**
 * Decodes and verifies the header from the first bytes of an object file (`bytes` holds the
 * start of the file: all of it, or at least OBJECT_FILE_HEADER_SIZE_BYTES_MAX bytes).
 * A malformed header is Corrupt; `fileDescription` names the file in the message.
 */
export function decodeObjectFileHeader(bytes: Buffer, fileDescription: string): ObjectFileHeader {
  const corrupt = (reason: string) => new StoreError("Corrupt", `object file ${fileDescription}: ${reason}`);
  if (bytes.length < OBJECT_FILE_FIXED_HEADER_SIZE_BYTES) throw corrupt(`truncated header (${bytes.length} bytes)`);
  if (bytes.readUInt32LE(0) !== OBJECT_FILE_MAGIC) throw corrupt("bad magic");
  const version = bytes.readUInt16LE(4);
  if (version !== OBJECT_FILE_FORMAT_VERSION) throw corrupt(`unknown format version ${version}`);
  const keySizeBytes = bytes.readUInt16LE(6);
  const tableOffsetBytes = OBJECT_FILE_FIXED_HEADER_SIZE_BYTES + keySizeBytes;
  if (bytes.length < tableOffsetBytes) throw corrupt("truncated key");
  const keyBytes = bytes.subarray(OBJECT_FILE_FIXED_HEADER_SIZE_BYTES, tableOffsetBytes);
  if (bytes.readUInt32LE(32) !== headerChecksum(bytes, keyBytes)) throw corrupt("header checksum mismatch");
  const dataSizeBigInt = bytes.readBigUInt64LE(8);
  const blockSizeBytes = bytes.readUInt32LE(16);
  if (dataSizeBigInt > BigInt(Number.MAX_SAFE_INTEGER) || blockSizeBytes === 0) throw corrupt("impossible sizes");
  const dataSizeBytes = Number(dataSizeBigInt);
  const blockCount = Math.ceil(dataSizeBytes / blockSizeBytes);
  return {
    key: keyBytes.toString("utf8"),
    dataSizeBytes,
    blockSizeBytes,
    etag: bytes.toString("hex", 20, 20 + PUT_NONCE_SIZE_BYTES),
    tableOffsetBytes,
    dataOffsetBytes: tableOffsetBytes + 4 * blockCount,
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

function headerChecksum(fixedHeader: Buffer, keyBytes: Buffer): number {
  return crc32c(keyBytes, crc32c(fixedHeader.subarray(0, 32)));
}

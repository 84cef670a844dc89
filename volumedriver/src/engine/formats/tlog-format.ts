// TLog (transaction log): a 64-byte header, then 32-byte entries, each with its own CRC-32C, ending
// (once sealed) with an END entry carrying the entry count and a CRC-32C chained over all entries.
// A TLog names the SCOs whose clusters it maps; it is rolled only at SCO boundaries, so every SCO
// belongs to exactly one TLog. Layout, byte by byte: volumedriver/docs/formats.md.
import { crc32c } from "../../../../alba/src/codec/crc32c.ts";
import { uuidFromBytes, uuidToBytes } from "./uuid-bytes.ts";

export const TLOG_MAGIC = "OVS-TLOG";
export const TLOG_FORMAT_VERSION = 1;
export const TLOG_HEADER_SIZE_BYTES = 64;
export const TLOG_ENTRY_SIZE_BYTES = 32;

export const ENTRY_WRITE = 1;
export const ENTRY_TRIM = 2;
export const ENTRY_END = 0xee;

const TWO_POW_32 = 0x1_0000_0000;

export interface TlogHeader {
  tlogNumber: number;
  volumeUuid: string;
  createdAtMs: number;
}

export type TlogEntry =
  | {
    type: typeof ENTRY_WRITE; clusterAddress: number; scoNumber: number; scoOffset: number; dataCrc: number; endOfRequest: boolean;
    /** A scrub moved the cluster's data (same bytes, new place); the SCO is not this TLog's. */
    relocation: boolean;
  }
  | { type: typeof ENTRY_TRIM; clusterAddress: number; clusterCount: number; endOfRequest: boolean };

/** Entry flag (byte 3): the last entry of one client request. Replay of a torn TLog stops after such an entry. */
export const FLAG_END_OF_REQUEST = 1;
/**
 * Entry flag (byte 3, WRITE only): a relocation written by the owner when it applies a scrub: the
 * cluster's data moved, unchanged, to a SCO that a scrubbed TLog names. Replaying the whole history
 * makes it a no-op; it brings the local metadata along. Its SCO is on the backend, not local, and
 * is not this TLog's: replay does not check it against a local SCO, and nothing counts it as the
 * TLog's own SCO (uploads, garbage collection).
 */
export const FLAG_RELOCATION = 2;

/** TLogs the scrubber writes are numbered from here (2^40); the journal's stay below. */
export const SCRUB_TLOG_NUMBER_BASE = 2 ** 40;

export function tlogObjectKey(tlogNumber: number): string {
  return `tlog/${tlogNumber.toString(16).padStart(16, "0")}`;
}

export function tlogNumberFromKey(key: string): number | undefined {
  const match = /^tlog\/([0-9a-f]{16})$/.exec(key);
  return match ? Number.parseInt(match[1], 16) : undefined;
}

export function encodeTlogHeader(header: TlogHeader): Buffer {
  const buffer = Buffer.alloc(TLOG_HEADER_SIZE_BYTES);
  buffer.write(TLOG_MAGIC, 0, "latin1");
  buffer.writeUInt16LE(TLOG_FORMAT_VERSION, 8);
  buffer.writeUInt16LE(TLOG_ENTRY_SIZE_BYTES, 10);
  buffer.writeBigUInt64LE(BigInt(header.tlogNumber), 16);
  uuidToBytes(header.volumeUuid).copy(buffer, 24);
  buffer.writeBigUInt64LE(BigInt(header.createdAtMs), 40);
  buffer.writeUInt32LE(crc32c(buffer.subarray(0, 60)), 60);
  return buffer;
}

export function decodeTlogHeader(buffer: Buffer): TlogHeader {
  if (buffer.length < TLOG_HEADER_SIZE_BYTES) throw new Error(`TLog header truncated (${buffer.length} bytes)`);
  if (buffer.toString("latin1", 0, 8) !== TLOG_MAGIC) throw new Error("not a TLog (bad magic)");
  const version = buffer.readUInt16LE(8);
  if (version !== TLOG_FORMAT_VERSION) throw new Error(`unsupported TLog format version ${version}`);
  if (buffer.readUInt32LE(60) !== crc32c(buffer.subarray(0, 60))) throw new Error("TLog header checksum mismatch");
  if (buffer.readUInt16LE(10) !== TLOG_ENTRY_SIZE_BYTES) throw new Error("TLog entry size unsupported");
  return {
    tlogNumber: Number(buffer.readBigUInt64LE(16)),
    volumeUuid: uuidFromBytes(buffer.subarray(24, 40)),
    createdAtMs: Number(buffer.readBigUInt64LE(40)),
  };
}

function sealEntry(buffer: Buffer, position: number): void {
  buffer.writeUInt32LE(crc32c(buffer.subarray(position, position + 28)), position + 28);
}

function writeCommon(buffer: Buffer, position: number, type: number, clusterAddress: number, sequence: number, flags: number): void {
  buffer.writeUInt8(type, position);
  buffer.writeUInt8(0, position + 1); // clone index: 0 = this volume's own namespace
  buffer.writeUInt8(0, position + 2); // SCO version: 0 until scrubbing rewrites it
  buffer.writeUInt8(flags, position + 3);
  buffer.writeUInt32LE(clusterAddress % TWO_POW_32, position + 8);
  buffer.writeUInt32LE(Math.floor(clusterAddress / TWO_POW_32), position + 12);
  buffer.writeUInt32LE(sequence, position + 24);
}

export function encodeWriteEntry(
  buffer: Buffer, position: number, sequence: number,
  clusterAddress: number, scoNumber: number, scoOffset: number, dataCrc: number, endOfRequest: boolean, relocation = false,
): void {
  writeCommon(buffer, position, ENTRY_WRITE, clusterAddress, sequence, (endOfRequest ? FLAG_END_OF_REQUEST : 0) | (relocation ? FLAG_RELOCATION : 0));
  buffer.writeUInt32LE(dataCrc, position + 4);
  buffer.writeUInt32LE(scoNumber, position + 16);
  buffer.writeUInt32LE(scoOffset, position + 20);
  sealEntry(buffer, position);
}

export function encodeTrimEntry(buffer: Buffer, position: number, sequence: number, clusterAddress: number, clusterCount: number): void {
  writeCommon(buffer, position, ENTRY_TRIM, clusterAddress, sequence, FLAG_END_OF_REQUEST);
  buffer.writeUInt32LE(0, position + 4);
  buffer.writeUInt32LE(clusterCount, position + 16);
  buffer.writeUInt32LE(0, position + 20);
  sealEntry(buffer, position);
}

/** The END entry: entryCount entries precede it, whose bytes have CRC-32C chainCrc. */
export function encodeEndEntry(buffer: Buffer, position: number, entryCount: number, chainCrc: number): void {
  writeCommon(buffer, position, ENTRY_END, 0, entryCount, 0);
  buffer.writeUInt32LE(chainCrc, position + 4);
  buffer.writeUInt32LE(entryCount, position + 16);
  buffer.writeUInt32LE(0, position + 20);
  sealEntry(buffer, position);
}

export interface DecodedTlog {
  header: TlogHeader;
  entries: TlogEntry[];
  /** True when a valid END entry closes the log and its chained CRC matches. */
  sealed: boolean;
  /** Bytes of header plus valid entries (where a torn tail begins). */
  validLengthBytes: number;
  /** Why decoding stopped early, if it did (torn or corrupt tail). */
  stopReason?: string;
}

/**
 * Decodes a TLog, stopping at the first entry that fails its checksum or sequence. The header must be
 * valid (throws otherwise). A sealed TLog has no bytes after its END entry.
 */
export function decodeTlog(buffer: Buffer): DecodedTlog {
  const header = decodeTlogHeader(buffer);
  const entries: TlogEntry[] = [];
  let position = TLOG_HEADER_SIZE_BYTES;
  let chainCrc = 0;
  let sealed = false;
  let stopReason: string | undefined;
  while (position + TLOG_ENTRY_SIZE_BYTES <= buffer.length) {
    const entry = buffer.subarray(position, position + TLOG_ENTRY_SIZE_BYTES);
    if (entry.readUInt32LE(28) !== crc32c(entry.subarray(0, 28))) {
      stopReason = `entry ${entries.length} checksum mismatch at byte ${position}`;
      break;
    }
    const type = entry.readUInt8(0);
    const clusterAddress = entry.readUInt32LE(8) + entry.readUInt32LE(12) * TWO_POW_32;
    if (type === ENTRY_END) {
      if (entry.readUInt32LE(16) !== entries.length || entry.readUInt32LE(4) !== chainCrc) {
        stopReason = `END entry does not match the ${entries.length} entries before it`;
        break;
      }
      sealed = true;
      position += TLOG_ENTRY_SIZE_BYTES;
      if (position !== buffer.length) stopReason = `${buffer.length - position} bytes after the END entry`;
      break;
    }
    if (entry.readUInt32LE(24) !== entries.length) {
      stopReason = `entry ${entries.length} has sequence ${entry.readUInt32LE(24)}`;
      break;
    }
    const endOfRequest = (entry.readUInt8(3) & FLAG_END_OF_REQUEST) !== 0;
    if (type === ENTRY_WRITE) {
      entries.push({
        type: ENTRY_WRITE, clusterAddress, endOfRequest, relocation: (entry.readUInt8(3) & FLAG_RELOCATION) !== 0,
        dataCrc: entry.readUInt32LE(4), scoNumber: entry.readUInt32LE(16), scoOffset: entry.readUInt32LE(20),
      });
    } else if (type === ENTRY_TRIM) {
      entries.push({ type: ENTRY_TRIM, clusterAddress, clusterCount: entry.readUInt32LE(16), endOfRequest });
    } else {
      stopReason = `entry ${entries.length} has unknown type ${type}`;
      break;
    }
    chainCrc = crc32c(entry, chainCrc);
    position += TLOG_ENTRY_SIZE_BYTES;
  }
  if (!sealed && stopReason === undefined && position !== buffer.length) {
    stopReason = `torn entry: ${buffer.length - position} trailing bytes`;
  }
  return { header, entries, sealed, validLengthBytes: position, stopReason };
}

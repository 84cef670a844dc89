// SCO (storage container object): a 4 KiB header followed by 4 KiB clusters in write order.
// The local file in the write buffer and the backend object are byte-identical, so a ranged read of
// cluster i is bytes [4096 * (1 + i), 4096 * (2 + i)). Cluster checksums live in the TLog entries and
// in the metadata, not in the SCO: the reader always knows the CRC it expects. Layout: volumedriver/docs/formats.md.
import { crc32c } from "../../../../alba/src/codec/crc32c.ts";
import { CLUSTER_SIZE_BYTES } from "../vpool-types.ts";
import { uuidFromBytes, uuidToBytes } from "./uuid-bytes.ts";

export const SCO_MAGIC = "OVS-SCO\0";
export const SCO_FORMAT_VERSION = 1;
export const SCO_HEADER_SIZE_BYTES = 4096;
const HEADER_CHECKED_BYTES = 48;

export interface ScoHeader {
  scoNumber: number;
  /** The TLog that names this SCO's clusters. */
  tlogNumber: number;
  volumeUuid: string;
}

/**
 * SCOs the scrubber writes are numbered from here (the journal's numbers stay below it: 2^31 SCOs of
 * 4 MiB or more is far beyond any vDisk), so the two never collide and a restore never continues the
 * journal's numbering from a scrubbed SCO's.
 */
export const SCRUB_SCO_NUMBER_BASE = 0x8000_0000;

export function scoObjectKey(scoNumber: number): string {
  return `sco/${scoNumber.toString(16).padStart(16, "0")}`;
}

export function scoNumberFromKey(key: string): number | undefined {
  const match = /^sco\/([0-9a-f]{16})$/.exec(key);
  return match ? Number.parseInt(match[1], 16) : undefined;
}

/** Byte offset of cluster `clusterIndex` inside a SCO file/object. */
export function scoClusterOffsetBytes(clusterIndex: number): number {
  return SCO_HEADER_SIZE_BYTES + clusterIndex * CLUSTER_SIZE_BYTES;
}

export function encodeScoHeader(header: ScoHeader): Buffer {
  const buffer = Buffer.alloc(SCO_HEADER_SIZE_BYTES);
  buffer.write(SCO_MAGIC, 0, "latin1");
  buffer.writeUInt16LE(SCO_FORMAT_VERSION, 8);
  buffer.writeUInt16LE(0, 10);
  buffer.writeUInt32LE(CLUSTER_SIZE_BYTES, 12);
  buffer.writeBigUInt64LE(BigInt(header.scoNumber), 16);
  uuidToBytes(header.volumeUuid).copy(buffer, 24);
  buffer.writeBigUInt64LE(BigInt(header.tlogNumber), 40);
  buffer.writeUInt32LE(crc32c(buffer.subarray(0, HEADER_CHECKED_BYTES)), HEADER_CHECKED_BYTES);
  return buffer;
}

/** Decodes and verifies a SCO header; throws an Error naming the problem. */
export function decodeScoHeader(buffer: Buffer): ScoHeader {
  if (buffer.length < SCO_HEADER_SIZE_BYTES) throw new Error(`SCO header truncated (${buffer.length} bytes)`);
  if (buffer.toString("latin1", 0, 8) !== SCO_MAGIC) throw new Error("not a SCO (bad magic)");
  const version = buffer.readUInt16LE(8);
  if (version !== SCO_FORMAT_VERSION) throw new Error(`unsupported SCO format version ${version}`);
  if (buffer.readUInt32LE(HEADER_CHECKED_BYTES) !== crc32c(buffer.subarray(0, HEADER_CHECKED_BYTES))) {
    throw new Error("SCO header checksum mismatch");
  }
  if (buffer.readUInt32LE(12) !== CLUSTER_SIZE_BYTES) throw new Error(`SCO cluster size ${buffer.readUInt32LE(12)} unsupported`);
  return {
    scoNumber: Number(buffer.readBigUInt64LE(16)),
    volumeUuid: uuidFromBytes(buffer.subarray(24, 40)),
    tlogNumber: Number(buffer.readBigUInt64LE(40)),
  };
}

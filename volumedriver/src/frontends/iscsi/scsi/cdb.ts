// CDB decoding for the block commands (SBC-4 §5): one table-like switch that pulls the LBA, the
// transfer length and the flag bits out of each opcode's CDB layout, and one shared range check.
// Handlers get a DecodedBlockCdb and never index the CDB for these fields themselves.
import { invalidCdbField, ScsiError } from "./sense-table.ts";

/** Operation codes we decode or serve (SPC-5 Annex D, SBC-4 Table 11). */
export const OPCODE = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  READ_6: 0x08,
  WRITE_6: 0x0a,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  RESERVE_6: 0x16,
  RELEASE_6: 0x17,
  MODE_SENSE_6: 0x1a,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  WRITE_AND_VERIFY_10: 0x2e,
  VERIFY_10: 0x2f,
  PRE_FETCH_10: 0x34,
  SYNCHRONIZE_CACHE_10: 0x35,
  WRITE_SAME_10: 0x41,
  UNMAP: 0x42,
  MODE_SELECT_10: 0x55,
  RESERVE_10: 0x56,
  RELEASE_10: 0x57,
  MODE_SENSE_10: 0x5a,
  PERSISTENT_RESERVE_IN: 0x5e,
  PERSISTENT_RESERVE_OUT: 0x5f,
  READ_16: 0x88,
  COMPARE_AND_WRITE: 0x89,
  WRITE_16: 0x8a,
  WRITE_AND_VERIFY_16: 0x8e,
  VERIFY_16: 0x8f,
  PRE_FETCH_16: 0x90,
  SYNCHRONIZE_CACHE_16: 0x91,
  WRITE_SAME_16: 0x93,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
  MAINTENANCE_IN: 0xa3,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
  WRITE_AND_VERIFY_12: 0xae,
  VERIFY_12: 0xaf,
} as const;

/** SERVICE ACTION IN(16) service actions (SBC-4 §5.16, §5.8). */
export const SERVICE_ACTION_IN_16 = { READ_CAPACITY_16: 0x10, GET_LBA_STATUS: 0x12 } as const;
/** MAINTENANCE IN service actions (SPC-5 §6.35, §6.36). */
export const MAINTENANCE_IN = { REPORT_SUPPORTED_OPERATION_CODES: 0x0c, REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS: 0x0d } as const;

/** The fields of a block command's CDB, whatever its size. */
export interface DecodedBlockCdb {
  opcode: number;
  lba: number;
  /** NUMBER OF LOGICAL BLOCKS / TRANSFER LENGTH / VERIFICATION LENGTH. */
  blocks: number;
  /** RDPROTECT / WRPROTECT / VRPROTECT (bits 7-5 of byte 1). */
  protect: number;
  dpo: boolean;
  fua: boolean;
  /** VERIFY / WRITE AND VERIFY BYTCHK (SBC-4 §5.34: 2 bits). */
  byteCheck: number;
  /** WRITE SAME flags (SBC-4 §5.49). */
  unmap: boolean;
  anchor: boolean;
  noDataOutBuffer: boolean;
  /** SYNCHRONIZE CACHE IMMED (SBC-4 §5.28). */
  immediate: boolean;
}

/** Reads a 64-bit LBA; values beyond 2^53 cannot be in range and clamp to MAX_SAFE_INTEGER. */
function readLba64(cdb: Buffer, offset: number): number {
  const value = cdb.readBigUInt64BE(offset);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}

function baseFields(cdb: Buffer): DecodedBlockCdb {
  return {
    opcode: cdb[0],
    lba: 0,
    blocks: 0,
    protect: cdb.length > 1 ? cdb[1] >> 5 : 0,
    dpo: cdb.length > 1 && (cdb[1] & 0x10) !== 0,
    fua: cdb.length > 1 && (cdb[1] & 0x08) !== 0,
    byteCheck: 0,
    unmap: false,
    anchor: false,
    noDataOutBuffer: false,
    immediate: false,
  };
}

/** The CDB length of each opcode's group (SPC-5 §4.2.5.1: the top three bits of the opcode). */
export function cdbLengthForOpcode(opcode: number): number {
  switch (opcode >> 5) {
    case 0: return 6;
    case 1: case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 16;
  }
}

/**
 * Decodes the LBA, length and flags of a block command (like the Linux target's sbc_parse_cdb).
 * Returns undefined for opcodes that carry no LBA. The CDB must be at least as long as its group.
 */
export function decodeBlockCdb(cdb: Buffer): DecodedBlockCdb | undefined {
  if (cdb.length < cdbLengthForOpcode(cdb[0])) throw invalidCdbField(0);
  const d = baseFields(cdb);
  switch (cdb[0]) {
    // SBC-4 §5.15, §5.41: 21-bit LBA, TRANSFER LENGTH 0 means 256 blocks; no flag bits.
    case OPCODE.READ_6:
    case OPCODE.WRITE_6:
      d.lba = cdb.readUIntBE(1, 3) & 0x1fffff;
      d.blocks = cdb[4] === 0 ? 256 : cdb[4];
      d.protect = 0;
      d.dpo = false;
      d.fua = false;
      return d;
    // SBC-4 §5.16-5.19, §5.42-5.44: 10-byte forms, 32-bit LBA, 16-bit length.
    case OPCODE.READ_10:
    case OPCODE.WRITE_10:
    case OPCODE.VERIFY_10:
    case OPCODE.WRITE_AND_VERIFY_10:
      d.lba = cdb.readUInt32BE(2);
      d.blocks = cdb.readUInt16BE(7);
      d.byteCheck = (cdb[1] >> 1) & 0x03;
      return d;
    case OPCODE.PRE_FETCH_10:
    case OPCODE.SYNCHRONIZE_CACHE_10:
      d.lba = cdb.readUInt32BE(2);
      d.blocks = cdb.readUInt16BE(7);
      d.immediate = (cdb[1] & 0x02) !== 0;
      d.protect = 0;
      d.dpo = false;
      d.fua = false;
      return d;
    case OPCODE.WRITE_SAME_10:
      d.lba = cdb.readUInt32BE(2);
      d.blocks = cdb.readUInt16BE(7);
      d.anchor = (cdb[1] & 0x10) !== 0;
      d.unmap = (cdb[1] & 0x08) !== 0;
      d.dpo = false;
      d.fua = false;
      return d;
    // 12-byte forms: 32-bit LBA, 32-bit length.
    case OPCODE.READ_12:
    case OPCODE.WRITE_12:
    case OPCODE.VERIFY_12:
    case OPCODE.WRITE_AND_VERIFY_12:
      d.lba = cdb.readUInt32BE(2);
      d.blocks = cdb.readUInt32BE(6);
      d.byteCheck = (cdb[1] >> 1) & 0x03;
      return d;
    // 16-byte forms: 64-bit LBA, 32-bit length.
    case OPCODE.READ_16:
    case OPCODE.WRITE_16:
    case OPCODE.VERIFY_16:
    case OPCODE.WRITE_AND_VERIFY_16:
      d.lba = readLba64(cdb, 2);
      d.blocks = cdb.readUInt32BE(10);
      d.byteCheck = (cdb[1] >> 1) & 0x03;
      return d;
    case OPCODE.PRE_FETCH_16:
    case OPCODE.SYNCHRONIZE_CACHE_16:
      d.lba = readLba64(cdb, 2);
      d.blocks = cdb.readUInt32BE(10);
      d.immediate = (cdb[1] & 0x02) !== 0;
      d.protect = 0;
      d.dpo = false;
      d.fua = false;
      return d;
    case OPCODE.WRITE_SAME_16:
      d.lba = readLba64(cdb, 2);
      d.blocks = cdb.readUInt32BE(10);
      d.anchor = (cdb[1] & 0x10) !== 0;
      d.unmap = (cdb[1] & 0x08) !== 0;
      d.noDataOutBuffer = (cdb[1] & 0x01) !== 0;
      d.dpo = false;
      d.fua = false;
      return d;
    // SBC-4 §5.3: NUMBER OF LOGICAL BLOCKS is one byte (13); the Data-Out holds twice that.
    case OPCODE.COMPARE_AND_WRITE:
      d.lba = readLba64(cdb, 2);
      d.blocks = cdb[13];
      return d;
    // SBC-4 §5.8 GET LBA STATUS: STARTING LBA; the length is an allocation length, not blocks.
    case OPCODE.SERVICE_ACTION_IN_16:
      if ((cdb[1] & 0x1f) !== SERVICE_ACTION_IN_16.GET_LBA_STATUS) return undefined;
      d.lba = readLba64(cdb, 2);
      d.blocks = 0;
      d.protect = 0;
      d.dpo = false;
      d.fua = false;
      return d;
    default:
      return undefined;
  }
}

/**
 * The one range check (SBC-4 §4.5): the LBA and LBA + blocks must not pass the capacity.
 * A zero-length command at LBA == capacity is in range (nothing is transferred).
 */
export function checkLbaRange(lba: number, blocks: number, capacityBlocks: number): void {
  if (lba > capacityBlocks || lba + blocks > capacityBlocks) throw new ScsiError("LbaOutOfRange");
}

/** ALLOCATION LENGTH of the commands that return parameter data, by CDB layout. */
export function allocationLength(cdb: Buffer): number {
  switch (cdb[0]) {
    case OPCODE.INQUIRY: return cdb.readUInt16BE(3); // SPC-5 §6.7.1
    case OPCODE.REQUEST_SENSE: return cdb[4]; // SPC-5 §6.39
    case OPCODE.MODE_SENSE_6: return cdb[4]; // SPC-5 §6.14
    case OPCODE.MODE_SENSE_10: return cdb.readUInt16BE(7); // SPC-5 §6.15
    case OPCODE.PERSISTENT_RESERVE_IN: return cdb.readUInt16BE(7); // SPC-5 §6.16
    case OPCODE.REPORT_LUNS: return cdb.readUInt32BE(6); // SPC-5 §6.33
    case OPCODE.MAINTENANCE_IN: return cdb.readUInt32BE(6); // SPC-5 §6.35, §6.36
    case OPCODE.SERVICE_ACTION_IN_16: return cdb.readUInt32BE(10); // SBC-4 §5.8, §5.21
    case OPCODE.READ_CAPACITY_10: return 8;
    default: return Number.MAX_SAFE_INTEGER;
  }
}

/** PARAMETER LIST LENGTH of the commands that take parameter data. */
export function parameterListLength(cdb: Buffer): number {
  switch (cdb[0]) {
    case OPCODE.MODE_SELECT_6: return cdb[4]; // SPC-5 §6.12
    case OPCODE.MODE_SELECT_10: return cdb.readUInt16BE(7); // SPC-5 §6.13
    case OPCODE.PERSISTENT_RESERVE_OUT: return cdb.readUInt32BE(5); // SPC-5 §6.17
    case OPCODE.UNMAP: return cdb.readUInt16BE(7); // SBC-4 §5.32
    default: return 0;
  }
}

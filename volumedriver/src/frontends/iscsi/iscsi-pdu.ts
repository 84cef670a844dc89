// iSCSI PDUs (RFC 7143 §11): the 48-byte Basic Header Segment of every opcode we send or receive,
// typed, plus the framing around it: Additional Header Segments, the data segment padded to 4 bytes,
// and the optional CRC-32C HeaderDigest and DataDigest. Decoding never trusts a length it has not
// bounded; encoding is the exact inverse (the unit tests round-trip every opcode).
import { crc32c } from "../../../../alba/src/codec/crc32c.ts";

/** RFC 7143 §11.2.1: the Basic Header Segment is 48 bytes. */
export const BHS_BYTES = 48;
/** HeaderDigest and DataDigest are 4 bytes each (RFC 7143 §11.2.4). */
export const DIGEST_BYTES = 4;
/** The Reserved Tag value (RFC 7143 §11.2.1.?: 0xffffffff means "no tag"). */
export const RESERVED_TAG = 0xffff_ffff;
/** TotalAHSLength is one byte counting 4-byte words (RFC 7143 §11.2.1.4). */
export const AHS_BYTES_MAX = 255 * 4;
/** DataSegmentLength is 24 bits (RFC 7143 §11.2.1.5). */
export const DATA_SEGMENT_BYTES_LIMIT = 0xff_ffff;

export const OPCODE = {
  NOP_OUT: 0x00,
  SCSI_COMMAND: 0x01,
  TASK_MANAGEMENT_REQUEST: 0x02,
  LOGIN_REQUEST: 0x03,
  TEXT_REQUEST: 0x04,
  SCSI_DATA_OUT: 0x05,
  LOGOUT_REQUEST: 0x06,
  SNACK_REQUEST: 0x10,
  NOP_IN: 0x20,
  SCSI_RESPONSE: 0x21,
  TASK_MANAGEMENT_RESPONSE: 0x22,
  LOGIN_RESPONSE: 0x23,
  TEXT_RESPONSE: 0x24,
  SCSI_DATA_IN: 0x25,
  LOGOUT_RESPONSE: 0x26,
  R2T: 0x31,
  ASYNC_MESSAGE: 0x32,
  REJECT: 0x3f,
} as const;

/** AHS types (RFC 7143 §11.2.2). */
export const AHS_TYPE = { EXTENDED_CDB: 1, BIDIRECTIONAL_READ_LENGTH: 2 } as const;

/** Login stages (RFC 7143 §11.12.3: CSG and NSG). */
export const LOGIN_STAGE = { SECURITY_NEGOTIATION: 0, OPERATIONAL_NEGOTIATION: 1, FULL_FEATURE_PHASE: 3 } as const;

/** One Additional Header Segment: its type and its specific bytes (the 3-byte AHS header excluded). */
export interface AdditionalHeaderSegment {
  type: number;
  data: Buffer;
}

interface PduBase {
  /** Additional Header Segments (only SCSI Command uses them). */
  ahs?: AdditionalHeaderSegment[];
  /** The data segment, unpadded. */
  data?: Buffer;
}

export interface NopOutPdu extends PduBase {
  kind: "nop-out"; immediate: boolean; lun: bigint; initiatorTaskTag: number; targetTransferTag: number; cmdSN: number; expStatSN: number;
}
export interface ScsiCommandPdu extends PduBase {
  kind: "scsi-command"; immediate: boolean; final: boolean; read: boolean; write: boolean; taskAttribute: number; lun: bigint;
  initiatorTaskTag: number; expectedDataTransferLength: number; cmdSN: number; expStatSN: number; cdb: Buffer;
}
export interface TaskManagementRequestPdu extends PduBase {
  kind: "task-management-request"; immediate: boolean; function: number; lun: bigint; initiatorTaskTag: number;
  referencedTaskTag: number; cmdSN: number; expStatSN: number; refCmdSN: number; expDataSN: number;
}
export interface LoginRequestPdu extends PduBase {
  kind: "login-request"; transit: boolean; continue: boolean; currentStage: number; nextStage: number; versionMax: number;
  versionMin: number; isid: Buffer; tsih: number; initiatorTaskTag: number; cid: number; cmdSN: number; expStatSN: number;
}
export interface TextRequestPdu extends PduBase {
  kind: "text-request"; immediate: boolean; final: boolean; continue: boolean; lun: bigint; initiatorTaskTag: number;
  targetTransferTag: number; cmdSN: number; expStatSN: number;
}
export interface DataOutPdu extends PduBase {
  kind: "data-out"; final: boolean; lun: bigint; initiatorTaskTag: number; targetTransferTag: number; expStatSN: number;
  dataSN: number; bufferOffset: number;
}
export interface LogoutRequestPdu extends PduBase {
  kind: "logout-request"; immediate: boolean; reasonCode: number; initiatorTaskTag: number; cid: number; cmdSN: number; expStatSN: number;
}
export interface SnackRequestPdu extends PduBase {
  kind: "snack-request"; type: number; lun: bigint; initiatorTaskTag: number; targetTransferTag: number; expStatSN: number;
  begRun: number; runLength: number;
}
export interface NopInPdu extends PduBase {
  kind: "nop-in"; lun: bigint; initiatorTaskTag: number; targetTransferTag: number; statSN: number; expCmdSN: number; maxCmdSN: number;
}
export interface ScsiResponsePdu extends PduBase {
  kind: "scsi-response"; bidiOverflow: boolean; bidiUnderflow: boolean; overflow: boolean; underflow: boolean; response: number;
  status: number; initiatorTaskTag: number; snackTag: number; statSN: number; expCmdSN: number; maxCmdSN: number; expDataSN: number;
  bidiReadResidualCount: number; residualCount: number;
}
export interface TaskManagementResponsePdu extends PduBase {
  kind: "task-management-response"; response: number; initiatorTaskTag: number; statSN: number; expCmdSN: number; maxCmdSN: number;
}
export interface LoginResponsePdu extends PduBase {
  kind: "login-response"; transit: boolean; continue: boolean; currentStage: number; nextStage: number; versionMax: number;
  versionActive: number; isid: Buffer; tsih: number; initiatorTaskTag: number; statSN: number; expCmdSN: number; maxCmdSN: number;
  statusClass: number; statusDetail: number;
}
export interface TextResponsePdu extends PduBase {
  kind: "text-response"; final: boolean; continue: boolean; lun: bigint; initiatorTaskTag: number; targetTransferTag: number;
  statSN: number; expCmdSN: number; maxCmdSN: number;
}
export interface DataInPdu extends PduBase {
  kind: "data-in"; final: boolean; acknowledge: boolean; overflow: boolean; underflow: boolean; statusPresent: boolean; status: number;
  lun: bigint; initiatorTaskTag: number; targetTransferTag: number; statSN: number; expCmdSN: number; maxCmdSN: number;
  dataSN: number; bufferOffset: number; residualCount: number;
}
export interface LogoutResponsePdu extends PduBase {
  kind: "logout-response"; response: number; initiatorTaskTag: number; statSN: number; expCmdSN: number; maxCmdSN: number;
  time2WaitSeconds: number; time2RetainSeconds: number;
}
export interface R2tPdu extends PduBase {
  kind: "r2t"; lun: bigint; initiatorTaskTag: number; targetTransferTag: number; statSN: number; expCmdSN: number; maxCmdSN: number;
  r2tSN: number; bufferOffset: number; desiredDataTransferLength: number;
}
export interface AsyncMessagePdu extends PduBase {
  kind: "async-message"; lun: bigint; statSN: number; expCmdSN: number; maxCmdSN: number; asyncEvent: number; asyncVCode: number;
  parameter1: number; parameter2: number; parameter3: number;
}
export interface RejectPdu extends PduBase {
  kind: "reject"; reason: number; statSN: number; expCmdSN: number; maxCmdSN: number; dataSN: number;
}

export type InitiatorPdu =
  | NopOutPdu | ScsiCommandPdu | TaskManagementRequestPdu | LoginRequestPdu | TextRequestPdu | DataOutPdu | LogoutRequestPdu
  | SnackRequestPdu;
export type TargetPdu =
  | NopInPdu | ScsiResponsePdu | TaskManagementResponsePdu | LoginResponsePdu | TextResponsePdu | DataInPdu | LogoutResponsePdu
  | R2tPdu | AsyncMessagePdu | RejectPdu;
export type IscsiPdu = InitiatorPdu | TargetPdu;

const KIND_OPCODE: Record<IscsiPdu["kind"], number> = {
  "nop-out": OPCODE.NOP_OUT,
  "scsi-command": OPCODE.SCSI_COMMAND,
  "task-management-request": OPCODE.TASK_MANAGEMENT_REQUEST,
  "login-request": OPCODE.LOGIN_REQUEST,
  "text-request": OPCODE.TEXT_REQUEST,
  "data-out": OPCODE.SCSI_DATA_OUT,
  "logout-request": OPCODE.LOGOUT_REQUEST,
  "snack-request": OPCODE.SNACK_REQUEST,
  "nop-in": OPCODE.NOP_IN,
  "scsi-response": OPCODE.SCSI_RESPONSE,
  "task-management-response": OPCODE.TASK_MANAGEMENT_RESPONSE,
  "login-response": OPCODE.LOGIN_RESPONSE,
  "text-response": OPCODE.TEXT_RESPONSE,
  "data-in": OPCODE.SCSI_DATA_IN,
  "logout-response": OPCODE.LOGOUT_RESPONSE,
  r2t: OPCODE.R2T,
  "async-message": OPCODE.ASYNC_MESSAGE,
  reject: OPCODE.REJECT,
};

export function opcodeOf(pdu: IscsiPdu): number {
  return KIND_OPCODE[pdu.kind];
}

/** A header that is well framed but cannot be decoded (unknown opcode, CDB missing...). */
export class PduFormatError extends Error {
  constructor(readonly reason: "UnknownOpcode" | "InvalidField", message: string) {
    super(message);
    this.name = "PduFormatError";
  }
}

// ---- small field helpers ----

const F_BIT = 0x80;
const C_BIT = 0x40;
const IMMEDIATE_BIT = 0x40;

function bit(value: number, mask: number): boolean {
  return (value & mask) !== 0;
}

function flag(set: boolean, mask: number): number {
  return set ? mask : 0;
}

/** Bytes of padding that bring `length` to a multiple of 4 (RFC 7143 §11.2.3). */
export function paddingBytes(length: number): number {
  return (4 - (length & 3)) & 3;
}

/** RFC 7143 §11.2.1: TotalAHSLength (words) and DataSegmentLength as written in a BHS. */
export function frameLengths(bhs: Buffer, at = 0): { ahsBytes: number; dataBytes: number } {
  return { ahsBytes: bhs[at + 4] * 4, dataBytes: bhs.readUIntBE(at + 5, 3) };
}

// ---- digests (RFC 7143 §13.1) ----

/**
 * CRC-32C as iSCSI puts it on the wire. RFC 7143 §13.1 defines the digest bit by bit ("the CRC bits
 * are transmitted ... x^31 first" after the reflections); in bytes this is the usual reflected
 * CRC-32C value stored least significant byte first, which is what Linux and libiscsi send and what
 * the RFC 3720 Appendix B.4 vectors show (32 zero bytes → aa 36 91 8a).
 */
export function digestOf(parts: readonly Uint8Array[]): number {
  let crc = 0;
  for (const part of parts) crc = crc32c(part, crc);
  return crc;
}

export function writeDigest(target: Buffer, at: number, digest: number): void {
  target.writeUInt32LE(digest >>> 0, at);
}

export function readDigest(source: Buffer, at: number): number {
  return source.readUInt32LE(at);
}

// ---- AHS ----

/** Encodes AHS entries: 2-byte length (of the specific bytes + reserved byte), type, reserved, data, padding. */
export function encodeAhs(segments: readonly AdditionalHeaderSegment[]): Buffer {
  const parts: Buffer[] = [];
  for (const segment of segments) {
    // RFC 7143 §11.2.2.2: AHSLength counts the type-specific bytes, "excluding the type and length
    // fields" but including the reserved byte that opens the Extended CDB and Bidi AHS.
    const header = Buffer.alloc(3);
    header.writeUInt16BE(segment.data.length + 1, 0);
    header[2] = segment.type;
    const body = Buffer.alloc(1 + segment.data.length + paddingBytes(3 + 1 + segment.data.length));
    segment.data.copy(body, 1);
    parts.push(header, body);
  }
  const ahs = Buffer.concat(parts);
  if (ahs.length > AHS_BYTES_MAX) throw new RangeError(`AHS of ${ahs.length} bytes exceeds ${AHS_BYTES_MAX}`);
  return ahs;
}

/** Decodes AHS bytes (a multiple of 4 long); throws PduFormatError when an entry overruns. */
export function decodeAhs(ahs: Buffer): AdditionalHeaderSegment[] {
  const segments: AdditionalHeaderSegment[] = [];
  let at = 0;
  while (at + 3 <= ahs.length) {
    const length = ahs.readUInt16BE(at);
    const type = ahs[at + 2];
    if (length === 0 || at + 3 + length > ahs.length) {
      throw new PduFormatError("InvalidField", `AHS entry at ${at} of length ${length} overruns ${ahs.length} AHS bytes`);
    }
    segments.push({ type, data: ahs.subarray(at + 4, at + 3 + length) });
    at += 3 + length + paddingBytes(3 + length);
  }
  return segments;
}

// ---- LUN helpers (SAM-5 §4.7) ----

/** The 8-byte LUN field for a flat LUN (peripheral method below 256, flat method above). */
export function encodeLun(lun: number): bigint {
  if (lun < 256) return BigInt(lun) << 48n;
  return (BigInt(0x40 | (lun >> 8)) << 56n) | (BigInt(lun & 0xff) << 48n);
}

/**
 * The flat LUN number of an 8-byte LUN field, or undefined when it uses an addressing method we do
 * not serve (only single-level peripheral and flat space addressing; SAM-5 §4.7.7).
 */
export function decodeLun(field: bigint): number | undefined {
  const first = Number((field >> 56n) & 0xffn);
  const second = Number((field >> 48n) & 0xffn);
  if ((field & 0xffff_ffff_ffffn) !== 0n) return undefined;
  const method = first >> 6;
  if (method === 0 && (first & 0x3f) === 0) return second;
  if (method === 1) return ((first & 0x3f) << 8) | second;
  return undefined;
}

// ---- BHS encode ----

/** Encodes the 48-byte BHS of `pdu` (TotalAHSLength and DataSegmentLength from its ahs and data). */
export function encodeBhs(pdu: IscsiPdu, ahsBytes: number): Buffer {
  const bhs = Buffer.alloc(BHS_BYTES);
  const dataBytes = pdu.data?.length ?? 0;
  if (dataBytes > DATA_SEGMENT_BYTES_LIMIT) throw new RangeError(`data segment of ${dataBytes} bytes exceeds 2^24-1`);
  bhs[0] = opcodeOf(pdu);
  bhs[4] = ahsBytes / 4;
  bhs.writeUIntBE(dataBytes, 5, 3);
  switch (pdu.kind) {
    case "nop-out":
      bhs[0] |= flag(pdu.immediate, IMMEDIATE_BIT);
      bhs[1] = F_BIT;
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.targetTransferTag, 20);
      bhs.writeUInt32BE(pdu.cmdSN, 24);
      bhs.writeUInt32BE(pdu.expStatSN, 28);
      break;
    case "scsi-command":
      bhs[0] |= flag(pdu.immediate, IMMEDIATE_BIT);
      bhs[1] = flag(pdu.final, F_BIT) | flag(pdu.read, 0x40) | flag(pdu.write, 0x20) | (pdu.taskAttribute & 0x07);
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.expectedDataTransferLength, 20);
      bhs.writeUInt32BE(pdu.cmdSN, 24);
      bhs.writeUInt32BE(pdu.expStatSN, 28);
      pdu.cdb.copy(bhs, 32, 0, Math.min(16, pdu.cdb.length));
      break;
    case "task-management-request":
      bhs[0] |= flag(pdu.immediate, IMMEDIATE_BIT);
      bhs[1] = F_BIT | (pdu.function & 0x7f);
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.referencedTaskTag, 20);
      bhs.writeUInt32BE(pdu.cmdSN, 24);
      bhs.writeUInt32BE(pdu.expStatSN, 28);
      bhs.writeUInt32BE(pdu.refCmdSN, 32);
      bhs.writeUInt32BE(pdu.expDataSN, 36);
      break;
    case "login-request":
      // RFC 7143 §11.12: a Login Request always has the I bit set.
      bhs[0] |= IMMEDIATE_BIT;
      bhs[1] = flag(pdu.transit, F_BIT) | flag(pdu.continue, C_BIT) | ((pdu.currentStage & 3) << 2) | (pdu.nextStage & 3);
      bhs[2] = pdu.versionMax;
      bhs[3] = pdu.versionMin;
      pdu.isid.copy(bhs, 8, 0, 6);
      bhs.writeUInt16BE(pdu.tsih, 14);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt16BE(pdu.cid, 20);
      bhs.writeUInt32BE(pdu.cmdSN, 24);
      bhs.writeUInt32BE(pdu.expStatSN, 28);
      break;
    case "text-request":
      bhs[0] |= flag(pdu.immediate, IMMEDIATE_BIT);
      bhs[1] = flag(pdu.final, F_BIT) | flag(pdu.continue, C_BIT);
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.targetTransferTag, 20);
      bhs.writeUInt32BE(pdu.cmdSN, 24);
      bhs.writeUInt32BE(pdu.expStatSN, 28);
      break;
    case "data-out":
      bhs[1] = flag(pdu.final, F_BIT);
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.targetTransferTag, 20);
      bhs.writeUInt32BE(pdu.expStatSN, 28);
      bhs.writeUInt32BE(pdu.dataSN, 36);
      bhs.writeUInt32BE(pdu.bufferOffset, 40);
      break;
    case "logout-request":
      bhs[0] |= flag(pdu.immediate, IMMEDIATE_BIT);
      bhs[1] = F_BIT | (pdu.reasonCode & 0x7f);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt16BE(pdu.cid, 20);
      bhs.writeUInt32BE(pdu.cmdSN, 24);
      bhs.writeUInt32BE(pdu.expStatSN, 28);
      break;
    case "snack-request":
      bhs[1] = F_BIT | (pdu.type & 0x0f);
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.targetTransferTag, 20);
      bhs.writeUInt32BE(pdu.expStatSN, 28);
      bhs.writeUInt32BE(pdu.begRun, 40);
      bhs.writeUInt32BE(pdu.runLength, 44);
      break;
    case "nop-in":
      bhs[1] = F_BIT;
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.targetTransferTag, 20);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      break;
    case "scsi-response":
      bhs[1] = F_BIT | flag(pdu.bidiOverflow, 0x10) | flag(pdu.bidiUnderflow, 0x08) | flag(pdu.overflow, 0x04) | flag(pdu.underflow, 0x02);
      bhs[2] = pdu.response;
      bhs[3] = pdu.status;
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.snackTag, 20);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      bhs.writeUInt32BE(pdu.expDataSN, 36);
      bhs.writeUInt32BE(pdu.bidiReadResidualCount, 40);
      bhs.writeUInt32BE(pdu.residualCount, 44);
      break;
    case "task-management-response":
      bhs[1] = F_BIT;
      bhs[2] = pdu.response;
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      break;
    case "login-response":
      bhs[1] = flag(pdu.transit, F_BIT) | flag(pdu.continue, C_BIT) | ((pdu.currentStage & 3) << 2) | (pdu.nextStage & 3);
      bhs[2] = pdu.versionMax;
      bhs[3] = pdu.versionActive;
      pdu.isid.copy(bhs, 8, 0, 6);
      bhs.writeUInt16BE(pdu.tsih, 14);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      bhs[36] = pdu.statusClass;
      bhs[37] = pdu.statusDetail;
      break;
    case "text-response":
      bhs[1] = flag(pdu.final, F_BIT) | flag(pdu.continue, C_BIT);
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.targetTransferTag, 20);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      break;
    case "data-in":
      bhs[1] = flag(pdu.final, F_BIT) | flag(pdu.acknowledge, 0x40) | flag(pdu.overflow, 0x04) | flag(pdu.underflow, 0x02)
        | flag(pdu.statusPresent, 0x01);
      bhs[3] = pdu.statusPresent ? pdu.status : 0;
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.targetTransferTag, 20);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      bhs.writeUInt32BE(pdu.dataSN, 36);
      bhs.writeUInt32BE(pdu.bufferOffset, 40);
      bhs.writeUInt32BE(pdu.residualCount, 44);
      break;
    case "logout-response":
      bhs[1] = F_BIT;
      bhs[2] = pdu.response;
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      bhs.writeUInt16BE(pdu.time2WaitSeconds, 40);
      bhs.writeUInt16BE(pdu.time2RetainSeconds, 42);
      break;
    case "r2t":
      bhs[1] = F_BIT;
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(pdu.initiatorTaskTag, 16);
      bhs.writeUInt32BE(pdu.targetTransferTag, 20);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      bhs.writeUInt32BE(pdu.r2tSN, 36);
      bhs.writeUInt32BE(pdu.bufferOffset, 40);
      bhs.writeUInt32BE(pdu.desiredDataTransferLength, 44);
      break;
    case "async-message":
      bhs[1] = F_BIT;
      bhs.writeBigUInt64BE(pdu.lun, 8);
      bhs.writeUInt32BE(RESERVED_TAG, 16);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      bhs[36] = pdu.asyncEvent;
      bhs[37] = pdu.asyncVCode;
      bhs.writeUInt16BE(pdu.parameter1, 38);
      bhs.writeUInt16BE(pdu.parameter2, 40);
      bhs.writeUInt16BE(pdu.parameter3, 42);
      break;
    case "reject":
      bhs[1] = F_BIT;
      bhs[2] = pdu.reason;
      bhs.writeUInt32BE(RESERVED_TAG, 16);
      writeSequenceNumbers(bhs, pdu.statSN, pdu.expCmdSN, pdu.maxCmdSN);
      bhs.writeUInt32BE(pdu.dataSN, 36);
      break;
  }
  return bhs;
}

function writeSequenceNumbers(bhs: Buffer, statSN: number, expCmdSN: number, maxCmdSN: number): void {
  bhs.writeUInt32BE(statSN >>> 0, 24);
  bhs.writeUInt32BE(expCmdSN >>> 0, 28);
  bhs.writeUInt32BE(maxCmdSN >>> 0, 32);
}

// ---- BHS decode ----

/**
 * Decodes a BHS (48 bytes at `bhs[0]`) with its AHS and data segment. Throws PduFormatError for an
 * opcode outside RFC 7143 §11.2.1.2 or an AHS that does not parse. Fields are not validated beyond
 * that: the session checks them against its state.
 */
export function decodePdu(bhs: Buffer, ahsBytes: Buffer = Buffer.alloc(0), data: Buffer = Buffer.alloc(0)): IscsiPdu {
  const opcode = bhs[0] & 0x3f;
  const immediate = bit(bhs[0], IMMEDIATE_BIT);
  const b1 = bhs[1];
  const lun = bhs.readBigUInt64BE(8);
  const tag = bhs.readUInt32BE(16);
  const word20 = bhs.readUInt32BE(20);
  const word24 = bhs.readUInt32BE(24);
  const word28 = bhs.readUInt32BE(28);
  const word32 = bhs.readUInt32BE(32);
  const word36 = bhs.readUInt32BE(36);
  const word40 = bhs.readUInt32BE(40);
  const word44 = bhs.readUInt32BE(44);
  const ahs = ahsBytes.length > 0 ? decodeAhs(ahsBytes) : undefined;
  const base = { ...(ahs === undefined ? {} : { ahs }), data };
  switch (opcode) {
    case OPCODE.NOP_OUT:
      return { kind: "nop-out", immediate, lun, initiatorTaskTag: tag, targetTransferTag: word20, cmdSN: word24, expStatSN: word28, ...base };
    case OPCODE.SCSI_COMMAND:
      return {
        kind: "scsi-command", immediate, final: bit(b1, F_BIT), read: bit(b1, 0x40), write: bit(b1, 0x20), taskAttribute: b1 & 0x07, lun,
        initiatorTaskTag: tag, expectedDataTransferLength: word20, cmdSN: word24, expStatSN: word28, cdb: Buffer.from(bhs.subarray(32, 48)),
        ...base,
      };
    case OPCODE.TASK_MANAGEMENT_REQUEST:
      return {
        kind: "task-management-request", immediate, function: b1 & 0x7f, lun, initiatorTaskTag: tag, referencedTaskTag: word20,
        cmdSN: word24, expStatSN: word28, refCmdSN: word32, expDataSN: word36, ...base,
      };
    case OPCODE.LOGIN_REQUEST:
      return {
        kind: "login-request", transit: bit(b1, F_BIT), continue: bit(b1, C_BIT), currentStage: (b1 >> 2) & 3, nextStage: b1 & 3,
        versionMax: bhs[2], versionMin: bhs[3], isid: Buffer.from(bhs.subarray(8, 14)), tsih: bhs.readUInt16BE(14), initiatorTaskTag: tag,
        cid: bhs.readUInt16BE(20), cmdSN: word24, expStatSN: word28, ...base,
      };
    case OPCODE.TEXT_REQUEST:
      return {
        kind: "text-request", immediate, final: bit(b1, F_BIT), continue: bit(b1, C_BIT), lun, initiatorTaskTag: tag,
        targetTransferTag: word20, cmdSN: word24, expStatSN: word28, ...base,
      };
    case OPCODE.SCSI_DATA_OUT:
      return {
        kind: "data-out", final: bit(b1, F_BIT), lun, initiatorTaskTag: tag, targetTransferTag: word20, expStatSN: word28, dataSN: word36,
        bufferOffset: word40, ...base,
      };
    case OPCODE.LOGOUT_REQUEST:
      return {
        kind: "logout-request", immediate, reasonCode: b1 & 0x7f, initiatorTaskTag: tag, cid: bhs.readUInt16BE(20), cmdSN: word24,
        expStatSN: word28, ...base,
      };
    case OPCODE.SNACK_REQUEST:
      return {
        kind: "snack-request", type: b1 & 0x0f, lun, initiatorTaskTag: tag, targetTransferTag: word20, expStatSN: word28, begRun: word40,
        runLength: word44, ...base,
      };
    case OPCODE.NOP_IN:
      return {
        kind: "nop-in", lun, initiatorTaskTag: tag, targetTransferTag: word20, statSN: word24, expCmdSN: word28, maxCmdSN: word32, ...base,
      };
    case OPCODE.SCSI_RESPONSE:
      return {
        kind: "scsi-response", bidiOverflow: bit(b1, 0x10), bidiUnderflow: bit(b1, 0x08), overflow: bit(b1, 0x04), underflow: bit(b1, 0x02),
        response: bhs[2], status: bhs[3], initiatorTaskTag: tag, snackTag: word20, statSN: word24, expCmdSN: word28, maxCmdSN: word32,
        expDataSN: word36, bidiReadResidualCount: word40, residualCount: word44, ...base,
      };
    case OPCODE.TASK_MANAGEMENT_RESPONSE:
      return {
        kind: "task-management-response", response: bhs[2], initiatorTaskTag: tag, statSN: word24, expCmdSN: word28, maxCmdSN: word32,
        ...base,
      };
    case OPCODE.LOGIN_RESPONSE:
      return {
        kind: "login-response", transit: bit(b1, F_BIT), continue: bit(b1, C_BIT), currentStage: (b1 >> 2) & 3, nextStage: b1 & 3,
        versionMax: bhs[2], versionActive: bhs[3], isid: Buffer.from(bhs.subarray(8, 14)), tsih: bhs.readUInt16BE(14),
        initiatorTaskTag: tag, statSN: word24, expCmdSN: word28, maxCmdSN: word32, statusClass: bhs[36], statusDetail: bhs[37], ...base,
      };
    case OPCODE.TEXT_RESPONSE:
      return {
        kind: "text-response", final: bit(b1, F_BIT), continue: bit(b1, C_BIT), lun, initiatorTaskTag: tag, targetTransferTag: word20,
        statSN: word24, expCmdSN: word28, maxCmdSN: word32, ...base,
      };
    case OPCODE.SCSI_DATA_IN:
      return {
        kind: "data-in", final: bit(b1, F_BIT), acknowledge: bit(b1, 0x40), overflow: bit(b1, 0x04), underflow: bit(b1, 0x02),
        statusPresent: bit(b1, 0x01), status: bhs[3], lun, initiatorTaskTag: tag, targetTransferTag: word20, statSN: word24,
        expCmdSN: word28, maxCmdSN: word32, dataSN: word36, bufferOffset: word40, residualCount: word44, ...base,
      };
    case OPCODE.LOGOUT_RESPONSE:
      return {
        kind: "logout-response", response: bhs[2], initiatorTaskTag: tag, statSN: word24, expCmdSN: word28, maxCmdSN: word32,
        time2WaitSeconds: bhs.readUInt16BE(40), time2RetainSeconds: bhs.readUInt16BE(42), ...base,
      };
    case OPCODE.R2T:
      return {
        kind: "r2t", lun, initiatorTaskTag: tag, targetTransferTag: word20, statSN: word24, expCmdSN: word28, maxCmdSN: word32,
        r2tSN: word36, bufferOffset: word40, desiredDataTransferLength: word44, ...base,
      };
    case OPCODE.ASYNC_MESSAGE:
      return {
        kind: "async-message", lun, statSN: word24, expCmdSN: word28, maxCmdSN: word32, asyncEvent: bhs[36], asyncVCode: bhs[37],
        parameter1: bhs.readUInt16BE(38), parameter2: bhs.readUInt16BE(40), parameter3: bhs.readUInt16BE(42), ...base,
      };
    case OPCODE.REJECT:
      return { kind: "reject", reason: bhs[2], statSN: word24, expCmdSN: word28, maxCmdSN: word32, dataSN: word36, ...base };
    default:
      throw new PduFormatError("UnknownOpcode", `unknown opcode 0x${opcode.toString(16)}`);
  }
}

// ---- framing ----

export interface DigestSettings {
  header: boolean;
  data: boolean;
}

export const NO_DIGESTS: DigestSettings = { header: false, data: false };

/**
 * The wire bytes of one PDU as a list of buffers (for one corked run of writes): BHS + AHS
 * [+ HeaderDigest], then the data segment, then padding [+ DataDigest]. The data segment is not
 * copied.
 */
export function encodePdu(pdu: IscsiPdu, digests: DigestSettings = NO_DIGESTS): Buffer[] {
  const ahs = pdu.ahs !== undefined && pdu.ahs.length > 0 ? encodeAhs(pdu.ahs) : undefined;
  const ahsBytes = ahs?.length ?? 0;
  const headerBytes = BHS_BYTES + ahsBytes;
  const header = Buffer.alloc(headerBytes + (digests.header ? DIGEST_BYTES : 0));
  encodeBhs(pdu, ahsBytes).copy(header, 0);
  ahs?.copy(header, BHS_BYTES);
  if (digests.header) writeDigest(header, headerBytes, digestOf([header.subarray(0, headerBytes)]));
  const data = pdu.data;
  if (data === undefined || data.length === 0) return [header];
  const padding = paddingBytes(data.length);
  const trailer = Buffer.alloc(padding + (digests.data ? DIGEST_BYTES : 0));
  if (digests.data) writeDigest(trailer, padding, digestOf([data, trailer.subarray(0, padding)]));
  return trailer.length > 0 ? [header, data, trailer] : [header, data];
}

/** Total wire length of a PDU whose BHS is `bhs`, with the given digests. */
export function wireLength(bhs: Buffer, digests: DigestSettings, at = 0): number {
  const { ahsBytes, dataBytes } = frameLengths(bhs, at);
  const dataWire = dataBytes === 0 ? 0 : dataBytes + paddingBytes(dataBytes) + (digests.data ? DIGEST_BYTES : 0);
  return BHS_BYTES + ahsBytes + (digests.header ? DIGEST_BYTES : 0) + dataWire;
}

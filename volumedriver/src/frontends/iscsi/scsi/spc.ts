// SCSI Primary Commands (SPC-5) for our logical units: TEST UNIT READY, INQUIRY with its VPD pages,
// REPORT LUNS, REQUEST SENSE, MODE SENSE/SELECT (caching, control, informational exceptions),
// REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS, RESERVE/RELEASE (SPC-2 §7.21,
// §7.16) and the PERSISTENT RESERVE IN/OUT entry points. Handlers validate their CDB, return
// parameter data cut to the allocation length, and throw ScsiError for CHECK CONDITION.
import { crc32c } from "../../../../../alba/src/codec/crc32c.ts";
import { allocationLength, OPCODE } from "./cdb.ts";
import type { CommandDescriptor } from "./command-table.ts";
import {
  type CommandContext, fitAllocation, LOGICAL_BLOCK_SIZE_BYTES, LOGICAL_BLOCKS_PER_CLUSTER, type LogicalUnit,
} from "./logical-unit.ts";
import { PROTOCOL_ID_ISCSI } from "./persistent-reservations.ts";
import { buildFixedSense, invalidCdbField, invalidParameterField, SENSE_TABLE, ScsiError, senseFor } from "./sense-table.ts";

/** T10 vendor identification (8 ASCII bytes) and product identification (16), SPC-5 §6.7.2. */
export const T10_VENDOR_ID = "OVS     ";
export const PRODUCT_ID = "vDisk           ";
export const PRODUCT_REVISION = "0001";
/**
 * IEEE company ID in the NAA IEEE Registered Extended designator. We hold no OUI; zero keeps the
 * designator well formed and it stays unique through the per-vDisk vendor-specific parts.
 */
export const NAA_IEEE_COMPANY_ID = 0x000000;

/**
 * VERSION 06h claims SPC-4: SPC-5 would be 07h, but the libiscsi conformance suite
 * (test_inquiry_standard) accepts only 04h-06h. The version descriptors also name SPC-5/SBC-4.
 */
export const INQUIRY_VERSION = 0x06;
/** SAM-5, iSCSI, SPC-5, SPC-4, SBC-4, SBC-3 (SPC-5 §6.7.2, Table 150 codes). */
const VERSION_DESCRIPTORS = [0x00a0, 0x0960, 0x05c0, 0x0460, 0x0600, 0x04c0];

/** VPD pages we serve, in ascending order (SPC-5 §7.7.15 requires the list sorted). */
export const VPD_PAGE = {
  SUPPORTED_PAGES: 0x00,
  UNIT_SERIAL_NUMBER: 0x80,
  DEVICE_IDENTIFICATION: 0x83,
  BLOCK_LIMITS: 0xb0,
  BLOCK_DEVICE_CHARACTERISTICS: 0xb1,
  LOGICAL_BLOCK_PROVISIONING: 0xb2,
} as const;
const SUPPORTED_VPD_PAGES = Object.values(VPD_PAGE);

// ---- TEST UNIT READY (SPC-5 §6.47) ---------------------------------------------------------

export async function testUnitReady(): Promise<undefined> {
  return undefined; // a vDisk is always ready while it is a LUN; a closed one fails its I/O
}

// ---- INQUIRY (SPC-5 §6.7) -------------------------------------------------------------------

/** Standard INQUIRY data (SPC-5 §6.7.2, Table 148), 96 bytes. */
export function standardInquiryData(peripheral: number): Buffer {
  const data = Buffer.alloc(96);
  data[0] = peripheral; // PERIPHERAL QUALIFIER 000b, DEVICE TYPE 00h (direct access block)
  data[2] = INQUIRY_VERSION;
  data[3] = 0x10 | 0x02; // HISUP = 1, RESPONSE DATA FORMAT = 2
  data[4] = data.length - 5; // ADDITIONAL LENGTH
  data[5] = 0x00; // TPGS = 00b: no ALUA, every path is active/optimized
  data[7] = 0x02; // CMDQUE = 1
  data.write(T10_VENDOR_ID, 8, "ascii");
  data.write(PRODUCT_ID, 16, "ascii");
  data.write(PRODUCT_REVISION, 32, "ascii");
  VERSION_DESCRIPTORS.forEach((descriptor, index) => data.writeUInt16BE(descriptor, 58 + 2 * index));
  return data;
}

/** PERIPHERAL QUALIFIER 011b / DEVICE TYPE 1Fh: no logical unit at this LUN (SPC-5 §6.7.2). */
export const PERIPHERAL_NOT_SUPPORTED = 0x7f;

export async function inquiry(context: CommandContext): Promise<Buffer> {
  const cdb = context.command.cdb;
  const evpd = (cdb[1] & 0x01) !== 0;
  if ((cdb[1] & 0x02) !== 0) throw invalidCdbField(1, 1); // CMDDT is obsolete
  const pageCode = cdb[2];
  const allocation = allocationLength(cdb);
  if (!evpd) {
    if (pageCode !== 0) throw invalidCdbField(2);
    return fitAllocation(standardInquiryData(0x00), allocation);
  }
  return fitAllocation(vpdPage(context, pageCode), allocation);
}

function vpdPage(context: CommandContext, pageCode: number): Buffer {
  const lu = context.lu;
  switch (pageCode) {
    case VPD_PAGE.SUPPORTED_PAGES: return vpd(pageCode, Buffer.from(SUPPORTED_VPD_PAGES));
    case VPD_PAGE.UNIT_SERIAL_NUMBER: return vpd(pageCode, Buffer.from(lu.config.serialNumber, "ascii"));
    case VPD_PAGE.DEVICE_IDENTIFICATION: return vpd(pageCode, deviceIdentification(context));
    case VPD_PAGE.BLOCK_LIMITS: return vpd(pageCode, blockLimits(lu));
    case VPD_PAGE.BLOCK_DEVICE_CHARACTERISTICS: return vpd(pageCode, blockDeviceCharacteristics());
    case VPD_PAGE.LOGICAL_BLOCK_PROVISIONING: return vpd(pageCode, logicalBlockProvisioning());
    default: throw invalidCdbField(2);
  }
}

/** A VPD page: header (device type, page code, PAGE LENGTH) and body (SPC-5 §7.7.1). */
function vpd(pageCode: number, body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header[1] = pageCode;
  header.writeUInt16BE(body.length, 2);
  return Buffer.concat([header, body]);
}

/** One designation descriptor (SPC-5 §7.7.6.1, Table 504). */
function designator(options: { protocolId?: number; codeSet: number; association: number; type: number; value: Buffer }): Buffer {
  const header = Buffer.alloc(4);
  const piv = options.protocolId !== undefined;
  header[0] = ((options.protocolId ?? 0) << 4) | options.codeSet;
  header[1] = (piv ? 0x80 : 0x00) | (options.association << 4) | options.type;
  header[3] = options.value.length;
  return Buffer.concat([header, options.value]);
}

/** A SCSI name string: UTF-8, null-terminated, padded to a multiple of 4 (SPC-5 §7.7.6.11). */
function scsiNameString(name: string): Buffer {
  const bytes = Buffer.from(name, "utf8");
  const padded = Buffer.alloc(Math.ceil((bytes.length + 1) / 4) * 4);
  bytes.copy(padded);
  return padded;
}

/** The 16-byte NAA IEEE Registered Extended identifier (SPC-5 §7.7.6.6.5). */
export function naaIdentifier(lu: LogicalUnit): Buffer {
  const value = Buffer.alloc(16);
  // NAA 6h | IEEE COMPANY ID (24 bits) | VENDOR SPECIFIC IDENTIFIER (36 bits) | EXTENSION (64 bits)
  const vendorSpecific = BigInt(crc32c(Buffer.from(lu.config.serialNumber, "utf8")));
  const high = (6n << 60n) | (BigInt(NAA_IEEE_COMPANY_ID) << 36n) | vendorSpecific;
  value.writeBigUInt64BE(high, 0);
  value.writeBigUInt64BE(BigInt(`0x${lu.config.naaIdentifierHex}`) & 0xffffffffffffffffn, 8);
  return value;
}

/** VPD 83h Device Identification (SPC-5 §7.7.6): NAA, T10 vendor ID, target port, relative port, target. */
function deviceIdentification(context: CommandContext): Buffer {
  const nexus = context.command.nexus;
  const relativePort = Buffer.alloc(4);
  relativePort.writeUInt16BE(nexus.relativeTargetPortId, 2);
  const targetName = nexus.targetPort.replace(/,t,0x[0-9a-f]+$/i, "");
  return Buffer.concat([
    // Association 0 (logical unit): binary NAA, and the ASCII T10 vendor ID based designator.
    designator({ codeSet: 1, association: 0, type: 3, value: naaIdentifier(context.lu) }),
    designator({ codeSet: 2, association: 0, type: 1, value: Buffer.from(`${T10_VENDOR_ID}${context.lu.config.serialNumber}`, "ascii") }),
    // Association 1 (target port): the iSCSI target port name and its relative target port identifier.
    designator({ protocolId: PROTOCOL_ID_ISCSI, codeSet: 3, association: 1, type: 8, value: scsiNameString(nexus.targetPort) }),
    designator({ protocolId: PROTOCOL_ID_ISCSI, codeSet: 1, association: 1, type: 4, value: relativePort }),
    // Association 2 (target device): the target's iSCSI name.
    designator({ protocolId: PROTOCOL_ID_ISCSI, codeSet: 3, association: 2, type: 8, value: scsiNameString(targetName) }),
  ]);
}

/** VPD B0h Block Limits (SBC-4 §6.6.4, Table 256), PAGE LENGTH 3Ch. */
function blockLimits(lu: LogicalUnit): Buffer {
  const limits = lu.limits;
  const body = Buffer.alloc(0x3c);
  body[0] = 0x01; // WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is an error
  body[1] = limits.maxCompareAndWriteLengthBlocks;
  body.writeUInt16BE(LOGICAL_BLOCKS_PER_CLUSTER, 2); // OPTIMAL TRANSFER LENGTH GRANULARITY
  body.writeUInt32BE(limits.maxTransferLengthBlocks, 4);
  body.writeUInt32BE(limits.optimalTransferLengthBlocks, 8);
  body.writeUInt32BE(0, 12); // MAXIMUM PREFETCH LENGTH: PRE-FETCH is not supported
  body.writeUInt32BE(limits.maxUnmapLbaCountBlocks, 16);
  body.writeUInt32BE(limits.maxUnmapBlockDescriptorCount, 20);
  body.writeUInt32BE(LOGICAL_BLOCKS_PER_CLUSTER, 24); // OPTIMAL UNMAP GRANULARITY
  body.writeUInt32BE(0x80000000, 28); // UGAVALID = 1, UNMAP GRANULARITY ALIGNMENT 0
  body.writeBigUInt64BE(BigInt(limits.maxWriteSameLengthBlocks), 32);
  return body;
}

/** VPD B1h Block Device Characteristics (SBC-4 §6.6.2): non-rotating medium. */
function blockDeviceCharacteristics(): Buffer {
  const body = Buffer.alloc(0x3c);
  body.writeUInt16BE(0x0001, 0); // MEDIUM ROTATION RATE: non-rotating
  return body;
}

/** VPD B2h Logical Block Provisioning (SBC-4 §6.6.5): thin, UNMAP and WRITE SAME (UNMAP), zeros after unmap. */
function logicalBlockProvisioning(): Buffer {
  const body = Buffer.alloc(4);
  body[0] = 0; // THRESHOLD EXPONENT: no thresholds
  // LBPU, LBPWS, LBPWS10, LBPRZ = 001b (unmapped blocks read as zeros); ANC_SUP = 0; DP = 0.
  body[1] = 0x80 | 0x40 | 0x20 | (0x1 << 2);
  body[2] = 0x02; // PROVISIONING TYPE 010b: thin provisioned
  return body;
}

// ---- REPORT LUNS (SPC-5 §6.33) --------------------------------------------------------------

/** A LUN in the single level flat or peripheral address method (SAM-5 §4.7.7). */
function encodeLun(lun: number): Buffer {
  const entry = Buffer.alloc(8);
  if (lun < 256) {
    entry[1] = lun;
  } else {
    entry[0] = 0x40 | (lun >> 8);
    entry[1] = lun & 0xff;
  }
  return entry;
}

export function reportLunsData(cdb: Buffer, luns: readonly number[]): Buffer {
  const selectReport = cdb[2];
  // 00h/02h: all logical units; 01h: well known only (we have none); 10h-12h: administrative, none.
  let listed: readonly number[];
  if (selectReport === 0x00 || selectReport === 0x02) listed = [...luns].sort((a, b) => a - b);
  else if (selectReport === 0x01 || (selectReport >= 0x10 && selectReport <= 0x12)) listed = [];
  else throw invalidCdbField(2);
  const header = Buffer.alloc(8);
  header.writeUInt32BE(8 * listed.length, 0);
  return fitAllocation(Buffer.concat([header, ...listed.map(encodeLun)]), allocationLength(cdb));
}

export async function reportLuns(context: CommandContext): Promise<Buffer> {
  return reportLunsData(context.command.cdb, context.target.luns());
}

// ---- REQUEST SENSE (SPC-5 §6.39) ------------------------------------------------------------

/** Returns a pending unit attention as sense data (and clears it), else NO SENSE. */
export async function requestSense(context: CommandContext): Promise<Buffer> {
  const cdb = context.command.cdb;
  if ((cdb[1] & 0x01) !== 0) throw invalidCdbField(1, 0); // DESC: descriptor format is not supported
  const pending = context.lu.unitAttentions.take(context.nexusKey);
  const sense = pending !== undefined ? senseFor(pending) : buildFixedSense({ key: 0, asc: 0, ascq: 0 });
  return fitAllocation(sense, allocationLength(cdb));
}

/** REQUEST SENSE to a LUN we do not serve: LOGICAL UNIT NOT SUPPORTED as parameter data. */
export function requestSenseWithoutUnit(cdb: Buffer): Buffer {
  return fitAllocation(buildFixedSense(SENSE_TABLE.LogicalUnitNotSupported), allocationLength(cdb));
}

// ---- MODE SENSE / MODE SELECT (SPC-5 §6.14, §6.15, §6.12, §6.13) -------------------------------

export const MODE_PAGE = { CACHING: 0x08, CONTROL: 0x0a, INFORMATIONAL_EXCEPTIONS: 0x1c, ALL: 0x3f } as const;
const PAGE_CONTROL = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;

/** One mode page for a page control: current, changeable (a mask) or default values. */
function modePage(lu: LogicalUnit, pageCode: number, pageControl: number): Buffer {
  const changeable = pageControl === PAGE_CONTROL.CHANGEABLE;
  const values = pageControl === PAGE_CONTROL.DEFAULT ? { writeCacheEnabled: true, softwareWriteProtect: false } : lu.mode;
  switch (pageCode) {
    case MODE_PAGE.CACHING: {
      // SBC-4 §6.5.5 Caching mode page, PAGE LENGTH 12h: only WCE is changeable.
      const page = Buffer.alloc(20);
      page[0] = MODE_PAGE.CACHING;
      page[1] = 0x12;
      page[2] = changeable ? 0x04 : values.writeCacheEnabled ? 0x04 : 0x00;
      return page;
    }
    case MODE_PAGE.CONTROL: {
      // SPC-5 §7.5.8 Control mode page, PAGE LENGTH 0Ah: only SWP is changeable. TST 000b (one task
      // set per nexus), QUEUE ALGORITHM MODIFIER 1 (unrestricted reordering), D_SENSE 0.
      const page = Buffer.alloc(12);
      page[0] = MODE_PAGE.CONTROL;
      page[1] = 0x0a;
      if (changeable) {
        page[4] = 0x08;
      } else {
        page[3] = 0x10;
        page[4] = values.softwareWriteProtect ? 0x08 : 0x00;
        page.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
      }
      return page;
    }
    case MODE_PAGE.INFORMATIONAL_EXCEPTIONS: {
      // SPC-5 §7.5.13 Informational Exceptions Control, PAGE LENGTH 0Ah: DEXCPT = 1 (we report none).
      const page = Buffer.alloc(12);
      page[0] = MODE_PAGE.INFORMATIONAL_EXCEPTIONS;
      page[1] = 0x0a;
      if (!changeable) page[2] = 0x08;
      return page;
    }
    default:
      throw invalidCdbField(2);
  }
}

const ALL_MODE_PAGES = [MODE_PAGE.CACHING, MODE_PAGE.CONTROL, MODE_PAGE.INFORMATIONAL_EXCEPTIONS];

function modeSense(context: CommandContext, tenByte: boolean): Buffer {
  const cdb = context.command.cdb;
  const lu = context.lu;
  const disableBlockDescriptors = (cdb[1] & 0x08) !== 0;
  const longLba = tenByte && (cdb[1] & 0x10) !== 0;
  const pageControl = cdb[2] >> 6;
  const pageCode = cdb[2] & 0x3f;
  const subpageCode = cdb[3];
  if (pageControl === PAGE_CONTROL.SAVED) throw new ScsiError("SavingParametersNotSupported");
  // Subpage FFh with page 3Fh asks for all subpages too; we have none beyond subpage 0.
  if (subpageCode !== 0 && !(subpageCode === 0xff && pageCode === MODE_PAGE.ALL)) throw invalidCdbField(3);
  const pages = pageCode === MODE_PAGE.ALL
    ? ALL_MODE_PAGES.map((code) => modePage(lu, code, pageControl))
    : [modePage(lu, pageCode, pageControl)];
  const blockDescriptor = disableBlockDescriptors ? Buffer.alloc(0) : modeBlockDescriptor(lu, longLba, pageControl);
  // SBC-4 §6.4.1 DEVICE-SPECIFIC PARAMETER: WP and DPOFUA (we accept DPO and FUA).
  const deviceSpecific = (lu.writeProtected && pageControl !== PAGE_CONTROL.CHANGEABLE ? 0x80 : 0x00) | 0x10;
  const header = Buffer.alloc(tenByte ? 8 : 4);
  const totalLength = header.length + blockDescriptor.length + pages.reduce((sum, page) => sum + page.length, 0);
  if (tenByte) {
    header.writeUInt16BE(totalLength - 2, 0);
    header[3] = deviceSpecific;
    header[4] = longLba && blockDescriptor.length > 0 ? 0x01 : 0x00;
    header.writeUInt16BE(blockDescriptor.length, 6);
  } else {
    header[0] = Math.min(totalLength - 1, 0xff);
    header[2] = deviceSpecific;
    header[3] = blockDescriptor.length;
  }
  return fitAllocation(Buffer.concat([header, blockDescriptor, ...pages]), allocationLength(cdb));
}

/** Short (8-byte) or long (16-byte) LBA mode parameter block descriptor (SBC-4 §6.4.2). */
function modeBlockDescriptor(lu: LogicalUnit, longLba: boolean, pageControl: number): Buffer {
  const changeable = pageControl === PAGE_CONTROL.CHANGEABLE;
  if (longLba) {
    const descriptor = Buffer.alloc(16);
    if (!changeable) {
      descriptor.writeBigUInt64BE(BigInt(lu.capacityBlocks), 0);
      descriptor.writeUInt32BE(LOGICAL_BLOCK_SIZE_BYTES, 12);
    }
    return descriptor;
  }
  const descriptor = Buffer.alloc(8);
  if (!changeable) {
    descriptor.writeUInt32BE(Math.min(lu.capacityBlocks, 0xffffffff), 0);
    descriptor.writeUIntBE(LOGICAL_BLOCK_SIZE_BYTES, 5, 3);
  }
  return descriptor;
}

export async function modeSense6(context: CommandContext): Promise<Buffer> {
  return modeSense(context, false);
}

export async function modeSense10(context: CommandContext): Promise<Buffer> {
  return modeSense(context, true);
}

async function modeSelect(context: CommandContext, tenByte: boolean): Promise<undefined> {
  const cdb = context.command.cdb;
  const lu = context.lu;
  if ((cdb[1] & 0x10) === 0) throw invalidCdbField(1, 4); // PF = 0: vendor-specific pages, not ours
  if ((cdb[1] & 0x01) !== 0) throw invalidCdbField(1, 0); // SP = 1: we keep no saved pages
  const listLength = tenByte ? cdb.readUInt16BE(7) : cdb[4];
  if (listLength === 0) return undefined;
  const data = (context.command.dataOut ?? Buffer.alloc(0)).subarray(0, listLength);
  const headerLength = tenByte ? 8 : 4;
  if (data.length < headerLength || data.length < listLength) throw new ScsiError("ParameterListLengthError");
  const blockDescriptorLength = tenByte ? data.readUInt16BE(6) : data[3];
  let offset = headerLength;
  if (offset + blockDescriptorLength > data.length) throw new ScsiError("ParameterListLengthError");
  // The block descriptors may repeat our logical block length; changing it is not supported.
  const longLba = tenByte && (data[4] & 0x01) !== 0;
  const descriptorSize = longLba ? 16 : 8;
  for (let at = offset; at + descriptorSize <= offset + blockDescriptorLength; at += descriptorSize) {
    const blockLength = longLba ? data.readUInt32BE(at + 12) : data.readUIntBE(at + 5, 3);
    if (blockLength !== 0 && blockLength !== LOGICAL_BLOCK_SIZE_BYTES) throw invalidParameterField(at + (longLba ? 12 : 5));
  }
  offset += blockDescriptorLength;
  const next = { ...lu.mode };
  while (offset < data.length) {
    if (offset + 2 > data.length) throw new ScsiError("ParameterListLengthError");
    if ((data[offset] & 0x40) !== 0) throw invalidParameterField(offset, 6); // SPF: no subpages
    const pageCode = data[offset] & 0x3f;
    const pageLength = data[offset + 1];
    if (offset + 2 + pageLength > data.length) throw new ScsiError("ParameterListLengthError");
    const given = data.subarray(offset, offset + 2 + pageLength);
    if (!ALL_MODE_PAGES.includes(pageCode as typeof ALL_MODE_PAGES[number])) throw invalidParameterField(offset);
    const current = modePage(lu, pageCode, PAGE_CONTROL.CURRENT);
    const changeable = modePage(lu, pageCode, PAGE_CONTROL.CHANGEABLE);
    if (given.length !== current.length) throw invalidParameterField(offset + 1);
    // SPC-5 §6.12: a change to a bit that is not changeable is INVALID FIELD IN PARAMETER LIST.
    for (let index = 2; index < given.length; index++) {
      if (((given[index] ^ current[index]) & ~changeable[index]) !== 0) throw invalidParameterField(offset + index);
    }
    if (pageCode === MODE_PAGE.CACHING) next.writeCacheEnabled = (given[2] & 0x04) !== 0;
    if (pageCode === MODE_PAGE.CONTROL) next.softwareWriteProtect = (given[4] & 0x08) !== 0;
    offset += 2 + pageLength;
  }
  const changed = next.writeCacheEnabled !== lu.mode.writeCacheEnabled || next.softwareWriteProtect !== lu.mode.softwareWriteProtect;
  if (changed) {
    // Turning the write cache off makes what was acknowledged so far durable first.
    if (lu.mode.writeCacheEnabled && !next.writeCacheEnabled) await lu.device.flush();
    Object.assign(lu.mode, next);
    // SPC-5 §5.14 (Table 52 row 2Ah/01h): other nexuses learn that mode parameters changed.
    lu.unitAttentions.establishForAll("UaModeParametersChanged", context.nexusKey);
  }
  return undefined;
}

export function modeSelect6(context: CommandContext): Promise<undefined> {
  return modeSelect(context, false);
}

export function modeSelect10(context: CommandContext): Promise<undefined> {
  return modeSelect(context, true);
}

// ---- REPORT SUPPORTED OPERATION CODES (SPC-5 §6.35) -------------------------------------------

/** Nominal and recommended command timeouts (seconds) in the command timeouts descriptor. */
const NOMINAL_TIMEOUT_SECONDS = 0;
const RECOMMENDED_TIMEOUT_SECONDS = 30;

function timeoutsDescriptor(): Buffer {
  const descriptor = Buffer.alloc(12);
  descriptor.writeUInt16BE(0x0a, 0);
  descriptor.writeUInt32BE(NOMINAL_TIMEOUT_SECONDS, 4);
  descriptor.writeUInt32BE(RECOMMENDED_TIMEOUT_SECONDS, 8);
  return descriptor;
}

export function reportSupportedOperationCodes(context: CommandContext, commands: readonly CommandDescriptor[]): Buffer {
  const cdb = context.command.cdb;
  const withTimeouts = (cdb[2] & 0x80) !== 0;
  const reportingOptions = cdb[2] & 0x07;
  const requestedOpcode = cdb[3];
  const requestedServiceAction = cdb.readUInt16BE(4);
  const allocation = allocationLength(cdb);
  if (reportingOptions === 0) {
    // All commands: header plus one 8-byte descriptor each (Table 216).
    const descriptors = commands.map((command) => {
      const descriptor = Buffer.alloc(8);
      descriptor[0] = command.opcode;
      descriptor.writeUInt16BE(command.serviceAction ?? 0, 2);
      descriptor[5] = (withTimeouts ? 0x02 : 0x00) | (command.serviceAction !== undefined ? 0x01 : 0x00);
      descriptor.writeUInt16BE(command.usage.length, 6);
      return withTimeouts ? Buffer.concat([descriptor, timeoutsDescriptor()]) : descriptor;
    });
    const body = Buffer.concat(descriptors);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length, 0);
    return fitAllocation(Buffer.concat([header, body]), allocation);
  }
  // One command (Table 218). 001b: by opcode, which must not have service actions; 010b: by opcode
  // and service action, which it must have; 011b: service action only if the opcode has them.
  const withServiceActions = commands.some((command) => command.opcode === requestedOpcode && command.serviceAction !== undefined);
  let found: CommandDescriptor | undefined;
  switch (reportingOptions) {
    case 1:
      if (withServiceActions) throw invalidCdbField(2, 0);
      found = commands.find((command) => command.opcode === requestedOpcode);
      break;
    case 2:
      if (!withServiceActions) throw invalidCdbField(2, 1);
      found = commands.find((command) => command.opcode === requestedOpcode && command.serviceAction === requestedServiceAction);
      break;
    case 3:
      found = commands.find((command) => command.opcode === requestedOpcode
        && (!withServiceActions || command.serviceAction === requestedServiceAction));
      break;
    default:
      throw invalidCdbField(2, 2);
  }
  const usage = found === undefined ? Buffer.alloc(0) : Buffer.from(found.usage);
  const header = Buffer.alloc(4);
  header[1] = (withTimeouts && found !== undefined ? 0x80 : 0x00) | (found === undefined ? 0x01 : 0x03); // SUPPORT 001b / 011b
  header.writeUInt16BE(usage.length, 2);
  const parts: Buffer[] = [header, usage];
  if (withTimeouts && found !== undefined) parts.push(timeoutsDescriptor());
  return fitAllocation(Buffer.concat(parts), allocation);
}

// ---- REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-5 §6.36) ----------------------------------

export async function reportSupportedTaskManagementFunctions(context: CommandContext): Promise<Buffer> {
  const cdb = context.command.cdb;
  const extended = (cdb[2] & 0x80) !== 0; // REPD
  const data = Buffer.alloc(extended ? 16 : 4);
  // ATS (ABORT TASK), ATSS (ABORT TASK SET), CTSS (CLEAR TASK SET), LURS (LOGICAL UNIT RESET), TRS (TARGET RESET).
  data[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02;
  if (extended) data[3] = 0x0c;
  return fitAllocation(data, allocationLength(cdb));
}

// ---- RESERVE / RELEASE (SPC-2 §7.21, §7.16; RESERVE(10)/RELEASE(10) §7.22, §7.17) ----------------

/** RESERVE(6)/(10): the whole logical unit for this nexus. Returns "conflict" when another holds it. */
export function reserve(context: CommandContext): "good" | "conflict" {
  const cdb = context.command.cdb;
  if (cdb[0] === OPCODE.RESERVE_6 && (cdb[1] & 0x01) !== 0) throw invalidCdbField(1, 0); // extents: obsolete
  if (cdb[0] === OPCODE.RESERVE_10 && (cdb[1] & 0x12) !== 0) throw invalidCdbField(1, 4); // third party, LONGID
  const lu = context.lu;
  if (lu.legacyReservationHolder !== undefined && lu.legacyReservationHolder !== context.nexusKey) return "conflict";
  lu.legacyReservationHolder = context.nexusKey;
  return "good";
}

/** RELEASE(6)/(10): only the holder's release has an effect; anyone else's is GOOD (SPC-2 §7.16). */
export function release(context: CommandContext): void {
  const cdb = context.command.cdb;
  if (cdb[0] === OPCODE.RELEASE_6 && (cdb[1] & 0x01) !== 0) throw invalidCdbField(1, 0);
  if (cdb[0] === OPCODE.RELEASE_10 && (cdb[1] & 0x12) !== 0) throw invalidCdbField(1, 4);
  const lu = context.lu;
  if (lu.legacyReservationHolder === context.nexusKey) lu.legacyReservationHolder = undefined;
}

// SCSI Block Commands (SBC-4) over a BlockDevice: READ CAPACITY, READ/WRITE (6/10/12/16), VERIFY,
// WRITE AND VERIFY, SYNCHRONIZE CACHE, UNMAP, WRITE SAME, COMPARE AND WRITE and GET LBA STATUS.
// 512-byte logical blocks over 4 KiB clusters. Every handler decodes its CDB with decodeBlockCdb,
// validates fields, then the shared range check, then write protection, before touching the device.
// Writes hold a shared block range lock and COMPARE AND WRITE an exclusive one (SBC-4 §5.3).
import { type DecodedBlockCdb, allocationLength, checkLbaRange, decodeBlockCdb, OPCODE } from "./cdb.ts";
import {
  type CommandContext, fitAllocation, LOGICAL_BLOCK_SIZE_BYTES, LOGICAL_BLOCKS_PER_PHYSICAL_BLOCK_EXPONENT, type LogicalUnit,
} from "./logical-unit.ts";
import { payloadBufferPool } from "../../nbd/payload-buffer-pool.ts";
import { invalidCdbField, invalidParameterField, ScsiError, throwIfAborted } from "./sense-table.ts";

// ---- shared checks ---------------------------------------------------------------------------

function decode(context: CommandContext): DecodedBlockCdb {
  const decoded = decodeBlockCdb(context.command.cdb);
  if (decoded === undefined) throw new Error(`opcode 0x${context.command.cdb[0].toString(16)} routed to an SBC handler has no LBA`);
  return decoded;
}

/** We format without protection information: any RDPROTECT/WRPROTECT/VRPROTECT is invalid (SBC-4 §4.22). */
function checkNoProtection(decoded: DecodedBlockCdb): void {
  if (decoded.protect !== 0) throw invalidCdbField(1, 7);
}

/** SBC-4 §6.6.4: a transfer longer than MAXIMUM TRANSFER LENGTH is INVALID FIELD IN CDB. */
function checkTransferLength(lu: LogicalUnit, decoded: DecodedBlockCdb): void {
  if (decoded.blocks > lu.limits.maxTransferLengthBlocks) throw invalidCdbField(transferLengthByte(decoded.opcode));
}

function transferLengthByte(opcode: number): number {
  switch (opcode) {
    case OPCODE.READ_6: case OPCODE.WRITE_6: return 4;
    case OPCODE.READ_12: case OPCODE.WRITE_12: case OPCODE.VERIFY_12: case OPCODE.WRITE_AND_VERIFY_12: return 6;
    case OPCODE.READ_16: case OPCODE.WRITE_16: case OPCODE.VERIFY_16: case OPCODE.WRITE_AND_VERIFY_16:
    case OPCODE.WRITE_SAME_16: case OPCODE.SYNCHRONIZE_CACHE_16: return 10;
    case OPCODE.COMPARE_AND_WRITE: return 13;
    default: return 7;
  }
}

/** DATA PROTECT for a read-only vDisk (WRITE PROTECTED) or SWP (SOFTWARE WRITE PROTECTED), SBC-4 §4.12. */
function checkWritable(lu: LogicalUnit): void {
  if (lu.device.readOnly) throw new ScsiError("WriteProtected");
  if (lu.mode.softwareWriteProtect) throw new ScsiError("SoftwareWriteProtected");
}

/**
 * The bytes a CDB itself asks to move (in or out), for the block commands whose transfer the CDB
 * sizes; undefined for the others and for a CDB too short to say. The transport reports residual
 * overflow or underflow against the initiator's Expected Data Transfer Length from it (RFC 7143
 * §11.4.5), on success and failure alike.
 */
export function requestedTransferBytes(cdb: Buffer): number | undefined {
  // The common commands first, without decoding the whole CDB (this runs for every command).
  switch (cdb[0]) {
    case OPCODE.READ_10: case OPCODE.WRITE_10:
      if (cdb.length >= 10) return cdb.readUInt16BE(7) * LOGICAL_BLOCK_SIZE_BYTES;
      break;
    case OPCODE.READ_16: case OPCODE.WRITE_16:
      if (cdb.length >= 16) return cdb.readUInt32BE(10) * LOGICAL_BLOCK_SIZE_BYTES;
      break;
    default:
      break;
  }
  let decoded: DecodedBlockCdb | undefined;
  try {
    decoded = decodeBlockCdb(cdb);
  } catch {
    return undefined;
  }
  if (decoded === undefined) return undefined;
  const rangeBytes = decoded.blocks * LOGICAL_BLOCK_SIZE_BYTES;
  switch (decoded.opcode) {
    case OPCODE.READ_6: case OPCODE.READ_10: case OPCODE.READ_12: case OPCODE.READ_16:
    case OPCODE.WRITE_6: case OPCODE.WRITE_10: case OPCODE.WRITE_12: case OPCODE.WRITE_16:
    case OPCODE.WRITE_AND_VERIFY_10: case OPCODE.WRITE_AND_VERIFY_12: case OPCODE.WRITE_AND_VERIFY_16:
      return rangeBytes;
    case OPCODE.VERIFY_10: case OPCODE.VERIFY_12: case OPCODE.VERIFY_16:
      // BYTCHK 00b: no Data-Out; 01b: the whole range; 11b: one block.
      if (decoded.byteCheck === 0 || decoded.blocks === 0) return 0;
      return decoded.byteCheck === 3 ? LOGICAL_BLOCK_SIZE_BYTES : rangeBytes;
    case OPCODE.COMPARE_AND_WRITE:
      return 2 * rangeBytes;
    case OPCODE.WRITE_SAME_10: case OPCODE.WRITE_SAME_16:
      return decoded.noDataOutBuffer ? 0 : LOGICAL_BLOCK_SIZE_BYTES;
    default:
      return undefined;
  }
}

/**
 * The blocks of a WRITE to carry out. When the initiator's Expected Data Transfer Length is below
 * what the CDB asks, only the Data-Out it sent is written, as FCP-4 §9.4.2 a) and tgt do (the
 * residual overflow tells it the rest was not transferred); a Data-Out that ends inside a block is
 * INVALID FIELD IN INFORMATION UNIT and nothing is written (FCP-4's option b).
 */
function blocksToWrite(context: CommandContext, blocks: number): number {
  const sentBytes = context.command.dataOut?.length ?? 0;
  if (sentBytes >= blocks * LOGICAL_BLOCK_SIZE_BYTES) return blocks;
  if (sentBytes % LOGICAL_BLOCK_SIZE_BYTES !== 0) throw new ScsiError("InvalidFieldInInformationUnit");
  return sentBytes / LOGICAL_BLOCK_SIZE_BYTES;
}

/** The Data-Out a command needs; fewer bytes than that is INVALID FIELD IN INFORMATION UNIT. */
function dataOutOf(context: CommandContext, lengthBytes: number): Buffer {
  const data = context.command.dataOut;
  if (data === undefined || data.length < lengthBytes) throw new ScsiError("InvalidFieldInInformationUnit");
  return data.subarray(0, lengthBytes);
}

/** With WCE = 0 every write is written through (SBC-4 §6.5.5), as if FUA were set. */
function forceUnitAccess(lu: LogicalUnit, decoded: DecodedBlockCdb): boolean {
  return decoded.fua || !lu.mode.writeCacheEnabled;
}

function byteOffset(lba: number): number {
  return lba * LOGICAL_BLOCK_SIZE_BYTES;
}

/** The offset of the first differing byte, or -1 when equal. */
export function firstMismatch(expected: Buffer, actual: Buffer): number {
  if (expected.equals(actual)) return -1;
  const length = Math.min(expected.length, actual.length);
  for (let index = 0; index < length; index++) if (expected[index] !== actual[index]) return index;
  return length;
}

// ---- READ CAPACITY (SBC-4 §5.20, §5.21) ------------------------------------------------------

export async function readCapacity10(context: CommandContext): Promise<Buffer> {
  const cdb = context.command.cdb;
  const partialMediumIndicator = (cdb[8] & 0x01) !== 0;
  if (!partialMediumIndicator && cdb.readUInt32BE(2) !== 0) throw invalidCdbField(2);
  const data = Buffer.alloc(8);
  // A capacity beyond 32 bits reports FFFFFFFFh: use READ CAPACITY(16).
  data.writeUInt32BE(Math.min(context.lu.capacityBlocks - 1, 0xffffffff), 0);
  data.writeUInt32BE(LOGICAL_BLOCK_SIZE_BYTES, 4);
  return data;
}

export async function readCapacity16(context: CommandContext): Promise<Buffer> {
  const data = Buffer.alloc(32);
  data.writeBigUInt64BE(BigInt(context.lu.capacityBlocks - 1), 0);
  data.writeUInt32BE(LOGICAL_BLOCK_SIZE_BYTES, 8);
  data[13] = LOGICAL_BLOCKS_PER_PHYSICAL_BLOCK_EXPONENT;
  data[14] = 0x80 | 0x40; // LBPME = 1 (thin), LBPRZ = 1 (unmapped blocks read as zeros)
  return fitAllocation(data, allocationLength(context.command.cdb));
}

// ---- READ / WRITE (SBC-4 §5.15-5.19, §5.41-5.44) ----------------------------------------------

export async function read(context: CommandContext): Promise<Buffer | undefined> {
  const lu = context.lu;
  const decoded = decode(context);
  checkNoProtection(decoded);
  checkTransferLength(lu, decoded);
  checkLbaRange(decoded.lba, decoded.blocks, lu.capacityBlocks);
  if (decoded.blocks === 0) return undefined;
  // DPO is a cache hint we ignore; FUA on a read needs nothing: every read sees acknowledged writes.
  // Large reads go into a pooled buffer that the transport gives back once the Data-In is sent
  // (iscsi-response.ts). A failed read keeps it: parts of the read may still be landing in it.
  const lengthBytes = decoded.blocks * LOGICAL_BLOCK_SIZE_BYTES;
  return lu.device.read(byteOffset(decoded.lba), lengthBytes, payloadBufferPool.take(lengthBytes));
}

/** Writes under the shared range lock, so a COMPARE AND WRITE to the range is atomic. */
async function lockedWrite(lu: LogicalUnit, lba: number, blocks: number, write: () => Promise<void>): Promise<void> {
  const release = lu.rangeLock.tryAcquire(lba, blocks, false) ?? await lu.rangeLock.acquire(lba, blocks, false);
  try {
    await write();
  } finally {
    release();
  }
}

export async function write(context: CommandContext): Promise<undefined> {
  const lu = context.lu;
  const decoded = decode(context);
  checkNoProtection(decoded);
  checkTransferLength(lu, decoded);
  checkLbaRange(decoded.lba, decoded.blocks, lu.capacityBlocks);
  checkWritable(lu);
  const blocks = blocksToWrite(context, decoded.blocks);
  if (blocks === 0) return undefined;
  const data = dataOutOf(context, blocks * LOGICAL_BLOCK_SIZE_BYTES);
  const fua = forceUnitAccess(lu, decoded);
  await lockedWrite(lu, decoded.lba, blocks, () => lu.device.write(byteOffset(decoded.lba), data, { fua }));
  return undefined;
}

// ---- VERIFY / WRITE AND VERIFY (SBC-4 §5.33-5.35, §5.45-5.47) -----------------------------------

/**
 * Compares the medium with the Data-Out. BYTCHK 01b: the whole range; 11b: one block against each
 * block of the range. A difference is MISCOMPARE with the offset of the first differing byte in
 * the Data-Out buffer in INFORMATION (SBC-4 §5.33).
 */
function compareVerify(medium: Buffer, dataOut: Buffer, byteCheck: number): void {
  if (byteCheck === 1) {
    const index = firstMismatch(dataOut, medium);
    if (index >= 0) throw new ScsiError("MiscompareDuringVerify", { information: index });
    return;
  }
  for (let offset = 0; offset < medium.length; offset += LOGICAL_BLOCK_SIZE_BYTES) {
    const index = firstMismatch(dataOut, medium.subarray(offset, offset + LOGICAL_BLOCK_SIZE_BYTES));
    if (index >= 0) throw new ScsiError("MiscompareDuringVerify", { information: index });
  }
}

export async function verify(context: CommandContext): Promise<undefined> {
  const lu = context.lu;
  const decoded = decode(context);
  checkNoProtection(decoded);
  if (decoded.byteCheck === 2) throw invalidCdbField(1, 2); // BYTCHK 10b is reserved
  checkTransferLength(lu, decoded);
  checkLbaRange(decoded.lba, decoded.blocks, lu.capacityBlocks);
  if (decoded.blocks === 0) return undefined;
  const lengthBytes = decoded.blocks * LOGICAL_BLOCK_SIZE_BYTES;
  // BYTCHK 00b verifies the medium: reading it proves every checksum; an Io error is a MEDIUM ERROR.
  const medium = await lu.device.read(byteOffset(decoded.lba), lengthBytes);
  if (decoded.byteCheck === 0) return undefined;
  const dataOut = dataOutOf(context, decoded.byteCheck === 3 ? LOGICAL_BLOCK_SIZE_BYTES : lengthBytes);
  compareVerify(medium, dataOut, decoded.byteCheck);
  return undefined;
}

export async function writeAndVerify(context: CommandContext): Promise<undefined> {
  const lu = context.lu;
  const decoded = decode(context);
  checkNoProtection(decoded);
  if (decoded.byteCheck >= 2) throw invalidCdbField(1, 2); // 10b reserved; 11b (one block) not offered
  checkTransferLength(lu, decoded);
  checkLbaRange(decoded.lba, decoded.blocks, lu.capacityBlocks);
  checkWritable(lu);
  const blocks = blocksToWrite(context, decoded.blocks);
  if (blocks === 0) return undefined;
  const lengthBytes = blocks * LOGICAL_BLOCK_SIZE_BYTES;
  const data = dataOutOf(context, lengthBytes);
  const offset = byteOffset(decoded.lba);
  // The FUA bit position is reserved here; honour WCE = 0 like any other write.
  await lockedWrite(lu, decoded.lba, blocks, async () => {
    await lu.device.write(offset, data, { fua: !lu.mode.writeCacheEnabled });
    // Verify what the medium now returns (BYTCHK 00b and 01b alike): the read checks every checksum.
    const medium = await lu.device.read(offset, lengthBytes);
    const index = firstMismatch(data, medium);
    if (index >= 0) throw new ScsiError("MiscompareDuringVerify", { information: index });
  });
  return undefined;
}

// ---- SYNCHRONIZE CACHE (SBC-4 §5.28, §5.29) ----------------------------------------------------

export async function synchronizeCache(context: CommandContext): Promise<undefined> {
  const lu = context.lu;
  const decoded = decode(context);
  // NUMBER OF LOGICAL BLOCKS 0 means "to the end of the medium"; the range must still be valid.
  checkLbaRange(decoded.lba, decoded.blocks, lu.capacityBlocks);
  // IMMED = 1 allows GOOD before the flush; we always flush first (the stronger behaviour).
  await lu.device.flush();
  return undefined;
}

// ---- PRE-FETCH (SBC-4 §5.9, §5.10) ---------------------------------------------------------------

/**
 * Reads the range so that what lives only on the backend lands in the read cache (local data is in
 * the page cache already), at most limits.prefetchMaxBlocks from the LBA (PREFETCH LENGTH 0: to the
 * end of the medium). GOOD, never CONDITION MET: the read cache may evict the blocks again, so we do
 * not promise they stay (SBC-4 allows GOOD when they may not all fit). With IMMED the read goes on
 * after GOOD and its failure is dropped: PRE-FETCH is a hint, the reads that follow report errors.
 */
export async function preFetch(context: CommandContext): Promise<undefined> {
  const lu = context.lu;
  const decoded = decode(context);
  checkLbaRange(decoded.lba, decoded.blocks, lu.capacityBlocks);
  const wanted = decoded.blocks === 0 ? lu.capacityBlocks - decoded.lba : decoded.blocks;
  const blocks = Math.min(wanted, lu.limits.prefetchMaxBlocks);
  const work = (async (): Promise<void> => {
    const chunkBlocks = lu.limits.maxTransferLengthBlocks;
    for (let done = 0; done < blocks; done += chunkBlocks) {
      throwIfAborted(context.command.signal);
      const count = Math.min(chunkBlocks, blocks - done);
      await lu.device.read(byteOffset(decoded.lba + done), count * LOGICAL_BLOCK_SIZE_BYTES);
    }
  })();
  if (decoded.immediate) {
    work.catch(() => undefined);
    return undefined;
  }
  await work;
  return undefined;
}

// ---- UNMAP (SBC-4 §5.32) -------------------------------------------------------------------------

interface UnmapDescriptor {
  lba: number;
  blocks: number;
}

/** Validates the whole UNMAP parameter list (SBC-4 §5.32.2) before anything is deallocated. */
export function parseUnmapParameterList(lu: LogicalUnit, data: Buffer): UnmapDescriptor[] {
  if (data.length < 8) throw new ScsiError("ParameterListLengthError");
  const descriptorDataLength = data.readUInt16BE(2);
  // An incomplete trailing descriptor is ignored; a length beyond the list uses what was sent.
  const count = Math.floor(Math.min(descriptorDataLength, data.length - 8) / 16);
  if (count > lu.limits.maxUnmapBlockDescriptorCount) throw invalidParameterField(2);
  const descriptors: UnmapDescriptor[] = [];
  let totalBlocks = 0;
  for (let index = 0; index < count; index++) {
    const at = 8 + 16 * index;
    const lbaBig = data.readBigUInt64BE(at);
    const lba = lbaBig > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(lbaBig);
    const blocks = data.readUInt32BE(at + 8);
    checkLbaRange(lba, blocks, lu.capacityBlocks);
    totalBlocks += blocks;
    if (totalBlocks > lu.limits.maxUnmapLbaCountBlocks) throw invalidParameterField(at + 8);
    if (blocks > 0) descriptors.push({ lba, blocks });
  }
  return descriptors;
}

export async function unmap(context: CommandContext): Promise<undefined> {
  const lu = context.lu;
  const cdb = context.command.cdb;
  if ((cdb[1] & 0x01) !== 0) throw invalidCdbField(1, 0); // ANCHOR: ANC_SUP = 0
  const listLength = cdb.readUInt16BE(7);
  if (listLength === 0) return undefined; // SBC-4 §5.32.1: no data, not an error
  if (listLength < 8) throw new ScsiError("ParameterListLengthError");
  const data = (context.command.dataOut ?? Buffer.alloc(0)).subarray(0, listLength);
  checkWritable(lu);
  const descriptors = parseUnmapParameterList(lu, data);
  for (const descriptor of descriptors) {
    throwIfAborted(context.command.signal);
    await lockedWrite(lu, descriptor.lba, descriptor.blocks,
      () => lu.device.trim(byteOffset(descriptor.lba), descriptor.blocks * LOGICAL_BLOCK_SIZE_BYTES));
  }
  return undefined;
}

// ---- WRITE SAME (SBC-4 §5.48, §5.49) --------------------------------------------------------------

export async function writeSame(context: CommandContext): Promise<undefined> {
  const lu = context.lu;
  const decoded = decode(context);
  checkNoProtection(decoded);
  if (decoded.anchor) throw invalidCdbField(1, 4); // ANC_SUP = 0 (and ANCHOR without UNMAP is invalid)
  if (decoded.blocks === 0) throw invalidCdbField(transferLengthByte(decoded.opcode)); // WSNZ = 1
  if (decoded.blocks > lu.limits.maxWriteSameLengthBlocks) throw invalidCdbField(transferLengthByte(decoded.opcode));
  checkLbaRange(decoded.lba, decoded.blocks, lu.capacityBlocks);
  checkWritable(lu);
  let pattern: Buffer;
  if (decoded.noDataOutBuffer) {
    pattern = Buffer.alloc(LOGICAL_BLOCK_SIZE_BYTES); // NDOB: a block of zeros, no Data-Out
  } else {
    const dataOut = context.command.dataOut;
    // Exactly one logical block of Data-Out (SBC-4 §5.48.1): any other amount is an error.
    if (dataOut === undefined || dataOut.length !== LOGICAL_BLOCK_SIZE_BYTES) throw invalidCdbField(transferLengthByte(decoded.opcode));
    pattern = dataOut;
  }
  const offset = byteOffset(decoded.lba);
  const lengthBytes = decoded.blocks * LOGICAL_BLOCK_SIZE_BYTES;
  const fua = !lu.mode.writeCacheEnabled;
  const zeros = pattern.every((byte) => byte === 0);
  await lockedWrite(lu, decoded.lba, decoded.blocks, async () => {
    if (zeros && decoded.unmap) {
      // SBC-4 §5.49: UNMAP = 1 with a block that deallocated blocks return (LBPRZ) deallocates.
      await lu.device.trim(offset, lengthBytes);
      if (fua) await lu.device.flush();
    } else if (zeros) {
      // UNMAP = 0: the blocks stay mapped (SBC-4 §4.7.3.4).
      await lu.device.writeZeroes(offset, lengthBytes, { noHole: true, fua });
    } else {
      await writePattern(context, lu, offset, lengthBytes, pattern, fua);
    }
  });
  return undefined;
}

/** Repeats one block over the range in chunks of writeSameChunkBytes, one buffer reused. */
async function writePattern(context: CommandContext, lu: LogicalUnit, offset: number, lengthBytes: number, pattern: Buffer, fua: boolean): Promise<void> {
  const chunkBytes = Math.min(lengthBytes, Math.max(LOGICAL_BLOCK_SIZE_BYTES,
    Math.floor(lu.limits.writeSameChunkBytes / LOGICAL_BLOCK_SIZE_BYTES) * LOGICAL_BLOCK_SIZE_BYTES));
  const chunk = Buffer.alloc(chunkBytes);
  for (let at = 0; at < chunkBytes; at += LOGICAL_BLOCK_SIZE_BYTES) pattern.copy(chunk, at);
  for (let done = 0; done < lengthBytes; done += chunkBytes) {
    throwIfAborted(context.command.signal);
    const piece = Math.min(chunkBytes, lengthBytes - done);
    await lu.device.write(offset + done, chunk.subarray(0, piece), { fua });
  }
}

// ---- COMPARE AND WRITE (SBC-4 §5.3) -----------------------------------------------------------------

/**
 * Reads the range, compares it with the first half of the Data-Out and, when equal, writes the
 * second half — all under an exclusive range lock, so no other write to the range interleaves
 * (VMware ATS relies on this). A difference is MISCOMPARE with the offset in INFORMATION.
 */
export async function compareAndWrite(context: CommandContext): Promise<undefined> {
  const lu = context.lu;
  const decoded = decode(context);
  checkNoProtection(decoded);
  if (decoded.blocks > lu.limits.maxCompareAndWriteLengthBlocks) throw invalidCdbField(13);
  checkLbaRange(decoded.lba, decoded.blocks, lu.capacityBlocks);
  checkWritable(lu);
  const lengthBytes = decoded.blocks * LOGICAL_BLOCK_SIZE_BYTES;
  // The Data-Out is the verify data followed by the write data: exactly twice the range. A
  // NUMBER OF LOGICAL BLOCKS that does not match it (256 blocks wrap to 0 in the one-byte field)
  // is INVALID FIELD IN CDB, as in tgt and LIO, rather than a guess at what was meant.
  const dataOut = context.command.dataOut;
  if ((dataOut?.length ?? 0) !== 2 * lengthBytes) throw invalidCdbField(13);
  if (dataOut === undefined || decoded.blocks === 0) return undefined; // SBC-4 §5.3: not an error, nothing compared
  const offset = byteOffset(decoded.lba);
  const release = await lu.rangeLock.acquire(decoded.lba, decoded.blocks, true);
  try {
    const medium = await lu.device.read(offset, lengthBytes);
    const index = firstMismatch(dataOut.subarray(0, lengthBytes), medium);
    if (index >= 0) throw new ScsiError("MiscompareDuringVerify", { information: index });
    await lu.device.write(offset, dataOut.subarray(lengthBytes), { fua: forceUnitAccess(lu, decoded) });
  } finally {
    release();
  }
  return undefined;
}

// ---- GET LBA STATUS (SBC-4 §5.8) ----------------------------------------------------------------------

/** PROVISIONING STATUS values (SBC-4 §5.8.2, Table 39). */
export const PROVISIONING_STATUS = { MAPPED: 0x0, DEALLOCATED: 0x1 } as const;

export async function getLbaStatus(context: CommandContext): Promise<Buffer> {
  const lu = context.lu;
  const decoded = decode(context);
  const allocation = allocationLength(context.command.cdb);
  if (decoded.lba >= lu.capacityBlocks) throw new ScsiError("LbaOutOfRange");
  // Describe at most what fits in the allocation length, from a bounded window of the device.
  const descriptorsMax = Math.max(1, Math.floor((allocation - 8) / 16));
  const windowBlocks = Math.min(lu.capacityBlocks - decoded.lba, lu.limits.getLbaStatusWindowBlocks);
  const extents = await lu.device.blockStatus(byteOffset(decoded.lba), windowBlocks * LOGICAL_BLOCK_SIZE_BYTES);
  const descriptors: Array<{ lba: number; blocks: number; status: number }> = [];
  for (const extent of extents) {
    const status = extent.allocated ? PROVISIONING_STATUS.MAPPED : PROVISIONING_STATUS.DEALLOCATED;
    const lba = extent.offsetBytes / LOGICAL_BLOCK_SIZE_BYTES;
    const blocks = extent.lengthBytes / LOGICAL_BLOCK_SIZE_BYTES;
    const last = descriptors[descriptors.length - 1];
    if (last !== undefined && last.status === status && last.lba + last.blocks === lba) {
      last.blocks += blocks;
    } else {
      if (descriptors.length === descriptorsMax) break;
      descriptors.push({ lba, blocks, status });
    }
  }
  const data = Buffer.alloc(8 + 16 * descriptors.length);
  data.writeUInt32BE(data.length - 4, 0); // PARAMETER DATA LENGTH
  descriptors.forEach((descriptor, index) => {
    const at = 8 + 16 * index;
    data.writeBigUInt64BE(BigInt(descriptor.lba), at);
    data.writeUInt32BE(Math.min(descriptor.blocks, 0xffffffff), at + 8);
    data[at + 12] = descriptor.status;
  });
  return fitAllocation(data, allocation);
}

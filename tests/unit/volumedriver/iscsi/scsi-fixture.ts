// Goal: one place that brings up a real vPool (MemoryObjectStore backend, temp directory) with a
// volume behind a ScsiTargetImpl LUN, and small helpers to build CDBs, run commands on a nexus and
// check status and sense, for the SCSI command set tests.
import assert from "node:assert/strict";
import { MemoryObjectStore } from "../../../../volumedriver/src/backend/memory-store.ts";
import type { BlockDevice } from "../../../../volumedriver/src/engine/block-device.ts";
import { openVPool } from "../../../../volumedriver/src/engine/vpool.ts";
import { MIB, type Volume, type VPool } from "../../../../volumedriver/src/engine/vpool-types.ts";
import { createScsiTarget, type ScsiTargetImpl } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-target.ts";
import { SCSI_STATUS, type ScsiNexus, type ScsiResult } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-types.ts";
import { SENSE_TABLE, type SenseReason } from "../../../../volumedriver/src/frontends/iscsi/scsi/sense-table.ts";
import { TempDirs } from "../../../helpers/temp-dir.ts";

export const BLOCK = 512;
export const SCSI_TEST_DEVICE_SIZE_BYTES = 16 * MIB;
export const CAPACITY_BLOCKS = SCSI_TEST_DEVICE_SIZE_BYTES / BLOCK;
export const TARGET_IQN = "iqn.2026-11.org.openvstorage:test";

export function nexus(name: string, isid = "23d000000001"): ScsiNexus {
  const initiatorName = `iqn.2007-10.com.example:${name}`;
  return {
    initiatorName,
    initiatorPort: `${initiatorName},i,0x${isid}`,
    targetPort: `${TARGET_IQN},t,0x0001`,
    relativeTargetPortId: 1,
  };
}

export const NEXUS_A = nexus("a");
export const NEXUS_B = nexus("b");

export interface ScsiFixture {
  vpool: VPool;
  volume: Volume;
  target: ScsiTargetImpl;
  directory: string;
  close(): Promise<void>;
}

export async function startScsiFixture(tempDirs: TempDirs, options: { device?: (volume: Volume) => BlockDevice; reservationStatePath?: string } = {}): Promise<ScsiFixture> {
  const backend = new MemoryObjectStore();
  const directory = await tempDirs.make();
  const vpool = await openVPool({ name: "scsi", directory, backend, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 60_000 });
  const volume = await vpool.createVolume("disk0", SCSI_TEST_DEVICE_SIZE_BYTES);
  const target = createScsiTarget();
  await target.addLogicalUnit({
    lun: 0,
    device: options.device?.(volume) ?? volume,
    serialNumber: "ovs-disk0-serial",
    naaIdentifierHex: "0123456789abcdef",
    reservationStatePath: options.reservationStatePath,
  });
  let closed = false;
  return {
    vpool, volume, target, directory,
    close: async () => {
      if (closed) return;
      closed = true;
      await vpool.close();
      await backend.close();
    },
  };
}

export interface RunOptions {
  nexus?: ScsiNexus;
  lun?: number;
  dataOut?: Buffer;
  edtl?: number;
}

export function run(target: ScsiTargetImpl, cdb: Buffer, options: RunOptions = {}): Promise<ScsiResult> {
  const padded = Buffer.alloc(Math.max(16, cdb.length));
  cdb.copy(padded);
  return target.execute({
    nexus: options.nexus ?? NEXUS_A,
    lun: options.lun ?? 0,
    cdb: padded,
    dataOut: options.dataOut,
    expectedDataTransferLengthBytes: options.edtl ?? options.dataOut?.length ?? 1 << 24,
    taskAttribute: "simple",
  });
}

/** Sends TEST UNIT READY until it is GOOD, consuming unit attentions (as libiscsi's login does). */
export async function clearUnitAttentions(target: ScsiTargetImpl, who: ScsiNexus = NEXUS_A, lun = 0): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const result = await run(target, Buffer.from([0, 0, 0, 0, 0, 0]), { nexus: who, lun });
    if (result.status === SCSI_STATUS.GOOD) return attempt;
    assert.equal(result.sense?.[2], 0x06, "only unit attentions expected while clearing");
  }
  throw new Error("unit attentions never cleared");
}

export function expectGood(result: ScsiResult, message?: string): Buffer {
  assert.equal(result.status, SCSI_STATUS.GOOD, `${message ?? "expected GOOD"}: status ${result.status} sense ${result.sense?.toString("hex")}`);
  return result.dataIn ?? Buffer.alloc(0);
}

export function expectSense(result: ScsiResult, reason: SenseReason): Buffer {
  const code = SENSE_TABLE[reason];
  assert.equal(result.status, SCSI_STATUS.CHECK_CONDITION, `expected CHECK CONDITION ${reason}, got status ${result.status}`);
  const sense = result.sense!;
  assert.equal(sense[0] & 0x7f, 0x70, "fixed format, current");
  assert.deepEqual([sense[2] & 0x0f, sense[12], sense[13]], [code.key, code.asc, code.ascq], `expected ${reason}, got ${sense.toString("hex")}`);
  return sense;
}

export function expectConflict(result: ScsiResult): void {
  assert.equal(result.status, SCSI_STATUS.RESERVATION_CONFLICT, `expected RESERVATION CONFLICT, got ${result.status} ${result.sense?.toString("hex")}`);
}

// ---- CDB builders ------------------------------------------------------------------------------

export function cdb6(opcode: number, lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(6);
  cdb[0] = opcode;
  cdb.writeUIntBE(lba & 0x1fffff, 1, 3);
  cdb[4] = blocks & 0xff;
  return cdb;
}

export function cdb10(opcode: number, lba: number, blocks: number, byte1 = 0): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = opcode;
  cdb[1] = byte1;
  cdb.writeUInt32BE(lba >>> 0, 2);
  cdb.writeUInt16BE(blocks, 7);
  return cdb;
}

export function cdb12(opcode: number, lba: number, blocks: number, byte1 = 0): Buffer {
  const cdb = Buffer.alloc(12);
  cdb[0] = opcode;
  cdb[1] = byte1;
  cdb.writeUInt32BE(lba >>> 0, 2);
  cdb.writeUInt32BE(blocks, 6);
  return cdb;
}

export function cdb16(opcode: number, lba: bigint | number, blocks: number, byte1 = 0): Buffer {
  const cdb = Buffer.alloc(16);
  cdb[0] = opcode;
  cdb[1] = byte1;
  cdb.writeBigUInt64BE(BigInt(lba), 2);
  cdb.writeUInt32BE(blocks, 10);
  return cdb;
}

export function pattern(blocks: number, seed: number): Buffer {
  const data = Buffer.alloc(blocks * BLOCK);
  for (let index = 0; index < data.length; index++) data[index] = (index * 31 + seed * 7 + (index >> 9)) & 0xff;
  return data;
}

export { TempDirs };

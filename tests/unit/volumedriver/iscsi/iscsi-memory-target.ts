// Goal: a minimal in-memory ScsiTarget double for the transport's tests: one or more LUNs of 512-byte
// blocks answering TEST UNIT READY, INQUIRY, READ(10) and WRITE(10), with a hook that holds commands
// until released or aborted (for task management tests). It is not the SCSI layer (scsi/ is); it only
// lets the transport be tested without it.
import { SCSI_STATUS, type ScsiCommand, type ScsiNexus, type ScsiResult, type ScsiTarget, type ScsiTaskManagementFunction } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-types.ts";

export const BLOCK_BYTES = 512;

function sense(key: number, asc: number, ascq: number): Buffer {
  const data = Buffer.alloc(18);
  data[0] = 0x70;
  data[2] = key;
  data[7] = 10;
  data[12] = asc;
  data[13] = ascq;
  return data;
}

const INVALID_OPCODE: ScsiResult = { status: SCSI_STATUS.CHECK_CONDITION, sense: sense(0x5, 0x20, 0x00) };
const LBA_OUT_OF_RANGE: ScsiResult = { status: SCSI_STATUS.CHECK_CONDITION, sense: sense(0x5, 0x21, 0x00) };

export class MemoryScsiTarget implements ScsiTarget {
  readonly disks = new Map<number, Buffer>();
  readonly executed: ScsiCommand[] = [];
  readonly taskManagementCalls: Array<{ fn: ScsiTaskManagementFunction; lun: number; referencedTaskTag?: number }> = [];
  readonly lostNexuses: ScsiNexus[] = [];
  /** Commands whose first CDB byte is in here wait until released or aborted. */
  holdOpcodes = new Set<number>();
  private held: Array<() => void> = [];

  constructor(luns: number[] = [0], sizeBytes = 4 * 1024 * 1024) {
    for (const lun of luns) this.disks.set(lun, Buffer.alloc(sizeBytes));
  }

  releaseHeld(): void {
    for (const release of this.held.splice(0)) release();
  }

  get heldCount(): number {
    return this.held.length;
  }

  luns(): number[] {
    return [...this.disks.keys()];
  }

  nexusLost(nexus: ScsiNexus): void {
    this.lostNexuses.push(nexus);
  }

  async taskManagement(_nexus: ScsiNexus, fn: ScsiTaskManagementFunction, lun: number, referencedTaskTag?: number): Promise<number> {
    this.taskManagementCalls.push({ fn, lun, referencedTaskTag });
    return this.disks.has(lun) || fn.startsWith("target") ? 0 : 2;
  }

  async execute(command: ScsiCommand): Promise<ScsiResult> {
    this.executed.push(command);
    if (this.holdOpcodes.has(command.cdb[0])) {
      await new Promise<void>((resolve) => {
        // Released by releaseHeld() or, as a long SCSI operation would notice, by the abort flag.
        const poll = setInterval(() => {
          if (command.signal?.aborted === true) release();
        }, 5);
        const release = (): void => {
          clearInterval(poll);
          resolve();
        };
        this.held.push(release);
      });
      if (command.signal?.aborted === true) return { status: SCSI_STATUS.TASK_ABORTED };
    }
    const disk = this.disks.get(command.lun);
    const cdb = command.cdb;
    if (disk === undefined) return { status: SCSI_STATUS.CHECK_CONDITION, sense: sense(0x5, 0x25, 0x00) };
    switch (cdb[0]) {
      case 0x00:
        return { status: SCSI_STATUS.GOOD };
      case 0x12: {
        const data = Buffer.alloc(36);
        data[2] = 0x06;
        data[3] = 0x02;
        data[4] = 31;
        data.write("OVS     MEMORY-DOUBLE   0001", 8, "latin1");
        const allocation = cdb.readUInt16BE(3);
        const dataIn = data.subarray(0, Math.min(allocation, command.expectedDataTransferLengthBytes));
        return { status: SCSI_STATUS.GOOD, dataIn, transferLengthBytes: Math.min(allocation, data.length) };
      }
      case 0x28:
      case 0x2a: {
        const lba = cdb.readUInt32BE(2);
        const blocks = cdb.readUInt16BE(7);
        const offset = lba * BLOCK_BYTES;
        const bytes = blocks * BLOCK_BYTES;
        if (offset + bytes > disk.length) return LBA_OUT_OF_RANGE;
        if (cdb[0] === 0x28) {
          const length = Math.min(bytes, command.expectedDataTransferLengthBytes);
          return { status: SCSI_STATUS.GOOD, dataIn: Buffer.from(disk.subarray(offset, offset + length)), transferLengthBytes: bytes };
        }
        const data = command.dataOut ?? Buffer.alloc(0);
        data.copy(disk, offset, 0, Math.min(bytes, data.length));
        return { status: SCSI_STATUS.GOOD, transferLengthBytes: bytes };
      }
      default:
        return INVALID_OPCODE;
    }
  }
}

// One SCSI task of a session: the command, the Data-Out it still expects and the R2Ts outstanding
// for it (RFC 7143 §4.2.5: immediate data, unsolicited Data-Out up to FirstBurstLength, then R2Ts of
// at most MaxBurstLength each, at most MaxOutstandingR2T at a time), its AbortController for task
// management, and a promise that settles when it is finished (answered or aborted).
// With DataPDUInOrder=Yes every data sequence must arrive at increasing offsets, without gaps.
import { payloadBufferPool } from "../nbd/payload-buffer-pool.ts";
import type { ProtocolViolation } from "./iscsi-errors.ts";
import type { DataOutPdu } from "./iscsi-pdu.ts";
import { RESERVED_TAG } from "./iscsi-pdu.ts";
import type { ScsiTaskAttribute } from "./scsi/scsi-types.ts";

/** RFC 7143 §11.3.1: the ATTR field values. */
export const TASK_ATTRIBUTES: readonly ScsiTaskAttribute[] = ["simple", "simple", "ordered", "head-of-queue", "aca", "simple", "simple", "simple"];

export type TaskState = "collecting" | "executing" | "finished";

interface OutstandingR2t {
  offset: number;
  length: number;
  received: number;
  nextDataSN: number;
}

export interface R2tRequest {
  targetTransferTag: number;
  r2tSN: number;
  offset: number;
  length: number;
}

/** Limits of the data phase, from the negotiated parameters. */
export interface DataPhaseLimits {
  firstBurstLengthBytes: number;
  maxBurstLengthBytes: number;
  maxOutstandingR2T: number;
  initialR2T: boolean;
}

export class ScsiTask {
  state: TaskState = "collecting";
  /** Set by abort(); the SCSI layer polls it (ScsiCommand.signal) in long operations. */
  aborted = false;
  /** Data-In and R2T PDUs sent (ExpDataSN of the SCSI Response, RFC 7143 §11.4.8). */
  dataSNCount = 0;
  readonly dataOut: Buffer | undefined;
  private receivedBytes = 0;
  /** Where unsolicited data may go up to (immediate data included). */
  private readonly unsolicitedLimit: number;
  private unsolicitedEnd = 0;
  private unsolicitedDone: boolean;
  private nextUnsolicitedDataSN = 0;
  private nextR2tOffset = 0;
  private nextR2tSN = 0;
  private readonly outstanding = new Map<number, OutstandingR2t>();
  /** Callers of finished waiting for finish() (created only when someone waits: most tasks are never awaited). */
  private finishWaiters: Array<() => void> | undefined;

  constructor(
    readonly initiatorTaskTag: number,
    readonly lun: number,
    readonly lunField: bigint,
    readonly cmdSN: number,
    readonly immediate: boolean,
    readonly cdb: Buffer,
    readonly expectedDataTransferLength: number,
    readonly read: boolean,
    readonly write: boolean,
    readonly taskAttribute: ScsiTaskAttribute,
    /** The command PDU's F bit: no unsolicited Data-Out follows. */
    final: boolean,
    private readonly limits: DataPhaseLimits,
  ) {
    // Large Data-Out buffers come from the pool the NBD receive path uses (fresh multi-MiB buffers
    // cost page faults and GC sweeping at every command); finish() gives them back.
    this.dataOut = write && expectedDataTransferLength > 0 ? payloadBufferPool.take(expectedDataTransferLength) : undefined;
    this.unsolicitedLimit = limits.initialR2T ? 0 : Math.min(limits.firstBurstLengthBytes, expectedDataTransferLength);
    // With InitialR2T=Yes no unsolicited Data-Out may follow (only immediate data, RFC 7143 §13.10).
    this.unsolicitedDone = final || this.unsolicitedLimit === 0;
  }

  get dataComplete(): boolean {
    return this.receivedBytes === (this.dataOut?.length ?? 0);
  }

  /** Immediate data of the command PDU (already checked against ImmediateData and FirstBurstLength). */
  immediateData(data: Buffer): ProtocolViolation | undefined {
    if (data.length === 0) return undefined;
    const dataOut = this.dataOut;
    if (dataOut === undefined || data.length > dataOut.length) return "UnsolicitedDataViolation";
    data.copy(dataOut, 0);
    this.receivedBytes = data.length;
    this.unsolicitedEnd = data.length;
    this.nextR2tOffset = data.length;
    if (this.unsolicitedEnd >= this.unsolicitedLimit) this.unsolicitedDone = true;
    return undefined;
  }

  /** One Data-Out PDU; returns the violation that ends the connection, or undefined. */
  dataOutReceived(pdu: DataOutPdu): ProtocolViolation | undefined {
    const dataOut = this.dataOut;
    const data = pdu.data ?? Buffer.alloc(0);
    if (dataOut === undefined) return "UnexpectedDataOut";
    if (pdu.targetTransferTag === RESERVED_TAG) {
      if (this.unsolicitedDone) return "UnsolicitedDataViolation";
      if (pdu.dataSN !== this.nextUnsolicitedDataSN || pdu.bufferOffset !== this.unsolicitedEnd) return "DataOutOutOfSequence";
      if (pdu.bufferOffset + data.length > this.unsolicitedLimit) return "UnsolicitedDataViolation";
      data.copy(dataOut, pdu.bufferOffset);
      this.nextUnsolicitedDataSN++;
      this.unsolicitedEnd += data.length;
      this.receivedBytes += data.length;
      this.nextR2tOffset = this.unsolicitedEnd;
      if (pdu.final) this.unsolicitedDone = true;
      return undefined;
    }
    const r2t = this.outstanding.get(pdu.targetTransferTag);
    if (r2t === undefined) return "UnexpectedDataOut";
    if (pdu.dataSN !== r2t.nextDataSN || pdu.bufferOffset !== r2t.offset + r2t.received) return "DataOutOutOfSequence";
    if (r2t.received + data.length > r2t.length) return "DataOutOutOfSequence";
    data.copy(dataOut, pdu.bufferOffset);
    r2t.received += data.length;
    r2t.nextDataSN++;
    this.receivedBytes += data.length;
    if (pdu.final) {
      // RFC 7143 §11.7.1: the F bit ends the sequence an R2T asked for; it must be complete.
      if (r2t.received !== r2t.length) return "DataOutOutOfSequence";
      this.outstanding.delete(pdu.targetTransferTag);
    } else if (r2t.received === r2t.length) {
      return "DataOutOutOfSequence";
    }
    return undefined;
  }

  /**
   * The R2Ts to send now: once the unsolicited burst is over, one per MaxBurstLength of the data
   * still missing, at most MaxOutstandingR2T outstanding (RFC 7143 §13.17).
   */
  nextR2ts(allocateTag: () => number): R2tRequest[] {
    const dataOut = this.dataOut;
    if (dataOut === undefined || !this.unsolicitedDone || this.aborted) return [];
    const requests: R2tRequest[] = [];
    while (this.outstanding.size < this.limits.maxOutstandingR2T && this.nextR2tOffset < dataOut.length) {
      const length = Math.min(this.limits.maxBurstLengthBytes, dataOut.length - this.nextR2tOffset);
      const request = { targetTransferTag: allocateTag(), r2tSN: this.nextR2tSN++, offset: this.nextR2tOffset, length };
      this.outstanding.set(request.targetTransferTag, { offset: request.offset, length, received: 0, nextDataSN: 0 });
      this.nextR2tOffset += length;
      this.dataSNCount++;
      requests.push(request);
    }
    return requests;
  }

  /** Settles once the task is finished (answered or aborted). */
  get finished(): Promise<void> {
    if (this.state === "finished") return Promise.resolve();
    return new Promise((resolve) => {
      (this.finishWaiters ??= []).push(resolve);
    });
  }

  /** Marks the task aborted: its result is dropped and the SCSI layer sees `aborted` (SAM-5 §7.2). */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.outstanding.clear();
    if (this.state === "collecting") this.finish();
  }

  /**
   * The task is done: answered (its ScsiTarget.execute settled, so the SCSI layer and the device no
   * longer use the Data-Out, per the BlockDevice contract) or aborted before it executed.
   */
  finish(): void {
    if (this.state === "finished") return;
    this.state = "finished";
    if (this.dataOut !== undefined) payloadBufferPool.release(this.dataOut);
    for (const resolve of this.finishWaiters ?? []) resolve();
    this.finishWaiters = undefined;
  }
}

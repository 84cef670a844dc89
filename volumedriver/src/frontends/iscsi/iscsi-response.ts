// How a finished SCSI command goes back to the initiator (RFC 7143 §11.4, §11.7): Data-In PDUs no
// longer than the initiator's MaxRecvDataSegmentLength, a sequence (F bit) at most MaxBurstLength
// long, and the status either in the last Data-In (phase collapse, S bit: GOOD without sense) or in
// a SCSI Response that carries the sense data. Residuals compare the bytes the command wanted with
// the initiator's Expected Data Transfer Length.
import { payloadBufferPool } from "../nbd/payload-buffer-pool.ts";
import { SCSI_RESPONSE } from "./iscsi-errors.ts";
import { RESERVED_TAG, type TargetPdu } from "./iscsi-pdu.ts";
import { SCSI_STATUS, type ScsiResult } from "./scsi/scsi-types.ts";

export interface ResponseContext {
  /** Queues a PDU; onFlushed runs once its bytes left (or can no longer leave) for the socket. */
  send(pdu: TargetPdu, onFlushed?: () => void): void;
  numbers(advanceStatSN: boolean): { statSN: number; expCmdSN: number; maxCmdSN: number };
  initiatorMaxRecvDataSegmentLengthBytes: number;
  maxBurstLengthBytes: number;
}

/** What the response needs to know of the command. */
export interface RespondedCommand {
  initiatorTaskTag: number;
  lunField: bigint;
  expectedDataTransferLength: number;
  read: boolean;
  write: boolean;
  /** Data-In and R2T PDUs already sent for it (its next DataSN). */
  dataSNCount: number;
}

export interface CommandOutcome {
  /** RFC 7143 §11.4.3: 0 completed at target (status valid), 1 target failure. */
  response: number;
  result: ScsiResult;
}

/** A result from the ScsiTarget, or a target failure when it had none (it threw: a bug below us). */
export function commandResult(result: ScsiResult | undefined): CommandOutcome {
  if (result === undefined) return { response: SCSI_RESPONSE.TARGET_FAILURE, result: { status: SCSI_STATUS.CHECK_CONDITION } };
  return { response: SCSI_RESPONSE.COMMAND_COMPLETED, result };
}

interface Residual {
  overflow: boolean;
  underflow: boolean;
  residualCount: number;
}

/**
 * RFC 7143 §11.4.5: underflow when the command moved fewer bytes than the EDTL, overflow when it
 * wanted more (the excess was not transferred). The bytes wanted come from the SCSI layer when it
 * knows them; else they are the Data-In returned (reads) or the EDTL (writes and no-data commands).
 */
function residualOf(command: RespondedCommand, result: ScsiResult, dataInBytes: number): Residual {
  const expected = command.expectedDataTransferLength;
  const wanted = result.transferLengthBytes ?? (command.read ? dataInBytes : expected);
  if (wanted > expected) return { overflow: true, underflow: false, residualCount: wanted - expected };
  if (wanted < expected) return { overflow: false, underflow: true, residualCount: expected - wanted };
  return { overflow: false, underflow: false, residualCount: 0 };
}

/** Sends the Data-In and status of one command. */
export function respondToCommand(context: ResponseContext, command: RespondedCommand, outcome: CommandOutcome): void {
  const { result } = outcome;
  const dataIn = command.read && result.dataIn !== undefined && result.dataIn.length > 0
    ? result.dataIn.subarray(0, command.expectedDataTransferLength) : undefined;
  const dataInBytes = dataIn?.length ?? 0;
  const residual = residualOf(command, result, dataInBytes);
  const collapse = dataIn !== undefined && outcome.response === SCSI_RESPONSE.COMMAND_COMPLETED && result.status === SCSI_STATUS.GOOD
    && (result.sense === undefined || result.sense.length === 0);
  if (dataIn !== undefined) sendDataIn(context, command, dataIn, collapse ? { status: result.status, residual } : undefined);
  if (collapse) return;
  const sense = result.sense !== undefined && result.sense.length > 0 ? result.sense : undefined;
  let data = Buffer.alloc(0);
  if (sense !== undefined) {
    // RFC 7143 §11.4.7: SenseLength (2 bytes) then the sense data.
    data = Buffer.alloc(2 + sense.length);
    data.writeUInt16BE(sense.length, 0);
    sense.copy(data, 2);
  }
  context.send({
    kind: "scsi-response", bidiOverflow: false, bidiUnderflow: false, overflow: residual.overflow, underflow: residual.underflow,
    response: outcome.response, status: result.status, initiatorTaskTag: command.initiatorTaskTag, snackTag: 0, ...context.numbers(true),
    expDataSN: command.dataSNCount, bidiReadResidualCount: 0, residualCount: residual.residualCount, data,
  });
}

function sendDataIn(context: ResponseContext, command: RespondedCommand, dataIn: Buffer, status: { status: number; residual: Residual } | undefined): void {
  const segmentBytesMax = context.initiatorMaxRecvDataSegmentLengthBytes;
  const burstBytesMax = context.maxBurstLengthBytes;
  let burstStart = 0;
  for (let offset = 0; offset < dataIn.length;) {
    const burstEnd = Math.min(burstStart + burstBytesMax, dataIn.length);
    const length = Math.min(segmentBytesMax, burstEnd - offset);
    const end = offset + length;
    const last = end === dataIn.length;
    const withStatus = last && status !== undefined;
    context.send({
      kind: "data-in", final: end === burstEnd, acknowledge: false, overflow: withStatus && status.residual.overflow,
      underflow: withStatus && status.residual.underflow, statusPresent: withStatus, status: withStatus ? status.status : 0,
      lun: command.lunField, initiatorTaskTag: command.initiatorTaskTag, targetTransferTag: RESERVED_TAG, ...context.numbers(withStatus),
      dataSN: command.dataSNCount++, bufferOffset: offset, residualCount: withStatus ? status.residual.residualCount : 0,
      data: dataIn.subarray(offset, end),
    // Data-In from the payload pool (READ, sbc.ts) goes back to it once sent; other buffers are
    // ignored by release().
    }, last ? () => payloadBufferPool.release(dataIn) : undefined);
    offset = end;
    if (end === burstEnd) burstStart = end;
  }
}

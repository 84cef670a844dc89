// The full feature phase of one session (RFC 7143 §4, §11), on its one connection (MaxConnections=1):
// decode each PDU, number it (CmdSN window), validate it at the edge, and dispatch — SCSI commands to
// the ScsiTarget once their Data-Out is complete (immediate data, unsolicited Data-Out, R2Ts), their
// results back as Data-In with phase-collapsed status or a SCSI Response; NOP-Out/In; Text
// (SendTargets); Logout; task management. Protocol errors become Reject PDUs (iscsi-errors.ts) and,
// when ErrorRecoveryLevel 0 cannot repair them, the end of the connection and so of the session.
import { payloadBufferPool } from "../nbd/payload-buffer-pool.ts";
import type { Logger } from "pino";
import { commandResult, respondToCommand, type ResponseContext } from "./iscsi-response.ts";
import { CommandWindow } from "./iscsi-command-window.ts";
import {
  actionForViolation, LOGOUT_RESPONSE, type ProtocolViolation, resultForTransportFailure, TMF_RESPONSE,
  type TransportCommandFailure,
} from "./iscsi-errors.ts";
import type { NegotiatedParameters, SessionType } from "./iscsi-login.ts";
import {
  AHS_TYPE, type DataOutPdu, decodeLun, decodePdu, encodeLun, type InitiatorPdu, type LogoutRequestPdu, type NopOutPdu,
  PduFormatError, RESERVED_TAG, type ScsiCommandPdu, type TargetPdu, type TaskManagementRequestPdu, type TextRequestPdu,
} from "./iscsi-pdu.ts";
import type { FramedPdu } from "./iscsi-pdu-reader.ts";
import { answerTextRequest } from "./iscsi-send-targets.ts";
import {
  ABORTED_TAGS_REMEMBERED_MAX, REJECTIONS_LOGGED_AT_WARN_MAX, type ResolvedIscsiSettings, SESSION_DRAIN_TIMEOUT_MS,
  TASK_ABORT_WAIT_MS_MAX, TEXT_EXCHANGE_PDUS_MAX,
} from "./iscsi-settings.ts";
import { ScsiTask, TASK_ATTRIBUTES } from "./iscsi-task.ts";
import { encodeText, splitText, TextAccumulator, TextFormatError } from "./iscsi-text.ts";
import type { IscsiTargetEntry, IscsiTargetRegistry } from "./iscsi-types.ts";
import type { ScsiNexus, ScsiResult, ScsiTaskManagementFunction } from "./scsi/scsi-types.ts";

/** Immediate commands (I bit) in flight per session; more get "Immediate command reject" (RFC 7143 §11.17.1). */
export const IMMEDIATE_COMMANDS_MAX = 16;

/** RFC 7143 §11.5.1 function codes. */
const TMF_FUNCTION = {
  ABORT_TASK: 1, ABORT_TASK_SET: 2, CLEAR_ACA: 3, CLEAR_TASK_SET: 4, LOGICAL_UNIT_RESET: 5, TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7, TASK_REASSIGN: 8,
} as const;

/** What the session needs from its connection. */
export interface SessionConnection {
  send(pdu: TargetPdu, onFlushed?: () => void): void;
  /** "host:port" the initiator reached us on (for SendTargets). */
  readonly localHost: string;
  readonly localPort: number;
  /** After a Logout Response: end the stream, drop it if the initiator lingers. */
  endGracefully(): void;
  /** A protocol error ERL 0 cannot repair: drop the connection now (after what was written). */
  drop(reason: string): void;
}

/** What the session needs from the server: the other sessions (for resets) and the registry. */
export interface SessionDirectory {
  registry: IscsiTargetRegistry;
  settings: ResolvedIscsiSettings;
  sessionsOfTarget(targetName: string): IscsiSession[];
  sessionEnded(session: IscsiSession): void;
}

export interface SessionIdentity {
  tsih: number;
  type: SessionType;
  initiatorName: string;
  isid: Buffer;
  cid: number;
  target: IscsiTargetEntry | undefined;
  parameters: NegotiatedParameters;
  initialCmdSN: number;
  /** The StatSN of the first response in the full feature phase (the login's continues). */
  nextStatSN: number;
}

/** RFC 7143 §10.? SCSI port names: "<iSCSI name>,i,0x<ISID>" and "<iSCSI name>,t,0x<TPGT>". */
export function nexusFor(initiatorName: string, isid: Buffer, targetName: string, targetPortalGroupTag: number): ScsiNexus {
  return {
    initiatorName,
    initiatorPort: `${initiatorName},i,0x${isid.toString("hex")}`,
    targetPort: `${targetName},t,0x${targetPortalGroupTag.toString(16).padStart(4, "0")}`,
    relativeTargetPortId: 1,
  };
}

interface PendingTextResponse {
  initiatorTaskTag: number;
  targetTransferTag: number;
  segments: Buffer[];
}

export class IscsiSession {
  readonly tsih: number;
  readonly type: SessionType;
  readonly initiatorName: string;
  readonly isid: Buffer;
  readonly cid: number;
  readonly target: IscsiTargetEntry | undefined;
  readonly parameters: NegotiatedParameters;
  readonly nexus: ScsiNexus | undefined;
  private statSN: number;
  private readonly window: CommandWindow;
  private readonly tasks = new Map<number, ScsiTask>();
  /** Tags of tasks aborted or failed early, oldest first: their late Data-Out PDUs are dropped quietly. */
  private readonly abortedTags = new Set<number>();
  private immediateInFlight = 0;
  /** Bytes of Data-Out buffers held by the tasks in the table (bounded by dataOutBytesInFlightMax). */
  private dataOutBytesHeld = 0;
  private nextTransferTag = 1;
  private readonly textRequest = new TextAccumulator();
  private textRequestPdus = 0;
  private textRequestTag: { initiatorTaskTag: number; targetTransferTag: number } | undefined;
  private pendingText: PendingTextResponse | undefined;
  private logoutRequested = false;
  private ended = false;
  private rejections = 0;
  private readonly responseContext: ResponseContext;

  constructor(
    identity: SessionIdentity,
    private readonly connection: SessionConnection,
    private readonly directory: SessionDirectory,
    private readonly logger: Logger,
  ) {
    this.tsih = identity.tsih;
    this.type = identity.type;
    this.initiatorName = identity.initiatorName;
    this.isid = identity.isid;
    this.cid = identity.cid;
    this.target = identity.target;
    this.parameters = identity.parameters;
    this.statSN = identity.nextStatSN >>> 0;
    this.window = new CommandWindow(identity.initialCmdSN, directory.settings.commandWindowSize);
    this.nexus = identity.target === undefined ? undefined
      : nexusFor(identity.initiatorName, identity.isid, identity.target.name, directory.settings.targetPortalGroupTag);
    this.responseContext = {
      send: (pdu, onFlushed) => this.connection.send(pdu, onFlushed),
      numbers: (advance) => this.numbers(advance),
      initiatorMaxRecvDataSegmentLengthBytes: this.parameters.initiatorMaxRecvDataSegmentLengthBytes,
      maxBurstLengthBytes: this.parameters.maxBurstLengthBytes,
    };
  }

  get targetName(): string | undefined {
    return this.target?.name;
  }

  get tasksInFlight(): number {
    return this.tasks.size;
  }

  /** StatSN (advanced when the PDU carries status), ExpCmdSN and MaxCmdSN for the next PDU. */
  numbers(advanceStatSN: boolean): { statSN: number; expCmdSN: number; maxCmdSN: number } {
    const statSN = this.statSN;
    if (advanceStatSN) this.statSN = (this.statSN + 1) >>> 0;
    return { statSN, expCmdSN: this.window.expCmdSN, maxCmdSN: this.window.maxCmdSN(this.tasks.size) };
  }

  /** Handles one PDU of the full feature phase. */
  receive(framed: FramedPdu): void {
    if (this.ended) return;
    let pdu;
    try {
      pdu = decodePdu(framed.bhs, framed.ahs, framed.data);
    } catch (error) {
      if (!(error instanceof PduFormatError)) throw error;
      this.violation(error.reason === "UnknownOpcode" ? "UnknownOpcode" : "InvalidPduField", framed.bhs, error.message);
      return;
    }
    if (!isInitiatorPdu(pdu)) {
      this.violation("UnknownOpcode", framed.bhs, `target opcode ${pdu.kind} sent by the initiator`);
      return;
    }
    if (!framed.dataDigestOk) {
      this.dataDigestError(pdu, framed.bhs);
      return;
    }
    switch (pdu.kind) {
      case "scsi-command":
        this.scsiCommand(pdu, framed.bhs);
        break;
      case "data-out":
        this.dataOut(pdu, framed.bhs);
        break;
      case "nop-out":
        this.nopOut(pdu);
        break;
      case "text-request":
        this.text(pdu, framed.bhs);
        break;
      case "task-management-request":
        void this.taskManagement(pdu, framed.bhs);
        break;
      case "logout-request":
        void this.logout(pdu);
        break;
      case "login-request":
        this.violation("LoginInFullFeaturePhase", framed.bhs, "Login Request in the full feature phase");
        break;
      case "snack-request":
        this.violation("SnackNotSupported", framed.bhs, "SNACK at ErrorRecoveryLevel 0");
        break;
    }
  }

  // ---- errors ----

  /** Sends the Reject the violation calls for and drops the connection when it is unrecoverable. */
  violation(violation: ProtocolViolation, bhs: Buffer, detail: string): void {
    const action = actionForViolation(violation);
    const level = ++this.rejections <= REJECTIONS_LOGGED_AT_WARN_MAX ? "warn" : "debug";
    this.logger[level]({ violation, detail, opcode: bhs[0] & 0x3f, close: action.closeConnection }, "iSCSI protocol error");
    if (action.rejectReason !== undefined) {
      this.connection.send({ kind: "reject", reason: action.rejectReason, ...this.numbers(true), dataSN: 0, data: Buffer.from(bhs) });
    }
    if (action.closeConnection) this.connection.drop(`${violation}: ${detail}`);
  }

  /**
   * RFC 7143 §7.8 at ERL 0: the PDU is rejected and discarded. Data-Out lost this way cannot be asked
   * for again, so its task ends with CHECK CONDITION, PROTOCOL SERVICE CRC ERROR.
   */
  private dataDigestError(pdu: InitiatorPdu, bhs: Buffer): void {
    this.violation("DataDigestError", bhs, `data digest mismatch on ${pdu.kind}`);
    if (pdu.kind !== "data-out") return;
    const task = this.tasks.get(pdu.initiatorTaskTag);
    if (task === undefined || task.state !== "collecting") return;
    this.failCollectingTask(task, "DataDigestError");
  }

  /** Ends a task still waiting for Data-Out with CHECK CONDITION; its later Data-Out PDUs are dropped. */
  private failCollectingTask(task: ScsiTask, failure: TransportCommandFailure): void {
    this.forgetTask(task);
    task.abort();
    this.respondEarly(task.initiatorTaskTag, task.lunField, task.expectedDataTransferLength, failure);
  }

  private rememberAborted(tag: number): void {
    this.abortedTags.add(tag);
    if (this.abortedTags.size > ABORTED_TAGS_REMEMBERED_MAX) {
      const oldest = this.abortedTags.values().next().value as number;
      this.abortedTags.delete(oldest);
    }
  }

  private forgetTask(task: ScsiTask): void {
    this.removeTask(task);
    this.rememberAborted(task.initiatorTaskTag);
  }

  /** Drops a task from the table, with its share of the immediate-command and Data-Out budgets. */
  private removeTask(task: ScsiTask): void {
    if (this.tasks.get(task.initiatorTaskTag) !== task) return;
    this.tasks.delete(task.initiatorTaskTag);
    if (task.immediate) this.immediateInFlight--;
    this.dataOutBytesHeld -= task.dataOut?.length ?? 0;
  }

  /** A SCSI Response for a command refused by the transport before it became a task. */
  private respondEarly(initiatorTaskTag: number, lunField: bigint, expectedDataTransferLength: number, failure: TransportCommandFailure): void {
    this.rememberAborted(initiatorTaskTag);
    respondToCommand(this.responseContext, { initiatorTaskTag, lunField, expectedDataTransferLength, read: false, write: false, dataSNCount: 0 },
      commandResult(resultForTransportFailure(failure)));
  }

  // ---- SCSI commands and their data ----

  private scsiCommand(pdu: ScsiCommandPdu, bhs: Buffer): void {
    if (this.window.receive(pdu.cmdSN, pdu.immediate) === "ignore") {
      this.logger.debug({ cmdSN: pdu.cmdSN, expCmdSN: this.window.expCmdSN }, "command outside the CmdSN window ignored");
      return;
    }
    const target = this.target;
    if (target === undefined || this.nexus === undefined) return this.violation("NotInDiscoverySession", bhs, "SCSI command");
    if (this.logoutRequested) return this.violation("WaitingForLogout", bhs, "SCSI command after Logout");
    if (pdu.initiatorTaskTag === RESERVED_TAG) return this.violation("InvalidPduField", bhs, "reserved Initiator Task Tag");
    if (this.tasks.has(pdu.initiatorTaskTag)) return this.violation("TaskTagInUse", bhs, `ITT 0x${pdu.initiatorTaskTag.toString(16)}`);
    if (pdu.immediate && this.immediateInFlight >= IMMEDIATE_COMMANDS_MAX) return this.violation("TooManyImmediateCommands", bhs, "immediate commands");
    const data = pdu.data ?? Buffer.alloc(0);
    const parameters = this.parameters;
    if (data.length > 0 && (!parameters.immediateData || !pdu.write || data.length > parameters.firstBurstLengthBytes
      || data.length > pdu.expectedDataTransferLength)) {
      return this.violation("UnsolicitedDataViolation", bhs, `${data.length} bytes of immediate data`);
    }
    const edtl = pdu.expectedDataTransferLength;
    const lun = decodeLun(pdu.lun);
    const early = lun === undefined ? "LunNotAddressable"
      : pdu.read && pdu.write ? "BidirectionalNotSupported"
        : edtl > this.directory.settings.transferLengthBytesMax ? "TransferTooLong"
          : this.tasks.size >= this.directory.settings.outstandingTasksMax ? "TaskSetFull"
            // Data-Out is buffered whole: past the session's budget a write waits its turn (TASK SET
            // FULL makes the initiator retry), unless nothing else is in flight to free room.
            : pdu.write && this.tasks.size > 0 && this.dataOutBytesHeld + edtl > this.directory.settings.dataOutBytesInFlightMax ? "TaskSetFull"
              : undefined;
    if (early !== undefined) {
      this.logger.debug({ failure: early, itt: pdu.initiatorTaskTag, edtl }, "SCSI command refused by the transport");
      this.respondEarly(pdu.initiatorTaskTag, pdu.lun, edtl, early);
      return;
    }
    let cdb = pdu.cdb;
    const extended = pdu.ahs?.find((segment) => segment.type === AHS_TYPE.EXTENDED_CDB);
    if (extended !== undefined) cdb = Buffer.concat([cdb, extended.data]);
    const task = new ScsiTask(pdu.initiatorTaskTag, lun as number, pdu.lun, pdu.cmdSN, pdu.immediate, cdb, edtl, pdu.read, pdu.write,
      TASK_ATTRIBUTES[pdu.taskAttribute], pdu.final, parameters);
    const problem = task.immediateData(data);
    // The reader copies a data segment that spans socket chunks into a pooled buffer: now copied
    // into the task, it can go back (release() ignores views of socket chunks).
    payloadBufferPool.release(data);
    if (problem !== undefined) return this.violation(problem, bhs, "immediate data");
    this.tasks.set(task.initiatorTaskTag, task);
    if (task.immediate) this.immediateInFlight++;
    this.dataOutBytesHeld += task.dataOut?.length ?? 0;
    this.advanceDataPhase(task);
  }

  private dataOut(pdu: DataOutPdu, bhs: Buffer): void {
    const task = this.tasks.get(pdu.initiatorTaskTag);
    if (task === undefined || task.state !== "collecting") {
      // Data-Out for a task that was aborted or refused (RFC 7143 §4.2.3.3: discarded).
      if (this.abortedTags.has(pdu.initiatorTaskTag)) return;
      this.violation("UnexpectedDataOut", bhs, `Data-Out for ITT 0x${pdu.initiatorTaskTag.toString(16)} that expects none`);
      return;
    }
    const problem = task.dataOutReceived(pdu);
    if (pdu.data !== undefined) payloadBufferPool.release(pdu.data); // copied into the task (see scsiCommand)
    if (problem !== undefined) {
      this.violation(problem, bhs, `Data-Out DataSN ${pdu.dataSN} offset ${pdu.bufferOffset} TTT 0x${pdu.targetTransferTag.toString(16)}`);
      if (problem === "DataOutOutOfSequence") this.failCollectingTask(task, "DataPhaseError");
      return;
    }
    this.advanceDataPhase(task);
  }

  /** Sends the R2Ts the task may have outstanding, or runs it once all its data is in. */
  private advanceDataPhase(task: ScsiTask): void {
    if (task.dataComplete) {
      void this.execute(task);
      return;
    }
    for (const r2t of task.nextR2ts(() => this.allocateTransferTag())) {
      this.connection.send({
        kind: "r2t", lun: task.lunField, initiatorTaskTag: task.initiatorTaskTag, targetTransferTag: r2t.targetTransferTag,
        ...this.numbers(false), r2tSN: r2t.r2tSN, bufferOffset: r2t.offset, desiredDataTransferLength: r2t.length,
      });
    }
  }

  private allocateTransferTag(): number {
    const tag = this.nextTransferTag;
    this.nextTransferTag = this.nextTransferTag >= 0xffff_fffe ? 1 : this.nextTransferTag + 1;
    return tag;
  }

  /** Runs a task whose Data-Out is complete and answers it (unless aborted meanwhile). Never rejects. */
  private async execute(task: ScsiTask): Promise<void> {
    task.state = "executing";
    const target = this.target as IscsiTargetEntry;
    let result: ScsiResult | undefined;
    try {
      result = await target.scsiTarget.execute({
        nexus: this.nexus as ScsiNexus, lun: task.lun, cdb: task.cdb, dataOut: task.dataOut,
        expectedDataTransferLengthBytes: task.expectedDataTransferLength, taskAttribute: task.taskAttribute,
        signal: task,
      });
    } catch (error) {
      // The ScsiTarget contract is never to reject: this is a bug below the transport.
      this.logger.error({ err: error, itt: task.initiatorTaskTag, opcode: task.cdb[0] }, "ScsiTarget.execute rejected");
    }
    this.removeTask(task);
    if (!task.aborted && !this.ended) respondToCommand(this.responseContext, task, commandResult(result));
    task.finish();
  }

  // ---- NOP, Text, Logout ----

  private nopOut(pdu: NopOutPdu): void {
    if (pdu.initiatorTaskTag === RESERVED_TAG) {
      // The answer to our NOP-In ping (RFC 7143 §11.18): nothing to send back.
      this.pingAnswered?.(pdu.targetTransferTag);
      return;
    }
    if (this.window.receive(pdu.cmdSN, pdu.immediate) === "ignore") return;
    const data = pdu.data ?? Buffer.alloc(0);
    const echo = data.subarray(0, Math.min(data.length, this.parameters.initiatorMaxRecvDataSegmentLengthBytes));
    this.connection.send({
      kind: "nop-in", lun: pdu.lun, initiatorTaskTag: pdu.initiatorTaskTag, targetTransferTag: RESERVED_TAG, ...this.numbers(true),
      data: Buffer.from(echo),
    });
  }

  /** Set by the connection: called with the TTT of each NOP-Out that answers a ping. */
  pingAnswered: ((targetTransferTag: number) => void) | undefined;

  /** A NOP-In ping (RFC 7143 §11.19: ITT reserved, a TTT the initiator must echo; StatSN not advanced). */
  ping(): number {
    const targetTransferTag = this.allocateTransferTag();
    this.connection.send({
      kind: "nop-in", lun: 0n, initiatorTaskTag: RESERVED_TAG, targetTransferTag, ...this.numbers(false), data: Buffer.alloc(0),
    });
    return targetTransferTag;
  }

  private text(pdu: TextRequestPdu, bhs: Buffer): void {
    if (this.window.receive(pdu.cmdSN, pdu.immediate) === "ignore") return;
    const pending = this.pendingText;
    if (pdu.targetTransferTag !== RESERVED_TAG && pending !== undefined && pdu.targetTransferTag === pending.targetTransferTag
      && pdu.initiatorTaskTag === pending.initiatorTaskTag) {
      this.sendTextSegment(pending);
      return;
    }
    this.pendingText = undefined;
    if (pdu.targetTransferTag !== RESERVED_TAG) {
      const expected = this.textRequestTag;
      if (expected === undefined || expected.targetTransferTag !== pdu.targetTransferTag || expected.initiatorTaskTag !== pdu.initiatorTaskTag) {
        this.textRequest.reset();
        this.violation("InvalidPduField", bhs, `Text Request with unknown TTT 0x${pdu.targetTransferTag.toString(16)}`);
        return;
      }
    } else if (this.textRequest.pending) {
      // A new exchange replaces an unfinished one (RFC 7143 §11.10.2).
      this.textRequest.reset();
      this.textRequestPdus = 0;
    }
    let pairs;
    try {
      if (++this.textRequestPdus > TEXT_EXCHANGE_PDUS_MAX) throw new TextFormatError(`more than ${TEXT_EXCHANGE_PDUS_MAX} Text Request PDUs`);
      pairs = this.textRequest.append(pdu.data ?? Buffer.alloc(0), pdu.continue);
    } catch (error) {
      if (!(error instanceof TextFormatError)) throw error;
      this.textRequest.reset();
      this.textRequestPdus = 0;
      this.violation("InvalidPduField", bhs, error.message);
      return;
    }
    if (pairs === undefined) {
      // RFC 7143 §11.11: more request text to come: an empty response with a TTT to continue with.
      const targetTransferTag = this.allocateTransferTag();
      this.textRequestTag = { initiatorTaskTag: pdu.initiatorTaskTag, targetTransferTag };
      this.connection.send({
        kind: "text-response", final: false, continue: false, lun: pdu.lun, initiatorTaskTag: pdu.initiatorTaskTag, targetTransferTag,
        ...this.numbers(true), data: Buffer.alloc(0),
      });
      return;
    }
    this.textRequestPdus = 0;
    this.textRequestTag = undefined;
    const answers = answerTextRequest(pairs, {
      registry: this.directory.registry, initiatorName: this.initiatorName, discovery: this.type === "Discovery",
      sessionTarget: this.target?.name, portal: `${portalHost(this.connection.localHost)}:${this.connection.localPort},${this.directory.settings.targetPortalGroupTag}`,
    });
    const segments = splitText(encodeText(answers), this.parameters.initiatorMaxRecvDataSegmentLengthBytes);
    this.sendTextSegment({ initiatorTaskTag: pdu.initiatorTaskTag, targetTransferTag: RESERVED_TAG, segments });
  }

  /** Sends the next segment of a text response; C and a TTT while more follows (RFC 7143 §11.11.1). */
  private sendTextSegment(response: PendingTextResponse): void {
    const segment = response.segments.shift() ?? Buffer.alloc(0);
    const more = response.segments.length > 0;
    const targetTransferTag = more ? this.allocateTransferTag() : RESERVED_TAG;
    this.pendingText = more ? { ...response, targetTransferTag } : undefined;
    this.connection.send({
      kind: "text-response", final: !more, continue: more, lun: 0n, initiatorTaskTag: response.initiatorTaskTag, targetTransferTag,
      ...this.numbers(true), data: segment,
    });
  }

  private async logout(pdu: LogoutRequestPdu): Promise<void> {
    if (this.window.receive(pdu.cmdSN, pdu.immediate) === "ignore") return;
    let response: number = LOGOUT_RESPONSE.CLOSED_SUCCESSFULLY;
    if (pdu.reasonCode === 2) response = LOGOUT_RESPONSE.RECOVERY_NOT_SUPPORTED;
    else if (pdu.reasonCode === 1 && pdu.cid !== this.cid) response = LOGOUT_RESPONSE.CID_NOT_FOUND;
    else if (pdu.reasonCode > 2) response = LOGOUT_RESPONSE.CLEANUP_FAILED;
    const closing = response === LOGOUT_RESPONSE.CLOSED_SUCCESSFULLY;
    if (closing) {
      this.logoutRequested = true;
      // Commands already received finish first (bounded): their responses precede the Logout Response.
      await this.whenIdle(SESSION_DRAIN_TIMEOUT_MS);
    }
    if (this.ended) return;
    this.logger.debug({ reasonCode: pdu.reasonCode, response }, "iSCSI logout");
    this.connection.send({
      kind: "logout-response", response, initiatorTaskTag: pdu.initiatorTaskTag, ...this.numbers(true),
      time2WaitSeconds: this.parameters.defaultTime2WaitSeconds, time2RetainSeconds: this.parameters.defaultTime2RetainSeconds,
    });
    if (closing) {
      this.end("logout");
      this.connection.endGracefully();
    }
  }

  // ---- task management ----

  private async taskManagement(pdu: TaskManagementRequestPdu, bhs: Buffer): Promise<void> {
    if (this.window.receive(pdu.cmdSN, pdu.immediate) === "ignore") return;
    const target = this.target;
    const nexus = this.nexus;
    if (target === undefined || nexus === undefined) return this.violation("NotInDiscoverySession", bhs, "task management");
    const lun = decodeLun(pdu.lun);
    const response = await this.runTaskManagement(pdu, target, nexus, lun);
    if (this.ended) return;
    this.logger.debug({ function: pdu.function, lun, referencedTaskTag: pdu.referencedTaskTag, response }, "iSCSI task management");
    this.connection.send({ kind: "task-management-response", response, initiatorTaskTag: pdu.initiatorTaskTag, ...this.numbers(true) });
    if (pdu.function === TMF_FUNCTION.TARGET_COLD_RESET && response === TMF_RESPONSE.FUNCTION_COMPLETE) {
      // RFC 7143 §11.5.1: after a cold reset the target drops all its sessions.
      for (const session of this.directory.sessionsOfTarget(target.name)) session.connection.drop("TARGET COLD RESET");
    }
  }

  private async runTaskManagement(pdu: TaskManagementRequestPdu, target: IscsiTargetEntry, nexus: ScsiNexus, lun: number | undefined): Promise<number> {
    const everySession = (): IscsiSession[] => this.directory.sessionsOfTarget(target.name);
    let fn: ScsiTaskManagementFunction;
    let aborted: ScsiTask[];
    switch (pdu.function) {
      case TMF_FUNCTION.ABORT_TASK: {
        const task = this.tasks.get(pdu.referencedTaskTag);
        if (task === undefined || lun === undefined || task.lun !== lun) return this.abortMissingTask(pdu);
        fn = "abort-task";
        this.forgetTask(task);
        task.abort();
        aborted = [task];
        break;
      }
      case TMF_FUNCTION.ABORT_TASK_SET:
        if (lun === undefined) return TMF_RESPONSE.LUN_DOES_NOT_EXIST;
        fn = "abort-task-set";
        aborted = this.tasksOn(lun);
        break;
      case TMF_FUNCTION.CLEAR_TASK_SET:
        if (lun === undefined) return TMF_RESPONSE.LUN_DOES_NOT_EXIST;
        fn = "clear-task-set";
        aborted = everySession().flatMap((session) => session.tasksOn(lun));
        break;
      case TMF_FUNCTION.LOGICAL_UNIT_RESET:
        if (lun === undefined) return TMF_RESPONSE.LUN_DOES_NOT_EXIST;
        fn = "lun-reset";
        aborted = everySession().flatMap((session) => session.tasksOn(lun));
        break;
      case TMF_FUNCTION.TARGET_WARM_RESET:
      case TMF_FUNCTION.TARGET_COLD_RESET:
        fn = pdu.function === TMF_FUNCTION.TARGET_WARM_RESET ? "target-warm-reset" : "target-cold-reset";
        aborted = everySession().flatMap((session) => session.tasksOn(undefined));
        break;
      case TMF_FUNCTION.CLEAR_ACA:
        return TMF_RESPONSE.FUNCTION_NOT_SUPPORTED;
      case TMF_FUNCTION.TASK_REASSIGN:
        // RFC 7143 §11.5.1: TASK REASSIGN needs ErrorRecoveryLevel 2.
        return TMF_RESPONSE.TASK_ALLEGIANCE_REASSIGNMENT_NOT_SUPPORTED;
      default:
        return TMF_RESPONSE.FUNCTION_REJECTED;
    }
    await abortTasks(aborted);
    try {
      return await target.scsiTarget.taskManagement(nexus, fn, lun ?? 0, fn === "abort-task" ? pdu.referencedTaskTag : undefined);
    } catch (error) {
      this.logger.error({ err: error, fn }, "ScsiTarget.taskManagement rejected");
      return TMF_RESPONSE.FUNCTION_REJECTED;
    }
  }

  /**
   * RFC 7143 §11.5.1 ABORT TASK for a tag we do not hold: if the referenced command was never
   * received (its RefCmdSN inside the window, before the TMF's CmdSN), it counts as received and the
   * function is complete; otherwise the task does not exist (it finished already, or never existed).
   */
  private abortMissingTask(pdu: TaskManagementRequestPdu): number {
    if (this.window.isPending(pdu.refCmdSN, pdu.cmdSN)) {
      this.window.considerReceived(pdu.refCmdSN);
      this.rememberAborted(pdu.referencedTaskTag);
      return TMF_RESPONSE.FUNCTION_COMPLETE;
    }
    return TMF_RESPONSE.TASK_DOES_NOT_EXIST;
  }

  /** The tasks of this session on `lun` (all LUNs when undefined), marked aborted and forgotten. */
  tasksOn(lun: number | undefined): ScsiTask[] {
    const matching = [...this.tasks.values()].filter((task) => lun === undefined || task.lun === lun);
    for (const task of matching) {
      this.forgetTask(task);
      task.abort();
    }
    return matching;
  }

  // ---- end of the session ----

  /** Resolves once no task is in flight, or after `timeoutMs`. */
  async whenIdle(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.tasks.size > 0 && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
      });
      await Promise.race([Promise.all([...this.tasks.values()].map((task) => task.finished)), timeout]);
      clearTimeout(timer);
    }
  }

  /**
   * The session is over (logout, connection loss, reinstatement, shutdown): tasks still running are
   * aborted (at ERL 0 nothing survives the connection), the SCSI layer forgets the nexus.
   */
  end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const task of this.tasks.values()) task.abort();
    this.tasks.clear();
    this.logger.debug({ reason, tsih: this.tsih }, "iSCSI session ended");
    if (this.nexus !== undefined && this.target !== undefined) {
      try {
        this.target.scsiTarget.nexusLost(this.nexus);
      } catch (error) {
        this.logger.error({ err: error }, "ScsiTarget.nexusLost threw");
      }
    }
    this.directory.sessionEnded(this);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Server shutdown or reinstatement: end now and drop the connection. */
  terminate(reason: string): void {
    this.end(reason);
    this.connection.drop(reason);
  }

  /** LUN field for a flat LUN (used by tests and the Async Message path). */
  static lunField(lun: number): bigint {
    return encodeLun(lun);
  }
}

function isInitiatorPdu(pdu: { kind: string }): pdu is InitiatorPdu {
  return ["nop-out", "scsi-command", "task-management-request", "login-request", "text-request", "data-out", "logout-request",
    "snack-request"].includes(pdu.kind);
}

function portalHost(host: string): string {
  // An IPv4-mapped IPv6 address is reported as ::ffff:a.b.c.d; initiators want the IPv4 form.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
  if (mapped !== null) return mapped[1] as string;
  return host.includes(":") ? `[${host}]` : host;
}

/** Waits (bounded) for aborted tasks to stop: their execute() settles once the signal is seen. */
async function abortTasks(tasks: readonly ScsiTask[]): Promise<void> {
  if (tasks.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, TASK_ABORT_WAIT_MS_MAX);
  });
  await Promise.race([Promise.all(tasks.map((task) => task.finished)), timeout]);
  clearTimeout(timer);
}

// The SCSI target device the iSCSI transport talks to: logical units by LUN (added and removed at
// run time), and the dispatch every command goes through — unit attention (SAM-5 §5.14), the
// command table, reservation conflicts (RESERVE(6) and persistent), the handler — with every
// exception turned into a status and sense, and Data-In bounded by the Expected Data Transfer
// Length. Task management resets logical units (SAM-5 §7); aborting tasks is the transport's part.
import { findCommand, type CommandDescriptor } from "./command-table.ts";
import { allocationLength, OPCODE } from "./cdb.ts";
import { DEFAULT_MODE_PARAMETERS, DEFAULT_SCSI_BLOCK_LIMITS, LogicalUnit, type ScsiBlockLimits, type TargetView } from "./logical-unit.ts";
import {
  checkCondition, checkConditionForError, invalidCdbField, ReservationConflictError, TaskAbortedError,
} from "./sense-table.ts";
import {
  SCSI_STATUS, type ScsiCommand, type ScsiLogicalUnitConfig, type ScsiNexus, type ScsiResult, type ScsiTarget,
  type ScsiTaskManagementFunction,
} from "./scsi-types.ts";
import { requestedTransferBytes } from "./sbc.ts";
import { PERIPHERAL_NOT_SUPPORTED, reportLunsData, requestSenseWithoutUnit, standardInquiryData } from "./spc.ts";
import { nexusKeyOf } from "./unit-attention.ts";

/** Task management responses (RFC 7143 §11.6.1). */
export const TMF_RESPONSE = {
  FUNCTION_COMPLETE: 0,
  TASK_DOES_NOT_EXIST: 1,
  LUN_DOES_NOT_EXIST: 2,
  FUNCTION_NOT_SUPPORTED: 5,
} as const;

/** The highest LUN the flat address method can carry (SAM-5 §4.7.7.4). */
export const LUN_MAX = 16_383;

export interface ScsiTargetOptions {
  limits?: ScsiBlockLimits;
}

export class ScsiTargetImpl implements ScsiTarget, TargetView {
  private readonly units = new Map<number, LogicalUnit>();
  private readonly limits: ScsiBlockLimits;

  constructor(options: ScsiTargetOptions = {}) {
    this.limits = options.limits ?? DEFAULT_SCSI_BLOCK_LIMITS;
  }

  /**
   * Adds a logical unit (loading its APTPL reservations). Every nexus of the other LUNs learns
   * REPORTED LUNS DATA HAS CHANGED (SPC-5 §6.33).
   */
  async addLogicalUnit(config: ScsiLogicalUnitConfig): Promise<void> {
    if (!Number.isInteger(config.lun) || config.lun < 0 || config.lun > LUN_MAX) throw new Error(`LUN ${config.lun} is outside 0-${LUN_MAX}`);
    if (this.units.has(config.lun)) throw new Error(`LUN ${config.lun} already exists`);
    const unit = new LogicalUnit(config, this.limits);
    await unit.open();
    if (this.units.has(config.lun)) throw new Error(`LUN ${config.lun} already exists`);
    this.units.set(config.lun, unit);
    this.lunInventoryChanged();
  }

  /** Removes a logical unit; false when there was none. Its in-flight commands finish on the device. */
  removeLogicalUnit(lun: number): boolean {
    if (!this.units.delete(lun)) return false;
    this.lunInventoryChanged();
    return true;
  }

  /** The logical unit object (tests and management). */
  logicalUnit(lun: number): LogicalUnit | undefined {
    return this.units.get(lun);
  }

  private lunInventoryChanged(): void {
    for (const unit of this.units.values()) unit.unitAttentions.establishForAll("UaReportedLunsDataHasChanged");
  }

  luns(): number[] {
    return [...this.units.keys()].sort((a, b) => a - b);
  }

  async execute(command: ScsiCommand): Promise<ScsiResult> {
    let descriptor: CommandDescriptor | undefined;
    try {
      const cdb = command.cdb;
      if (cdb.length < 6) return checkCondition("InvalidFieldInCdb", { fieldPointer: { inCdb: true, byteOffset: 0 } });
      const unit = this.units.get(command.lun);
      if (unit === undefined) return this.withoutUnit(command);
      const nexusKey = nexusKeyOf(command.nexus);
      unit.unitAttentions.noteNexus(nexusKey);
      unit.noticeCapacityChange();
      const attention = unit.unitAttentions.check(nexusKey, cdb[0]);
      if (attention !== undefined) return checkCondition(attention);
      descriptor = findCommand(cdb);
      if (descriptor === undefined) {
        return checkCondition("InvalidCommandOperationCode", { fieldPointer: { inCdb: true, byteOffset: 0, bit: 7 } });
      }
      if (cdb.length < descriptor.usage.length) throw invalidCdbField(0);
      if (this.reservationConflict(unit, command.nexus, nexusKey, descriptor)) return { status: SCSI_STATUS.RESERVATION_CONFLICT };
      const dataIn = await descriptor.handler({ command, lu: unit, nexusKey, target: this });
      return withTransferLength(bounded(dataIn, command), command);
    } catch (error) {
      if (error instanceof TaskAbortedError) return { status: SCSI_STATUS.TASK_ABORTED };
      if (error instanceof ReservationConflictError) return { status: SCSI_STATUS.RESERVATION_CONFLICT };
      return withTransferLength(checkConditionForError(error, descriptor?.access === "write"), command);
    }
  }

  /** RESERVE(6) held by another nexus (SPC-2 §5.5.1), then the persistent reservation table. */
  private reservationConflict(unit: LogicalUnit, nexus: ScsiNexus, nexusKey: string, descriptor: CommandDescriptor): boolean {
    const holder = unit.legacyReservationHolder;
    if (holder !== undefined && holder !== nexusKey && !descriptor.allowedUnderLegacyReservation) return true;
    return unit.reservations.conflicts(nexus, descriptor.access);
  }

  /** SPC-5 §6.7.2, §6.33, §6.39: a LUN we do not serve still answers INQUIRY, REPORT LUNS, REQUEST SENSE. */
  private withoutUnit(command: ScsiCommand): ScsiResult {
    const cdb = command.cdb;
    switch (cdb[0]) {
      case OPCODE.INQUIRY: {
        if ((cdb[1] & 0x01) !== 0 || cdb[2] !== 0) return checkCondition("LogicalUnitNotSupported");
        const data = standardInquiryData(PERIPHERAL_NOT_SUPPORTED);
        return bounded(data.subarray(0, Math.min(data.length, allocationLength(cdb))), command);
      }
      case OPCODE.REPORT_LUNS:
        return bounded(reportLunsData(cdb, this.luns()), command);
      case OPCODE.REQUEST_SENSE:
        return bounded(requestSenseWithoutUnit(cdb), command);
      default:
        return checkCondition("LogicalUnitNotSupported");
    }
  }

  async taskManagement(_nexus: ScsiNexus, fn: ScsiTaskManagementFunction, lun: number, _referencedTaskTag?: number): Promise<number> {
    switch (fn) {
      case "abort-task":
      case "abort-task-set":
      case "clear-task-set":
        // The transport owns the tasks and fires their AbortSignals; nothing of ours to undo.
        return this.units.has(lun) ? TMF_RESPONSE.FUNCTION_COMPLETE : TMF_RESPONSE.LUN_DOES_NOT_EXIST;
      case "lun-reset": {
        const unit = this.units.get(lun);
        if (unit === undefined) return TMF_RESPONSE.LUN_DOES_NOT_EXIST;
        resetLogicalUnit(unit, "UaBusDeviceResetFunctionOccurred");
        return TMF_RESPONSE.FUNCTION_COMPLETE;
      }
      case "target-warm-reset":
      case "target-cold-reset":
        for (const unit of this.units.values()) resetLogicalUnit(unit, "UaPowerOnReset");
        return TMF_RESPONSE.FUNCTION_COMPLETE;
      default:
        return TMF_RESPONSE.FUNCTION_NOT_SUPPORTED;
    }
  }

  nexusLost(nexus: ScsiNexus): void {
    const nexusKey = nexusKeyOf(nexus);
    for (const unit of this.units.values()) {
      // SPC-2 §5.5.1: an I_T nexus loss releases its RESERVE(6); persistent reservations stay.
      if (unit.legacyReservationHolder === nexusKey) unit.legacyReservationHolder = undefined;
      unit.unitAttentions.forget(nexusKey);
    }
  }
}

/**
 * SAM-5 §6.3.3 logical unit reset: RESERVE(6) released, mode parameters back to their defaults, a
 * unit attention for every nexus (BUS DEVICE RESET FUNCTION OCCURRED after a LOGICAL UNIT RESET,
 * POWER ON, RESET after a target reset). Persistent reservations survive (SPC-5 §5.13.1).
 */
function resetLogicalUnit(unit: LogicalUnit, reason: "UaBusDeviceResetFunctionOccurred" | "UaPowerOnReset"): void {
  unit.legacyReservationHolder = undefined;
  Object.assign(unit.mode, DEFAULT_MODE_PARAMETERS);
  unit.unitAttentions.reset(reason);
}

/** GOOD with Data-In cut to the Expected Data Transfer Length (the transport reports the residual). */
function bounded(dataIn: Buffer | undefined, command: ScsiCommand): ScsiResult {
  if (dataIn === undefined || dataIn.length === 0) return { status: SCSI_STATUS.GOOD };
  const limit = Math.max(0, command.expectedDataTransferLengthBytes);
  return { status: SCSI_STATUS.GOOD, dataIn: dataIn.length <= limit ? dataIn : dataIn.subarray(0, limit) };
}

/**
 * Adds the bytes the CDB asked to move, so the transport can report residuals (block commands only).
 * The result is always one bounded() or checkCondition*() made for this command: set it in place.
 */
function withTransferLength(result: ScsiResult, command: ScsiCommand): ScsiResult {
  const transferLengthBytes = requestedTransferBytes(command.cdb);
  if (transferLengthBytes !== undefined) result.transferLengthBytes = transferLengthBytes;
  return result;
}

/** A target with no logical units yet. */
export function createScsiTarget(options: ScsiTargetOptions = {}): ScsiTargetImpl {
  return new ScsiTargetImpl(options);
}

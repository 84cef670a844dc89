// The one place where the SCSI command set maps failures to the wire: every reason a command can
// fail (or a unit attention can be reported) has one row here with its sense key, additional sense
// code and qualifier (SPC-5 §4.4.1, Table 28 "Sense key descriptions" and Annex F "ASC/ASCQ
// assignments"), and the engine's VolumeError kinds map to those rows here too. Nothing else in
// scsi/ picks a sense key. Sense data is built in fixed format (SPC-5 §4.4.3): D_SENSE in the
// control mode page is 0 and not changeable.
import { isVolumeError, type VolumeErrorKind } from "../../../engine/block-device.ts";
import { SCSI_STATUS, type ScsiAbortFlag, type ScsiResult } from "./scsi-types.ts";

/** SPC-5 §4.4.1 Table 28. */
export const SENSE_KEY = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  ABORTED_COMMAND: 0xb,
  MISCOMPARE: 0xe,
} as const;

export interface SenseCode {
  key: number;
  asc: number;
  ascq: number;
}

/** Every reason a command fails with CHECK CONDITION, and every unit attention condition. */
export type SenseReason =
  | "InvalidCommandOperationCode"
  | "InvalidFieldInCdb"
  | "LbaOutOfRange"
  | "ParameterListLengthError"
  | "InvalidFieldInParameterList"
  | "InvalidFieldInInformationUnit"
  | "InvalidReleaseOfPersistentReservation"
  | "LogicalUnitNotSupported"
  | "SavingParametersNotSupported"
  | "InsufficientRegistrationResources"
  | "MiscompareDuringVerify"
  | "WriteProtected"
  | "SoftwareWriteProtected"
  | "UnrecoveredReadError"
  | "WriteError"
  | "InternalTargetFailure"
  | "LogicalUnitNotReady"
  | "LogicalUnitOffline"
  | "CommandsClearedByAnotherInitiator"
  | "UaPowerOnReset"
  | "UaBusDeviceResetFunctionOccurred"
  | "UaReportedLunsDataHasChanged"
  | "UaReservationsPreempted"
  | "UaReservationsReleased"
  | "UaRegistrationsPreempted"
  | "UaModeParametersChanged"
  | "UaCapacityDataHasChanged"
  | "UaItNexusLoss";

/** The sense table (SPC-5 Annex F; codes cited by name as the standard spells them). */
export const SENSE_TABLE: Record<SenseReason, SenseCode> = {
  InvalidCommandOperationCode: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x20, ascq: 0x00 },
  InvalidFieldInCdb: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x24, ascq: 0x00 },
  LbaOutOfRange: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x21, ascq: 0x00 },
  ParameterListLengthError: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x1a, ascq: 0x00 },
  InvalidFieldInParameterList: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x26, ascq: 0x00 },
  // SAM-5 §5.4.2 / SPC-5: fewer Data-Out bytes than the CDB needs (Expected Data Transfer Length too short).
  InvalidFieldInInformationUnit: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x0e, ascq: 0x03 },
  InvalidReleaseOfPersistentReservation: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x26, ascq: 0x04 },
  LogicalUnitNotSupported: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x25, ascq: 0x00 },
  SavingParametersNotSupported: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x39, ascq: 0x00 },
  InsufficientRegistrationResources: { key: SENSE_KEY.ILLEGAL_REQUEST, asc: 0x55, ascq: 0x04 },
  MiscompareDuringVerify: { key: SENSE_KEY.MISCOMPARE, asc: 0x1d, ascq: 0x00 },
  WriteProtected: { key: SENSE_KEY.DATA_PROTECT, asc: 0x27, ascq: 0x00 },
  SoftwareWriteProtected: { key: SENSE_KEY.DATA_PROTECT, asc: 0x27, ascq: 0x02 },
  UnrecoveredReadError: { key: SENSE_KEY.MEDIUM_ERROR, asc: 0x11, ascq: 0x00 },
  WriteError: { key: SENSE_KEY.MEDIUM_ERROR, asc: 0x0c, ascq: 0x00 },
  InternalTargetFailure: { key: SENSE_KEY.HARDWARE_ERROR, asc: 0x44, ascq: 0x00 },
  LogicalUnitNotReady: { key: SENSE_KEY.NOT_READY, asc: 0x04, ascq: 0x00 },
  LogicalUnitOffline: { key: SENSE_KEY.NOT_READY, asc: 0x04, ascq: 0x12 },
  CommandsClearedByAnotherInitiator: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x2f, ascq: 0x00 },
  // SAM-5 §6.3: a reset establishes POWER ON, RESET, OR BUS DEVICE RESET OCCURRED. We use the
  // generic 29h/00h for power on, LUN reset and target reset alike (the libiscsi RESERVE(6)
  // helpers retry on exactly this code).
  UaPowerOnReset: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x29, ascq: 0x00 },
  UaBusDeviceResetFunctionOccurred: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x29, ascq: 0x03 },
  UaItNexusLoss: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x29, ascq: 0x07 },
  UaReportedLunsDataHasChanged: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x3f, ascq: 0x0e },
  UaReservationsPreempted: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x2a, ascq: 0x03 },
  UaReservationsReleased: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x2a, ascq: 0x04 },
  UaRegistrationsPreempted: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x2a, ascq: 0x05 },
  UaModeParametersChanged: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x2a, ascq: 0x01 },
  UaCapacityDataHasChanged: { key: SENSE_KEY.UNIT_ATTENTION, asc: 0x2a, ascq: 0x09 },
};

/** Sense-key specific field pointer (SPC-5 §4.4.2.4.2): which CDB or parameter byte (and bit) was wrong. */
export interface FieldPointer {
  /** true: the byte is in the CDB (C/D = 1); false: in the parameter list. */
  inCdb: boolean;
  byteOffset: number;
  /** Bit 0-7 of the byte, or undefined when the whole byte is meant (BPV = 0). */
  bit?: number;
}

/**
 * A SCSI failure raised inside a command handler and turned into CHECK CONDITION by the
 * dispatcher. Handlers throw it for operating errors (bad CDB, out of range, miscompare).
 */
export class ScsiError extends Error {
  readonly reason: SenseReason;
  /** The INFORMATION field (SPC-5 §4.4.3): e.g. the miscompare offset (SBC-4 §5.3). */
  readonly information?: number;
  readonly fieldPointer?: FieldPointer;
  constructor(reason: SenseReason, details: { information?: number; fieldPointer?: FieldPointer; message?: string } = {}) {
    super(details.message ?? reason);
    this.name = `ScsiError(${reason})`;
    this.reason = reason;
    this.information = details.information;
    this.fieldPointer = details.fieldPointer;
  }
}

/** Shorthand for the most common failure: INVALID FIELD IN CDB pointing at a byte. */
export function invalidCdbField(byteOffset: number, bit?: number): ScsiError {
  return new ScsiError("InvalidFieldInCdb", { fieldPointer: { inCdb: true, byteOffset, bit } });
}

/** Shorthand for INVALID FIELD IN PARAMETER LIST pointing at a byte of the Data-Out. */
export function invalidParameterField(byteOffset: number, bit?: number): ScsiError {
  return new ScsiError("InvalidFieldInParameterList", { fieldPointer: { inCdb: false, byteOffset, bit } });
}

/** Fixed format sense data length: 8 bytes of header plus ADDITIONAL SENSE LENGTH 10. */
export const FIXED_SENSE_LENGTH_BYTES = 18;

/** Builds fixed format sense data (SPC-5 §4.4.3, Table 47), response code 70h (current error). */
export function buildFixedSense(
  code: SenseCode,
  details: { information?: number; fieldPointer?: FieldPointer } = {},
): Buffer {
  const sense = Buffer.alloc(FIXED_SENSE_LENGTH_BYTES);
  const hasInformation = details.information !== undefined;
  sense[0] = (hasInformation ? 0x80 : 0x00) | 0x70; // VALID bit, RESPONSE CODE 70h
  sense[2] = code.key & 0x0f;
  if (hasInformation) sense.writeUInt32BE(Math.min(details.information ?? 0, 0xffffffff) >>> 0, 3);
  sense[7] = FIXED_SENSE_LENGTH_BYTES - 8; // ADDITIONAL SENSE LENGTH
  sense[12] = code.asc;
  sense[13] = code.ascq;
  const pointer = details.fieldPointer;
  if (pointer !== undefined) {
    // SKSV = 1, C/D, BPV + BIT POINTER, FIELD POINTER (SPC-5 §4.4.2.4.2, Table 43).
    sense[15] = 0x80 | (pointer.inCdb ? 0x40 : 0x00) | (pointer.bit !== undefined ? 0x08 | (pointer.bit & 0x07) : 0);
    sense.writeUInt16BE(pointer.byteOffset & 0xffff, 16);
  }
  return sense;
}

/** The sense data for a reason from the table. */
export function senseFor(reason: SenseReason, details: { information?: number; fieldPointer?: FieldPointer } = {}): Buffer {
  return buildFixedSense(SENSE_TABLE[reason], details);
}

/** CHECK CONDITION with sense for a reason. */
export function checkCondition(reason: SenseReason, details: { information?: number; fieldPointer?: FieldPointer } = {}): ScsiResult {
  return { status: SCSI_STATUS.CHECK_CONDITION, sense: senseFor(reason, details) };
}

/**
 * The engine's error kinds on the wire (what the initiator should conclude):
 * - OutOfRange: the LBA range passed our check but not the engine's (the device shrank) → LBA OUT OF RANGE.
 * - Invalid: a request the engine refused as malformed → INVALID FIELD IN CDB.
 * - Io: data could not be read correctly → MEDIUM ERROR / UNRECOVERED READ ERROR (the initiator may retry
 *   or fail the I/O; never wrong data).
 * - ReadOnly: snapshot or template LUN → DATA PROTECT / WRITE PROTECTED.
 * - NotFound / Exists: the vDisk went away under us → NOT READY, LOGICAL UNIT NOT READY.
 * - Closed: the volume is shutting down → NOT READY, LOGICAL UNIT NOT READY, OFFLINE (multipath fails over).
 */
const VOLUME_ERROR_REASON: Record<VolumeErrorKind, SenseReason> = {
  OutOfRange: "LbaOutOfRange",
  Invalid: "InvalidFieldInCdb",
  Io: "UnrecoveredReadError",
  ReadOnly: "WriteProtected",
  NotFound: "LogicalUnitNotReady",
  Exists: "LogicalUnitNotReady",
  Closed: "LogicalUnitOffline",
};

/**
 * Maps anything a handler threw to a sense reason; an unexpected exception is HARDWARE ERROR.
 * An Io failure of a command that writes is a MEDIUM ERROR / WRITE ERROR rather than a read error.
 */
export function reasonForError(error: unknown, writes = false): SenseReason {
  if (error instanceof ScsiError) return error.reason;
  if (isVolumeError(error)) {
    if (writes && error.kind === "Io") return "WriteError";
    return VOLUME_ERROR_REASON[error.kind];
  }
  return "InternalTargetFailure";
}

/** CHECK CONDITION for anything a handler threw (ScsiError, VolumeError or a bug). */
export function checkConditionForError(error: unknown, writes = false): ScsiResult {
  if (error instanceof ScsiError) {
    return checkCondition(error.reason, { information: error.information, fieldPointer: error.fieldPointer });
  }
  return checkCondition(reasonForError(error, writes));
}

/** Thrown when a task management function aborted the command (the signal fired): TASK ABORTED. */
export class TaskAbortedError extends Error {
  constructor() {
    super("task aborted");
    this.name = "TaskAbortedError";
  }
}

export function throwIfAborted(signal: ScsiAbortFlag | undefined): void {
  if (signal?.aborted === true) throw new TaskAbortedError();
}

/** Thrown when the command ends with RESERVATION CONFLICT status (no sense data, SAM-5 §5.3.1). */
export class ReservationConflictError extends Error {
  constructor() {
    super("reservation conflict");
    this.name = "ReservationConflictError";
  }
}

// The one place where the iSCSI transport maps failures to the wire: protocol violations to Reject
// reasons (RFC 7143 §11.17.1) and whether the connection survives them, login failures to status
// class and detail (§11.13.5), and the few command failures the transport itself detects to SCSI
// status and sense (fixed format, SPC-5 §4.4.3). Failures inside the SCSI layer never come here:
// scsi/sense-table.ts maps those.
import { SCSI_STATUS, type ScsiResult } from "./scsi/scsi-types.ts";

/** RFC 7143 §11.17.1 Reject reasons. */
export const REJECT_REASON = {
  DATA_DIGEST_ERROR: 0x02,
  SNACK_REJECT: 0x03,
  PROTOCOL_ERROR: 0x04,
  COMMAND_NOT_SUPPORTED: 0x05,
  IMMEDIATE_COMMAND_REJECTED: 0x06,
  TASK_IN_PROGRESS: 0x07,
  INVALID_DATA_ACK: 0x08,
  INVALID_PDU_FIELD: 0x09,
  LONG_OPERATION_REJECT: 0x0a,
  WAITING_FOR_LOGOUT: 0x0c,
} as const;

/** What an initiator did wrong in the full feature phase. */
export type ProtocolViolation =
  /** An opcode RFC 7143 §11.2.1.2 does not define for initiators. */
  | "UnknownOpcode"
  /** SNACK needs ErrorRecoveryLevel > 0 (RFC 7143 §11.16); we negotiate 0. */
  | "SnackNotSupported"
  /** A Login Request after the full feature phase began (RFC 7143 §6.3). */
  | "LoginInFullFeaturePhase"
  /** A non-immediate CmdSN beyond MaxCmdSN (RFC 7143 §4.2.2.1): the numbering is broken, unrecoverable at ERL 0. */
  | "CommandOutsideWindow"
  /** DataSegmentLength above our MaxRecvDataSegmentLength (RFC 7143 §13.12). */
  | "DataSegmentTooLong"
  /** HeaderDigest mismatch (RFC 7143 §7.8): the framing is lost, so the connection is dropped without a Reject. */
  | "HeaderDigestError"
  /** DataDigest mismatch (RFC 7143 §7.8): Reject, and the PDU is discarded. */
  | "DataDigestError"
  /** A field the target cannot accept: a malformed AHS, a LUN outside flat addressing, bad text. */
  | "InvalidPduField"
  /** Data-Out for no task awaiting data, or with a Target Transfer Tag we did not give out. */
  | "UnexpectedDataOut"
  /**
   * Data-Out out of sequence (DataSN, offset, burst end): with DataPDUInOrder=Yes and ERL 0 the data
   * cannot be asked for again, so the PDU is rejected and its task ends with DATA PHASE ERROR.
   */
  | "DataOutOutOfSequence"
  /** Immediate data without ImmediateData=Yes, or more than FirstBurstLength, or unsolicited data with InitialR2T=Yes. */
  | "UnsolicitedDataViolation"
  /** Too many immediate commands in flight (RFC 7143 §11.17.1 "Immediate command reject"). */
  | "TooManyImmediateCommands"
  /** A new command reuses the Initiator Task Tag of a task still in progress (§11.17.1 "Task in progress"). */
  | "TaskTagInUse"
  /** A command after the initiator asked to log out (§11.17.1 "Waiting for Logout"). */
  | "WaitingForLogout"
  /** SCSI commands and task management in a discovery session (RFC 7143 §4.3: Text, NOP and Logout only). */
  | "NotInDiscoverySession";

export interface ViolationAction {
  /** The Reject reason, or undefined when no Reject can be sent (the framing is lost). */
  rejectReason: number | undefined;
  /** Close the connection after the Reject (ErrorRecoveryLevel 0 cannot repair it). */
  closeConnection: boolean;
}

const VIOLATION_ACTIONS: Record<ProtocolViolation, ViolationAction> = {
  UnknownOpcode: { rejectReason: REJECT_REASON.COMMAND_NOT_SUPPORTED, closeConnection: false },
  SnackNotSupported: { rejectReason: REJECT_REASON.COMMAND_NOT_SUPPORTED, closeConnection: false },
  LoginInFullFeaturePhase: { rejectReason: REJECT_REASON.PROTOCOL_ERROR, closeConnection: true },
  CommandOutsideWindow: { rejectReason: REJECT_REASON.PROTOCOL_ERROR, closeConnection: true },
  DataSegmentTooLong: { rejectReason: REJECT_REASON.PROTOCOL_ERROR, closeConnection: true },
  HeaderDigestError: { rejectReason: undefined, closeConnection: true },
  DataDigestError: { rejectReason: REJECT_REASON.DATA_DIGEST_ERROR, closeConnection: false },
  InvalidPduField: { rejectReason: REJECT_REASON.INVALID_PDU_FIELD, closeConnection: false },
  UnexpectedDataOut: { rejectReason: REJECT_REASON.INVALID_PDU_FIELD, closeConnection: false },
  DataOutOutOfSequence: { rejectReason: REJECT_REASON.PROTOCOL_ERROR, closeConnection: false },
  UnsolicitedDataViolation: { rejectReason: REJECT_REASON.PROTOCOL_ERROR, closeConnection: true },
  TooManyImmediateCommands: { rejectReason: REJECT_REASON.IMMEDIATE_COMMAND_REJECTED, closeConnection: false },
  TaskTagInUse: { rejectReason: REJECT_REASON.TASK_IN_PROGRESS, closeConnection: false },
  WaitingForLogout: { rejectReason: REJECT_REASON.WAITING_FOR_LOGOUT, closeConnection: false },
  NotInDiscoverySession: { rejectReason: REJECT_REASON.PROTOCOL_ERROR, closeConnection: false },
};

export function actionForViolation(violation: ProtocolViolation): ViolationAction {
  return VIOLATION_ACTIONS[violation];
}

/** Why a login failed; each maps to one Status-Class/Status-Detail (RFC 7143 §11.13.5). */
export type LoginFailure =
  | "InitiatorError"
  | "AuthenticationFailed"
  | "AuthorizationFailed"
  | "TargetNotFound"
  | "TargetRemoved"
  | "UnsupportedVersion"
  | "TooManyConnections"
  | "MissingParameter"
  | "CannotIncludeInSession"
  | "SessionTypeNotSupported"
  | "SessionDoesNotExist"
  | "InvalidDuringLogin"
  | "TargetError"
  | "ServiceUnavailable"
  | "OutOfResources";

const LOGIN_STATUS: Record<LoginFailure, { statusClass: number; statusDetail: number }> = {
  InitiatorError: { statusClass: 0x02, statusDetail: 0x00 },
  AuthenticationFailed: { statusClass: 0x02, statusDetail: 0x01 },
  AuthorizationFailed: { statusClass: 0x02, statusDetail: 0x02 },
  TargetNotFound: { statusClass: 0x02, statusDetail: 0x03 },
  TargetRemoved: { statusClass: 0x02, statusDetail: 0x04 },
  UnsupportedVersion: { statusClass: 0x02, statusDetail: 0x05 },
  TooManyConnections: { statusClass: 0x02, statusDetail: 0x06 },
  MissingParameter: { statusClass: 0x02, statusDetail: 0x07 },
  CannotIncludeInSession: { statusClass: 0x02, statusDetail: 0x08 },
  SessionTypeNotSupported: { statusClass: 0x02, statusDetail: 0x09 },
  SessionDoesNotExist: { statusClass: 0x02, statusDetail: 0x0a },
  InvalidDuringLogin: { statusClass: 0x02, statusDetail: 0x0b },
  TargetError: { statusClass: 0x03, statusDetail: 0x00 },
  ServiceUnavailable: { statusClass: 0x03, statusDetail: 0x01 },
  OutOfResources: { statusClass: 0x03, statusDetail: 0x02 },
};

export function loginStatusFor(failure: LoginFailure): { statusClass: number; statusDetail: number } {
  return LOGIN_STATUS[failure];
}

/** A login step failed: the Login Response carries the status and the connection closes (RFC 7143 §6.? "Login failure"). */
export class LoginError extends Error {
  constructor(readonly failure: LoginFailure, message: string) {
    super(message);
    this.name = `LoginError(${failure})`;
  }
}

/** RFC 7143 §11.6.1 Task Management Function responses. */
export const TMF_RESPONSE = {
  FUNCTION_COMPLETE: 0,
  TASK_DOES_NOT_EXIST: 1,
  LUN_DOES_NOT_EXIST: 2,
  TASK_STILL_ALLEGIANT: 3,
  TASK_ALLEGIANCE_REASSIGNMENT_NOT_SUPPORTED: 4,
  FUNCTION_NOT_SUPPORTED: 5,
  FUNCTION_AUTHORIZATION_FAILED: 6,
  FUNCTION_REJECTED: 255,
} as const;

/** RFC 7143 §11.4.3 SCSI Response "Response" codes. */
export const SCSI_RESPONSE = { COMMAND_COMPLETED: 0x00, TARGET_FAILURE: 0x01 } as const;

/** RFC 7143 §11.15.1 Logout Response codes. */
export const LOGOUT_RESPONSE = {
  CLOSED_SUCCESSFULLY: 0,
  CID_NOT_FOUND: 1,
  RECOVERY_NOT_SUPPORTED: 2,
  CLEANUP_FAILED: 3,
} as const;

/** Command failures the transport finds before the SCSI layer sees the command. */
export type TransportCommandFailure =
  /** Expected Data Transfer Length above transferLengthBytesMax: we buffer a command's data whole. */
  | "TransferTooLong"
  /** Both R and W set: bidirectional commands are not supported. */
  | "BidirectionalNotSupported"
  /** RFC 7143 §7.8: Data-Out lost to a data digest error at ERL 0 ends the task with this sense. */
  | "DataDigestError"
  /** Data-Out out of sequence at ERL 0 (RFC 7143 §7.? sequence errors): the task cannot get its data. */
  | "DataPhaseError"
  /** The LUN field uses an addressing method other than peripheral or flat (SAM-5 §4.7). */
  | "LunNotAddressable"
  /** More tasks outstanding than outstandingTasksMax (SAM-5 §5.3 TASK SET FULL). */
  | "TaskSetFull";

/** SPC-5 sense keys and ASC/ASCQ of the transport's own failures. */
const TRANSPORT_SENSE: Record<Exclude<TransportCommandFailure, "TaskSetFull">, { key: number; asc: number; ascq: number }> = {
  TransferTooLong: { key: 0x5, asc: 0x24, ascq: 0x00 }, // ILLEGAL REQUEST, INVALID FIELD IN CDB
  BidirectionalNotSupported: { key: 0x5, asc: 0x24, ascq: 0x00 }, // ILLEGAL REQUEST, INVALID FIELD IN CDB
  DataDigestError: { key: 0xb, asc: 0x47, ascq: 0x05 }, // ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR
  DataPhaseError: { key: 0xb, asc: 0x4b, ascq: 0x00 }, // ABORTED COMMAND, DATA PHASE ERROR
  LunNotAddressable: { key: 0x5, asc: 0x25, ascq: 0x00 }, // ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED
};

/** Fixed-format sense data (SPC-5 §4.4.3): response code 0x70, 18 bytes. */
function fixedSense(key: number, asc: number, ascq: number): Buffer {
  const sense = Buffer.alloc(18);
  sense[0] = 0x70;
  sense[2] = key;
  sense[7] = 10;
  sense[12] = asc;
  sense[13] = ascq;
  return sense;
}

export function resultForTransportFailure(failure: TransportCommandFailure): ScsiResult {
  if (failure === "TaskSetFull") return { status: SCSI_STATUS.TASK_SET_FULL };
  const { key, asc, ascq } = TRANSPORT_SENSE[failure];
  return { status: SCSI_STATUS.CHECK_CONDITION, sense: fixedSense(key, asc, ascq) };
}

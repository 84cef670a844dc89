// The boundary between the iSCSI transport (RFC 7143: PDUs, login, sessions, R2T, Data-In/Out)
// and the SCSI command set (SPC-5, SBC-4, persistent reservations) it carries. The transport
// gathers a command's Data-Out completely, then calls ScsiTarget.execute once per command; the
// SCSI layer never sees a PDU and the transport never decodes a CDB (beyond its length).
import type { BlockDevice } from "../../../engine/block-device.ts";

/** SAM-5 status codes. */
export const SCSI_STATUS = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;

/**
 * The I_T nexus a command arrived on (SAM-5 §4.7): reservations, unit attentions and registrations
 * key on it. initiatorPort is the iSCSI initiator port name "<iqn>,i,0x<ISID>" (RFC 7143 §10.?:
 * SCSI port names), targetPort "<target iqn>,t,0x<TPGT>".
 */
export interface ScsiNexus {
  initiatorName: string;
  initiatorPort: string;
  targetPort: string;
  /** Relative target port identifier reported in VPD 0x83 and PR IN (1 for our single portal group). */
  relativeTargetPortId: number;
}

export type ScsiTaskAttribute = "simple" | "ordered" | "head-of-queue" | "aca";

/** What the SCSI layer reads of an abort: whether it happened. */
export interface ScsiAbortFlag {
  readonly aborted: boolean;
}

export interface ScsiCommand {
  nexus: ScsiNexus;
  /** The LUN as the initiator addressed it (flat, 0-16383). */
  lun: number;
  /** The CDB (6-16 bytes; longer with AHS for variable-length CDBs). */
  cdb: Buffer;
  /** All Data-Out bytes of a write-type command (length == expectedDataTransferLengthBytes unless the initiator sent less). */
  dataOut?: Buffer;
  /** The initiator's Expected Data Transfer Length: the SCSI layer never returns more Data-In than this (the transport reports residuals). */
  expectedDataTransferLengthBytes: number;
  taskAttribute: ScsiTaskAttribute;
  /**
   * `aborted` turns true when a task management function aborted the command: a long operation
   * may stop early. (An AbortSignal fits; the transport passes its task, cheaper per command.)
   */
  signal?: ScsiAbortFlag;
}

export interface ScsiResult {
  status: number;
  /** Sense data (fixed format, SPC-5 §4.4.3) with CHECK CONDITION. */
  sense?: Buffer;
  /** Data-In, at most expectedDataTransferLengthBytes long. */
  dataIn?: Buffer;
  /**
   * Bytes the CDB itself asked to transfer (in or out), when the SCSI layer decoded it. The transport
   * reports residual overflow/underflow against the Expected Data Transfer Length from it (RFC 7143
   * §11.4.5); without it, only a Data-In shorter than the EDTL is reported (as underflow).
   */
  transferLengthBytes?: number;
}

/** Task management functions the transport forwards (RFC 7143 §11.5, SAM-5 §7). */
export type ScsiTaskManagementFunction = "abort-task" | "abort-task-set" | "clear-task-set" | "lun-reset" | "target-warm-reset" | "target-cold-reset";

/** One logical unit: a vDisk behind the SCSI command set. */
export interface ScsiLogicalUnitConfig {
  lun: number;
  device: BlockDevice;
  /** Unique, stable per vDisk: VPD 0x80 serial and the NAA identifier in VPD 0x83 derive from it. */
  serialNumber: string;
  /** 16 hex digits: the NAA IEEE Registered Extended identifier's vendor-specific part (stable per vDisk). */
  naaIdentifierHex: string;
  /** Where persistent reservations with APTPL are kept (a JSON file), or undefined to keep them in memory only. */
  reservationStatePath?: string;
}

export interface ScsiTarget {
  /** Runs one command; never rejects (every failure becomes a status and sense). */
  execute(command: ScsiCommand): Promise<ScsiResult>;
  /** Applies a task management function; resolves with the RFC 7143 §11.6.1 response code (0 = function complete). */
  taskManagement(nexus: ScsiNexus, fn: ScsiTaskManagementFunction, lun: number, referencedTaskTag?: number): Promise<number>;
  /** The LUNs it serves now (REPORT LUNS). */
  luns(): number[];
  /** A session ended (logout or connection loss): drop per-nexus state that SPC-5 ties to it (not persistent reservations). */
  nexusLost(nexus: ScsiNexus): void;
}

// Public types of the iSCSI frontend (RFC 7143). The server is startIscsiServer() in iscsi-server.ts;
// the StorageDriver gives it a registry of targets, each a ScsiTarget (scsi/scsi-types.ts) whose
// logical units come and go with the vPool's vDisks.
import type { Logger } from "pino";
import type { ScsiTarget } from "./scsi/scsi-types.ts";

/** A CHAP name and secret (RFC 1994, RFC 7143 §12.1.3). */
export interface IscsiChapCredentials {
  username: string;
  /** At least 12 bytes (RFC 7143 §12.1.3: secrets of at least 96 bits), at most 255. */
  secret: string;
}

/** CHAP for one target (or for discovery sessions). */
export interface IscsiChapSettings {
  /** What the initiator must prove (one-way CHAP): every login must authenticate with these. */
  initiator: IscsiChapCredentials;
  /**
   * What the target proves when the initiator asks (mutual CHAP). Without them, an initiator that
   * asks for mutual authentication is refused; with them, mutual is required when `mutualRequired`.
   */
  target?: IscsiChapCredentials;
  /** Refuse initiators that do not ask the target to authenticate itself. */
  mutualRequired?: boolean;
}

export interface IscsiTargetEntry {
  /** The target's iSCSI name, e.g. iqn.2026-11.org.openvstorage:VPOOL. */
  name: string;
  /** TargetAlias sent at login (RFC 7143 §13.6), e.g. the vPool name. */
  alias?: string;
  scsiTarget: ScsiTarget;
  /** CHAP for this target; undefined: no authentication (AuthMethod=None). */
  chap?: IscsiChapSettings;
  /** Initiator names allowed to log in (and to see it in SendTargets); undefined: every initiator. */
  allowedInitiators?: readonly string[];
}

/** Looked up at every login and SendTargets, so targets added or removed later are seen at once. */
export interface IscsiTargetRegistry {
  listTargets(): IscsiTargetEntry[];
  findTarget(name: string): IscsiTargetEntry | undefined;
}

export interface IscsiServerSettings {
  /** Listen address; "" means 127.0.0.1. */
  host: string;
  /** 0 picks a free port; 3260 is the IANA port. */
  port: number;
  logger?: Logger;
  /** TargetPortalGroupTag of our one portal group (RFC 7143 §13.9). */
  targetPortalGroupTag?: number;
  /** CHAP required on discovery sessions; undefined: discovery is open. */
  discoveryChap?: IscsiChapSettings;
  connectionsMax?: number;
  sessionsMax?: number;
  /** Non-immediate commands an initiator may have sent ahead: MaxCmdSN − ExpCmdSN + 1 when idle. */
  commandWindowSize?: number;
  /** Tasks (commands not yet answered) per session; beyond it a command gets TASK SET FULL. */
  outstandingTasksMax?: number;
  /** What we declare as our MaxRecvDataSegmentLength (RFC 7143 §13.12). */
  maxRecvDataSegmentLengthBytes?: number;
  /** Our offer for MaxBurstLength (the result is the minimum of both offers). */
  maxBurstLengthBytes?: number;
  /** Our offer for FirstBurstLength. */
  firstBurstLengthBytes?: number;
  /** Our offer for MaxOutstandingR2T. */
  maxOutstandingR2T?: number;
  /** Our offer for ImmediateData (the result is the AND of both). */
  immediateData?: boolean;
  /** Our offer for InitialR2T (the result is the OR of both). */
  initialR2T?: boolean;
  /** Largest Expected Data Transfer Length of one command (its Data-Out is buffered whole). */
  transferLengthBytesMax?: number;
  /** Data-Out bytes the tasks of one session may hold; a write beyond it gets TASK SET FULL while others are in flight. */
  dataOutBytesInFlightMax?: number;
  /** A login must reach the full feature phase within this time. */
  loginTimeoutMs?: number;
  /** After this long without a PDU from the initiator, we send a NOP-In ping; 0 disables it. */
  nopInIntervalMs?: number;
  /** A NOP-In ping unanswered for this long drops the connection. */
  nopInTimeoutMs?: number;
}

export interface IscsiServer {
  readonly host: string;
  readonly port: number;
  connectionCount(): number;
  sessionCount(): number;
  /** Stops accepting, ends every session (in-flight commands finish, bounded) and closes every connection. */
  close(): Promise<void>;
}

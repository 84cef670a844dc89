// Bounds of the iSCSI server: the operator's settings (IscsiServerSettings) with their defaults,
// checked once at start, plus the fixed bounds that are not worth a setting. Every limit has a unit
// in its name. The negotiation ranges are RFC 7143 §13's.
import pino, { type Logger } from "pino";
import type { IscsiChapSettings, IscsiServerSettings } from "./iscsi-types.ts";

const KIB = 1024;
const MIB = 1024 * KIB;

export const ISCSI_DEFAULT_HOST = "127.0.0.1";
/** IANA port for iSCSI (RFC 7143 §13.? TargetAddress default). */
export const ISCSI_DEFAULT_PORT = 3260;
/** RFC 7143 §13.12-14: data segment and burst lengths lie in 512 .. 2^24 − 1. */
export const NEGOTIATED_LENGTH_BYTES_MIN = 512;
export const NEGOTIATED_LENGTH_BYTES_MAX = 0xff_ffff;
/** RFC 7143 §13.12: MaxRecvDataSegmentLength default, also what applies to Login PDUs before it is declared. */
export const MAX_RECV_DATA_SEGMENT_LENGTH_BYTES_RFC_DEFAULT = 8192;
/** RFC 7143 §13.13-14 defaults, assumed for a key the initiator does not send. */
export const MAX_BURST_LENGTH_BYTES_RFC_DEFAULT = 256 * KIB;
export const FIRST_BURST_LENGTH_BYTES_RFC_DEFAULT = 64 * KIB;

export const MAX_RECV_DATA_SEGMENT_LENGTH_BYTES_DEFAULT = 256 * KIB;
export const MAX_BURST_LENGTH_BYTES_DEFAULT = 1 * MIB;
export const FIRST_BURST_LENGTH_BYTES_DEFAULT = 64 * KIB;
export const MAX_OUTSTANDING_R2T_DEFAULT = 4;
export const COMMAND_WINDOW_SIZE_DEFAULT = 64;
export const CONNECTIONS_MAX_DEFAULT = 64;
export const SESSIONS_MAX_DEFAULT = 64;
/** 64 MiB: twice the SCSI layer's Block Limits maximum transfer length (32 MiB), so the SCSI layer refuses first. */
export const TRANSFER_LENGTH_BYTES_MAX_DEFAULT = 64 * MIB;
/** Data-Out bytes one session's tasks may hold at once (each command's Data-Out is buffered whole). */
export const DATA_OUT_BYTES_IN_FLIGHT_MAX_DEFAULT = 256 * MIB;
export const LOGIN_TIMEOUT_MS_DEFAULT = 15_000;
export const NOP_IN_INTERVAL_MS_DEFAULT = 15_000;
export const NOP_IN_TIMEOUT_MS_DEFAULT = 30_000;
export const TARGET_PORTAL_GROUP_TAG_DEFAULT = 1;

/** Login and Text PDUs carrying more than this much text are refused (our Login-phase receive bound). */
export const LOGIN_DATA_SEGMENT_BYTES_MAX = 64 * KIB;
/** Login Request PDUs one connection may send before it must reach the full feature phase. */
export const LOGIN_PDUS_MAX = 64;
/** Text Request PDUs of one exchange (continuations included). */
export const TEXT_EXCHANGE_PDUS_MAX = 64;
/** Reply bytes queued on a socket before we stop reading from it until the initiator catches up. */
export const OUTPUT_QUEUED_BYTES_MAX = 16 * MIB;
/** How long a task management function waits for the tasks it aborts to stop. */
export const TASK_ABORT_WAIT_MS_MAX = 30_000;
/** How long Logout, session reinstatement and server shutdown wait for in-flight commands. */
export const SESSION_DRAIN_TIMEOUT_MS = 10_000;
/** After Logout Response or a Reject that ends the connection, how long the initiator gets to close its side. */
export const CLOSE_LINGER_MS = 2_000;
/** TCP keepalive: idle time before the first probe. */
export const KEEPALIVE_INITIAL_DELAY_MS = 60_000;
/** Recently aborted task tags remembered per session, so their late Data-Out PDUs are dropped quietly. */
export const ABORTED_TAGS_REMEMBERED_MAX = 256;
/** Protocol errors per connection logged at warn; later ones go to debug so a looping initiator cannot flood the log. */
export const REJECTIONS_LOGGED_AT_WARN_MAX = 10;
/** RFC 7143 §13.19-20: Time2Wait 0 (reconnect at once); Time2Retain 0 (ErrorRecoveryLevel 0 keeps no tasks). */
export const DEFAULT_TIME_2_WAIT_SECONDS = 2;
export const DEFAULT_TIME_2_RETAIN_SECONDS = 0;
/** CHAP secret length bounds (RFC 7143 §12.1.3: at least 96 bits). */
export const CHAP_SECRET_BYTES_MIN = 12;
export const CHAP_SECRET_BYTES_MAX = 255;
/** Our CHAP challenges are 16 random bytes, as Linux sends (RFC 7143 §12.1.3 allows up to 1024). */
export const CHAP_CHALLENGE_BYTES = 16;

export interface ResolvedIscsiSettings {
  host: string;
  port: number;
  logger: Logger;
  targetPortalGroupTag: number;
  discoveryChap: IscsiChapSettings | undefined;
  connectionsMax: number;
  sessionsMax: number;
  commandWindowSize: number;
  outstandingTasksMax: number;
  maxRecvDataSegmentLengthBytes: number;
  maxBurstLengthBytes: number;
  firstBurstLengthBytes: number;
  maxOutstandingR2T: number;
  immediateData: boolean;
  initialR2T: boolean;
  transferLengthBytesMax: number;
  dataOutBytesInFlightMax: number;
  loginTimeoutMs: number;
  nopInIntervalMs: number;
  nopInTimeoutMs: number;
}

function integerSetting(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`iSCSI setting ${name} = ${value} must be an integer in [${min}, ${max}]`);
  }
  return value;
}

/** Checks CHAP settings once (also used for each target as it is registered). */
export function validateChapSettings(where: string, chap: IscsiChapSettings | undefined): void {
  if (chap === undefined) return;
  const check = (role: string, username: string, secret: string): void => {
    if (username.length === 0 || Buffer.byteLength(username) > 255) throw new RangeError(`${where}: CHAP ${role} username must be 1-255 bytes`);
    const bytes = Buffer.byteLength(secret);
    if (bytes < CHAP_SECRET_BYTES_MIN || bytes > CHAP_SECRET_BYTES_MAX) {
      throw new RangeError(`${where}: CHAP ${role} secret must be ${CHAP_SECRET_BYTES_MIN}-${CHAP_SECRET_BYTES_MAX} bytes (RFC 7143 §12.1.3)`);
    }
  };
  check("initiator", chap.initiator.username, chap.initiator.secret);
  if (chap.target !== undefined) {
    check("target", chap.target.username, chap.target.secret);
    // RFC 7143 §12.1.3: the same secret must not serve both directions (a reflection attack).
    if (chap.target.secret === chap.initiator.secret) throw new RangeError(`${where}: the mutual CHAP secret must differ from the initiator secret`);
  } else if (chap.mutualRequired === true) {
    throw new RangeError(`${where}: mutualRequired needs target credentials`);
  }
}

/** Applies the defaults and checks every bound; throws RangeError on a setting outside its range. */
export function resolveIscsiSettings(settings: IscsiServerSettings): ResolvedIscsiSettings {
  validateChapSettings("discoveryChap", settings.discoveryChap);
  const commandWindowSize = integerSetting("commandWindowSize", settings.commandWindowSize ?? COMMAND_WINDOW_SIZE_DEFAULT, 1, 4096);
  const maxBurstLengthBytes = integerSetting("maxBurstLengthBytes", settings.maxBurstLengthBytes ?? MAX_BURST_LENGTH_BYTES_DEFAULT,
    NEGOTIATED_LENGTH_BYTES_MIN, NEGOTIATED_LENGTH_BYTES_MAX);
  return {
    host: settings.host === "" ? ISCSI_DEFAULT_HOST : settings.host,
    port: integerSetting("port", settings.port, 0, 65535),
    logger: settings.logger ?? pino({ level: "silent" }),
    targetPortalGroupTag: integerSetting("targetPortalGroupTag", settings.targetPortalGroupTag ?? TARGET_PORTAL_GROUP_TAG_DEFAULT, 1, 65535),
    discoveryChap: settings.discoveryChap,
    connectionsMax: integerSetting("connectionsMax", settings.connectionsMax ?? CONNECTIONS_MAX_DEFAULT, 1, 100_000),
    sessionsMax: integerSetting("sessionsMax", settings.sessionsMax ?? SESSIONS_MAX_DEFAULT, 1, 65_535),
    commandWindowSize,
    outstandingTasksMax: integerSetting("outstandingTasksMax", settings.outstandingTasksMax ?? 2 * commandWindowSize, commandWindowSize, 65_536),
    maxRecvDataSegmentLengthBytes: integerSetting("maxRecvDataSegmentLengthBytes",
      settings.maxRecvDataSegmentLengthBytes ?? MAX_RECV_DATA_SEGMENT_LENGTH_BYTES_DEFAULT, NEGOTIATED_LENGTH_BYTES_MIN, NEGOTIATED_LENGTH_BYTES_MAX),
    maxBurstLengthBytes,
    // RFC 7143 §13.14: FirstBurstLength must not exceed MaxBurstLength.
    firstBurstLengthBytes: integerSetting("firstBurstLengthBytes", settings.firstBurstLengthBytes ?? Math.min(FIRST_BURST_LENGTH_BYTES_DEFAULT, maxBurstLengthBytes),
      NEGOTIATED_LENGTH_BYTES_MIN, maxBurstLengthBytes),
    maxOutstandingR2T: integerSetting("maxOutstandingR2T", settings.maxOutstandingR2T ?? MAX_OUTSTANDING_R2T_DEFAULT, 1, 65_535),
    immediateData: settings.immediateData ?? true,
    initialR2T: settings.initialR2T ?? false,
    transferLengthBytesMax: integerSetting("transferLengthBytesMax", settings.transferLengthBytesMax ?? TRANSFER_LENGTH_BYTES_MAX_DEFAULT,
      4096, 1024 * MIB),
    dataOutBytesInFlightMax: integerSetting("dataOutBytesInFlightMax", settings.dataOutBytesInFlightMax ?? DATA_OUT_BYTES_IN_FLIGHT_MAX_DEFAULT,
      MIB, 64 * 1024 * MIB),
    loginTimeoutMs: integerSetting("loginTimeoutMs", settings.loginTimeoutMs ?? LOGIN_TIMEOUT_MS_DEFAULT, 1, 3_600_000),
    nopInIntervalMs: integerSetting("nopInIntervalMs", settings.nopInIntervalMs ?? NOP_IN_INTERVAL_MS_DEFAULT, 0, 3_600_000),
    nopInTimeoutMs: integerSetting("nopInTimeoutMs", settings.nopInTimeoutMs ?? NOP_IN_TIMEOUT_MS_DEFAULT, 1, 3_600_000),
  };
}

// Bounds of the NBD server: the operator's settings (NbdServerSettings) with their defaults, checked
// once at start, plus the fixed bounds that are not worth a setting. Every limit has a unit in its name.
import pino, { type Logger } from "pino";
import type { NbdServerSettings, NbdTlsSettings } from "./nbd-types.ts";

const KIB = 1024;
const MIB = 1024 * KIB;

export const NBD_DEFAULT_HOST = "127.0.0.1";
/** IANA port for NBD (proto.md "Newstyle negotiation"). */
export const NBD_DEFAULT_PORT = 10809;
/** proto.md "Size constraints": a maximum payload of at least 2^25 SHOULD be supported. */
export const REQUEST_SIZE_BYTES_MAX_DEFAULT = 32 * MIB;
/** Upper bound of the requestSizeBytesMax setting itself. */
export const REQUEST_SIZE_BYTES_MAX_LIMIT = 256 * MIB;
export const IN_FLIGHT_REQUESTS_MAX_DEFAULT = 64;
export const CONNECTIONS_MAX_DEFAULT = 256;
export const HANDSHAKE_TIMEOUT_MS_DEFAULT = 30_000;

/** Largest option payload accepted during the handshake; longer options are a hard disconnect (DoS). */
export const OPTION_LENGTH_BYTES_MAX = 64 * KIB;
/** Options one connection may send before entering transmission (nbdkit allows 32). */
export const HANDSHAKE_OPTIONS_COUNT_MAX = 256;
/** Bytes of in-flight READ/WRITE payload per connection before the server stops reading from it. */
export const IN_FLIGHT_PAYLOAD_BYTES_MAX = 64 * MIB;
/** Reply bytes queued on a socket before the server stops reading from it until the client catches up. */
export const OUTPUT_QUEUED_BYTES_MAX = 16 * MIB;
/** How long close() waits for in-flight requests, and a client gets to close after DISC or ABORT, before the socket is dropped. */
export const CLOSE_DRAIN_TIMEOUT_MS = 10_000;
/** TCP keepalive: idle time before the first probe, so connections to vanished clients are reaped. */
export const KEEPALIVE_INITIAL_DELAY_MS = 60_000;
/** At server shutdown, how long a client gets to close its side after the server ended the stream. */
export const SHUTDOWN_LINGER_MS = 1_000;
/** Preferred block size advertised in NBD_INFO_BLOCK_SIZE: the engine's cluster size. */
export const PREFERRED_BLOCK_SIZE_BYTES = 4096;
/** Minimum block size: the engine is byte-granular (read-modify-write below a cluster). */
export const MINIMUM_BLOCK_SIZE_BYTES = 1;
/** proto.md NBD_REPLY_TYPE_BLOCK_STATUS: "SHOULD NOT send more than 2^20 extents in a single reply chunk". */
export const BLOCK_STATUS_EXTENTS_MAX = 1 << 20;
/** Reads shorter than this go out as one data chunk: looking for holes costs more than it saves. */
export const HOLE_DETECTION_LENGTH_BYTES_MIN = 64 * KIB;
/** Refused requests per connection logged at warn; later ones go to debug so a looping client cannot flood the log. */
export const REJECTIONS_LOGGED_AT_WARN_MAX = 10;
/** Longest error message sent in an option reply or error chunk (proto.md strings: SHOULD be ≤ 256 bytes). */
export const ERROR_MESSAGE_BYTES_MAX = 256;

export interface ResolvedNbdSettings {
  host: string;
  port: number;
  tls: NbdTlsSettings | undefined;
  requestSizeBytesMax: number;
  inFlightRequestsMax: number;
  connectionsMax: number;
  handshakeTimeoutMs: number;
  logger: Logger;
}

function integerSetting(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`NBD setting ${name} = ${value} must be an integer in [${min}, ${max}]`);
  }
  return value;
}

/** Applies the defaults and checks every bound; throws RangeError on a setting outside its range. */
export function resolveNbdSettings(settings: NbdServerSettings): ResolvedNbdSettings {
  const tls = settings.tls;
  if (tls !== undefined && !["off", "allow", "require"].includes(tls.mode)) {
    throw new RangeError(`NBD setting tls.mode = ${String(tls.mode)} must be off, allow or require`);
  }
  return {
    host: settings.host === "" ? NBD_DEFAULT_HOST : settings.host,
    port: integerSetting("port", settings.port, 0, 65535),
    tls,
    // The advertised maximum must be ≥ the preferred block size (proto.md "Size constraints"); one
    // request's buffer must stay far below Node's Buffer limit.
    requestSizeBytesMax: integerSetting("requestSizeBytesMax", settings.requestSizeBytesMax ?? REQUEST_SIZE_BYTES_MAX_DEFAULT,
      PREFERRED_BLOCK_SIZE_BYTES, REQUEST_SIZE_BYTES_MAX_LIMIT),
    inFlightRequestsMax: integerSetting("inFlightRequestsMax", settings.inFlightRequestsMax ?? IN_FLIGHT_REQUESTS_MAX_DEFAULT, 1, 65536),
    connectionsMax: integerSetting("connectionsMax", settings.connectionsMax ?? CONNECTIONS_MAX_DEFAULT, 1, 1_000_000),
    handshakeTimeoutMs: integerSetting("handshakeTimeoutMs", settings.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS_DEFAULT, 1, 3_600_000),
    logger: settings.logger ?? pino({ level: "silent" }),
  };
}

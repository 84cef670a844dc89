// Wire constants of the NBD protocol, as numbered in NetworkBlockDevice/nbd doc/proto.md ("Values").
// Only constants live here: no state, no I/O. Every multi-byte field on the wire is big-endian.

// ---- Magic numbers (proto.md "Handshake", "Request message", "Simple reply message", ...) ----

/** 'NBDMAGIC' (INIT_PASSWD): first 8 bytes the server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': newstyle magic, sent by the server after NBDMAGIC and by the client before every option. */
export const NBD_OPTION_MAGIC = 0x49484156454f5054n;
/** Magic of every fixed-newstyle option reply. */
export const NBD_OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---- Handshake flags (server, 16 bits) and client flags (32 bits) — proto.md "Handshake flags" ----

export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// ---- Transmission flags (16 bits) — proto.md "Transmission flags" ----

export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// ---- Options — proto.md "Option types" ----

export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// ---- Option reply types — proto.md "Option reply types"; errors have bit 31 set ----

export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const NBD_REP_FLAG_ERROR = 0x8000_0000;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
export const NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR + 4;
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR + 8;
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9;

// ---- NBD_REP_INFO information types — proto.md "NBD_REP_INFO" ----

export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// ---- Commands — proto.md "Request types" ----

export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

// ---- Command flags — proto.md "Command flags" ----

export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// ---- Structured replies — proto.md "Structured reply flags" and "Structured reply types" ----

export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

// ---- base:allocation status flags — proto.md "base:allocation metadata context" ----

export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
export const BASE_ALLOCATION_CONTEXT = "base:allocation";

// ---- Error values — proto.md "Error values" ----

export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// ---- Sizes of fixed wire structures, in bytes ----

/** magic(4) flags(2) type(2) cookie(8) offset(8) length(4). */
export const REQUEST_HEADER_BYTES = 28;
/** magic(4) error(4) cookie(8). */
export const SIMPLE_REPLY_HEADER_BYTES = 16;
/** magic(4) flags(2) type(2) cookie(8) length(4). */
export const STRUCTURED_REPLY_HEADER_BYTES = 20;
/** magic(8) option(4) length(4). */
export const OPTION_HEADER_BYTES = 16;
/** magic(8) option(4) reply type(4) length(4). */
export const OPTION_REPLY_HEADER_BYTES = 20;
/** Zero padding after NBD_OPT_EXPORT_NAME's reply unless NBD_FLAG_C_NO_ZEROES. */
export const EXPORT_NAME_REPLY_PADDING_BYTES = 124;
/** proto.md "Conventions": a string MUST be no longer than 4096 bytes. */
export const STRING_BYTES_MAX = 4096;

const COMMAND_NAMES: Record<number, string> = {
  [NBD_CMD_READ]: "READ", [NBD_CMD_WRITE]: "WRITE", [NBD_CMD_DISC]: "DISC", [NBD_CMD_FLUSH]: "FLUSH",
  [NBD_CMD_TRIM]: "TRIM", [NBD_CMD_CACHE]: "CACHE", [NBD_CMD_WRITE_ZEROES]: "WRITE_ZEROES",
  [NBD_CMD_BLOCK_STATUS]: "BLOCK_STATUS",
};

const OPTION_NAMES: Record<number, string> = {
  [NBD_OPT_EXPORT_NAME]: "EXPORT_NAME", [NBD_OPT_ABORT]: "ABORT", [NBD_OPT_LIST]: "LIST", [NBD_OPT_STARTTLS]: "STARTTLS",
  [NBD_OPT_INFO]: "INFO", [NBD_OPT_GO]: "GO", [NBD_OPT_STRUCTURED_REPLY]: "STRUCTURED_REPLY",
  [NBD_OPT_LIST_META_CONTEXT]: "LIST_META_CONTEXT", [NBD_OPT_SET_META_CONTEXT]: "SET_META_CONTEXT",
};

/** Name of a command for logs, e.g. "WRITE" or "CMD_42". */
export function commandName(command: number): string {
  return COMMAND_NAMES[command] ?? `CMD_${command}`;
}

/** Name of an option for logs, e.g. "GO" or "OPT_42". */
export function optionName(option: number): string {
  return OPTION_NAMES[option] ?? `OPT_${option}`;
}

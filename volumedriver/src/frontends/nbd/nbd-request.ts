// One transmission-phase request (proto.md "Request message"), its decoding from the 28-byte header and
// its validation at the edge. validateRequest() is the one table-like check every request passes before
// it reaches the device; below it the device asserts the same conditions, it does not re-check them.
import type { NbdRejection } from "./nbd-errors.ts";
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
} from "./nbd-protocol.ts";

const TWO_TO_32 = 0x1_0000_0000;

export class NbdRequest {
  command = 0;
  flags = 0;
  /** The client's opaque cookie, as two 32-bit halves so it can be echoed without an allocation. */
  cookieHigh = 0;
  cookieLow = 0;
  /** Offsets beyond 2^53 lose precision here, but they are far beyond any device and fail the range check. */
  offset = 0;
  length = 0;
  /** WRITE payload (a view of the received bytes). */
  payload: Buffer | undefined = undefined;
}

/** Decodes the header at buffer[at..at+28) (magic already checked) into a new request. */
export function decodeRequestHeader(buffer: Buffer, at: number): NbdRequest {
  const request = new NbdRequest();
  request.flags = buffer.readUInt16BE(at + 4);
  request.command = buffer.readUInt16BE(at + 6);
  request.cookieHigh = buffer.readUInt32BE(at + 8);
  request.cookieLow = buffer.readUInt32BE(at + 12);
  request.offset = buffer.readUInt32BE(at + 16) * TWO_TO_32 + buffer.readUInt32BE(at + 20);
  request.length = buffer.readUInt32BE(at + 24);
  return request;
}

/** What validation needs to know about the connection and its export. */
export interface RequestContext {
  sizeBytes: number;
  readOnly: boolean;
  structuredReplies: boolean;
  /** base:allocation was selected with NBD_OPT_SET_META_CONTEXT for this export. */
  baseAllocation: boolean;
  requestSizeBytesMax: number;
}

/**
 * Command flags each command accepts (proto.md "Command flags"). FUA "is valid for all commands"
 * when NBD_FLAG_SEND_FUA is advertised, which it always is here.
 */
const ALLOWED_FLAGS: Record<number, number> = {
  [NBD_CMD_READ]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
  [NBD_CMD_WRITE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_DISC]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_FLUSH]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_TRIM]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_CACHE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_WRITE_ZEROES]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
  [NBD_CMD_BLOCK_STATUS]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
};

export function isKnownCommand(command: number): boolean {
  return ALLOWED_FLAGS[command] !== undefined;
}

function isWriteCommand(command: number): boolean {
  return command === NBD_CMD_WRITE || command === NBD_CMD_TRIM || command === NBD_CMD_WRITE_ZEROES;
}

/**
 * Checks one decoded request against the export and the negotiated features; undefined when it may
 * be dispatched. The order follows how specific the error is: command, flags, permission, size, range.
 */
export function validateRequest(request: NbdRequest, context: RequestContext): NbdRejection | undefined {
  const { command, flags, offset, length } = request;
  const allowedFlags = ALLOWED_FLAGS[command];
  if (allowedFlags === undefined) return "UnknownCommand";
  if ((flags & ~allowedFlags) !== 0) return "InvalidFlags";
  // NBD_FLAG_SEND_DF is only advertised with structured replies; DF without them is an undocumented flag.
  if ((flags & NBD_CMD_FLAG_DF) !== 0 && !context.structuredReplies) return "InvalidFlags";
  if (command === NBD_CMD_DISC) return undefined;
  if (command === NBD_CMD_FLUSH) return offset === 0 && length === 0 ? undefined : "NonZeroFlushRange";
  if (context.readOnly && isWriteCommand(command)) return "ReadOnlyExport";
  if (command === NBD_CMD_WRITE && length > context.requestSizeBytesMax) return "PayloadTooLarge";
  if (command === NBD_CMD_READ && length > context.requestSizeBytesMax) {
    // With structured replies EOVERFLOW tells the client to retry smaller (proto.md NBD_CMD_READ).
    return context.structuredReplies ? "ReadTooLarge" : "PayloadTooLarge";
  }
  if (offset > context.sizeBytes || length > context.sizeBytes - offset) {
    return command === NBD_CMD_WRITE || command === NBD_CMD_WRITE_ZEROES ? "WriteBeyondEnd" : "BeyondEnd";
  }
  if (command === NBD_CMD_BLOCK_STATUS) {
    if (!context.structuredReplies || !context.baseAllocation) return "NoMetaContext";
    if (length === 0) return "EmptyBlockStatus";
  }
  // Zeroing keeps holes when allowed (trim-based: fast); with NO_HOLE it writes zeros, no faster than a WRITE.
  if (command === NBD_CMD_WRITE_ZEROES && (flags & NBD_CMD_FLAG_FAST_ZERO) !== 0 && (flags & NBD_CMD_FLAG_NO_HOLE) !== 0) {
    return "ZeroNotFast";
  }
  return undefined;
}

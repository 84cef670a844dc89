// The one place where the NBD frontend maps failures to the wire's errno values (proto.md "Error
// values"): request rejections found at the edge, and the engine's VolumeError kinds. Nothing else in
// the frontend picks an NBD_E* value.
import { isVolumeError, type VolumeErrorKind } from "../../engine/block-device.ts";
import {
  NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_ENOTSUP, NBD_EOVERFLOW, NBD_EPERM,
  NBD_ESHUTDOWN,
} from "./nbd-protocol.ts";

/** Why a request was refused at the edge, before it reached the device. */
export type NbdRejection =
  /** proto.md: "The server SHOULD return NBD_EINVAL if it receives an unknown command." */
  | "UnknownCommand"
  /** proto.md: unknown command flags, or a flag "not explicitly documented as applicable" → EINVAL. */
  | "InvalidFlags"
  /** proto.md "Error values": a write, trim or write zeroes on a read-only export → EPERM. */
  | "ReadOnlyExport"
  /** proto.md "Size constraints": a read, trim, cache or block status beyond the export size → EINVAL. */
  | "BeyondEnd"
  /** proto.md "Error values" and NBD_CMD_WRITE_ZEROES: a write beyond the end → ENOSPC. */
  | "WriteBeyondEnd"
  /** A WRITE (or a READ with simple replies) longer than the advertised maximum payload → EINVAL. */
  | "PayloadTooLarge"
  /** proto.md NBD_CMD_READ, structured replies: "permitted to reject large read requests up front with NBD_EOVERFLOW". */
  | "ReadTooLarge"
  /** NBD_CMD_FLUSH: "length and offset are reserved, and MUST be set to all-zero". */
  | "NonZeroFlushRange"
  /** NBD_CMD_BLOCK_STATUS without a negotiated metadata context: "Servers SHOULD reply with NBD_EINVAL". */
  | "NoMetaContext"
  /** NBD_CMD_BLOCK_STATUS of length 0: no valid (nonzero-length) descriptor can be sent. */
  | "EmptyBlockStatus"
  /** NBD_CMD_FLAG_FAST_ZERO when zeroing would not be faster than writing (NO_HOLE) → ENOTSUP. */
  | "ZeroNotFast"
  /** proto.md "Terminating the transmission phase": requests during server shutdown → ESHUTDOWN. */
  | "ShuttingDown";

const REJECTION_ERRNO: Record<NbdRejection, number> = {
  UnknownCommand: NBD_EINVAL,
  InvalidFlags: NBD_EINVAL,
  ReadOnlyExport: NBD_EPERM,
  BeyondEnd: NBD_EINVAL,
  WriteBeyondEnd: NBD_ENOSPC,
  PayloadTooLarge: NBD_EINVAL,
  ReadTooLarge: NBD_EOVERFLOW,
  NonZeroFlushRange: NBD_EINVAL,
  NoMetaContext: NBD_EINVAL,
  EmptyBlockStatus: NBD_EINVAL,
  ZeroNotFast: NBD_ENOTSUP,
  ShuttingDown: NBD_ESHUTDOWN,
};

/** Engine error kinds: what the client should conclude (retry elsewhere, give up, stop). */
const VOLUME_ERROR_ERRNO: Record<VolumeErrorKind, number> = {
  OutOfRange: NBD_EINVAL,
  Invalid: NBD_EINVAL,
  Io: NBD_EIO,
  ReadOnly: NBD_EPERM,
  NotFound: NBD_EIO,
  Exists: NBD_EIO,
  Closed: NBD_ESHUTDOWN,
};

export function errnoForRejection(rejection: NbdRejection): number {
  return REJECTION_ERRNO[rejection];
}

/**
 * errno for a failure of the device. An OutOfRange on a write is ENOSPC as at the edge; an error
 * that is not a VolumeError is a bug somewhere below (the caller logs it) and reads as EIO.
 */
export function errnoForDeviceError(error: unknown, command: number): number {
  if (!isVolumeError(error)) return NBD_EIO;
  if (error.kind === "OutOfRange" && (command === NBD_CMD_WRITE || command === NBD_CMD_WRITE_ZEROES)) return NBD_ENOSPC;
  return VOLUME_ERROR_ERRNO[error.kind];
}

/** Operating errors are expected (log at warn); anything else is a bug below the frontend (log at error). */
export function isOperatingError(error: unknown): boolean {
  return isVolumeError(error);
}

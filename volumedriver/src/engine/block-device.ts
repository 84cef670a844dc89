// The one interface every frontend (NBD, iSCSI, the management API) talks to. Frontends validate
// requests at their edge; the engine asserts the same conditions and maps nothing to wire codes.

export interface WriteOptions {
  /** Force unit access: resolve only once this write is durable (as after flush()). */
  fua?: boolean;
}

export interface WriteZeroesOptions extends WriteOptions {
  /** Keep the range allocated (NBD_CMD_FLAG_NO_HOLE); otherwise whole clusters become holes. */
  noHole?: boolean;
}

export interface BlockExtent {
  offsetBytes: number;
  lengthBytes: number;
  /** false: a hole (never written, trimmed or zeroed); reads as zeros. */
  allocated: boolean;
}

export interface BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /**
   * Byte-granular read; the range must lie inside the device. `into` (at least lengthBytes long) is
   * a buffer the result may be read into (a view of its start is returned then); an implementation
   * may ignore it and return a buffer of its own.
   */
  read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer>;
  /**
   * Byte-granular write; partial clusters are read-modify-written. Resolves once in the write buffer.
   * Keeps no reference to `data` once the promise settles: callers may reuse the buffer (the NBD
   * server pools its payload buffers).
   */
  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  /** Resolves once every write that resolved before the call is durable (group commit). */
  flush(): Promise<void>;
  /** Discards the range: whole clusters become holes, partial edges are zeroed. */
  trim(offsetBytes: number, lengthBytes: number): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, options?: WriteZeroesOptions): Promise<void>;
  /** Allocation map of the range, in cluster-aligned extents clipped to the range, in order, merged. */
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]>;
}

/**
 * Operating errors of the engine, as coarse kinds that say what the caller should do:
 * - OutOfRange: offset/length outside the device (NBD EINVAL/ENOSPC, SCSI LBA OUT OF RANGE).
 * - Invalid: a request that is malformed in another way (bad name, size not a multiple of 4096).
 * - Io: the data could not be read correctly (checksum failure, object missing): never wrong data.
 * - ReadOnly: a write to a read-only device (snapshot, template).
 * - NotFound / Exists: management calls naming a missing or existing vDisk.
 * - Closed: the device or vPool has been closed.
 */
export type VolumeErrorKind = "OutOfRange" | "Invalid" | "Io" | "ReadOnly" | "NotFound" | "Exists" | "Closed";

export class VolumeError extends Error {
  readonly kind: VolumeErrorKind;
  constructor(kind: VolumeErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `VolumeError(${kind})`;
  }
}

export function isVolumeError(error: unknown, kind?: VolumeErrorKind): error is VolumeError {
  return error instanceof VolumeError && (kind === undefined || error.kind === kind);
}

// The interface between Alba's client side (proxy, maintenance) and one ASD (storage daemon): a
// key/value store of fragments with atomic batches of asserts and updates. The wire protocol that
// carries it is in alba/docs/asd-protocol.md; `AsdClient` (asd-client.ts) implements this
// interface over it, and tests may implement it in memory.
//
// Invariants every implementation keeps:
// - applyBatch is atomic and durable: when it resolves, every update is fsynced; when it rejects
//   (or the daemon dies mid-batch) none of them is visible, ever.
// - asserts are checked against the state at the moment the batch applies, under the same lock as
//   its updates.
// - a full ASD refuses batches that add bytes (AsdError "Full") but still serves reads and applies
//   batches of deletes only.
// - applyBatch keeps no reference to the values once it settles: callers reuse their buffers.
// - get of a missing key resolves undefined (not an error): fragments go missing in normal
//   operation (a repair not yet done), and the caller decides what that means.

export interface ByteRange {
  offsetBytes: number;
  lengthBytes: number;
}

export type AsdAssert =
  /** The key must not exist. */
  | { kind: "absent"; key: string }
  /** The key must exist. */
  | { kind: "present"; key: string }
  /** The key must exist with a value whose CRC-32C is this (unsigned). */
  | { kind: "checksum"; key: string; crc32c: number };

export type AsdUpdate =
  | { kind: "set"; key: string; value: Uint8Array }
  /** Deleting a missing key is not an error. */
  | { kind: "delete"; key: string };

export interface AsdBatch {
  asserts: AsdAssert[];
  updates: AsdUpdate[];
}

export interface AsdKeyInfo {
  key: string;
  sizeBytes: number;
  /** CRC-32C of the value as the ASD stored it (computed by the ASD on write). */
  crc32c: number;
}

export interface AsdListPage {
  keys: AsdKeyInfo[];
  /** Present when more keys may follow: pass as `startAfter`. */
  nextStartAfter?: string;
}

export interface AsdListOptions {
  prefix?: string;
  startAfter?: string;
  /** At most this many keys (implementations cap it at 1000). */
  limitKeys?: number;
}

export interface AsdStatistics {
  /** Stable identity, generated on the first run and stored in the ASD's directory. */
  asdId: string;
  /** Fault domain (a node/host): Alba puts at most x fragments of a chunk on one node id. */
  nodeId: string;
  capacityBytes: number;
  /** Bytes of values stored (inline and files), what the capacity limit counts. */
  usedBytes: number;
  /** Free bytes on the filesystem that holds the ASD's directory. */
  diskFreeBytes: number;
  keyCount: number;
  batchCount: number;
  fsyncCount: number;
  getCount: number;
  readBytes: number;
  writtenBytes: number;
  startedAt: string;
}

/**
 * What went wrong, as the caller needs to act on it:
 * - AssertFailed: an assert of the batch did not hold; nothing was applied.
 * - Full: the batch would exceed the ASD's capacity; nothing was applied. Reads and deletes work.
 * - Unavailable: the ASD cannot be reached (refused, reset, timeout) or answered 5xx. Try another.
 * - Invalid: the request is malformed (bad key, bad range); retrying will not help.
 * - Closed: this connection was closed.
 */
export type AsdErrorKind = "AssertFailed" | "Full" | "Unavailable" | "Invalid" | "Closed";

export class AsdError extends Error {
  readonly kind: AsdErrorKind;
  constructor(kind: AsdErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `AsdError(${kind})`;
  }
}

export function isAsdError(error: unknown, kind?: AsdErrorKind): error is AsdError {
  return error instanceof AsdError && (kind === undefined || error.kind === kind);
}

/** Keys: 1-512 UTF-8 bytes, no NUL. Alba's fragment keys are far shorter (see fragment-key.ts). */
export const ASD_KEY_SIZE_BYTES_MAX = 512;

export interface AsdApi {
  /** "host:port", for logs and errors. */
  readonly address: string;
  applyBatch(batch: AsdBatch): Promise<void>;
  /** The whole value, or undefined if the key does not exist. */
  get(key: string): Promise<Buffer | undefined>;
  /**
   * Parts of one value, one Buffer per range in order (a range past the end is clamped; a range
   * starting past the end is Invalid), or undefined if the key does not exist.
   */
  getRanges(key: string, ranges: readonly ByteRange[]): Promise<Buffer[] | undefined>;
  list(options?: AsdListOptions): Promise<AsdListPage>;
  statistics(): Promise<AsdStatistics>;
  /** Releases sockets. Further calls fail with Closed. */
  close(): Promise<void>;
}

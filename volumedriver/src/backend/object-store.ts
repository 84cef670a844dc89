// The one narrow interface every backend implements (memory, local, s3, swift, alba) and every
// wrapper stacks on (retrying, instrumented, failing). Keys are flat strings inside a namespace;
// objects are immutable byte strings with an opaque etag.
//
// Invariants every implementation keeps (the contract suite in tests/unit/volumedriver/backend checks them):
// - put and putFile are atomic: a concurrent or later get sees the whole old object or the whole new one.
// - put (putFile too) with ifAbsent fails with PreconditionFailed when the key exists; with ifMatch when the etag differs.
// - get of a missing key fails with NotFound; a range past the end fails with Invalid; a range that
//   ends past the end is clamped (like HTTP Range).
// - list returns keys in ascending byte order, paged by `startAfter` and `limitKeys`.
// - delete of a missing key is not an error (idempotent), so retries are safe.

export type NamespaceName = string;

export interface ObjectRange {
  offsetBytes: number;
  lengthBytes: number;
}

export interface PutOptions {
  /** Fail with PreconditionFailed if the key already exists. */
  ifAbsent?: boolean;
  /** Fail with PreconditionFailed unless the current etag equals this one. */
  ifMatch?: string;
}

/** putFile's options: put's, plus what the caller already knows about the file. */
export interface PutFileOptions extends PutOptions {
  /**
   * CRC-32C of each 4096-byte block of the file, in order (the last block may be short), computed
   * by the caller as it wrote the bytes. A store that keeps checksums of that block size may adopt
   * them instead of reading the file back (the local store does); every other store ignores them.
   * A wrong table is not trusted blindly: it makes later reads of those blocks fail as Corrupt.
   */
  blockCrc32cs?: Uint32Array;
}

export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  etag: string;
}

export interface ListOptions {
  prefix?: string;
  /** Return only keys strictly greater than this one. */
  startAfter?: string;
  /** At most this many keys in one page (implementations cap it at 1000). */
  limitKeys?: number;
}

export interface ListPage {
  objects: ObjectInfo[];
  /** Present when more keys may follow: pass as `startAfter` for the next page. */
  nextStartAfter?: string;
}

export interface ObjectStore {
  /** Short name for logs and metrics, e.g. "memory", "local:/data/backend". */
  readonly description: string;
  /** Creating a namespace that exists is a no-op (its objects stay), so retries and racing creators are safe. */
  createNamespace(namespace: NamespaceName): Promise<void>;
  /** Deletes the namespace and everything in it. Missing namespace: NotFound. */
  deleteNamespace(namespace: NamespaceName): Promise<void>;
  listNamespaces(): Promise<NamespaceName[]>;
  namespaceExists(namespace: NamespaceName): Promise<boolean>;
  put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo>;
  /**
   * Stores the current content of the file at `filePath` as the object, with put's semantics.
   * The caller promises the file is never modified afterwards (it may unlink it). A store may adopt
   * the file's bytes by hard link instead of copying them (the local store does). A file that
   * cannot be read because it does not exist is Invalid.
   */
  putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo>;
  /** Whole object, or the byte range given. */
  get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer>;
  /** Object metadata, or undefined if absent. */
  head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined>;
  delete(namespace: NamespaceName, key: string): Promise<void>;
  list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage>;
  /** Releases connections and timers. Further calls fail with Closed. */
  close(): Promise<void>;
}

/**
 * Coarse error kinds that tell the caller what to do (STYLE.md, after SlateDB):
 * - NotFound: the namespace or key does not exist.
 * - PreconditionFailed: ifAbsent / ifMatch did not hold.
 * - Transient: try again later (timeouts, 5xx, outages). The retrying wrapper retries only these.
 * - Invalid: the request itself is wrong (bad name, bad range); retrying will not help.
 * - Corrupt: the stored bytes fail their checksum.
 * - Closed: the store was closed.
 * - Internal: a bug or an unexpected condition.
 */
export type StoreErrorKind = "NotFound" | "PreconditionFailed" | "Transient" | "Invalid" | "Corrupt" | "Closed" | "Internal";

export class StoreError extends Error {
  readonly kind: StoreErrorKind;
  constructor(kind: StoreErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `StoreError(${kind})`;
  }
}

export function isStoreError(error: unknown, kind?: StoreErrorKind): error is StoreError {
  return error instanceof StoreError && (kind === undefined || error.kind === kind);
}

/** Namespace names: 1-63 chars of [a-z0-9._-], starting alphanumeric (fits S3 buckets and Swift containers). */
export const NAMESPACE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Keys: 1-1024 UTF-8 bytes (S3's limit), no NUL, no leading '/', no '..' path segment. */
export const KEY_SIZE_BYTES_MAX = 1024;
export function validateKey(key: string): void {
  if (key.length === 0 || Buffer.byteLength(key, "utf8") > KEY_SIZE_BYTES_MAX || key.includes("\0") || key.startsWith("/") || key.split("/").includes("..")) {
    throw new StoreError("Invalid", `invalid object key ${JSON.stringify(key)}`);
  }
}
export function validateNamespace(namespace: string): void {
  if (!NAMESPACE_NAME_PATTERN.test(namespace)) {
    throw new StoreError("Invalid", `invalid namespace name ${JSON.stringify(namespace)}: use 1-63 of [a-z0-9._-]`);
  }
}

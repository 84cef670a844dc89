// What the proxy and the tools need from an Alba client: object operations on namespaces, and the
// administration of ASDs and presets. `AlbaClient` (alba-client.ts) implements it in-process on a
// metadata store and ASD connections; `ProxyClient` (../proxy/proxy-client.ts) implements it over
// the proxy's HTTP API (alba/docs/proxy-protocol.md).
import type { AsdRecord, NamespaceRecord, ObjectManifest } from "../metadata/metadata-store.ts";
import type { Preset, PresetChanges } from "../preset/preset.ts";
import type { AsdStatistics, ByteRange } from "../asd/asd-api.ts";

export interface AlbaObjectInfo {
  key: string;
  sizeBytes: number;
  /** The object id of the current version. */
  etag: string;
}

export interface AlbaPutOptions {
  ifAbsent?: boolean;
  ifMatch?: string;
  /**
   * In process only (a proxy receiving the body): `data` is still being filled, in order; the put
   * reads bytes [0, end) only after `dataAvailable(end)` resolves, so it codes and writes the first
   * chunks while the rest arrives. A rejection (the body was cut) fails the put.
   */
  dataAvailable?: (endOffsetBytes: number) => Promise<void>;
}

export interface AlbaReadOptions {
  /** Read only this version (its etag): PreconditionFailed if the key now holds another one. */
  ifMatch?: string;
  /** A part of a whole-object read: its fragments are not kept in the fragment cache. */
  sequential?: boolean;
}

export interface AlbaListOptions {
  prefix?: string;
  startAfter?: string;
  limitKeys?: number;
}

export interface AlbaListPage {
  objects: AlbaObjectInfo[];
  nextStartAfter?: string;
}

export interface AsdStatus {
  record: AsdRecord;
  /** up: answered its last probe; down: did not (since `downSince`). */
  health: "up" | "down";
  downSince?: string;
  statistics?: AsdStatistics;
}

/** Per preset: how many more ASD (node) losses every object can survive right now. */
export interface DiskSafety {
  presetName: string;
  objectCount: number;
  /** Count of chunks by how many more fragments they can lose before data loss (m - missing). */
  chunksByRemainingRedundancy: Record<string, number>;
}

/**
 * Errors: AlbaError kinds NotFound (namespace, key, preset, ASD), PreconditionFailed (ifAbsent/ifMatch),
 * NoSatisfiablePolicy (message: "no satisfiable policy ..."), Unavailable (too few fragments readable
 * right now; retry later), Invalid (bad request), Conflict (exists already / in use), Corrupt (decoded
 * bytes fail their checks even after trying every fragment combination).
 */
export type AlbaErrorKind = "NotFound" | "PreconditionFailed" | "NoSatisfiablePolicy" | "Unavailable" | "Invalid" | "Conflict" | "Corrupt";

export class AlbaError extends Error {
  readonly kind: AlbaErrorKind;
  constructor(kind: AlbaErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `AlbaError(${kind})`;
  }
}

export function isAlbaError(error: unknown, kind?: AlbaErrorKind): error is AlbaError {
  return error instanceof AlbaError && (kind === undefined || error.kind === kind);
}

export interface AlbaObjectApi {
  createNamespace(name: string, options?: { presetName?: string }): Promise<NamespaceRecord>;
  /** Deletes the namespace, its manifests and (in the background) its fragments. */
  deleteNamespace(name: string): Promise<void>;
  listNamespaces(): Promise<NamespaceRecord[]>;
  getNamespace(name: string): Promise<NamespaceRecord | undefined>;

  put(namespace: string, key: string, data: Uint8Array, options?: AlbaPutOptions): Promise<AlbaObjectInfo>;
  get(namespace: string, key: string): Promise<Buffer>;
  /** One Buffer per range, in order (clamped at the end like HTTP Range; a range starting past the end is Invalid). */
  getRanges(namespace: string, key: string, ranges: readonly ByteRange[], options?: AlbaReadOptions): Promise<Buffer[]>;
  head(namespace: string, key: string): Promise<AlbaObjectInfo | undefined>;
  /** Missing key: not an error. */
  delete(namespace: string, key: string, options?: { ifMatch?: string }): Promise<void>;
  list(namespace: string, options?: AlbaListOptions): Promise<AlbaListPage>;
  getManifest(namespace: string, key: string): Promise<ObjectManifest | undefined>;
}

export interface AlbaAdminApi {
  /** Adds a running ASD to the backend (probes it for its id and node id). */
  claimAsd(host: string, port: number): Promise<AsdRecord>;
  listAsds(): Promise<AsdStatus[]>;
  addPreset(preset: Preset): Promise<void>;
  listPresets(): Promise<Preset[]>;
  /**
   * Replaces a preset's policies (for objects written from then on) and/or makes it the default;
   * Invalid for any other change (add a new preset instead), NotFound. Returns the preset.
   */
  updatePreset(name: string, changes: PresetChanges): Promise<Preset>;
  /** Deletes a preset: Conflict while a namespace uses it or it is the default, NotFound. */
  deletePreset(name: string): Promise<void>;
  diskSafety(): Promise<DiskSafety[]>;
}

export type AlbaApi = AlbaObjectApi & AlbaAdminApi & { close(): Promise<void> };

// Alba's backend metadata: the claimed ASDs, presets, namespaces and object manifests. SQLite
// (sqlite-metadata-store.ts) implements it for one host; an etcd implementation can fill the same
// interface when several hosts share a backend. Every method is atomic on its own.
//
// Object identity: each stored version of an object gets a fresh random `objectId` (32 hex digits),
// which is also its etag. Fragments live on ASDs under keys derived from the object id
// (fragment-key.ts), so a fragment whose object id has no manifest and no pending upload is an orphan.
import type { Policy, Preset, PresetChanges } from "../preset/preset.ts";

export interface AsdRecord {
  asdId: string;
  nodeId: string;
  host: string;
  port: number;
  /** claimed: in use; decommissioned: no new fragments, maintenance moves its fragments away. */
  state: "claimed" | "decommissioned";
  claimedAt: string;
}

export interface NamespaceRecord {
  name: string;
  presetName: string;
  createdAt: string;
}

export interface FragmentManifest {
  /** Where it is stored, or null when it is missing (not written, or lost and not yet repaired). */
  asdId: string | null;
  /** Stored bytes (after compression and encryption). */
  storedSizeBytes: number;
  /** CRC-32C of the stored bytes. */
  crc32c: number;
  /** Whether the stored bytes are compressed (a fragment that does not shrink is stored plain). */
  compressed: boolean;
}

export interface ChunkManifest {
  /** Object bytes in this chunk (the last chunk may be short). */
  sizeBytes: number;
  /** Length of each fragment before compression: ceil(sizeBytes / k) rounded up for the coder. */
  fragmentSizeBytes: number;
  /** k + m entries: data fragments 0..k-1, then parity. */
  fragments: FragmentManifest[];
}

export interface ObjectManifest {
  namespace: string;
  key: string;
  /** 32 hex digits, fresh per stored version; the etag. */
  objectId: string;
  sizeBytes: number;
  createdAt: string;
  presetName: string;
  /** The policy this version was written with. */
  policy: Policy;
  compression: Preset["compression"];
  encryption: Preset["encryption"];
  /** Object bytes per chunk: k * the preset's fragment size (all chunks but the last hold this many). */
  chunkSizeBytes: number;
  chunks: ChunkManifest[];
}

export interface ManifestListPage {
  manifests: ObjectManifest[];
  nextStartAfter?: string;
}

/** An upload started but not committed: its fragments are orphans if it never commits. */
export interface PendingUpload {
  objectId: string;
  namespace: string;
  key: string;
  startedAt: string;
}

/** One fragment moved or rewritten by maintenance. */
export interface FragmentChange {
  chunkIndex: number;
  fragmentIndex: number;
  fragment: FragmentManifest;
}

/**
 * Errors: MetadataError with kind NotFound (namespace, preset, ASD), Conflict (exists already, or
 * a precondition on a manifest failed), Invalid (bad name, bad preset or preset change), InUse
 * (deleting a preset a namespace uses or the default preset, a namespace that still has objects
 * when not forced).
 */
export type MetadataErrorKind = "NotFound" | "Conflict" | "Invalid" | "InUse";

export class MetadataError extends Error {
  readonly kind: MetadataErrorKind;
  constructor(kind: MetadataErrorKind, message: string) {
    super(message);
    this.kind = kind;
    this.name = `MetadataError(${kind})`;
  }
}

export interface AlbaMetadataStore {
  addAsd(record: AsdRecord): void;
  /** Changes host/port (an ASD restarted elsewhere) or state. */
  updateAsd(asdId: string, changes: Partial<Pick<AsdRecord, "host" | "port" | "state">>): void;
  getAsd(asdId: string): AsdRecord | undefined;
  listAsds(): AsdRecord[];

  addPreset(preset: Preset): void;
  getPreset(name: string): Preset | undefined;
  listPresets(): Preset[];
  /**
   * Replaces the preset's policies and/or makes it the default (validatePresetChanges: Invalid for
   * anything else, e.g. a new fragment size); returns the preset as stored. Objects written already
   * keep the policy their manifest records. NotFound when there is no such preset.
   */
  updatePreset(name: string, changes: PresetChanges): Preset;
  /** Deletes an unused preset: InUse while a namespace uses it or it is the default; NotFound when missing. */
  deletePreset(name: string): void;
  /** The preset new namespaces get when none is named. */
  setDefaultPreset(name: string): void;
  defaultPresetName(): string | undefined;

  createNamespace(name: string, presetName: string): NamespaceRecord;
  getNamespace(name: string): NamespaceRecord | undefined;
  listNamespaces(): NamespaceRecord[];
  /** Removes the namespace and its manifests; returns the manifests so the caller can delete their fragments. */
  deleteNamespace(name: string): ObjectManifest[];

  getManifest(namespace: string, key: string): ObjectManifest | undefined;
  getManifestByObjectId(objectId: string): ObjectManifest | undefined;
  /**
   * Stores `manifest` as the current version of its key, if the precondition holds (ifAbsent: no
   * current version; ifMatch: the current version's objectId), and ends its pending upload in the
   * same transaction. Returns the replaced manifest, whose fragments the caller then deletes.
   * Precondition failure: MetadataError Conflict.
   */
  commitManifest(manifest: ObjectManifest, options?: { ifAbsent?: boolean; ifMatch?: string }): ObjectManifest | undefined;
  /** Deletes the current version (if ifMatch is given, only when it matches); returns it, or undefined if absent. */
  deleteManifest(namespace: string, key: string, options?: { ifMatch?: string }): ObjectManifest | undefined;
  listManifests(namespace: string, options?: { prefix?: string; startAfter?: string; limitKeys?: number }): ManifestListPage;
  /** Every manifest in object-id order, paged, for maintenance sweeps. */
  scanManifests(options: { afterObjectId?: string; limit: number }): ObjectManifest[];
  /** Manifests with at least one fragment on this ASD, paged by object id. */
  manifestsOnAsd(asdId: string, options: { afterObjectId?: string; limit: number }): ObjectManifest[];
  /**
   * Applies maintenance's fragment moves to the version `objectId`, if it is still current; returns
   * false (changing nothing) if the object was overwritten or deleted meanwhile.
   */
  updateFragments(objectId: string, changes: FragmentChange[]): boolean;

  addPendingUpload(upload: PendingUpload): void;
  removePendingUpload(objectId: string): void;
  isPendingUpload(objectId: string): boolean;
  listPendingUploads(options?: { startedBefore?: string }): PendingUpload[];

  close(): void;
}

// Public types of a vPool: the set of vDisks of one backend and one set of cache settings, as hosted
// by one StorageDriver on this host. The implementation is in vpool.ts (openVPool).
import type { IoKind, LatencyHistogramSnapshot } from "./io-latency.ts";
import type { Logger } from "pino";
import type { ObjectStore } from "../backend/object-store.ts";
import type { BlockDevice } from "./block-device.ts";
import type { VolumeOverrides } from "./formats/volume-config.ts";

export const CLUSTER_SIZE_BYTES = 4096;
export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;

export interface VPoolSettings {
  /** SCO size: 4-128 MiB, a multiple of 4 KiB. Default 64 MiB. */
  scoSizeBytes: number;
  /** A SCO holding data for this long is sealed, so data reaches the backend in bounded time. Default 10 s. */
  scoMaxAgeMs: number;
  /** A TLog is rolled (at a SCO boundary) once it names this many SCOs, or is older than scoMaxAgeMs. Default 8. */
  tlogScoCountMax: number;
  /** Local write buffer (SCO cache) size for the whole vPool. Default 1 GiB. */
  writeBufferSizeBytes: number;
  /** Disposable (uploaded) SCOs are evicted when less than this much room is left in the write buffer. Default 1/8 of it. */
  writeBufferTriggerGapBytes: number;
  /** In-memory read cache for clusters read from the backend, bytes. Default 256 MiB. */
  readCacheSizeBytes: number;
  /** Metadata page cache, bytes. Default 64 MiB. */
  metadataCacheSizeBytes: number;
  /** Objects uploaded at once per volume. Default 2. */
  uploadConcurrency: number;
  /** Clusters read ahead from the backend once reads are sequential. Default 256 (1 MiB). */
  prefetchClusters: number;
  /** The scrubber copies the live clusters of SCOs keeping less than this fraction live. Default 0.9. */
  scrubLiveFractionKeep: number;
  /** Objects a scrub replaced are deleted this long after it (readers may still hold them). Default 60 s. */
  scrubGracePeriodMs: number;
}

export interface VPoolConfig extends Partial<VPoolSettings> {
  /** vPool name: [a-z0-9][a-z0-9-]{0,30}. */
  name: string;
  /** Local directory of this vPool on this host: write buffer, metadata. Created if missing. */
  directory: string;
  backend: ObjectStore;
  logger?: Logger;
  /** Milliseconds clock; injectable for tests. Default Date.now. */
  nowMs?: () => number;
}

/** failed: the vDisk could not be opened or restored (see VolumeInfo.error); it serves no I/O. */
export type VolumeState = "running" | "recovering" | "closed" | "failed";

export interface VolumeInfo {
  name: string;
  uuid: string;
  vpool: string;
  namespace: string;
  sizeBytes: number;
  clusterSizeBytes: number;
  scoSizeBytes: number;
  createdAt: string;
  state: VolumeState;
  /** Why the vDisk is failed, when it is. */
  error?: string;
  /** A template is read-only; clones can be made from it without naming a snapshot. */
  template: boolean;
  /** The snapshot this vDisk was cloned from (zero copy: unwritten clusters read from it). */
  parent?: CloneParent;
  snapshotCount: number;
  /** A snapshot was deleted since the last scrub: the scrubber has garbage to collect. */
  scrubPending: boolean;
  /** Settings of this vDisk that differ from its vPool's (setVolumeOverrides). */
  overrides: VolumeOverrides;
}

/** Snapshot names: 1-63 of [A-Za-z0-9._-], starting with a letter or digit (never '@' or '/'). */
export const SNAPSHOT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface CloneParent {
  volume: string;
  snapshot: string;
}

export interface SnapshotInfo {
  name: string;
  uuid: string;
  createdAt: string;
  /** Size of the vDisk when the snapshot was taken. */
  sizeBytes: number;
  /** Every TLog of the snapshot is on the backend: it survives the loss of the local disk, and can be cloned. */
  synced: boolean;
  /** vDisks of this vPool cloned from this snapshot; a snapshot with clones cannot be deleted. */
  clones: string[];
}

export interface ScrubProgress {
  /** What the scrubber is doing: "collecting", "rewriting", "applying", "deleting". */
  phase: string;
  done: number;
  total: number;
}

export interface ScrubResult {
  /** SCOs whose live clusters were copied into new SCOs. */
  scosRewritten: number;
  /** Backend objects (SCOs and TLogs) deleted as garbage, now or after the grace period. */
  objectsCollected: number;
  /** Backend bytes of the vDisk's SCOs and TLogs before and after. */
  backendBytesBefore: number;
  backendBytesAfter: number;
}

/** A read-only view of a snapshot (the NBD export VDISK@SNAP). Close it when done. */
export interface SnapshotDevice extends BlockDevice {
  readonly volume: string;
  readonly snapshot: string;
  close(): Promise<void>;
}

export interface VolumeStats {
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
  flushOps: number;
  /** fsync rounds made for flushes and FUA writes; concurrent flushes share one (group commit). */
  flushSyncs: number;
  /** Bytes in local SCOs not yet safe on the backend (SCO and its TLog uploaded). */
  notUploadedBytes: number;
  /** Bytes of SCOs held locally (all states). */
  writeBufferBytes: number;
  readCacheHits: number;
  readCacheMisses: number;
  backendReads: number;
  throttledWrites: number;
  /** Writes that had to wait for room in the write buffer (counted when the wait begins). */
  stalledWrites: number;
  /** Writes waiting for room right now. */
  stalledWritesNow: number;
  /** Number of the last TLog known to be on the backend (0: none). */
  backendTlogNumber: number;
  /** Service-time histograms of reads, writes and flushes (io-latency.ts). */
  latency: Record<IoKind, LatencyHistogramSnapshot>;
}

export interface Volume extends BlockDevice {
  info(): VolumeInfo;
  stats(): VolumeStats;
  /** Seals the open SCO and TLog and waits until everything written so far is on the backend. */
  drain(): Promise<void>;
}

export interface VPool {
  readonly name: string;
  readonly settings: VPoolSettings;
  /** Creates a thin vDisk of sizeBytes (a multiple of 4096) and its backend namespace. Exists if taken. */
  createVolume(name: string, sizeBytes: number): Promise<Volume>;
  getVolume(name: string): Volume | undefined;
  listVolumes(): VolumeInfo[];
  /** Closes the vDisk and deletes its local data and its backend namespace. Refused (Exists) while it has clones. */
  deleteVolume(name: string): Promise<void>;
  /**
   * Takes a snapshot at a request boundary: instant (seals the open SCO and TLog, records the
   * snapshot). It reaches the backend with the TLogs it covers (`synced`). Names are unique per vDisk.
   */
  createSnapshot(volume: string, snapshot: string): Promise<SnapshotInfo>;
  /** The vDisk's snapshots, oldest first. */
  listSnapshots(volume: string): SnapshotInfo[];
  /**
   * Deletes a snapshot: its TLogs merge into the next one and the vDisk is marked for scrubbing.
   * Refused (Exists) while vDisks are cloned from it.
   */
  deleteSnapshot(volume: string, snapshot: string): Promise<void>;
  /**
   * Rolls the vDisk back to a snapshot: writes after it and the snapshots after it are gone, their
   * objects are deleted. Waits until everything is on the backend first. Refused (Exists) when a
   * later snapshot has clones. Returns the reopened vDisk (the old Volume object is closed).
   */
  rollbackVolume(volume: string, snapshot: string): Promise<Volume>;
  /**
   * Clones a new vDisk from a snapshot (zero copy). With no snapshot named, the source must be a
   * template and its latest snapshot is used. The snapshot is made synced first if it is not.
   */
  cloneVolume(name: string, from: { volume: string; snapshot?: string }): Promise<Volume>;
  /**
   * Grows a vDisk to sizeBytes (a multiple of 4096; Invalid when smaller: shrinking would cut off
   * data; ReadOnly for a template). Snapshots keep the size they were taken at; clones made later get
   * the size of their snapshot. Open NBD connections keep the size they negotiated; iSCSI initiators
   * get CAPACITY DATA HAS CHANGED.
   */
  resizeVolume(volume: string, sizeBytes: number): Promise<VolumeInfo>;
  /**
   * Replaces the vDisk's setting overrides (VOLUME_OVERRIDE_KEYS; {} clears them). Stored in its
   * volume.json on the backend, so they follow the vDisk to another host; they apply at once.
   */
  setVolumeOverrides(volume: string, overrides: VolumeOverrides): Promise<VolumeInfo>;
  /**
   * Changes vPool settings while it runs (LIVE_VPOOL_SETTINGS in vpool.ts; others: Invalid): the write
   * buffer and read cache take their new sizes (a smaller read cache keeps its most recently used
   * clusters), every vDisk its new settings; a new SCO size applies to vDisks created from now on.
   * Not persisted: whoever starts the vPool passes the settings again. Returns the settings now.
   */
  updateSettings(changes: Partial<VPoolSettings>): VPoolSettings;
  /** The vDisk's effective settings: its vPool's with its overrides. */
  volumeSettings(volume: string): VPoolSettings;
  /** Marks a vDisk as a template: snapshots what it holds, then refuses writes (ReadOnly). */
  setTemplate(volume: string): Promise<void>;
  /**
   * Scrubs a vDisk: rewrites SCOs whose live fraction is under the vPool's scrub threshold, rewrites
   * the TLogs, applies the result atomically and collects the garbage. Resolves when done.
   */
  scrubVolume(volume: string, options?: { onProgress?: (progress: ScrubProgress) => void }): Promise<ScrubResult>;
  /** Opens a read-only view of a snapshot. */
  openSnapshot(volume: string, snapshot: string): Promise<SnapshotDevice>;
  /** Clean shutdown: flush, seal, upload everything (bounded by timeoutMs, default 25 s), close. */
  close(options?: { timeoutMs?: number }): Promise<void>;
  /** Test hook: stop at once as a killed process would, dropping anything not yet written to local files. */
  simulateCrash(): Promise<void>;
}

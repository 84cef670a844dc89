// Public types of a vPool: the set of vDisks of one backend and one set of cache settings, as hosted
// by one StorageDriver on this host. The implementation is in vpool.ts (openVPool).
import type { Logger } from "pino";
import type { ObjectStore } from "../backend/object-store.ts";
import type { BlockDevice } from "./block-device.ts";

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
  /** Closes the vDisk and deletes its local data and its backend namespace. */
  deleteVolume(name: string): Promise<void>;
  /** Clean shutdown: flush, seal, upload everything (bounded by timeoutMs, default 25 s), close. */
  close(options?: { timeoutMs?: number }): Promise<void>;
  /** Test hook: stop at once as a killed process would, dropping anything not yet written to local files. */
  simulateCrash(): Promise<void>;
}

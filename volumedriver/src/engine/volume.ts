// A thin vDisk: 4 KiB clusters mapped by the metadata to locations in SCOs, written through the
// journal into the local write buffer and uploaded by the uploader. Reads go metadata -> local SCO (or
// its in-memory tail) -> read cache -> ranged backend reads of just the needed clusters, coalesced;
// every cluster read is checked against the CRC the metadata holds, so corruption is an I/O error,
// never wrong data. Requests are validated by the frontends; here the same checks raise VolumeError.
import { IoLatency } from "./io-latency.ts";
import { rm, unlink } from "node:fs/promises";
import type { Logger } from "pino";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import { isStoreError, type ObjectStore } from "../backend/object-store.ts";
import { type BlockExtent, VolumeError, type WriteOptions, type WriteZeroesOptions } from "./block-device.ts";
import type { Ancestor, ChainLink } from "./history.ts";
import { Journal, type JournalListener, type JournalSettings } from "./journal.ts";
import type { LocalSco } from "./local-sco.ts";
import { METADATA_PAGE_SIZE_BYTES, type ClusterLocation, type MetadataStore } from "./metadata-store.ts";
import { ReadCache } from "./read-cache.ts";
import { scoClusterOffsetBytes, scoObjectKey } from "./formats/sco-format.ts";
import { encodeManifest, SNAPSHOTS_MANIFEST_KEY, type SnapshotRecord, type SnapshotsManifest } from "./formats/snapshots-manifest.ts";
import { scoNumberFromKey } from "./formats/sco-format.ts";
import { tlogNumberFromKey } from "./formats/tlog-format.ts";
import { listAllKeys } from "./history.ts";
import type { ScrubOutput } from "./scrubber.ts";
import { runScrubInWorker } from "./scrub-worker.ts";
import { crashPoint } from "./crash-points.ts";
import type { VolumeConfig } from "./formats/volume-config.ts";
import { writeLocalManifest, type RecoveredState } from "./volume-recovery.ts";
import { Uploader, type UploaderSettings } from "./uploader.ts";
import type { WriteBuffer, WriteBufferMember } from "./write-buffer.ts";
import {
  CLUSTER_SIZE_BYTES, type ScrubProgress, type ScrubResult, type Volume as VolumeInterface, type VolumeInfo, type VolumeStats, type VPoolSettings,
} from "./vpool-types.ts";

const BACKEND_READ_ATTEMPTS = 4;
const BACKEND_READ_BACKOFF_MS = 50;
const BACKEND_READ_BACKOFF_MAX_MS = 2000;
const WRITE_ZEROES_CHUNK_BYTES = 1024 * 1024;
const GARBAGE_CHECK_INTERVAL_MS = 10_000;
/** Sequential reads in a row before prefetching starts. */
const PREFETCH_AFTER_SEQUENTIAL_READS = 2;

/** Resolves true when `work` settles before the deadline (ms since the epoch), false otherwise. */
async function withDeadline(work: Promise<unknown>, deadlineMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work.then(() => true, () => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), Math.max(0, deadlineMs - Date.now())); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

interface ClusterRun {
  /** Index of the first cluster of the run within the request. */
  index: number;
  count: number;
  cloneIndex: number;
  scoNumber: number;
  scoOffset: number;
}

export interface VolumeDependencies {
  config: VolumeConfig;
  directory: string;
  settings: VPoolSettings;
  store: ObjectStore;
  writeBuffer: WriteBuffer;
  readCache: ReadCache;
  logger: Logger;
  nowMs: () => number;
  /** For a clone: its ancestors, nearest first, with the TLogs of each up to the cloned snapshot. */
  ancestors: Ancestor[];
}

/** Something that maps clusters to locations: the vDisk's metadata, or a snapshot's. */
export type ClusterLookup = (clusterAddress: number) => ClusterLocation | undefined;

/** The journal settings that follow the vDisk's settings (rolling, sealing), recomputed when they change. */
function journalTuning(settings: VPoolSettings, scoSizeBytes: number): Pick<JournalSettings, "tlogScoCountMax" | "scoMaxAgeMs"> {
  // A TLog's SCOs only become disposable when the TLog is uploaded: keep them to at most half the
  // write buffer, or writers would stall waiting for a TLog that cannot roll yet.
  return {
    tlogScoCountMax: Math.max(1, Math.min(settings.tlogScoCountMax, Math.floor(settings.writeBufferSizeBytes / (2 * scoSizeBytes)))),
    scoMaxAgeMs: settings.scoMaxAgeMs,
  };
}

export class VolumeEngine implements VolumeInterface, WriteBufferMember, JournalListener {
  readonly name: string;
  private currentConfig: VolumeConfig;
  private readonly directory: string;
  /** The vPool's settings with this vDisk's overrides (replaced by applyConfig). */
  private settings: VPoolSettings;
  private readonly journalSettings: JournalSettings;
  private readonly uploaderSettings: UploaderSettings;
  private readonly store: ObjectStore;
  private readonly writeBuffer: WriteBuffer;
  private readonly readCache: ReadCache;
  private readonly logger: Logger;
  private readonly nowMs: () => number;
  private readonly metadata: MetadataStore;
  private readonly scos: Map<number, LocalSco>;
  private readonly journal: Journal;
  private readonly uploader: Uploader;
  private readonly clusterLocks = new Map<number, Promise<void>>();
  private closed = false;
  private inFlight = 0;
  private readonly inFlightWaiters: Array<() => void> = [];
  private backendTlogNumber: number;
  notUploadedBytes = 0;
  localBytes = 0;
  private readonly counters = {
    readOps: 0, writeOps: 0, readBytes: 0, writeBytes: 0, flushOps: 0,
    readCacheHits: 0, readCacheMisses: 0, backendReads: 0, throttledWrites: 0, stalledWrites: 0,
  };
  /** Writes waiting for room in the write buffer right now. */
  private stalledWritesNow = 0;
  /** Service times of reads, writes and flushes (stats().latency, the StorageDriver's /metrics). */
  private readonly latency = new IoLatency();
  private lastReadEndCluster = -1;
  private sequentialReads = 0;
  private prefetchedUpToCluster = 0;
  private prefetching = false;
  /** Index 0: this vDisk; n: its n-th clone ancestor (the clone index in the metadata). */
  private readonly chain: ChainLink[];
  readonly ancestors: Ancestor[];
  /** The history (snapshots.json); replaced whole on every change, which runs under manifestLock. */
  private manifest: SnapshotsManifest;
  private backendManifestGeneration: number;
  private manifestLock: Promise<unknown> = Promise.resolve();

  constructor(dependencies: VolumeDependencies, recovered: RecoveredState) {
    this.currentConfig = dependencies.config;
    this.ancestors = dependencies.ancestors;
    this.chain = [{ name: this.config.name, uuid: this.config.uuid, namespace: this.config.namespace }, ...this.ancestors.map((ancestor) => ancestor.link)];
    this.manifest = recovered.manifest;
    this.backendManifestGeneration = recovered.backendManifestGeneration;
    this.name = this.config.name;
    this.directory = dependencies.directory;
    this.settings = dependencies.settings;
    this.store = dependencies.store;
    this.writeBuffer = dependencies.writeBuffer;
    this.readCache = dependencies.readCache;
    this.logger = dependencies.logger.child({ volume: this.name });
    this.nowMs = dependencies.nowMs;
    this.metadata = recovered.metadata;
    this.scos = recovered.scos;
    this.backendTlogNumber = recovered.backendTlogNumber;
    for (const sco of this.scos.values()) {
      this.localBytes += sco.sizeBytes;
      if (sco.state !== "safe") this.notUploadedBytes += sco.sizeBytes;
    }
    this.journalSettings = {
      volumeUuid: this.config.uuid,
      directory: this.directory,
      scoClusterCount: this.config.scoSizeBytes / CLUSTER_SIZE_BYTES,
      ...journalTuning(this.settings, this.config.scoSizeBytes),
      pendingBytesMax: Math.max(8 * 1024 * 1024, Math.min(64 * 1024 * 1024, this.settings.writeBufferSizeBytes / 4)),
      dirtyPagesMax: Math.max(1024, Math.floor(this.settings.metadataCacheSizeBytes / METADATA_PAGE_SIZE_BYTES)),
      nowMs: this.nowMs,
      logger: this.logger,
    };
    this.journal = new Journal(this.journalSettings, this.metadata, this, this.scos, recovered.nextScoNumber, recovered.nextTlogNumber);
    this.uploaderSettings = {
      concurrency: this.settings.uploadConcurrency,
      logger: this.logger,
      scoPath: (scoNumber) => this.journal.scoPath(scoNumber),
      tlogPath: (tlogNumber) => this.journal.tlogPath(tlogNumber),
      scoBlockCrc32cs: (scoNumber) => this.journal.scoBlockCrc32cs(scoNumber),
      onScoUploaded: () => this.writeBuffer.progress(),
    };
    this.uploader = new Uploader(this.store, this.config.namespace, this.uploaderSettings, (tlogNumber, scoNumbers) => this.tlogUploaded(tlogNumber, scoNumbers));
    for (const tlog of recovered.tlogsToUpload) this.uploader.enqueueTlog(tlog.tlogNumber, tlog.scoNumbers);
    if (this.manifest.generation > this.backendManifestGeneration) this.enqueueManifestUpload(this.manifest);
    this.writeBuffer.register(this);
  }

  get readOnly(): boolean {
    return this.manifest.template;
  }

  get config(): VolumeConfig {
    return this.currentConfig;
  }

  get sizeBytes(): number {
    return this.currentConfig.sizeBytes;
  }

  /**
   * Takes a new volume.json (a bigger size, other overrides) and the settings that follow from it,
   * once the vPool has stored it on the backend and locally. Size and settings apply to the next
   * request; the identity fields never change.
   */
  applyConfig(config: VolumeConfig, settings: VPoolSettings): void {
    this.currentConfig = config;
    this.settings = settings;
    Object.assign(this.journalSettings, journalTuning(settings, config.scoSizeBytes));
    this.uploaderSettings.concurrency = settings.uploadConcurrency;
    this.uploader.settingsChanged();
  }

  // ---- JournalListener and upload life cycle ----

  scoSealed(sco: LocalSco): void {
    this.uploader.enqueueSco(sco.scoNumber);
  }

  tlogSealed(tlogNumber: number, scoNumbers: number[]): void {
    this.uploader.enqueueTlog(tlogNumber, scoNumbers);
  }

  private tlogUploaded(tlogNumber: number, scoNumbers: number[]): void {
    if (this.closed) return;
    for (const scoNumber of scoNumbers) {
      const sco = this.scos.get(scoNumber);
      if (sco !== undefined && sco.state !== "safe") {
        sco.state = "safe";
        sco.dropBlockCrc32cs();
        this.notUploadedBytes -= sco.sizeBytes;
      }
    }
    this.backendTlogNumber = tlogNumber;
    const maxSco = scoNumbers.length > 0 ? Math.max(...scoNumbers) : 0;
    try {
      this.metadata.setMeta("backend_tlog", String(tlogNumber));
      if (maxSco > Number(this.metadata.getMeta("uploaded_max_sco") ?? "0")) this.metadata.setMeta("uploaded_max_sco", String(maxSco));
    } catch (error) {
      this.logger.error({ err: error }, "could not record the uploaded TLog; it will be uploaded again after a restart");
    }
    unlink(this.journal.tlogPath(tlogNumber)).catch(() => undefined);
    this.writeBuffer.progress();
  }

  evictionCandidates(): LocalSco[] {
    const candidates: LocalSco[] = [];
    for (const sco of this.scos.values()) if (sco.state === "safe" && !sco.evicted) candidates.push(sco);
    return candidates;
  }

  async evict(sco: LocalSco): Promise<void> {
    if (sco.state !== "safe" || sco.evicted) return;
    this.scos.delete(sco.scoNumber);
    this.localBytes -= sco.sizeBytes;
    await unlink(sco.path).catch(() => undefined);
    await sco.markEvicted();
  }

  sealForUpload(): void {
    // Sealing early costs small SCOs and extra requests; only do it when uploads have nothing else
    // to work on, i.e. when the data that fills the buffer sits in the open SCO or TLog.
    if (!this.closed && this.uploader.idle) this.journal.sealAll();
  }

  private lastGarbageCheckMs = 0;

  /** Periodic work: age-based sealing; now and then, garbage whose grace period is over. */
  tick(): void {
    if (this.closed) return;
    this.journal.sealIfOld();
    const now = this.nowMs();
    if (this.manifest.garbage.length > 0 && !this.scrubbing && now - this.lastGarbageCheckMs >= GARBAGE_CHECK_INTERVAL_MS) {
      this.lastGarbageCheckMs = now;
      this.collectGarbage().catch((error: unknown) => this.logger.warn({ err: error }, "deleting scrub garbage failed; retrying later"));
    }
  }

  // ---- BlockDevice ----

  private checkRange(offsetBytes: number, lengthBytes: number, operation: string): void {
    if (this.closed) throw new VolumeError("Closed", `vDisk ${this.name} is closed`);
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0) {
      throw new VolumeError("OutOfRange", `${operation}: offset ${offsetBytes} and length ${lengthBytes} must be non-negative integers`);
    }
    if (offsetBytes + lengthBytes > this.sizeBytes) {
      throw new VolumeError("OutOfRange", `${operation} of ${lengthBytes} bytes at offset ${offsetBytes} ends beyond the end of vDisk ${this.name} (${this.sizeBytes} bytes)`);
    }
  }

  private async tracked<T>(work: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await work();
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) for (const waiter of this.inFlightWaiters.splice(0)) waiter();
    }
  }

  async read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes, "read");
    const startMs = performance.now();
    try {
      return await this.readTracked(offsetBytes, lengthBytes, into);
    } finally {
      this.latency.read.observe((performance.now() - startMs) / 1000);
    }
  }

  private readTracked(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    return this.tracked(async () => {
      this.counters.readOps++;
      this.counters.readBytes += lengthBytes;
      if (lengthBytes === 0) return Buffer.alloc(0);
      const firstCluster = Math.floor(offsetBytes / CLUSTER_SIZE_BYTES);
      const endCluster = Math.ceil((offsetBytes + lengthBytes) / CLUSTER_SIZE_BYTES);
      const aligned = offsetBytes % CLUSTER_SIZE_BYTES === 0 && lengthBytes % CLUSTER_SIZE_BYTES === 0;
      // A cluster-aligned read fills the caller's buffer directly (see BlockDevice.read).
      const buffer = aligned && into !== undefined && into.length >= lengthBytes
        ? into.subarray(0, lengthBytes) : Buffer.allocUnsafe((endCluster - firstCluster) * CLUSTER_SIZE_BYTES);
      const touchedBackend = await this.readClusters(firstCluster, endCluster - firstCluster, buffer, false, this.ownLookup);
      this.notePattern(firstCluster, endCluster, touchedBackend);
      if (aligned) return buffer;
      const start = offsetBytes - firstCluster * CLUSTER_SIZE_BYTES;
      return Buffer.from(buffer.subarray(start, start + lengthBytes));
    });
  }

  private readonly ownLookup: ClusterLookup = (clusterAddress) => this.metadata.lookup(clusterAddress);

  /**
   * Reads through another map of this vDisk's clusters (a snapshot view's): the same local SCOs,
   * read cache and backend reads, every cluster checked against the CRC in that map.
   */
  async readWithLookup(lookup: ClusterLookup, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    if (this.closed) throw new VolumeError("Closed", `vDisk ${this.name} is closed`);
    return this.tracked(async () => {
      if (lengthBytes === 0) return Buffer.alloc(0);
      const firstCluster = Math.floor(offsetBytes / CLUSTER_SIZE_BYTES);
      const endCluster = Math.ceil((offsetBytes + lengthBytes) / CLUSTER_SIZE_BYTES);
      const buffer = Buffer.allocUnsafe((endCluster - firstCluster) * CLUSTER_SIZE_BYTES);
      await this.readClusters(firstCluster, endCluster - firstCluster, buffer, false, lookup);
      const start = offsetBytes - firstCluster * CLUSTER_SIZE_BYTES;
      return start === 0 && lengthBytes === buffer.length ? buffer : Buffer.from(buffer.subarray(start, start + lengthBytes));
    });
  }

  /** Fills target with clusters [first, first + count). Returns whether the backend was read. */
  private async readClusters(first: number, count: number, target: Buffer, forWrite: boolean, lookup: ClusterLookup): Promise<boolean> {
    const crcs = new Uint32Array(count);
    const runs: ClusterRun[] = [];
    let current: ClusterRun | undefined;
    for (let index = 0; index < count; index++) {
      const location = lookup(first + index);
      if (location === undefined) {
        target.fill(0, index * CLUSTER_SIZE_BYTES, (index + 1) * CLUSTER_SIZE_BYTES);
        current = undefined;
        continue;
      }
      crcs[index] = location.dataCrc;
      if (current !== undefined && current.scoNumber === location.scoNumber && current.scoOffset + current.count === location.scoOffset
        && current.index + current.count === index && current.cloneIndex === location.cloneIndex) {
        current.count++;
      } else {
        current = { index, count: 1, cloneIndex: location.cloneIndex, scoNumber: location.scoNumber, scoOffset: location.scoOffset };
        runs.push(current);
      }
    }
    const results = await Promise.all(runs.map((run) => this.readRun(run, target, forWrite)));
    for (const run of runs) {
      for (let index = run.index; index < run.index + run.count; index++) {
        const cluster = target.subarray(index * CLUSTER_SIZE_BYTES, (index + 1) * CLUSTER_SIZE_BYTES);
        if (crc32c(cluster) !== crcs[index]) {
          throw new VolumeError("Io", `vDisk ${this.name}: cluster ${first + index} (SCO ${run.scoNumber} offset ${run.scoOffset + index - run.index}) fails its checksum`);
        }
      }
    }
    return results.includes(true);
  }

  /** Reads one run of clusters that are consecutive in one SCO. Returns whether the backend was read. */
  private async readRun(run: ClusterRun, target: Buffer, forWrite: boolean): Promise<boolean> {
    const link = this.chain[run.cloneIndex];
    if (link === undefined) throw new VolumeError("Io", `vDisk ${this.name}: the metadata names clone ancestor ${run.cloneIndex}, which it does not have`);
    const sco = run.cloneIndex === 0 ? this.scos.get(run.scoNumber) : undefined;
    if (sco !== undefined) {
      sco.lastUseMs = this.nowMs();
      if (await sco.readClusters(run.scoOffset, run.count, target, run.index * CLUSTER_SIZE_BYTES)) return false;
    }
    // Not local: read cache, then ranged backend reads of the missing sub-runs.
    let missingStart = -1;
    const fetches: Array<Promise<void>> = [];
    for (let index = 0; index <= run.count; index++) {
      const cached = index < run.count ? this.readCache.get(ReadCache.key(link.uuid, run.scoNumber, run.scoOffset + index)) : undefined;
      if (cached !== undefined) {
        this.counters.readCacheHits++;
        cached.copy(target, (run.index + index) * CLUSTER_SIZE_BYTES);
      }
      if (index < run.count && cached === undefined) {
        this.counters.readCacheMisses++;
        if (missingStart < 0) missingStart = index;
      } else if (missingStart >= 0) {
        const start = missingStart;
        fetches.push(this.fetchClusters(link, run.scoNumber, run.scoOffset + start, index - start, target, (run.index + start) * CLUSTER_SIZE_BYTES, forWrite));
        missingStart = -1;
      }
    }
    await Promise.all(fetches);
    return fetches.length > 0;
  }

  /**
   * Ranged backend read of `count` clusters of a SCO into target (and the read cache). A client read
   * gives up after a few attempts (an I/O error beats hanging the guest); the read half of a
   * read-modify-write retries transient errors for as long as the backend is out, so that writes
   * stall but never fail.
   */
  private async fetchClusters(link: ChainLink, scoNumber: number, scoOffset: number, count: number, target: Buffer | undefined, targetOffset: number,
    forWrite = false): Promise<void> {
    let data: Buffer | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        this.counters.backendReads++;
        data = await this.store.get(link.namespace, scoObjectKey(scoNumber), {
          offsetBytes: scoClusterOffsetBytes(scoOffset), lengthBytes: count * CLUSTER_SIZE_BYTES,
        });
        break;
      } catch (error) {
        const retryable = isStoreError(error, "Transient") && !this.closed;
        if (!retryable || (!forWrite && attempt >= BACKEND_READ_ATTEMPTS)) {
          const owner = link === this.chain[0] ? "" : ` of clone parent ${link.name}`;
          throw new VolumeError("Io", `vDisk ${this.name}: reading SCO ${scoNumber}${owner} from the backend failed: ${(error as Error).message}`, { cause: error });
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(BACKEND_READ_BACKOFF_MAX_MS, BACKEND_READ_BACKOFF_MS * 2 ** (attempt - 1))));
      }
    }
    if (data.length !== count * CLUSTER_SIZE_BYTES) {
      throw new VolumeError("Io", `vDisk ${this.name}: SCO ${scoNumber} on the backend is shorter than its TLog says`);
    }
    for (let index = 0; index < count; index++) {
      const cluster = data.subarray(index * CLUSTER_SIZE_BYTES, (index + 1) * CLUSTER_SIZE_BYTES);
      // Only clusters that match the metadata's CRC are cached; the caller verifies the ones it reads.
      this.readCache.set(ReadCache.key(link.uuid, scoNumber, scoOffset + index), cluster);
    }
    if (target !== undefined) data.copy(target, targetOffset);
  }

  private notePattern(firstCluster: number, endCluster: number, touchedBackend: boolean): void {
    this.sequentialReads = firstCluster === this.lastReadEndCluster ? this.sequentialReads + 1 : 0;
    this.lastReadEndCluster = endCluster;
    if (this.sequentialReads >= PREFETCH_AFTER_SEQUENTIAL_READS && touchedBackend && !this.prefetching
      && this.settings.prefetchClusters > 0 && endCluster >= this.prefetchedUpToCluster - this.settings.prefetchClusters / 2) {
      const start = Math.max(endCluster, this.prefetchedUpToCluster);
      const end = Math.min(this.sizeBytes / CLUSTER_SIZE_BYTES, start + this.settings.prefetchClusters);
      if (end > start) {
        this.prefetching = true;
        this.prefetchedUpToCluster = end;
        this.prefetch(start, end).catch((error: unknown) => this.logger.debug({ err: error }, "prefetch failed"))
          .finally(() => { this.prefetching = false; });
      }
    }
  }

  /** Loads clusters [start, end) that live only on the backend into the read cache. */
  private async prefetch(start: number, end: number): Promise<void> {
    const fetches: Array<Promise<void>> = [];
    let run: { link: ChainLink; scoNumber: number; scoOffset: number; count: number } | undefined;
    const flushRun = (): void => {
      if (run !== undefined) fetches.push(this.fetchClusters(run.link, run.scoNumber, run.scoOffset, run.count, undefined, 0));
      run = undefined;
    };
    for (let cluster = start; cluster < end; cluster++) {
      const location = this.metadata.lookup(cluster);
      const link = location === undefined ? undefined : this.chain[location.cloneIndex];
      const remote = location !== undefined && link !== undefined && !(location.cloneIndex === 0 && this.scos.has(location.scoNumber))
        && !this.readCache.has(ReadCache.key(link.uuid, location.scoNumber, location.scoOffset));
      if (!remote) { flushRun(); continue; }
      if (run !== undefined && run.link === link && run.scoNumber === location.scoNumber && run.scoOffset + run.count === location.scoOffset) run.count++;
      else { flushRun(); run = { link, scoNumber: location.scoNumber, scoOffset: location.scoOffset, count: 1 }; }
    }
    flushRun();
    await Promise.all(fetches);
  }

  private checkWritable(operation: string): void {
    if (this.manifest.template) throw new VolumeError("ReadOnly", `${operation}: vDisk ${this.name} is a template (read-only); clone it to write`);
  }

  async write(offsetBytes: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    this.checkRange(offsetBytes, data.length, "write");
    this.checkWritable("write");
    this.counters.writeOps++;
    this.counters.writeBytes += data.length;
    const startMs = performance.now();
    // Fast path (the common aligned write with room to spare): no extra promises or closures.
    if (data.length > 0 && !options.fua && offsetBytes % CLUSTER_SIZE_BYTES === 0 && data.length % CLUSTER_SIZE_BYTES === 0
      && this.writeBuffer.admitsAtOnce(data.length) && !this.journal.congested) {
      this.appendClusters(offsetBytes / CLUSTER_SIZE_BYTES, data);
      this.latency.write.observe((performance.now() - startMs) / 1000);
      return;
    }
    try {
      await this.tracked(async () => {
        if (data.length > 0) await this.writeData(offsetBytes, data);
        if (options.fua) await this.journal.flush();
      });
    } finally {
      this.latency.write.observe((performance.now() - startMs) / 1000);
    }
  }

  private async admit(lengthBytes: number): Promise<void> {
    if (this.writeBuffer.admitsAtOnce(lengthBytes) && !this.journal.congested) return;
    const admission = await this.writeBuffer.admit(lengthBytes, () => {
      this.counters.stalledWrites++;
      this.stalledWritesNow++;
    });
    if (admission === "throttled") this.counters.throttledWrites++;
    else if (admission === "stalled") this.stalledWritesNow--;
    await this.journal.waitForRoom();
    if (this.closed) throw new VolumeError("Closed", `vDisk ${this.name} was closed while the write waited for room`);
  }

  private async writeData(offsetBytes: number, data: Uint8Array): Promise<void> {
    const firstCluster = Math.floor(offsetBytes / CLUSTER_SIZE_BYTES);
    const endCluster = Math.ceil((offsetBytes + data.length) / CLUSTER_SIZE_BYTES);
    if (offsetBytes % CLUSTER_SIZE_BYTES === 0 && data.length % CLUSTER_SIZE_BYTES === 0) {
      await this.admit(data.length);
      this.appendClusters(firstCluster, data);
      return;
    }
    // Read-modify-write of the partial edge clusters, under a per-cluster lock so that two partial
    // writes to one cluster cannot lose each other's bytes.
    const edges = [...new Set([firstCluster, endCluster - 1])];
    await this.withClusterLocks(edges, async () => {
      const merged = Buffer.alloc((endCluster - firstCluster) * CLUSTER_SIZE_BYTES);
      const head = offsetBytes - firstCluster * CLUSTER_SIZE_BYTES;
      if (head !== 0) await this.readClusters(firstCluster, 1, merged.subarray(0, CLUSTER_SIZE_BYTES), true, this.ownLookup);
      const tailEnd = head + data.length;
      if (tailEnd % CLUSTER_SIZE_BYTES !== 0 && (endCluster - 1 !== firstCluster || head === 0)) {
        const lastStart = (endCluster - firstCluster - 1) * CLUSTER_SIZE_BYTES;
        await this.readClusters(endCluster - 1, 1, merged.subarray(lastStart, lastStart + CLUSTER_SIZE_BYTES), true, this.ownLookup);
      }
      merged.set(data, head);
      await this.admit(merged.length);
      this.appendClusters(firstCluster, merged);
    });
  }

  private async withClusterLocks(clusters: number[], work: () => Promise<void>): Promise<void> {
    for (;;) {
      const held = clusters.map((cluster) => this.clusterLocks.get(cluster)).filter((lock) => lock !== undefined);
      if (held.length === 0) break;
      await Promise.all(held);
    }
    let release!: () => void;
    const lock = new Promise<void>((resolve) => { release = resolve; });
    for (const cluster of clusters) this.clusterLocks.set(cluster, lock);
    try {
      await work();
    } finally {
      for (const cluster of clusters) this.clusterLocks.delete(cluster);
      release();
    }
  }

  /** Appends whole clusters (synchronously: they are acknowledged in the write buffer from here). */
  private appendClusters(firstCluster: number, data: Uint8Array): void {
    const count = data.length / CLUSTER_SIZE_BYTES;
    for (let index = 0; index < count; index++) {
      const cluster = data.subarray(index * CLUSTER_SIZE_BYTES, (index + 1) * CLUSTER_SIZE_BYTES);
      const dataCrc = crc32c(cluster);
      const openBefore = this.journal.openScoNumber;
      const scoOffset = this.journal.appendCluster(cluster, firstCluster + index, dataCrc, index === 0, index === count - 1);
      const scoNumber = this.journal.openScoNumber as number;
      this.metadata.setLocation(firstCluster + index, scoNumber, scoOffset, dataCrc);
      const added = CLUSTER_SIZE_BYTES + (openBefore !== scoNumber ? CLUSTER_SIZE_BYTES : 0); // + SCO header
      this.notUploadedBytes += added;
      this.localBytes += added;
    }
    this.journal.finishRequest();
    this.writeBuffer.noteAdded(data.length);
  }

  async flush(): Promise<void> {
    if (this.closed) throw new VolumeError("Closed", `vDisk ${this.name} is closed`);
    const startMs = performance.now();
    try {
      await this.tracked(async () => {
        this.counters.flushOps++;
        await this.journal.flush();
      });
    } finally {
      this.latency.flush.observe((performance.now() - startMs) / 1000);
    }
  }

  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes, "trim");
    this.checkWritable("trim");
    await this.tracked(() => this.discard(offsetBytes, lengthBytes));
  }

  /** Whole clusters become holes; partial edges are zeroed by read-modify-write. */
  private async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (lengthBytes === 0) return;
    const end = offsetBytes + lengthBytes;
    const firstWhole = Math.ceil(offsetBytes / CLUSTER_SIZE_BYTES);
    const endWhole = Math.floor(end / CLUSTER_SIZE_BYTES);
    if (endWhole <= firstWhole) {
      await this.writeData(offsetBytes, Buffer.alloc(lengthBytes));
      return;
    }
    if (offsetBytes < firstWhole * CLUSTER_SIZE_BYTES) {
      await this.writeData(offsetBytes, Buffer.alloc(firstWhole * CLUSTER_SIZE_BYTES - offsetBytes));
    }
    await this.journal.waitForRoom();
    for (let cluster = firstWhole; cluster < endWhole; cluster += 0xffff_ffff) {
      const count = Math.min(0xffff_ffff, endWhole - cluster);
      this.journal.appendTrim(cluster, count);
      this.metadata.clearRange(cluster, count);
    }
    if (end > endWhole * CLUSTER_SIZE_BYTES) {
      await this.writeData(endWhole * CLUSTER_SIZE_BYTES, Buffer.alloc(end - endWhole * CLUSTER_SIZE_BYTES));
    }
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions = {}): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes, "write zeroes");
    this.checkWritable("write zeroes");
    await this.tracked(async () => {
      this.counters.writeOps++;
      this.counters.writeBytes += lengthBytes;
      if (options.noHole) {
        const zeros = Buffer.alloc(Math.min(WRITE_ZEROES_CHUNK_BYTES, lengthBytes));
        for (let position = offsetBytes; position < offsetBytes + lengthBytes; position += zeros.length) {
          const length = Math.min(zeros.length, offsetBytes + lengthBytes - position);
          await this.writeData(position, zeros.subarray(0, length));
        }
      } else {
        await this.discard(offsetBytes, lengthBytes);
      }
      if (options.fua) await this.journal.flush();
    });
  }

  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    this.checkRange(offsetBytes, lengthBytes, "block status");
    return this.metadata.extents(offsetBytes, lengthBytes);
  }

  // ---- management ----

  info(): VolumeInfo {
    return {
      name: this.name, uuid: this.config.uuid, vpool: this.config.vpool, namespace: this.config.namespace,
      sizeBytes: this.sizeBytes, clusterSizeBytes: CLUSTER_SIZE_BYTES, scoSizeBytes: this.config.scoSizeBytes,
      createdAt: this.config.createdAt, state: this.closed ? "closed" : "running",
      template: this.manifest.template, snapshotCount: this.manifest.snapshots.length, scrubPending: this.manifest.scrubPending,
      overrides: { ...this.config.overrides },
      ...(this.config.parent === undefined ? {} : { parent: { volume: this.config.parent.volumeName, snapshot: this.config.parent.snapshotName } }),
    };
  }

  // ---- snapshots (the vPool checks names, clones and templates; these run one at a time) ----

  /** Runs manifest changes one at a time. */
  private withManifestLock<T>(work: () => Promise<T>): Promise<T> {
    const result = this.manifestLock.then(() => {
      if (this.closed) throw new VolumeError("Closed", `vDisk ${this.name} is closed`);
      return work();
    });
    this.manifestLock = result.catch(() => undefined);
    return result;
  }

  /** The snapshot records, oldest first (a copy). */
  snapshotRecords(): SnapshotRecord[] {
    return this.manifest.snapshots.map((record) => ({ ...record, tlogs: [...record.tlogs] }));
  }

  /** The current history (for rollback and clones: the vPool reads it after a sync). */
  currentManifest(): SnapshotsManifest {
    return this.manifest;
  }

  isSnapshotSynced(record: SnapshotRecord): boolean {
    return record.generation <= this.backendManifestGeneration;
  }

  /** The backend holds the current snapshots.json. */
  isManifestSynced(): boolean {
    return this.manifest.generation <= this.backendManifestGeneration;
  }

  /** Writes the new history locally (durably), then queues its upload behind the TLogs it names. */
  private async commitManifest(next: SnapshotsManifest): Promise<void> {
    await writeLocalManifest(this.directory, next);
    this.manifest = next;
    this.enqueueManifestUpload(next);
  }

  private enqueueManifestUpload(manifest: SnapshotsManifest): void {
    const data = encodeManifest(manifest);
    void this.uploader.enqueueAfterTlogs(SNAPSHOTS_MANIFEST_KEY, async () => {
      await this.store.put(this.config.namespace, SNAPSHOTS_MANIFEST_KEY, data);
      if (manifest.generation > this.backendManifestGeneration) {
        this.backendManifestGeneration = manifest.generation;
        if (!this.closed) this.metadata.setMeta("manifest_generation", String(manifest.generation));
      }
    }).catch(() => undefined);
  }

  /**
   * Takes a snapshot between two requests: seals the open SCO and TLog, waits until they are fsynced
   * and queued for upload, and records the snapshot with the TLogs written since the previous one.
   */
  createSnapshot(name: string, uuid: string): Promise<SnapshotRecord> {
    // Sealed now, in the caller's tick: the snapshot holds exactly the writes acknowledged before the
    // call. The manifest work waits its turn; snapshots taken meanwhile seal later, so in call order.
    const sealed = this.journal.sealAllAndWait();
    sealed.catch(() => undefined);
    const endTlog = this.journal.nextTlog; // the snapshot's last TLog is endTlog - 1
    return this.withManifestLock(async () => {
      if (this.manifest.snapshots.some((record) => record.name === name)) {
        throw new VolumeError("Exists", `vDisk ${this.name} already has a snapshot named ${name}`);
      }
      await sealed;
      crashPoint("snapshot-sealed");
      const current = this.manifest;
      const tlogs = [...current.headTlogs];
      for (let tlogNumber = current.headStartTlog; tlogNumber < endTlog; tlogNumber++) tlogs.push(tlogNumber);
      const generation = current.generation + 1;
      const record: SnapshotRecord = { name, uuid, createdAt: new Date(this.nowMs()).toISOString(), sizeBytes: this.sizeBytes, tlogs, generation };
      await this.commitManifest({
        ...current, generation, snapshots: [...current.snapshots, record], headTlogs: [], headStartTlog: endTlog,
        nextScoNumber: Math.max(current.nextScoNumber, this.journal.nextSco), nextTlogNumber: Math.max(current.nextTlogNumber, endTlog),
      });
      this.logger.info({ snapshot: name, tlogs: tlogs.length }, "snapshot taken");
      return record;
    });
  }

  /** Deletes a snapshot: its TLogs merge into the next snapshot (or the head); scrubbing is due. */
  deleteSnapshot(name: string): Promise<void> {
    return this.withManifestLock(async () => {
      const current = this.manifest;
      const index = current.snapshots.findIndex((record) => record.name === name);
      if (index < 0) throw new VolumeError("NotFound", `vDisk ${this.name} has no snapshot named ${name}`);
      const snapshots = current.snapshots.map((record) => ({ ...record }));
      const [deleted] = snapshots.splice(index, 1);
      let headTlogs = current.headTlogs;
      if (index < snapshots.length) snapshots[index].tlogs = [...deleted.tlogs, ...snapshots[index].tlogs];
      else headTlogs = [...deleted.tlogs, ...headTlogs];
      await this.commitManifest({ ...current, generation: current.generation + 1, snapshots, headTlogs, scrubPending: true });
      this.logger.info({ snapshot: name }, "snapshot deleted");
    });
  }

  /** Marks the vDisk read-only (a template) or writable again. */
  setTemplateFlag(template: boolean): Promise<void> {
    return this.withManifestLock(async () => {
      if (this.manifest.template === template) return;
      await this.commitManifest({ ...this.manifest, generation: this.manifest.generation + 1, template });
    });
  }

  // ---- scrubbing ----

  /** Snapshot views open on this vDisk: garbage is not deleted while any is (they may read it). */
  openViews = 0;
  private scrubbing = false;
  private collectingGarbage = false;

  /**
   * Scrubs the snapshot ranges: runs the scrubber against the backend (I/O goes on meanwhile), then
   * applies its result, then deletes the garbage whose grace period is over. `copyProtectedRanges`
   * ranges (those a clone may read) get no SCO copied.
   */
  async scrub(protectedRanges: number, onProgress?: (progress: ScrubProgress) => void): Promise<ScrubResult> {
    if (this.closed) throw new VolumeError("Closed", `vDisk ${this.name} is closed`);
    if (this.scrubbing) throw new VolumeError("Exists", `vDisk ${this.name} is being scrubbed already`);
    this.scrubbing = true;
    try {
      onProgress?.({ phase: "collecting", done: 0, total: 1 });
      await this.drain(); // the snapshot ranges must be on the backend: the scrubber reads them there
      const backendBytesBefore = await this.backendBytes();
      await this.removeScrubLeftovers();
      const captured = this.manifest;
      const output = await runScrubInWorker({
        store: this.store, link: this.chain[0], scoClusterCount: this.config.scoSizeBytes / CLUSTER_SIZE_BYTES,
        liveFractionKeep: this.settings.scrubLiveFractionKeep, scrubScoNumber: captured.scrubScoNumber, scrubTlogNumber: captured.scrubTlogNumber,
        nowMs: this.nowMs, onProgress,
        ranges: captured.snapshots.map((record, index) => ({ snapshotUuid: record.uuid, tlogs: record.tlogs, mayCopyScos: index >= protectedRanges })),
      });
      crashPoint("scrub-rewritten");
      onProgress?.({ phase: "applying", done: 0, total: 1 });
      await this.applyScrub(output);
      crashPoint("scrub-applied");
      onProgress?.({ phase: "deleting", done: 0, total: 1 });
      const collected = await this.collectGarbage();
      await this.drain();
      onProgress?.({ phase: "deleting", done: 1, total: 1 });
      return {
        scosRewritten: output.ranges.reduce((sum, range) => sum + range.scosCopied, 0),
        objectsCollected: collected + this.manifest.garbage.length,
        backendBytesBefore, backendBytesAfter: await this.backendBytes(),
      };
    } finally {
      this.scrubbing = false;
    }
  }

  /** Bytes of the vDisk's SCOs and TLogs on the backend. */
  private async backendBytes(): Promise<number> {
    let total = 0;
    for (const prefix of ["sco/", "tlog/"]) {
      let startAfter: string | undefined;
      for (;;) {
        const page = await this.store.list(this.config.namespace, { prefix, startAfter, limitKeys: 1000 });
        for (const object of page.objects) total += object.sizeBytes;
        if (page.nextStartAfter === undefined) break;
        startAfter = page.nextStartAfter;
      }
    }
    return total;
  }

  /** Objects of a scrub that never got applied (numbered at or past the reserved scrub numbers). */
  private async removeScrubLeftovers(): Promise<void> {
    const manifest = this.manifest;
    for (const key of await listAllKeys(this.store, this.config.namespace, "sco/")) {
      const number = scoNumberFromKey(key);
      if (number !== undefined && number >= manifest.scrubScoNumber) await this.store.delete(this.config.namespace, key);
    }
    for (const key of await listAllKeys(this.store, this.config.namespace, "tlog/")) {
      const number = tlogNumberFromKey(key);
      if (number !== undefined && number >= manifest.scrubTlogNumber) await this.store.delete(this.config.namespace, key);
    }
  }

  /**
   * Applies a scrub: (1) reserves its SCO and TLog numbers in snapshots.json, so its objects are no
   * leftovers any more; (2) moves the head's metadata off the copied SCOs with relocation entries in
   * the journal, made durable; (3) replaces each scrubbed range's TLogs in snapshots.json (ranges
   * changed meanwhile, by a snapshot deletion, are skipped: their new objects become garbage) and
   * lists the replaced objects as garbage. A crash between steps leaves a consistent vDisk: old
   * objects are only deleted once (3) is durable, and nothing the metadata points at is ever garbage.
   */
  private async applyScrub(output: ScrubOutput): Promise<void> {
    await this.withManifestLock(async () => {
      await this.commitManifest({
        ...this.manifest, generation: this.manifest.generation + 1,
        scrubScoNumber: Math.max(this.manifest.scrubScoNumber, output.scrubScoNumber),
        scrubTlogNumber: Math.max(this.manifest.scrubTlogNumber, output.scrubTlogNumber),
      });
      crashPoint("scrub-reserved");
      const current = this.manifest;
      const accepted = output.ranges.filter((range) => {
        const record = current.snapshots.find((snapshot) => snapshot.uuid === range.snapshotUuid);
        return record !== undefined && record.tlogs.length === range.oldTlogs.length && record.tlogs.every((tlog, index) => tlog === range.oldTlogs[index]);
      });
      const rejected = output.ranges.filter((range) => !accepted.includes(range));
      // One synchronous run: no write can come between a lookup and its relocation.
      const relocations = accepted.flatMap((range) => range.relocations).filter((relocation) => {
        const location = this.metadata.lookup(relocation.clusterAddress);
        return location !== undefined && location.cloneIndex === 0 && location.scoNumber === relocation.oldScoNumber
          && location.scoOffset === relocation.oldScoOffset;
      });
      relocations.forEach((relocation, index) => {
        this.journal.appendRelocation(relocation.clusterAddress, relocation.newScoNumber, relocation.newScoOffset, relocation.dataCrc,
          index === relocations.length - 1);
        this.metadata.setLocation(relocation.clusterAddress, relocation.newScoNumber, relocation.newScoOffset, relocation.dataCrc);
      });
      if (relocations.length > 0) this.journal.finishRequest();
      await this.journal.sealAllAndWait();
      crashPoint("scrub-relocated");
      const notBeforeMs = this.nowMs() + this.settings.scrubGracePeriodMs;
      const garbage = [
        ...current.garbage,
        ...accepted.flatMap((range) => range.garbageKeys.map((key) => ({ key, notBeforeMs }))),
        ...rejected.flatMap((range) => [
          ...range.newTlogs.map((tlogNumber) => ({ key: `tlog/${tlogNumber.toString(16).padStart(16, "0")}`, notBeforeMs })),
          ...[...new Set(range.relocations.map((relocation) => relocation.newScoNumber))].map((scoNumber) => ({ key: `sco/${scoNumber.toString(16).padStart(16, "0")}`, notBeforeMs })),
        ]),
      ];
      const replaced = new Map(accepted.map((range) => [range.snapshotUuid, range.newTlogs]));
      await this.commitManifest({
        ...current, generation: current.generation + 1,
        snapshots: current.snapshots.map((record) => ({ ...record, tlogs: replaced.get(record.uuid) ?? record.tlogs })),
        scrubPending: current.scrubPending && rejected.length > 0, garbage,
      });
      this.logger.info({ ranges: accepted.length, skipped: rejected.length, relocations: relocations.length }, "scrub applied");
    });
  }

  /**
   * Deletes the garbage whose grace period is over, once the snapshots.json that drops it is on the
   * backend, and unless a snapshot view is open. Returns the number of objects deleted.
   */
  async collectGarbage(): Promise<number> {
    if (this.collectingGarbage || this.closed || this.openViews > 0) return 0;
    const now = this.nowMs();
    if (!this.manifest.garbage.some((object) => object.notBeforeMs <= now)) return 0;
    this.collectingGarbage = true;
    try {
      await this.uploader.whenIdle(); // the snapshots.json without these objects is on the backend
      const due = this.manifest.garbage.filter((object) => object.notBeforeMs <= now);
      for (const object of due) {
        await this.store.delete(this.config.namespace, object.key);
        crashPoint("scrub-collecting");
      }
      await this.withManifestLock(async () => {
        const dueKeys = new Set(due.map((object) => object.key));
        await this.commitManifest({
          ...this.manifest, generation: this.manifest.generation + 1,
          garbage: this.manifest.garbage.filter((object) => !dueKeys.has(object.key)),
        });
      });
      this.logger.info({ objects: due.length }, "deleted scrub garbage");
      return due.length;
    } finally {
      this.collectingGarbage = false;
    }
  }

  /** True when clusters were written (or trimmed) since the last snapshot. */
  hasWritesSinceLastSnapshot(): boolean {
    return this.manifest.headTlogs.length > 0 || this.journal.nextTlog > this.manifest.headStartTlog || this.journal.hasOpenTlog;
  }

  stats(): VolumeStats {
    return {
      ...this.counters,
      notUploadedBytes: this.notUploadedBytes,
      writeBufferBytes: this.localBytes,
      stalledWritesNow: this.stalledWritesNow,
      flushSyncs: this.journal.flushSyncCount,
      backendTlogNumber: this.backendTlogNumber,
      latency: this.latency.snapshot(),
    };
  }

  /** Seals, then waits until everything written before the call, and the history, are on the backend. */
  async drain(): Promise<void> {
    if (this.closed) throw new VolumeError("Closed", `vDisk ${this.name} is closed`);
    await this.journal.sealAllAndWait();
    await this.uploader.whenIdle();
  }

  /** Local directory of the vDisk (snapshot views keep their metadata under it). */
  get localDirectory(): string {
    return this.directory;
  }

  /** The next SCO and TLog numbers (floors for a rollback's new history). */
  nextNumbers(): { scoNumber: number; tlogNumber: number } {
    return { scoNumber: this.journal.nextSco, tlogNumber: this.journal.nextTlog };
  }

  private async waitForInFlight(): Promise<void> {
    if (this.inFlight === 0) return;
    await new Promise<void>((resolve) => this.inFlightWaiters.push(resolve));
  }

  /** Clean close: seal and write everything locally, upload within the time limit, release resources. */
  async close(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    const deadline = Date.now() + timeoutMs;
    // In-flight requests get half the time (a write stalled on a dead backend may never finish).
    await withDeadline(this.waitForInFlight(), deadline - timeoutMs / 2);
    this.journal.sealAll();
    const written = await withDeadline(this.journal.whenIdle(), deadline);
    this.closed = true;
    const uploaded = written && await withDeadline(this.uploader.whenIdle(), deadline);
    if (!written) this.logger.error("closing before the journal wrote everything to local files (disk failing?); acknowledged writes since the last flush may be lost");
    else if (!uploaded) this.logger.warn("closing before every SCO reached the backend; the next start uploads the rest");
    await this.release();
  }

  /** Crash simulation: drop everything not yet written to local files. */
  async crash(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.release();
  }

  private async release(): Promise<void> {
    this.closed = true;
    this.uploader.stop();
    await this.journal.stop();
    for (const sco of this.scos.values()) await sco.closeHandle();
    this.writeBuffer.unregister(this);
    this.metadata.close();
  }

  /** Closes and deletes the local directory (the caller deletes the namespace). */
  async destroy(): Promise<void> {
    await this.crash();
    await rm(this.directory, { recursive: true, force: true });
  }
}

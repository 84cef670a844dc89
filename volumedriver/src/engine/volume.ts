// A thin vDisk: 4 KiB clusters mapped by the metadata to locations in SCOs, written through the
// journal into the local write buffer and uploaded by the uploader. Reads go metadata -> local SCO (or
// its in-memory tail) -> read cache -> ranged backend reads of just the needed clusters, coalesced;
// every cluster read is checked against the CRC the metadata holds, so corruption is an I/O error,
// never wrong data. Requests are validated by the frontends; here the same checks raise VolumeError.
import { rm, unlink } from "node:fs/promises";
import type { Logger } from "pino";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import { isStoreError, type ObjectStore } from "../backend/object-store.ts";
import { type BlockExtent, VolumeError, type WriteOptions, type WriteZeroesOptions } from "./block-device.ts";
import { Journal, type JournalListener } from "./journal.ts";
import type { LocalSco } from "./local-sco.ts";
import { METADATA_PAGE_SIZE_BYTES, type MetadataStore } from "./metadata-store.ts";
import { ReadCache } from "./read-cache.ts";
import { scoClusterOffsetBytes, scoObjectKey } from "./formats/sco-format.ts";
import type { VolumeConfig } from "./formats/volume-config.ts";
import type { RecoveredState } from "./volume-recovery.ts";
import { Uploader } from "./uploader.ts";
import type { WriteBuffer, WriteBufferMember } from "./write-buffer.ts";
import { CLUSTER_SIZE_BYTES, type Volume as VolumeInterface, type VolumeInfo, type VolumeStats, type VPoolSettings } from "./vpool-types.ts";

const BACKEND_READ_ATTEMPTS = 4;
const BACKEND_READ_BACKOFF_MS = 50;
const BACKEND_READ_BACKOFF_MAX_MS = 2000;
const WRITE_ZEROES_CHUNK_BYTES = 1024 * 1024;
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
}

export class VolumeEngine implements VolumeInterface, WriteBufferMember, JournalListener {
  readonly name: string;
  readonly sizeBytes: number;
  readonly readOnly = false;
  private readonly config: VolumeConfig;
  private readonly directory: string;
  private readonly settings: VPoolSettings;
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
  private lastReadEndCluster = -1;
  private sequentialReads = 0;
  private prefetchedUpToCluster = 0;
  private prefetching = false;

  constructor(dependencies: VolumeDependencies, recovered: RecoveredState) {
    this.config = dependencies.config;
    this.name = this.config.name;
    this.sizeBytes = this.config.sizeBytes;
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
    this.journal = new Journal({
      volumeUuid: this.config.uuid,
      directory: this.directory,
      scoClusterCount: this.config.scoSizeBytes / CLUSTER_SIZE_BYTES,
      // A TLog's SCOs only become disposable when the TLog is uploaded: keep them to at most half the
      // write buffer, or writers would stall waiting for a TLog that cannot roll yet.
      tlogScoCountMax: Math.max(1, Math.min(this.settings.tlogScoCountMax,
        Math.floor(this.settings.writeBufferSizeBytes / (2 * this.config.scoSizeBytes)))),
      scoMaxAgeMs: this.settings.scoMaxAgeMs,
      pendingBytesMax: Math.max(8 * 1024 * 1024, Math.min(64 * 1024 * 1024, this.settings.writeBufferSizeBytes / 4)),
      dirtyPagesMax: Math.max(1024, Math.floor(this.settings.metadataCacheSizeBytes / METADATA_PAGE_SIZE_BYTES)),
      nowMs: this.nowMs,
      logger: this.logger,
    }, this.metadata, this, this.scos, recovered.nextScoNumber, recovered.nextTlogNumber);
    this.uploader = new Uploader(this.store, this.config.namespace, {
      concurrency: this.settings.uploadConcurrency,
      logger: this.logger,
      scoPath: (scoNumber) => this.journal.scoPath(scoNumber),
      tlogPath: (tlogNumber) => this.journal.tlogPath(tlogNumber),
      onScoUploaded: () => this.writeBuffer.progress(),
    }, (tlogNumber, scoNumbers) => this.tlogUploaded(tlogNumber, scoNumbers));
    for (const tlog of recovered.tlogsToUpload) this.uploader.enqueueTlog(tlog.tlogNumber, tlog.scoNumbers);
    this.writeBuffer.register(this);
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

  /** Periodic work: age-based sealing. */
  tick(): void {
    if (!this.closed) this.journal.sealIfOld();
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

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes, "read");
    return this.tracked(async () => {
      this.counters.readOps++;
      this.counters.readBytes += lengthBytes;
      if (lengthBytes === 0) return Buffer.alloc(0);
      const firstCluster = Math.floor(offsetBytes / CLUSTER_SIZE_BYTES);
      const endCluster = Math.ceil((offsetBytes + lengthBytes) / CLUSTER_SIZE_BYTES);
      const aligned = offsetBytes % CLUSTER_SIZE_BYTES === 0 && lengthBytes % CLUSTER_SIZE_BYTES === 0;
      const buffer = Buffer.allocUnsafe((endCluster - firstCluster) * CLUSTER_SIZE_BYTES);
      const touchedBackend = await this.readClusters(firstCluster, endCluster - firstCluster, buffer);
      this.notePattern(firstCluster, endCluster, touchedBackend);
      if (aligned) return buffer;
      const start = offsetBytes - firstCluster * CLUSTER_SIZE_BYTES;
      return Buffer.from(buffer.subarray(start, start + lengthBytes));
    });
  }

  /** Fills target with clusters [first, first + count). Returns whether the backend was read. */
  private async readClusters(first: number, count: number, target: Buffer, forWrite = false): Promise<boolean> {
    const crcs = new Uint32Array(count);
    const runs: ClusterRun[] = [];
    let current: ClusterRun | undefined;
    for (let index = 0; index < count; index++) {
      const location = this.metadata.lookup(first + index);
      if (location === undefined) {
        target.fill(0, index * CLUSTER_SIZE_BYTES, (index + 1) * CLUSTER_SIZE_BYTES);
        current = undefined;
        continue;
      }
      crcs[index] = location.dataCrc;
      if (current !== undefined && current.scoNumber === location.scoNumber && current.scoOffset + current.count === location.scoOffset
        && current.index + current.count === index) {
        current.count++;
      } else {
        current = { index, count: 1, scoNumber: location.scoNumber, scoOffset: location.scoOffset };
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
    const sco = this.scos.get(run.scoNumber);
    if (sco !== undefined) {
      sco.lastUseMs = this.nowMs();
      if (await sco.readClusters(run.scoOffset, run.count, target, run.index * CLUSTER_SIZE_BYTES)) return false;
    }
    // Not local: read cache, then ranged backend reads of the missing sub-runs.
    let missingStart = -1;
    const fetches: Array<Promise<void>> = [];
    for (let index = 0; index <= run.count; index++) {
      const cached = index < run.count ? this.readCache.get(ReadCache.key(this.config.uuid, run.scoNumber, run.scoOffset + index)) : undefined;
      if (cached !== undefined) {
        this.counters.readCacheHits++;
        cached.copy(target, (run.index + index) * CLUSTER_SIZE_BYTES);
      }
      if (index < run.count && cached === undefined) {
        this.counters.readCacheMisses++;
        if (missingStart < 0) missingStart = index;
      } else if (missingStart >= 0) {
        const start = missingStart;
        fetches.push(this.fetchClusters(run.scoNumber, run.scoOffset + start, index - start, target, (run.index + start) * CLUSTER_SIZE_BYTES, forWrite));
        missingStart = -1;
      }
    }
    await Promise.all(fetches);
    return fetches.length > 0;
  }

  /** Ranged backend read of `count` clusters of a SCO into target (and the read cache), with bounded retries. */
  /**
   * Ranged backend read of `count` clusters of a SCO into target (and the read cache). A client read
   * gives up after a few attempts (an I/O error beats hanging the guest); the read half of a
   * read-modify-write retries transient errors for as long as the backend is out, so that writes
   * stall but never fail.
   */
  private async fetchClusters(scoNumber: number, scoOffset: number, count: number, target: Buffer | undefined, targetOffset: number,
    forWrite = false): Promise<void> {
    let data: Buffer | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        this.counters.backendReads++;
        data = await this.store.get(this.config.namespace, scoObjectKey(scoNumber), {
          offsetBytes: scoClusterOffsetBytes(scoOffset), lengthBytes: count * CLUSTER_SIZE_BYTES,
        });
        break;
      } catch (error) {
        const retryable = isStoreError(error, "Transient") && !this.closed;
        if (!retryable || (!forWrite && attempt >= BACKEND_READ_ATTEMPTS)) {
          throw new VolumeError("Io", `vDisk ${this.name}: reading SCO ${scoNumber} from the backend failed: ${(error as Error).message}`, { cause: error });
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
      this.readCache.set(ReadCache.key(this.config.uuid, scoNumber, scoOffset + index), cluster);
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
    let run: { scoNumber: number; scoOffset: number; count: number } | undefined;
    const flushRun = (): void => {
      if (run !== undefined) fetches.push(this.fetchClusters(run.scoNumber, run.scoOffset, run.count, undefined, 0));
      run = undefined;
    };
    for (let cluster = start; cluster < end; cluster++) {
      const location = this.metadata.lookup(cluster);
      const remote = location !== undefined && !this.scos.has(location.scoNumber)
        && !this.readCache.has(ReadCache.key(this.config.uuid, location.scoNumber, location.scoOffset));
      if (!remote) { flushRun(); continue; }
      if (run !== undefined && run.scoNumber === location.scoNumber && run.scoOffset + run.count === location.scoOffset) run.count++;
      else { flushRun(); run = { scoNumber: location.scoNumber, scoOffset: location.scoOffset, count: 1 }; }
    }
    flushRun();
    await Promise.all(fetches);
  }

  async write(offsetBytes: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    this.checkRange(offsetBytes, data.length, "write");
    this.counters.writeOps++;
    this.counters.writeBytes += data.length;
    // Fast path (the common aligned write with room to spare): no extra promises or closures.
    if (data.length > 0 && !options.fua && offsetBytes % CLUSTER_SIZE_BYTES === 0 && data.length % CLUSTER_SIZE_BYTES === 0
      && this.writeBuffer.admitsAtOnce(data.length) && !this.journal.congested) {
      this.appendClusters(offsetBytes / CLUSTER_SIZE_BYTES, data);
      return;
    }
    await this.tracked(async () => {
      if (data.length > 0) await this.writeData(offsetBytes, data);
      if (options.fua) await this.journal.flush();
    });
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
      if (head !== 0) await this.readClusters(firstCluster, 1, merged.subarray(0, CLUSTER_SIZE_BYTES), true);
      const tailEnd = head + data.length;
      if (tailEnd % CLUSTER_SIZE_BYTES !== 0 && (endCluster - 1 !== firstCluster || head === 0)) {
        const lastStart = (endCluster - firstCluster - 1) * CLUSTER_SIZE_BYTES;
        await this.readClusters(endCluster - 1, 1, merged.subarray(lastStart, lastStart + CLUSTER_SIZE_BYTES), true);
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
    await this.tracked(async () => {
      this.counters.flushOps++;
      await this.journal.flush();
    });
  }

  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes, "trim");
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
    const extents: BlockExtent[] = [];
    if (lengthBytes === 0) return extents;
    const end = offsetBytes + lengthBytes;
    const firstCluster = Math.floor(offsetBytes / CLUSTER_SIZE_BYTES);
    const endCluster = Math.ceil(end / CLUSTER_SIZE_BYTES);
    this.metadata.forEachRun(firstCluster, endCluster - firstCluster, (first, count, allocated) => {
      const start = Math.max(offsetBytes, first * CLUSTER_SIZE_BYTES);
      const stop = Math.min(end, (first + count) * CLUSTER_SIZE_BYTES);
      extents.push({ offsetBytes: start, lengthBytes: stop - start, allocated });
    });
    return extents;
  }

  // ---- management ----

  info(): VolumeInfo {
    return {
      name: this.name, uuid: this.config.uuid, vpool: this.config.vpool, namespace: this.config.namespace,
      sizeBytes: this.sizeBytes, clusterSizeBytes: CLUSTER_SIZE_BYTES, scoSizeBytes: this.config.scoSizeBytes,
      createdAt: this.config.createdAt, state: this.closed ? "closed" : "running",
    };
  }

  stats(): VolumeStats {
    return {
      ...this.counters,
      notUploadedBytes: this.notUploadedBytes,
      writeBufferBytes: this.localBytes,
      stalledWritesNow: this.stalledWritesNow,
      flushSyncs: this.journal.flushSyncCount,
      backendTlogNumber: this.backendTlogNumber,
    };
  }

  async drain(): Promise<void> {
    if (this.closed) throw new VolumeError("Closed", `vDisk ${this.name} is closed`);
    this.journal.sealAll();
    await this.journal.whenIdle();
    await this.uploader.whenIdle();
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

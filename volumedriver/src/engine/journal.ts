// The journal of one volume: turns acknowledged cluster writes and trims into SCO and TLog files, in
// order, and makes them durable on flush with group commit.
//
// Invariants:
// - Appends are synchronous and in memory (the write is acknowledged there); one async worker writes
//   them out strictly in order: a segment's SCO bytes before its TLog entries, segments before the
//   seal that follows them. So after a process kill every TLog entry on disk names data on disk, and
//   after a host crash replay stops at the first entry whose data fails its CRC.
// - A SCO belongs to exactly one TLog; a TLog is only rolled when a SCO is sealed.
// - At every TLog roll (and when dirty metadata grows past a bound) the metadata is frozen at the
//   current TLog position and committed once that position is fsynced. So the checkpoint is always
//   at or past the end of every sealed TLog, and uploaded TLogs can be removed locally.
// - A flush resolves once every append before it is fsynced; flushes that arrive while one sync is
//   queued share it (group commit). Pending bytes are bounded: appenders wait for room.
import { mkdir, open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import { VolumeError } from "./block-device.ts";
import { LocalSco } from "./local-sco.ts";
import { encodeScoHeader, SCO_HEADER_SIZE_BYTES, scoClusterOffsetBytes, scoObjectKey } from "./formats/sco-format.ts";
import {
  encodeEndEntry, encodeTlogHeader, encodeTrimEntry, encodeWriteEntry, SCRUB_TLOG_NUMBER_BASE,
  TLOG_ENTRY_SIZE_BYTES, TLOG_HEADER_SIZE_BYTES, tlogObjectKey,
} from "./formats/tlog-format.ts";
import type { MetadataStore } from "./metadata-store.ts";
import { CLUSTER_SIZE_BYTES } from "./vpool-types.ts";

const SEGMENT_CLUSTERS_MAX = 256;
const SEGMENT_ENTRIES_MAX = 1024;
const RETRY_DELAY_MS = 1000;
/** Segments written with one writev: up to 32 MiB of SCO data per system call. */
const SEGMENT_BATCH_MAX = 32;

/** writev that finishes short writes (the kernel may write less than asked). */
async function writeAllAt(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let remaining = buffers;
  let offset = position;
  while (remaining.length > 0) {
    const { bytesWritten } = await handle.writev(remaining, offset);
    offset += bytesWritten;
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const buffer of remaining) {
      if (skip >= buffer.length) { skip -= buffer.length; continue; }
      rest.push(skip > 0 ? buffer.subarray(skip) : buffer);
      skip = 0;
    }
    remaining = rest;
  }
}

export interface JournalSettings {
  volumeUuid: string;
  /** Directory holding sco/ and tlog/ of this volume. */
  directory: string;
  scoClusterCount: number;
  tlogScoCountMax: number;
  scoMaxAgeMs: number;
  /** Appended bytes not yet written to files before appenders wait. */
  pendingBytesMax: number;
  /** Dirty metadata pages that force a checkpoint. */
  dirtyPagesMax: number;
  nowMs: () => number;
  logger: Logger;
}

export interface JournalListener {
  /** The SCO is complete and fsynced: it may be uploaded. */
  scoSealed(sco: LocalSco): void;
  /** The TLog is complete and fsynced; scoNumbers are the SCOs it names. */
  tlogSealed(tlogNumber: number, scoNumbers: number[]): void;
}

export class OpenTlog {
  readonly tlogNumber: number;
  readonly createdAtMs: number;
  entryCount = 0;
  /** Entries handed to the worker (their CRC is folded into chainCrc). */
  chainedEntryCount = 0;
  chainCrc = 0;
  readonly scoNumbers: number[] = [];
  handle: FileHandle | undefined;
  constructor(tlogNumber: number, createdAtMs: number) {
    this.tlogNumber = tlogNumber;
    this.createdAtMs = createdAtMs;
  }
}

interface Segment {
  sco: LocalSco | undefined;
  scoFirstCluster: number;
  scoData: Buffer | undefined;
  scoClusterCount: number;
  tlog: OpenTlog;
  tlogFirstEntry: number;
  tlogData: Buffer;
  tlogEntryCount: number;
}

interface SyncWaiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

type Operation =
  | { kind: "segment"; segment: Segment }
  | { kind: "sync"; sco: LocalSco | undefined; tlog: OpenTlog | undefined; waiters: SyncWaiter[] }
  | { kind: "sealSco"; sco: LocalSco; tlog: OpenTlog }
  | { kind: "checkpoint"; sco: LocalSco | undefined; tlog: OpenTlog; checkpoint: ReturnType<MetadataStore["freeze"]> }
  | { kind: "sealTlog"; tlog: OpenTlog }
  | { kind: "barrier"; resolve: () => void; reject: (error: Error) => void };

export class Journal {
  private readonly settings: JournalSettings;
  private readonly metadata: MetadataStore;
  private readonly listener: JournalListener;
  private readonly scos: Map<number, LocalSco>;
  private nextScoNumber: number;
  private nextTlogNumber: number;
  private currentSco: LocalSco | undefined;
  private currentTlog: OpenTlog | undefined;
  private segment: Segment | undefined;
  private readonly queue: Operation[] = [];
  private queuedSync: Extract<Operation, { kind: "sync" }> | undefined;
  private workerRunning = false;
  private kickScheduled = false;
  private pendingBytes = 0;
  private readonly roomWaiters: Array<() => void> = [];
  private readonly idleWaiters: Array<() => void> = [];
  /** Appends since the last sync was queued: a flush with nothing new returns at once. */
  private appendsSinceSync = 0;
  private stopped = false;
  /** Ordered steps that run once an fsync completes (commit metadata, resolve flushes, notify). */
  private durabilityChain: Promise<void> = Promise.resolve();
  /** Set when an fsync failed: the volume accepts no more writes. */
  private failure: VolumeError | undefined;
  private syncRunning = false;
  /** fsync rounds run for flushes (group commit: fewer than the flushes when they overlap). */
  flushSyncCount = 0;
  /** A TLog roll that came due in the middle of a request. */
  private rollPending = false;
  /** Reused segment buffers: fresh 1 MiB buffers cost page faults and GC on every segment. */
  private readonly scoBufferPool: Buffer[] = [];
  private readonly tlogBufferPool: Buffer[] = [];
  private readonly nextSyncWaiters: SyncWaiter[] = [];
  /** Resolves when the most recent flush's sync completes. */
  private lastSync: Promise<void> = Promise.resolve();

  constructor(settings: JournalSettings, metadata: MetadataStore, listener: JournalListener,
    scos: Map<number, LocalSco>, nextScoNumber: number, nextTlogNumber: number) {
    this.settings = settings;
    this.metadata = metadata;
    this.listener = listener;
    this.scos = scos;
    this.nextScoNumber = nextScoNumber;
    this.nextTlogNumber = nextTlogNumber;
  }

  /** putFile's block checksums of a sealed SCO, when this process wrote all of it. */
  scoBlockCrc32cs(scoNumber: number): Uint32Array | undefined {
    return this.scos.get(scoNumber)?.fileBlockCrc32cs();
  }

  scoPath(scoNumber: number): string {
    return join(this.settings.directory, scoObjectKey(scoNumber));
  }

  tlogPath(tlogNumber: number): string {
    return join(this.settings.directory, tlogObjectKey(tlogNumber));
  }

  get openScoNumber(): number | undefined {
    return this.currentSco?.scoNumber;
  }

  /** True when appends must wait for the worker to catch up. */
  get congested(): boolean {
    return this.pendingBytes >= this.settings.pendingBytesMax;
  }

  /** Resolves once pending bytes are under the bound. */
  async waitForRoom(): Promise<void> {
    while (this.congested && !this.stopped) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
  }

  private ensureTlog(): OpenTlog {
    if (this.currentTlog === undefined) {
      if (this.nextTlogNumber >= SCRUB_TLOG_NUMBER_BASE) throw new Error(`assertion: journal TLog number ${this.nextTlogNumber} is in the scrubber's range`);
      this.currentTlog = new OpenTlog(this.nextTlogNumber++, this.settings.nowMs());
    }
    return this.currentTlog;
  }

  private ensureSegment(): Segment {
    const tlog = this.ensureTlog();
    if (this.segment === undefined) {
      this.segment = {
        sco: undefined, scoFirstCluster: 0, scoData: undefined, scoClusterCount: 0,
        tlog, tlogFirstEntry: tlog.entryCount, tlogEntryCount: 0,
        tlogData: this.tlogBufferPool.pop() ?? Buffer.allocUnsafeSlow(SEGMENT_ENTRIES_MAX * TLOG_ENTRY_SIZE_BYTES),
      };
      this.scheduleKick();
    }
    return this.segment;
  }

  /**
   * Appends one 4 KiB cluster for clusterAddress; returns where it now lives. The caller updates the
   * metadata right after, in the same tick.
   */
  private checkUsable(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.stopped) throw new VolumeError("Closed", "volume is closed");
  }

  /**
   * Returns the cluster's index in the open SCO (openScoNumber names that SCO). The clusters of one
   * request are appended in one synchronous run, first to last: TLogs roll and metadata checkpoints
   * happen only between requests, and the last entry of a request carries the end-of-request flag,
   * so crash replay applies whole requests or nothing of them.
   */
  appendCluster(data: Uint8Array, clusterAddress: number, dataCrc: number, firstOfRequest: boolean, lastOfRequest: boolean): number {
    this.checkUsable();
    if (this.currentSco !== undefined && this.currentSco.clusterCount >= this.settings.scoClusterCount) {
      this.sealCurrentSco(false, firstOfRequest);
    }
    if (firstOfRequest && this.metadata.dirtyPageCount() >= this.settings.dirtyPagesMax) this.checkpoint();
    let segment = this.ensureSegment();
    if (this.currentSco === undefined) {
      const tlog = segment.tlog;
      const scoNumber = this.nextScoNumber++;
      const sco = new LocalSco(scoNumber, tlog.tlogNumber, this.scoPath(scoNumber));
      sco.firstWriteMs = this.settings.nowMs();
      sco.lastUseMs = sco.firstWriteMs;
      this.scos.set(sco.scoNumber, sco);
      tlog.scoNumbers.push(sco.scoNumber);
      this.currentSco = sco;
    }
    const sco = this.currentSco;
    if (segment.sco !== undefined && (segment.sco !== sco || segment.scoClusterCount >= SEGMENT_CLUSTERS_MAX)) {
      this.closeSegment();
      segment = this.ensureSegment();
    }
    if (segment.tlogEntryCount >= SEGMENT_ENTRIES_MAX) {
      this.closeSegment();
      segment = this.ensureSegment();
    }
    if (segment.sco === undefined) {
      segment.sco = sco;
      segment.scoFirstCluster = sco.clusterCount;
      segment.scoData = this.scoBufferPool.pop() ?? Buffer.allocUnsafeSlow(SEGMENT_CLUSTERS_MAX * CLUSTER_SIZE_BYTES);
      sco.pendingChunks.push({ firstCluster: sco.clusterCount, clusterCount: 0, data: segment.scoData });
    }
    const scoOffset = sco.clusterCount;
    sco.recordBlockCrc32c(1 + scoOffset, dataCrc, 1 + this.settings.scoClusterCount);
    (segment.scoData as Buffer).set(data, segment.scoClusterCount * CLUSTER_SIZE_BYTES);
    segment.scoClusterCount++;
    sco.pendingChunks[sco.pendingChunks.length - 1].clusterCount = segment.scoClusterCount;
    sco.clusterCount++;
    const tlog = segment.tlog;
    encodeWriteEntry(segment.tlogData, segment.tlogEntryCount * TLOG_ENTRY_SIZE_BYTES, tlog.entryCount,
      clusterAddress, sco.scoNumber, scoOffset, dataCrc, lastOfRequest);
    segment.tlogEntryCount++;
    tlog.entryCount++;
    this.pendingBytes += CLUSTER_SIZE_BYTES + TLOG_ENTRY_SIZE_BYTES;
    this.appendsSinceSync++;
    if (segment.scoClusterCount >= SEGMENT_CLUSTERS_MAX) this.closeSegment();
    return scoOffset;
  }

  /**
   * Called after the last cluster of a request is appended and the metadata updated: a TLog roll
   * that came due in the middle of the request happens now, so its metadata checkpoint includes the
   * whole request.
   */
  finishRequest(): void {
    if (this.rollPending) {
      this.rollPending = false;
      this.rollTlog();
    }
  }

  /** Appends a TRIM entry for clusters [clusterAddress, +clusterCount). */
  appendTrim(clusterAddress: number, clusterCount: number): void {
    this.appendEntry((buffer, position, sequence) => encodeTrimEntry(buffer, position, sequence, clusterAddress, clusterCount));
  }

  /**
   * Appends a relocation entry: cluster `clusterAddress` now lives at (scoNumber, scoOffset), a SCO
   * of a scrubbed TLog already on the backend (see FLAG_RELOCATION). The caller updates the metadata.
   */
  appendRelocation(clusterAddress: number, scoNumber: number, scoOffset: number, dataCrc: number, lastOfRequest: boolean): void {
    this.appendEntry((buffer, position, sequence) =>
      encodeWriteEntry(buffer, position, sequence, clusterAddress, scoNumber, scoOffset, dataCrc, lastOfRequest, true));
  }

  /** Appends one TLog entry that carries no SCO data; `encode` writes it at (buffer, position) with its sequence number. */
  private appendEntry(encode: (buffer: Buffer, position: number, sequence: number) => void): void {
    this.checkUsable();
    let segment = this.ensureSegment();
    if (segment.tlogEntryCount >= SEGMENT_ENTRIES_MAX) {
      this.closeSegment();
      segment = this.ensureSegment();
    }
    const tlog = segment.tlog;
    encode(segment.tlogData, segment.tlogEntryCount * TLOG_ENTRY_SIZE_BYTES, tlog.entryCount);
    segment.tlogEntryCount++;
    tlog.entryCount++;
    this.pendingBytes += TLOG_ENTRY_SIZE_BYTES;
    this.appendsSinceSync++;
  }

  private closeSegment(): void {
    const segment = this.segment;
    if (segment === undefined) return;
    this.segment = undefined;
    const entriesBytes = segment.tlogData.subarray(0, segment.tlogEntryCount * TLOG_ENTRY_SIZE_BYTES);
    segment.tlog.chainCrc = crc32c(entriesBytes, segment.tlog.chainCrc);
    segment.tlog.chainedEntryCount += segment.tlogEntryCount;
    this.queue.push({ kind: "segment", segment });
    this.scheduleKick();
  }

  /**
   * Seals the open SCO (if it holds data) and rolls the TLog when it is full, old, or `rollTlog`;
   * in the middle of a request (`mayRollTlog` false) a due roll waits for the request's end.
   */
  sealCurrentSco(rollTlog: boolean, mayRollTlog = true): void {
    const sco = this.currentSco;
    const tlog = this.currentTlog;
    if (sco !== undefined && tlog !== undefined) {
      this.closeSegment();
      this.currentSco = undefined;
      this.queue.push({ kind: "sealSco", sco, tlog });
    }
    if (tlog !== undefined && (rollTlog || tlog.scoNumbers.length >= this.settings.tlogScoCountMax
      || this.settings.nowMs() - tlog.createdAtMs >= this.settings.scoMaxAgeMs)) {
      if (mayRollTlog) this.rollTlog();
      else this.rollPending = true;
    }
    this.scheduleKick();
  }

  /** Seals the open TLog (after sealing its open SCO). An empty TLog is not written. */
  private rollTlog(): void {
    const tlog = this.currentTlog;
    if (tlog === undefined) return;
    if (this.currentSco !== undefined) {
      this.sealCurrentSco(false);
      if (this.currentTlog !== tlog) return; // sealCurrentSco rolled it
    }
    this.closeSegment();
    this.currentTlog = undefined;
    if (tlog.entryCount === 0) {
      this.nextTlogNumber = tlog.tlogNumber; // reuse the number: nothing was written under it
      return;
    }
    if (this.metadata.dirtyPageCount() > 0) {
      this.queue.push({ kind: "checkpoint", sco: undefined, tlog, checkpoint: this.metadata.freeze({ tlogNumber: tlog.tlogNumber, entryCount: tlog.entryCount }) });
    }
    this.queue.push({ kind: "sealTlog", tlog });
    this.scheduleKick();
  }

  /** Seals by age: called periodically. */
  sealIfOld(): void {
    const now = this.settings.nowMs();
    if (this.currentSco !== undefined && now - this.currentSco.firstWriteMs >= this.settings.scoMaxAgeMs) {
      this.sealCurrentSco(true);
    } else if (this.currentSco === undefined && this.currentTlog !== undefined && now - this.currentTlog.createdAtMs >= this.settings.scoMaxAgeMs) {
      this.rollTlog();
    }
  }

  /** Seals SCO and TLog now (snapshot, drain, close). */
  sealAll(): void {
    this.sealCurrentSco(true);
    this.rollTlog();
  }

  /** The number the next TLog will get: every TLog below it is sealed or queued for sealing once sealAll ran. */
  get nextTlog(): number {
    return this.nextTlogNumber;
  }

  /** True while a TLog is open (entries appended since the last roll). */
  get hasOpenTlog(): boolean {
    return this.currentTlog !== undefined && this.currentTlog.entryCount > 0;
  }

  /** The number the next SCO will get. */
  get nextSco(): number {
    return this.nextScoNumber;
  }

  /**
   * Seals SCO and TLog now and resolves once everything appended before the call is fsynced and
   * every sealed SCO and TLog has been handed to the listener (so to the uploader). Unlike whenIdle,
   * it does not wait for appends that come later.
   */
  sealAllAndWait(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.stopped) return Promise.reject(new VolumeError("Closed", "volume is closed"));
    this.sealAll();
    this.closeSegment();
    const promise = new Promise<void>((resolve, reject) => this.queue.push({ kind: "barrier", resolve, reject }));
    this.scheduleKick();
    return promise;
  }

  /** Freezes dirty metadata at the current position; committed once that position is durable. */
  private checkpoint(): void {
    const tlog = this.currentTlog;
    if (tlog === undefined) return;
    this.closeSegment();
    this.queue.push({
      kind: "checkpoint", sco: this.currentSco, tlog,
      checkpoint: this.metadata.freeze({ tlogNumber: tlog.tlogNumber, entryCount: tlog.entryCount }),
    });
    this.scheduleKick();
  }

  /** Group commit: resolves when everything appended before the call is fsynced. */
  flush(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.stopped) return Promise.reject(new VolumeError("Closed", "volume is closed"));
    if (this.appendsSinceSync === 0) return this.lastSync;
    this.closeSegment();
    this.appendsSinceSync = 0;
    const promise = new Promise<void>((resolve, reject) => {
      const sync: Extract<Operation, { kind: "sync" }> = {
        kind: "sync", sco: this.currentSco, tlog: this.currentTlog, waiters: [{ resolve, reject }],
      };
      this.queuedSync = sync;
      this.queue.push(sync);
    });
    promise.catch(() => undefined);
    this.lastSync = promise;
    this.scheduleKick();
    return promise;
  }

  /** Resolves when the worker has nothing queued (all appends so far are in files). */
  async whenIdle(): Promise<void> {
    for (;;) {
      if (this.workerRunning || this.queue.length > 0 || this.segment !== undefined) {
        this.closeSegment();
        await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
        continue;
      }
      const chain = this.durabilityChain;
      await chain;
      if (chain === this.durabilityChain && !this.workerRunning && this.queue.length === 0) return;
    }
  }

  private scheduleKick(): void {
    if (this.workerRunning || this.kickScheduled || this.stopped) return;
    this.kickScheduled = true;
    setImmediate(() => {
      this.kickScheduled = false;
      void this.runWorker();
    });
  }

  private async runWorker(): Promise<void> {
    if (this.workerRunning || this.stopped) return;
    this.workerRunning = true;
    try {
      for (;;) {
        if (this.queue.length === 0) this.closeSegment();
        const operation = this.queue[0];
        if (operation === undefined || this.stopped) break;
        try {
          if (operation.kind === "segment") {
            const batch = this.segmentBatch();
            await this.writeSegments(batch);
            this.queue.splice(0, batch.length);
          } else {
            await this.execute(operation);
            this.queue.shift();
          }
        } catch (error) {
          if (this.stopped) break;
          this.settings.logger.error({ err: error, operation: operation.kind }, "journal write failed; retrying");
          await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
        }
      }
    } finally {
      this.workerRunning = false;
    }
    if (this.queue.length === 0 && this.segment === undefined) {
      for (const waiter of this.idleWaiters.splice(0)) waiter();
    } else {
      this.scheduleKick();
    }
  }

  private async scoHandle(sco: LocalSco): Promise<FileHandle> {
    let handle = sco.currentHandle();
    if (handle === undefined) {
      await mkdir(join(this.settings.directory, "sco"), { recursive: true });
      handle = await open(sco.path, "w+");
      sco.adoptHandle(handle);
      const header = encodeScoHeader({ scoNumber: sco.scoNumber, tlogNumber: sco.tlogNumber, volumeUuid: this.settings.volumeUuid });
      sco.recordBlockCrc32c(0, crc32c(header.subarray(0, SCO_HEADER_SIZE_BYTES)), 1 + this.settings.scoClusterCount);
      await handle.write(header, 0, SCO_HEADER_SIZE_BYTES, 0);
    }
    return handle;
  }

  private async tlogHandle(tlog: OpenTlog): Promise<FileHandle> {
    if (tlog.handle === undefined) {
      await mkdir(join(this.settings.directory, "tlog"), { recursive: true });
      const handle = await open(this.tlogPath(tlog.tlogNumber), "w+");
      await handle.write(encodeTlogHeader({ tlogNumber: tlog.tlogNumber, volumeUuid: this.settings.volumeUuid, createdAtMs: tlog.createdAtMs }), 0, TLOG_HEADER_SIZE_BYTES, 0);
      tlog.handle = handle;
    }
    return tlog.handle;
  }

  private async execute(operation: Operation): Promise<void> {
    switch (operation.kind) {
      case "barrier":
        // Earlier seals queued their durability steps already; this one runs after them, in order.
        this.afterDurable(Promise.resolve(), operation.resolve, operation.reject);
        return;
      case "segment":
        await this.writeSegments([operation.segment]);
        return;
      case "sync": {
        if (this.queuedSync === operation) this.queuedSync = undefined;
        const files = [operation.sco?.currentHandle(), operation.tlog?.handle];
        if (this.syncRunning) {
          // Group commit: one fsync at a time; flushes that come meanwhile share the next one.
          this.nextSyncWaiters.push(...operation.waiters);
          return;
        }
        this.runSync(files, operation.waiters);
        return;
      }
      case "sealSco": {
        const synced = this.startDatasync(await this.scoHandle(operation.sco));
        this.afterDurable(synced, () => {
          if (operation.sco.state === "open") {
            operation.sco.state = "sealed";
            this.listener.scoSealed(operation.sco);
          }
        });
        return;
      }
      case "checkpoint": {
        const synced = this.startDatasync(operation.sco?.currentHandle(), operation.tlog.handle);
        this.afterDurable(synced, () => this.metadata.commit(operation.checkpoint));
        return;
      }
      case "sealTlog": {
        const tlog = operation.tlog;
        const handle = await this.tlogHandle(tlog);
        const end = Buffer.alloc(TLOG_ENTRY_SIZE_BYTES);
        encodeEndEntry(end, 0, tlog.entryCount, tlog.chainCrc);
        await handle.write(end, 0, TLOG_ENTRY_SIZE_BYTES, TLOG_HEADER_SIZE_BYTES + tlog.entryCount * TLOG_ENTRY_SIZE_BYTES);
        tlog.handle = undefined; // no more writes; closed once durable
        const synced = handle.sync();
        this.afterDurable(synced, async () => {
          await handle.close();
          this.listener.tlogSealed(tlog.tlogNumber, tlog.scoNumbers.slice());
        });
        return;
      }
    }
  }

  private runSync(files: Array<FileHandle | undefined>, waiters: SyncWaiter[]): void {
    this.syncRunning = true;
    this.flushSyncCount++;
    this.afterDurable(this.startDatasync(...files), () => {
      for (const waiter of waiters) waiter.resolve();
      this.syncRunning = false;
      if (this.nextSyncWaiters.length > 0) {
        // Everything these waiters appended was written before their sync op ran, so syncing the
        // files open now covers it (sealed files were synced by their own seal step, earlier in order).
        this.runSync([this.currentSco?.currentHandle(), this.currentTlog?.handle], this.nextSyncWaiters.splice(0));
      }
    }, (error) => {
      for (const waiter of waiters) waiter.reject(error);
      this.syncRunning = false;
      for (const waiter of this.nextSyncWaiters.splice(0)) waiter.reject(error);
    });
  }

  /** Starts fdatasync of the given files now, so it covers every write issued before this call. */
  private startDatasync(...handles: Array<FileHandle | undefined>): Promise<void> {
    return Promise.all(handles.filter((handle) => handle !== undefined).map((handle) => handle.datasync())).then(() => undefined);
  }

  /**
   * Runs `then` once `synced` resolves and every earlier durability step has run, in order; the worker
   * meanwhile goes on writing later segments (an fsync covers writes issued before it, and later
   * writes go to later offsets). An fsync failure is fatal for the volume: the kernel may have
   * dropped the dirty pages, so nothing after it can be promised (restart replays the TLogs).
   */
  private afterDurable(synced: Promise<void>, then: () => void | Promise<void>, onError?: (error: Error) => void): void {
    synced.catch(() => undefined);
    this.durabilityChain = this.durabilityChain.then(async () => {
      if (this.failure !== undefined) throw this.failure;
      try {
        await synced;
      } catch (error) {
        this.failure = new VolumeError("Io", `local write buffer fsync failed (${(error as Error).message}); restart the StorageDriver to replay the TLogs`);
        this.settings.logger.fatal({ err: error }, "fsync failed: the volume stops accepting writes");
        throw this.failure;
      }
      if (this.stopped) throw new VolumeError("Closed", "volume closed before the flush completed");
      await then();
    }).catch((error: unknown) => {
      onError?.(error instanceof Error ? error : new Error(String(error)));
      if (this.failure === undefined && !this.stopped) this.settings.logger.error({ err: error }, "journal durability step failed");
    });
  }

  /** The segments at the head of the queue that can be written with one writev per file. */
  private segmentBatch(): Segment[] {
    const batch: Segment[] = [];
    let batchSco: LocalSco | undefined;
    let nextScoCluster = 0;
    let nextTlogEntry = 0;
    for (const operation of this.queue) {
      if (operation.kind !== "segment" || batch.length >= SEGMENT_BATCH_MAX) break;
      const segment = operation.segment;
      const holdsData = segment.sco !== undefined && segment.scoClusterCount > 0;
      if (batch.length > 0) {
        // One writev per file needs one SCO, one TLog, and contiguous ranges in both.
        if (segment.tlog !== batch[0].tlog || segment.tlogFirstEntry !== nextTlogEntry) break;
        if (holdsData && batchSco !== undefined && (segment.sco !== batchSco || segment.scoFirstCluster !== nextScoCluster)) break;
      }
      if (holdsData) {
        batchSco = segment.sco;
        nextScoCluster = segment.scoFirstCluster + segment.scoClusterCount;
      }
      nextTlogEntry = segment.tlogFirstEntry + segment.tlogEntryCount;
      batch.push(segment);
    }
    return batch;
  }

  /** Writes consecutive segments (one SCO, one TLog): SCO bytes first, then the TLog entries naming them. */
  private async writeSegments(segments: Segment[]): Promise<void> {
    const scoSegments = segments.filter((segment) => segment.sco !== undefined && segment.scoData !== undefined && segment.scoClusterCount > 0);
    if (scoSegments.some((segment) => segment.sco !== scoSegments[0].sco)) throw new Error("assertion: a segment batch spans two SCOs");
    if (scoSegments.length > 0) {
      const sco = scoSegments[0].sco as LocalSco;
      const handle = await this.scoHandle(sco);
      const buffers = scoSegments.map((segment) => (segment.scoData as Buffer).subarray(0, segment.scoClusterCount * CLUSTER_SIZE_BYTES));
      await writeAllAt(handle, buffers, scoClusterOffsetBytes(scoSegments[0].scoFirstCluster));
      const last = scoSegments[scoSegments.length - 1];
      sco.fileClusterCount = last.scoFirstCluster + last.scoClusterCount;
      for (const segment of scoSegments) {
        const index = sco.pendingChunks.findIndex((chunk) => chunk.data === segment.scoData);
        if (index >= 0) sco.pendingChunks.splice(index, 1);
      }
    }
    const tlogSegments = segments.filter((segment) => segment.tlogEntryCount > 0);
    if (tlogSegments.length > 0) {
      const handle = await this.tlogHandle(tlogSegments[0].tlog);
      const buffers = tlogSegments.map((segment) => segment.tlogData.subarray(0, segment.tlogEntryCount * TLOG_ENTRY_SIZE_BYTES));
      await writeAllAt(handle, buffers, TLOG_HEADER_SIZE_BYTES + tlogSegments[0].tlogFirstEntry * TLOG_ENTRY_SIZE_BYTES);
    }
    let bytes = 0;
    const poolMax = Math.ceil(this.settings.pendingBytesMax / (SEGMENT_CLUSTERS_MAX * CLUSTER_SIZE_BYTES));
    for (const segment of segments) {
      bytes += segment.scoClusterCount * CLUSTER_SIZE_BYTES + segment.tlogEntryCount * TLOG_ENTRY_SIZE_BYTES;
      if (segment.scoData !== undefined && this.scoBufferPool.length < poolMax) this.scoBufferPool.push(segment.scoData);
      if (this.tlogBufferPool.length < poolMax) this.tlogBufferPool.push(segment.tlogData);
    }
    this.release(bytes);
  }

  private release(bytes: number): void {
    this.pendingBytes -= bytes;
    if (!this.congested) for (const waiter of this.roomWaiters.splice(0)) waiter();
  }

  /** Stops the worker at once (crash simulation or after a clean drain). Pending flushes are rejected. */
  async stop(): Promise<void> {
    this.stopped = true;
    const closedError = new VolumeError("Closed", "volume closed before the flush completed");
    for (const operation of this.queue) {
      if (operation.kind === "sync") for (const waiter of operation.waiters) waiter.reject(closedError);
      if (operation.kind === "barrier") operation.reject(closedError);
    }
    for (const waiter of this.nextSyncWaiters.splice(0)) waiter.reject(closedError);
    this.queue.length = 0;
    this.segment = undefined;
    for (const waiter of this.roomWaiters.splice(0)) waiter();
    for (const waiter of this.idleWaiters.splice(0)) waiter();
    while (this.workerRunning) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.durabilityChain;
    await this.currentTlog?.handle?.close().catch(() => undefined);
    if (this.currentTlog) this.currentTlog.handle = undefined;
  }
}

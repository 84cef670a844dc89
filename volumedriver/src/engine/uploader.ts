// Uploads one volume's sealed SCOs and TLogs to its backend namespace, keeping the backend copy a
// consistent prefix of the write history: a TLog goes up only after every SCO it names and after the
// TLog before it. SCOs upload in parallel (bounded); TLogs one at a time, in order.
// Uploads never give up: a failing backend makes them retry with capped backoff, and the write buffer
// fills until writers stall (never fail). Only stop() ends them.
import type { Logger } from "pino";
import type { ObjectStore } from "../backend/object-store.ts";
import { scoObjectKey } from "./formats/sco-format.ts";
import { tlogObjectKey } from "./formats/tlog-format.ts";

const BACKOFF_INITIAL_MS = 100;
const BACKOFF_MAX_MS = 5000;

export interface UploaderSettings {
  concurrency: number;
  logger: Logger;
  scoPath: (scoNumber: number) => string;
  tlogPath: (tlogNumber: number) => string;
  /** The block checksums of a sealed SCO's file, when known (putFile's blockCrc32cs). */
  scoBlockCrc32cs?: (scoNumber: number) => Uint32Array | undefined;
  /** Called after each SCO upload (stalled writers re-check whether sealing would help). */
  onScoUploaded?: () => void;
}

export class Uploader {
  private readonly store: ObjectStore;
  private readonly namespace: string;
  private readonly settings: UploaderSettings;
  private readonly onTlogUploaded: (tlogNumber: number, scoNumbers: number[]) => void;
  private readonly scoUploads = new Map<number, Promise<void>>();
  private tlogChain: Promise<void> = Promise.resolve();
  private activeUploads = 0;
  private pendingTlogs = 0;
  private readonly slotWaiters: Array<() => void> = [];
  private stopped = false;
  private readonly sleepers = new Set<() => void>();
  /** Consecutive failures, for metrics and tests. */
  failureStreak = 0;
  uploadedObjects = 0;

  constructor(store: ObjectStore, namespace: string, settings: UploaderSettings,
    onTlogUploaded: (tlogNumber: number, scoNumbers: number[]) => void) {
    this.store = store;
    this.namespace = namespace;
    this.settings = settings;
    this.onTlogUploaded = onTlogUploaded;
  }

  enqueueSco(scoNumber: number): void {
    if (this.scoUploads.has(scoNumber)) return;
    const upload = this.withSlot(() => this.uploadFile(scoObjectKey(scoNumber), this.settings.scoPath(scoNumber),
      this.settings.scoBlockCrc32cs?.(scoNumber)))
      .then(() => this.settings.onScoUploaded?.());
    upload.catch(() => undefined); // a stopped upload's rejection is observed by whoever awaits the TLog
    this.scoUploads.set(scoNumber, upload);
  }

  enqueueTlog(tlogNumber: number, scoNumbers: number[]): void {
    for (const scoNumber of scoNumbers) this.enqueueSco(scoNumber);
    const previous = this.tlogChain;
    this.pendingTlogs++;
    this.tlogChain = (async () => {
      try {
        await previous;
        await Promise.all(scoNumbers.map((scoNumber) => this.scoUploads.get(scoNumber)));
        await this.uploadFile(tlogObjectKey(tlogNumber), this.settings.tlogPath(tlogNumber));
        for (const scoNumber of scoNumbers) this.scoUploads.delete(scoNumber);
        this.onTlogUploaded(tlogNumber, scoNumbers);
      } finally {
        this.pendingTlogs--;
      }
    })();
    this.tlogChain.catch(() => undefined);
  }

  /**
   * Runs `work` after every TLog enqueued so far is on the backend (and before any enqueued later),
   * retrying it like an upload until it succeeds or the uploader stops: for objects that name TLogs,
   * such as snapshots.json.
   */
  enqueueAfterTlogs(key: string, work: () => Promise<void>): Promise<void> {
    const previous = this.tlogChain;
    this.pendingTlogs++;
    this.tlogChain = (async () => {
      try {
        await previous;
        await this.withRetries(key, work);
      } finally {
        this.pendingTlogs--;
      }
    })();
    this.tlogChain.catch(() => undefined);
    return this.tlogChain;
  }

  /**
   * True when nothing is queued or uploading except SCOs whose TLog is still open: then only sealing
   * the open SCO and TLog can make room in the write buffer.
   */
  get idle(): boolean {
    return this.pendingTlogs === 0 && this.activeUploads === 0;
  }

  /** Resolves when every TLog enqueued so far is on the backend (rejects if stopped first). */
  whenIdle(): Promise<void> {
    return this.tlogChain;
  }

  /** The concurrency may have grown: waiters re-check for a free slot (each loops until it has one). */
  settingsChanged(): void {
    for (const waiter of this.slotWaiters.splice(0)) waiter();
  }

  private async withSlot<T>(work: () => Promise<T>): Promise<T> {
    while (this.activeUploads >= this.settings.concurrency) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    this.activeUploads++;
    try {
      return await work();
    } finally {
      this.activeUploads--;
      this.slotWaiters.shift()?.();
    }
  }

  private async uploadFile(key: string, path: string, blockCrc32cs?: Uint32Array): Promise<void> {
    // A sealed SCO or TLog file never changes again, as putFile requires; the local store then
    // adopts it by hard link instead of copying it (and the SCO's block checksums instead of reading it).
    await this.withRetries(key, async () => {
      await this.store.putFile(this.namespace, key, path, blockCrc32cs === undefined ? undefined : { blockCrc32cs });
    });
  }

  /** Runs `work` until it succeeds, with capped backoff; only stop() ends it (with an error). */
  private async withRetries(key: string, work: () => Promise<void>): Promise<void> {
    let backoffMs = BACKOFF_INITIAL_MS;
    for (;;) {
      if (this.stopped) throw new Error("uploader stopped");
      try {
        await work();
        this.failureStreak = 0;
        this.uploadedObjects++;
        return;
      } catch (error) {
        if (this.stopped) throw new Error("uploader stopped");
        this.failureStreak++;
        if (this.failureStreak === 1 || this.failureStreak % 20 === 0) {
          this.settings.logger.warn({ err: error, namespace: this.namespace, key, failureStreak: this.failureStreak },
            "upload failed; retrying (writes stall once the write buffer is full)");
        }
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  /** Retries now instead of after the current backoff (e.g. when an operator says the backend is back). */
  retryNow(): void {
    for (const wake of [...this.sleepers]) wake();
  }

  stop(): void {
    this.stopped = true;
    this.retryNow();
    for (const waiter of this.slotWaiters.splice(0)) waiter();
  }
}

// The write buffer of a vPool on this host: the local SCO cache shared by its volumes.
// - Admission: when data not yet safe on the backend fills more than THROTTLE_FRACTION of the buffer,
//   writes are delayed a little (throttled); when it would exceed the buffer, they wait (stalled) until
//   uploads free room. Writes never fail for lack of room.
// - Eviction: safe (uploaded) SCOs stay as a read cache and are evicted, least recently used first, when
//   less than the trigger gap is left in the buffer or on the filesystem.
import { statfs } from "node:fs/promises";
import type { Logger } from "pino";
import type { LocalSco } from "./local-sco.ts";

const THROTTLE_FRACTION = 0.75;
const THROTTLE_DELAY_MS_MAX = 10;

export interface WriteBufferMember {
  /** Bytes in local SCOs whose TLog is not yet on the backend. */
  readonly notUploadedBytes: number;
  /** Bytes of all local SCO files. */
  readonly localBytes: number;
  /** Safe SCOs that may be evicted. */
  evictionCandidates(): LocalSco[];
  evict(sco: LocalSco): Promise<void>;
  /** Seal the open SCO and TLog so that the data can be uploaded (called when writers stall). */
  sealForUpload(): void;
}

export type Admission = "admitted" | "throttled" | "stalled";

export class WriteBuffer {
  sizeBytes: number;
  triggerGapBytes: number;
  private readonly directory: string;
  private readonly logger: Logger;
  private readonly members = new Set<WriteBufferMember>();
  private readonly stalled: Array<{ bytes: number; resume: () => void }> = [];
  private evicting = false;
  private closed = false;
  /** Not-uploaded bytes as of the last re-sum plus what was added since (an over-estimate). */
  private approximateNotUploadedBytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(settings: { sizeBytes: number; triggerGapBytes: number; directory: string; logger: Logger }) {
    this.sizeBytes = settings.sizeBytes;
    this.triggerGapBytes = settings.triggerGapBytes;
    this.directory = settings.directory;
    this.logger = settings.logger;
    this.timer = setInterval(() => void this.evictIfNeeded(), 1000);
    this.timer.unref();
  }

  register(member: WriteBufferMember): void {
    this.members.add(member);
  }

  unregister(member: WriteBufferMember): void {
    this.members.delete(member);
    this.progress();
  }

  notUploadedBytes(): number {
    let total = 0;
    for (const member of this.members) total += member.notUploadedBytes;
    return total;
  }

  localBytes(): number {
    let total = 0;
    for (const member of this.members) total += member.localBytes;
    return total;
  }

  /**
   * True when `bytes` may enter without throttling. Kept cheap for the write fast path: the total is
   * tracked incrementally and re-summed from the members only near the throttle threshold.
   */
  admitsAtOnce(bytes: number): boolean {
    if (this.approximateNotUploadedBytes + bytes <= this.sizeBytes * THROTTLE_FRACTION / 2) return true;
    this.approximateNotUploadedBytes = this.notUploadedBytes();
    return this.approximateNotUploadedBytes + bytes <= this.sizeBytes * THROTTLE_FRACTION;
  }

  /** Members report bytes added so admitsAtOnce stays current between re-sums. */
  noteAdded(bytes: number): void {
    this.approximateNotUploadedBytes += bytes;
  }

  /** Waits until `bytes` more may enter the buffer. */
  async admit(bytes: number, onStall?: () => void): Promise<Admission> {
    const pending = this.notUploadedBytes();
    if (pending + bytes <= this.sizeBytes * THROTTLE_FRACTION) return "admitted";
    if (pending + Math.min(bytes, this.sizeBytes / 4) <= this.sizeBytes) {
      const fill = (pending + bytes - this.sizeBytes * THROTTLE_FRACTION) / (this.sizeBytes * (1 - THROTTLE_FRACTION));
      await new Promise((resolve) => setTimeout(resolve, Math.ceil(fill * THROTTLE_DELAY_MS_MAX)));
      return "throttled";
    }
    if (this.stalled.length === 0) {
      this.logger.warn({ notUploadedBytes: pending, writeBufferSizeBytes: this.sizeBytes }, "write buffer full: writes stall until uploads make room");
    }
    onStall?.();
    // A request larger than a quarter of the buffer waits only for a quarter to be free, so that a
    // big request on a small buffer cannot wait forever.
    const needBytes = Math.min(bytes, this.sizeBytes / 4);
    while (this.notUploadedBytes() + needBytes > this.sizeBytes && this.members.size > 0 && !this.closed) {
      for (const member of this.members) member.sealForUpload();
      await new Promise<void>((resume) => this.stalled.push({ bytes, resume }));
    }
    return "stalled";
  }

  /** A new size: stalled writers re-check (a bigger buffer admits them), eviction follows a smaller one. */
  resize(sizeBytes: number, triggerGapBytes: number): void {
    this.sizeBytes = sizeBytes;
    this.triggerGapBytes = triggerGapBytes;
    this.progress();
  }

  /** Uploads completed or members left: wake stalled writers and evict if needed. */
  progress(): void {
    this.approximateNotUploadedBytes = this.notUploadedBytes();
    for (const waiter of this.stalled.splice(0)) waiter.resume();
    void this.evictIfNeeded();
  }

  private async filesystemFreeBytes(): Promise<number> {
    try {
      const stats = await statfs(this.directory);
      return stats.bavail * stats.bsize;
    } catch {
      return Number.POSITIVE_INFINITY;
    }
  }

  /** Evicts least recently used safe SCOs while room is under the trigger gap. */
  async evictIfNeeded(): Promise<void> {
    if (this.evicting) return;
    this.evicting = true;
    try {
      const freeBytes = await this.filesystemFreeBytes();
      let excessBytes = Math.max(
        this.localBytes() - (this.sizeBytes - this.triggerGapBytes),
        this.triggerGapBytes - freeBytes,
      );
      if (excessBytes <= 0) return;
      excessBytes += this.triggerGapBytes; // evict down to two gaps of room, so eviction runs in batches
      const candidates: Array<{ member: WriteBufferMember; sco: LocalSco }> = [];
      for (const member of this.members) for (const sco of member.evictionCandidates()) candidates.push({ member, sco });
      candidates.sort((left, right) => left.sco.lastUseMs - right.sco.lastUseMs);
      for (const { member, sco } of candidates) {
        if (excessBytes <= 0) break;
        excessBytes -= sco.sizeBytes;
        await member.evict(sco);
      }
    } catch (error) {
      this.logger.error({ err: error }, "write buffer eviction failed");
    } finally {
      this.evicting = false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    for (const waiter of this.stalled.splice(0)) waiter.resume();
  }
}

// Deletes fragments nobody references any more (a replaced or deleted object version, a deleted
// namespace, a failed upload's leftovers) in the background, best effort: a delete that fails
// leaves an orphan that maintenance's garbage collection finds later (fragment keys start with the
// object id, and an object id with no manifest and no pending upload is an orphan). Bounded: at
// most deletesInFlightMax batches at once, at most queueKeysMax keys waiting (more are dropped
// and left to GC, with a warning), at most batchKeysMax keys per ASD batch.
import type { Logger } from "pino";
import type { AsdPool } from "./asd-pool.ts";

export interface FragmentDeleterSettings {
  deletesInFlightMax: number;
  queueKeysMax: number;
  batchKeysMax: number;
}

export const FRAGMENT_DELETER_SETTINGS_DEFAULT: FragmentDeleterSettings = {
  deletesInFlightMax: 4,
  queueKeysMax: 1_000_000,
  batchKeysMax: 256,
};

interface DeleteBatch {
  asdId: string;
  keys: string[];
}

export class FragmentDeleter {
  private readonly queue: DeleteBatch[] = [];
  private queuedKeys = 0;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly pool: AsdPool, private readonly logger: Logger, private readonly settings: FragmentDeleterSettings = FRAGMENT_DELETER_SETTINGS_DEFAULT) {}

  /** Queues the deletion of `keys` on `asdId`. */
  enqueue(asdId: string, keys: readonly string[]): void {
    for (let start = 0; start < keys.length; start += this.settings.batchKeysMax) {
      const batch = keys.slice(start, start + this.settings.batchKeysMax);
      if (this.queuedKeys + batch.length > this.settings.queueKeysMax) {
        this.logger.warn({ asdId, droppedKeys: keys.length - start }, "background delete queue full: leaving fragments to garbage collection");
        break;
      }
      this.queue.push({ asdId, keys: batch });
      this.queuedKeys += batch.length;
    }
    this.pump();
  }

  /** Keys waiting or being deleted. */
  get pendingKeys(): number {
    return this.queuedKeys;
  }

  private pump(): void {
    while (this.inFlight < this.settings.deletesInFlightMax && this.queue.length > 0) {
      const batch = this.queue.shift()!;
      this.inFlight++;
      void this.run(batch).finally(() => {
        this.inFlight--;
        this.queuedKeys -= batch.keys.length;
        this.pump();
        if (this.inFlight === 0 && this.queue.length === 0) {
          for (const resolve of this.idleWaiters.splice(0)) resolve();
        }
      });
    }
  }

  private async run(batch: DeleteBatch): Promise<void> {
    const connection = this.pool.connection(batch.asdId);
    if (connection === undefined || !this.pool.isUp(batch.asdId)) {
      this.logger.info({ asdId: batch.asdId, keys: batch.keys.length }, "ASD down or gone: leaving fragments to garbage collection");
      return;
    }
    try {
      await connection.applyBatch({ asserts: [], updates: batch.keys.map((key) => ({ kind: "delete", key })) });
    } catch (error) {
      this.pool.reportError(batch.asdId, error);
      this.logger.info({ asdId: batch.asdId, keys: batch.keys.length, err: error }, "background fragment delete failed: leaving fragments to garbage collection");
    }
  }

  /** Resolves when nothing is queued or in flight (or after timeoutMs). */
  async idle(timeoutMs: number): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); }),
    ]);
    clearTimeout(timer);
  }
}

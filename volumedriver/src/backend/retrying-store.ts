// Retries Transient failures of the store below with bounded exponential backoff and jitter;
// every other error passes straight through. Every ObjectStore call is safe to repeat (puts
// replace whole objects, deletes are idempotent), with two exceptions:
//
// - A conditional put or putFile (ifAbsent / ifMatch) whose earlier attempt failed Transient may
//   have landed anyway (the reply was lost), and then its retry fails PreconditionFailed against
//   itself. So after such an ambiguous attempt, PreconditionFailed is checked: if the object now
//   holds exactly the bytes being put (head, get, head again with the same etag; putFile reads its
//   file to compare), the put landed and succeeds with that object's info. Otherwise PreconditionFailed passes through. Consequence:
//   a writer that lost the race to identical bytes also "wins"; objects used for mutual exclusion
//   must therefore name their writer in their bytes (an owner id, an epoch).
// - deleteNamespace whose earlier attempt failed Transient may have deleted the namespace, and
//   then its retry fails NotFound. That passes through: this wrapper cannot tell it from a
//   namespace that never existed, and a caller that wants the namespace gone can ignore NotFound.
import { setTimeout as sleepMs } from "node:timers/promises";
import { isStoreError, StoreError } from "./object-store.ts";
import type { ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutOptions, PutFileOptions } from "./object-store.ts";
import { readSourceFile } from "./source-file.ts";

export interface RetryingObjectStoreOptions {
  /** Attempts per call, the first included. Default 5. */
  attemptsMax?: number;
  /** Backoff before the second attempt; it doubles per attempt. Default 50 ms. */
  backoffInitialMs?: number;
  /** Bound on any one backoff. Default 2000 ms. */
  backoffMaxMs?: number;
  /** Waits `durationMs`; tests inject one that records and returns at once. */
  sleep?: (durationMs: number) => Promise<void>;
  /** Uniform in [0, 1): the jitter source. Default Math.random. */
  random?: () => number;
}

export class RetryingObjectStore implements ObjectStore {
  readonly description: string;
  readonly attemptsMax: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  private readonly sleep: (durationMs: number) => Promise<void>;
  private readonly random: () => number;
  private readonly closeController = new AbortController();
  private readonly closedSignal: Promise<void>;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly inner: ObjectStore,
    options: RetryingObjectStoreOptions = {},
  ) {
    this.attemptsMax = options.attemptsMax ?? 5;
    this.backoffInitialMs = options.backoffInitialMs ?? 50;
    this.backoffMaxMs = options.backoffMaxMs ?? 2000;
    if (!Number.isSafeInteger(this.attemptsMax) || this.attemptsMax < 1) throw new RangeError(`attemptsMax ${this.attemptsMax}: use an integer >= 1`);
    if (!(this.backoffInitialMs >= 0 && this.backoffMaxMs >= this.backoffInitialMs)) {
      throw new RangeError(`backoffInitialMs ${this.backoffInitialMs}, backoffMaxMs ${this.backoffMaxMs}: use 0 <= initial <= max`);
    }
    this.sleep = options.sleep ?? ((durationMs) => sleepMs(durationMs, undefined, { signal: this.closeController.signal }).catch(() => undefined));
    this.random = options.random ?? Math.random;
    this.description = `retrying(${inner.description})`;
    this.closedSignal = new Promise((resolve) => this.closeController.signal.addEventListener("abort", () => resolve(), { once: true }));
  }

  /**
   * The wait after `failedAttempts` failed attempts: the exponential base, capped at
   * backoffMaxMs, with "equal jitter" (half fixed, half random) so that it is never zero yet
   * concurrent retries spread out.
   */
  backoffMs(failedAttempts: number): number {
    const baseMs = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** (failedAttempts - 1));
    return baseMs / 2 + (this.random() * baseMs) / 2;
  }

  async createNamespace(namespace: NamespaceName): Promise<void> {
    return this.retry(() => this.inner.createNamespace(namespace));
  }

  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    return this.retry(() => this.inner.deleteNamespace(namespace));
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    return this.retry(() => this.inner.listNamespaces());
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    return this.retry(() => this.inner.namespaceExists(namespace));
  }

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    return this.retryPut(namespace, key, options, () => this.inner.put(namespace, key, data, options), async () => data);
  }

  /** Retried like put; the check after an ambiguous conditional attempt reads the file to compare. */
  async putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo> {
    return this.retryPut(namespace, key, options, () => this.inner.putFile(namespace, key, filePath, options), () => readSourceFile(filePath));
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    return this.retry(() => this.inner.get(namespace, key, range));
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    return this.retry(() => this.inner.head(namespace, key));
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    return this.retry(() => this.inner.delete(namespace, key));
  }

  async list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage> {
    return this.retry(() => this.inner.list(namespace, options));
  }

  /** Stops pending retries (they fail Closed) and closes the store below. Idempotent. */
  async close(): Promise<void> {
    this.closing ??= (async () => {
      this.closeController.abort();
      await this.inner.close();
    })();
    return this.closing;
  }

  /**
   * Retries one put (`attempt`). A conditional put that fails PreconditionFailed after an
   * ambiguous attempt succeeds if the object now holds exactly the bytes `expectedData` yields.
   */
  private async retryPut(
    namespace: NamespaceName,
    key: string,
    options: PutOptions | undefined,
    attempt: () => Promise<ObjectInfo>,
    expectedData: () => Promise<Uint8Array>,
  ): Promise<ObjectInfo> {
    const conditional = options?.ifAbsent === true || options?.ifMatch !== undefined;
    return this.retry(async (ambiguous) => {
      try {
        return await attempt();
      } catch (error) {
        if (ambiguous && conditional && isStoreError(error, "PreconditionFailed")) {
          const landed = await this.findLandedPut(namespace, key, await expectedData());
          if (landed !== undefined) return landed;
        }
        throw error;
      }
    });
  }

  /** Runs `attempt` until it succeeds, fails with anything but Transient, or attemptsMax is reached (then: the last error). */
  private async retry<T>(attempt: (ambiguous: boolean) => Promise<T>): Promise<T> {
    for (let attemptNumber = 1; ; attemptNumber++) {
      if (this.closing !== undefined) throw new StoreError("Closed", `${this.description} is closed`);
      try {
        // ambiguous: an earlier attempt failed Transient, so it may or may not have taken effect.
        return await attempt(attemptNumber > 1);
      } catch (error) {
        if (!isStoreError(error, "Transient") || attemptNumber >= this.attemptsMax) throw error;
      }
      await Promise.race([this.sleep(this.backoffMs(attemptNumber)), this.closedSignal]);
    }
  }

  /** The info of the object if it holds exactly `data` (so an earlier, ambiguous attempt of this put landed), else undefined. */
  private async findLandedPut(namespace: NamespaceName, key: string, data: Uint8Array): Promise<ObjectInfo | undefined> {
    const before = await this.inner.head(namespace, key);
    if (before === undefined || before.sizeBytes !== data.length) return undefined;
    const stored = await this.inner.get(namespace, key);
    const after = await this.inner.head(namespace, key);
    // Equal etags around the get: the bytes compared are those of `after`, not of a later put.
    if (after === undefined || after.etag !== before.etag || !stored.equals(data)) return undefined;
    return after;
  }
}

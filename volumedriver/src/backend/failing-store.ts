// Seeded fault injection over any store, for tests and the simulator (STYLE.md: every failure
// prints its seed). Each call that faults may hit draws one number from a mulberry32 stream
// seeded with `seed`, so the same seed and the same sequence of calls give the same faults.
// Fault kinds, all Transient StoreErrors unless failNext says otherwise:
// - error: the request fails before it reaches the store below (it never happened);
// - reply loss: the request reaches the store below, then its reply is replaced by an error
//   (it happened, the caller cannot tell) — what makes retried conditional puts ambiguous;
// - timeout: waits timeoutMs, then fails; the request never reaches the store below.
// An outage (startOutage) fails every call, of any operation, until it ends. close never faults.
// putFile is faulted as a put: it stores an object as put does.
import { setTimeout as sleepMs } from "node:timers/promises";
import { StoreError } from "./object-store.ts";
import type { ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutOptions, StoreErrorKind, PutFileOptions } from "./object-store.ts";
import type { ObjectStoreOperation } from "./instrumented-store.ts";

export interface FailingObjectStoreOptions {
  /** Seeds the fault stream; printed in every injected error. */
  seed: number;
  /** Chance that a call fails before reaching the store below. Default 0. */
  errorProbability?: number;
  /** Chance that a call reaches the store below and then fails anyway. Default 0. */
  replyLossProbability?: number;
  /** Chance that a call waits timeoutMs and fails without reaching the store below. Default 0. */
  timeoutProbability?: number;
  /** How long an injected timeout waits. Default 1000 ms. */
  timeoutMs?: number;
  /** The operations random faults and failNext apply to. Default: all. Outages apply to all regardless. */
  operations?: readonly ObjectStoreOperation[];
  sleep?: (durationMs: number) => Promise<void>;
  /** Milliseconds from any fixed origin, for outage ends. Default performance.now. */
  nowMs?: () => number;
}

export type InjectedFaultPoint = "before" | "after";

interface PlannedFault {
  kind: StoreErrorKind;
  point: InjectedFaultPoint;
}

/** A small, fast, seedable PRNG (mulberry32): uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

export class FailingObjectStore implements ObjectStore {
  readonly description: string;
  readonly seed: number;
  /** Faults injected so far (outages included). */
  faultsInjected = 0;
  private readonly errorProbability: number;
  private readonly replyLossProbability: number;
  private readonly timeoutProbability: number;
  private readonly timeoutMs: number;
  private readonly operations: ReadonlySet<ObjectStoreOperation> | undefined;
  private readonly sleep: (durationMs: number) => Promise<void>;
  private readonly nowMs: () => number;
  private readonly random: () => number;
  private readonly plannedFaults: PlannedFault[] = [];
  private callCount = 0;
  private outageEndMs: number | undefined;
  private closed = false;

  constructor(
    private readonly inner: ObjectStore,
    options: FailingObjectStoreOptions,
  ) {
    this.seed = options.seed;
    this.errorProbability = options.errorProbability ?? 0;
    this.replyLossProbability = options.replyLossProbability ?? 0;
    this.timeoutProbability = options.timeoutProbability ?? 0;
    const probabilities = [this.errorProbability, this.replyLossProbability, this.timeoutProbability];
    if (probabilities.some((probability) => !(probability >= 0)) || probabilities.reduce((sum, probability) => sum + probability) > 1) {
      throw new RangeError(`fault probabilities ${probabilities.join(", ")}: each must be >= 0 and their sum <= 1`);
    }
    this.timeoutMs = options.timeoutMs ?? 1000;
    this.operations = options.operations === undefined ? undefined : new Set(options.operations);
    this.sleep = options.sleep ?? ((durationMs) => sleepMs(durationMs));
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.random = mulberry32(options.seed);
    this.description = `failing(${inner.description}, seed ${options.seed})`;
  }

  /** Every call fails Transient for `durationMs` (default: until endOutage). */
  startOutage(durationMs = Number.POSITIVE_INFINITY): void {
    this.outageEndMs = this.nowMs() + durationMs;
  }

  endOutage(): void {
    this.outageEndMs = undefined;
  }

  /**
   * The next `count` calls of the faultable operations fail with `kind`: "before" the store below
   * sees them, or "after" it has carried them out (a lost reply). Planned faults come before
   * random ones and draw no random number.
   */
  failNext(count: number, kind: StoreErrorKind = "Transient", point: InjectedFaultPoint = "before"): void {
    for (let index = 0; index < count; index++) this.plannedFaults.push({ kind, point });
  }

  async createNamespace(namespace: NamespaceName): Promise<void> {
    return this.call("createNamespace", namespace, () => this.inner.createNamespace(namespace));
  }

  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    return this.call("deleteNamespace", namespace, () => this.inner.deleteNamespace(namespace));
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    return this.call("listNamespaces", "", () => this.inner.listNamespaces());
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    return this.call("namespaceExists", namespace, () => this.inner.namespaceExists(namespace));
  }

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    return this.call("put", `${namespace}/${key}`, () => this.inner.put(namespace, key, data, options));
  }

  /** Faulted as a put (the operation "put" in `operations` covers it). */
  async putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo> {
    return this.call("put", `${namespace}/${key}`, () => this.inner.putFile(namespace, key, filePath, options));
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    return this.call("get", `${namespace}/${key}`, () => this.inner.get(namespace, key, range));
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    return this.call("head", `${namespace}/${key}`, () => this.inner.head(namespace, key));
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    return this.call("delete", `${namespace}/${key}`, () => this.inner.delete(namespace, key));
  }

  async list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage> {
    return this.call("list", namespace, () => this.inner.list(namespace, options));
  }

  async close(): Promise<void> {
    this.closed = true;
    return this.inner.close();
  }

  private async call<T>(operation: ObjectStoreOperation, target: string, forward: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError("Closed", `${this.description} is closed`);
    this.callCount += 1;
    const where = `(seed ${this.seed}, call ${this.callCount}): ${operation} ${target}`;
    if (this.outageEndMs !== undefined && this.nowMs() < this.outageEndMs) {
      this.faultsInjected += 1;
      throw new StoreError("Transient", `injected outage ${where}`);
    }
    if (this.operations !== undefined && !this.operations.has(operation)) return forward();
    const planned = this.plannedFaults.shift();
    if (planned !== undefined) {
      this.faultsInjected += 1;
      if (planned.point === "after") await forward().catch(() => undefined);
      throw new StoreError(planned.kind, `injected ${planned.kind} ${planned.point === "after" ? "after the call " : ""}${where}`);
    }
    const draw = this.random();
    if (draw < this.errorProbability) {
      this.faultsInjected += 1;
      throw new StoreError("Transient", `injected fault ${where}`);
    }
    if (draw < this.errorProbability + this.replyLossProbability) {
      this.faultsInjected += 1;
      await forward().catch(() => undefined);
      throw new StoreError("Transient", `injected reply loss ${where}`);
    }
    if (draw < this.errorProbability + this.replyLossProbability + this.timeoutProbability) {
      this.faultsInjected += 1;
      await this.sleep(this.timeoutMs);
      throw new StoreError("Transient", `injected timeout after ${this.timeoutMs} ms ${where}`);
    }
    return forward();
  }
}

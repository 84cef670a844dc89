// The cost meter: counts what goes through to the store below, per operation and per namespace
// (requests, errors by kind, bytes in and out, latency sum, max and histogram). putFile counts as
// put, its file's size as the bytes in. snapshot() is plain JSON for the API and, later, the
// Prometheus exporter. Counting is a few additions per request; the tables are bounded by the
// operation names and the valid namespace names seen.
import { isStoreError, NAMESPACE_NAME_PATTERN } from "./object-store.ts";
import { sourceFileSizeBytes } from "./source-file.ts";
import type {
  ListOptions,
  ListPage,
  NamespaceName,
  ObjectInfo,
  ObjectRange,
  ObjectStore,
  PutOptions,
  StoreErrorKind,
  PutFileOptions,
} from "./object-store.ts";

/**
 * The ObjectStore calls that reach a backend (close does not), as they are counted and faulted.
 * putFile counts as put: it stores an object as put does, and callers compare it with puts.
 */
export type ObjectStoreOperation = Exclude<keyof ObjectStore, "description" | "close" | "putFile">;

/** Upper bounds (inclusive) of the latency histogram buckets; one more bucket counts the slower requests. */
export const LATENCY_BUCKET_UPPER_BOUNDS_MS: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

export interface OperationStats {
  requests: number;
  /** Failed requests by kind; an error that is no StoreError counts as Internal. */
  errors: Partial<Record<StoreErrorKind, number>>;
  /** Payload bytes sent into the store (put data), counted when the request is made. */
  bytesIn: number;
  /** Payload bytes that came out of the store (get results), counted on success. */
  bytesOut: number;
  latencyMsSum: number;
  latencyMsMax: number;
  /** Requests per latency bucket: index i counts latencies in (bound[i-1], bound[i]]; the last index counts the rest. */
  latencyHistogram: number[];
}

export type OperationStatsTable = Partial<Record<ObjectStoreOperation, OperationStats>>;

export interface ObjectStoreStatsSnapshot {
  latencyBucketUpperBoundsMs: number[];
  /** All requests, per operation. */
  operations: OperationStatsTable;
  /** Requests that named a (well-formed) namespace, per namespace and operation. */
  namespaces: Record<NamespaceName, OperationStatsTable>;
}

export interface InstrumentedObjectStoreOptions {
  /** Milliseconds from any fixed origin. Default performance.now. */
  nowMs?: () => number;
}

export class InstrumentedObjectStore implements ObjectStore {
  readonly description: string;
  private readonly nowMs: () => number;
  private operations: OperationStatsTable = {};
  private namespaces = new Map<NamespaceName, OperationStatsTable>();

  constructor(
    private readonly inner: ObjectStore,
    options: InstrumentedObjectStoreOptions = {},
  ) {
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.description = `instrumented(${inner.description})`;
  }

  /** A deep copy of the counters, as plain JSON. */
  snapshot(): ObjectStoreStatsSnapshot {
    return structuredClone({
      latencyBucketUpperBoundsMs: [...LATENCY_BUCKET_UPPER_BOUNDS_MS],
      operations: this.operations,
      namespaces: Object.fromEntries(this.namespaces),
    });
  }

  /** Sets every counter back to zero (forgets namespaces too). */
  reset(): void {
    this.operations = {};
    this.namespaces = new Map();
  }

  async createNamespace(namespace: NamespaceName): Promise<void> {
    return this.measure("createNamespace", namespace, 0, () => this.inner.createNamespace(namespace));
  }

  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    return this.measure("deleteNamespace", namespace, 0, () => this.inner.deleteNamespace(namespace));
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    return this.measure("listNamespaces", undefined, 0, () => this.inner.listNamespaces());
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    return this.measure("namespaceExists", namespace, 0, () => this.inner.namespaceExists(namespace));
  }

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    return this.measure("put", namespace, data.length, () => this.inner.put(namespace, key, data, options));
  }

  /** Counted as a put of the file's size (stat before the call; 0 if the file cannot be read). */
  async putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo> {
    const sizeBytes = await sourceFileSizeBytes(filePath);
    return this.measure("put", namespace, sizeBytes, () => this.inner.putFile(namespace, key, filePath, options));
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    return this.measure("get", namespace, 0, () => this.inner.get(namespace, key, range), (data) => data.length);
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    return this.measure("head", namespace, 0, () => this.inner.head(namespace, key));
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    return this.measure("delete", namespace, 0, () => this.inner.delete(namespace, key));
  }

  async list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage> {
    return this.measure("list", namespace, 0, () => this.inner.list(namespace, options));
  }

  async close(): Promise<void> {
    return this.inner.close();
  }

  private async measure<T>(
    operation: ObjectStoreOperation,
    namespace: NamespaceName | undefined,
    bytesIn: number,
    call: () => Promise<T>,
    bytesOutOf?: (result: T) => number,
  ): Promise<T> {
    const tables = [this.operations];
    // Malformed names fail Invalid below; keeping them out of the table keeps it bounded.
    if (namespace !== undefined && NAMESPACE_NAME_PATTERN.test(namespace)) tables.push(this.namespaceTable(namespace));
    const stats = tables.map((table) => (table[operation] ??= emptyOperationStats()));
    const startMs = this.nowMs();
    for (const entry of stats) {
      entry.requests += 1;
      entry.bytesIn += bytesIn;
    }
    try {
      const result = await call();
      const bytesOut = bytesOutOf?.(result) ?? 0;
      for (const entry of stats) entry.bytesOut += bytesOut;
      return result;
    } catch (error) {
      const kind: StoreErrorKind = isStoreError(error) ? error.kind : "Internal";
      for (const entry of stats) entry.errors[kind] = (entry.errors[kind] ?? 0) + 1;
      throw error;
    } finally {
      const latencyMs = Math.max(0, this.nowMs() - startMs);
      const bucket = latencyBucketIndex(latencyMs);
      for (const entry of stats) {
        entry.latencyMsSum += latencyMs;
        entry.latencyMsMax = Math.max(entry.latencyMsMax, latencyMs);
        entry.latencyHistogram[bucket] += 1;
      }
    }
  }

  private namespaceTable(namespace: NamespaceName): OperationStatsTable {
    let table = this.namespaces.get(namespace);
    if (table === undefined) {
      table = {};
      this.namespaces.set(namespace, table);
    }
    return table;
  }
}

function emptyOperationStats(): OperationStats {
  return {
    requests: 0,
    errors: {},
    bytesIn: 0,
    bytesOut: 0,
    latencyMsSum: 0,
    latencyMsMax: 0,
    latencyHistogram: new Array<number>(LATENCY_BUCKET_UPPER_BOUNDS_MS.length + 1).fill(0),
  };
}

function latencyBucketIndex(latencyMs: number): number {
  const index = LATENCY_BUCKET_UPPER_BOUNDS_MS.findIndex((boundMs) => latencyMs <= boundMs);
  return index === -1 ? LATENCY_BUCKET_UPPER_BOUNDS_MS.length : index;
}

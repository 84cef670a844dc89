// Opens the object store a BackendSpec names, with the wrappers every StorageDriver stacks on it.
import type { ObjectStore } from "../backend/object-store.ts";
import { InstrumentedObjectStore, LocalObjectStore, RetryingObjectStore } from "../backend/index.ts";
import type { BackendSpec } from "./backend-spec.ts";

export interface OpenedBackend {
  /** What the engine uses: instrumented(retrying(store)). */
  store: ObjectStore;
  /** The meter on top, for statistics. */
  instrumented: InstrumentedObjectStore;
}

/**
 * Opens the store of a spec and stacks the wrappers every StorageDriver uses: retrying below (so
 * transient failures are retried with backoff) and instrumented on top (so the meter counts the
 * requests the engine makes, as a cost meter should).
 */
export function openBackend(spec: BackendSpec): OpenedBackend {
  let base: ObjectStore;
  switch (spec.type) {
    case "local":
      base = new LocalObjectStore(spec.path);
      break;
  }
  const instrumented = new InstrumentedObjectStore(new RetryingObjectStore(base));
  return { store: instrumented, instrumented };
}


export interface BackendOperationSummary {
  requests: number;
  errors: number;
  bytesIn: number;
  bytesOut: number;
  latencyMsMax: number;
}

/** Per-operation counters of one namespace, without the histograms: what a vDisk's details show. */
export function summarizeNamespaceStats(instrumented: InstrumentedObjectStore, namespace: string): Record<string, BackendOperationSummary> {
  const table = instrumented.snapshot().namespaces[namespace] ?? {};
  const summary: Record<string, BackendOperationSummary> = {};
  for (const [operation, stats] of Object.entries(table)) {
    if (stats === undefined) continue;
    summary[operation] = {
      requests: stats.requests,
      errors: Object.values(stats.errors).reduce((sum, count) => sum + (count ?? 0), 0),
      bytesIn: stats.bytesIn,
      bytesOut: stats.bytesOut,
      latencyMsMax: stats.latencyMsMax,
    };
  }
  return summary;
}

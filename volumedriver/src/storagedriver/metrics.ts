// The StorageDriver's Prometheus metrics (prom-client), served at GET /metrics of its management
// API. Everything is read from the engine and the backend's cost meter when Prometheus scrapes, so
// the I/O path does no extra work for them:
// - per vDisk: read/write/flush operations and bytes, read-cache hits and misses, backend reads,
//   throttled and stalled writes (counters); write buffer bytes, bytes not yet on the backend,
//   writes stalled now (gauges); service-time histograms of reads, writes and flushes (io-latency.ts);
// - the backend (the cost meter, instrumented-store.ts): requests, errors by kind, bytes in and out
//   and a latency histogram per operation;
// - the process: prom-client's default metrics (CPU, memory, event loop lag, handles).
// Every series carries the vPool name; vDisk names and operation names bound the label sets.
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { Metric } from "prom-client";
import type { InstrumentedObjectStore, OperationStats } from "../backend/instrumented-store.ts";
import { IO_LATENCY_BUCKET_UPPER_BOUNDS_SECONDS, type IoKind } from "../engine/io-latency.ts";
import type { VolumeStats, VPool } from "../engine/vpool-types.ts";

export interface StorageDriverMetricsOptions {
  vpool: VPool;
  /** The backend's cost meter; without it no backend series are exported. */
  instrumented?: InstrumentedObjectStore;
  /** Collect prom-client's process metrics (default true; tests building many registries turn it off). */
  processMetrics?: boolean;
}

type VolumeCounterField = "readOps" | "readBytes" | "writeOps" | "writeBytes" | "flushOps" | "readCacheHits" | "readCacheMisses"
  | "backendReads" | "throttledWrites" | "stalledWrites";
type VolumeGaugeField = "writeBufferBytes" | "notUploadedBytes" | "stalledWritesNow";

const VOLUME_COUNTERS: ReadonlyArray<{ name: string; help: string; field: VolumeCounterField }> = [
  { name: "ovs_vdisk_read_ops_total", help: "Reads served by the vDisk", field: "readOps" },
  { name: "ovs_vdisk_read_bytes_total", help: "Bytes read from the vDisk", field: "readBytes" },
  { name: "ovs_vdisk_write_ops_total", help: "Writes to the vDisk", field: "writeOps" },
  { name: "ovs_vdisk_write_bytes_total", help: "Bytes written to the vDisk", field: "writeBytes" },
  { name: "ovs_vdisk_flush_ops_total", help: "Flushes of the vDisk", field: "flushOps" },
  { name: "ovs_vdisk_read_cache_hits_total", help: "Clusters read from the read cache", field: "readCacheHits" },
  { name: "ovs_vdisk_read_cache_misses_total", help: "Clusters not in the read cache (read from the backend)", field: "readCacheMisses" },
  { name: "ovs_vdisk_backend_reads_total", help: "Ranged SCO reads from the backend", field: "backendReads" },
  { name: "ovs_vdisk_throttled_writes_total", help: "Writes slowed down because the write buffer is filling", field: "throttledWrites" },
  { name: "ovs_vdisk_stalled_writes_total", help: "Writes that waited for room in the write buffer", field: "stalledWrites" },
];

const VOLUME_GAUGES: ReadonlyArray<{ name: string; help: string; field: VolumeGaugeField }> = [
  { name: "ovs_vdisk_write_buffer_bytes", help: "Bytes of SCOs held in the local write buffer", field: "writeBufferBytes" },
  { name: "ovs_vdisk_not_uploaded_bytes", help: "Bytes in the write buffer not yet safe on the backend", field: "notUploadedBytes" },
  { name: "ovs_vdisk_stalled_writes", help: "Writes waiting for room in the write buffer now", field: "stalledWritesNow" },
];

/** A sample as prom-client's registry formats it. */
interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/**
 * A histogram whose buckets something else already counts (the engine, the cost meter): prom-client's
 * Histogram only counts what is observe()d through it, so this object hands the registry the
 * samples in the shape its own histograms do (name_bucket with le, name_sum, name_count).
 */
class SnapshotHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";

  constructor(readonly name: string, readonly help: string, private readonly samples: () => Sample[]) {}

  get(): { name: string; help: string; type: string; aggregator: string; values: Sample[] } {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples() };
  }
}

/** Cumulative bucket samples for counts per bucket (counts.length = bounds.length + 1, the last is +Inf). */
function histogramSamples(name: string, labels: Record<string, string>, bounds: readonly number[], counts: readonly number[],
  sum: number, count: number): Sample[] {
  const samples: Sample[] = [];
  let cumulative = 0;
  bounds.forEach((bound, index) => {
    cumulative += counts[index] ?? 0;
    samples.push({ metricName: `${name}_bucket`, labels: { ...labels, le: bound }, value: cumulative });
  });
  samples.push({ metricName: `${name}_bucket`, labels: { ...labels, le: "+Inf" }, value: count });
  samples.push({ metricName: `${name}_sum`, labels, value: sum });
  samples.push({ metricName: `${name}_count`, labels, value: count });
  return samples;
}

/** The registry of one StorageDriver; serve `await registry.metrics()` with `registry.contentType`. */
export function createStorageDriverMetrics(options: StorageDriverMetricsOptions): Registry {
  const { vpool, instrumented } = options;
  const registry = new Registry();
  registry.setDefaultLabels({ vpool: vpool.name });
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: "ovs_storagedriver_" });

  /** Every running vDisk with its stats, read once per scrape. */
  let scrape: { atMs: number; volumes: Array<{ vdisk: string; stats: VolumeStats }> } | undefined;
  const volumes = (): Array<{ vdisk: string; stats: VolumeStats }> => {
    const nowMs = Date.now();
    // The collectors of one scrape run back to back: share one pass over the vDisks.
    if (scrape === undefined || nowMs - scrape.atMs > 100) {
      const list: Array<{ vdisk: string; stats: VolumeStats }> = [];
      for (const info of vpool.listVolumes()) {
        const volume = vpool.getVolume(info.name);
        if (volume !== undefined) list.push({ vdisk: info.name, stats: volume.stats() });
      }
      scrape = { atMs: nowMs, volumes: list };
    }
    return scrape.volumes;
  };

  for (const definition of VOLUME_COUNTERS) {
    new Counter({
      name: definition.name, help: definition.help, labelNames: ["vdisk"], registers: [registry],
      collect() {
        // The engine keeps the running totals: set them (a vDisk reopened starts again from zero,
        // which Prometheus's rate() reads as a counter reset).
        this.reset();
        for (const { vdisk, stats } of volumes()) this.inc({ vdisk }, stats[definition.field]);
      },
    });
  }
  for (const definition of VOLUME_GAUGES) {
    new Gauge({
      name: definition.name, help: definition.help, labelNames: ["vdisk"], registers: [registry],
      collect() {
        this.reset();
        for (const { vdisk, stats } of volumes()) this.set({ vdisk }, stats[definition.field]);
      },
    });
  }
  new Gauge({
    name: "ovs_vdisks", help: "vDisks of the vPool, by state", labelNames: ["state"], registers: [registry],
    collect() {
      this.reset();
      const byState = new Map<string, number>();
      for (const info of vpool.listVolumes()) byState.set(info.state, (byState.get(info.state) ?? 0) + 1);
      for (const [state, count] of byState) this.set({ state }, count);
    },
  });
  registry.registerMetric(new SnapshotHistogram("ovs_vdisk_io_duration_seconds",
    "Service time of reads, writes and flushes in the engine (from the call until it resolves)", () =>
      volumes().flatMap(({ vdisk, stats }) => (["read", "write", "flush"] as IoKind[]).flatMap((operation) => {
        const histogram = stats.latency[operation];
        return histogramSamples("ovs_vdisk_io_duration_seconds", { vdisk, operation }, IO_LATENCY_BUCKET_UPPER_BOUNDS_SECONDS,
          histogram.counts, histogram.sumSeconds, histogram.count);
      }))) as unknown as Metric);

  if (instrumented !== undefined) registerBackendMetrics(registry, instrumented);
  return registry;
}

/** The cost meter: what went to the backend, per operation (all namespaces of the vPool together). */
function registerBackendMetrics(registry: Registry, instrumented: InstrumentedObjectStore): void {
  const operations = (): Array<[string, OperationStats]> =>
    Object.entries(instrumented.snapshot().operations).filter((entry): entry is [string, OperationStats] => entry[1] !== undefined);
  new Counter({
    name: "ovs_backend_requests_total", help: "Requests to the backend", labelNames: ["operation"], registers: [registry],
    collect() {
      this.reset();
      for (const [operation, stats] of operations()) this.inc({ operation }, stats.requests);
    },
  });
  new Counter({
    name: "ovs_backend_errors_total", help: "Failed backend requests, by kind", labelNames: ["operation", "kind"], registers: [registry],
    collect() {
      this.reset();
      for (const [operation, stats] of operations()) {
        for (const [kind, count] of Object.entries(stats.errors)) if (count !== undefined) this.inc({ operation, kind }, count);
      }
    },
  });
  new Counter({
    name: "ovs_backend_sent_bytes_total", help: "Payload bytes sent to the backend (put data)", labelNames: ["operation"], registers: [registry],
    collect() {
      this.reset();
      for (const [operation, stats] of operations()) this.inc({ operation }, stats.bytesIn);
    },
  });
  new Counter({
    name: "ovs_backend_received_bytes_total", help: "Payload bytes received from the backend (get data)", labelNames: ["operation"], registers: [registry],
    collect() {
      this.reset();
      for (const [operation, stats] of operations()) this.inc({ operation }, stats.bytesOut);
    },
  });
  registry.registerMetric(new SnapshotHistogram("ovs_backend_request_duration_seconds", "Latency of backend requests", () => {
    const boundsSeconds = instrumented.snapshot().latencyBucketUpperBoundsMs.map((bound) => bound / 1000);
    return operations().flatMap(([operation, stats]) =>
      histogramSamples("ovs_backend_request_duration_seconds", { operation }, boundsSeconds, stats.latencyHistogram, stats.latencyMsSum / 1000, stats.requests));
  }) as unknown as Metric);
}

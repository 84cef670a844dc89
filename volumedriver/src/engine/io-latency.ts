// Service-time histograms of a vDisk's I/O as the engine sees it (from the call to read/write/flush
// until it resolves: write buffer admission, journal, local SCO or backend reads, fsyncs), in
// Prometheus's cumulative-bucket shape so the StorageDriver's /metrics can expose them as they are.
// Observing is two clock reads and a short scan; nothing is allocated per I/O.

/** Upper bounds (inclusive, seconds) of the buckets; +Inf is implied. */
export const IO_LATENCY_BUCKET_UPPER_BOUNDS_SECONDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

export type IoKind = "read" | "write" | "flush";

export interface LatencyHistogramSnapshot {
  /** counts[i]: observations ≤ bounds[i] (not cumulative); the last entry counts the slower ones. */
  counts: number[];
  sumSeconds: number;
  count: number;
}

export class LatencyHistogram {
  private readonly counts = new Array<number>(IO_LATENCY_BUCKET_UPPER_BOUNDS_SECONDS.length + 1).fill(0);
  private sumSeconds = 0;
  private count = 0;

  observe(seconds: number): void {
    let index = 0;
    while (index < IO_LATENCY_BUCKET_UPPER_BOUNDS_SECONDS.length && seconds > IO_LATENCY_BUCKET_UPPER_BOUNDS_SECONDS[index]) index++;
    this.counts[index]++;
    this.sumSeconds += seconds;
    this.count++;
  }

  snapshot(): LatencyHistogramSnapshot {
    return { counts: [...this.counts], sumSeconds: this.sumSeconds, count: this.count };
  }
}

/** One histogram per kind of I/O. */
export class IoLatency {
  readonly read = new LatencyHistogram();
  readonly write = new LatencyHistogram();
  readonly flush = new LatencyHistogram();

  snapshot(): Record<IoKind, LatencyHistogramSnapshot> {
    return { read: this.read.snapshot(), write: this.write.snapshot(), flush: this.flush.snapshot() };
  }
}

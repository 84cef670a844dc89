// Goal: the StorageDriver's Prometheus metrics tell the truth. A vPool on an instrumented memory
// backend takes a known mix of writes, reads and flushes; the exposition (prom-client text format,
// parsed here) shows exactly those operations and bytes per vDisk, service-time histograms whose
// buckets are cumulative and add up to the operation counts, the write buffer gauges, and the
// backend's cost meter (requests, bytes, latency histogram) once SCOs were uploaded.
import assert from "node:assert/strict";
import { InstrumentedObjectStore } from "../../../volumedriver/src/backend/instrumented-store.ts";
import { MemoryObjectStore } from "../../../volumedriver/src/backend/memory-store.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import { MIB, type VPool } from "../../../volumedriver/src/engine/vpool-types.ts";
import { buildManagementApi } from "../../../volumedriver/src/storagedriver/management-api.ts";
import { createStorageDriverMetrics } from "../../../volumedriver/src/storagedriver/metrics.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (one sample per line; HELP/TYPE comments skipped). */
function parseExposition(text: string): ParsedSample[] {
  const samples: ParsedSample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match !== null, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function valueOf(samples: ParsedSample[], name: string, labels: Record<string, string>): number | undefined {
  return samples.find((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))?.value;
}

describe("StorageDriver metrics (Prometheus)", function () {
  this.timeout(60_000);
  const tempDirs = new TempDirs("sd-metrics");
  let vpool: VPool | undefined;
  let instrumented: InstrumentedObjectStore | undefined;

  beforeEach(async () => {
    instrumented = new InstrumentedObjectStore(new MemoryObjectStore());
    vpool = await openVPool({ name: "metered", directory: await tempDirs.make(), backend: instrumented, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 60_000 });
  });

  afterEach(async () => {
    await vpool?.close();
    await instrumented?.close();
    await tempDirs.removeAll();
  });

  it("counts each vDisk's operations and bytes exactly, with consistent latency histograms", async () => {
    const alpha = await vpool!.createVolume("alpha", 64 * MIB);
    const beta = await vpool!.createVolume("beta", 64 * MIB);
    const block = Buffer.alloc(4096, 0x5a);
    for (let index = 0; index < 5; index++) await alpha.write(index * 4096, block);
    await alpha.write(1_000_000, Buffer.alloc(1000, 1)); // unaligned: the read-modify-write path
    await alpha.flush();
    assert.deepEqual(await alpha.read(0, 4096), block);
    await alpha.read(8192, 8192);
    await beta.write(0, Buffer.alloc(MIB, 2));

    const registry = createStorageDriverMetrics({ vpool: vpool!, instrumented, processMetrics: false });
    const text = await registry.metrics();
    const samples = parseExposition(text);
    const alphaLabels = { vpool: "metered", vdisk: "alpha" };
    assert.equal(valueOf(samples, "ovs_vdisk_write_ops_total", alphaLabels), 6);
    assert.equal(valueOf(samples, "ovs_vdisk_write_bytes_total", alphaLabels), 5 * 4096 + 1000);
    assert.equal(valueOf(samples, "ovs_vdisk_read_ops_total", alphaLabels), 2);
    assert.equal(valueOf(samples, "ovs_vdisk_read_bytes_total", alphaLabels), 4096 + 8192);
    assert.equal(valueOf(samples, "ovs_vdisk_flush_ops_total", alphaLabels), 1);
    assert.equal(valueOf(samples, "ovs_vdisk_write_bytes_total", { vdisk: "beta" }), MIB);
    assert.ok((valueOf(samples, "ovs_vdisk_write_buffer_bytes", { vdisk: "beta" }) ?? 0) >= MIB, "beta's megabyte is in the write buffer");
    assert.equal(valueOf(samples, "ovs_vdisks", { state: "running" }), 2);

    // Histograms: cumulative buckets, +Inf equals _count equals the operation counter.
    for (const [operation, expected] of [["write", 6], ["read", 2], ["flush", 1]] as const) {
      const labels = { ...alphaLabels, operation };
      const buckets = samples.filter((sample) => sample.name === "ovs_vdisk_io_duration_seconds_bucket"
        && sample.labels.vdisk === "alpha" && sample.labels.operation === operation);
      assert.ok(buckets.length > 2, `${operation} has buckets`);
      for (let index = 1; index < buckets.length; index++) assert.ok(buckets[index].value >= buckets[index - 1].value, "cumulative");
      assert.equal(buckets.at(-1)?.labels.le, "+Inf");
      assert.equal(buckets.at(-1)?.value, expected);
      assert.equal(valueOf(samples, "ovs_vdisk_io_duration_seconds_count", labels), expected);
      assert.ok((valueOf(samples, "ovs_vdisk_io_duration_seconds_sum", labels) ?? -1) >= 0);
    }
    assert.match(text, /# TYPE ovs_vdisk_io_duration_seconds histogram/);
    assert.match(text, /# TYPE ovs_vdisk_write_ops_total counter/);
  });

  it("meters the backend: uploads show as put requests and bytes, with a latency histogram", async () => {
    const volume = await vpool!.createVolume("gamma", 64 * MIB);
    await volume.write(0, Buffer.alloc(9 * MIB, 3)); // more than two 4 MiB SCOs
    await volume.drain();
    const registry = createStorageDriverMetrics({ vpool: vpool!, instrumented, processMetrics: false });
    const samples = parseExposition(await registry.metrics());
    const puts = valueOf(samples, "ovs_backend_requests_total", { operation: "put" }) ?? 0;
    const snapshot = instrumented!.snapshot().operations.put;
    assert.ok(snapshot !== undefined && puts === snapshot.requests && puts >= 3, `put requests ${puts}`);
    assert.ok((valueOf(samples, "ovs_backend_sent_bytes_total", { operation: "put" }) ?? 0) >= 9 * MIB, "the SCOs' bytes went to the backend");
    assert.equal(valueOf(samples, "ovs_backend_request_duration_seconds_count", { operation: "put" }), puts);
    assert.equal(valueOf(samples, "ovs_backend_request_duration_seconds_bucket", { operation: "put", le: "+Inf" }), puts);
    assert.equal(valueOf(samples, "ovs_vdisk_not_uploaded_bytes", { vdisk: "gamma" }), 0, "drained");
  });

  it("is served at GET /metrics of the management API, with process metrics", async () => {
    await vpool!.createVolume("delta", 16 * MIB);
    const app = buildManagementApi({ vpool: vpool!, backendDescription: "memory", metrics: createStorageDriverMetrics({ vpool: vpool!, instrumented }) });
    try {
      const response = await app.inject({ method: "GET", url: "/metrics" });
      assert.equal(response.statusCode, 200);
      assert.match(String(response.headers["content-type"]), /^text\/plain/);
      const samples = parseExposition(response.body);
      assert.equal(valueOf(samples, "ovs_vdisk_write_ops_total", { vdisk: "delta" }), 0);
      assert.ok(samples.some((sample) => sample.name === "ovs_storagedriver_process_cpu_seconds_total"), "process metrics");
      const missing = await app.inject({ method: "GET", url: "/metricz" });
      assert.equal(missing.statusCode, 404);
      assert.match(missing.body, /GET \/metrics/, "the 404 lists the routes, /metrics among them");
    } finally {
      await app.close();
    }
  });
});

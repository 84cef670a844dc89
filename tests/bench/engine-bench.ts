// Benchmark of the in-process volume engine (issue 2): 4 KiB random writes at QD32, 1 MiB sequential
// writes, 4 KiB random reads cached (write buffer / read cache) and uncached (after a restart from the
// backend on a fresh directory, so reads are ranged gets), with RSS and backend requests per GiB
// written, against a same-run peer: the same patterns on a plain file through fs.promises FileHandle
// (the filesystem's ceiling). The local backend lives on the same filesystem, under os.tmpdir().
//
// Run by hand (not part of npm test):  npx tsx tests/bench/engine-bench.ts
// Options (environment): OVS_BENCH_SECONDS (per phase, default 10), OVS_BENCH_WRITE_GIB (cap per write
// phase, default 2; sequential writes get twice as much), OVS_BENCH_NO_DOCS=1 (do not update docs/BENCHMARKS.md).
// Prints a markdown table and replaces the "Volume engine (in-process)" section of docs/BENCHMARKS.md.
import { open, readFile, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { InstrumentedObjectStore, type ObjectStoreStatsSnapshot } from "../../volumedriver/src/backend/instrumented-store.ts";
import { LocalObjectStore } from "../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { CLUSTER_SIZE_BYTES, GIB, MIB, type Volume, type VPool, type VPoolConfig } from "../../volumedriver/src/engine/vpool-types.ts";
import { SeededRandom } from "../helpers/seeded-random.ts";
import { makeTempDir, removeTempDir } from "../helpers/temp-dir.ts";
import { machineDescription } from "./bench-machine.ts";

const PHASE_SECONDS = Number(process.env.OVS_BENCH_SECONDS ?? 10);
const WRITE_CAP_BYTES = Number(process.env.OVS_BENCH_WRITE_GIB ?? 2) * GIB;
const QUEUE_DEPTH = 32;
const SEQUENTIAL_QUEUE_DEPTH = 4;
const SMALL_IO_BYTES = 4096;
const LARGE_IO_BYTES = MIB;
const DEVICE_SIZE_BYTES = 16 * GIB;
/** Random 4 KiB writes land in the first RANDOM_SPAN_BYTES of the device; sequential writes after it. */
const RANDOM_SPAN_BYTES = 4 * GIB;
const SCO_SIZE_BYTES = 64 * MIB;
/** Cached reads cover the last 256 MiB written: inside the default write buffer (1 GiB) after eviction. */
const CACHED_SPAN_BYTES = 256 * MIB;
const TARGETS = { randomWriteIops: 50_000, sequentialMBps: 500, requestsPerGiB: 20 };
const DOCS_SECTION_TITLE = "## Volume engine (in-process)";
const DOCS_PATH = join(fileURLToPath(new URL("../..", import.meta.url)), "docs", "BENCHMARKS.md");

interface PhaseResult {
  operations: number;
  bytes: number;
  seconds: number;
  latenciesMs: number[];
  rssMaxBytes: number;
}

/** Runs `queueDepth` workers that each call `operation(worker, index)` until the time or byte budget is spent. */
async function runLoad(queueDepth: number, seconds: number, bytesCap: number, ioBytes: number, operation: (worker: number, index: number) => Promise<unknown>): Promise<PhaseResult> {
  const deadline = performance.now() + seconds * 1000;
  let operations = 0;
  let issuedBytes = 0;
  let rssMaxBytes = process.memoryUsage().rss;
  const latenciesMs: number[] = [];
  const sampler = setInterval(() => (rssMaxBytes = Math.max(rssMaxBytes, process.memoryUsage().rss)), 100);
  const startedMs = performance.now();
  const worker = async (workerIndex: number): Promise<void> => {
    while (performance.now() < deadline && issuedBytes < bytesCap) {
      issuedBytes += ioBytes;
      const index = operations++;
      const started = performance.now();
      await operation(workerIndex, index);
      if ((index & 15) === 0) latenciesMs.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: queueDepth }, (_, index) => worker(index)));
  clearInterval(sampler);
  rssMaxBytes = Math.max(rssMaxBytes, process.memoryUsage().rss);
  return { operations, bytes: operations * ioBytes, seconds: (performance.now() - startedMs) / 1000, latenciesMs, rssMaxBytes };
}

function percentileMs(values: number[], fraction: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

function totalRequests(snapshot: ObjectStoreStatsSnapshot): number {
  return Object.values(snapshot.operations).reduce((sum, stats) => sum + (stats?.requests ?? 0), 0);
}

function requestsByOperation(before: ObjectStoreStatsSnapshot, after: ObjectStoreStatsSnapshot): string {
  const parts: string[] = [];
  for (const [operation, stats] of Object.entries(after.operations)) {
    const previous = before.operations[operation as keyof typeof before.operations]?.requests ?? 0;
    const delta = (stats?.requests ?? 0) - previous;
    if (delta > 0) parts.push(`${operation} ${delta}`);
  }
  return parts.join(", ");
}

interface Row {
  test: string;
  engine: string;
  peer: string;
  ratio: string;
  target: string;
  notes: string;
}

const iops = (result: PhaseResult): number => result.operations / result.seconds;
const megabytesPerSecond = (result: PhaseResult): number => result.bytes / result.seconds / 1e6;
const mib = (bytes: number): string => `${(bytes / MIB).toFixed(0)} MiB`;
const latency = (result: PhaseResult): string => `p50 ${percentileMs(result.latenciesMs, 0.5).toFixed(2)} ms, p99 ${percentileMs(result.latenciesMs, 0.99).toFixed(2)} ms`;

function randomClusterOffset(random: SeededRandom, spanBytes: number): number {
  return random.integer(0, spanBytes / CLUSTER_SIZE_BYTES - 1) * CLUSTER_SIZE_BYTES;
}

async function main(): Promise<void> {
  const workDirectory = await makeTempDir("engine-bench");
  const backendDirectory = join(workDirectory, "backend");
  const rows: Row[] = [];
  const notes: string[] = [];
  let vpool: VPool | undefined;
  let rawFile: FileHandle | undefined;
  try {
    const config = (directory: string, backend: InstrumentedObjectStore): VPoolConfig => ({
      name: "bench",
      directory: join(workDirectory, directory),
      backend,
      scoSizeBytes: SCO_SIZE_BYTES,
    });
    const backend = new InstrumentedObjectStore(new LocalObjectStore(backendDirectory));
    vpool = await openVPool(config("host-a", backend));
    const volume: Volume = await vpool.createVolume("benchdisk", DEVICE_SIZE_BYTES);
    const buffers = (bytes: number, depth: number, seed: number): Buffer[] => Array.from({ length: depth }, (_, index) => new SeededRandom(seed + index).bytes(bytes));

    // (a) 4 KiB random writes, QD32.
    const smallBuffers = buffers(SMALL_IO_BYTES, QUEUE_DEPTH, 1);
    const writeRandom = Array.from({ length: QUEUE_DEPTH }, (_, index) => new SeededRandom(100 + index));
    let snapshot = backend.snapshot();
    const randomWrites = await runLoad(QUEUE_DEPTH, PHASE_SECONDS, WRITE_CAP_BYTES, SMALL_IO_BYTES, (worker) =>
      volume.write(randomClusterOffset(writeRandom[worker]!, RANDOM_SPAN_BYTES), smallBuffers[worker]!),
    );
    let drainStartedMs = performance.now();
    await volume.drain();
    const randomDrainSeconds = (performance.now() - drainStartedMs) / 1000;
    let after = backend.snapshot();
    const randomRequestsPerGiB = (totalRequests(after) - totalRequests(snapshot)) / (randomWrites.bytes / GIB);
    notes.push(`4 KiB random writes: ${mib(randomWrites.bytes)} in ${randomWrites.seconds.toFixed(1)} s, drain ${randomDrainSeconds.toFixed(1)} s; backend requests: ${requestsByOperation(snapshot, after)}`);

    // (b) 1 MiB sequential writes (QD4), after the random span.
    const largeBuffers = buffers(LARGE_IO_BYTES, SEQUENTIAL_QUEUE_DEPTH, 2);
    snapshot = backend.snapshot();
    const sequentialSpanBytes = DEVICE_SIZE_BYTES - RANDOM_SPAN_BYTES;
    const sequentialWrites = await runLoad(SEQUENTIAL_QUEUE_DEPTH, PHASE_SECONDS, Math.min(WRITE_CAP_BYTES * 2, sequentialSpanBytes), LARGE_IO_BYTES, (worker, index) =>
      volume.write(RANDOM_SPAN_BYTES + index * LARGE_IO_BYTES, largeBuffers[worker]!),
    );
    drainStartedMs = performance.now();
    await volume.drain();
    const sequentialDrainSeconds = (performance.now() - drainStartedMs) / 1000;
    after = backend.snapshot();
    const sequentialRequestsPerGiB = (totalRequests(after) - totalRequests(snapshot)) / (sequentialWrites.bytes / GIB);
    const sequentialWrittenBytes = sequentialWrites.bytes;
    notes.push(`1 MiB sequential writes: ${mib(sequentialWrittenBytes)} in ${sequentialWrites.seconds.toFixed(1)} s, drain ${sequentialDrainSeconds.toFixed(1)} s; backend requests: ${requestsByOperation(snapshot, after)}`);

    // (c1) 4 KiB random reads of the last CACHED_SPAN_BYTES written sequentially: still in the local
    // write buffer (older SCOs may have been evicted once uploaded), so cached.
    const readRandom = Array.from({ length: QUEUE_DEPTH }, (_, index) => new SeededRandom(200 + index));
    const readSpanBytes = Math.max(CLUSTER_SIZE_BYTES, Math.floor(sequentialWrittenBytes / CLUSTER_SIZE_BYTES) * CLUSTER_SIZE_BYTES);
    const cachedSpanBytes = Math.min(CACHED_SPAN_BYTES, readSpanBytes);
    const cachedSpanStart = RANDOM_SPAN_BYTES + readSpanBytes - cachedSpanBytes;
    const statsBefore = volume.stats();
    const cachedReads = await runLoad(QUEUE_DEPTH, PHASE_SECONDS, Number.MAX_SAFE_INTEGER, SMALL_IO_BYTES, (worker) =>
      volume.read(cachedSpanStart + randomClusterOffset(readRandom[worker]!, cachedSpanBytes), SMALL_IO_BYTES),
    );
    const statsAfter = volume.stats();
    notes.push(`cached reads (last ${mib(cachedSpanBytes)} written): backend reads ${statsAfter.backendReads - statsBefore.backendReads}, read cache hits ${statsAfter.readCacheHits - statsBefore.readCacheHits}, misses ${statsAfter.readCacheMisses - statsBefore.readCacheMisses}`);
    await vpool.close();
    vpool = undefined;

    // (c2) Uncached: restart from the backend on a fresh directory, so reads are ranged gets.
    const freshBackend = new InstrumentedObjectStore(new LocalObjectStore(backendDirectory));
    const restartStartedMs = performance.now();
    vpool = await openVPool(config("host-b", freshBackend));
    const restartSeconds = (performance.now() - restartStartedMs) / 1000;
    const restored = vpool.getVolume("benchdisk");
    if (restored === undefined) throw new Error("benchdisk was not restored from the backend");
    const uncachedRandom = Array.from({ length: QUEUE_DEPTH }, (_, index) => new SeededRandom(300 + index));
    snapshot = freshBackend.snapshot();
    const uncachedReads = await runLoad(QUEUE_DEPTH, PHASE_SECONDS, Number.MAX_SAFE_INTEGER, SMALL_IO_BYTES, (worker) =>
      restored.read(RANDOM_SPAN_BYTES + randomClusterOffset(uncachedRandom[worker]!, readSpanBytes), SMALL_IO_BYTES),
    );
    after = freshBackend.snapshot();
    notes.push(`restart from backend: ${restartSeconds.toFixed(1)} s; uncached reads (all ${mib(readSpanBytes)} written sequentially): backend requests ${requestsByOperation(snapshot, after)}`);
    await vpool.close();
    vpool = undefined;

    // The peer: the same patterns on a plain sparse file with FileHandle (no fsync; the engine acknowledges in memory too).
    rawFile = await open(join(workDirectory, "raw.img"), "w+");
    await rawFile.truncate(DEVICE_SIZE_BYTES);
    const rawHandle = rawFile;
    const rawRandom = Array.from({ length: QUEUE_DEPTH }, (_, index) => new SeededRandom(100 + index));
    const rawRandomWrites = await runLoad(QUEUE_DEPTH, PHASE_SECONDS, WRITE_CAP_BYTES, SMALL_IO_BYTES, (worker) =>
      rawHandle.write(smallBuffers[worker]!, 0, SMALL_IO_BYTES, randomClusterOffset(rawRandom[worker]!, RANDOM_SPAN_BYTES)),
    );
    const rawSequentialWrites = await runLoad(SEQUENTIAL_QUEUE_DEPTH, PHASE_SECONDS, Math.min(WRITE_CAP_BYTES * 2, sequentialSpanBytes), LARGE_IO_BYTES, (worker, index) =>
      rawHandle.write(largeBuffers[worker]!, 0, LARGE_IO_BYTES, RANDOM_SPAN_BYTES + index * LARGE_IO_BYTES),
    );
    const rawReadRandom = Array.from({ length: QUEUE_DEPTH }, (_, index) => new SeededRandom(200 + index));
    const rawReadBuffers = buffers(SMALL_IO_BYTES, QUEUE_DEPTH, 3);
    const rawReadSpanBytes = Math.max(CLUSTER_SIZE_BYTES, Math.floor(rawSequentialWrites.bytes / CLUSTER_SIZE_BYTES) * CLUSTER_SIZE_BYTES);
    const rawReads = await runLoad(QUEUE_DEPTH, PHASE_SECONDS, Number.MAX_SAFE_INTEGER, SMALL_IO_BYTES, (worker) =>
      rawHandle.read(rawReadBuffers[worker]!, 0, SMALL_IO_BYTES, RANDOM_SPAN_BYTES + randomClusterOffset(rawReadRandom[worker]!, rawReadSpanBytes)),
    );
    await rawFile.close();
    rawFile = undefined;

    const ratio = (engine: number, peer: number): string => (peer > 0 ? `${(engine / peer).toFixed(2)}×` : "-");
    const verdict = (value: number, target: number, higherIsBetter = true): string => `${(higherIsBetter ? value >= target : value <= target) ? "met" : "MISSED"}`;
    rows.push(
      {
        test: "4 KiB random write, QD32",
        engine: `${iops(randomWrites).toFixed(0)} IOPS`,
        peer: `${iops(rawRandomWrites).toFixed(0)} IOPS`,
        ratio: ratio(iops(randomWrites), iops(rawRandomWrites)),
        target: `≥ ${TARGETS.randomWriteIops} IOPS: ${verdict(iops(randomWrites), TARGETS.randomWriteIops)}`,
        notes: `${latency(randomWrites)}; RSS max ${mib(randomWrites.rssMaxBytes)}`,
      },
      {
        test: "1 MiB sequential write, QD4",
        engine: `${megabytesPerSecond(sequentialWrites).toFixed(0)} MB/s`,
        peer: `${megabytesPerSecond(rawSequentialWrites).toFixed(0)} MB/s`,
        ratio: ratio(megabytesPerSecond(sequentialWrites), megabytesPerSecond(rawSequentialWrites)),
        target: `≥ ${TARGETS.sequentialMBps} MB/s: ${verdict(megabytesPerSecond(sequentialWrites), TARGETS.sequentialMBps)}`,
        notes: `${latency(sequentialWrites)}; RSS max ${mib(sequentialWrites.rssMaxBytes)}`,
      },
      {
        test: "4 KiB random read, QD32, cached",
        engine: `${iops(cachedReads).toFixed(0)} IOPS`,
        peer: `${iops(rawReads).toFixed(0)} IOPS (page cache)`,
        ratio: ratio(iops(cachedReads), iops(rawReads)),
        target: "-",
        notes: `${latency(cachedReads)}; RSS max ${mib(cachedReads.rssMaxBytes)}`,
      },
      {
        test: "4 KiB random read, QD32, uncached (ranged gets)",
        engine: `${iops(uncachedReads).toFixed(0)} IOPS`,
        peer: `${iops(rawReads).toFixed(0)} IOPS (page cache)`,
        ratio: ratio(iops(uncachedReads), iops(rawReads)),
        target: "-",
        notes: `${latency(uncachedReads)}; RSS max ${mib(uncachedReads.rssMaxBytes)}`,
      },
      {
        test: "backend requests per GiB written (64 MiB SCOs)",
        engine: `${randomRequestsPerGiB.toFixed(1)} (4 KiB random), ${sequentialRequestsPerGiB.toFixed(1)} (1 MiB sequential)`,
        peer: "-",
        ratio: "-",
        target: `≤ ${TARGETS.requestsPerGiB}: ${verdict(Math.max(randomRequestsPerGiB, sequentialRequestsPerGiB), TARGETS.requestsPerGiB, false)}`,
        notes: "all requests (put, get, head, list) after drain",
      },
    );
    const table = [
      "| test | engine | raw fs peer (FileHandle) | engine/peer | target | notes |",
      "|---|---|---|---|---|---|",
      ...rows.map((row) => `| ${row.test} | ${row.engine} | ${row.peer} | ${row.ratio} | ${row.target} | ${row.notes} |`),
    ].join("\n");
    console.log(table);
    console.log(notes.map((note) => `- ${note}`).join("\n"));
    if (process.env.OVS_BENCH_NO_DOCS !== "1") await updateDocs(table, notes);
  } finally {
    if (vpool !== undefined) await vpool.close().catch(() => undefined);
    if (rawFile !== undefined) await rawFile.close().catch(() => undefined);
    await removeTempDir(workDirectory);
  }
}

/** Replaces (or appends) this benchmark's section of docs/BENCHMARKS.md. */
async function updateDocs(table: string, notes: string[]): Promise<void> {
  let document: string;
  try {
    document = await readFile(DOCS_PATH, "utf8");
  } catch {
    document = "# Benchmarks\n\nEvery figure with the command that produced it. The machines are noisy: compare within one run and quote ratios.\n";
  }
  const section = [
    DOCS_SECTION_TITLE,
    "",
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC on ${machineDescription()}.`,
    "",
    "Command: `npx tsx tests/bench/engine-bench.ts` " + `(OVS_BENCH_SECONDS=${PHASE_SECONDS}, OVS_BENCH_WRITE_GIB=${WRITE_CAP_BYTES / GIB}).`,
    "In-process engine, default vPool settings with 64 MiB SCOs, the `local` backend wrapped in `InstrumentedObjectStore`,",
    "both under os.tmpdir() on the same filesystem. Each phase runs for the time limit or until its byte cap. The peer",
    "runs the same patterns on a sparse file through `fs.promises` FileHandle in the same run (no fsync: the engine",
    "acknowledges writes from memory too). Uncached reads come after a restart from the backend on a fresh directory.",
    "Where the raw peer itself stays under a target, the disk (page-cache writeback) is the limit, not the engine:",
    "read the engine/peer ratio. Requests per GiB count every backend call made while writing and draining.",
    "",
    table,
    "",
    ...notes.map((note) => `- ${note}`),
    "",
  ].join("\n");
  const start = document.indexOf(DOCS_SECTION_TITLE);
  if (start >= 0) {
    const next = document.indexOf("\n## ", start + DOCS_SECTION_TITLE.length);
    document = document.slice(0, start) + section + (next >= 0 ? document.slice(next + 1) : "");
  } else {
    document = `${document.trimEnd()}\n\n${section}`;
  }
  await writeFile(DOCS_PATH, document);
  console.log(`updated ${DOCS_PATH}`);
}

await main();

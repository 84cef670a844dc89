// Benchmark of the iSCSI frontend against tgt, in one run, on one machine, with the data of both on
// the same filesystem (os.tmpdir()): (a) our StorageDriver process (local backend) serving a vDisk as
// LUN 0 of iqn.2026-11.org.openvstorage:bench, (b) tgtd with a file LUN (backing store rdwr, page
// cache) on a sparse file of the same size. Phases, each against both targets back to back so machine
// noise hits them alike: `qemu-img bench` 1 MiB writes QD8, one pass over the fresh device (new data)
// and a second one (rewrites: tgt's file pages are then in the page cache, while our log-structured
// write buffer writes new SCO pages), 4 KiB writes QD32, then `iscsi-perf` 4 KiB random reads and
// 1 MiB sequential reads, 32 in flight. Three rounds with the order of the targets rotated; the table
// shows the median of each.
// tgtd is started here (`tgtd -f --iscsi portal=127.0.0.1:PORT -C CONTROL_PORT`, configured with
// tgtadm) and stopped by PID.
// Run by hand (not part of npm test):
//   npx tsx tests/bench/iscsi/iscsi-bench.ts
// Environment: OVS_BENCH_SECONDS (per iscsi-perf phase, default 10), OVS_BENCH_SIZE_GIB (per target,
// default 1), OVS_BENCH_ROUNDS (default 3), OVS_BENCH_NO_DOCS=1 (do not touch the docs).
import { execFileSync } from "node:child_process";
import path from "node:path";
import { startTgt } from "../../helpers/iscsi-peers.ts";
import { NbdStorageDriver, onPath, runToolOk } from "../../helpers/nbd-tools.ts";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dir.ts";
import { writeBenchmarkSection } from "../bench-docs.ts";
import { machineDescription } from "../bench-machine.ts";

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const PERF_SECONDS = Number(process.env.OVS_BENCH_SECONDS ?? 10);
const SIZE_GIB = Number(process.env.OVS_BENCH_SIZE_GIB ?? 1);
const ROUNDS = Number(process.env.OVS_BENCH_ROUNDS ?? 3);
const VDISK = "bench";
const TGT_TARGET_NAME = "iqn.2026-11.org.openvstorage.bench:tgt";
const DOCS_SECTION_TITLE = "## iSCSI frontend";
const DOCS_GENERATED_END = "<!-- end of the part written by tests/bench/iscsi/iscsi-bench.ts; the notes below are kept -->";

interface Phase {
  name: string;
  label: string;
  tool: "qemu-img bench" | "iscsi-perf";
  requestBytes: number;
  depth: number;
  /** iscsi-perf: random offsets. */
  random?: boolean;
  metric: "iops" | "bandwidth";
}

const PHASES: Phase[] = [
  { name: "write-1m-new", label: "1 MiB writes, QD8, first pass: new data (qemu-img bench)", tool: "qemu-img bench", requestBytes: MIB, depth: 8, metric: "bandwidth" },
  { name: "write-1m-rewrite", label: "1 MiB writes, QD8, second pass: rewrites (qemu-img bench)", tool: "qemu-img bench", requestBytes: MIB, depth: 8, metric: "bandwidth" },
  { name: "write-4k", label: "4 KiB writes, QD32 (qemu-img bench)", tool: "qemu-img bench", requestBytes: 4096, depth: 32, metric: "iops" },
  { name: "read-4k", label: "4 KiB random reads, 32 in flight (iscsi-perf)", tool: "iscsi-perf", requestBytes: 4096, depth: 32, random: true, metric: "iops" },
  { name: "read-1m", label: "1 MiB reads, 32 in flight (iscsi-perf)", tool: "iscsi-perf", requestBytes: MIB, depth: 32, metric: "bandwidth" },
];

interface Target { name: string; url: string; stop(): Promise<void> }

interface Result { iops: number; bytesPerSecond: number }

/** qemu-img bench: a fixed count of requests, sequential (step = request size, wrapping at the end). */
async function qemuImgBench(target: Target, phase: Phase): Promise<Result> {
  // One pass over the device for 1 MiB; 200,000 requests for 4 KiB.
  const count = phase.requestBytes >= MIB ? SIZE_GIB * 1024 : 200_000;
  const result = await runToolOk("qemu-img", ["bench", "-f", "raw", "-w", "-t", "none", "-s", String(phase.requestBytes), "-d", String(phase.depth),
    "-c", String(count), target.url], { timeoutMs: 600_000 });
  const seconds = Number(/Run completed in ([\d.]+) seconds/.exec(result.stdout)?.[1]);
  if (!(seconds > 0)) throw new Error(`qemu-img bench printed no run time:\n${result.stdout}\n${result.stderr}`);
  return { iops: count / seconds, bytesPerSecond: (count * phase.requestBytes) / seconds };
}

/** iscsi-perf: time-bound, `iops average N` at the end (512-byte blocks). */
async function iscsiPerf(target: Target, phase: Phase): Promise<Result> {
  const result = await runToolOk("iscsi-perf", ["-m", String(phase.depth), "-b", String(phase.requestBytes / 512), "-t", String(PERF_SECONDS),
    ...(phase.random === true ? ["-r"] : []), target.url], { timeoutMs: (PERF_SECONDS + 60) * 1000 });
  const averages = [...result.stdout.matchAll(/iops average (\d+)/g)];
  const iops = Number(averages.at(-1)?.[1]);
  if (!(iops > 0)) throw new Error(`iscsi-perf printed no average:\n${result.stdout}\n${result.stderr}`);
  return { iops, bytesPerSecond: iops * phase.requestBytes };
}

function runPhase(target: Target, phase: Phase): Promise<Result> {
  return phase.tool === "qemu-img bench" ? qemuImgBench(target, phase) : iscsiPerf(target, phase);
}

async function startOurs(directory: string): Promise<Target> {
  const storagedriver = await NbdStorageDriver.start(directory, {
    vpool: "bench",
    iscsi: true,
    // Default engine settings (64 MiB SCOs) except a write buffer that holds the working set, as the
    // page cache does for tgt's file.
    settings: { writeBufferSizeBytes: 2 * SIZE_GIB * GIB },
    logLevel: "warn",
  });
  await storagedriver.createVdisk(VDISK, SIZE_GIB * GIB);
  return {
    name: "ours",
    url: storagedriver.iscsiUrl(0),
    stop: async () => {
      const exit = await storagedriver.stop(60_000);
      if (exit.code !== 0) console.error(`the StorageDriver stopped with ${JSON.stringify(exit)}: see ${storagedriver.logFile}`);
    },
  };
}

/** tgtd on a free port with one target and a file LUN (tests/helpers/iscsi-peers.ts). */
async function startTgtTarget(directory: string): Promise<{ target: Target; how: string }> {
  const tgt = await startTgt(directory, TGT_TARGET_NAME, SIZE_GIB * GIB);
  return { how: "tgtd started by the bench", target: { name: "tgt", url: tgt.url, stop: () => tgt.stop() } };
}

function formatResult(phase: Phase, result: Result): string {
  return phase.metric === "iops" ? `${Math.round(result.iops)} IOPS` : `${Math.round(result.bytesPerSecond / MIB)} MiB/s`;
}

function metricOf(phase: Phase, result: Result): number {
  return phase.metric === "iops" ? result.iops : result.bytesPerSecond;
}

/** The median round by the phase's metric (robust to one noisy round on a shared VM). */
function median(phase: Phase, results: Result[]): Result {
  const sorted = [...results].sort((left, right) => metricOf(phase, left) - metricOf(phase, right));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function toolVersions(): string {
  const first = (command: string, args: string[]): string => {
    try {
      return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n").find((line) => line.trim() !== "")?.trim() ?? command;
    } catch (error) {
      const output = `${(error as { stdout?: string }).stdout ?? ""}${(error as { stderr?: string }).stderr ?? ""}`;
      return output.split("\n").find((line) => /version/i.test(line))?.trim() ?? `${command} (version unknown)`;
    }
  };
  return [first("qemu-img", ["--version"]), first("tgtd", ["--version"]), first("iscsi-perf", ["-h"])].join(", ");
}

async function main(): Promise<void> {
  const missing = ["tgtd", "tgtadm", "iscsi-perf", "qemu-img"].filter((tool) => !onPath(tool));
  if (missing.length > 0) throw new Error(`cannot run the iSCSI benchmark: ${missing.join(", ")} not on PATH (apt-get install tgt libiscsi-bin qemu-utils qemu-block-extra)`);
  const workDirectory = await makeTempDir("iscsi-bench");
  const targets: Target[] = [];
  const results = new Map<string, Map<string, Result[]>>(PHASES.map((phase) => [phase.name, new Map()]));
  const startedMs = Date.now();
  let tgtHow = "";
  try {
    console.log(`iSCSI benchmark: ${SIZE_GIB} GiB per target, ${PERF_SECONDS} s per iscsi-perf phase, ${ROUNDS} rounds, data under ${workDirectory}`);
    for (let round = 0; round < ROUNDS; round++) {
      const roundDirectory = path.join(workDirectory, `round-${round}`);
      targets.push(await startOurs(path.join(roundDirectory, "ours")));
      const tgt = await startTgtTarget(roundDirectory);
      tgtHow = tgt.how;
      targets.push(tgt.target);
      // Who goes first meets the freshest page cache: swap the order every round.
      const order = round % 2 === 0 ? [...targets] : [...targets].reverse();
      for (const phase of PHASES) {
        for (const target of order) {
          execFileSync("sync");
          const result = await runPhase(target, phase);
          const byTarget = results.get(phase.name)!;
          byTarget.set(target.name, [...(byTarget.get(target.name) ?? []), result]);
          console.log(`round ${round + 1} ${phase.label.padEnd(48)} ${target.name.padEnd(5)} ${formatResult(phase, result)}`);
        }
      }
      for (const target of targets.splice(0)) await target.stop();
    }
    const table = [
      "| test | ours (StorageDriver, local backend) | tgt (file LUN, rdwr) | ours/tgt |",
      "|---|---|---|---|",
      ...PHASES.map((phase) => {
        const byTarget = results.get(phase.name)!;
        const ours = median(phase, byTarget.get("ours")!);
        const tgt = median(phase, byTarget.get("tgt")!);
        return `| ${phase.label} | ${formatResult(phase, ours)} | ${formatResult(phase, tgt)} | ${(metricOf(phase, ours) / metricOf(phase, tgt)).toFixed(2)}× |`;
      }),
    ].join("\n");
    const rounds = PHASES.map((phase) => `${phase.label}, every round (in run order): ` + [...results.get(phase.name)!]
      .map(([name, list]) => `${name} ${list.map((result) => formatResult(phase, result)).join(", ")}`).join("; ") + ".");
    console.log(`\n${table}\n\nwhole run ${((Date.now() - startedMs) / 1000).toFixed(0)} s`);
    if (process.env.OVS_BENCH_NO_DOCS !== "1") await updateDocs(table, rounds, tgtHow);
  } finally {
    for (const target of targets) await target.stop().catch(() => undefined);
    await removeTempDir(workDirectory);
  }
}

/** Replaces the generated part of this benchmark's section of docs/BENCHMARKS.md, keeping the hand-written notes after it. */
async function updateDocs(table: string, rounds: string[], tgtHow: string): Promise<void> {
  const generated = [
    DOCS_SECTION_TITLE,
    "",
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC on ${machineDescription()}; ${toolVersions()}.`,
    "",
    "Command: `npx tsx tests/bench/iscsi/iscsi-bench.ts` " + `(OVS_BENCH_SECONDS=${PERF_SECONDS}, OVS_BENCH_SIZE_GIB=${SIZE_GIB}, OVS_BENCH_ROUNDS=${ROUNDS}).`,
    `Each target serves ${SIZE_GIB} GiB never written before the first phase; the data of both lives under os.tmpdir() on one filesystem.`,
    "Targets: (a) `ovs storagedriver run` with the `local` backend and iSCSI on loopback, the vDisk as LUN 0 of",
    "`iqn.2026-11.org.openvstorage:bench`, default vPool settings (64 MiB SCOs) except",
    `\`writeBufferSizeBytes\` = ${2 * SIZE_GIB} GiB so the working set stays local as tgt's file stays in the page cache;`,
    `(b) tgtd 1.0.85 (${tgtHow}) with a file LUN (backing store \`rdwr\`: the page cache) on a sparse file.`,
    "Phases, each run against both targets back to back:",
    `\`qemu-img bench -f raw -w -t none -s 1M -d 8 -c ${SIZE_GIB * 1024}\` twice (the first pass writes new data and fills the device so the`,
    "reads hit data; the second rewrites it: tgt's file pages are then cached, our log-structured write buffer writes new SCO pages),",
    "`qemu-img bench -f raw -w -t none -s 4k -d 32 -c 200000` (sequential 4 KiB writes),",
    `\`iscsi-perf -m 32 -b 8 -r -t ${PERF_SECONDS}\` (4 KiB random reads) and \`iscsi-perf -m 32 -b 2048 -t ${PERF_SECONDS}\` (1 MiB sequential reads).`,
    "qemu-img bench sends no flushes: both targets acknowledge writes from memory (our write buffer, tgt's page cache).",
    `${ROUNDS} rounds on fresh targets with the order swapped each round; the table shows the median, every round is listed below.`,
    "",
    table,
    "",
    ...rounds.map((line) => `- ${line}`),
    "",
    DOCS_GENERATED_END,
  ].join("\n");
  await writeBenchmarkSection(DOCS_SECTION_TITLE, generated, DOCS_GENERATED_END);
}

await main();

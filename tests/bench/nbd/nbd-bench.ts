// Benchmark of the NBD frontend against two peers, in one run, on one machine, with the data of
// every server on the same filesystem (os.tmpdir()): fio's nbd engine drives (a) our StorageDriver
// process with the local backend, (b) `qemu-nbd -f raw -t --cache=writeback` on a raw file, (c)
// `nbdkit memory`. Phases: 4 KiB random read QD32, 4 KiB random write QD32, 1 MiB sequential write
// QD8, each time-based over a prefilled export; every phase runs against the three servers back to
// back so machine noise hits them alike, and the ratios ours/qemu-nbd and ours/nbdkit are what to
// read. Then 1 MiB sequential writes of new data: fresh servers with 32 GiB thin exports, one fio job
// that writes each block once (it never wraps), so every server writes blocks never written before
// (the prefilled phase overwrites a file that stays in qemu-nbd's page cache). A last run profiles
// the StorageDriver (node --cpu-prof) during 4 KiB random writes and lists the top self-time functions.
// Run by hand (not part of npm test):
//   npx tsx tests/bench/nbd/nbd-bench.ts
// Environment: OVS_BENCH_SECONDS (per phase, default 15), OVS_BENCH_SIZE_GIB (per server, default 2),
// OVS_BENCH_PROFILE_PHASE (randwrite, randread or seqwrite), OVS_BENCH_PROFILE_OUT=DIR (keep the
// .cpuprofile files), OVS_BENCH_NO_DOCS=1 (do not touch the docs), OVS_BENCH_NEW_DATA_GIB (the most
// the new-data job writes; default half the machine's memory, at most 32: nbdkit keeps it in memory),
// OVS_BENCH_NEW_DATA_ROUNDS (default 3: rounds of the new-data phase; the table shows the median).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { cp, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { totalmem } from "node:os";
import path from "node:path";
import { freePort, killPid, sleep } from "../../helpers/process-harness.ts";
import { NbdStorageDriver, runTool, runToolOk, toolMissingReason, type NbdTool } from "../../helpers/nbd-tools.ts";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dir.ts";
import { writeBenchmarkSection } from "../bench-docs.ts";
import { machineDescription } from "../bench-machine.ts";

const GIB = 1024 ** 3;
const PHASE_SECONDS = Number(process.env.OVS_BENCH_SECONDS ?? 15);
const SIZE_GIB = Number(process.env.OVS_BENCH_SIZE_GIB ?? 2);
/** The size of each fresh (thin, never written) export of the new-data phase. */
const NEW_DATA_EXPORT_GIB = 32;
/** The most the new-data job writes; nbdkit memory keeps every byte written in memory, so at most half of it. */
const NEW_DATA_JOB_GIB = Number(process.env.OVS_BENCH_NEW_DATA_GIB ?? Math.min(NEW_DATA_EXPORT_GIB, Math.floor(totalmem() / GIB / 2)));
/** Rounds of the new-data phase (fresh servers each, order rotated); the table shows the median. */
const NEW_DATA_ROUNDS = Number(process.env.OVS_BENCH_NEW_DATA_ROUNDS ?? 3);
/** Which phase the profiled run repeats: randwrite (default), randread or seqwrite. */
const PROFILE_PHASE = process.env.OVS_BENCH_PROFILE_PHASE ?? "randwrite";
const EXPORT = "bench";
const DOCS_SECTION_TITLE = "## NBD frontend (fio nbd engine)";
const DOCS_GENERATED_END = "<!-- end of the part written by tests/bench/nbd/nbd-bench.ts; the notes below are kept -->";

interface Phase {
  name: string;
  label: string;
  fioArguments: string[];
  metric: "iops" | "bandwidth";
  /** Fresh servers and one pass over at most this many GiB (--runtime bounds it), instead of a time-based job on the prefilled export. */
  newDataGib?: number;
}

/** The phases on the prefilled export, in order. */
const PHASES: Phase[] = [
  { name: "randread", label: "4 KiB random read, QD32", fioArguments: ["--rw=randread", "--bs=4k", "--iodepth=32"], metric: "iops" },
  { name: "randwrite", label: "4 KiB random write, QD32", fioArguments: ["--rw=randwrite", "--bs=4k", "--iodepth=32"], metric: "iops" },
  { name: "seqwrite", label: "1 MiB sequential write, QD8", fioArguments: ["--rw=write", "--bs=1M", "--iodepth=8"], metric: "bandwidth" },
];
const NEW_DATA_PHASE: Phase = {
  name: "seqwrite-new", label: "1 MiB sequential write QD8, new data", fioArguments: ["--rw=write", "--bs=1M", "--iodepth=8"],
  metric: "bandwidth", newDataGib: NEW_DATA_JOB_GIB,
};

interface Target { name: string; uri: string; stop(): Promise<void> }

interface FioResult { iops: number; bandwidthBytesPerSecond: number; p50Ms: number; p99Ms: number }

interface FioJobSide { iops: number; bw_bytes: number; clat_ns?: { percentile?: Record<string, number> } }

async function fio(target: Target, phase: Phase, reportFile: string, seconds = PHASE_SECONDS): Promise<FioResult> {
  try {
    return await fioOnce(target, phase, reportFile, seconds);
  } catch (error) {
    // fio 3.33's nbd engine now and then fails the last requests of a time-based job with ESHUTDOWN
    // ("Cannot send after transport endpoint shutdown"), against every server: run the phase again.
    console.log(`${phase.name} against ${target.name} failed once, running it again: ${(error as Error).message.split("\n").slice(0, 4).join(" | ")}`);
    return fioOnce(target, phase, reportFile, seconds);
  }
}

async function fioOnce(target: Target, phase: Phase, reportFile: string, seconds: number): Promise<FioResult> {
  // New data: one pass that ends at the end of its region or of the runtime, whichever comes first,
  // so no block is written twice.
  const extent = phase.newDataGib === undefined ? [`--size=${SIZE_GIB}G`, "--time_based"] : [`--size=${phase.newDataGib}G`];
  await runToolOk("fio", [
    `--name=${phase.name}`, "--ioengine=nbd", `--uri=${target.uri}`, ...phase.fioArguments,
    ...extent, `--runtime=${seconds}`, "--ramp_time=1",
    "--output-format=json", `--output=${reportFile}`,
  ], { timeoutMs: (seconds + 60) * 1000 });
  const job = (JSON.parse(await readFile(reportFile, "utf8")) as { jobs: Array<{ read: FioJobSide; write: FioJobSide }> }).jobs[0];
  const side = phase.name === "randread" ? job.read : job.write;
  const percentile = side.clat_ns?.percentile ?? {};
  return {
    iops: side.iops,
    bandwidthBytesPerSecond: side.bw_bytes,
    p50Ms: (percentile["50.000000"] ?? 0) / 1e6,
    p99Ms: (percentile["99.000000"] ?? 0) / 1e6,
  };
}

async function prefill(target: Target, reportFile: string): Promise<void> {
  // Every byte written once, so random reads hit data on every server (a thin vDisk would answer
  // holes from its map without touching data).
  await runToolOk("fio", ["--name=prefill", "--ioengine=nbd", `--uri=${target.uri}`, "--rw=write", "--bs=1M", "--iodepth=8",
    `--size=${SIZE_GIB}G`, "--output-format=json", `--output=${reportFile}`], { timeoutMs: 600_000 });
}

/** Waits until an NBD server answers a real handshake (a bare TCP probe makes qemu-nbd log an error). */
async function waitForExport(uri: string, timeoutMs: number): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs;
  for (;;) {
    if ((await runTool("nbdinfo", ["--size", uri], { timeoutMs: 10_000 }).catch(() => undefined))?.code === 0) return;
    if (Date.now() > deadlineMs) throw new Error(`no NBD server answers at ${uri} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** A peer server process, stopped by PID. */
async function startPeer(name: string, command: string, args: string[], port: number): Promise<Target> {
  const child: ChildProcess = spawn(command, args, { stdio: ["ignore", "ignore", "inherit"] });
  const uri = `nbd://127.0.0.1:${port}/${EXPORT}`;
  await waitForExport(uri, 30_000);
  return {
    name,
    uri,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        killPid(child.pid, "SIGTERM");
        await Promise.race([new Promise((resolve) => child.once("exit", resolve)), sleep(10_000)]);
        killPid(child.pid, "SIGKILL");
      }
    },
  };
}

/**
 * Our StorageDriver, qemu-nbd on a new sparse raw file and nbdkit memory, each exporting `sizeGib`
 * GiB never written; `name` tells apart the data directories of two sets.
 */
async function startServers(workDirectory: string, name: string, sizeGib: number): Promise<Target[]> {
  const targets: Target[] = [];
  try {
    const ours = await startOurs(path.join(workDirectory, name));
    await ours.storagedriver.createVdisk(EXPORT, sizeGib * GIB);
    targets.push(ours.target);
    const rawFile = path.join(workDirectory, `${name}-qemu-nbd.raw`);
    await writeFile(rawFile, "");
    await truncate(rawFile, sizeGib * GIB);
    const qemuPort = await freePort();
    // --cache=writeback: writes land in the page cache and FLUSH/FUA reach the disk, as our write
    // buffer does; --cache=none (O_DIRECT) would measure the disk instead of the server.
    targets.push(await startPeer("qemu-nbd", "qemu-nbd", ["-f", "raw", "-t", "--cache=writeback", "--aio=threads", "--shared=8",
      "-b", "127.0.0.1", "-p", String(qemuPort), "-x", EXPORT, rawFile], qemuPort));
    const nbdkitPort = await freePort();
    targets.push(await startPeer("nbdkit", "nbdkit", ["-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", String(nbdkitPort),
      "memory", `${Math.max(4, sizeGib)}G`], nbdkitPort));
    return targets;
  } catch (error) {
    for (const target of targets) await target.stop().catch(() => undefined);
    throw error;
  }
}

async function startOurs(directory: string, nodeOptions?: string[]): Promise<{ target: Target; storagedriver: NbdStorageDriver }> {
  const storagedriver = await NbdStorageDriver.start(directory, {
    vpool: "bench",
    // Default engine settings (64 MiB SCOs) except a write buffer that holds the working set, as the
    // page cache does for qemu-nbd's file: the benchmark measures the frontend and the engine, not
    // reads from the backend.
    settings: { writeBufferSizeBytes: 2 * SIZE_GIB * GIB },
    logLevel: "warn",
    ...(nodeOptions === undefined ? {} : { nodeOptions }),
  });
  return {
    storagedriver,
    target: {
      name: "ours",
      uri: storagedriver.uri(EXPORT),
      stop: async () => {
        const exit = await storagedriver.stop(60_000);
        if (exit.code !== 0) console.error(`the StorageDriver stopped with ${JSON.stringify(exit)}: see ${storagedriver.logFile}`);
      },
    },
  };
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }

function describeFrame(node: ProfileNode): string {
  const frame = node.callFrame;
  const name = frame.functionName === "" ? "(anonymous)" : frame.functionName;
  if (frame.url === "") return name;
  const file = frame.url.replace(/^file:\/\//, "").replace(/^.*\/(node_modules|volumedriver|alba|tests|framework)\//, "$1/");
  return `${name} (${file}:${frame.lineNumber + 1})`;
}

/**
 * Summary of a .cpuprofile: the share of samples idle, then the top self-time functions as a share
 * of the busy samples (all but idle). A native function (no source file) is named with the nearest
 * JavaScript caller, so the socket's writev and the file system's are told apart.
 */
function summarizeProfile(profile: { nodes: ProfileNode[]; samples: number[] }, count: number): string[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const selfSamples = new Map<string, number>();
  for (const id of profile.samples) {
    const node = byId.get(id);
    if (node === undefined) continue;
    let key = describeFrame(node);
    if (node.callFrame.url === "" && !key.startsWith("(")) {
      let caller = parentOf.get(id);
      while (caller !== undefined && byId.get(caller)?.callFrame.url === "") caller = parentOf.get(caller);
      const callerNode = caller === undefined ? undefined : byId.get(caller);
      if (callerNode !== undefined) key = `${key} [native] ← ${describeFrame(callerNode)}`;
    }
    selfSamples.set(key, (selfSamples.get(key) ?? 0) + 1);
  }
  const total = profile.samples.length;
  const idle = selfSamples.get("(idle)") ?? 0;
  selfSamples.delete("(idle)");
  const busy = total - idle;
  const share = (samples: number, of: number): string => `${((100 * samples) / Math.max(1, of)).toFixed(1)}%`;
  return [
    `${total} samples, idle ${share(idle, total)}; the functions below as a share of the busy samples:`,
    ...[...selfSamples.entries()].sort((left, right) => right[1] - left[1]).slice(0, count)
      .map(([key, samples]) => `${share(samples, busy)} ${key}`),
  ];
}

function formatResult(phase: Phase, result: FioResult): string {
  const value = phase.metric === "iops" ? `${Math.round(result.iops)} IOPS` : `${Math.round(result.bandwidthBytesPerSecond / 1024 ** 2)} MiB/s`;
  return `${value} (p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms)`;
}

function ratio(phase: Phase, ours: FioResult, peer: FioResult): string {
  const metric = (result: FioResult): number => (phase.metric === "iops" ? result.iops : result.bandwidthBytesPerSecond);
  return `${(metric(ours) / metric(peer)).toFixed(2)}×`;
}

function toolVersions(): string {
  const first = (command: string, args: string[]): string => {
    try {
      return execFileSync(command, args, { encoding: "utf8" }).split("\n")[0]?.trim() ?? command;
    } catch {
      return `${command} (version unknown)`;
    }
  };
  return [first("fio", ["--version"]), first("qemu-nbd", ["--version"]), first("nbdkit", ["--version"])].join(", ");
}

async function main(): Promise<void> {
  const missing = (["fio", "qemu-nbd", "nbdkit", "nbdinfo"] as NbdTool[]).map(toolMissingReason).filter((reason) => reason !== undefined);
  if (missing.length > 0) throw new Error(`cannot run the NBD benchmark: ${missing.join("; ")}`);
  const workDirectory = await makeTempDir("nbd-bench");
  const targets: Target[] = [];
  const results = new Map<string, Map<string, FioResult>>();
  const notes: string[] = [];
  try {
    console.log(`NBD benchmark: ${SIZE_GIB} GiB per server, ${PHASE_SECONDS} s per phase, data under ${workDirectory}`);
    targets.push(...(await startServers(workDirectory, "ours", SIZE_GIB)));

    for (const target of targets) {
      const startedMs = Date.now();
      await prefill(target, path.join(workDirectory, `prefill-${target.name}.json`));
      console.log(`prefilled ${target.name} in ${((Date.now() - startedMs) / 1000).toFixed(1)} s`);
    }
    for (const phase of PHASES) {
      const byTarget = new Map<string, FioResult>();
      results.set(phase.name, byTarget);
      for (const target of targets) {
        const result = await fio(target, phase, path.join(workDirectory, `${phase.name}-${target.name}.json`));
        byTarget.set(target.name, result);
        console.log(`${phase.label.padEnd(30)} ${target.name.padEnd(9)} ${formatResult(phase, result)}`);
      }
    }
    for (const target of targets.splice(0)) await target.stop();

    // New data: fresh servers whose exports were never written, one pass each. sync first, so the
    // dirty pages of one server's run do not slow the next one's. Several rounds, each with fresh
    // servers and the order rotated (who runs first meets the freshest page cache), and the median
    // of each server's rounds goes in the table: single runs of this row vary by ±30% in this VM.
    {
      const rounds = new Map<string, FioResult[]>();
      for (let round = 0; round < NEW_DATA_ROUNDS; round++) {
        const roundName = `new-data-${round}`;
        const roundTargets = await startServers(workDirectory, roundName, NEW_DATA_EXPORT_GIB);
        targets.push(...roundTargets);
        const order = [...roundTargets.slice(round % roundTargets.length), ...roundTargets.slice(0, round % roundTargets.length)];
        for (const target of order) {
          execFileSync("sync");
          const result = await fio(target, NEW_DATA_PHASE, path.join(workDirectory, `${roundName}-${target.name}.json`));
          rounds.set(target.name, [...(rounds.get(target.name) ?? []), result]);
          console.log(`${NEW_DATA_PHASE.label.padEnd(30)} ${target.name.padEnd(9)} round ${round + 1}: ${formatResult(NEW_DATA_PHASE, result)}`);
        }
        for (const target of targets.splice(0)) await target.stop();
        // Free the disk (tens of GiB) before the next round.
        await rm(path.join(workDirectory, roundName), { recursive: true, force: true });
        await rm(path.join(workDirectory, `${roundName}-qemu-nbd.raw`), { force: true });
      }
      const byTarget = new Map<string, FioResult>();
      results.set(NEW_DATA_PHASE.name, byTarget);
      for (const [name, list] of rounds) {
        const sorted = [...list].sort((left, right) => left.bandwidthBytesPerSecond - right.bandwidthBytesPerSecond);
        byTarget.set(name, sorted[Math.floor(sorted.length / 2)]!);
      }
      notes.push(`${NEW_DATA_PHASE.label}, every round (MiB/s, in run order; the table shows each server's median): ` +
        [...rounds].map(([name, list]) => `${name} ${list.map((result) => Math.round(result.bandwidthBytesPerSecond / 1024 ** 2)).join(", ")}`).join("; ") + ".");
    }

    // Profile: a fresh StorageDriver under --cpu-prof, the random-write phase once more; the profile is
    // written when the process exits after SIGTERM.
    const profileDirectory = path.join(workDirectory, "profile");
    const profiled = await startOurs(path.join(workDirectory, "ours"), ["--cpu-prof", `--cpu-prof-dir=${profileDirectory}`]);
    targets.push(profiled.target);
    const profiledPhase = PHASES.find((phase) => phase.name === PROFILE_PHASE);
    if (profiledPhase === undefined) throw new Error(`OVS_BENCH_PROFILE_PHASE must be one of ${PHASES.map((phase) => phase.name).join(", ")}`);
    const profiledResult = await fio(profiled.target, profiledPhase, path.join(workDirectory, `${profiledPhase.name}-profiled.json`));
    await targets.pop()?.stop();
    const profileFiles = (await readdir(profileDirectory)).filter((file) => file.endsWith(".cpuprofile"));
    if (process.env.OVS_BENCH_PROFILE_OUT !== undefined) {
      await cp(profileDirectory, process.env.OVS_BENCH_PROFILE_OUT, { recursive: true });
      console.log(`profiles copied to ${process.env.OVS_BENCH_PROFILE_OUT} (open them in Chrome DevTools or speedscope)`);
    }
    const profiles = await Promise.all(profileFiles.map(async (file) => JSON.parse(await readFile(path.join(profileDirectory, file), "utf8")) as { nodes: ProfileNode[]; samples: number[] }));
    // The StorageDriver is the profile with the most samples (the `ovs` launcher has its own, tiny one).
    const profile = profiles.sort((left, right) => right.samples.length - left.samples.length)[0];
    const top = profile === undefined ? ["(no profile written)"] : summarizeProfile(profile, 15);
    console.log(`profiled ${profiledPhase.label}: ${formatResult(profiledPhase, profiledResult)}`);
    for (const line of top) console.log(`  ${line}`);

    const table = [
      "| test | ours (StorageDriver, local backend) | qemu-nbd (raw file, writeback) | nbdkit memory | ours/qemu-nbd | ours/nbdkit |",
      "|---|---|---|---|---|---|",
      ...[...PHASES, NEW_DATA_PHASE].map((phase) => {
        const byTarget = results.get(phase.name)!;
        const ourResult = byTarget.get("ours")!;
        const qemuResult = byTarget.get("qemu-nbd")!;
        const nbdkitResult = byTarget.get("nbdkit")!;
        return `| ${phase.label} | ${formatResult(phase, ourResult)} | ${formatResult(phase, qemuResult)} | ${formatResult(phase, nbdkitResult)} | ` +
          `${ratio(phase, ourResult, qemuResult)} | ${ratio(phase, ourResult, nbdkitResult)} |`;
      }),
    ].join("\n");
    notes.push(`Profiled run (node --cpu-prof, the ${profiledPhase.label} phase again on the same vDisk after a restart): ${formatResult(profiledPhase, profiledResult)}.`);
    console.log(`\n${table}`);
    if (process.env.OVS_BENCH_NO_DOCS !== "1") await updateDocs(table, notes, profiledPhase.label, top);
  } finally {
    for (const target of targets) await target.stop().catch(() => undefined);
    await removeTempDir(workDirectory);
  }
}

/** Replaces the generated part of this benchmark's section of docs/BENCHMARKS.md, keeping the hand-written notes after it. */
async function updateDocs(table: string, notes: string[], profiledLabel: string, top: string[]): Promise<void> {
  const generated = [
    DOCS_SECTION_TITLE,
    "",
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC on ${machineDescription()}; ${toolVersions()}.`,
    "",
    "Command: `npx tsx tests/bench/nbd/nbd-bench.ts` " + `(OVS_BENCH_SECONDS=${PHASE_SECONDS}, OVS_BENCH_SIZE_GIB=${SIZE_GIB}).`,
    `Each server exports ${SIZE_GIB} GiB, written once in full (fio, 1 MiB, QD8) before the phases; the data of all three`,
    "lives under os.tmpdir() on one filesystem. Every phase is one fio job",
    `(\`--ioengine=nbd --uri=... --time_based --runtime=${PHASE_SECONDS} --ramp_time=1 --size=${SIZE_GIB}G\` plus the pattern),`,
    "run against the three servers back to back.",
    "Servers: (a) `ovs storagedriver run` with the `local` backend, default vPool settings (64 MiB SCOs) except",
    `\`writeBufferSizeBytes\` = ${2 * SIZE_GIB} GiB so the working set stays local as qemu-nbd's file stays in the page cache;`,
    `(b) \`qemu-nbd -f raw -t --cache=writeback --aio=threads --shared=8 -x bench FILE\` on a sparse raw file (writeback: writes`,
    "land in the page cache and flushes reach the disk, like our write buffer; `--cache=none` would measure the disk);",
    `(c) \`nbdkit memory ${Math.max(4, SIZE_GIB)}G\`. fio sends no flushes in these phases: every server acknowledges from memory or the page cache.`,
    `The new-data row runs last, on fresh servers whose ${NEW_DATA_EXPORT_GIB} GiB exports were never written (our thin vDisk, qemu-nbd on a`,
    `new sparse raw file, \`nbdkit memory ${NEW_DATA_EXPORT_GIB}G\`), one fio pass each (\`--size=${NEW_DATA_JOB_GIB}G --runtime=${PHASE_SECONDS}\`, not`,
    "time-based: it ends at whichever comes first and never writes a block twice), after a `sync`: every server writes blocks it",
    `never held, so the page cache must reach the disk (the size is at most half the memory: nbdkit keeps it all). ${NEW_DATA_ROUNDS} rounds,`,
    "each on fresh servers with the order rotated; the row shows each server's median round (every round is listed below).",
    "",
    table,
    "",
    ...notes.map((note) => `- ${note}`),
    "",
    `Profile of the StorageDriver process (node --cpu-prof, whole process life: start, the ${profiledLabel} phase, clean stop):`,
    "",
    top[0] ?? "",
    "",
    ...top.slice(1).map((line) => `- ${line}`),
    "",
    DOCS_GENERATED_END,
  ].join("\n");
  await writeBenchmarkSection(DOCS_SECTION_TITLE, generated, DOCS_GENERATED_END);
}

await main();

// Goal: prove the durability contract against real SIGKILLs: a child process writes self-identifying
// sectors with periodic flushes and is killed at random times; after each kill the recovered device
// must contain everything acknowledged before the last completed flush (and every acknowledged FUA
// write), and must equal the result of applying exactly a downward-closed set of the issued writes
// (a prefix of the history: if write z landed, every write acknowledged before z was issued landed
// too). No torn sector, no stale data. The same volume accumulates history across rounds, so later
// rounds recover a volume that was itself recovered.
//
// Replay: OVS_SEED=<seed> npx mocha tests/fault/crash-prefix.test.ts (OVS_CRASH_ROUNDS sets the rounds).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { LocalObjectStore } from "../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { CLUSTER_SIZE_BYTES, MIB } from "../../volumedriver/src/engine/vpool-types.ts";
import { readWholeDevice } from "../helpers/device-hash.ts";
import { decodeSector, SECTOR_BYTES } from "../helpers/sector-pattern.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { sleep, withTimeout } from "../helpers/volume-assertions.ts";
import type { CrashWriterArguments } from "./helpers/crash-writer.ts";

const CRASH_WRITER = join(fileURLToPath(new URL(".", import.meta.url)), "helpers", "crash-writer.ts");
const DEVICE_SIZE_BYTES = 16 * MIB;
const DEVICE_SECTORS = DEVICE_SIZE_BYTES / SECTOR_BYTES;
const SECTORS_PER_CLUSTER = CLUSTER_SIZE_BYTES / SECTOR_BYTES;
const ROUNDS = Number(process.env.OVS_CRASH_ROUNDS ?? 24);
/**
 * The unit that must land all-or-nothing: "write" (default: the device equals the result of a prefix
 * of whole writes, as DESIGN.md's durability contract says) or "cluster" (OVS_CRASH_ATOMICITY=cluster:
 * an unflushed multi-cluster write may land in part, each cluster whole).
 */
const ATOMICITY: "write" | "cluster" = process.env.OVS_CRASH_ATOMICITY === "cluster" ? "cluster" : "write";
const VPOOL_NAME = "crash";
const VOLUME_NAME = "crashdisk";

/** What the child reported in one round, with the stdout line number of each event. */
interface IssuedWrite {
  seq: number;
  firstSector: number;
  countSectors: number;
  fua: boolean;
  issueLine: number;
  ackLine: number; // Infinity if never acknowledged
}

interface RoundLog {
  writes: Map<number, IssuedWrite>;
  /** Line of the "F" of the last flush whose "f" was seen (-1: none). */
  lastCompletedFlushStartLine: number;
  ready: boolean;
  errors: string[];
  lineCount: number;
}

function parseRoundLog(output: string): RoundLog {
  const lines = output.split("\n");
  // A line cut by the kill has no newline after it: drop it.
  lines.pop();
  const log: RoundLog = { writes: new Map(), lastCompletedFlushStartLine: -1, ready: false, errors: [], lineCount: lines.length };
  const flushStartLines = new Map<number, number>();
  lines.forEach((line, lineNumber) => {
    const fields = line.split(" ");
    switch (fields[0]) {
      case "ready":
        log.ready = true;
        break;
      case "w": {
        const seq = Number(fields[1]);
        log.writes.set(seq, {
          seq,
          firstSector: Number(fields[2]),
          countSectors: Number(fields[3]),
          fua: fields[4] === "1",
          issueLine: lineNumber,
          ackLine: Infinity,
        });
        break;
      }
      case "a": {
        const write = log.writes.get(Number(fields[1]));
        assert.ok(write, `ack of a write never issued: ${line}`);
        write.ackLine = lineNumber;
        break;
      }
      case "F":
        flushStartLines.set(Number(fields[1]), lineNumber);
        break;
      case "f": {
        const startLine = flushStartLines.get(Number(fields[1]));
        assert.ok(startLine !== undefined, `completion of a flush never issued: ${line}`);
        log.lastCompletedFlushStartLine = Math.max(log.lastCompletedFlushStartLine, startLine);
        break;
      }
      case "e":
        log.errors.push(line);
        break;
      default:
        // Anything else (a stray log line) is ignored; the protocol lines are unambiguous.
        break;
    }
  });
  return log;
}

/** One unit that lands all-or-nothing: a whole write (strict) or one cluster's piece of it (per-cluster atomicity). */
interface Unit {
  write: IssuedWrite;
  firstSector: number;
  endSector: number;
}

function unitsOf(write: IssuedWrite, granularity: "write" | "cluster"): Unit[] {
  const endSector = write.firstSector + write.countSectors;
  if (granularity === "write") return [{ write, firstSector: write.firstSector, endSector }];
  const units: Unit[] = [];
  for (let first = write.firstSector; first < endSector; ) {
    const end = Math.min(endSector, (Math.floor(first / SECTORS_PER_CLUSTER) + 1) * SECTORS_PER_CLUSTER);
    units.push({ write, firstSector: first, endSector: end });
    first = end;
  }
  return units;
}

/**
 * Checks the prefix property for one round. `tags[s]` is the seq whose data sector s holds (0: zeros),
 * `baseline[s]` the same before the round. Returns the violations (empty: the device is a valid prefix).
 *
 * The minimal set M of units that must have landed is: every unit acknowledged before P, plus every
 * unit seen on the device, plus every acknowledged FUA write, where P is the latest of (the start of
 * the last completed flush, the issue of any write seen on the device, the issue of any acknowledged
 * FUA write). M is downward closed under "acknowledged before issued". The device is a valid prefix
 * iff applying M in issue order gives it, i.e. iff every sector of every unit in M holds that unit's
 * write or a later one; the check is monotone, so checking the minimal M is exact.
 */
function checkPrefix(log: RoundLog, tags: Uint32Array, baseline: Uint32Array, seqBase: number, granularity: "write" | "cluster"): string[] {
  const violations: string[] = [];
  const seenSeqs = new Set<number>();
  for (let sector = 0; sector < DEVICE_SECTORS; sector++) {
    const tag = tags[sector]!;
    if (tag >= seqBase) {
      const write = log.writes.get(tag);
      if (write === undefined) {
        violations.push(`sector ${sector} holds seq ${tag}, which this round never issued`);
        continue;
      }
      if (sector < write.firstSector || sector >= write.firstSector + write.countSectors) {
        violations.push(`sector ${sector} holds seq ${tag}, which wrote sectors ${write.firstSector}+${write.countSectors} (misplaced data)`);
      }
      seenSeqs.add(tag);
    } else if (tag !== baseline[sector]) {
      violations.push(`sector ${sector} holds seq ${tag} but held seq ${baseline[sector]} before this round (stale or lost data)`);
    }
  }
  let horizonLine = log.lastCompletedFlushStartLine;
  for (const seq of seenSeqs) horizonLine = Math.max(horizonLine, log.writes.get(seq)!.issueLine);
  for (const write of log.writes.values()) if (write.fua && write.ackLine !== Infinity) horizonLine = Math.max(horizonLine, write.issueLine);

  for (const write of log.writes.values()) {
    const mustHaveLanded = write.ackLine < horizonLine || (write.fua && write.ackLine !== Infinity);
    for (const unit of unitsOf(write, granularity)) {
      let landed = mustHaveLanded;
      if (!landed) {
        // A unit seen anywhere on the device has landed (whole unit).
        for (let sector = unit.firstSector; sector < unit.endSector && !landed; sector++) landed = tags[sector] === write.seq;
      }
      if (!landed) continue;
      for (let sector = unit.firstSector; sector < unit.endSector; sector++) {
        const tag = tags[sector]!;
        if (tag < write.seq) {
          const why = write.ackLine < log.lastCompletedFlushStartLine ? "acknowledged before a completed flush" : write.fua && write.ackLine !== Infinity ? "an acknowledged FUA write" : mustHaveLanded ? "acknowledged before a write that landed was issued" : "partly landed";
          const acknowledged = write.ackLine === Infinity ? "never acknowledged" : `acknowledged at line ${write.ackLine}`;
          violations.push(`seq ${write.seq} (sectors ${write.firstSector}+${write.countSectors}, issued at line ${write.issueLine}, ${acknowledged}, ${why}) is missing at sector ${sector}, which holds seq ${tag}`);
          break;
        }
      }
    }
  }
  return violations;
}

describe("fault: crash prefix property under SIGKILL", function () {
  this.timeout(240_000);
  const tempDirs = new TempDirs("crash-prefix");
  const children = new Set<ChildProcess>();

  after(async function () {
    for (const child of children) if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL");
    await tempDirs.removeAll();
  });

  it(`keeps a flushed prefix of the write history over ${ROUNDS} SIGKILL rounds`, async function () {
    // Goal: after every SIGKILL the device is a prefix of the history containing everything flushed.
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const directory = await tempDirs.make("local");
    const backendDirectory = await tempDirs.make("backend");
    const baseline = new Uint32Array(DEVICE_SECTORS);
    let seqBase = 1;
    const summary: string[] = [];
    const roundWarnings: string[] = [];
    const startedMs = Date.now();

    for (let generation = 1; generation <= ROUNDS; generation++) {
      const context = `seed ${seed} (replay: OVS_SEED=${seed}), round ${generation}`;
      const writerArguments: CrashWriterArguments = {
        directory,
        backendDirectory,
        vpoolName: VPOOL_NAME,
        volumeName: VOLUME_NAME,
        deviceSizeBytes: DEVICE_SIZE_BYTES,
        generation,
        seqBase,
        seed: random.nextUint32() | 0,
        queueDepth: random.pick([1, 4, 16, 32]),
        scoSizeBytes: 4 * MIB,
        scoMaxAgeMs: random.pick([100, 300, 1_000]),
      };
      const killAfterMs = random.integer(20, 900);
      const output = await runAndKill(writerArguments, killAfterMs, children, context);
      const log = parseRoundLog(output);
      assert.deepEqual(log.errors, [], `${context}: the writer reported errors`);
      assert.ok(log.ready, `${context}: the writer never became ready; output:\n${output.slice(0, 2000)}`);

      // Recover in this process and read the whole device.
      const backend = new LocalObjectStore(backendDirectory);
      // The recovering engine's warnings are collected and shown with a failure of this round.
      const warnings: string[] = [];
      const logger = pino({ level: "warn" }, { write: (line: string) => void warnings.push(line.trim()) });
      const vpool = await withTimeout(
        openVPool({ name: VPOOL_NAME, directory, backend, scoSizeBytes: 4 * MIB, logger }),
        60_000,
        `${context}: reopening after SIGKILL`,
      );
      const volume = vpool.getVolume(VOLUME_NAME);
      assert.ok(volume, `${context}: volume ${VOLUME_NAME} is back after the crash; listVolumes: ${JSON.stringify(vpool.listVolumes())}${engineWarnings(warnings)}`);
      const device = await readWholeDevice(volume);

      const tags = new Uint32Array(DEVICE_SECTORS);
      const garbage: string[] = [];
      for (let sector = 0; sector < DEVICE_SECTORS; sector++) {
        const tag = decodeSector(device, sector * SECTOR_BYTES, sector);
        if (tag.kind === "garbage") garbage.push(`sector ${sector}: ${tag.reason}`);
        else if (tag.kind === "written") {
          tags[sector] = tag.seq;
          const expectedGeneration = tag.seq >= seqBase ? generation : undefined;
          if (expectedGeneration !== undefined && tag.generation !== expectedGeneration) garbage.push(`sector ${sector}: seq ${tag.seq} tagged generation ${tag.generation}`);
        }
      }
      assert.deepEqual(garbage.slice(0, 20), [], `${context}: torn or stale sectors (${garbage.length})`);

      const violations = checkPrefix(log, tags, baseline, seqBase, ATOMICITY);
      if (violations.length > 0 && ATOMICITY === "write") {
        const clusterViolations = checkPrefix(log, tags, baseline, seqBase, "cluster");
        const diagnosis =
          clusterViolations.length === 0
            ? "only multi-cluster writes not yet covered by a completed flush landed in part (the device is a prefix of the history at cluster granularity, but not of whole writes)"
            : "the device is not a prefix even at cluster granularity";
        assert.fail(`${context}: prefix property violated; ${diagnosis}:\n  ${violations.slice(0, 20).join("\n  ")}${engineWarnings(warnings)}`);
      }
      assert.deepEqual(violations.slice(0, 20), [], `${context}: prefix property violated at cluster granularity${engineWarnings(warnings)}`);

      const acknowledged = [...log.writes.values()].filter((write) => write.ackLine !== Infinity).length;
      summary.push(`round ${generation}: killed after ${killAfterMs} ms, ${log.writes.size} issued, ${acknowledged} acknowledged`);
      baseline.set(tags);
      seqBase += log.writes.size + 1;

      // Leave the volume for the next child either cleanly closed or crashed again right after
      // recovery, so both paths into a new run get exercised.
      if (generation % 2 === 0) await withTimeout(vpool.close(), 30_000, `${context}: closing the recovered vPool`);
      else await vpool.simulateCrash();
      await backend.close();
      if (warnings.length > 0) roundWarnings.push(`round ${generation}:${engineWarnings(warnings)}`);
    }
    const totalIssued = seqBase - ROUNDS - 1;
    assert.ok(totalIssued > ROUNDS * 10, `the writers issued ${totalIssued} writes in ${ROUNDS} rounds: too few to mean anything`);
    console.log(`      crash-prefix: seed ${seed}, ${ROUNDS} rounds, ${totalIssued} writes issued, ${Date.now() - startedMs} ms`);
    if (process.env.OVS_VERBOSE !== undefined) console.log(summary.join("\n"));
    // Warnings do not fail the test, but a recovered engine should have nothing to warn about.
    if (roundWarnings.length > 0) console.log(`      crash-prefix: the recovering engine logged warnings:\n${roundWarnings.join("\n")}`);
  });
});

function engineWarnings(warnings: string[]): string {
  if (warnings.length === 0) return "";
  return `\n  engine warnings while recovering:\n    ${warnings.slice(0, 5).map((line) => line.slice(0, 600)).join("\n    ")}`;
}

/** Runs the crash writer, SIGKILLs it `killAfterMs` after it printed "ready", returns its stdout. */
async function runAndKill(writerArguments: CrashWriterArguments, killAfterMs: number, children: Set<ChildProcess>, context: string): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", CRASH_WRITER, JSON.stringify(writerArguments)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const chunks: Buffer[] = [];
  let stderr = "";
  let readySeen = false;
  let onReady: (() => void) | undefined;
  child.stdout!.on("data", (chunk: Buffer) => {
    chunks.push(chunk);
    if (!readySeen && Buffer.concat(chunks).includes("ready\n")) {
      readySeen = true;
      onReady?.();
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    if (stderr.length < 20_000) stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
    if (readySeen) resolve();
  });
  const startup = await Promise.race([ready.then(() => "ready" as const), exited.then(() => "exited" as const), sleep(60_000).then(() => "timeout" as const)]);
  if (startup !== "ready") {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL");
    await exited;
    children.delete(child);
    assert.fail(`${context}: crash writer ${startup} before ready; stdout:\n${Buffer.concat(chunks).toString().slice(-2000)}\nstderr:\n${stderr}`);
  }
  await sleep(killAfterMs);
  const stillRunning = child.exitCode === null && child.signalCode === null;
  if (child.pid !== undefined && stillRunning) process.kill(child.pid, "SIGKILL");
  await exited;
  children.delete(child);
  if (!stillRunning) assert.fail(`${context}: crash writer exited on its own (code ${child.exitCode}); stderr:\n${stderr}\nstdout tail:\n${Buffer.concat(chunks).toString().slice(-2000)}`);
  return Buffer.concat(chunks).toString();
}

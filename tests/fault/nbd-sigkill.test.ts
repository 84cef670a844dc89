// Goal: the durability contract holds end to end over NBD against real SIGKILLs of the StorageDriver
// process: while a libnbd client writes self-identifying sectors with periodic flushes (and fio
// streams random writes to another vDisk of the same process), the StorageDriver is killed at a
// random time and restarted; every write acknowledged before the last completed flush must read
// back (or a later write of the same sector), nothing is torn or stale, and sectors no durable write
// touched hold either their old content or a write of this round. A last round stops the process
// with SIGTERM instead: then every acknowledged write must read back, flushed or not.
//
// Replay: OVS_SEED=<seed> npx mocha --no-config --node-option import=tsx --timeout 300000 --exit \
//   tests/fault/nbd-sigkill.test.ts   (OVS_NBD_CRASH_ROUNDS sets the number of SIGKILL rounds)
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LIBNBD_PYTHON, NbdStorageDriver, requireTool, runToolOk, toolMissingReason } from "../helpers/nbd-tools.ts";
import { killPid, sleep } from "../helpers/process-harness.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const WRITER = fileURLToPath(new URL("helpers/nbd-tagged-writer.py", import.meta.url));
const MIB = 1024 * 1024;
const SECTOR_BYTES = 512;
const DEVICE_SIZE_BYTES = 64 * MIB;
const DEVICE_SECTORS = DEVICE_SIZE_BYTES / SECTOR_BYTES;
const ROUNDS = Number(process.env.OVS_NBD_CRASH_ROUNDS ?? 3);
const WRITER_QUEUE_DEPTH = 16;
const WRITER_SECTORS_MAX = 24;
const WRITER_FLUSH_EVERY_WRITES = 200;
const TAGGED = "tagged";
const STREAM = "stream";

interface IssuedWrite { seq: number; firstSector: number; countSectors: number; ackLine: number }

interface WriterLog {
  writes: Map<number, IssuedWrite>;
  acknowledged: number;
  /** Line of the "F" of the last flush whose "f" was seen (-1: none). */
  lastCompletedFlushStartLine: number;
  completedFlushes: number;
  lastSeq: number;
}

function parseWriterLog(output: string): WriterLog {
  const lines = output.split("\n");
  lines.pop(); // a line cut by the kill has no newline after it
  const log: WriterLog = { writes: new Map(), acknowledged: 0, lastCompletedFlushStartLine: -1, completedFlushes: 0, lastSeq: 0 };
  const flushStartLines = new Map<string, number>();
  lines.forEach((line, lineNumber) => {
    const [kind, first, second, third] = line.split(" ");
    if (kind === "w") {
      const seq = Number(first);
      log.writes.set(seq, { seq, firstSector: Number(second), countSectors: Number(third), ackLine: Infinity });
      log.lastSeq = Math.max(log.lastSeq, seq);
    } else if (kind === "a") {
      const write = log.writes.get(Number(first));
      assert.ok(write !== undefined, `ack of a write never issued: ${line}`);
      write.ackLine = lineNumber;
      log.acknowledged++;
    } else if (kind === "F") {
      flushStartLines.set(first, lineNumber);
    } else if (kind === "f") {
      log.lastCompletedFlushStartLine = flushStartLines.get(first) ?? -1;
      log.completedFlushes++;
    }
  });
  return log;
}

/** The seq of the write that tagged this sector, 0 for zeros; throws on a torn or misplaced sector. */
function decodeSector(device: Buffer, sector: number): number {
  const view = device.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
  if (view.toString("latin1", 0, 4) !== "OVSN") {
    if (view.some((byte) => byte !== 0)) throw new Error(`sector ${sector}: neither zeros nor a tagged sector`);
    return 0;
  }
  const seq = view.readUInt32LE(4);
  const taggedSector = Number(view.readBigUInt64LE(8));
  if (taggedSector !== sector) throw new Error(`sector ${sector}: holds the sector ${taggedSector} of write ${seq} (stale location)`);
  const digest = createHash("sha512").update(view.subarray(0, 16)).digest();
  for (let offset = 16; offset < SECTOR_BYTES; offset++) {
    if (view[offset] !== digest[(offset - 16) % 64]) throw new Error(`sector ${sector}: torn sector of write ${seq} at byte ${offset}`);
  }
  return seq;
}

/**
 * Checks the device against the round's log and the content before the round (baseline: the seq per
 * sector, 0 for zeros). `durable` says which writes must have landed. Returns the new baseline.
 */
function checkRound(device: Buffer, baseline: Uint32Array, log: WriterLog, durable: (write: IssuedWrite) => boolean): { baseline: Uint32Array; durableWrites: number } {
  // The newest durable write per sector: writes of one sector never overlap in flight, so seq order is their order.
  const newestDurable = new Uint32Array(DEVICE_SECTORS);
  let durableWrites = 0;
  for (const write of log.writes.values()) {
    if (!durable(write)) continue;
    durableWrites++;
    for (let sector = write.firstSector; sector < write.firstSector + write.countSectors; sector++) {
      newestDurable[sector] = Math.max(newestDurable[sector], write.seq);
    }
  }
  const next = new Uint32Array(DEVICE_SECTORS);
  const problems: string[] = [];
  for (let sector = 0; sector < DEVICE_SECTORS && problems.length < 10; sector++) {
    let seq: number;
    try {
      seq = decodeSector(device, sector);
    } catch (error) {
      problems.push((error as Error).message);
      continue;
    }
    next[sector] = seq;
    const write = log.writes.get(seq);
    const fromThisRound = write !== undefined && write.firstSector <= sector && sector < write.firstSector + write.countSectors;
    if (newestDurable[sector] !== 0) {
      if (!fromThisRound || seq < newestDurable[sector]) {
        problems.push(`sector ${sector}: write ${newestDurable[sector]} was durable, the sector holds ${seq === 0 ? "zeros" : `write ${seq}`}`);
      }
    } else if (!fromThisRound && seq !== baseline[sector]) {
      problems.push(`sector ${sector}: holds ${seq === 0 ? "zeros" : `write ${seq}`}, expected its old content (${baseline[sector]}) or a write of this round`);
    }
  }
  assert.deepEqual(problems, [], "the device after the restart breaks the durability contract");
  return { baseline: next, durableWrites };
}

describe("fault: SIGKILL of the StorageDriver under NBD write load", function () {
  this.timeout(600_000);
  const tempDirs = new TempDirs("nbd-sigkill");
  const seed = seedFromEnvironment();
  const random = new SeededRandom(seed);
  const children: ChildProcess[] = [];
  let storagedriver: NbdStorageDriver | undefined;
  let directory: string;
  let baseline: Uint32Array = new Uint32Array(DEVICE_SECTORS);
  let nextSeq = 1;

  function server(): NbdStorageDriver {
    if (storagedriver === undefined) throw new Error("the StorageDriver did not start");
    return storagedriver;
  }

  function startChild(command: string, args: string[]): { child: ChildProcess; output: () => string } {
    // In the temp directory: nothing a client writes to its working directory lands in the checkout.
    const child = spawn(command, args, { cwd: directory, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let output = "";
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => { output += chunk; });
    child.stderr?.resume();
    return { child, output: () => output };
  }

  async function stopChild(child: ChildProcess): Promise<void> {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      killPid(child.pid, "SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  }

  async function waitForLine(output: () => string, pattern: RegExp, timeoutMs: number): Promise<void> {
    const deadlineMs = Date.now() + timeoutMs;
    while (!pattern.test(output())) {
      if (Date.now() > deadlineMs) throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${output().slice(-2000)}`);
      await sleep(20);
    }
  }

  /** Starts the tagged writer (and the fio stream when fio is there), runs for runMs, then stops the StorageDriver. */
  async function writeThenStop(runMs: number, stop: "SIGKILL" | "SIGTERM"): Promise<WriterLog> {
    const writer = startChild(LIBNBD_PYTHON, ["-u", WRITER, server().uri(TAGGED), String(nextSeq - 1), String(random.nextUint32()),
      String(WRITER_QUEUE_DEPTH), String(WRITER_SECTORS_MAX), String(WRITER_FLUSH_EVERY_WRITES)]);
    await waitForLine(writer.output, /^ready$/m, 30_000);
    const stream = toolMissingReason("fio") === undefined
      ? startChild("fio", ["--name=stream", "--ioengine=nbd", `--uri=${server().uri(STREAM)}`, "--rw=randwrite", "--bs=64k",
        "--iodepth=16", "--size=256M", "--time_based", "--runtime=120"])
      : undefined;
    await sleep(runMs);
    if (stop === "SIGKILL") {
      await server().kill();
    } else {
      const exit = await server().stop();
      assert.deepEqual(exit, { code: 0, signal: null }, server().harness.describe());
    }
    // Both clients see the connection die and exit; make sure of it by PID.
    await Promise.race([new Promise((resolve) => writer.child.once("exit", resolve)), sleep(5_000)]);
    await stopChild(writer.child);
    if (stream !== undefined) await stopChild(stream.child);
    const log = parseWriterLog(writer.output());
    nextSeq = log.lastSeq + 1;
    return log;
  }

  async function readTaggedDevice(): Promise<Buffer> {
    const file = path.join(directory, "tagged.img");
    await writeFile(file, "");
    await runToolOk("nbdcopy", [server().uri(TAGGED), file], { timeoutMs: 60_000 });
    return readFile(file);
  }

  before(async function () {
    requireTool(this, "python3-libnbd", "nbdcopy");
    console.log(`      seed ${seed} (replay with OVS_SEED=${seed}), ${ROUNDS} SIGKILL rounds${toolMissingReason("fio") === undefined ? ", fio streaming to a second vDisk" : ""}`);
    directory = await tempDirs.make();
    // Small SCOs and a short SCO age, so rounds cross SCO and TLog boundaries and uploads run.
    storagedriver = await NbdStorageDriver.start(directory, { settings: { scoSizeBytes: 4 * MIB, scoMaxAgeMs: 1_000 } });
    await storagedriver.createVdisk(TAGGED, DEVICE_SIZE_BYTES);
    await storagedriver.createVdisk(STREAM, 256 * MIB);
  });

  after(async function () {
    for (const child of children) await stopChild(child);
    await storagedriver?.killAll();
    await tempDirs.removeAll();
  });

  it(`every write acknowledged before the last completed flush survives ${ROUNDS} SIGKILLs`, async function () {
    for (let round = 1; round <= ROUNDS; round++) {
      const runMs = random.integer(1_000, 3_000);
      const log = await writeThenStop(runMs, "SIGKILL");
      assert.ok(log.completedFlushes > 0, `round ${round}: no flush completed in ${runMs} ms (${log.acknowledged} writes acknowledged)`);
      await server().restart();
      const device = await readTaggedDevice();
      const checked = checkRound(device, baseline, log, (write) => write.ackLine < log.lastCompletedFlushStartLine);
      baseline = checked.baseline;
      console.log(`      round ${round}: killed after ${runMs} ms; ${log.writes.size} writes sent, ${log.acknowledged} acknowledged, ` +
        `${log.completedFlushes} flushes completed, ${checked.durableWrites} writes had to survive: all did`);
    }
  });

  it("SIGTERM under write load: every acknowledged write survives, flushed or not", async function () {
    const log = await writeThenStop(random.integer(1_000, 2_000), "SIGTERM");
    await server().restart();
    const checked = checkRound(await readTaggedDevice(), baseline, log, (write) => write.ackLine !== Infinity);
    baseline = checked.baseline;
    console.log(`      clean stop: ${log.acknowledged} acknowledged writes, all there`);
    assert.ok(checked.durableWrites > 0);
  });
});

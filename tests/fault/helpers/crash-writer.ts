// Child process of tests/fault/crash-prefix.test.ts and snapshot-crash.test.ts: opens a vPool on a
// local backend, then writes self-identifying sectors (tests/helpers/sector-pattern.ts) at queue
// depth N with periodic flushes until it is SIGKILLed; with `snapshots` set it also takes snapshots
// between quiesced batches of writes, deletes the oldest ones and scrubs. It reports every event on
// stdout, one line each, *before* the event can matter to the parent's check:
//   ready                          the volume is open, writing starts
//   w <seq> <sector> <count> <fua> write <seq> is about to be issued (printed before write())
//   a <seq>                        write <seq> was acknowledged (printed after it resolved)
//   F <id>                         flush <id> is about to be issued (printed before flush())
//   f <id>                         flush <id> completed
//   S <name>                       snapshot <name> is about to be taken; no write is in flight, so it
//                                  holds exactly the writes issued before this line
//   s <name>                       snapshot <name> was acknowledged
//   D <name> / d <name>            deleting snapshot <name> begins / was acknowledged
//   C / c <scosRewritten>          a scrub begins / completed (it runs while writes go on; snapshot
//                                  steps wait for it)
//   n <note>                       something the parent should mention (e.g. no scrubber yet)
//   e <message>                    an operation failed: the parent fails the test
// Writes in flight never overlap (in sectors), so any two overlapping writes are ordered by
// acknowledgement-before-issue, and the device content has exactly one meaning.
// stdout is a pipe, which Node writes synchronously on Linux, so a printed line is in the pipe
// before the next statement runs and survives the SIGKILL.
import { pino } from "pino";
import { LocalObjectStore } from "../../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import type { VPool } from "../../../volumedriver/src/engine/vpool-types.ts";
import { SeededRandom } from "../../helpers/seeded-random.ts";
import { fillSectors, SECTOR_BYTES } from "../../helpers/sector-pattern.ts";

export interface CrashWriterArguments {
  directory: string;
  backendDirectory: string;
  vpoolName: string;
  volumeName: string;
  deviceSizeBytes: number;
  generation: number;
  /** First write number of this run; numbers never repeat across runs. */
  seqBase: number;
  seed: number;
  queueDepth: number;
  scoSizeBytes: number;
  scoMaxAgeMs: number;
  /** Take snapshots too (snapshot-crash.test.ts); absent: writes and flushes only. */
  snapshots?: SnapshotSteps;
  /** vPool setting; absent: the default. */
  scrubGracePeriodMs?: number;
}

export interface SnapshotSteps {
  /** A snapshot follows every 1..writesPerSnapshotMax writes. */
  writesPerSnapshotMax: number;
  /** Snapshots kept: older ones are deleted after each new one. */
  snapshotsKept: number;
  /** Chance of starting a scrub after a snapshot step (if the engine has a scrubber). */
  scrubProbability: number;
}

function emit(line: string): void {
  process.stdout.write(`${line}\n`);
}

function fail(what: string, error: unknown): never {
  emit(`e ${what}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
  process.exit(1);
}

interface InFlight {
  firstSector: number;
  endSector: number;
}

async function main(): Promise<void> {
  const argumentsJson = process.argv[2];
  if (argumentsJson === undefined) throw new Error("usage: crash-writer.ts '<json arguments>'");
  const options = JSON.parse(argumentsJson) as CrashWriterArguments;
  const random = new SeededRandom(options.seed);
  const backend = new LocalObjectStore(options.backendDirectory);
  const vpool = await openVPool({
    name: options.vpoolName,
    directory: options.directory,
    backend,
    scoSizeBytes: options.scoSizeBytes,
    scoMaxAgeMs: options.scoMaxAgeMs,
    scrubGracePeriodMs: options.scrubGracePeriodMs,
    logger: pino({ level: "warn" }, pino.destination(2)),
  });
  const volume = vpool.getVolume(options.volumeName) ?? (await vpool.createVolume(options.volumeName, options.deviceSizeBytes));
  const deviceSectors = options.deviceSizeBytes / SECTOR_BYTES;
  emit("ready");

  // Periodic flushes, possibly several at once (group commit).
  let flushId = 0;
  const flushLoop = async (): Promise<void> => {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, random.integer(2, 40)));
      const id = ++flushId;
      emit(`F ${id}`);
      volume.flush().then(
        () => emit(`f ${id}`),
        (error: unknown) => fail(`flush ${id}`, error),
      );
    }
  };
  void flushLoop();

  const inFlight = new Set<InFlight>();
  let seq = options.seqBase;
  let wakeUp: (() => void) | undefined;
  const overlaps = (first: number, end: number): boolean => {
    for (const write of inFlight) if (first < write.endSector && write.firstSector < end) return true;
    return false;
  };
  const snapshotSteps = options.snapshots === undefined ? undefined : new SnapshotStepper(vpool, options, random);
  let writesUntilSnapshot = snapshotSteps === undefined ? Infinity : random.integer(1, snapshotSteps.writesPerSnapshotMax);
  for (;;) {
    while (inFlight.size >= options.queueDepth) await new Promise<void>((resolve) => (wakeUp = resolve));
    if (snapshotSteps !== undefined && writesUntilSnapshot <= 0) {
      // Quiesce, so the snapshot holds exactly the writes issued so far.
      while (inFlight.size > 0) await new Promise<void>((resolve) => (wakeUp = resolve));
      await snapshotSteps.step();
      writesUntilSnapshot = random.integer(1, snapshotSteps.writesPerSnapshotMax);
    }
    // Sizes: mostly small, sometimes up to 256 KiB; offsets sector-aligned so many writes are
    // not cluster-aligned and exercise read-modify-write.
    const roll = random.nextFloat();
    const countSectors = roll < 0.7 ? random.integer(1, 8) : roll < 0.95 ? random.integer(8, 64) : random.integer(64, 512);
    let firstSector = random.integer(0, deviceSectors - countSectors);
    if (random.chance(0.3)) firstSector -= firstSector % 8; // cluster-aligned
    const endSector = firstSector + countSectors;
    if (overlaps(firstSector, endSector)) {
      // Pick again after the next completion rather than spin.
      if (inFlight.size > 0) await new Promise<void>((resolve) => (wakeUp = resolve));
      continue;
    }
    const thisSeq = seq++;
    writesUntilSnapshot--;
    const fua = random.chance(0.03);
    const data = Buffer.allocUnsafe(countSectors * SECTOR_BYTES);
    fillSectors(data, options.generation, thisSeq, firstSector);
    const entry: InFlight = { firstSector, endSector };
    inFlight.add(entry);
    emit(`w ${thisSeq} ${firstSector} ${countSectors} ${fua ? 1 : 0}`);
    volume.write(firstSector * SECTOR_BYTES, data, fua ? { fua: true } : undefined).then(
      () => {
        emit(`a ${thisSeq}`);
        inFlight.delete(entry);
        const wake = wakeUp;
        wakeUp = undefined;
        wake?.();
      },
      (error: unknown) => fail(`write ${thisSeq}`, error),
    );
    // Yield now and then so acknowledgements interleave with issues.
    if (thisSeq % 4 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
}

/** The snapshot steps between batches of writes: snapshot, delete the oldest, maybe scrub in the background. */
class SnapshotStepper {
  readonly writesPerSnapshotMax: number;
  private readonly kept: string[];
  private scrubbing: Promise<void> | undefined;
  private scrubAvailable: boolean;
  private nextNumber = 1;

  constructor(
    private readonly vpool: VPool,
    private readonly options: CrashWriterArguments,
    private readonly random: SeededRandom,
  ) {
    this.writesPerSnapshotMax = options.snapshots!.writesPerSnapshotMax;
    this.kept = vpool.listSnapshots(options.volumeName).map((info) => info.name);
    this.scrubAvailable = typeof vpool.scrubVolume === "function";
    if (!this.scrubAvailable) emit("n the engine has no scrubVolume: no scrubs");
  }

  async step(): Promise<void> {
    const { volumeName, generation, snapshots } = this.options;
    // Snapshot steps do not overlap a scrub: what the engine allows there is not this test's question.
    await this.scrubbing;
    const name = `g${generation}-${this.nextNumber++}`;
    emit(`S ${name}`);
    await this.vpool.createSnapshot(volumeName, name).catch((error: unknown) => fail(`createSnapshot ${name}`, error));
    emit(`s ${name}`);
    this.kept.push(name);
    while (this.kept.length > snapshots!.snapshotsKept) {
      const oldest = this.kept.shift()!;
      emit(`D ${oldest}`);
      await this.vpool.deleteSnapshot(volumeName, oldest).catch((error: unknown) => fail(`deleteSnapshot ${oldest}`, error));
      emit(`d ${oldest}`);
    }
    if (this.scrubAvailable && this.random.chance(snapshots!.scrubProbability)) {
      emit("C");
      this.scrubbing = this.vpool.scrubVolume(volumeName).then(
        (result) => emit(`c ${result.scosRewritten}`),
        (error: unknown) => {
          const message = error instanceof Error ? error.message : String(error);
          if (!/not implemented/i.test(message)) fail("scrubVolume", error);
          this.scrubAvailable = false;
          emit(`n scrubVolume: ${message}`);
        },
      );
    }
  }
}

main().catch((error: unknown) => fail("crash-writer", error));

// Goal: a model-based test of the volume engine: random sequences of writes (aligned and unaligned,
// 1 B..256 KiB, now and then up to 1 MiB), reads, trims, write-zeroes, block status, flushes, clean restarts, restarts from the
// backend on a fresh directory, in-process crashes and backend faults (errors and short outages of a
// failing(memory) backend), where every read must equal a plain Buffer model. After a crash the device
// must equal the model at some point between the last durable point (flush, FUA write, clean close)
// and the crash. Small SCOs (4 MiB) and a short scoMaxAgeMs exercise sealing and uploads.
//
// The seed is printed on failure; replay with OVS_SEED=<seed> (and OVS_MODEL_PATH=<path> for one
// run), shrink with OVS_SHRINK=1, scale with OVS_MODEL_RUNS=<runs>.
import assert from "node:assert/strict";
import fc from "fast-check";
import { pino } from "pino";
import { FailingObjectStore } from "../../../volumedriver/src/backend/failing-store.ts";
import { MemoryObjectStore } from "../../../volumedriver/src/backend/memory-store.ts";
import { RetryingObjectStore } from "../../../volumedriver/src/backend/retrying-store.ts";
import { isVolumeError } from "../../../volumedriver/src/engine/block-device.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";
import { CLUSTER_SIZE_BYTES, MIB, type Volume, type VPool, type VPoolConfig } from "../../../volumedriver/src/engine/vpool-types.ts";
import { byteRangeArbitrary, type ByteRange } from "../../helpers/byte-range-arbitrary.ts";
import { firstDifference, readWholeDevice } from "../../helpers/device-hash.ts";
import { SeededRandom, seedFromEnvironment } from "../../helpers/seeded-random.ts";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dir.ts";
import { sleep, withTimeout } from "../../helpers/volume-assertions.ts";

const DEVICE_SIZE_BYTES = 4 * MIB;
const IO_LENGTH_MAX_BYTES = 256 * 1024;
const IO_LENGTH_LARGE_MAX_BYTES = 1024 * 1024;
const VOLUME_NAME = "model";
const RUNS = Number(process.env.OVS_MODEL_RUNS ?? 8);
const OPERATIONS_MIN = 200;
const OPERATIONS_MAX = 450;
/** OVS_MODEL_STRICT_CRASH=1: after a crash, every operation must have landed whole or not at all. */
const STRICT_CRASH_ATOMICITY = process.env.OVS_MODEL_STRICT_CRASH === "1";

type Range = ByteRange;
type Operation =
  | ({ kind: "write"; dataSeed: number; fua: boolean } & Range)
  | ({ kind: "read" } & Range)
  | ({ kind: "trim" } & Range)
  | ({ kind: "writeZeroes"; noHole: boolean } & Range)
  | ({ kind: "blockStatus" } & Range)
  | { kind: "flush" }
  | { kind: "restart" }
  | { kind: "restartFromBackend" }
  | { kind: "crash" }
  | { kind: "outage"; durationMs: number }
  | { kind: "pause"; durationMs: number };
type MutatingOperation = Extract<Operation, { kind: "write" | "trim" | "writeZeroes" }>;

/** A byte range inside the device: half cluster-aligned, half arbitrary; lengths 1 B..256 KiB, now and then up to 1 MiB. */
function rangeArbitrary(): fc.Arbitrary<Range> {
  return byteRangeArbitrary({ deviceSizeBytes: DEVICE_SIZE_BYTES, lengthMaxBytes: IO_LENGTH_MAX_BYTES, largeLengthMaxBytes: IO_LENGTH_LARGE_MAX_BYTES });
}

function operationArbitrary(): fc.Arbitrary<Operation> {
  const range = rangeArbitrary();
  return fc.oneof(
    {
      weight: 40,
      arbitrary: fc
        .tuple(range, fc.integer(), fc.integer({ min: 0, max: 15 }))
        .map(([r, dataSeed, fuaRoll]) => ({ kind: "write" as const, dataSeed, fua: fuaRoll === 0, ...r })),
    },
    { weight: 20, arbitrary: range.map((r) => ({ kind: "read" as const, ...r })) },
    { weight: 5, arbitrary: range.map((r) => ({ kind: "trim" as const, ...r })) },
    { weight: 5, arbitrary: fc.tuple(range, fc.boolean()).map(([r, noHole]) => ({ kind: "writeZeroes" as const, noHole, ...r })) },
    { weight: 4, arbitrary: range.map((r) => ({ kind: "blockStatus" as const, ...r })) },
    { weight: 8, arbitrary: fc.constant({ kind: "flush" as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: "restartFromBackend" as const }) },
    { weight: 2, arbitrary: fc.constant({ kind: "crash" as const }) },
    { weight: 1, arbitrary: fc.integer({ min: 50, max: 800 }).map((durationMs) => ({ kind: "outage" as const, durationMs })) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 250 }).map((durationMs) => ({ kind: "pause" as const, durationMs })) },
  );
}

function applyToModel(model: Buffer, operation: MutatingOperation): void {
  const { offsetBytes, lengthBytes } = operation;
  if (operation.kind === "write") writeData(operation).copy(model, offsetBytes);
  else model.fill(0, offsetBytes, offsetBytes + lengthBytes);
}

function writeData(operation: Extract<Operation, { kind: "write" }>): Buffer {
  return new SeededRandom(operation.dataSeed).bytes(operation.lengthBytes);
}

/** True if every cluster of `device` equals the same cluster of `before` or of `after`. */
function isClusterwiseBetween(device: Buffer, before: Buffer, after: Buffer): boolean {
  for (let offset = 0; offset < device.length; offset += CLUSTER_SIZE_BYTES) {
    const end = offset + CLUSTER_SIZE_BYTES;
    const cluster = device.subarray(offset, end);
    if (!cluster.equals(before.subarray(offset, end)) && !cluster.equals(after.subarray(offset, end))) return false;
  }
  return true;
}

function describeOperation(operation: Operation): string {
  return JSON.stringify(operation);
}

interface FaultPlan {
  faultSeed: number;
  errorProbability: number;
}

/** One run: a vPool on a failing(memory) backend, driven by `operations`, checked against a Buffer model. */
class ModelRun {
  private readonly memory = new MemoryObjectStore();
  private readonly failing: FailingObjectStore;
  private readonly backend: RetryingObjectStore;
  private readonly directories: string[] = [];
  private directory = "";
  private vpool: VPool | undefined;
  private volume!: Volume;
  private readonly model = Buffer.alloc(DEVICE_SIZE_BYTES);
  /** The model at the last durable point, and the mutations applied since. */
  private durable = Buffer.alloc(DEVICE_SIZE_BYTES);
  private sinceDurable: MutatingOperation[] = [];
  private outageTimer: NodeJS.Timeout | undefined;
  private outageUntilMs = 0;
  readonly counts = new Map<string, number>();

  constructor(private readonly plan: FaultPlan) {
    this.failing = new FailingObjectStore(this.memory, { seed: plan.faultSeed, errorProbability: plan.errorProbability, timeoutProbability: 0 });
    this.backend = new RetryingObjectStore(this.failing, { attemptsMax: 8, backoffInitialMs: 1, backoffMaxMs: 20 });
  }

  private config(): VPoolConfig {
    return {
      name: "model",
      directory: this.directory,
      backend: this.backend,
      scoSizeBytes: 4 * MIB,
      scoMaxAgeMs: 150,
      tlogScoCountMax: 2,
      writeBufferSizeBytes: 64 * MIB,
      readCacheSizeBytes: 1 * MIB,
      metadataCacheSizeBytes: MIB,
      prefetchClusters: 16,
      logger: pino({ level: "silent" }),
    };
  }

  async start(): Promise<void> {
    this.directory = await this.newDirectory();
    this.vpool = await openVPool(this.config());
    this.volume = await this.vpool.createVolume(VOLUME_NAME, DEVICE_SIZE_BYTES);
  }

  private async newDirectory(): Promise<string> {
    const directory = await makeTempDir("engine-model");
    this.directories.push(directory);
    return directory;
  }

  private async reopen(): Promise<void> {
    this.vpool = await withTimeout(openVPool(this.config()), 30_000, "openVPool");
    const volume = this.vpool.getVolume(VOLUME_NAME);
    assert.ok(volume, `volume ${VOLUME_NAME} is back after reopening ${this.directory}`);
    this.volume = volume;
  }

  private markDurable(): void {
    this.durable = Buffer.from(this.model);
    this.sinceDurable = [];
  }

  private endOutage(): void {
    clearTimeout(this.outageTimer);
    this.outageTimer = undefined;
    this.outageUntilMs = 0;
    this.failing.endOutage();
  }

  async execute(operation: Operation): Promise<void> {
    this.counts.set(operation.kind, (this.counts.get(operation.kind) ?? 0) + 1);
    switch (operation.kind) {
      case "write":
        if (!(await this.mutation(operation, () => this.volume.write(operation.offsetBytes, writeData(operation), operation.fua ? { fua: true } : undefined)))) return;
        if (operation.fua) this.markDurable();
        return;
      case "trim":
        await this.mutation(operation, () => this.volume.trim(operation.offsetBytes, operation.lengthBytes));
        return;
      case "writeZeroes":
        await this.mutation(operation, () => this.volume.writeZeroes(operation.offsetBytes, operation.lengthBytes, { noHole: operation.noHole }));
        return;
      case "read":
        return this.checkRead(operation);
      case "blockStatus":
        return this.checkBlockStatus(operation);
      case "flush":
        await this.volume.flush();
        return this.markDurable();
      case "restart":
        // A local restart needs no backend; end outages anyway so reopening has one clear meaning.
        this.endOutage();
        await withTimeout(this.vpool!.close(), 30_000, "close");
        await this.reopen();
        await this.checkWholeDevice("after a clean restart");
        return this.markDurable();
      case "restartFromBackend": {
        this.endOutage();
        await withTimeout(this.volume.drain(), 30_000, "drain");
        assert.equal(this.volume.stats().notUploadedBytes, 0, "drain leaves nothing to upload");
        await withTimeout(this.vpool!.close(), 30_000, "close");
        const old = this.directory;
        this.directory = await this.newDirectory();
        await removeTempDir(old);
        await this.reopen();
        await this.checkWholeDevice("after a restart from the backend on a fresh directory");
        return this.markDurable();
      }
      case "crash":
        return this.crash();
      case "outage":
        this.failing.startOutage(operation.durationMs);
        this.outageUntilMs = Date.now() + operation.durationMs;
        clearTimeout(this.outageTimer);
        this.outageTimer = setTimeout(() => (this.outageUntilMs = 0), operation.durationMs);
        return;
      case "pause":
        return sleep(operation.durationMs);
    }
  }

  /**
   * Runs a mutation and applies it to the model. A write that only partly covers a cluster whose
   * data lives on the backend needs that cluster (read-modify-write): while the backend is down it
   * may fail with a clear Io error, and must then have changed nothing. Returns whether it applied.
   */
  private async mutation(operation: MutatingOperation, run: () => Promise<void>): Promise<boolean> {
    try {
      await run();
    } catch (error) {
      const partial = operation.offsetBytes % CLUSTER_SIZE_BYTES !== 0 || (operation.offsetBytes + operation.lengthBytes) % CLUSTER_SIZE_BYTES !== 0;
      if (isVolumeError(error, "Io") && partial && this.outageUntilMs > 0) {
        this.counts.set("io-errors-during-outage", (this.counts.get("io-errors-during-outage") ?? 0) + 1);
        return false;
      }
      throw error;
    }
    applyToModel(this.model, operation);
    this.sinceDurable.push(operation);
    return true;
  }

  private async checkRead(range: Range): Promise<void> {
    let actual: Buffer;
    try {
      actual = await this.volume.read(range.offsetBytes, range.lengthBytes);
    } catch (error) {
      // Reads that must go to the backend may fail while it is down, but only with a clear Io error.
      if (isVolumeError(error, "Io") && this.outageUntilMs > 0) {
        this.counts.set("io-errors-during-outage", (this.counts.get("io-errors-during-outage") ?? 0) + 1);
        return;
      }
      throw error;
    }
    const expected = this.model.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes);
    const difference = firstDifference(actual, expected);
    assert.equal(difference, -1, `read ${range.offsetBytes}+${range.lengthBytes} differs from the model at byte ${range.offsetBytes + difference}`);
  }

  private async checkBlockStatus(range: Range): Promise<void> {
    let extents;
    try {
      extents = await this.volume.blockStatus(range.offsetBytes, range.lengthBytes);
    } catch (error) {
      if (isVolumeError(error, "Io") && this.outageUntilMs > 0) return;
      throw error;
    }
    let cursor = range.offsetBytes;
    for (const extent of extents) {
      assert.equal(extent.offsetBytes, cursor, `block status extents are contiguous: ${JSON.stringify(extents)}`);
      cursor += extent.lengthBytes;
      if (!extent.allocated) {
        // A hole must read as zeros: the model has only zeros there.
        const slice = this.model.subarray(extent.offsetBytes, extent.offsetBytes + extent.lengthBytes);
        assert.equal(firstDifference(slice, Buffer.alloc(slice.length)), -1, `block status reports a hole at ${extent.offsetBytes}+${extent.lengthBytes} where the model has data`);
      }
    }
    assert.equal(cursor, range.offsetBytes + range.lengthBytes, `block status covers the range: ${JSON.stringify(extents)}`);
  }

  private async checkWholeDevice(when: string): Promise<void> {
    const device = await readWholeDevice(this.volume, MIB);
    const difference = firstDifference(device, this.model);
    assert.equal(difference, -1, `device differs from the model ${when}, first at byte ${difference}`);
  }

  /**
   * simulateCrash, reopen on the same directory, and find the history prefix the device shows: the
   * state after the first k mutations since the last durable point. With STRICT_CRASH_ATOMICITY off
   * (the default), mutation k+1 may also show in part, cluster by cluster (each touched cluster
   * wholly old or wholly new): a torn multi-cluster operation. Those are counted and reported.
   */
  private async crash(): Promise<void> {
    await this.vpool!.simulateCrash();
    this.vpool = undefined;
    this.endOutage();
    await this.reopen();
    const device = await readWholeDevice(this.volume, MIB);
    const before = Buffer.from(this.durable);
    let matched: { complete: number; torn: boolean } | undefined = device.equals(before) ? { complete: 0, torn: false } : undefined;
    for (let index = 0; index < this.sinceDurable.length && matched === undefined; index++) {
      const after = Buffer.from(before);
      applyToModel(after, this.sinceDurable[index]!);
      if (device.equals(after)) matched = { complete: index + 1, torn: false };
      else if (!STRICT_CRASH_ATOMICITY && isClusterwiseBetween(device, before, after)) matched = { complete: index, torn: true };
      after.copy(before);
    }
    if (matched === undefined) {
      const fromDurable = firstDifference(device, this.durable);
      const fromLatest = firstDifference(device, this.model);
      assert.fail(
        `after a crash the device equals no prefix of the ${this.sinceDurable.length} mutations since the last durable point ` +
          `(${this.sinceDurable.map(describeOperation).join(", ")}); ` +
          `first difference from the durable state at byte ${fromDurable}, from the latest state at byte ${fromLatest}` +
          (STRICT_CRASH_ATOMICITY ? " (strict: no torn operations allowed)" : ""),
      );
    }
    // Later mutations were lost by the crash: the model follows the device.
    device.copy(this.model);
    this.counts.set("crash-lost-mutations", (this.counts.get("crash-lost-mutations") ?? 0) + this.sinceDurable.length - matched.complete);
    if (matched.torn) this.counts.set("crash-torn-operations", (this.counts.get("crash-torn-operations") ?? 0) + 1);
    this.markDurable();
  }

  async finish(): Promise<void> {
    this.endOutage();
    // The end of every run: everything written must drain and come back from the backend alone.
    await this.execute({ kind: "restartFromBackend" });
  }

  async dispose(): Promise<void> {
    this.endOutage();
    if (this.vpool !== undefined) await withTimeout(this.vpool.close({ timeoutMs: 5_000 }), 15_000, "close").catch(() => undefined);
    this.vpool = undefined;
    await this.backend.close().catch(() => undefined);
    for (const directory of this.directories) await removeTempDir(directory);
  }
}

describe("volumedriver engine: model-based test against a Buffer model", function () {
  this.timeout(240_000);

  it(`every read equals the model over ${RUNS} random runs of ${OPERATIONS_MIN}-${OPERATIONS_MAX} operations with restarts, crashes and backend faults`, async function () {
    // Goal: the engine behaves as a plain byte array through any interleaving of I/O, restarts, crashes and faults.
    const seed = seedFromEnvironment();
    const path = process.env.OVS_MODEL_PATH;
    const totals = new Map<string, number>();
    const startedMs = Date.now();
    const property = fc.asyncProperty(
      fc.record({ faultSeed: fc.integer(), errorProbability: fc.constantFrom(0, 0.01, 0.05) }),
      fc.array(operationArbitrary(), { minLength: OPERATIONS_MIN, maxLength: OPERATIONS_MAX }),
      async (plan, operations) => {
        const run = new ModelRun(plan);
        try {
          await run.start();
          for (let index = 0; index < operations.length; index++) {
            const operation = operations[index]!;
            try {
              await withTimeout(run.execute(operation), 60_000, describeOperation(operation));
            } catch (error) {
              const message = error instanceof Error ? error.message : String(error);
              throw new Error(`operation ${index} ${describeOperation(operation)} failed: ${message}`, { cause: error });
            }
          }
          await run.finish();
          for (const [kind, count] of run.counts) totals.set(kind, (totals.get(kind) ?? 0) + count);
        } finally {
          await run.dispose();
        }
      },
    );
    try {
      await fc.assert(property, {
        seed,
        path,
        numRuns: path === undefined ? RUNS : 1,
        endOnFailure: process.env.OVS_SHRINK === undefined,
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`engine model test failed; replay with OVS_SEED=${seed}${path === undefined ? "" : ` OVS_MODEL_PATH=${path}`} (add OVS_SHRINK=1 to shrink)\n${message}`, { cause: error });
    }
    const operationCount = [...totals].filter(([kind]) => !kind.startsWith("crash-") && !kind.startsWith("io-errors")).reduce((sum, [, count]) => sum + count, 0);
    console.log(`      engine-model: seed ${seed}, ${operationCount} operations in ${Date.now() - startedMs} ms: ${[...totals].map(([kind, count]) => `${kind} ${count}`).join(", ")}`);
    assert.ok(operationCount >= 1000, `thousands of operations in total (got ${operationCount})`);
  });
});

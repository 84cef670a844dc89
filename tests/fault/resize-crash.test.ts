// Goal: growing a vDisk and changing its settings survive SIGKILL. A child (helpers/resize-child.ts)
// grows the vDisk, writes and flushes its new last MiB, and sets an override; it kills itself between
// storing the new volume.json on the backend and locally (OVS_CRASH_AT=config-stored-backend), after
// the local copy (config-stored-local), or is killed at a random time. After each kill, reopened here
// on the same directory:
// - the vDisk opens, its data from before is intact;
// - a grow that was acknowledged is there; the backend's volume.json is never smaller than the local
//   one (a restore elsewhere never gets less), and never has other overrides than what was begun;
// - the flushed write past the old end reads back when it was acknowledged;
// - a grow that was cut short can be made again.
// After a clean close, a restore on a new directory from the backend alone has the same size and data.
//
// Replay: OVS_SEED=<seed> npx mocha --no-config --node-option import=tsx --timeout 300000 --exit tests/fault/resize-crash.test.ts
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { LocalObjectStore } from "../../volumedriver/src/backend/local-store.ts";
import { decodeVolumeConfig, VOLUME_CONFIG_KEY } from "../../volumedriver/src/engine/formats/volume-config.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { MIB, type VPool } from "../../volumedriver/src/engine/vpool-types.ts";
import { sha256 } from "../helpers/device-hash.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { runUntilKilled } from "./helpers/crash-rounds.ts";
import type { ResizeChildArguments } from "./helpers/resize-child.ts";

const CHILD = fileURLToPath(new URL("helpers/resize-child.ts", import.meta.url));
const VPOOL = "growcrash";
const VOLUME = "g";
const SCO_SIZE_BYTES = 4 * MIB;
const START_SIZE_BYTES = 8 * MIB;
const GROW_BYTES = 4 * MIB;
const STEPS = ["config-stored-backend", "config-stored-local"];
const RANDOM_ROUNDS = 6;
const CRASH_POINT_WAIT_MS = 8_000;

describe("fault: resize and per-vDisk settings under SIGKILL", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("resize-crash");
  const children = new Set<ChildProcess>();

  after(async function () {
    for (const child of children) child.kill("SIGKILL");
    await tempDirs.removeAll();
  });

  it("keeps data and acknowledged grows, never leaves the backend smaller than the local copy", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const vpoolDirectory = await tempDirs.make();
    const backendDirectory = await tempDirs.make();
    const open = async (directory = vpoolDirectory): Promise<{ vpool: VPool; backend: LocalObjectStore }> => {
      const backend = await LocalObjectStore.open(backendDirectory);
      return { vpool: await openVPool({ name: VPOOL, directory, backend, scoSizeBytes: SCO_SIZE_BYTES }), backend };
    };
    const close = async (state: { vpool: VPool; backend: LocalObjectStore }): Promise<void> => {
      await state.vpool.close();
      await state.backend.close();
    };
    const backendConfig = async (state: { vpool: VPool; backend: LocalObjectStore }) =>
      decodeVolumeConfig(await state.backend.get(state.vpool.listVolumes()[0].namespace, VOLUME_CONFIG_KEY));

    let state = await open();
    const base = random.bytes(START_SIZE_BYTES);
    await (await state.vpool.createVolume(VOLUME, START_SIZE_BYTES)).write(0, base);
    await close(state);
    /** What must read back: the base data, then each acknowledged tail write (offset → fill). */
    const tails = new Map<number, number>();
    let sizeBytes = START_SIZE_BYTES;
    /** The round whose overrides the vDisk has (undefined: none yet). */
    let configuredFill: number | undefined;

    const rounds = [...STEPS.map((step) => ({ step, killAfterMs: -1 })), ...Array.from({ length: RANDOM_ROUNDS }, () => ({ step: "", killAfterMs: random.integer(0, 30) }))];
    const summary: string[] = [];
    for (const [index, round] of rounds.entries()) {
      const context = `seed ${seed}, ${round.step === "" ? `random kill after ${round.killAfterMs} ms` : `crash at ${round.step}`}`;
      const fill = index + 1;
      const target = sizeBytes + GROW_BYTES;
      const childArguments: ResizeChildArguments = { vpoolDirectory, backendDirectory, vpoolName: VPOOL, volumeName: VOLUME, scoSizeBytes: SCO_SIZE_BYTES, sizeBytes: target, fill };
      const killed = await runUntilKilled(CHILD, childArguments, round.step === "" ? round.killAfterMs : CRASH_POINT_WAIT_MS, children, context, round.step === "" ? undefined : round.step);
      if (round.step !== "") assert.ok(killed.killedItself, `${context}: the child should have died at the crash point:\n${killed.stdout.slice(-2000)}`);
      const output = killed.stdout;
      const acknowledged = { resized: output.includes("resized\n"), written: output.includes("written\n"), configured: output.includes("configured\n") };

      state = await open();
      const volume = state.vpool.getVolume(VOLUME);
      assert.ok(volume !== undefined, `${context}: the vDisk opens (${JSON.stringify(state.vpool.listVolumes())})`);
      const local = volume.sizeBytes;
      const stored = await backendConfig(state);
      assert.ok(local === sizeBytes || local === target, `${context}: size ${local} is the old or the new one`);
      if (acknowledged.resized) assert.equal(local, target, `${context}: an acknowledged grow is kept`);
      if (round.step === "config-stored-backend") assert.equal(local, sizeBytes, `${context}: the local volume.json was not written yet`);
      if (round.step === "config-stored-local") assert.equal(local, target, `${context}: the local volume.json was written`);
      assert.ok(stored.sizeBytes >= local, `${context}: the backend's volume.json (${stored.sizeBytes}) is not smaller than the local one (${local})`);
      const overrides = volume.info().overrides;
      if (acknowledged.configured) assert.deepEqual(overrides, { scoMaxAgeMs: 1000 + fill }, `${context}: acknowledged overrides`);
      const before = configuredFill === undefined ? {} : { scoMaxAgeMs: 1000 + configuredFill };
      assert.ok(JSON.stringify(overrides) === JSON.stringify(before) || overrides.scoMaxAgeMs === 1000 + fill,
        `${context}: overrides ${JSON.stringify(overrides)} are the ones from before or the ones begun`);
      if (overrides.scoMaxAgeMs === 1000 + fill) configuredFill = fill;
      if (acknowledged.written) tails.set(target - MIB, fill);
      assert.ok((await volume.read(0, START_SIZE_BYTES)).equals(base), `${context}: the data from before the grow`);
      for (const [offset, byte] of tails) {
        if (offset + MIB > local) continue;
        assert.ok((await volume.read(offset, MIB)).equals(Buffer.alloc(MIB, byte)), `${context}: the flushed write at ${offset}`);
      }
      // A grow cut short is made again; the next round grows from here.
      if (local !== target) await state.vpool.resizeVolume(VOLUME, target);
      sizeBytes = target;
      summary.push(`${round.step || `random ${round.killAfterMs} ms`}: ${Object.entries(acknowledged).filter(([, done]) => done).map(([step]) => step).join("+") || "nothing acknowledged"}`);
      await close(state);
    }

    // Everything on the backend after a clean close: a new host restores the same vDisk.
    state = await open(await tempDirs.make());
    const restored = state.vpool.getVolume(VOLUME)!;
    assert.equal(restored.sizeBytes, sizeBytes, `seed ${seed}: restored size`);
    assert.equal(sha256(await restored.read(0, START_SIZE_BYTES)), sha256(base), `seed ${seed}: restored data`);
    for (const [offset, byte] of tails) assert.ok((await restored.read(offset, MIB)).equals(Buffer.alloc(MIB, byte)), `seed ${seed}: restored write at ${offset}`);
    await close(state);
    console.log(`      seed ${seed}: ${summary.join("; ")}`);
  });
});

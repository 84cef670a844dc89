// Goal: a SIGKILL at any step of a scrub leaves every vDisk and every snapshot readable and equal to
// what it held before (scrubbing never changes data), and a later scrub completes and collects what
// the killed one left. The child process scrubs a vDisk that has snapshots, deleted snapshots, a
// clone and head writes; it is killed at each named step of applying the result (OVS_CRASH_AT, see
// volumedriver/src/engine/crash-points.ts) and at random times; after each kill this process opens
// the vPool, compares every vDisk and snapshot with the recorded hashes, and makes new garbage for
// the next round.
//
// Replay: OVS_SEED=<seed> npx mocha --no-config --node-option import=tsx --timeout 300000 --exit tests/fault/scrub-crash.test.ts
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { LocalObjectStore } from "../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { MIB, type VPool } from "../../volumedriver/src/engine/vpool-types.ts";
import { hashDevice } from "../helpers/device-hash.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { sleep } from "../helpers/volume-assertions.ts";
import type { ScrubChildArguments } from "./helpers/scrub-child.ts";

const CHILD = fileURLToPath(new URL("helpers/scrub-child.ts", import.meta.url));
const DEVICE_SIZE_BYTES = 16 * MIB;
const SCO_SIZE_BYTES = 4 * MIB;
const WRITE_BYTES = 64 * 1024;
const VPOOL = "scrubcrash";
const STEPS = ["scrub-rewritten", "scrub-reserved", "scrub-relocated", "scrub-applied", "scrub-collecting"];
const RANDOM_ROUNDS = 3;

/** Hashes of every vDisk and every snapshot of the vPool, by "vdisk" and "vdisk@snapshot". */
async function hashAll(vpool: VPool): Promise<Map<string, string>> {
  const hashes = new Map<string, string>();
  for (const info of vpool.listVolumes()) {
    const volume = vpool.getVolume(info.name);
    assert.ok(volume !== undefined, `vDisk ${info.name} is ${info.state}: ${info.error ?? ""}`);
    hashes.set(info.name, await hashDevice(volume));
    for (const snapshot of vpool.listSnapshots(info.name)) {
      const view = await vpool.openSnapshot(info.name, snapshot.name);
      try {
        hashes.set(`${info.name}@${snapshot.name}`, await hashDevice(view));
      } finally {
        await view.close();
      }
    }
  }
  return hashes;
}

describe("fault: SIGKILL during scrub and scrub-apply", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("scrub-crash");
  const children = new Set<ChildProcess>();

  after(async function () {
    for (const child of children) if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await tempDirs.removeAll();
  });

  it("keeps every vDisk and snapshot intact when killed at each step and at random times", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const vpoolDirectory = await tempDirs.make("vpool");
    const backendDirectory = await tempDirs.make("backend");
    const open = async (): Promise<{ vpool: VPool; backend: LocalObjectStore }> => {
      const backend = await LocalObjectStore.open(backendDirectory);
      const vpool = await openVPool({ name: VPOOL, directory: vpoolDirectory, backend, scoSizeBytes: SCO_SIZE_BYTES, scrubGracePeriodMs: 0 });
      return { vpool, backend };
    };
    const close = async (state: { vpool: VPool; backend: LocalObjectStore }): Promise<void> => {
      await state.vpool.close();
      await state.backend.close();
    };
    let snapshotCounter = 0;
    /** Overwrites, snapshots, deletes all but the last two snapshots (except the clone's parent). */
    const makeGarbage = async (vpool: VPool): Promise<void> => {
      const volume = vpool.getVolume("a");
      assert.ok(volume !== undefined);
      for (let round = 0; round < 3; round++) {
        for (let write = 0; write < 48; write++) {
          const offset = random.integer(0, DEVICE_SIZE_BYTES / WRITE_BYTES - 1) * WRITE_BYTES;
          await volume.write(offset, random.bytes(WRITE_BYTES));
        }
        await vpool.createSnapshot("a", `s${snapshotCounter++}`);
      }
      const snapshots = vpool.listSnapshots("a");
      for (const snapshot of snapshots.slice(0, -2)) {
        if (snapshot.clones.length === 0) await vpool.deleteSnapshot("a", snapshot.name);
      }
      await volume.write(random.integer(0, DEVICE_SIZE_BYTES / WRITE_BYTES - 1) * WRITE_BYTES, random.bytes(WRITE_BYTES));
      await volume.flush();
    };

    let state = await open();
    await state.vpool.createVolume("a", DEVICE_SIZE_BYTES);
    await makeGarbage(state.vpool);
    await state.vpool.cloneVolume("c", { volume: "a", snapshot: state.vpool.listSnapshots("a")[0].name });
    await state.vpool.getVolume("c")?.write(0, random.bytes(WRITE_BYTES));
    await makeGarbage(state.vpool);
    let expected = await hashAll(state.vpool);
    await close(state);

    const rounds = [...STEPS.map((step) => ({ step, killAfterMs: -1 })), ...Array.from({ length: RANDOM_ROUNDS }, () => ({ step: "", killAfterMs: random.integer(0, 400) }))];
    const summary: string[] = [];
    for (const round of rounds) {
      const context = `seed ${seed}, ${round.step === "" ? `random kill after ${round.killAfterMs} ms` : `crash at ${round.step}`}`;
      const childArguments: ScrubChildArguments = { vpoolDirectory, backendDirectory, vpoolName: VPOOL, volumeName: "a", scoSizeBytes: SCO_SIZE_BYTES };
      const child = spawn(process.execPath, ["--import", "tsx", CHILD, JSON.stringify(childArguments)], {
        stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...(round.step === "" ? {} : { OVS_CRASH_AT: round.step }) },
      });
      children.add(child);
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => { output += chunk.toString(); });
      child.stderr.on("data", (chunk: Buffer) => { output += chunk.toString(); });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
      if (round.killAfterMs >= 0) {
        const deadline = Date.now() + 60_000;
        while (!output.includes("ready\n") && child.exitCode === null && Date.now() < deadline) await sleep(5);
        await sleep(round.killAfterMs);
        child.kill("SIGKILL");
      }
      const exit = await exited;
      children.delete(child);
      if (round.step !== "") {
        assert.equal(exit.signal, "SIGKILL", `${context}: the child should have died at the crash point; it exited with ${exit.code}:\n${output.slice(-2000)}`);
      }
      summary.push(`${round.step || `random ${round.killAfterMs} ms`}: ${exit.signal ?? `exit ${exit.code}`}`);

      state = await open();
      const actual = await hashAll(state.vpool);
      for (const [name, hash] of expected) assert.equal(actual.get(name), hash, `${context}: ${name} changed after the kill`);
      await makeGarbage(state.vpool);
      expected = await hashAll(state.vpool);
      await close(state);
    }

    // A scrub to the end collects what the killed ones left and still changes no data.
    state = await open();
    const result = await state.vpool.scrubVolume("a");
    const after = await hashAll(state.vpool);
    for (const [name, hash] of expected) assert.equal(after.get(name), hash, `seed ${seed}: ${name} changed by the final scrub`);
    await close(state);
    state = await open();
    const restarted = await hashAll(state.vpool);
    for (const [name, hash] of expected) assert.equal(restarted.get(name), hash, `seed ${seed}: ${name} changed after a restart`);
    await close(state);
    console.log(`      seed ${seed}; ${summary.join("; ")}; final scrub: ${JSON.stringify(result)}`);
  });
});

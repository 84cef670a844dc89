// Goal: a vDisk on a real Swift (native API, through the StorageDriver's backend stack) rides out a
// 20 s outage of the Swift proxy during a write stream: the proxy is killed and started again 20 s
// later; no write and no flush fails (they stall once the write buffer is full), everything drains
// once the proxy is back, and a restore from the backend on an empty directory equals every write.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { MIB } from "../../volumedriver/src/engine/vpool-types.ts";
import type { BackendSpec } from "../../volumedriver/src/storagedriver/backend-spec.ts";
import { openBackend } from "../../volumedriver/src/storagedriver/backend-opener.ts";
import { sha256 } from "../helpers/device-hash.ts";
import { requireServer, startSwift, type SwiftServer } from "../helpers/object-servers.ts";
import { killPid } from "../helpers/process-harness.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { sleep } from "../helpers/volume-assertions.ts";

const DEVICE_SIZE_BYTES = 128 * MIB;
const WRITE_BYTES = 256 * 1024;
const OUTAGE_MS = 20_000;
const OUTAGE_STARTS_AFTER_MS = 2_000;
const STREAM_MS = OUTAGE_STARTS_AFTER_MS + OUTAGE_MS + 5_000;
const FLUSH_EVERY_WRITES = 32;

describe("fault: a 20 s Swift proxy outage during a write stream", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("swift-outage");
  let swift: SwiftServer | undefined;
  let restartedProxy: ChildProcess | undefined;

  before(async function () {
    this.timeout(120_000);
    requireServer(this, "swift");
    swift = await startSwift(await tempDirs.make("swift"));
  });

  after(async function () {
    this.timeout(60_000);
    if (restartedProxy?.pid !== undefined) killPid(restartedProxy.pid, "SIGKILL");
    await swift?.stop().catch(() => undefined);
    await tempDirs.removeAll();
  });

  it("stalls writes without failing them, then drains and restores bit for bit", async function () {
    const server = swift as SwiftServer;
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const environment = { ST_USER: server.swift.user, ST_KEY: server.swift.key };
    const spec: BackendSpec = { type: "swift", auth: "tempauth", authUrl: server.swift.authUrl, containerPrefix: "outage-" };
    const open = async (directory: string) => {
      const backend = openBackend(spec, undefined, environment);
      const vpool = await openVPool({
        name: "outage", directory, backend: backend.store, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 500, writeBufferSizeBytes: 32 * MIB,
      });
      return { backend, vpool };
    };
    let state = await open(await tempDirs.make("vpool"));
    const volume = await state.vpool.createVolume("disk", DEVICE_SIZE_BYTES);
    const model = Buffer.alloc(DEVICE_SIZE_BYTES);

    // The proxy's line in the pid file: "proxy-server PID START".
    const pids = await readFile(path.join(server.directory, "pids"), "utf8");
    const proxyLine = pids.split("\n").find((line) => line.startsWith("proxy-server "));
    assert.ok(proxyLine !== undefined, `no proxy in ${pids}`);
    const proxyPid = Number(proxyLine.split(" ")[1]);
    const outage = (async () => {
      await sleep(OUTAGE_STARTS_AFTER_MS);
      assert.ok(killPid(proxyPid, "SIGKILL"), "the proxy was running");
      const stoppedAtMs = Date.now();
      await sleep(OUTAGE_MS);
      restartedProxy = spawn("swift-proxy-server", [path.join(server.directory, "etc", "proxy-server.conf"), "--verbose"], { stdio: "ignore" });
      return Date.now() - stoppedAtMs;
    })();

    const startedMs = Date.now();
    let writes = 0;
    let slowestMs = 0;
    while (Date.now() - startedMs < STREAM_MS) {
      const offset = random.integer(0, DEVICE_SIZE_BYTES / WRITE_BYTES - 1) * WRITE_BYTES;
      const data = random.bytes(WRITE_BYTES);
      const writeStartedMs = Date.now();
      await volume.write(offset, data); // must never throw
      data.copy(model, offset);
      writes++;
      if (writes % FLUSH_EVERY_WRITES === 0) await volume.flush();
      slowestMs = Math.max(slowestMs, Date.now() - writeStartedMs);
    }
    const outageMs = await outage;
    const stats = volume.stats();
    assert.ok(stats.stalledWrites > 0, `seed ${seed}: writes never stalled during the outage (${JSON.stringify(stats)})`);
    await volume.drain();
    assert.equal(volume.stats().notUploadedBytes, 0);
    await state.vpool.close();
    await state.backend.store.close();

    state = await open(await tempDirs.make("restored"));
    const restored = state.vpool.getVolume("disk");
    assert.ok(restored !== undefined, `seed ${seed}: the vDisk is not on the backend`);
    const data = Buffer.alloc(DEVICE_SIZE_BYTES);
    for (let offset = 0; offset < DEVICE_SIZE_BYTES; offset += 8 * MIB) (await restored.read(offset, 8 * MIB)).copy(data, offset);
    assert.equal(sha256(data), sha256(model), `seed ${seed}: the restored vDisk differs from the writes`);
    await state.vpool.deleteVolume("disk");
    await state.vpool.close();
    await state.backend.store.close();
    console.log(`      seed ${seed}: ${writes} writes of ${WRITE_BYTES / 1024} KiB, proxy down ${outageMs} ms, slowest write ${slowestMs} ms, `
      + `stalled ${stats.stalledWrites}, throttled ${stats.throttledWrites}; restored bit for bit`);
  });
});

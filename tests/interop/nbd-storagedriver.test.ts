// Goal: the StorageDriver process serves its vPool over NBD as configured: one export per running
// vDisk, following creates and deletes at once; it announces the NBD address and the exports; a busy
// NBD port is a clear startup error; SIGTERM with NBD clients connected closes NBD first and stops
// cleanly in time, and data written over NBD is there after the restart.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import path from "node:path";
import { ChildHarness, freePort, killPid } from "../helpers/process-harness.ts";
import { LIBNBD_PYTHON, NbdStorageDriver, requireTool, runTool, runToolOk } from "../helpers/nbd-tools.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const MIB = 1024 * 1024;

describe("NBD interop: the StorageDriver serves its vDisks", function () {
  this.timeout(180_000);
  const tempDirs = new TempDirs("nbd-storagedriver");
  const storagedrivers: NbdStorageDriver[] = [];
  const clientPids: number[] = [];

  async function exportNames(port: number): Promise<string[]> {
    const listed = await runToolOk("nbdinfo", ["--list", "--json", `nbd://127.0.0.1:${port}`]);
    return (JSON.parse(listed.stdout) as { exports: Array<{ "export-name": string }> }).exports.map((entry) => entry["export-name"]).sort();
  }

  after(async function () {
    for (const pid of clientPids) killPid(pid, "SIGKILL");
    for (const storagedriver of storagedrivers) await storagedriver.killAll();
    await tempDirs.removeAll();
  });

  it("exports every running vDisk and follows creates and deletes at once", async function () {
    requireTool(this, "nbdinfo");
    const storagedriver = await NbdStorageDriver.start(await tempDirs.make("exports"));
    storagedrivers.push(storagedriver);
    assert.match(storagedriver.harness.stdout, new RegExp(`storagedriver nbdtest NBD on nbd://127\\.0\\.0\\.1:${storagedriver.nbdPort} \\(exports: none yet; one per vDisk\\)`));
    assert.deepEqual(await exportNames(storagedriver.nbdPort), []);
    await storagedriver.createVdisk("alpha", 16 * MIB);
    await storagedriver.createVdisk("beta", 32 * MIB);
    assert.deepEqual(await exportNames(storagedriver.nbdPort), ["alpha", "beta"]);
    await storagedriver.deleteVdisk("beta");
    assert.deepEqual(await exportNames(storagedriver.nbdPort), ["alpha"]);
    const gone = await runTool("nbdinfo", [storagedriver.uri("beta")]);
    assert.notEqual(gone.code, 0, "a deleted vDisk is no longer served");
  });

  it("SIGTERM with a client connected: NBD closes first, the stop is clean, the data is there after restart", async function () {
    requireTool(this, "qemu-io", "python3-libnbd");
    const storagedriver = await NbdStorageDriver.start(await tempDirs.make("restart"));
    storagedrivers.push(storagedriver);
    await storagedriver.createVdisk("kept", 64 * MIB);
    // No flush: the clean stop itself must make the acknowledged writes durable.
    await runToolOk("qemu-io", ["-f", "raw", storagedriver.uri("kept"), "-c", "write -P 0x42 12345 1000000", "-c", "write -P 0x43 32M 4M"]);
    // An idle client holds a connection open through the stop.
    const idle = spawn(LIBNBD_PYTHON, ["-c", `import nbd, time\nh = nbd.NBD()\nh.connect_uri("${storagedriver.uri("kept")}")\nprint("connected", flush=True)\ntime.sleep(120)`], { stdio: ["ignore", "pipe", "pipe"] });
    if (idle.pid !== undefined) clientPids.push(idle.pid);
    await new Promise<void>((resolve, reject) => {
      idle.stdout.once("data", () => resolve());
      idle.once("exit", (code) => reject(new Error(`the idle client exited (${code}) before connecting`)));
    });
    const stoppingMs = Date.now();
    const exit = await storagedriver.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, storagedriver.harness.describe());
    assert.ok(Date.now() - stoppingMs < 30_000);
    assert.match(storagedriver.harness.stdout, /storagedriver nbdtest stopped cleanly/);
    if (idle.pid !== undefined) killPid(idle.pid, "SIGKILL");

    const restarted = await storagedriver.restart();
    assert.match(restarted.stdout, /NBD on nbd:\/\/127\.0\.0\.1:\d+ \(exports: kept\)/);
    const reread = await runToolOk("qemu-io", ["-f", "raw", storagedriver.uri("kept"),
      "-c", "read -P 0x42 12345 1000000", "-c", "read -P 0x43 32M 4M", "-c", "read -P 0 0 12345", "-c", "read -P 0 36M 28M"]);
    assert.doesNotMatch(reread.stdout, /Pattern verification failed/);
  });

  it("a busy NBD port: says so and exits 1", async function () {
    const directory = await tempDirs.make("busy");
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const address = blocker.address();
    const busyPort = typeof address === "object" && address !== null ? address.port : 0;
    try {
      const configFile = path.join(directory, "storagedriver.json");
      await writeFile(configFile, JSON.stringify({
        vpool: "busy", directory: "vpool", backend: { type: "local", path: "backend" },
        managementApi: { host: "127.0.0.1", port: await freePort() }, nbd: { host: "127.0.0.1", port: busyPort },
      }));
      const harness = ChildHarness.ovs(["storagedriver", "run", "--config", configFile]);
      const exit = await harness.waitForExit(30_000).finally(() => harness.killHard());
      assert.equal(exit.code, 1, harness.describe());
      assert.match(harness.stderr, new RegExp(`cannot serve NBD: 127\\.0\\.0\\.1:${busyPort} is in use; stop the process using it or choose another NBD port`));
      assert.doesNotMatch(harness.stdout, /management API on/);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

// Goal: the operator's whole path on the cluster `npm start` runs (ovs up, on its own Alba backend):
// `ovs vdisk create`, write through NBD, `ovs vdisk snapshot`, `ovs vdisk clone`, overwrite the
// original, read the clone through NBD and compare with what was written before the snapshot; the
// StorageDriver's /metrics shows that I/O; the StorageDriver is killed, the supervisor restarts it,
// and both vDisks read back intact.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { requireTool, runToolOk } from "../helpers/nbd-tools.ts";
import { ChildHarness, freePort, killPid, runOvs } from "../helpers/process-harness.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { readPidFile } from "../../framework/src/cluster/pid-file.ts";
import { stopOvsUp } from "../helpers/framework-fixtures.ts";

const START_TIMEOUT_MS = 90_000;
const MIB = 1024 * 1024;
const WRITTEN_BYTES = 24 * MIB;

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function metricValue(text: string, name: string, vdisk: string): number {
  const match = new RegExp(`^${name}\\{vdisk="${vdisk}",vpool="vpool1"\\} (\\S+)$`, "m").exec(text);
  assert.ok(match !== null, `${name} for ${vdisk} in:\n${text.slice(0, 2000)}`);
  return Number(match[1]);
}

describe("cluster end to end: create, write, snapshot, clone, compare, metrics, StorageDriver crash", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("cluster-e2e");
  let cluster: ChildHarness | undefined;
  let dataDirectory: string | undefined;

  after(async () => {
    await stopOvsUp(cluster, dataDirectory);
    await tempDirs.removeAll();
  });

  it("the clone reads the snapshot's data, /metrics shows the I/O, and a killed StorageDriver comes back with the data", async function () {
    requireTool(this, "nbdcopy");
    const work = await tempDirs.make();
    dataDirectory = path.join(work, "data");
    const [apiPort, storagedriverPort, nbdPort, iscsiPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    cluster = ChildHarness.ovs(["up", "--data", dataDirectory, "--api-port", String(apiPort), "--storagedriver-port", String(storagedriverPort),
      "--nbd-port", String(nbdPort), "--iscsi-port", String(iscsiPort)]);
    await cluster.waitForOutput(/ovs ready/, START_TIMEOUT_MS);
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    // The operator logs in with the admin credentials ovs up left in the data directory.
    const login = await runOvs(["login", "--credentials", path.join(dataDirectory, "admin-credentials.json"), "--api", apiUrl], 30_000, { XDG_CONFIG_HOME: path.join(work, "config") });
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stdout, /logged in to http:\/\/127\.0\.0\.1:\d+ as admin \(manage\)/);
    const ovs = async (...args: string[]): Promise<string> => {
      const result = await runOvs([...args, "--api", apiUrl], 120_000, { XDG_CONFIG_HOME: path.join(work, "config") });
      assert.equal(result.code, 0, `ovs ${args.join(" ")}: ${result.stderr}`);
      return result.stdout;
    };
    const nbd = (vdisk: string): string => `nbd://127.0.0.1:${nbdPort}/${vdisk}`;

    assert.match(await ovs("vdisk", "create", "e2e", "--size", "64M"), /created vDisk e2e \(64 MiB\)/);
    const original = randomBytes(WRITTEN_BYTES);
    const source = path.join(work, "original.img");
    await writeFile(source, original);
    await runToolOk("nbdcopy", [source, nbd("e2e")], { timeoutMs: 120_000 });
    assert.match(await ovs("vdisk", "snapshot", "e2e", "s1"), /s1/);
    assert.match(await ovs("vdisk", "clone", "e2e-clone", "--from", "e2e@s1"), /cloned vDisk e2e-clone/);
    // Writes to the original after the snapshot do not reach the clone.
    const overwrite = path.join(work, "overwrite.img");
    await writeFile(overwrite, randomBytes(8 * MIB));
    await runToolOk("nbdcopy", [overwrite, nbd("e2e")], { timeoutMs: 120_000 });

    const readBack = async (vdisk: string): Promise<Buffer> => {
      const target = path.join(work, `${vdisk}-${Date.now()}.img`);
      await runToolOk("nbdcopy", [nbd(vdisk), target], { timeoutMs: 120_000 });
      return (await readFile(target)).subarray(0, WRITTEN_BYTES);
    };
    const expectedOriginal = Buffer.concat([await readFile(overwrite), original.subarray(8 * MIB)]);
    assert.equal(sha256(await readBack("e2e-clone")), sha256(original), "the clone holds the snapshot's data");
    assert.equal(sha256(await readBack("e2e")), sha256(expectedOriginal), "the original holds its later writes");

    const metrics = await (await fetch(`http://127.0.0.1:${storagedriverPort}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
    assert.ok(metricValue(metrics, "ovs_vdisk_write_bytes_total", "e2e") >= WRITTEN_BYTES + 8 * MIB, "the writes are counted");
    assert.ok(metricValue(metrics, "ovs_vdisk_read_bytes_total", "e2e-clone") >= WRITTEN_BYTES, "the clone's reads are counted");
    assert.match(metrics, /^ovs_vdisk_io_duration_seconds_count\{vdisk="e2e",operation="write",vpool="vpool1"\} [1-9]/m);

    // The StorageDriver dies; the supervisor brings it back and nothing is lost.
    const pid = readPidFile(path.join(dataDirectory, "storagedrivers", "vpool1.pid"));
    assert.ok(pid !== undefined);
    assert.ok(killPid(pid, "SIGKILL"));
    await cluster.waitForOutput(/storagedriver vpool1 restarted \(pid \d+\)/, 60_000);
    assert.equal(sha256(await readBack("e2e-clone")), sha256(original), "the clone after the restart");
    assert.equal(sha256(await readBack("e2e")), sha256(expectedOriginal), "the original after the restart");

    killPid(cluster.pid, "SIGINT");
    const exit = await cluster.waitForExit(30_000);
    assert.deepEqual(exit, { code: 0, signal: null }, cluster.describe());
  });
});

// Goal: an operator grows the cluster `ovs up` runs with backends and vPools through the CLI (and so
// the API and the model): the managed Alba backend is listed and protected, a preset is added to it
// through its proxy, a local backend is added, vPools are created on both (each its own StorageDriver
// and ports), vDisks go to the vPool asked for and names stay unique across vPools, a clone stays in
// its parent's vPool, data written over one vPool's NBD reads back, a vPool's sizes change while its
// StorageDriver runs (and survive a restart; wrong ones are refused), a vPool with vDisks cannot be
// removed, a vPool whose StorageDriver cannot start leaves nothing behind, everything comes back
// after `ovs up` restarts (from the model), and removing vDisks, vPool and backend works.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { requireTool, runToolOk } from "../helpers/nbd-tools.ts";
import { ChildHarness, freePort, killPid, runOvs } from "../helpers/process-harness.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { stopOvsUp } from "../helpers/framework-fixtures.ts";
import { FrameworkModel } from "../../framework/src/model/framework-model.ts";

const START_TIMEOUT_MS = 90_000;
const MIB = 1024 * 1024;

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

describe("cluster vPools and backends: ovs backend / ovs vpool over a running ovs up", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("cluster-vpools");
  let cluster: ChildHarness | undefined;
  let dataDirectory: string | undefined;

  after(async () => {
    await stopOvsUp(cluster, dataDirectory);
    await tempDirs.removeAll();
  });

  it("creates backends, presets and vPools, routes vDisks, survives a restart and removes them again", async function () {
    requireTool(this, "nbdcopy");
    const work = await tempDirs.make();
    const data = path.join(work, "data");
    dataDirectory = data;
    const [apiPort, storagedriverPort, nbdPort, iscsiPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const upArgs = ["up", "--data", data, "--api-port", String(apiPort), "--storagedriver-port", String(storagedriverPort), "--nbd-port", String(nbdPort), "--iscsi-port", String(iscsiPort)];
    cluster = ChildHarness.ovs(upArgs);
    await cluster.waitForOutput(/ovs ready/, START_TIMEOUT_MS);
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    const environment = { XDG_CONFIG_HOME: path.join(work, "config") };
    const login = await runOvs(["login", "--credentials", path.join(data, "admin-credentials.json"), "--api", apiUrl], 30_000, environment);
    assert.equal(login.code, 0, login.stderr);
    const ovsResult = (...args: string[]): ReturnType<typeof runOvs> => runOvs([...args, "--api", apiUrl], 120_000, environment);
    const ovs = async (...args: string[]): Promise<string> => {
      const result = await ovsResult(...args);
      assert.equal(result.code, 0, `ovs ${args.join(" ")}: ${result.stderr}`);
      return result.stdout;
    };
    const ovsFails = async (pattern: RegExp, ...args: string[]): Promise<void> => {
      const result = await ovsResult(...args);
      assert.equal(result.code, 1, `ovs ${args.join(" ")} should fail: ${result.stdout}`);
      assert.match(result.stderr, pattern);
    };

    // The managed Alba backend and the first vPool are in the model; the managed backend is protected.
    const backends = JSON.parse(await ovs("backend", "ls", "--json")) as Array<{ name: string; kind: string; managed: boolean; vpools: string[] }>;
    assert.deepEqual(backends.map(({ name, kind, managed, vpools }) => ({ name, kind, managed, vpools })), [{ name: "alba", kind: "alba", managed: true, vpools: ["vpool1"] }]);
    const albaShown = JSON.parse(await ovs("backend", "show", "alba", "--json")) as { asds: Array<{ status: string }> };
    assert.equal(albaShown.asds.length, 3, "the three ASDs are recorded");
    await ovsFails(/backend alba is the Alba backend ovs up runs: it cannot be deleted .*\(CONFLICT, HTTP 409\)/, "backend", "rm", "alba");
    assert.match(await ovs("backend", "preset", "ls", "alba"), /single-host\s+\(2,1,2,1\)/);
    assert.match(await ovs("backend", "preset", "add", "alba", "mirror", "--policies", "1,2,2,1"), /added preset mirror to backend alba/);
    assert.match(await ovs("backend", "preset", "ls", "alba"), /mirror\s+\(1,2,2,1\)/);
    await ovsFails(/INVALID_REQUEST, HTTP 400/, "backend", "preset", "add", "alba", "bad", "--policies", "4,2,9,2");
    assert.match(await ovs("backend", "preset", "set", "alba", "mirror", "--policies", "1,1,2,1"), /changed preset mirror of backend alba: policies \(1,1,2,1\)/);
    assert.match(await ovs("backend", "preset", "ls", "alba"), /mirror\s+\(1,1,2,1\)/);
    await ovsFails(/preset single-host cannot be deleted: .*namespace.*\(CONFLICT, HTTP 409\)/, "backend", "preset", "rm", "alba", "single-host");
    assert.match(await ovs("backend", "preset", "rm", "alba", "mirror"), /deleted preset mirror of backend alba/);
    assert.doesNotMatch(await ovs("backend", "preset", "ls", "alba"), /mirror/);

    // A local backend, and vPools on it and on the managed Alba backend.
    const extraBackend = path.join(work, "extra-backend");
    assert.match(await ovs("backend", "add", "extra", "--kind", "local", "--config", JSON.stringify({ path: extraBackend })), /added local backend extra: path=/);
    await ovsFails(/a backend named extra exists already.*\(CONFLICT, HTTP 409\)/, "backend", "add", "extra", "--kind", "local", "--config", JSON.stringify({ path: extraBackend }));
    await ovsFails(/no backend named nowhere.*\(NOT_FOUND, HTTP 404\)/, "vpool", "create", "pool9", "--backend", "nowhere");
    const created2 = await ovs("vpool", "create", "pool2", "--backend", "extra", "--sco-size", "4M", "--write-buffer", "32M");
    const nbd2 = /created vPool pool2 on backend extra: NBD (nbd:\/\/127\.0\.0\.1:\d+)/.exec(created2)?.[1];
    assert.ok(nbd2 !== undefined, created2);
    const created3 = await ovs("vpool", "create", "pool3", "--backend", "alba");
    assert.match(created3, /created vPool pool3 on backend alba: NBD nbd:\/\/127\.0\.0\.1:\d+/);
    const listed = JSON.parse(await ovs("vpool", "ls", "--json")) as Array<{ name: string; primary: boolean; scoSizeBytes: number; storagedrivers: Array<{ status: string }> }>;
    assert.deepEqual(listed.map(({ name, primary, storagedrivers }) => [name, primary, storagedrivers[0]?.status]),
      [["pool2", false, "running"], ["pool3", false, "running"], ["vpool1", true, "running"]]);
    assert.equal(listed[0].scoSizeBytes, 4 * MIB);

    // A StorageDriver that cannot start (its backend path is a file): the task fails, nothing stays.
    const notADirectory = path.join(work, "not-a-directory");
    await writeFile(notADirectory, "x");
    await ovs("backend", "add", "broken", "--kind", "local", "--config", JSON.stringify({ path: notADirectory }));
    await ovsFails(/create vPool pool4 failed \(task [0-9a-f-]+\): the StorageDriver of vPool pool4 did not start/, "vpool", "create", "pool4", "--backend", "broken");
    assert.doesNotMatch(await ovs("vpool", "ls"), /pool4/);
    await ovs("backend", "rm", "broken");

    // vDisks go where they are asked to; names are unique in the cluster; a clone stays with its parent.
    assert.match(await ovs("vdisk", "create", "d2", "--size", "64M", "--vpool", "pool2"), /created vDisk d2 \(64 MiB\) in vPool pool2/);
    assert.match(await ovs("vdisk", "create", "d3", "--size", "64M", "--vpool", "pool3"), /in vPool pool3/);
    await ovsFails(/a vDisk named d2 exists in vPool pool2.*\(CONFLICT, HTTP 409\)/, "vdisk", "create", "d2", "--size", "64M", "--vpool", "pool3");
    await ovsFails(/no running vPool named nopool.*\(NOT_FOUND, HTTP 404\)/, "vdisk", "create", "d9", "--size", "64M", "--vpool", "nopool");
    const written = randomBytes(8 * MIB);
    const source = path.join(work, "written.img");
    await writeFile(source, written);
    await runToolOk("nbdcopy", [source, `${nbd2}/d2`], { timeoutMs: 120_000 });
    await ovs("vdisk", "snapshot", "d2", "s1");
    await ovs("vdisk", "clone", "d2c", "--from", "d2@s1");
    const vdisks = JSON.parse(await ovs("vdisk", "ls", "--json")) as Array<{ name: string; vpool: string }>;
    assert.deepEqual(vdisks.map(({ name, vpool }) => `${name}@${vpool}`).sort(), ["d2@pool2", "d2c@pool2", "d3@pool3", "demo@vpool1"]);
    // The model mirrors what the StorageDrivers list: vDisks with their vPool and clone parent.
    const model = FrameworkModel.open(path.join(data, "framework.db"));
    try {
      assert.deepEqual(model.vdisks.list().map((vdisk) => `${vdisk.name}@${vdisk.vpool}:${vdisk.sizeBytes / MIB}:${vdisk.parentSnapshot ?? "-"}`),
        ["d2@pool2:64:-", "d2c@pool2:64:d2@s1", "d3@pool3:64:-", "demo@vpool1:10240:-"]);
      assert.deepEqual(model.storageDrivers.list().map((driver) => driver.vpool), ["pool2", "pool3", "vpool1"]);
      assert.deepEqual(model.albaPresets.list("alba").map((preset) => preset.name), ["single-host"], "the managed backend's presets are recorded; a deleted one is gone");
    } finally {
      model.close();
    }
    await ovsFails(/vPool pool2 holds vDisks \(d2, d2c\): delete them first.*\(CONFLICT, HTTP 409\)/, "vpool", "rm", "pool2");
    await ovsFails(/vPool vpool1 is the host's first vPool.*\(CONFLICT, HTTP 409\)/, "vpool", "rm", "vpool1");
    await ovsFails(/backend extra is used by the vPools pool2.*\(CONFLICT, HTTP 409\)/, "backend", "rm", "extra");
    // Sizes change while the StorageDrivers run, are refused by them when wrong, and are kept.
    const settingsOf = async (vpool: string): Promise<Record<string, number>> => {
      const shown = JSON.parse(await ovs("vpool", "show", vpool, "--json")) as { storagedrivers: Array<{ managementUrl: string }> };
      const response = await fetch(`${shown.storagedrivers[0].managementUrl}/settings`);
      return (await response.json() as { settings: Record<string, number> }).settings;
    };
    assert.match(await ovs("vpool", "set", "pool2", "--read-cache", "64M", "--write-buffer", "48M"), /vPool pool2: sco size 4 MiB, write buffer 48 MiB, read cache 64 MiB/);
    assert.deepEqual([(await settingsOf("pool2")).readCacheSizeBytes, (await settingsOf("pool2")).writeBufferSizeBytes], [64 * MIB, 48 * MIB], "the running StorageDriver took them");
    const pool2Config = JSON.parse(await readFile(path.join(data, "storagedrivers", "pool2.json"), "utf8")) as { settings: Record<string, number> };
    assert.equal(pool2Config.settings.readCacheSizeBytes, 64 * MIB, "its config file too (a supervisor restart keeps them)");
    await ovsFails(/writeBufferSizeBytes \(at least 2 SCOs\) must be a whole number in \[8388608,.*\(INVALID_REQUEST, HTTP 400\)/, "vpool", "set", "pool2", "--write-buffer", "4M");
    assert.match(await ovs("vpool", "show", "pool2"), /^write buffer\s+48 MiB$/m, "a refused change leaves the model as it was");
    await ovs("vpool", "set", "vpool1", "--read-cache", "128M");
    assert.match(await ovs("vpool", "set", "pool3", "--schedules", '{"snapshots": {"everyMinutes": 30}}'), /vPool pool3/);
    assert.match(await ovs("vpool", "show", "pool3"), /^schedules\s+\{"snapshots":\{"everyMinutes":30\}\}$/m);
    assert.match(await ovs("schedule", "ls"), /^snapshots@pool3\s+every 30 min\s+yes/m);
    await ovsFails(/--schedules: not JSON/, "vpool", "set", "pool3", "--schedules", "{snapshots");
    assert.equal((await settingsOf("vpool1")).readCacheSizeBytes, 128 * MIB);
    const clusterConfig = JSON.parse(await readFile(path.join(data, "config.json"), "utf8")) as { vpools: Array<{ settings: Record<string, number> }> };
    assert.equal(clusterConfig.vpools[0].settings.readCacheSizeBytes, 128 * MIB, "the first vPool's settings are in config.json");

    const tasks = await ovs("task", "ls");
    assert.match(tasks, /vpool-create\s+vpool pool2\s+succeeded/);
    assert.match(tasks, /vpool-create\s+vpool pool4\s+failed/);

    // A restart brings every vPool back from the model, on the same ports, with its data.
    killPid(cluster.pid, "SIGINT");
    assert.deepEqual(await cluster.waitForExit(60_000), { code: 0, signal: null }, cluster.describe());
    cluster = ChildHarness.ovs(upArgs);
    await cluster.waitForOutput(/ovs ready/, START_TIMEOUT_MS);
    assert.match(cluster.describe(), /storagedriver pool2 management API on http:\/\/127\.0\.0\.1:\d+ \(vPool created through the API\)/);
    const readBack = path.join(work, "read-back.img");
    for (const vdisk of ["d2", "d2c"]) {
      await runToolOk("nbdcopy", [`${nbd2}/${vdisk}`, readBack], { timeoutMs: 120_000 });
      assert.equal(sha256((await readFile(readBack)).subarray(0, written.length)), sha256(written), `${vdisk} after the restart`);
    }
    assert.match(await ovs("vpool", "show", "pool3"), /storagedriver \S+\s+running/);
    assert.equal((await settingsOf("pool2")).readCacheSizeBytes, 64 * MIB, "changed settings survive a restart");
    assert.equal((await settingsOf("vpool1")).readCacheSizeBytes, 128 * MIB);
    const status = await ovs("status");
    for (const vpool of ["vpool1", "pool2", "pool3"]) assert.match(status, new RegExp(`storagedriver\\s+${vpool}: ok`));

    // Taking it all down again.
    for (const vdisk of ["d2c", "d2", "d3"]) await ovs("vdisk", "rm", vdisk);
    assert.match(await ovs("vpool", "rm", "pool2"), /deleted vPool pool2/);
    assert.match(await ovs("schedule", "ls"), /^snapshots@pool3\s+every 30 min/m, "a vPool's own job comes back after a restart");
    assert.match(await ovs("vpool", "rm", "pool3"), /deleted vPool pool3/);
    assert.doesNotMatch(await ovs("schedule", "ls"), /@pool3/, "and goes with the vPool");
    assert.match(await ovs("backend", "rm", "extra"), /removed backend extra/);
    const remaining = JSON.parse(await ovs("vpool", "ls", "--json")) as Array<{ name: string }>;
    assert.deepEqual(remaining.map((vpool) => vpool.name), ["vpool1"]);
    await ovsFails(/no vPool named pool2.*\(NOT_FOUND, HTTP 404\)/, "vpool", "show", "pool2");

    killPid(cluster.pid, "SIGINT");
    assert.deepEqual(await cluster.waitForExit(60_000), { code: 0, signal: null }, cluster.describe());
  });
});

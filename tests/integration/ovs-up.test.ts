// Goal: `ovs up` (what `npm start` runs) brings a single-host cluster up on loopback with the demo
// vDisk on its own Alba backend (3 ASDs and a proxy), serves the framework API that the `ovs vdisk`
// CLI uses, serves the vDisks over NBD, restarts a StorageDriver or an ASD that dies, refuses a second `ovs up` on the same directory, stops cleanly
// on SIGINT within 30 s, reopens everything on a second start, and on a fresh host whose backend is a copy of the old one finds
// the vDisks again without recreating the demo vDisk.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { cp, readFile } from "node:fs/promises";
import path from "node:path";
import { requireTool, runToolOk } from "../helpers/nbd-tools.ts";
import { ChildHarness, freePort, killPid, runOvs } from "../helpers/process-harness.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { readPidFile } from "../../framework/src/cluster/pid-file.ts";
import { authHeaders, forgetToken, useAdminToken } from "../helpers/ovs-auth.ts";

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const GIB = 1024 ** 3;

interface VdiskInfo { name: string; sizeBytes: number; state: string; vpool: string }

describe("ovs up: single-host cluster", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("ovs-up");
  const harnesses: ChildHarness[] = [];
  const dataDirectories: string[] = [];
  let apiPort: number;
  let storagedriverPort: number;
  let nbdPort: number;
  let iscsiPort: number;
  let apiUrl: string;

  async function up(dataDirectory: string): Promise<ChildHarness> {
    const harness = ChildHarness.ovs(["up", "--data", dataDirectory, "--api-port", String(apiPort), "--storagedriver-port", String(storagedriverPort),
      "--nbd-port", String(nbdPort), "--iscsi-port", String(iscsiPort)]);
    harnesses.push(harness);
    if (!dataDirectories.includes(dataDirectory)) dataDirectories.push(dataDirectory);
    await harness.waitForOutput(new RegExp(`ovs data directory ${escape(dataDirectory)}`), START_TIMEOUT_MS);
    await harness.waitForOutput(new RegExp(`storagedriver vpool1 management API on http://127\\.0\\.0\\.1:${storagedriverPort}`), START_TIMEOUT_MS);
    await harness.waitForOutput(new RegExp(`framework API on ${escape(apiUrl)}/api`), START_TIMEOUT_MS);
    await harness.waitForOutput(/ovs ready/, START_TIMEOUT_MS);
    // Tokens live as long as the framework: log in after every start.
    await useAdminToken(apiUrl, dataDirectory);
    return harness;
  }

  async function stop(harness: ChildHarness): Promise<void> {
    assert.ok(killPid(harness.pid, "SIGINT"));
    const startedMs = Date.now();
    const exit = await harness.waitForExit(STOP_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 0, signal: null }, harness.describe());
    assert.ok(Date.now() - startedMs < STOP_TIMEOUT_MS);
    assert.match(harness.stdout, /ovs stopped cleanly/);
  }

  async function api(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
    const response = await fetch(`${apiUrl}/api${pathname}`, {
      method,
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...authHeaders() },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    return { status: response.status, body: text.length === 0 ? undefined : JSON.parse(text) };
  }

  async function vdiskNames(): Promise<string[]> {
    const listed = await runOvs(["vdisk", "ls", "--json", "--api", apiUrl]);
    assert.equal(listed.code, 0, listed.stderr);
    return (JSON.parse(listed.stdout) as VdiskInfo[]).map((vdisk) => vdisk.name).sort();
  }

  before(async function () {
    apiPort = await freePort();
    storagedriverPort = await freePort();
    nbdPort = await freePort();
    iscsiPort = await freePort();
    apiUrl = `http://127.0.0.1:${apiPort}`;
  });

  after(async function () {
    forgetToken();
    for (const harness of harnesses) await harness.killHard();
    // The StorageDriver stops by itself when its parent dies; make sure of it by PID.
    for (const dataDirectory of dataDirectories) {
      const pid = readPidFile(path.join(dataDirectory, "storagedrivers", "vpool1.pid"));
      if (pid !== undefined) killPid(pid, "SIGKILL");
    }
    await tempDirs.removeAll();
  });

  let firstData: string;

  it("first start: creates the cluster and the demo vDisk; the API and the CLI work", async function () {
    firstData = path.join(await tempDirs.make(), "data");
    const cluster = await up(firstData);
    assert.match(cluster.stdout, /created vDisk demo \(10 GiB\)/);
    assert.match(cluster.stdout, new RegExp(`^NBD on nbd://127\\.0\\.0\\.1:${nbdPort}/<vdisk>$`, "m"));
    assert.match(cluster.stdout, new RegExp(`^iSCSI on iscsi://127\\.0\\.0\\.1:${iscsiPort}/iqn\\.2026-11\\.org\\.openvstorage:vpool1/<lun> `, "m"));

    const health = await api("GET", "/health");
    assert.equal(health.status, 200, JSON.stringify(health.body));
    assert.equal(health.body.status, "ok");
    // Operators find the processes by role with ps (process titles).
    const storagedriverPid = readPidFile(path.join(firstData, "storagedrivers", "vpool1.pid"));
    assert.ok(storagedriverPid !== undefined);
    assert.match(await readFile(`/proc/${cluster.pid}/cmdline`, "utf8"), /^ovs-framework/);
    assert.match(await readFile(`/proc/${storagedriverPid}/cmdline`, "utf8"), /^ovs-storagedriver vpool1/);
    // Prometheus: the framework's own metrics and the StorageDriver's, both announced at start.
    assert.match(cluster.stdout, new RegExp(`Prometheus metrics on ${escape(apiUrl)}/metrics \\(framework\\) and http://127\\.0\\.0\\.1:${storagedriverPort}/metrics`));
    const frameworkMetrics = await (await fetch(`${apiUrl}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
    assert.match(frameworkMetrics, /^ovs_storagedriver_up\{vpool="vpool1"\} 1$/m);
    assert.match(frameworkMetrics, /^ovs_api_requests_total\{route="\/api\/health",method="GET",status="200"\} 1$/m);
    const storagedriverMetrics = await (await fetch(`http://127.0.0.1:${storagedriverPort}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
    assert.match(storagedriverMetrics, /^ovs_vdisk_write_ops_total\{vdisk="demo",vpool="vpool1"\} \d+$/m);
    const demo = await api("GET", "/vdisks/demo");
    assert.equal(demo.status, 200);
    assert.equal(demo.body.sizeBytes, 10 * GIB);

    const table = await runOvs(["vdisk", "ls", "--api", apiUrl]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+SIZE\s+STATE/m);
    assert.match(table.stdout, /^demo\s+10 GiB\s+running/m);

    const created = await runOvs(["vdisk", "create", "scratch", "--size", "1G", "--api", apiUrl]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created vDisk scratch \(1 GiB\)/);
    const kept = await runOvs(["vdisk", "create", "keep", "--size", "512M"], 30_000, { OVS_API: apiUrl });
    assert.equal(kept.code, 0, kept.stderr);
    const duplicate = await runOvs(["vdisk", "create", "keep", "--size", "512M", "--api", apiUrl]);
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /already exists.*choose another name/);
    const badSize = await runOvs(["vdisk", "create", "bad", "--size", "10GB", "--api", apiUrl]);
    assert.equal(badSize.code, 1);
    assert.match(badSize.stderr, /use G or GiB/);
    const removed = await runOvs(["vdisk", "rm", "scratch", "--api", apiUrl]);
    assert.equal(removed.code, 0, removed.stderr);
    const missing = await runOvs(["vdisk", "show", "scratch", "--api", apiUrl]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no vDisk named scratch.*NOT_FOUND/);
    assert.deepEqual(await vdiskNames(), ["demo", "keep"]);

    const invalid = await api("POST", "/vdisks", { name: "Bad", size: "1G" });
    assert.equal(invalid.status, 400);
    assert.match(invalid.body.error.message, /a vDisk name is 1-63 characters/);
  });

  it("serves every vDisk over NBD on the --nbd-port", async function () {
    requireTool(this, "nbdinfo");
    const listed = await runToolOk("nbdinfo", ["--list", "--json", `nbd://127.0.0.1:${nbdPort}`]);
    const exports = (JSON.parse(listed.stdout) as { exports: Array<{ "export-name": string; "export-size": number }> }).exports;
    assert.deepEqual(exports.map((entry) => [entry["export-name"], entry["export-size"]]).sort(), [["demo", 10 * GIB], ["keep", 512 * 1024 ** 2]]);
    const config = JSON.parse(await readFile(path.join(firstData, "storagedrivers", "vpool1.json"), "utf8")) as { nbd: unknown };
    assert.deepEqual(config.nbd, { host: "127.0.0.1", port: nbdPort });
  });

  it("serves every vDisk over iSCSI on the --iscsi-port; the API and the CLI show each one's LUN", async function () {
    requireTool(this, "iscsi-ls");
    const listed = await runToolOk("iscsi-ls", ["-s", `iscsi://127.0.0.1:${iscsiPort}`]);
    assert.match(listed.stdout, /^Target:iqn\.2026-11\.org\.openvstorage:vpool1 Portal:127\.0\.0\.1:\d+,1$/m);
    // demo was created first, then scratch (1, deleted) and keep.
    assert.deepEqual([...listed.stdout.matchAll(/^Lun:(\d+)/gm)].map((match) => Number(match[1])), [0, 2]);
    const keep = await api("GET", "/vdisks/keep");
    assert.deepEqual(keep.body.iscsi, { target: "iqn.2026-11.org.openvstorage:vpool1", lun: 2, url: `iscsi://127.0.0.1:${iscsiPort}/iqn.2026-11.org.openvstorage:vpool1/2` });
    const shown = await runOvs(["vdisk", "show", "demo", "--api", apiUrl]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /iscsi\s+LUN 0 of iqn\.2026-11\.org\.openvstorage:vpool1 \(iscsi:\/\/127\.0\.0\.1:\d+\/iqn\.2026-11\.org\.openvstorage:vpool1\/0\)/);
    const config = JSON.parse(await readFile(path.join(firstData, "storagedrivers", "vpool1.json"), "utf8")) as { iscsi: unknown };
    assert.deepEqual(config.iscsi, { host: "127.0.0.1", port: iscsiPort });
  });

  it("refuses a second `ovs up` on the same data directory", async function () {
    const second = await runOvs(["up", "--data", firstData, "--api-port", String(await freePort()), "--storagedriver-port", String(await freePort()),
      "--nbd-port", String(await freePort()), "--iscsi-port", String(await freePort())]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /another `ovs up` \(pid \d+\) is already running/);
  });

  it("restarts a StorageDriver that was killed", async function () {
    const cluster = harnesses.at(-1)!;
    const pidFile = path.join(firstData, "storagedrivers", "vpool1.pid");
    const pid = readPidFile(pidFile);
    assert.ok(pid !== undefined, "the StorageDriver writes its PID file");
    assert.ok(killPid(pid, "SIGKILL"));
    await cluster.waitForOutput(/storagedriver vpool1 restarted \(pid \d+\)/, 30_000);
    assert.match(cluster.stderr, /exited unexpectedly \(killed by SIGKILL\): restarting in 1 s/);
    assert.notEqual(readPidFile(pidFile), pid);
    assert.deepEqual(await vdiskNames(), ["demo", "keep"]);
  });

  it("runs Alba (3 ASDs and a proxy) as the vPool's backend and restarts a killed ASD; the data stays readable", async function () {
    requireTool(this, "qemu-io");
    const cluster = harnesses.at(-1)!;
    assert.match(cluster.stdout, /^alba backend \S+ \(new, preset single-host\): 3 ASDs, proxy on http:\/\/127\.0\.0\.1:\d+$/m);
    const health = await api("GET", "/health");
    assert.match(health.body.storagedrivers[0].health.backend, /^alba/);
    const children = (): Array<{ pid: number; title: string }> => childProcessesOf(cluster.pid);
    const asds = children().filter((child) => child.title.startsWith("ovs-asd "));
    assert.equal(asds.length, 3, JSON.stringify(children()));
    assert.ok(children().some((child) => child.title === "ovs-alba-proxy"), JSON.stringify(children()));
    // Data through NBD lands on Alba; with one ASD killed and back, it still reads.
    await runToolOk("qemu-io", ["-f", "raw", `nbd://127.0.0.1:${nbdPort}/keep`, "-c", "write -P 0x5c 1M 3M", "-c", "flush"]);
    assert.ok(killPid(asds[0].pid, "SIGKILL"));
    const deadlineMs = Date.now() + 30_000;
    while (children().filter((child) => child.title.startsWith("ovs-asd ")).length < 3 || children().some((child) => child.pid === asds[0].pid)) {
      assert.ok(Date.now() < deadlineMs, `the ASD was not restarted: ${JSON.stringify(children())}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.match(cluster.stderr, /asd-\d exited unexpectedly \(killed by SIGKILL\): restarting in 1 s/);
    const read = await runToolOk("qemu-io", ["-f", "raw", `nbd://127.0.0.1:${nbdPort}/keep`, "-c", "read -P 0x5c 1M 3M"]);
    assert.doesNotMatch(read.stdout, /Pattern verification failed/);
  });

  it("stops cleanly on SIGINT within 30 s, and a second start reopens everything", async function () {
    await stop(harnesses.at(-1)!);
    const cluster = await up(firstData);
    assert.doesNotMatch(cluster.stdout, /created vDisk demo/);
    assert.doesNotMatch(cluster.stdout, /new cluster/);
    assert.deepEqual(await vdiskNames(), ["demo", "keep"]);
    // The demo vDisk is a first-start thing: once removed, it stays removed.
    const removed = await runOvs(["vdisk", "rm", "demo", "--api", apiUrl]);
    assert.equal(removed.code, 0, removed.stderr);
    await stop(cluster);
  });

  it("a fresh host with a copy of the backend finds the vDisks and does not recreate demo", async function () {
    const freshData = path.join(await tempDirs.make("fresh"), "data");
    // The managed Alba backend: its ASD directories and the backend's metadata (disks moved to a new host).
    await cp(path.join(firstData, "alba"), path.join(freshData, "alba"), { recursive: true });
    const cluster = await up(freshData);
    assert.match(cluster.stdout, /new cluster/);
    assert.match(cluster.stdout, /found 1 vDisks on the backend \(keep\): not creating the demo vDisk/);
    assert.deepEqual(await vdiskNames(), ["keep"]);
    const keep = await api("GET", "/vdisks/keep");
    assert.equal(keep.body.sizeBytes, 512 * 1024 ** 2);
    const config = JSON.parse(await readFile(path.join(freshData, "config.json"), "utf8")) as { firstStartCompleted: boolean };
    assert.equal(config.firstStartCompleted, true);
    await stop(cluster);
  });
});

/** The direct children of a process with their titles (from /proc; Linux only). */
function childProcessesOf(parentPid: number): Array<{ pid: number; title: string }> {
  const children: Array<{ pid: number; title: string }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent !== parentPid) continue;
      children.push({ pid: Number(entry), title: readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0+$/, "").replace(/\0/g, " ") });
    } catch {
      // The process ended while we looked.
    }
  }
  return children;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

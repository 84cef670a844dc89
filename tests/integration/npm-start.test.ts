// Goal: the README's main-job command works as written: `npm start` (with extra flags only to pick
// a temp data directory and free ports) brings the cluster up with its demo vDisk, and a Ctrl-C
// (SIGINT to the whole process group, as a terminal sends it) stops everything cleanly within 30 s.
import assert from "node:assert/strict";
import { ChildHarness, freePort } from "../helpers/process-harness.ts";
import { adminToken } from "../helpers/ovs-auth.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

describe("npm start: the main job", function () {
  this.timeout(180_000);
  const tempDirs = new TempDirs("npm-start");
  let harness: ChildHarness | undefined;

  after(async function () {
    // Whatever is left of the process group (npm, ovs, the StorageDriver) is killed by PID group.
    harness?.killGroup("SIGKILL");
    if (harness?.running) await harness.waitForExit(5_000).catch(() => undefined);
    await tempDirs.removeAll();
  });

  it("brings the cluster up with the demo vDisk and stops cleanly on Ctrl-C", async function () {
    // Goal: npm start serves the framework API with a 10 GiB demo vDisk, and SIGINT ends it with exit 0.
    const dataDirectory = await tempDirs.make("data");
    const apiPort = await freePort();
    const storagedriverPort = await freePort();
    const nbdPort = await freePort();
    harness = ChildHarness.command("npm", ["start", "--", "--data", dataDirectory,
      "--api-port", String(apiPort), "--storagedriver-port", String(storagedriverPort), "--nbd-port", String(nbdPort), "--iscsi-port", String(await freePort())]);
    await harness.waitForOutput(/ovs ready/, 90_000);
    assert.match(harness.stdout, new RegExp(`^NBD on nbd://127\\.0\\.0\\.1:${nbdPort}/<vdisk>$`, "m"));
    assert.match(harness.stdout, /^admin credentials in \S+admin-credentials\.json \(mode 0600\)/m);
    const token = await adminToken(`http://127.0.0.1:${apiPort}`, dataDirectory);
    const response = await fetch(`http://127.0.0.1:${apiPort}/api/vdisks/demo`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
    assert.equal(response.status, 200, harness.describe());
    const demo = (await response.json()) as { name: string; sizeBytes: number };
    assert.equal(demo.name, "demo");
    assert.equal(demo.sizeBytes, 10 * 1024 ** 3);

    const stoppingMs = Date.now();
    assert.ok(harness.killGroup("SIGINT"));
    const exit = await harness.waitForExit(30_000);
    // npm itself dies of the SIGINT (as it does in a terminal); ovs, which it waits for, exits 0.
    assert.ok(exit.code === 0 || exit.signal === "SIGINT", harness.describe());
    assert.ok(Date.now() - stoppingMs < 30_000);
    assert.match(harness.stdout, /ovs stopped cleanly/);
  });
});

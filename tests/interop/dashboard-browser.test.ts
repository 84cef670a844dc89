// Goal: the dashboard works in a real browser against a real cluster. `ovs up` runs on loopback;
// Debian's chromium (driven by playwright-core) opens http://127.0.0.1:PORT/, asks for a login (a
// wrong password is refused, the admin's works), shows the demo vDisk
// and the Alba backend's 3 ASDs up,
// and while fio writes to the demo vDisk over NBD the IOPS figure and the chart's points move; a
// snapshot created from the page appears on the page and in the API. A screenshot is saved to
// test-artifacts/dashboard.png.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { chromium, type Browser } from "playwright-core";
import { requireTool } from "../helpers/nbd-tools.ts";
import { adminToken } from "../helpers/ovs-auth.ts";
import { ChildHarness, freePort, killPid } from "../helpers/process-harness.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { stopOvsUp } from "../helpers/framework-fixtures.ts";

const START_TIMEOUT_MS = 90_000;
const UI_TIMEOUT_MS = 30_000;
const ARTIFACT_DIRECTORY = path.resolve("test-artifacts");

describe("dashboard in a browser (chromium via playwright-core)", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("dashboard");
  let cluster: ChildHarness | undefined;
  let dataDirectory: string | undefined;
  let browser: Browser | undefined;
  let fio: ChildProcess | undefined;

  after(async () => {
    if (fio?.pid !== undefined && fio.exitCode === null) killPid(fio.pid, "SIGKILL");
    await browser?.close();
    await stopOvsUp(cluster, dataDirectory);
    await tempDirs.removeAll();
  });

  it("shows the demo vDisk, live IOPS while fio writes, and creates a snapshot from the page", async function () {
    requireTool(this, "chromium", "fio");
    const [apiPort, storagedriverPort, nbdPort, iscsiPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    dataDirectory = path.join(await tempDirs.make(), "data");
    cluster = ChildHarness.ovs(["up", "--data", dataDirectory, "--api-port", String(apiPort), "--storagedriver-port", String(storagedriverPort),
      "--nbd-port", String(nbdPort), "--iscsi-port", String(iscsiPort)]);
    await cluster.waitForOutput(/ovs ready/, START_TIMEOUT_MS);
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    assert.match(cluster.stdout, new RegExp(`dashboard on ${apiUrl.replace(/\./g, "\\.")}/`));

    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-dev-shm-usage"] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(`${apiUrl}/`);
    // Not logged in: the page asks; the admin's password is in the data directory.
    await page.waitForSelector("#login-form:not([hidden])", { timeout: UI_TIMEOUT_MS });
    const credentials = JSON.parse(await readFile(path.join(dataDirectory, "admin-credentials.json"), "utf8")) as { username: string; password: string };
    await page.fill("#login-user", credentials.username);
    await page.fill("#login-password", "wrong-password");
    await page.click("#login-submit");
    await page.waitForFunction(() => /wrong user name or password/.test(document.getElementById("message")?.textContent ?? ""), undefined, { timeout: UI_TIMEOUT_MS });
    await page.fill("#login-password", credentials.password);
    await page.click("#login-submit");
    await page.waitForSelector('tr[data-vdisk="demo"]', { timeout: UI_TIMEOUT_MS });
    await page.waitForFunction(() => document.getElementById("cluster-status")?.dataset.status === "ok", undefined, { timeout: UI_TIMEOUT_MS });
    assert.equal(await page.textContent("#selected-name"), "demo");
    // The backend panel: the Alba backend ovs up runs, its 3 ASDs up.
    await page.waitForFunction(() => document.querySelectorAll('#asd-rows tr[data-health="up"]').length === 3, undefined, { timeout: UI_TIMEOUT_MS });
    assert.match(await page.textContent("#backend-summary") ?? "", /3 of 3 ASDs up/);
    // The vPools panel: the first vPool on the managed Alba backend, its StorageDriver running.
    await page.waitForSelector('tr[data-vpool="vpool1"]', { timeout: UI_TIMEOUT_MS });
    assert.match(await page.textContent('tr[data-vpool="vpool1"]') ?? "", /vpool1 \(first\)alba\s*running/);

    // Writes over NBD for a while: the page's IOPS and chart follow the engine's counters.
    fio = spawn("fio", ["--name=dashboard", "--ioengine=nbd", `--uri=nbd://127.0.0.1:${nbdPort}/demo`, "--rw=randwrite", "--bs=4k",
      "--iodepth=8", "--size=256M", "--time_based", "--runtime=60"], { stdio: "ignore" });
    await page.waitForFunction(() => Number(document.getElementById("iops-now")?.dataset.iops) > 0, undefined, { timeout: UI_TIMEOUT_MS });
    await page.waitForFunction(() => {
      const points = JSON.parse(document.getElementById("iops-chart")?.dataset.points ?? "[]") as number[];
      return points.filter((value) => value > 0).length >= 3;
    }, undefined, { timeout: UI_TIMEOUT_MS });
    const points = JSON.parse(await page.getAttribute("#iops-chart", "data-points") ?? "[]") as number[];
    console.log(`      IOPS chart points (last ${points.length} s): ${points.slice(-8).join(", ")}`);

    // A snapshot from the page.
    await page.fill("#snapshot-name", "from-dashboard");
    await page.click("#snapshot-create");
    await page.waitForSelector('tr[data-snapshot="from-dashboard"]', { timeout: UI_TIMEOUT_MS });
    const token = await adminToken(apiUrl, dataDirectory);
    const listed = await (await fetch(`${apiUrl}/api/vdisks/demo/snapshots`, { headers: { authorization: `Bearer ${token}` } })).json() as { snapshots: Array<{ name: string }> };
    assert.ok(listed.snapshots.some((snapshot) => snapshot.name === "from-dashboard"), JSON.stringify(listed));

    await mkdir(ARTIFACT_DIRECTORY, { recursive: true });
    const screenshot = path.join(ARTIFACT_DIRECTORY, "dashboard.png");
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`      screenshot: ${screenshot}`);
    assert.deepEqual(pageErrors, [], "no script errors on the page");
  });
});

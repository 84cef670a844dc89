// Goal: the real StorageDriver process serves its management API on loopback: vDisks can be created,
// listed, inspected and deleted; invalid requests get 400 with a clear message and the process stays
// up; SIGTERM stops it cleanly in time; a restart finds the vDisks again; a busy port is a clear error.
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { ChildHarness, freePort, killPid, runOvs } from "../helpers/process-harness.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 30_000;
const MIB = 1024 * 1024;

interface ErrorBody { error: { code: string; message: string } }

describe("storagedriver process: management API", function () {
  this.timeout(180_000);
  const tempDirs = new TempDirs("storagedriver-api");
  const harnesses: ChildHarness[] = [];
  let directory: string;
  let configFile: string;
  let port: number;
  let baseUrl: string;
  let storagedriver: ChildHarness;

  async function start(): Promise<ChildHarness> {
    const harness = ChildHarness.ovs(["storagedriver", "run", "--config", configFile]);
    harnesses.push(harness);
    const match = await harness.waitForOutput(/storagedriver sdtest management API on (http:\/\/\S+)/, START_TIMEOUT_MS);
    assert.equal(match[1], baseUrl);
    return harness;
  }

  async function call(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
    const response = await fetch(`${baseUrl}${pathname}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    return { status: response.status, body: text.length === 0 ? undefined : JSON.parse(text) };
  }

  before(async function () {
    directory = await tempDirs.make();
    port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    configFile = path.join(directory, "storagedriver.json");
    await writeFile(configFile, JSON.stringify({
      vpool: "sdtest",
      directory: "vpool",
      backend: { type: "local", path: "backend" },
      managementApi: { host: "127.0.0.1", port },
      settings: { scoSizeBytes: 4 * MIB },
      logFile: "storagedriver.log",
      pidFile: "storagedriver.pid",
    }));
    storagedriver = await start();
  });

  after(async function () {
    for (const harness of harnesses) await harness.killHard();
    await tempDirs.removeAll();
  });

  it("answers /health with the vPool and backend", async function () {
    const health = await call("GET", "/health");
    assert.equal(health.status, 200);
    assert.equal(health.body.status, "ok");
    assert.equal(health.body.vpool, "sdtest");
    assert.equal(health.body.pid, storagedriver.pid);
    assert.match(health.body.backend, /^local:/);
  });

  it("creates vDisks from a size text and from a number of bytes", async function () {
    const created = await call("POST", "/vdisks", { name: "disk-a", size: "64M" });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.name, "disk-a");
    assert.equal(created.body.sizeBytes, 64 * MIB);
    assert.equal(created.body.vpool, "sdtest");
    const second = await call("POST", "/vdisks", { name: "disk_b", size: 8 * MIB });
    assert.equal(second.status, 201, JSON.stringify(second.body));
    assert.equal(second.body.sizeBytes, 8 * MIB);
  });

  it("refuses a second vDisk of the same name with 409 EXISTS", async function () {
    const again = await call("POST", "/vdisks", { name: "disk-a", size: "64M" });
    assert.equal(again.status, 409);
    assert.equal((again.body as ErrorBody).error.code, "EXISTS");
    assert.match((again.body as ErrorBody).error.message, /choose another name/);
  });

  it("lists the vDisks and shows one with its statistics", async function () {
    const listed = await call("GET", "/vdisks");
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.vdisks.map((vdisk: { name: string }) => vdisk.name).sort(), ["disk-a", "disk_b"]);
    const shown = await call("GET", "/vdisks/disk-a");
    assert.equal(shown.status, 200);
    assert.equal(shown.body.name, "disk-a");
    assert.equal(shown.body.sizeBytes, 64 * MIB);
    assert.equal(typeof shown.body.stats.writeOps, "number");
  });

  it("answers requests for a missing vDisk with 404 NOT_FOUND", async function () {
    for (const method of ["GET", "DELETE"]) {
      const missing = await call(method, "/vdisks/nope");
      assert.equal(missing.status, 404, method);
      assert.equal((missing.body as ErrorBody).error.code, "NOT_FOUND");
      assert.match((missing.body as ErrorBody).error.message, /nope/);
    }
  });

  it("refuses invalid requests with 400 and a clear message, and stays up", async function () {
    const invalid: Array<[string, string, unknown, RegExp]> = [
      ["POST", "/vdisks", { name: "Bad Name", size: "1G" }, /a vDisk name is 1-63 characters/],
      ["POST", "/vdisks", { name: "disk-c", size: 4097 }, /multiple of 4096/],
      ["POST", "/vdisks", { name: "disk-c", size: "65T" }, /exceeds the largest vDisk/],
      ["POST", "/vdisks", { name: "disk-c", size: "1.5G" }, /whole number of a smaller unit/],
      ["POST", "/vdisks", { name: "disk-c" }, /must have the field "size"/],
      ["POST", "/vdisks", { name: "disk-c", size: "1G", extra: true }, /unknown field "extra"/],
      ["POST", "/vdisks", "{not json", /JSON/],
      ["GET", "/vdisks/UPPER", undefined, /params\.name must match pattern/],
    ];
    for (const [method, pathname, body, message] of invalid) {
      const response = await call(method, pathname, body);
      assert.equal(response.status, 400, `${method} ${pathname} ${JSON.stringify(body)}: ${JSON.stringify(response.body)}`);
      assert.equal((response.body as ErrorBody).error.code, "INVALID_REQUEST");
      assert.match((response.body as ErrorBody).error.message, message);
    }
    const unknownRoute = await call("GET", "/nothing");
    assert.equal(unknownRoute.status, 404);
    assert.equal((unknownRoute.body as ErrorBody).error.code, "ROUTE_NOT_FOUND");
    assert.ok(storagedriver.running, "the process is still running");
    assert.equal((await call("GET", "/health")).status, 200);
  });

  it("deletes a vDisk", async function () {
    const deleted = await call("DELETE", "/vdisks/disk_b");
    assert.equal(deleted.status, 204);
    assert.equal((await call("GET", "/vdisks/disk_b")).status, 404);
  });

  it("refuses to start on a port that is in use, saying so", async function () {
    const otherDirectory = await tempDirs.make("busy");
    const otherConfig = path.join(otherDirectory, "storagedriver.json");
    await writeFile(otherConfig, JSON.stringify({ vpool: "sdtest", directory: "vpool", backend: { type: "local", path: "backend" }, managementApi: { port } }));
    const result = await runOvs(["storagedriver", "run", "--config", otherConfig], START_TIMEOUT_MS);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is in use`));
  });

  it("refuses a config with a mistake, naming the field", async function () {
    const badConfig = path.join(directory, "bad.json");
    await writeFile(badConfig, JSON.stringify({ vpool: "sdtest", directory: "vpool", backend: { type: "s4" } }));
    const result = await runOvs(["storagedriver", "run", "--config", badConfig]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /"backend"\.type is "s4": supported backend types are local/);
  });

  it("stops cleanly on SIGTERM within 30 s, and a restart finds the vDisks again", async function () {
    assert.ok(killPid(storagedriver.pid, "SIGTERM"));
    const exit = await storagedriver.waitForExit(STOP_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 0, signal: null }, storagedriver.describe());
    assert.match(storagedriver.stdout, /stopped cleanly/);

    storagedriver = await start();
    const listed = await call("GET", "/vdisks");
    assert.deepEqual(listed.body.vdisks.map((vdisk: { name: string }) => vdisk.name), ["disk-a"]);
    assert.equal(listed.body.vdisks[0].sizeBytes, 64 * MIB);
    assert.ok(killPid(storagedriver.pid, "SIGINT"));
    assert.equal((await storagedriver.waitForExit(STOP_TIMEOUT_MS)).code, 0);
  });
});

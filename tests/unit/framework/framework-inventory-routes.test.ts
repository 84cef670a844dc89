// Goal: /api/backends and /api/vpools answer every request with the right status and a message
// that says what to do: success, 400 on invalid bodies (schema and model checks), 401 without a
// token, 403 for a write token (backends and vPools need manage), 404, 409 on conflicts (names
// taken, a backend in use, the managed backend, the first vPool), 503 when an Alba proxy does not
// answer. The model is real (SQLite in a temporary file) and so is the vPool control; no
// StorageDriver is started here (tests/integration/cluster-vpools.test.ts does that).
import assert from "node:assert/strict";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { buildFrameworkApi } from "../../../framework/src/api/framework-api.ts";
import { FrameworkTasks } from "../../../framework/src/api/framework-tasks.ts";
import { StorageDriverRouter } from "../../../framework/src/api/storagedriver-router.ts";
import { AuthStore } from "../../../framework/src/auth/auth-store.ts";
import { TokenIssuer } from "../../../framework/src/auth/tokens.ts";
import { defaultClusterConfig, type ClusterConfig } from "../../../framework/src/cluster/cluster-config.ts";
import { recordInventory } from "../../../framework/src/cluster/inventory.ts";
import { VPoolControl } from "../../../framework/src/cluster/vpool-control.ts";
import { VPoolRuntimes } from "../../../framework/src/cluster/vpool-runtimes.ts";
import { FrameworkModel } from "../../../framework/src/model/framework-model.ts";
import { apiCaller, unreachableStorageDriver } from "../../helpers/framework-fixtures.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

describe("framework: /api/backends and /api/vpools", function () {
  this.timeout(60_000);
  const tempDirs = new TempDirs("framework-inventory");
  let app: FastifyInstance;
  let model: FrameworkModel;
  let work: string;
  const tokens: Record<string, string> = {};
  let config: ClusterConfig;
  let configSaves = 0;

  before(async function () {
    work = await tempDirs.make();
    model = FrameworkModel.open(path.join(work, "framework.db"));
    config = defaultClusterConfig("2026-11-22T12:00:00.000Z");
    config.vpools[0].backend = { type: "local", path: "backend" };
    recordInventory({ model, config, dataDirectory: work, storageRouter: "node-1", ports: { management: 8510, nbd: 10809, iscsi: 3260 } });
    // A managed Alba backend as ovs up records it, with a proxy that is not there.
    model.backends.create({ name: "alba", kind: "alba", config: { proxyUrl: "http://127.0.0.1:1" } });
    const logger = pino({ level: "silent" });
    const router = new StorageDriverRouter(unreachableStorageDriver());
    const frameworkTasks = new FrameworkTasks(model.tasks);
    const vpools = new VPoolControl({
      model, runtimes: new VPoolRuntimes({ dataDirectory: work, output: { out: () => {}, err: () => {} }, logger }), router, tasks: frameworkTasks,
      config, storageRouter: "node-1", stopRequested: new Promise(() => {}), logger, saveConfig: async () => { configSaves++; },
    });
    const store = AuthStore.over(model);
    await store.addUser("admin", "admin-password-1", "manage");
    await store.addUser("writer", "writer-password-1", "write");
    const issuer = new TokenIssuer({ grants: model.tokenGrants });
    tokens.admin = issuer.issue("user admin", "manage").token;
    tokens.writer = issuer.issue("user writer", "write").token;
    app = buildFrameworkApi({ storagedriver: router, logger, auth: { store, tokens: issuer }, model, managedBackend: "alba", vpools, frameworkTasks });
    await app.ready();
  });

  after(async function () {
    await app.close();
    model.close();
    await tempDirs.removeAll();
  });

  const { call, expectError } = apiCaller(() => app, tokens);

  it("backends: list without secrets, create, show, change, delete", async function () {
    const listed = await call("GET", "/api/backends");
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.json.backends.map((backend: { name: string; managed: boolean; vpools: string[] }) => [backend.name, backend.managed, backend.vpools]),
      [["alba", true, []], ["local", false, ["vpool1"]]]);
    const created = await call("POST", "/api/backends", { name: "s3-1", kind: "s3", config: { endpoint: "http://127.0.0.1:9000", bucket: "ovs", accessKeyId: "AKID", secretAccessKey: "very-secret" } });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.deepEqual(created.json.secretsSet, ["secretAccessKey"]);
    assert.equal(created.json.config.accessKeyId, "AKID");
    const shown = await call("GET", "/api/backends/s3-1");
    assert.equal(shown.status, 200);
    assert.ok(!JSON.stringify(shown.json).includes("very-secret"), "no secret is shown");
    const changed = await call("PATCH", "/api/backends/s3-1", { config: { endpoint: "http://127.0.0.1:9001", bucket: "ovs", accessKeyId: "AKID" } });
    assert.equal(changed.status, 200, JSON.stringify(changed.json));
    assert.equal(changed.json.config.endpoint, "http://127.0.0.1:9001");
    assert.deepEqual(changed.json.secretsSet, ["secretAccessKey"], "the secret is kept when left out");
    assert.equal((await call("DELETE", "/api/backends/s3-1")).status, 204);
    assert.equal((await call("GET", "/api/backends/s3-1")).status, 404);
    const albaShown = await call("GET", "/api/backends/alba");
    assert.deepEqual(albaShown.json.asds, [], "an Alba backend shows its ASDs");
  });

  it("backends: 400, 401, 403, 404, 409 and 503 with messages that say what to do", async function () {
    await expectError(400, "INVALID_REQUEST", /kind/, "POST", "/api/backends", { name: "x", kind: "ftp", config: {} });
    await expectError(400, "INVALID_REQUEST", /local backend config path must be an absolute directory/, "POST", "/api/backends", { name: "x", kind: "local", config: { path: "relative" } });
    await expectError(400, "INVALID_REQUEST", /s3 backend config has accessKeyId but not secretAccessKey/, "POST", "/api/backends", { name: "x", kind: "s3", config: { endpoint: "http://127.0.0.1:9000", bucket: "b", accessKeyId: "a" } });
    await expectError(409, "CONFLICT", /a backend named local exists already: choose another name/, "POST", "/api/backends", { name: "local", kind: "local", config: { path: "/tmp/x" } });
    await expectError(401, "UNAUTHORIZED", /token/, "GET", "/api/backends", undefined, null);
    await expectError(403, "FORBIDDEN", /POST \/api\/backends needs the manage role; user writer has write/, "POST", "/api/backends", { name: "x", kind: "local", config: { path: "/tmp/x" } }, "writer");
    assert.equal((await call("GET", "/api/backends", undefined, "writer")).status, 200, "reading needs read only");
    await expectError(404, "NOT_FOUND", /no backend named nope: list the backends/, "GET", "/api/backends/nope");
    await expectError(404, "NOT_FOUND", /no backend named nope/, "PATCH", "/api/backends/nope", { config: { path: "/tmp/x" } });
    await expectError(404, "NOT_FOUND", /no backend named nope/, "DELETE", "/api/backends/nope");
    await expectError(409, "CONFLICT", /backend local is used by the vPools vpool1: delete them first/, "DELETE", "/api/backends/local");
    await expectError(409, "CONFLICT", /backend alba is the Alba backend ovs up runs: it cannot be deleted/, "DELETE", "/api/backends/alba");
    await expectError(409, "CONFLICT", /it cannot be changed/, "PATCH", "/api/backends/alba", { config: { proxyUrl: "http://127.0.0.1:2" } });
    await expectError(400, "INVALID_REQUEST", /backend local is a local backend: only alba backends have presets/, "GET", "/api/backends/local/presets");
    await expectError(503, "UNAVAILABLE", /the Alba proxy at http:\/\/127\.0\.0\.1:1 did not answer/, "GET", "/api/backends/alba/presets");
    await expectError(400, "INVALID_REQUEST", /policies/, "POST", "/api/backends/alba/presets", { name: "p", policies: [] });
    await expectError(404, "NOT_FOUND", /no backend named nope/, "POST", "/api/backends/nope/presets", { name: "p", policies: [{ k: 2, m: 1, c: 2, x: 1 }] });
  });

  it("vPools: list, show, and 400, 401, 403, 404, 409 on create and delete", async function () {
    const listed = await call("GET", "/api/vpools");
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.json.vpools.map((vpool: { name: string; primary: boolean; backend: string }) => [vpool.name, vpool.primary, vpool.backend]), [["vpool1", true, "local"]]);
    const shown = await call("GET", "/api/vpools/vpool1");
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.json.storagedrivers.map((driver: { storageRouter: string; nbdPort: number; status: string }) => [driver.storageRouter, driver.nbdPort, driver.status]),
      [["node-1", 10809, "failed"]], "its StorageDriver does not run in this test");
    await expectError(404, "NOT_FOUND", /no vPool named nope: list the vPools/, "GET", "/api/vpools/nope");
    await expectError(400, "INVALID_REQUEST", /must NOT have additional properties|unknown/, "POST", "/api/vpools", { name: "p2", backend: "local", colour: "red" });
    await expectError(400, "INVALID_REQUEST", /name/, "POST", "/api/vpools", { name: "Bad Name", backend: "local" });
    await expectError(400, "INVALID_REQUEST", /vPool scoSizeBytes must be a multiple of 4096/, "POST", "/api/vpools", { name: "p2", backend: "local", scoSizeBytes: 4 * 1024 * 1024 + 1 });
    await expectError(404, "NOT_FOUND", /no backend named nope: create it first/, "POST", "/api/vpools", { name: "p2", backend: "nope" });
    await expectError(409, "CONFLICT", /a vPool named vpool1 exists already: choose another name/, "POST", "/api/vpools", { name: "vpool1", backend: "local" });
    await expectError(401, "UNAUTHORIZED", /token/, "POST", "/api/vpools", { name: "p2", backend: "local" }, null);
    await expectError(403, "FORBIDDEN", /POST \/api\/vpools needs the manage role/, "POST", "/api/vpools", { name: "p2", backend: "local" }, "writer");
    await expectError(403, "FORBIDDEN", /DELETE \/api\/vpools\/vpool1 needs the manage role/, "DELETE", "/api/vpools/vpool1", undefined, "writer");
    await expectError(404, "NOT_FOUND", /no vPool named nope/, "DELETE", "/api/vpools/nope");
    await expectError(409, "CONFLICT", /vPool vpool1 is the host's first vPool/, "DELETE", "/api/vpools/vpool1");
    assert.equal(model.vpools.list().length, 1, "nothing was created by the refused requests");
  });

  it("vPools: PATCH changes sizes in the model and, for the first vPool, config.json; 400, 401, 403, 404", async function () {
    const changed = await call("PATCH", "/api/vpools/vpool1", { readCacheSizeBytes: 128 * 1024 * 1024, scoSizeBytes: 8 * 1024 * 1024 });
    assert.equal(changed.status, 200, JSON.stringify(changed.json));
    assert.equal(changed.json.readCacheSizeBytes, 128 * 1024 * 1024);
    assert.equal(model.vpools.get("vpool1").scoSizeBytes, 8 * 1024 * 1024);
    assert.equal(config.vpools[0].settings.readCacheSizeBytes, 128 * 1024 * 1024, "the first vPool's settings live in config.json");
    assert.equal(configSaves, 1);
    await expectError(400, "INVALID_REQUEST", /unknown field "compression".*never change.*create another vPool/, "PATCH", "/api/vpools/vpool1", { compression: "lz4" });
    await expectError(400, "INVALID_REQUEST", /scoSizeBytes must be a multiple of 4096/, "PATCH", "/api/vpools/vpool1", { scoSizeBytes: 4 * 1024 * 1024 + 1 });
    await expectError(400, "INVALID_REQUEST", /everyMinutes/, "PATCH", "/api/vpools/vpool1", { schedules: { snapshots: { everyMinutes: 0 } } });
    await expectError(400, "INVALID_REQUEST", /unknown field "backup"/, "PATCH", "/api/vpools/vpool1", { schedules: { backup: null } });
    const scheduled = await call("PATCH", "/api/vpools/vpool1", { schedules: { scrub: null, snapshots: { hourlyAtMinute: 15 } } });
    assert.equal(scheduled.status, 200, JSON.stringify(scheduled.json));
    assert.deepEqual(model.vpools.get("vpool1").schedules, { snapshots: { hourlyAtMinute: 15 }, scrub: null });
    assert.equal(configSaves, 1, "schedules live in the model, not config.json");
    await expectError(400, "INVALID_REQUEST", /must NOT have fewer than 1 properties|settings to change/, "PATCH", "/api/vpools/vpool1", {});
    await expectError(401, "UNAUTHORIZED", /token/, "PATCH", "/api/vpools/vpool1", { readCacheSizeBytes: 0 }, null);
    await expectError(403, "FORBIDDEN", /PATCH \/api\/vpools\/vpool1 needs the manage role/, "PATCH", "/api/vpools/vpool1", { readCacheSizeBytes: 0 }, "writer");
    await expectError(404, "NOT_FOUND", /no vPool named nope/, "PATCH", "/api/vpools/nope", { readCacheSizeBytes: 0 });
    assert.equal(model.vpools.get("vpool1").readCacheSizeBytes, 128 * 1024 * 1024, "refused requests changed nothing");
    assert.equal(configSaves, 1);
  });
});

// Goal: PATCH and DELETE /api/backends/:name/presets/:preset change and delete an Alba backend's
// presets through its proxy and keep the model's copy in step: success (read back from Alba's
// metadata and from the model), 400 (schema, Alba's checks, not an Alba backend), 401 without a
// token, 403 for a write token (presets need manage), 404 (backend, preset), 409 (a namespace uses
// it, Alba's default, the backend's config names it), 503 when the proxy does not answer. Refused
// requests change neither Alba nor the model. The proxy is real, in-process on loopback over
// in-memory ASDs (as in tests/unit/alba/proxy-server.test.ts); the model is SQLite in a temp file.
import assert from "node:assert/strict";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import type { AsdApi } from "../../../alba/src/asd/asd-api.ts";
import { AlbaClient } from "../../../alba/src/client/alba-client.ts";
import { AsdPool } from "../../../alba/src/client/asd-pool.ts";
import type { AsdRecord } from "../../../alba/src/metadata/metadata-store.ts";
import { SqliteMetadataStore } from "../../../alba/src/metadata/sqlite-metadata-store.ts";
import { defaultPreset } from "../../../alba/src/preset/preset-validation.ts";
import type { Policy } from "../../../alba/src/preset/preset.ts";
import { startProxyServer, type RunningProxyServer } from "../../../alba/src/proxy/proxy-server.ts";
import { buildFrameworkApi } from "../../../framework/src/api/framework-api.ts";
import { StorageDriverRouter } from "../../../framework/src/api/storagedriver-router.ts";
import { AuthStore } from "../../../framework/src/auth/auth-store.ts";
import { TokenIssuer } from "../../../framework/src/auth/tokens.ts";
import { FrameworkModel } from "../../../framework/src/model/framework-model.ts";
import { apiCaller, unreachableStorageDriver } from "../../helpers/framework-fixtures.ts";
import { MemoryAsd } from "../../helpers/memory-asd.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

const POLICY_2_1: Policy = { k: 2, m: 1, c: 3, x: 1 };
const POLICY_1_2: Policy = { k: 1, m: 2, c: 3, x: 1 };

describe("framework: PATCH and DELETE /api/backends/:name/presets/:preset", function () {
  this.timeout(60_000);
  const tempDirs = new TempDirs("framework-presets");
  let app: FastifyInstance;
  let model: FrameworkModel;
  let albaClient: AlbaClient;
  let server: RunningProxyServer;
  const tokens: Record<string, string> = {};

  before(async function () {
    const work = await tempDirs.make();
    // Alba: 3 in-memory ASDs on 3 nodes, the default preset, "used" (namespace vp-ns) and "named" (unused).
    const metadata = SqliteMetadataStore.open(path.join(work, "metadata.sqlite"));
    const asds = Array.from({ length: 3 }, (_, index) => new MemoryAsd(`asd-${index}`, `node-${index}`));
    const pool = new AsdPool({ metadata, connect: (record: AsdRecord): AsdApi => asds[record.port - 7000]!, background: false });
    albaClient = new AlbaClient({ metadata, pool });
    for (const [index] of asds.entries()) await albaClient.claimAsd("memory", 7000 + index);
    metadata.addPreset(defaultPreset());
    metadata.setDefaultPreset("default");
    for (const name of ["used", "named"]) await albaClient.addPreset({ name, policies: [POLICY_2_1], fragmentSizeBytes: 4096, compression: "none", encryption: "none", checksum: "crc32c" });
    await albaClient.createNamespace("vp-ns", { presetName: "used" });
    server = await startProxyServer({ api: albaClient, host: "127.0.0.1", port: 0 });

    model = FrameworkModel.open(path.join(work, "framework.db"));
    model.backends.create({ name: "alba1", kind: "alba", config: { proxyUrl: server.url } });
    // The same Alba seen as a backend whose vPools' namespaces get the preset "named".
    model.backends.create({ name: "alba2", kind: "alba", config: { proxyUrl: server.url, presetName: "named" } });
    model.backends.create({ name: "gone", kind: "alba", config: { proxyUrl: "http://127.0.0.1:1" } });
    model.backends.create({ name: "local", kind: "local", config: { path: path.join(work, "backend") } });
    const logger = pino({ level: "silent" });
    const store = AuthStore.over(model);
    await store.addUser("admin", "admin-password-1", "manage");
    await store.addUser("writer", "writer-password-1", "write");
    const issuer = new TokenIssuer({ grants: model.tokenGrants });
    tokens.admin = issuer.issue("user admin", "manage").token;
    tokens.writer = issuer.issue("user writer", "write").token;
    app = buildFrameworkApi({ storagedriver: new StorageDriverRouter(unreachableStorageDriver()), logger, auth: { store, tokens: issuer }, model });
    await app.ready();
  });

  after(async function () {
    await app.close();
    model.close();
    await server.close();
    await albaClient.close();
    await tempDirs.removeAll();
  });

  const { call, expectError } = apiCaller(() => app, tokens);

  function modelPresetNames(backend: string): string[] {
    return model.albaPresets.list(backend).map((preset) => preset.name);
  }

  it("patch_changes_alba_and_the_model_copy_then_delete_removes_both", async function () {
    // Goal: a preset added through the API gets new policies and becomes Alba's default with PATCH (read back from Alba's metadata and the model); DELETE is refused while it is the default, then removes it from both.
    const added = await call("POST", "/api/backends/alba1/presets", { name: "ec", policies: [POLICY_2_1], fragmentSizeBytes: 4096 });
    assert.equal(added.status, 201, JSON.stringify(added.json));
    assert.deepEqual(model.albaPresets.get("alba1", "ec").policies, [POLICY_2_1]);

    const changed = await call("PATCH", "/api/backends/alba1/presets/ec", { policies: [POLICY_1_2, POLICY_2_1] });
    assert.equal(changed.status, 200, JSON.stringify(changed.json));
    assert.deepEqual(changed.json.policies, [POLICY_1_2, POLICY_2_1]);
    assert.equal(changed.json.fragmentSizeBytes, 4096);
    assert.deepEqual(albaClient.metadata.getPreset("ec")?.policies, [POLICY_1_2, POLICY_2_1], "Alba stores the new policies");
    assert.deepEqual(model.albaPresets.get("alba1", "ec").policies, [POLICY_1_2, POLICY_2_1], "the model's copy follows");
    assert.equal(model.albaPresets.get("alba1", "ec").fragmentSizeBytes, 4096);

    const madeDefault = await call("PATCH", "/api/backends/alba1/presets/ec", { default: true });
    assert.equal(madeDefault.status, 200, JSON.stringify(madeDefault.json));
    assert.equal(albaClient.metadata.defaultPresetName(), "ec");
    await expectError(409, "CONFLICT", /preset ec cannot be deleted: it is the default preset .*make another preset the default first/, "DELETE", "/api/backends/alba1/presets/ec");
    assert.deepEqual(modelPresetNames("alba1"), ["ec"], "a refused delete keeps the model's copy");
    assert.equal((await call("PATCH", "/api/backends/alba1/presets/default", { default: true })).status, 200);
    assert.equal(albaClient.metadata.defaultPresetName(), "default");

    const deleted = await call("DELETE", "/api/backends/alba1/presets/ec");
    assert.equal(deleted.status, 204, JSON.stringify(deleted.json));
    assert.equal(albaClient.metadata.getPreset("ec"), undefined, "Alba no longer has it");
    assert.deepEqual(modelPresetNames("alba1"), [], "nor does the model");
    const listed = await call("GET", "/api/backends/alba1/presets");
    assert.deepEqual(listed.json.presets.map((preset: { name: string }) => preset.name), ["default", "named", "used"]);
    await expectError(404, "NOT_FOUND", /^preset ec does not exist$/, "DELETE", "/api/backends/alba1/presets/ec");
  });

  it("400_401_403_404_409_503_with_messages_that_say_what_to_do", async function () {
    // Goal: every refusal names its reason, and none of them changes Alba's presets or the model.
    const before = JSON.stringify(albaClient.metadata.listPresets());
    const usedUrl = "/api/backends/alba1/presets/used";
    await expectError(400, "INVALID_REQUEST", /policies\[0\]: c must be between k and k \+ m \(2\.\.3\), got 1/, "PATCH", usedUrl, { policies: [{ k: 2, m: 1, c: 1, x: 1 }] });
    await expectError(400, "INVALID_REQUEST", /fragmentSizeBytes cannot change .*add a new preset instead/, "PATCH", usedUrl, { fragmentSizeBytes: 8192 });
    await expectError(400, "INVALID_REQUEST", /nothing to change: give policies, default: true, or both/, "PATCH", usedUrl, {});
    await expectError(400, "INVALID_REQUEST", /default can only be true/, "PATCH", usedUrl, { default: false });
    await expectError(400, "INVALID_REQUEST", /body\.policies must NOT have fewer than 1 items: the new policies/, "PATCH", usedUrl, { policies: [] });
    await expectError(400, "INVALID_REQUEST", /body has the unknown field "colour": remove it/, "PATCH", usedUrl, { colour: "red" });
    await expectError(400, "INVALID_REQUEST", /params\.preset must match pattern .*the preset's name: 1-63 of a-z/, "PATCH", "/api/backends/alba1/presets/Bad%20Name", { default: true });
    await expectError(400, "INVALID_REQUEST", /backend local is a local backend: only alba backends have presets/, "PATCH", "/api/backends/local/presets/used", { default: true });
    await expectError(400, "INVALID_REQUEST", /backend local is a local backend: only alba backends have presets/, "DELETE", "/api/backends/local/presets/used");
    await expectError(401, "UNAUTHORIZED", /token/, "PATCH", usedUrl, { default: true }, null);
    await expectError(401, "UNAUTHORIZED", /token/, "DELETE", usedUrl, undefined, null);
    await expectError(403, "FORBIDDEN", /PATCH \/api\/backends\/alba1\/presets\/used needs the manage role; user writer has write/, "PATCH", usedUrl, { default: true }, "writer");
    await expectError(403, "FORBIDDEN", /DELETE \/api\/backends\/alba1\/presets\/used needs the manage role; user writer has write/, "DELETE", usedUrl, undefined, "writer");
    await expectError(404, "NOT_FOUND", /no backend named nope: list the backends/, "PATCH", "/api/backends/nope/presets/used", { default: true });
    await expectError(404, "NOT_FOUND", /no backend named nope/, "DELETE", "/api/backends/nope/presets/used");
    await expectError(404, "NOT_FOUND", /^preset nope does not exist$/, "PATCH", "/api/backends/alba1/presets/nope", { default: true });
    await expectError(404, "NOT_FOUND", /^preset nope does not exist$/, "DELETE", "/api/backends/alba1/presets/nope");
    await expectError(409, "CONFLICT", /^preset used cannot be deleted: 1 namespace uses it \(vp-ns\): delete them first$/, "DELETE", usedUrl);
    await expectError(409, "CONFLICT", /^preset named is the preset of backend alba2: name another preset in the backend's config first$/, "DELETE", "/api/backends/alba2/presets/named");
    await expectError(503, "UNAVAILABLE", /the Alba proxy at http:\/\/127\.0\.0\.1:1 did not answer/, "PATCH", "/api/backends/gone/presets/used", { default: true });
    await expectError(503, "UNAVAILABLE", /the Alba proxy at http:\/\/127\.0\.0\.1:1 did not answer/, "DELETE", "/api/backends/gone/presets/used");
    assert.equal(JSON.stringify(albaClient.metadata.listPresets()), before, "Alba's presets are as they were");
    assert.equal(albaClient.metadata.defaultPresetName(), "default");
    assert.ok(albaClient.metadata.getPreset("named") !== undefined, "the preset alba2's config names was not deleted in Alba");
  });
});

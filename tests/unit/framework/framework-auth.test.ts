// Goal: the framework API lets nobody in without a token and each role only as far as it goes:
// 401 (with WWW-Authenticate) without or with a bad/expired token on every protected route, 403 for
// a read token on anything that changes state and for a write token on schedules and API clients;
// the OAuth2 token endpoint's password and client_credentials grants (form, JSON, HTTP Basic) and
// their failures; API clients created, listed without secrets and deleted; the store keeps users
// across reopening with only scrypt hashes; no secret ever reaches the log.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { buildFrameworkApi } from "../../../framework/src/api/framework-api.ts";
import { AuthStore } from "../../../framework/src/auth/auth-store.ts";
import { TokenIssuer } from "../../../framework/src/auth/tokens.ts";
import { FrameworkModel } from "../../../framework/src/model/framework-model.ts";
import { Scheduler } from "../../../framework/src/scheduler/scheduler.ts";
import { MANAGEMENT_ROUTE_LIST } from "../../../volumedriver/src/storagedriver/management-api.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";
import { unreachableStorageDriver } from "../../helpers/framework-fixtures.ts";

describe("framework: authentication and roles", function () {
  this.timeout(60_000);
  const tempDirs = new TempDirs("framework-auth");
  let app: FastifyInstance;
  let store: AuthStore;
  let adminPassword: string;
  let nowMs = Date.UTC(2026, 10, 22, 12, 0);
  let logText = "";
  let databaseFile = "";
  const tokens: Record<string, string> = {};

  async function token(body: Record<string, string>, asForm = false): Promise<{ status: number; json: any }> {
    const response = await app.inject({
      method: "POST", url: "/api/oauth2/token",
      ...(asForm ? { headers: { "content-type": "application/x-www-form-urlencoded" }, payload: new URLSearchParams(body).toString() } : { payload: body }),
    });
    return { status: response.statusCode, json: response.json() };
  }

  before(async function () {
    databaseFile = path.join(await tempDirs.make(), "framework.db");
    store = AuthStore.open(databaseFile);
    adminPassword = (await store.ensureAdmin())!;
    await store.addUser("reader", "reader-password-1", "read");
    await store.addUser("writer", "writer-password-1", "write");
    const scheduler = new Scheduler();
    scheduler.add({ name: "snapshots", schedule: { hourlyAtMinute: 0 }, enabled: false, run: async () => undefined });
    const logger = pino({ level: "debug" }, new Writable({ write(chunk, _encoding, done) { logText += String(chunk); done(); } }));
    const storagedriver = unreachableStorageDriver();
    app = buildFrameworkApi({ storagedriver, logger, scheduler, auth: { store, tokens: new TokenIssuer({ lifetimeSeconds: 3600, nowMs: () => nowMs }) } });
    await app.ready();
    for (const [name, password] of [["admin", adminPassword], ["reader", "reader-password-1"], ["writer", "writer-password-1"]]) {
      const issued = await token({ grant_type: "password", username: name, password }, name === "reader");
      assert.equal(issued.status, 200, JSON.stringify(issued.json));
      assert.equal(issued.json.token_type, "Bearer");
      tokens[name] = issued.json.access_token as string;
    }
  });

  after(async function () {
    await app.close();
    store.close();
    await tempDirs.removeAll();
  });

  const protectedRoutes = [
    ...MANAGEMENT_ROUTE_LIST.filter((route) => route !== "GET /health").map((route) => {
      const [method, pathname] = route.split(" ");
      return { method, url: `/api${pathname.replace(":name", "disk1").replace(":snapshot", "s1").replace(":id", "t1")}` };
    }),
    { method: "GET", url: "/api/backend" }, { method: "GET", url: "/api/schedules" }, { method: "PUT", url: "/api/schedules/snapshots" },
    { method: "POST", url: "/api/schedules/snapshots/run" }, { method: "GET", url: "/api/schedules/snapshots/runs" },
    { method: "GET", url: "/api/clients" }, { method: "POST", url: "/api/clients" }, { method: "DELETE", url: "/api/clients/ovs-0000000000000000" },
    { method: "GET", url: "/api/no-such-route" },
  ] as const;

  it("refuses every protected route without a token, or with a wrong or expired one: 401 with WWW-Authenticate", async function () {
    for (const route of protectedRoutes) {
      for (const authorization of [undefined, "Bearer not-a-token", "Basic YWRtaW46eA=="]) {
        const response = await app.inject({ method: route.method, url: route.url, headers: authorization === undefined ? {} : { authorization } });
        assert.equal(response.statusCode, 401, `${route.method} ${route.url} with ${authorization}: ${response.body}`);
        assert.equal(response.headers["www-authenticate"], 'Bearer realm="ovs"');
      }
    }
    const expiring = await token({ grant_type: "password", username: "reader", password: "reader-password-1" });
    nowMs += 3601 * 1000;
    const expired = await app.inject({ method: "GET", url: "/api/vdisks", headers: { authorization: `Bearer ${expiring.json.access_token}` } });
    assert.equal(expired.statusCode, 401);
    assert.match(expired.json().error.message, /unknown or expired: log in again/);
    nowMs -= 3601 * 1000;
  });

  it("leaves the open routes open", async function () {
    assert.equal((await app.inject({ method: "GET", url: "/api/health" })).statusCode, 503, "the StorageDriver is unreachable here, but no 401");
    assert.equal((await app.inject({ method: "GET", url: "/api/docs/json" })).statusCode, 200);
    assert.equal((await app.inject({ method: "GET", url: "/" })).statusCode, 200);
  });

  it("lets each role as far as it goes: 403 beyond it, naming the role needed", async function () {
    const as = async (who: string, method: string, url: string, payload?: object): Promise<number> =>
      (await app.inject({ method: method as "GET", url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload === undefined ? {} : { payload }) })).statusCode;
    // Reads pass auth (503: the StorageDriver is not there), changes do not.
    assert.equal(await as("reader", "GET", "/api/vdisks"), 503);
    const denied = await app.inject({ method: "POST", url: "/api/vdisks", headers: { authorization: `Bearer ${tokens.reader}` }, payload: { name: "d", size: "1G" } });
    assert.equal(denied.statusCode, 403);
    assert.match(denied.json().error.message, /POST \/api\/vdisks needs the write role; user reader has read/);
    assert.equal(await as("reader", "DELETE", "/api/vdisks/disk1"), 403);
    assert.equal(await as("writer", "POST", "/api/vdisks", { name: "d", size: "1G" }), 503);
    assert.equal(await as("writer", "PUT", "/api/schedules/snapshots", { enabled: true }), 403);
    assert.equal(await as("writer", "GET", "/api/schedules"), 200);
    assert.equal(await as("writer", "GET", "/api/clients"), 403);
    assert.equal(await as("admin", "PUT", "/api/schedules/snapshots", { enabled: false }), 200);
    assert.equal(await as("admin", "GET", "/api/clients"), 200);
  });

  it("the token endpoint: client credentials in the body or as HTTP Basic; clear failures", async function () {
    const created = await app.inject({ method: "POST", url: "/api/clients", headers: { authorization: `Bearer ${tokens.admin}` }, payload: { role: "write", description: "backups" } });
    assert.equal(created.statusCode, 201);
    const client = created.json<{ clientId: string; clientSecret: string; role: string }>();
    assert.equal(client.role, "write");
    const viaBody = await token({ grant_type: "client_credentials", client_id: client.clientId, client_secret: client.clientSecret }, true);
    assert.equal(viaBody.status, 200);
    assert.equal(viaBody.json.scope, "write");
    const basic = Buffer.from(`${client.clientId}:${client.clientSecret}`).toString("base64");
    const viaBasic = await app.inject({ method: "POST", url: "/api/oauth2/token", headers: { authorization: `Basic ${basic}` }, payload: { grant_type: "client_credentials" } });
    assert.equal(viaBasic.statusCode, 200, viaBasic.body);
    const listed = await app.inject({ method: "GET", url: "/api/clients", headers: { authorization: `Bearer ${tokens.admin}` } });
    assert.deepEqual(listed.json<{ clients: Array<Record<string, unknown>> }>().clients.map((entry) => Object.keys(entry).sort()), [["clientId", "createdAt", "description", "role"]]);
    assert.equal((await token({ grant_type: "client_credentials", client_id: client.clientId, client_secret: "wrong" })).status, 401);
    assert.equal((await token({ grant_type: "password", username: "admin", password: "wrong" })).json.error.code, "INVALID_GRANT");
    assert.equal((await token({ grant_type: "password", username: "nobody", password: "x" })).status, 401);
    assert.equal((await token({ grant_type: "password", username: "admin" })).status, 400);
    assert.equal((await token({ grant_type: "implicit" })).json.error.code, "UNSUPPORTED_GRANT_TYPE");
    const removed = await app.inject({ method: "DELETE", url: `/api/clients/${client.clientId}`, headers: { authorization: `Bearer ${tokens.admin}` } });
    assert.equal(removed.statusCode, 204);
    assert.equal((await token({ grant_type: "client_credentials", client_id: client.clientId, client_secret: client.clientSecret })).status, 401);
    // Nothing secret in the log.
    for (const secret of [adminPassword, "reader-password-1", client.clientSecret, tokens.admin, tokens.reader]) assert.ok(!logText.includes(secret), "a secret was logged");
  });

  it("keeps users across reopening, as scrypt hashes only", async function () {
    const reopened = AuthStore.open(databaseFile);
    try {
      assert.equal(await reopened.ensureAdmin(), undefined, "the admin exists already");
      assert.equal(await reopened.verifyUser("admin", adminPassword), "manage");
      assert.equal(await reopened.verifyUser("admin", `${adminPassword}x`), undefined);
    } finally {
      reopened.close();
    }
    // The main file and its write-ahead log (WAL mode) together hold everything written.
    const raw = [databaseFile, `${databaseFile}-wal`].filter((file) => existsSync(file)).map((file) => readFileSync(file).toString("latin1")).join("");
    assert.ok(!raw.includes(adminPassword) && !raw.includes("reader-password-1"), "no password in the database file");
    assert.match(raw, /scrypt\$32768\$8\$1\$/);
  });

  it("keeps bearer tokens in the model across a restart, as SHA-256 only, until they expire", async function () {
    const file = path.join(await tempDirs.make(), "framework.db");
    let clock = Date.UTC(2026, 10, 22, 12, 0);
    const first = FrameworkModel.open(file);
    const issued = new TokenIssuer({ lifetimeSeconds: 60, nowMs: () => clock, grants: first.tokenGrants }).issue("user admin", "manage");
    first.close();
    const raw = [file, `${file}-wal`].filter((name) => existsSync(name)).map((name) => readFileSync(name).toString("latin1")).join("");
    assert.ok(!raw.includes(issued.token), "the token itself is not stored");
    const second = FrameworkModel.open(file);
    try {
      const issuer = new TokenIssuer({ lifetimeSeconds: 60, nowMs: () => clock, grants: second.tokenGrants });
      assert.deepEqual(issuer.verify(issued.token), { subject: "user admin", role: "manage", expiresAtMs: clock + 60_000 });
      assert.equal(issuer.verify(`${issued.token}x`), undefined);
      clock += 60_000;
      assert.equal(issuer.verify(issued.token), undefined, "expired");
      assert.equal(second.tokenGrants.get("0".repeat(64)), undefined);
    } finally {
      second.close();
    }
  });
});

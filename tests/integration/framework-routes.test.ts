// Goal: every route of the framework API answers as documented for each case that applies to it:
// success, 400 on an invalid body or path, 401 without a token, 403 with too small a role, 404 for
// what does not exist, 409 on a conflict (a vDisk or snapshot that exists, a snapshot or vDisk with
// clones, a job that runs). Behind the framework: a real StorageDriver management API (listening on
// loopback) over a real engine vPool on a memory backend, auth on a temporary model file, and a
// scheduler whose job the test holds. One table, one line per route and case.
import assert from "node:assert/strict";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { buildFrameworkApi } from "../../framework/src/api/framework-api.ts";
import { StorageDriverClient } from "../../framework/src/api/storagedriver-client.ts";
import { AuthStore } from "../../framework/src/auth/auth-store.ts";
import { TokenIssuer } from "../../framework/src/auth/tokens.ts";
import { Scheduler } from "../../framework/src/scheduler/scheduler.ts";
import { MemoryObjectStore } from "../../volumedriver/src/backend/memory-store.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { MIB, type VPool } from "../../volumedriver/src/engine/vpool-types.ts";
import { buildManagementApi } from "../../volumedriver/src/storagedriver/management-api.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

type Who = "none" | "reader" | "writer" | "admin";
interface Case { what: string; method: "GET" | "POST" | "PUT" | "DELETE"; url: string; body?: unknown; who: Who; status: number; error?: RegExp }

describe("framework API: every route, every applicable status", function () {
  this.timeout(120_000);
  const tempDirs = new TempDirs("framework-routes");
  let backend: MemoryObjectStore;
  let vpool: VPool;
  let storagedriverApi: FastifyInstance;
  let app: FastifyInstance;
  let store: AuthStore;
  const tokens: Partial<Record<Who, string>> = {};
  let releaseJob: () => void = () => {};

  before(async function () {
    const directory = await tempDirs.make();
    backend = new MemoryObjectStore();
    vpool = await openVPool({ name: "routes", directory: path.join(directory, "vpool"), backend, scoSizeBytes: 4 * MIB });
    storagedriverApi = buildManagementApi({ vpool, backendDescription: "memory" });
    await storagedriverApi.listen({ host: "127.0.0.1", port: 0 });
    const address = storagedriverApi.server.address() as { port: number };
    const storagedriver = new StorageDriverClient({ vpool: "routes", baseUrl: `http://127.0.0.1:${address.port}`, logHint: "-" });
    store = AuthStore.open(path.join(directory, "framework.db"));
    const adminPassword = (await store.ensureAdmin())!;
    await store.addUser("reader", "reader-password", "read");
    await store.addUser("writer", "writer-password", "write");
    const scheduler = new Scheduler();
    scheduler.add({ name: "held", schedule: { dailyAt: { hour: 3, minute: 0 } }, run: () => new Promise<void>((resolve) => { releaseJob = resolve; }) });
    app = buildFrameworkApi({ storagedriver, scheduler, backendType: "memory", auth: { store, tokens: new TokenIssuer() } });
    await app.ready();
    for (const [who, password] of [["admin", adminPassword], ["reader", "reader-password"], ["writer", "writer-password"]] as const) {
      const response = await app.inject({ method: "POST", url: "/api/oauth2/token", payload: { grant_type: "password", username: who, password } });
      tokens[who] = response.json<{ access_token: string }>().access_token;
    }
    // The world the cases expect: base with snapshot s1 and a clone of it; lone with s2.
    for (const [method, url, body] of [
      ["POST", "/api/vdisks", { name: "base", size: "64M" }], ["POST", "/api/vdisks/base/snapshots", { name: "s1" }],
      ["POST", "/api/vdisks", { name: "clone", parent: "base@s1" }], ["POST", "/api/vdisks", { name: "lone", size: "64M" }],
      ["POST", "/api/vdisks/lone/snapshots", { name: "s2" }], ["POST", "/api/vdisks", { name: "victim", size: "64M" }],
    ] as const) {
      const response = await app.inject({ method, url, payload: body, headers: { authorization: `Bearer ${tokens.admin}` } });
      assert.ok(response.statusCode < 300, `${method} ${url}: ${response.body}`);
    }
  });

  after(async function () {
    releaseJob();
    await app?.close();
    await storagedriverApi?.close();
    store?.close();
    await vpool?.close();
    await backend?.close();
    await tempDirs.removeAll();
  });

  const cases: Case[] = [
    // vDisks
    { what: "create", method: "POST", url: "/api/vdisks", body: { name: "fresh", size: "16M" }, who: "writer", status: 201 },
    { what: "create: invalid size", method: "POST", url: "/api/vdisks", body: { name: "bad", size: "10GB" }, who: "writer", status: 400, error: /use G or GiB/ },
    { what: "create: no token", method: "POST", url: "/api/vdisks", body: { name: "x", size: "16M" }, who: "none", status: 401 },
    { what: "create: read role", method: "POST", url: "/api/vdisks", body: { name: "x", size: "16M" }, who: "reader", status: 403, error: /needs the write role/ },
    { what: "create: exists", method: "POST", url: "/api/vdisks", body: { name: "base", size: "16M" }, who: "writer", status: 409, error: /already exists/ },
    { what: "create clone, grown", method: "POST", url: "/api/vdisks", body: { name: "bigclone", parent: "base@s1", size: "128M" }, who: "writer", status: 201 },
    { what: "create clone: smaller than its snapshot", method: "POST", url: "/api/vdisks", body: { name: "c3", parent: "base@s1", size: "16M" }, who: "writer", status: 400, error: /at least the size of its snapshot/ },
    { what: "create clone: parent missing", method: "POST", url: "/api/vdisks", body: { name: "c2", parent: "base@nope" }, who: "writer", status: 404 },
    { what: "list", method: "GET", url: "/api/vdisks", who: "reader", status: 200 },
    { what: "list: no token", method: "GET", url: "/api/vdisks", who: "none", status: 401 },
    { what: "show", method: "GET", url: "/api/vdisks/base", who: "reader", status: 200 },
    { what: "show: invalid name", method: "GET", url: "/api/vdisks/Bad!", who: "reader", status: 400 },
    { what: "show: missing", method: "GET", url: "/api/vdisks/nope", who: "reader", status: 404 },
    { what: "delete: has clones", method: "DELETE", url: "/api/vdisks/base", who: "writer", status: 409, error: /clone/ },
    { what: "delete: read role", method: "DELETE", url: "/api/vdisks/victim", who: "reader", status: 403 },
    { what: "delete", method: "DELETE", url: "/api/vdisks/victim", who: "writer", status: 204 },
    { what: "delete: missing", method: "DELETE", url: "/api/vdisks/victim", who: "writer", status: 404 },
    // snapshots
    { what: "snapshot", method: "POST", url: "/api/vdisks/lone/snapshots", body: { name: "s3" }, who: "writer", status: 201 },
    { what: "snapshot: invalid name", method: "POST", url: "/api/vdisks/lone/snapshots", body: { name: "a@b" }, who: "writer", status: 400 },
    { what: "snapshot: exists", method: "POST", url: "/api/vdisks/lone/snapshots", body: { name: "s2" }, who: "writer", status: 409 },
    { what: "snapshot: vDisk missing", method: "POST", url: "/api/vdisks/nope/snapshots", body: { name: "s" }, who: "writer", status: 404 },
    { what: "snapshot: read role", method: "POST", url: "/api/vdisks/lone/snapshots", body: { name: "s9" }, who: "reader", status: 403 },
    { what: "snapshots", method: "GET", url: "/api/vdisks/lone/snapshots", who: "reader", status: 200 },
    { what: "snapshots: missing", method: "GET", url: "/api/vdisks/nope/snapshots", who: "reader", status: 404 },
    { what: "delete snapshot: has clones", method: "DELETE", url: "/api/vdisks/base/snapshots/s1", who: "writer", status: 409, error: /clone/ },
    { what: "delete snapshot: missing", method: "DELETE", url: "/api/vdisks/lone/snapshots/nope", who: "writer", status: 404 },
    { what: "delete snapshot", method: "DELETE", url: "/api/vdisks/lone/snapshots/s3", who: "writer", status: 204 },
    { what: "rollback", method: "POST", url: "/api/vdisks/lone/rollback", body: { snapshot: "s2" }, who: "writer", status: 200 },
    { what: "rollback: invalid body", method: "POST", url: "/api/vdisks/lone/rollback", body: { snap: "s2" }, who: "writer", status: 400 },
    { what: "rollback: snapshot missing", method: "POST", url: "/api/vdisks/lone/rollback", body: { snapshot: "nope" }, who: "writer", status: 404 },
    { what: "rollback: read role", method: "POST", url: "/api/vdisks/lone/rollback", body: { snapshot: "s2" }, who: "reader", status: 403 },
    { what: "scrub", method: "POST", url: "/api/vdisks/lone/scrub", who: "writer", status: 202 },
    { what: "scrub: missing", method: "POST", url: "/api/vdisks/nope/scrub", who: "writer", status: 404 },
    // resize (grow) and per-vDisk settings
    { what: "resize", method: "POST", url: "/api/vdisks/base/resize", body: { size: "128M" }, who: "writer", status: 200 },
    { what: "resize: shrink", method: "POST", url: "/api/vdisks/base/resize", body: { size: "16M" }, who: "writer", status: 400, error: /can only grow/ },
    { what: "resize: invalid size", method: "POST", url: "/api/vdisks/base/resize", body: { size: "10GB" }, who: "writer", status: 400, error: /use G or GiB/ },
    { what: "resize: no size", method: "POST", url: "/api/vdisks/base/resize", body: {}, who: "writer", status: 400, error: /size/ },
    { what: "resize: missing", method: "POST", url: "/api/vdisks/nope/resize", body: { size: "1G" }, who: "writer", status: 404 },
    { what: "resize: read role", method: "POST", url: "/api/vdisks/base/resize", body: { size: "1G" }, who: "reader", status: 403 },
    { what: "config", method: "GET", url: "/api/vdisks/base/config", who: "reader", status: 200 },
    { what: "config: missing", method: "GET", url: "/api/vdisks/nope/config", who: "reader", status: 404 },
    { what: "set config", method: "PUT", url: "/api/vdisks/base/config", body: { scoMaxAgeMs: 2000 }, who: "writer", status: 200 },
    { what: "set config: unknown key", method: "PUT", url: "/api/vdisks/base/config", body: { writeBufferSizeBytes: 1 }, who: "writer", status: 400, error: /scoMaxAgeMs/ },
    { what: "set config: out of range", method: "PUT", url: "/api/vdisks/base/config", body: { uploadConcurrency: 0 }, who: "writer", status: 400, error: /\[1, 64\]/ },
    { what: "set config: read role", method: "PUT", url: "/api/vdisks/base/config", body: {}, who: "reader", status: 403 },
    { what: "set config: missing", method: "PUT", url: "/api/vdisks/nope/config", body: {}, who: "writer", status: 404 },
    { what: "template", method: "POST", url: "/api/vdisks/lone/template", who: "writer", status: 200 },
    { what: "template: missing", method: "POST", url: "/api/vdisks/nope/template", who: "writer", status: 404 },
    { what: "resize: template", method: "POST", url: "/api/vdisks/lone/resize", body: { size: "1G" }, who: "writer", status: 409, error: /grow a clone instead/ },
    // tasks
    { what: "tasks", method: "GET", url: "/api/tasks", who: "reader", status: 200 },
    { what: "task: missing", method: "GET", url: "/api/tasks/nope", who: "reader", status: 404 },
    { what: "tasks: no token", method: "GET", url: "/api/tasks", who: "none", status: 401 },
    // backend, health
    { what: "backend", method: "GET", url: "/api/backend", who: "reader", status: 200 },
    { what: "health (open)", method: "GET", url: "/api/health", who: "none", status: 200 },
    // schedules
    { what: "schedules", method: "GET", url: "/api/schedules", who: "reader", status: 200 },
    { what: "schedule: change", method: "PUT", url: "/api/schedules/held", body: { schedule: { dailyAt: { hour: 4, minute: 0 } } }, who: "admin", status: 200 },
    { what: "schedule: invalid", method: "PUT", url: "/api/schedules/held", body: { schedule: { everyMinutes: 0 } }, who: "admin", status: 400 },
    { what: "schedule: missing", method: "PUT", url: "/api/schedules/nope", body: { enabled: true }, who: "admin", status: 404 },
    { what: "schedule: write role", method: "PUT", url: "/api/schedules/held", body: { enabled: true }, who: "writer", status: 403, error: /needs the manage role/ },
    { what: "schedule runs: missing", method: "GET", url: "/api/schedules/nope/runs", who: "reader", status: 404 },
    { what: "schedule runs", method: "GET", url: "/api/schedules/held/runs", who: "reader", status: 200 },
    // API clients
    { what: "client: create", method: "POST", url: "/api/clients", body: { role: "read" }, who: "admin", status: 201 },
    { what: "client: invalid role", method: "POST", url: "/api/clients", body: { role: "root" }, who: "admin", status: 400 },
    { what: "client: write role", method: "POST", url: "/api/clients", body: { role: "read" }, who: "writer", status: 403 },
    { what: "clients", method: "GET", url: "/api/clients", who: "admin", status: 200 },
    { what: "client: delete missing", method: "DELETE", url: "/api/clients/nope", who: "admin", status: 404 },
    // tokens
    { what: "token: wrong password", method: "POST", url: "/api/oauth2/token", body: { grant_type: "password", username: "admin", password: "wrong-one" }, who: "none", status: 401 },
    { what: "token: invalid grant", method: "POST", url: "/api/oauth2/token", body: { grant_type: "implicit" }, who: "none", status: 400 },
  ];

  for (const entry of cases) {
    it(`${entry.method} ${entry.url} (${entry.what}) → ${entry.status}`, async function () {
      const response = await app.inject({
        method: entry.method, url: entry.url,
        headers: entry.who === "none" ? {} : { authorization: `Bearer ${tokens[entry.who]}` },
        ...(entry.body === undefined ? {} : { payload: entry.body as object }),
      });
      assert.equal(response.statusCode, entry.status, response.body);
      if (entry.status >= 400) {
        const error = response.json<{ error: { code: string; message: string } }>().error;
        assert.ok(error.message.length > 10, "an error says what to do");
        if (entry.error !== undefined) assert.match(error.message, entry.error);
      }
    });
  }

  it("what the table's resize, clone and set-config calls did is what the vDisks show", async function () {
    const headers = { authorization: `Bearer ${tokens.reader}` };
    const get = async (url: string) => (await app.inject({ method: "GET", url, headers })).json<Record<string, unknown>>();
    assert.equal((await get("/api/vdisks/base")).sizeBytes, 128 * MIB);
    assert.equal((await get("/api/vdisks/bigclone")).sizeBytes, 128 * MIB, "a clone given a bigger size is grown");
    assert.equal((await get("/api/vdisks/clone")).sizeBytes, 64 * MIB, "a clone keeps its snapshot's size when its parent grows");
    const config = await get("/api/vdisks/base/config") as { overrides: Record<string, number>; settings: Record<string, number> };
    assert.deepEqual(config.overrides, { scoMaxAgeMs: 2000 });
    assert.equal(config.settings.scoMaxAgeMs, 2000);
    assert.equal(config.settings.uploadConcurrency, vpool.settings.uploadConcurrency, "the others follow the vPool");
  });

  it("POST /api/schedules/held/run twice: the second while the first runs → 409, then it finishes", async function () {
    const headers = { authorization: `Bearer ${tokens.admin}` };
    const first = app.inject({ method: "POST", url: "/api/schedules/held/run", headers });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = await app.inject({ method: "POST", url: "/api/schedules/held/run", headers });
    assert.equal(second.statusCode, 409, second.body);
    assert.match(second.json<{ error: { message: string } }>().error.message, /is running now/);
    releaseJob();
    const done = await first;
    assert.equal(done.statusCode, 200);
    assert.equal(done.json<{ outcome: string }>().outcome, "succeeded");
  });
});

// Goal: the framework model's file: a new file gets every migration (user_version, and a row each in
// schema_migrations), in WAL mode with foreign keys on and owner-only permissions; a version-1 file
// (built here from the first migration, with data) is migrated to the current schema keeping its
// data; a file from a newer program is refused with a clear error and left untouched; everything
// survives close and reopen.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { applyMigrations } from "../../../alba/src/metadata/sqlite-migrations.ts";
import { FrameworkModel } from "../../../framework/src/model/framework-model.ts";
import { MODEL_MIGRATIONS, MODEL_SCHEMA_VERSION } from "../../../framework/src/model/model-schema.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

const temps = new TempDirs("framework-model");
const NOW_MS = Date.parse("2024-05-01T12:00:00.000Z");

async function modelFile(): Promise<string> {
  return path.join(await temps.make(), "framework.sqlite");
}

const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function userVersion(database: Database.Database): number {
  return database.pragma("user_version", { simple: true }) as number;
}

function open(file: string): FrameworkModel {
  let nextId = 1;
  return FrameworkModel.open(file, { nowMs: () => NOW_MS, newId: () => `id-${nextId++}` });
}

/** A version-1 file as the first release wrote it: its migration and a little inventory. */
function writeVersion1File(file: string): void {
  const database = new Database(file);
  database.pragma("journal_mode = WAL");
  applyMigrations(database, MODEL_MIGRATIONS.slice(0, 1), file);
  database.exec(`
    INSERT INTO backends VALUES ('local-1', 'local', '{"path":"/srv/backend"}', '{}', '2023-01-01T00:00:00.000Z');
    INSERT INTO vpools VALUES ('pool', 'local-1', 67108864, 1073741824, 268435456, 'none', NULL, '{}', '2023-01-01T00:00:00.000Z');
    INSERT INTO vdisks VALUES ('disk', 'pool', 1073741824, NULL, NULL, 0, '{}', '2023-01-01T00:00:00.000Z');
  `);
  database.close();
}

describe("framework model: schema, migrations and reopen", function () {
  after(async function () {
    await temps.removeAll();
  });

  it("migrates a new file to the current version, in WAL mode, owner-only", async function () {
    const file = await modelFile();
    open(file).close();
    assert.equal(statSync(file).mode & 0o777, 0o600, "the file holds secrets: owner-only");
    const raw = new Database(file, { readonly: true });
    assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
    assert.equal(userVersion(raw), MODEL_SCHEMA_VERSION);
    const recorded = raw.prepare("SELECT version, description, applied_at FROM schema_migrations ORDER BY version").all() as
      Array<{ version: number; description: string; applied_at: string }>;
    assert.deepEqual(recorded.map((row) => row.version), [1, 2, 3]);
    assert.match(recorded[0]!.description, /^inventory: /);
    assert.match(recorded[1]!.description, /^operations: /);
    assert.match(recorded[2]!.description, /^tasks: the subject a task acts on; bearer tokens/);
    for (const row of recorded) assert.match(row.applied_at, ISO_TIME);
    raw.close();
  });

  it("turns foreign keys on: a row naming a missing parent is refused by the schema itself", async function () {
    const model = FrameworkModel.open(":memory:");
    // Reach under the repositories on purpose: the schema is the backstop against races.
    const database = (model as unknown as { database: Database.Database }).database;
    assert.equal(database.pragma("foreign_keys", { simple: true }), 1);
    assert.throws(
      () => database.prepare("INSERT INTO vdisks VALUES ('orphan', 'nopool', 4096, NULL, NULL, 0, '{}', 'now')").run(),
      /FOREIGN KEY constraint failed/,
    );
    model.close();
  });

  it("migrates a version-1 file to the current version and keeps its data", async function () {
    const file = await modelFile();
    writeVersion1File(file);
    const before = new Database(file, { readonly: true });
    assert.equal(userVersion(before), 1);
    assert.equal(before.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'tasks'").pluck().get(), 0, "version 1 has no tasks table");
    before.close();
    const model = open(file);
    assert.equal(model.vdisks.get("disk").vpool, "pool");
    assert.equal(model.vpools.get("pool").backend, "local-1");
    assert.deepEqual(model.backends.get("local-1").config, { path: "/srv/backend" });
    // The tables of version 2 exist and work.
    assert.equal(model.tasks.create({ kind: "scrub" }).state, "queued");
    assert.equal((await model.users.create({ name: "admin", password: "correct horse", role: "manage" })).role, "manage");
    model.close();
    const raw = new Database(file, { readonly: true });
    assert.equal(userVersion(raw), MODEL_SCHEMA_VERSION);
    assert.deepEqual(raw.prepare("SELECT version FROM schema_migrations ORDER BY version").pluck().all(), [1, 2, 3], "versions 2 and 3 recorded after version 1");
    raw.close();
  });

  it("refuses a file from a newer program with an error that says what to do, and changes nothing", async function () {
    const file = await modelFile();
    open(file).close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${MODEL_SCHEMA_VERSION + 1}`);
    raw.close();
    assert.throws(
      () => open(file),
      (error: unknown) => error instanceof Error &&
        error.message.includes(`the framework database ${file} has schema version ${MODEL_SCHEMA_VERSION + 1}, newer than this program's ${MODEL_SCHEMA_VERSION}`) &&
        error.message.includes("use the newer program, or restore a backup"),
    );
    const after = new Database(file, { readonly: true });
    assert.equal(userVersion(after), MODEL_SCHEMA_VERSION + 1);
    assert.deepEqual(after.prepare("SELECT version FROM schema_migrations ORDER BY version").pluck().all(), [1, 2, 3], "nothing was applied");
    after.close();
  });

  it("keeps every entity across close and reopen", async function () {
    const file = await modelFile();
    const model = open(file);
    model.storageRouters.create({ name: "node-1", host: "node-1.example.com", ip: "10.0.0.1" });
    model.backends.create({ name: "s3-1", kind: "s3", config: { endpoint: "http://10.0.0.9:9000", bucket: "ovs", accessKeyId: "AK", secretAccessKey: "SK" } });
    model.backends.create({ name: "alba-1", kind: "alba", config: { proxyUrl: "http://127.0.0.1:8600", presetName: "default" } });
    model.albaAsds.create("alba-1", { asdId: "asd-1", nodeId: "node-1", url: "http://127.0.0.1:8601" });
    model.albaPresets.create("alba-1", { name: "default", policies: [{ k: 2, m: 1, c: 2, x: 1 }], fragmentSizeBytes: 1048576 });
    model.vpools.create({ name: "pool", backend: "s3-1" });
    model.storageDrivers.create({ vpool: "pool", storageRouter: "node-1", nbdPort: 10809, iscsiPort: 3260, managementPort: 8510 });
    model.vdisks.create({ name: "base", vpool: "pool", sizeBytes: 1 << 30 });
    model.vdisks.create({ name: "clone", vpool: "pool", sizeBytes: 1 << 30, parentSnapshot: "base@snap-1" });
    const task = model.tasks.update(model.tasks.create({ kind: "scrub" }).id, { state: "running", progress: 0.5 });
    model.schedules.create({ job: "snapshots", spec: { hourlyAtMinute: 5 } });
    model.scheduleRuns.append({ job: "snapshots", dueAt: "2024-05-01T11:05:00.000Z", outcome: "succeeded", summary: { created: 2 } });
    const { client, secret } = await model.apiClients.create({ description: "backup", role: "read" });
    await model.users.create({ name: "admin", password: "correct horse", role: "manage" });
    const before = snapshotOf(model);
    model.close();

    const reopened = open(file);
    assert.deepEqual(snapshotOf(reopened), before);
    assert.deepEqual(reopened.tasks.get(task.id), task);
    assert.deepEqual(reopened.backends.connection("s3-1").credentials, { accessKeyId: "AK", secretAccessKey: "SK" });
    assert.deepEqual(await reopened.apiClients.verify(client.clientId, secret), client);
    assert.equal((await reopened.users.verifyPassword("admin", "correct horse"))?.name, "admin");
    reopened.close();
  });
});

/** Every listing of the model, for comparing before and after a reopen. */
function snapshotOf(model: FrameworkModel): unknown {
  return {
    routers: model.storageRouters.list(), backends: model.backends.list(), asds: model.albaAsds.list("alba-1"),
    presets: model.albaPresets.list("alba-1"), vpools: model.vpools.list(), drivers: model.storageDrivers.list(),
    vdisks: model.vdisks.list(), tasks: model.tasks.list(), schedules: model.schedules.list(),
    runs: model.scheduleRuns.list("snapshots", 10), clients: model.apiClients.list(), users: model.users.list(),
  };
}

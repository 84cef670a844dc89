// The backend metadata of one host in SQLite (better-sqlite3, synchronous, WAL). Schema and
// migrations: alba/docs/metadata-schema.md. Invariants: the manifests table holds only current
// versions, one per (namespace, key) and one per object id; the fragments table lists, for each
// current version, every ASD holding at least one of its fragments, and changes in the same
// transaction as the manifest; keys are compared as UTF-8 bytes (BLOB columns), so listings are in
// byte order like S3's.
import { applyMigrations } from "./sqlite-migrations.ts";
import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { validatePreset, validatePresetChanges } from "../preset/preset-validation.ts";
import type { Preset, PresetChanges } from "../preset/preset.ts";
import { MetadataError } from "./metadata-store.ts";
import type {
  AlbaMetadataStore, AsdRecord, FragmentChange, ManifestListPage, NamespaceRecord, ObjectManifest, PendingUpload,
} from "./metadata-store.ts";

export const ALBA_NAMESPACE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const OBJECT_ID_PATTERN = /^[0-9a-f]{32}$/;
/** A listing returns this many keys when the caller names no limit. */
export const LIST_KEYS_DEFAULT = 1000;
/** The most keys one listing page returns, whatever the caller asks. */
export const LIST_KEYS_MAX = 10_000;
/** The most manifests one scan page returns. */
export const SCAN_MANIFESTS_MAX = 10_000;
/** How long a write waits for another process's transaction (maintenance and a proxy may share the file). */
export const SQLITE_BUSY_TIMEOUT_MS = 5000;
/** A refused preset delete names at most this many of the namespaces that use the preset (and counts them all). */
export const PRESET_USERS_NAMED_MAX = 5;

/**
 * Numbered migrations: migration i takes the schema from user_version i to i + 1, in one
 * transaction. Never edit one that has shipped; append a new one.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE asds (
    asd_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('claimed', 'decommissioned')),
    claimed_at TEXT NOT NULL
  ) STRICT;
  CREATE TABLE presets (
    name TEXT PRIMARY KEY,
    preset_json TEXT NOT NULL
  ) STRICT;
  CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT;
  CREATE TABLE namespaces (
    name TEXT PRIMARY KEY,
    preset_name TEXT NOT NULL REFERENCES presets (name),
    created_at TEXT NOT NULL
  ) STRICT;
  CREATE TABLE manifests (
    object_id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL REFERENCES namespaces (name),
    key BLOB NOT NULL,
    manifest_json TEXT NOT NULL,
    UNIQUE (namespace, key)
  ) STRICT;
  CREATE TABLE fragments (
    asd_id TEXT NOT NULL,
    object_id TEXT NOT NULL REFERENCES manifests (object_id) ON DELETE CASCADE,
    PRIMARY KEY (asd_id, object_id)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX fragments_by_object ON fragments (object_id);
  CREATE TABLE pending_uploads (
    object_id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    key BLOB NOT NULL,
    started_at TEXT NOT NULL
  ) STRICT;
  CREATE INDEX pending_uploads_by_start ON pending_uploads (started_at);
  `,
];
export const METADATA_SCHEMA_VERSION = MIGRATIONS.length;

interface AsdRow { asd_id: string; node_id: string; host: string; port: number; state: AsdRecord["state"]; claimed_at: string }
interface NamespaceRow { name: string; preset_name: string; created_at: string }
interface ManifestRow { manifest_json: string }
interface PendingRow { object_id: string; namespace: string; key: Buffer; started_at: string }

function asdFromRow(row: AsdRow): AsdRecord {
  return { asdId: row.asd_id, nodeId: row.node_id, host: row.host, port: row.port, state: row.state, claimedAt: row.claimed_at };
}

function namespaceFromRow(row: NamespaceRow): NamespaceRecord {
  return { name: row.name, presetName: row.preset_name, createdAt: row.created_at };
}

function manifestFromRow(row: ManifestRow): ObjectManifest {
  return JSON.parse(row.manifest_json) as ObjectManifest;
}

function keyBytes(key: string): Buffer {
  return Buffer.from(key, "utf8");
}

/** Every key that starts with `prefix` sorts below prefix + 0xFF: 0xFF never occurs in UTF-8. */
function prefixUpperBound(prefix: string): Buffer {
  return Buffer.concat([keyBytes(prefix), Buffer.from([0xff])]);
}

function isUniqueViolation(error: unknown): boolean {
  return error instanceof Database.SqliteError && (error.code === "SQLITE_CONSTRAINT_PRIMARYKEY" || error.code === "SQLITE_CONSTRAINT_UNIQUE");
}

function checkLimit(limit: number, maximum: number, what: string): number {
  if (!Number.isInteger(limit) || limit < 1) throw new MetadataError("Invalid", `${what} must be a positive integer, got ${limit}`);
  return Math.min(limit, maximum);
}

/** The ASDs holding at least one fragment of `manifest`. */
function asdsOf(manifest: ObjectManifest): Set<string> {
  const asdIds = new Set<string>();
  for (const chunk of manifest.chunks) {
    for (const fragment of chunk.fragments) if (fragment.asdId !== null) asdIds.add(fragment.asdId);
  }
  return asdIds;
}

/** The shape checks a manifest must pass before it is stored (the client builds them; these catch its bugs). */
function assertManifest(manifest: ObjectManifest): void {
  assert.ok(OBJECT_ID_PATTERN.test(manifest.objectId), `object id ${manifest.objectId} is not 32 hex digits`);
  const fragmentCount = manifest.policy.k + manifest.policy.m;
  let sizeBytes = 0;
  for (const [index, chunk] of manifest.chunks.entries()) {
    assert.equal(chunk.fragments.length, fragmentCount, `chunk ${index} has ${chunk.fragments.length} fragments, the policy ${fragmentCount}`);
    sizeBytes += chunk.sizeBytes;
  }
  assert.equal(sizeBytes, manifest.sizeBytes, `chunks hold ${sizeBytes} bytes, the manifest says ${manifest.sizeBytes}`);
}

export class SqliteMetadataStore implements AlbaMetadataStore {
  private readonly statements;

  private constructor(private readonly database: Database.Database) {
    const prepare = (sql: string) => database.prepare(sql);
    this.statements = {
      insertAsd: prepare("INSERT INTO asds (asd_id, node_id, host, port, state, claimed_at) VALUES (?, ?, ?, ?, ?, ?)"),
      updateAsd: prepare("UPDATE asds SET host = ?, port = ?, state = ? WHERE asd_id = ?"),
      getAsd: prepare("SELECT * FROM asds WHERE asd_id = ?"),
      listAsds: prepare("SELECT * FROM asds ORDER BY asd_id"),
      insertPreset: prepare("INSERT INTO presets (name, preset_json) VALUES (?, ?)"),
      getPreset: prepare("SELECT preset_json FROM presets WHERE name = ?"),
      listPresets: prepare("SELECT preset_json FROM presets ORDER BY name"),
      updatePreset: prepare("UPDATE presets SET preset_json = ? WHERE name = ?"),
      deletePreset: prepare("DELETE FROM presets WHERE name = ?"),
      // No index on preset_name: an admin's delete scans the namespaces, which are few next to manifests.
      presetUsers: prepare("SELECT name FROM namespaces WHERE preset_name = ? ORDER BY name LIMIT ?"),
      presetUserCount: prepare("SELECT count(*) AS count FROM namespaces WHERE preset_name = ?"),
      setSetting: prepare("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"),
      getSetting: prepare("SELECT value FROM settings WHERE name = ?"),
      insertNamespace: prepare("INSERT INTO namespaces (name, preset_name, created_at) VALUES (?, ?, ?)"),
      getNamespace: prepare("SELECT * FROM namespaces WHERE name = ?"),
      listNamespaces: prepare("SELECT * FROM namespaces ORDER BY name"),
      deleteNamespace: prepare("DELETE FROM namespaces WHERE name = ?"),
      namespaceManifests: prepare("SELECT manifest_json FROM manifests WHERE namespace = ? ORDER BY key"),
      deleteNamespaceManifests: prepare("DELETE FROM manifests WHERE namespace = ?"),
      getManifest: prepare("SELECT manifest_json FROM manifests WHERE namespace = ? AND key = ?"),
      getManifestByObjectId: prepare("SELECT manifest_json FROM manifests WHERE object_id = ?"),
      insertManifest: prepare("INSERT INTO manifests (object_id, namespace, key, manifest_json) VALUES (?, ?, ?, ?)"),
      updateManifestJson: prepare("UPDATE manifests SET manifest_json = ? WHERE object_id = ?"),
      deleteManifest: prepare("DELETE FROM manifests WHERE object_id = ?"),
      listManifests: prepare(
        "SELECT key, manifest_json FROM manifests WHERE namespace = @namespace AND (@startAfter IS NULL OR key > @startAfter) " +
          "AND key >= @prefix AND key < @prefixEnd ORDER BY key LIMIT @limit",
      ),
      scanManifests: prepare("SELECT manifest_json FROM manifests WHERE object_id > ? ORDER BY object_id LIMIT ?"),
      manifestsOnAsd: prepare(
        "SELECT m.manifest_json FROM fragments f JOIN manifests m ON m.object_id = f.object_id WHERE f.asd_id = ? AND f.object_id > ? ORDER BY f.object_id LIMIT ?",
      ),
      insertFragmentAsd: prepare("INSERT OR IGNORE INTO fragments (asd_id, object_id) VALUES (?, ?)"),
      deleteFragmentAsds: prepare("DELETE FROM fragments WHERE object_id = ?"),
      insertPending: prepare("INSERT INTO pending_uploads (object_id, namespace, key, started_at) VALUES (?, ?, ?, ?)"),
      deletePending: prepare("DELETE FROM pending_uploads WHERE object_id = ?"),
      getPending: prepare("SELECT 1 FROM pending_uploads WHERE object_id = ?"),
      listPending: prepare("SELECT * FROM pending_uploads WHERE started_at < ? ORDER BY started_at, object_id"),
    };
  }

  /** Opens (creating if needed) the database at `filePath` and brings its schema up to date. */
  static open(filePath: string): SqliteMetadataStore {
    const database = new Database(filePath);
    try {
      database.pragma("journal_mode = WAL");
      // FULL: a manifest commit acknowledged to a client survives power loss, not only a crash.
      database.pragma("synchronous = FULL");
      database.pragma("foreign_keys = ON");
      database.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      migrate(database);
      return new SqliteMetadataStore(database);
    } catch (error) {
      database.close();
      throw error;
    }
  }

  addAsd(record: AsdRecord): void {
    try {
      this.statements.insertAsd.run(record.asdId, record.nodeId, record.host, record.port, record.state, record.claimedAt);
    } catch (error) {
      if (isUniqueViolation(error)) throw new MetadataError("Conflict", `ASD ${record.asdId} is already claimed`);
      throw error;
    }
  }

  updateAsd(asdId: string, changes: Partial<Pick<AsdRecord, "host" | "port" | "state">>): void {
    this.database.transaction(() => {
      const current = this.getAsd(asdId);
      if (current === undefined) throw new MetadataError("NotFound", `ASD ${asdId} is not claimed`);
      this.statements.updateAsd.run(changes.host ?? current.host, changes.port ?? current.port, changes.state ?? current.state, asdId);
    })();
  }

  getAsd(asdId: string): AsdRecord | undefined {
    const row = this.statements.getAsd.get(asdId) as AsdRow | undefined;
    return row === undefined ? undefined : asdFromRow(row);
  }

  listAsds(): AsdRecord[] {
    return (this.statements.listAsds.all() as AsdRow[]).map(asdFromRow);
  }

  addPreset(preset: Preset): void {
    const valid = validatePreset(preset);
    try {
      this.statements.insertPreset.run(valid.name, JSON.stringify(valid));
    } catch (error) {
      if (isUniqueViolation(error)) throw new MetadataError("Conflict", `preset ${valid.name} exists already`);
      throw error;
    }
  }

  getPreset(name: string): Preset | undefined {
    const row = this.statements.getPreset.get(name) as { preset_json: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.preset_json) as Preset);
  }

  listPresets(): Preset[] {
    return (this.statements.listPresets.all() as Array<{ preset_json: string }>).map((row) => JSON.parse(row.preset_json) as Preset);
  }

  updatePreset(name: string, changes: PresetChanges): Preset {
    return this.database.transaction(() => {
      const current = this.getPreset(name);
      if (current === undefined) throw new MetadataError("NotFound", `preset ${name} does not exist`);
      const { preset, makeDefault } = validatePresetChanges(current, changes);
      this.statements.updatePreset.run(JSON.stringify(preset), name);
      if (makeDefault) this.statements.setSetting.run("default_preset", name);
      return preset;
    })();
  }

  deletePreset(name: string): void {
    this.database.transaction(() => {
      if (this.statements.getPreset.get(name) === undefined) throw new MetadataError("NotFound", `preset ${name} does not exist`);
      const reasons: string[] = [];
      const userCount = (this.statements.presetUserCount.get(name) as { count: number }).count;
      if (userCount > 0) {
        const named = (this.statements.presetUsers.all(name, PRESET_USERS_NAMED_MAX) as Array<{ name: string }>).map((row) => row.name);
        const more = userCount > named.length ? `, and ${userCount - named.length} more` : "";
        reasons.push(`${userCount} namespace${userCount === 1 ? " uses" : "s use"} it (${named.join(", ")}${more}): delete them first`);
      }
      if (this.defaultPresetName() === name) reasons.push("it is the default preset (new namespaces get it): make another preset the default first");
      if (reasons.length > 0) throw new MetadataError("InUse", `preset ${name} cannot be deleted: ${reasons.join("; ")}`);
      this.statements.deletePreset.run(name);
    })();
  }

  setDefaultPreset(name: string): void {
    this.database.transaction(() => {
      if (this.statements.getPreset.get(name) === undefined) throw new MetadataError("NotFound", `preset ${name} does not exist`);
      this.statements.setSetting.run("default_preset", name);
    })();
  }

  defaultPresetName(): string | undefined {
    return (this.statements.getSetting.get("default_preset") as { value: string } | undefined)?.value;
  }

  createNamespace(name: string, presetName: string): NamespaceRecord {
    if (!ALBA_NAMESPACE_NAME_PATTERN.test(name)) {
      throw new MetadataError("Invalid", `namespace name must be 1-63 of [a-z0-9._-] starting with a letter or digit, got ${JSON.stringify(name)}`);
    }
    const record: NamespaceRecord = { name, presetName, createdAt: new Date().toISOString() };
    this.database.transaction(() => {
      if (this.statements.getPreset.get(presetName) === undefined) throw new MetadataError("NotFound", `preset ${presetName} does not exist`);
      try {
        this.statements.insertNamespace.run(record.name, record.presetName, record.createdAt);
      } catch (error) {
        if (isUniqueViolation(error)) throw new MetadataError("Conflict", `namespace ${name} exists already`);
        throw error;
      }
    })();
    return record;
  }

  getNamespace(name: string): NamespaceRecord | undefined {
    const row = this.statements.getNamespace.get(name) as NamespaceRow | undefined;
    return row === undefined ? undefined : namespaceFromRow(row);
  }

  listNamespaces(): NamespaceRecord[] {
    return (this.statements.listNamespaces.all() as NamespaceRow[]).map(namespaceFromRow);
  }

  deleteNamespace(name: string): ObjectManifest[] {
    return this.database.transaction(() => {
      if (this.statements.getNamespace.get(name) === undefined) throw new MetadataError("NotFound", `namespace ${name} does not exist`);
      const manifests = (this.statements.namespaceManifests.all(name) as ManifestRow[]).map(manifestFromRow);
      // The fragments rows go with their manifests (ON DELETE CASCADE).
      this.statements.deleteNamespaceManifests.run(name);
      this.statements.deleteNamespace.run(name);
      return manifests;
    })();
  }

  getManifest(namespace: string, key: string): ObjectManifest | undefined {
    const row = this.statements.getManifest.get(namespace, keyBytes(key)) as ManifestRow | undefined;
    return row === undefined ? undefined : manifestFromRow(row);
  }

  getManifestByObjectId(objectId: string): ObjectManifest | undefined {
    const row = this.statements.getManifestByObjectId.get(objectId) as ManifestRow | undefined;
    return row === undefined ? undefined : manifestFromRow(row);
  }

  commitManifest(manifest: ObjectManifest, options: { ifAbsent?: boolean; ifMatch?: string } = {}): ObjectManifest | undefined {
    assertManifest(manifest);
    return this.database.transaction(() => {
      if (this.statements.getNamespace.get(manifest.namespace) === undefined) {
        throw new MetadataError("NotFound", `namespace ${manifest.namespace} does not exist`);
      }
      const current = this.getManifest(manifest.namespace, manifest.key);
      if (options.ifAbsent === true && current !== undefined) {
        throw new MetadataError("Conflict", `${manifest.namespace}/${manifest.key} exists (ifAbsent)`);
      }
      if (options.ifMatch !== undefined && current?.objectId !== options.ifMatch) {
        throw new MetadataError("Conflict", `${manifest.namespace}/${manifest.key} is ${current?.objectId ?? "absent"}, not ${options.ifMatch} (ifMatch)`);
      }
      if (this.statements.getManifestByObjectId.get(manifest.objectId) !== undefined) {
        // Also when it is `current`: returning it as "replaced" would get its fragments deleted.
        throw new MetadataError("Conflict", `object id ${manifest.objectId} is committed already`);
      }
      if (current !== undefined) this.statements.deleteManifest.run(current.objectId);
      this.statements.insertManifest.run(manifest.objectId, manifest.namespace, keyBytes(manifest.key), JSON.stringify(manifest));
      this.indexFragments(manifest);
      this.statements.deletePending.run(manifest.objectId);
      return current;
    })();
  }

  private indexFragments(manifest: ObjectManifest): void {
    this.statements.deleteFragmentAsds.run(manifest.objectId);
    for (const asdId of asdsOf(manifest)) this.statements.insertFragmentAsd.run(asdId, manifest.objectId);
  }

  deleteManifest(namespace: string, key: string, options: { ifMatch?: string } = {}): ObjectManifest | undefined {
    return this.database.transaction(() => {
      const current = this.getManifest(namespace, key);
      if (current === undefined) return undefined;
      if (options.ifMatch !== undefined && current.objectId !== options.ifMatch) {
        throw new MetadataError("Conflict", `${namespace}/${key} is ${current.objectId}, not ${options.ifMatch} (ifMatch)`);
      }
      this.statements.deleteManifest.run(current.objectId);
      return current;
    })();
  }

  listManifests(namespace: string, options: { prefix?: string; startAfter?: string; limitKeys?: number } = {}): ManifestListPage {
    const limit = checkLimit(options.limitKeys ?? LIST_KEYS_DEFAULT, LIST_KEYS_MAX, "limitKeys");
    return this.database.transaction(() => {
      if (this.statements.getNamespace.get(namespace) === undefined) throw new MetadataError("NotFound", `namespace ${namespace} does not exist`);
      const prefix = options.prefix ?? "";
      const rows = this.statements.listManifests.all({
        namespace,
        startAfter: options.startAfter === undefined ? null : keyBytes(options.startAfter),
        prefix: keyBytes(prefix),
        prefixEnd: prefixUpperBound(prefix),
        limit: limit + 1,
      }) as Array<ManifestRow & { key: Buffer }>;
      const page: ManifestListPage = { manifests: rows.slice(0, limit).map(manifestFromRow) };
      if (rows.length > limit) page.nextStartAfter = page.manifests[limit - 1]!.key;
      return page;
    })();
  }

  scanManifests(options: { afterObjectId?: string; limit: number }): ObjectManifest[] {
    const limit = checkLimit(options.limit, SCAN_MANIFESTS_MAX, "limit");
    return (this.statements.scanManifests.all(options.afterObjectId ?? "", limit) as ManifestRow[]).map(manifestFromRow);
  }

  manifestsOnAsd(asdId: string, options: { afterObjectId?: string; limit: number }): ObjectManifest[] {
    const limit = checkLimit(options.limit, SCAN_MANIFESTS_MAX, "limit");
    return (this.statements.manifestsOnAsd.all(asdId, options.afterObjectId ?? "", limit) as ManifestRow[]).map(manifestFromRow);
  }

  updateFragments(objectId: string, changes: FragmentChange[]): boolean {
    return this.database.transaction(() => {
      const manifest = this.getManifestByObjectId(objectId);
      if (manifest === undefined) return false;
      for (const change of changes) {
        const chunk = manifest.chunks[change.chunkIndex];
        assert.ok(chunk !== undefined, `object ${objectId} has no chunk ${change.chunkIndex}`);
        assert.ok(change.fragmentIndex >= 0 && change.fragmentIndex < chunk.fragments.length, `chunk ${change.chunkIndex} has no fragment ${change.fragmentIndex}`);
        chunk.fragments[change.fragmentIndex] = { ...change.fragment };
      }
      this.statements.updateManifestJson.run(JSON.stringify(manifest), objectId);
      this.indexFragments(manifest);
      return true;
    })();
  }

  addPendingUpload(upload: PendingUpload): void {
    try {
      this.statements.insertPending.run(upload.objectId, upload.namespace, keyBytes(upload.key), upload.startedAt);
    } catch (error) {
      if (isUniqueViolation(error)) throw new MetadataError("Conflict", `upload ${upload.objectId} is pending already`);
      throw error;
    }
  }

  removePendingUpload(objectId: string): void {
    this.statements.deletePending.run(objectId);
  }

  isPendingUpload(objectId: string): boolean {
    return this.statements.getPending.get(objectId) !== undefined;
  }

  listPendingUploads(options: { startedBefore?: string } = {}): PendingUpload[] {
    // "\uffff" sorts after every ISO 8601 timestamp, so no bound means all.
    const rows = this.statements.listPending.all(options.startedBefore ?? "\uffff") as PendingRow[];
    return rows.map((row) => ({ objectId: row.object_id, namespace: row.namespace, key: row.key.toString("utf8"), startedAt: row.started_at }));
  }

  close(): void {
    if (this.database.open) this.database.close();
  }
}

/** Applies the migrations the file lacks; refuses a file written by a newer schema. */
function migrate(database: Database.Database): void {
  applyMigrations(database, MIGRATIONS, "metadata database");
}

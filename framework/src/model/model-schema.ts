// The schema of the framework's SQLite database, as numbered migrations for the project's shared
// runner (alba/src/metadata/sqlite-migrations.ts: the version is PRAGMA user_version, each step one
// IMMEDIATE transaction, a file from a newer program refused). Each step also records itself in the
// schema_migrations table (version, description, applied_at by SQLite's clock: when it really ran)
// within that same transaction, so an operator can see what was applied and when.
// Conventions: STRICT tables; entities are keyed by their name (names never change, so foreign keys
// refer to names and rows read without joins); timestamps are ISO 8601 text in UTC; JSON columns end
// in _json and hold documents the repositories validated. Foreign keys are enforced (the model turns
// them on at open): RESTRICT where the dependent must be removed first (a vPool on a backend, a vDisk
// in a vPool, a clone of a vDisk, a StorageDriver on a StorageRouter), CASCADE where the child is part
// of the parent (ASDs and presets of an Alba backend, the StorageDrivers of a vPool).

export const ASD_STATUSES = ["available", "claimed", "warning", "error", "decommissioned"] as const;
export const TASK_STATES = ["queued", "running", "succeeded", "failed"] as const;
export const RUN_OUTCOMES = ["succeeded", "failed", "skipped"] as const;

/**
 * Never edit a migration once shipped: append one. The SQL spells out its CHECK lists rather than
 * interpolating the constants above, so changing a constant cannot change a shipped migration.
 * Tests build a version-1 file from MODEL_MIGRATIONS[0].
 */
export const MODEL_MIGRATIONS: readonly string[] = [
  // 1: inventory.
  `
      CREATE TABLE schema_migrations (
        version INTEGER PRIMARY KEY,
        description TEXT NOT NULL,
        applied_at TEXT NOT NULL
      ) STRICT;
      INSERT INTO schema_migrations (version, description, applied_at) VALUES
        (1, 'inventory: storage routers, backends with Alba ASDs and presets, vPools, StorageDrivers, vDisks', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
      CREATE TABLE storage_routers (
        name TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        ip TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
      ) STRICT;
      -- config_json holds what is not secret (endpoint, bucket, user names); secrets_json the rest.
      CREATE TABLE backends (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('local', 's3', 'swift', 'alba')),
        config_json TEXT NOT NULL,
        secrets_json TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE TABLE alba_asds (
        asd_id TEXT PRIMARY KEY,
        backend TEXT NOT NULL REFERENCES backends (name) ON DELETE CASCADE,
        node_id TEXT NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('available', 'claimed', 'warning', 'error', 'decommissioned')),
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX alba_asds_by_backend ON alba_asds (backend);
      -- preset_json is an Alba preset as alba/src/preset/preset-validation.ts accepts it, key included.
      CREATE TABLE alba_presets (
        backend TEXT NOT NULL REFERENCES backends (name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        preset_json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (backend, name)
      ) STRICT;
      CREATE TABLE vpools (
        name TEXT PRIMARY KEY,
        backend TEXT NOT NULL REFERENCES backends (name) ON DELETE RESTRICT,
        sco_size_bytes INTEGER NOT NULL,
        write_buffer_size_bytes INTEGER NOT NULL,
        read_cache_size_bytes INTEGER NOT NULL,
        compression TEXT NOT NULL,
        encryption_json TEXT,
        schedules_json TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX vpools_by_backend ON vpools (backend);
      CREATE TABLE storagedrivers (
        vpool TEXT NOT NULL REFERENCES vpools (name) ON DELETE CASCADE,
        storage_router TEXT NOT NULL REFERENCES storage_routers (name) ON DELETE RESTRICT,
        nbd_port INTEGER NOT NULL,
        iscsi_port INTEGER NOT NULL,
        management_port INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (vpool, storage_router)
      ) STRICT;
      CREATE INDEX storagedrivers_by_router ON storagedrivers (storage_router);
      -- A clone names its parent's vDisk and snapshot; both or neither.
      CREATE TABLE vdisks (
        name TEXT PRIMARY KEY,
        vpool TEXT NOT NULL REFERENCES vpools (name) ON DELETE RESTRICT,
        size_bytes INTEGER NOT NULL CHECK (size_bytes > 0),
        parent_vdisk TEXT REFERENCES vdisks (name) ON DELETE RESTRICT,
        parent_snapshot TEXT,
        template INTEGER NOT NULL CHECK (template IN (0, 1)),
        config_overrides_json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        CHECK ((parent_vdisk IS NULL) = (parent_snapshot IS NULL))
      ) STRICT;
      CREATE INDEX vdisks_by_vpool ON vdisks (vpool);
      CREATE INDEX vdisks_by_parent ON vdisks (parent_vdisk);
  `,
  // 2: operations. api_clients and users hold scrypt hashes (framework/src/auth/secrets.ts).
  `
      INSERT INTO schema_migrations (version, description, applied_at) VALUES
        (2, 'operations: tasks, schedules and their run history, API clients and users', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
      CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
        progress REAL NOT NULL CHECK (progress BETWEEN 0 AND 1),
        result_json TEXT,
        error_json TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
      ) STRICT;
      CREATE INDEX tasks_by_state ON tasks (state, created_at);
      CREATE TABLE schedules (
        job TEXT PRIMARY KEY,
        spec_json TEXT NOT NULL,
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        updated_at TEXT NOT NULL
      ) STRICT;
      -- Runs are kept for jobs without a schedules row too (a job on its default schedule).
      CREATE TABLE schedule_runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        due_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'skipped')),
        error TEXT,
        summary_json TEXT
      ) STRICT;
      CREATE INDEX schedule_runs_by_job ON schedule_runs (job, id);
      -- Hashes are auth-store.ts's "scrypt$N$r$p$SALT$HASH"; secrets and passwords are never stored.
      CREATE TABLE api_clients (
        client_id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('read', 'write', 'manage')),
        description TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('read', 'write', 'manage')),
        created_at TEXT NOT NULL
      ) STRICT;
  `,
  // 3: what a task acts on (a vPool, a vDisk), shown after a restart; bearer tokens, so a restart of
  // `ovs up` does not log everyone out (the SHA-256 of each token only, never the token).
  `
      INSERT INTO schema_migrations (version, description, applied_at) VALUES
        (3, 'tasks: the subject a task acts on; bearer tokens by their SHA-256', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
      ALTER TABLE tasks ADD COLUMN subject TEXT;
      CREATE TABLE api_tokens (
        token_sha256 TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('read', 'write', 'manage')),
        expires_at_ms INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX api_tokens_by_expiry ON api_tokens (expires_at_ms);
  `,
];

export const MODEL_SCHEMA_VERSION = MODEL_MIGRATIONS.length;

// The framework's model: one SQLite file (better-sqlite3, synchronous) with a repository per entity.
// Opening the file sets WAL (readers do not block the writer; the API and the scheduler share the
// file), turns foreign keys on (SQLite's default is off, per connection) and migrates an older file
// to the current schema (model-schema.ts, with the project's shared migration runner); a file from a
// newer program is refused with an Error that says to use that program or restore a backup. The
// file holds backend secrets and password hashes, so it is made readable by its owner only.
import { chmodSync, closeSync, openSync } from "node:fs";
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import { applyMigrations } from "../../../alba/src/metadata/sqlite-migrations.ts";
import { SqliteTokenGrants } from "../auth/token-grants.ts";
import { ApiClients, Users } from "./access-repository.ts";
import { AlbaAsds, AlbaPresets } from "./alba-repository.ts";
import { Backends } from "./backend-repository.ts";
import type { ModelContext } from "./model-context.ts";
import { MODEL_MIGRATIONS } from "./model-schema.ts";
import { ScheduleRuns, Schedules } from "./schedule-repository.ts";
import { StorageRouters } from "./storage-router-repository.ts";
import { Tasks } from "./task-repository.ts";
import { Vdisks } from "./vdisk-repository.ts";
import { StorageDrivers, VPools } from "./vpool-repository.ts";

/** How long a write waits for another connection's transaction before SQLITE_BUSY. */
export const MODEL_BUSY_TIMEOUT_MS = 5000;

export interface ModelOptions {
  /** Milliseconds clock for every timestamp. Default Date.now. */
  nowMs?: () => number;
  /** Ids of tasks and API clients. Default randomUUID. */
  newId?: () => string;
  /** Finished tasks remembered. Default FINISHED_TASKS_KEPT_MAX. */
  finishedTasksKeptMax?: number;
  /** Runs remembered per scheduled job. Default RUNS_PER_JOB_KEPT_MAX. */
  runsPerJobKeptMax?: number;
}

export class FrameworkModel {
  readonly storageRouters: StorageRouters;
  readonly backends: Backends;
  readonly albaAsds: AlbaAsds;
  readonly albaPresets: AlbaPresets;
  readonly vpools: VPools;
  readonly storageDrivers: StorageDrivers;
  readonly vdisks: Vdisks;
  readonly tasks: Tasks;
  readonly schedules: Schedules;
  readonly scheduleRuns: ScheduleRuns;
  readonly apiClients: ApiClients;
  readonly users: Users;
  /** Bearer token grants (SHA-256 of the token → subject, role, expiry) for auth/tokens.ts. */
  readonly tokenGrants: SqliteTokenGrants;

  private constructor(private readonly database: Database.Database, context: ModelContext, options: ModelOptions) {
    this.storageRouters = new StorageRouters(context);
    this.backends = new Backends(context);
    this.albaAsds = new AlbaAsds(context);
    this.albaPresets = new AlbaPresets(context);
    this.vpools = new VPools(context);
    this.storageDrivers = new StorageDrivers(context);
    this.vdisks = new Vdisks(context);
    this.tasks = new Tasks(context, options.finishedTasksKeptMax);
    this.schedules = new Schedules(context);
    this.scheduleRuns = new ScheduleRuns(context, options.runsPerJobKeptMax);
    this.apiClients = new ApiClients(context);
    this.users = new Users(context);
    this.tokenGrants = new SqliteTokenGrants(database);
  }

  /** Opens (creating if need be) and migrates the model in `file`; ":memory:" for a throwaway one. */
  static open(file: string, options: ModelOptions = {}): FrameworkModel {
    if (file !== ":memory:") {
      // Create the file owner-only before SQLite does, so no secret is ever world-readable; the WAL
      // and shared-memory files SQLite makes next to it take this file's permissions.
      closeSync(openSync(file, "a", 0o600));
      chmodSync(file, 0o600);
    }
    const database = new Database(file, { timeout: MODEL_BUSY_TIMEOUT_MS });
    const nowMs = options.nowMs ?? Date.now;
    const context: ModelContext = { database, nowIso: () => new Date(nowMs()).toISOString(), newId: options.newId ?? randomUUID };
    try {
      database.pragma("journal_mode = WAL");
      database.pragma("foreign_keys = ON");
      applyMigrations(database, MODEL_MIGRATIONS, `the framework database ${file}`);
    } catch (error) {
      database.close();
      throw error;
    }
    return new FrameworkModel(database, context, options);
  }

  /** Runs `change` in one transaction: all its writes happen, or none. */
  transaction<T>(change: () => T): T {
    return this.database.transaction(change).immediate();
  }

  close(): void {
    if (this.database.open) this.database.close();
  }
}

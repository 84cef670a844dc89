// What every repository of the model shares: the open database, the clock and the id source (both
// injectable, so tests control time and ids), and the translation of SQLite constraint failures into
// model errors. Repositories check what they can name in a message first; the schema's UNIQUE and
// FOREIGN KEY constraints stay as the backstop against races between processes.
import Database from "better-sqlite3";
import { conflict } from "./model-error.ts";

export interface ModelContext {
  readonly database: Database.Database;
  /** The current time as an ISO 8601 string (UTC, milliseconds). */
  nowIso(): string;
  /** A new unique id (tasks, API clients). */
  newId(): string;
}

/** Runs `write`; a UNIQUE or PRIMARY KEY violation becomes a Conflict with `message`. */
export function insertUnique<T>(write: () => T, message: string): T {
  try {
    return write();
  } catch (error) {
    if (isSqliteError(error, "SQLITE_CONSTRAINT_UNIQUE") || isSqliteError(error, "SQLITE_CONSTRAINT_PRIMARYKEY")) {
      throw conflict(message);
    }
    throw error;
  }
}

/** Runs `remove`; a FOREIGN KEY violation (a row still refers to it) becomes a Conflict with `message`. */
export function deleteUnreferenced<T>(remove: () => T, message: string): T {
  try {
    return remove();
  } catch (error) {
    if (isSqliteError(error, "SQLITE_CONSTRAINT_FOREIGNKEY")) throw conflict(message);
    throw error;
  }
}

function isSqliteError(error: unknown, code: string): boolean {
  return error instanceof Database.SqliteError && error.code === code;
}

/** Parses a JSON column the model wrote itself; a parse failure is a corrupt database, a bug to crash on. */
export function parseJsonColumn<T>(text: string): T {
  return JSON.parse(text) as T;
}

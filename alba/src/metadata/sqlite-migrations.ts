// Numbered schema migrations for the project's SQLite files (Alba's metadata, the framework's
// database): migration i takes the schema from user_version i to i + 1, each in one IMMEDIATE
// transaction, so two processes opening the same file never apply one twice. A file written by a
// newer program (a higher user_version than the migrations known) is refused rather than misread.
import type Database from "better-sqlite3";

export function applyMigrations(database: Database.Database, migrations: readonly string[], what: string): void {
  const version = database.pragma("user_version", { simple: true }) as number;
  if (version > migrations.length) {
    throw new Error(`${what} has schema version ${version}, newer than this program's ${migrations.length}: use the newer program, or restore a backup`);
  }
  for (let next = version; next < migrations.length; next++) {
    database.transaction(() => {
      // Another process may have migrated meanwhile; the IMMEDIATE transaction makes this re-read final.
      if ((database.pragma("user_version", { simple: true }) as number) > next) return;
      database.exec(migrations[next]!);
      database.pragma(`user_version = ${next + 1}`);
    }).immediate();
  }
}

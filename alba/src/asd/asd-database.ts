// The SQLite database of an ASD directory (DIR/keys.sqlite): WAL, synchronous=FULL, numbered
// migrations tracked in user_version (schema in alba/docs/asd-format.md).
import Database from "better-sqlite3";

/** Numbered migrations: migration i takes user_version i to i + 1. Never edit a shipped one. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE keys (
    key BLOB PRIMARY KEY,
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
    crc32c INTEGER NOT NULL CHECK (crc32c BETWEEN 0 AND 4294967295),
    inline_value BLOB,
    file_name TEXT UNIQUE,
    CHECK ((inline_value IS NULL) <> (file_name IS NULL))
  ) STRICT;
  `,
];

export function openDatabase(file: string): Database.Database {
  const database = new Database(file, { timeout: 1000 });
  try {
    database.pragma("journal_mode = WAL");
    // FULL: every commit fsyncs the WAL, so an acknowledged batch survives a host crash.
    database.pragma("synchronous = FULL");
    const version = database.pragma("user_version", { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`${file} has schema version ${version}, newer than this ASD knows (${MIGRATIONS.length}); upgrade the software`);
    }
    for (let index = version; index < MIGRATIONS.length; index++) {
      database.transaction(() => {
        database.exec(MIGRATIONS[index]!);
        database.pragma(`user_version = ${index + 1}`);
      })();
    }
    return database;
  } catch (error) {
    database.close();
    throw error;
  }
}

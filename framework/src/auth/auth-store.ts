// Users and API clients of the framework, in SQLite (DATA/framework.db, numbered migrations):
// passwords and client secrets only as scrypt hashes (node:crypto), each with its own salt, compared
// in constant time. Roles: read < write < manage. The first start makes an "admin" user with a
// random password that `ovs up` writes to a 0600 file; nothing here ever logs a secret.
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { applyMigrations } from "../../../alba/src/metadata/sqlite-migrations.ts";

export type Role = "read" | "write" | "manage";
export const ROLES: readonly Role[] = ["read", "write", "manage"];

/** True when `held` allows what `needed` does. */
export function roleAllows(held: Role, needed: Role): boolean {
  return ROLES.indexOf(held) >= ROLES.indexOf(needed);
}

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keyLength: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;
/** scrypt parameters: N = 2^15 costs ~50 ms per check here, enough to make guessing slow, cheap at login rates. */
const SCRYPT = { N: 32_768, r: 8, p: 1, keyLength: 32, saltBytes: 16, maxmem: 64 * 1024 * 1024 };

/** "scrypt$N$r$p$salt$hash" (base64). */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(SCRYPT.saltBytes);
  const hash = await scryptAsync(secret, salt, SCRYPT.keyLength, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, maxmem: SCRYPT.maxmem });
  return ["scrypt", SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString("base64"), hash.toString("base64")].join("$");
}

export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split("$");
  if (scheme !== "scrypt" || salt === undefined || hash === undefined) return false;
  const expected = Buffer.from(hash, "base64");
  const actual = await scryptAsync(secret, Buffer.from(salt, "base64"), expected.length, { N: Number(n), r: Number(r), p: Number(p), maxmem: SCRYPT.maxmem });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL);
   CREATE TABLE api_clients (client_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, role TEXT NOT NULL, description TEXT NOT NULL, created_at TEXT NOT NULL);`,
];

export interface ApiClientInfo { clientId: string; role: Role; description: string; createdAt: string }

export class AuthStore {
  private readonly database: Database.Database;

  private constructor(database: Database.Database) {
    this.database = database;
  }

  static open(file: string): AuthStore {
    const database = new Database(file);
    database.pragma("journal_mode = WAL");
    database.pragma("synchronous = FULL");
    applyMigrations(database, MIGRATIONS, file);
    return new AuthStore(database);
  }

  /** Creates the admin user when there is none; returns its new password then (to be stored 0600), else undefined. */
  async ensureAdmin(name = "admin"): Promise<string | undefined> {
    if (this.database.prepare("SELECT 1 FROM users WHERE name = ?").get(name) !== undefined) return undefined;
    const password = randomBytes(18).toString("base64url");
    this.database.prepare("INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, 'manage', ?)")
      .run(name, await hashSecret(password), new Date().toISOString());
    return password;
  }

  async addUser(name: string, password: string, role: Role): Promise<void> {
    this.database.prepare("INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?)").run(name, await hashSecret(password), role, new Date().toISOString());
  }

  /** The user's role when the password is right, else undefined (unknown user or wrong password alike). */
  async verifyUser(name: string, password: string): Promise<Role | undefined> {
    const row = this.database.prepare("SELECT password_hash, role FROM users WHERE name = ?").get(name) as { password_hash: string; role: Role } | undefined;
    // An unknown user costs a hash too, so the answer time does not tell which users exist.
    const ok = await verifySecret(password, row?.password_hash ?? DUMMY_HASH);
    return row !== undefined && ok ? row.role : undefined;
  }

  /** A new API client (client credentials grant); the secret is returned once and stored only hashed. */
  async createClient(role: Role, description: string): Promise<{ clientId: string; clientSecret: string; info: ApiClientInfo }> {
    const clientId = `ovs-${randomBytes(8).toString("hex")}`;
    const clientSecret = randomBytes(24).toString("base64url");
    const createdAt = new Date().toISOString();
    this.database.prepare("INSERT INTO api_clients (client_id, secret_hash, role, description, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(clientId, await hashSecret(clientSecret), role, description, createdAt);
    return { clientId, clientSecret, info: { clientId, role, description, createdAt } };
  }

  async verifyClient(clientId: string, clientSecret: string): Promise<Role | undefined> {
    const row = this.database.prepare("SELECT secret_hash, role FROM api_clients WHERE client_id = ?").get(clientId) as { secret_hash: string; role: Role } | undefined;
    const ok = await verifySecret(clientSecret, row?.secret_hash ?? DUMMY_HASH);
    return row !== undefined && ok ? row.role : undefined;
  }

  listClients(): ApiClientInfo[] {
    return (this.database.prepare("SELECT client_id, role, description, created_at FROM api_clients ORDER BY created_at").all() as Array<{ client_id: string; role: Role; description: string; created_at: string }>)
      .map((row) => ({ clientId: row.client_id, role: row.role, description: row.description, createdAt: row.created_at }));
  }

  deleteClient(clientId: string): boolean {
    return this.database.prepare("DELETE FROM api_clients WHERE client_id = ?").run(clientId).changes > 0;
  }

  close(): void {
    if (this.database.open) this.database.close();
  }
}

/** A well-formed hash of nothing anyone knows, checked for unknown names. */
const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${Buffer.alloc(SCRYPT.saltBytes).toString("base64")}$${Buffer.alloc(SCRYPT.keyLength).toString("base64")}`;

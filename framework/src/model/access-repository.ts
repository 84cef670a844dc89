// Who may use the API: API clients (OAuth2 client credentials) and users (password grant), each with
// a role: read, write (read and change), manage (also clients, users and backends). Only scrypt
// hashes are stored, made and checked by the auth store's functions (one hash format in the
// project). A client's secret is made here and returned once, at creation or rotation; passwords
// and secrets never come back out, and nothing this file returns holds a hash.
import { randomBytes } from "node:crypto";
import { hashSecret, ROLES, verifySecret, type Role } from "../auth/secrets.ts";
import { requireName, requireOneOf, requireOnlyKeys, requireRecord, requireString } from "./field-checks.ts";
import { insertUnique, type ModelContext } from "./model-context.ts";
import { invalid, notFound } from "./model-error.ts";

export type { Role };

export interface ApiClient {
  clientId: string;
  /** What it is for, e.g. "nightly backup script". */
  description: string;
  role: Role;
  createdAt: string;
}

export interface User {
  name: string;
  role: Role;
  createdAt: string;
}

export const PASSWORD_LENGTH_MIN = 8;
/** Bounds the work one login attempt can cause. */
export const PASSWORD_LENGTH_MAX = 1024;
const CLIENT_SECRET_BYTES = 32;

interface ApiClientRow { client_id: string; secret_hash: string; role: Role; description: string; created_at: string }
interface UserRow { name: string; password_hash: string; role: Role; created_at: string }

function toApiClient(row: ApiClientRow): ApiClient {
  return { clientId: row.client_id, description: row.description, role: row.role, createdAt: row.created_at };
}

function toUser(row: UserRow): User {
  return { name: row.name, role: row.role, createdAt: row.created_at };
}

function checkPassword(value: unknown): string {
  if (typeof value !== "string" || value.length < PASSWORD_LENGTH_MIN || value.length > PASSWORD_LENGTH_MAX) {
    throw invalid(`a password must have ${PASSWORD_LENGTH_MIN} to ${PASSWORD_LENGTH_MAX} characters`);
  }
  return value;
}

/** A hash of a random secret, checked for unknown names so the answer time does not tell which exist. */
let unknownNameHash: Promise<string> | undefined;

/** Verifies against a stored hash, or against a throwaway one when there is none (same time, false). */
async function verifyOrWaste(secret: unknown, storedHash: string | undefined): Promise<boolean> {
  unknownNameHash ??= hashSecret(randomBytes(16).toString("hex"));
  const text = typeof secret === "string" && secret.length <= PASSWORD_LENGTH_MAX ? secret : "";
  const matches = await verifySecret(text, storedHash ?? await unknownNameHash);
  return matches && storedHash !== undefined && text !== "";
}

export class ApiClients {
  constructor(private readonly context: ModelContext) {}

  /** A new client with a new secret; the secret is in this answer only. */
  async create(input: { description: string; role: Role }): Promise<{ client: ApiClient; secret: string }> {
    const raw = requireRecord(input, "API client");
    requireOnlyKeys(raw, ["description", "role"], "API client");
    const description = requireString(raw.description, "API client description", 200);
    const role = requireOneOf(raw.role, ROLES, "API client role");
    const clientId = this.context.newId();
    const secret = randomBytes(CLIENT_SECRET_BYTES).toString("base64url");
    const secretHash = await hashSecret(secret);
    insertUnique(
      () => this.context.database.prepare("INSERT INTO api_clients (client_id, secret_hash, role, description, created_at) VALUES (?, ?, ?, ?, ?)")
        .run(clientId, secretHash, role, description, this.context.nowIso()),
      `client id ${clientId} is taken: the id source repeats itself (a bug)`,
    );
    return { client: this.get(clientId), secret };
  }

  get(clientId: string): ApiClient {
    return toApiClient(this.row(clientId));
  }

  list(): ApiClient[] {
    return (this.context.database.prepare("SELECT * FROM api_clients ORDER BY created_at, client_id").all() as ApiClientRow[]).map(toApiClient);
  }

  update(clientId: string, changes: { description?: string; role?: Role }): ApiClient {
    const current = this.get(clientId);
    requireOnlyKeys(requireRecord(changes, "API client changes"), ["description", "role"], "API client changes");
    const description = requireString(changes.description ?? current.description, "API client description", 200);
    const role = requireOneOf(changes.role ?? current.role, ROLES, "API client role");
    this.context.database.prepare("UPDATE api_clients SET description = ?, role = ? WHERE client_id = ?").run(description, role, clientId);
    return this.get(clientId);
  }

  /** Replaces the secret (the old one stops working at once); the new one is in this answer only. */
  async rotateSecret(clientId: string): Promise<string> {
    this.get(clientId);
    const secret = randomBytes(CLIENT_SECRET_BYTES).toString("base64url");
    const secretHash = await hashSecret(secret);
    const changed = this.context.database.prepare("UPDATE api_clients SET secret_hash = ? WHERE client_id = ?").run(secretHash, clientId).changes;
    if (changed === 0) throw notFound(`no API client ${clientId}: it was deleted meanwhile`);
    return secret;
  }

  delete(clientId: string): void {
    this.get(clientId);
    this.context.database.prepare("DELETE FROM api_clients WHERE client_id = ?").run(clientId);
  }

  /** The client when `secret` is its secret; undefined for an unknown client or a wrong secret alike. */
  async verify(clientId: string, secret: string): Promise<ApiClient | undefined> {
    const row = this.context.database.prepare("SELECT * FROM api_clients WHERE client_id = ?").get(clientId) as ApiClientRow | undefined;
    return (await verifyOrWaste(secret, row?.secret_hash)) && row !== undefined ? toApiClient(row) : undefined;
  }

  private row(clientId: string): ApiClientRow {
    const row = this.context.database.prepare("SELECT * FROM api_clients WHERE client_id = ?").get(clientId) as ApiClientRow | undefined;
    if (row === undefined) throw notFound(`no API client ${clientId}: list the clients to check the id`);
    return row;
  }
}

export class Users {
  constructor(private readonly context: ModelContext) {}

  async create(input: { name: string; password: string; role: Role }): Promise<User> {
    const raw = requireRecord(input, "user");
    requireOnlyKeys(raw, ["name", "password", "role"], "user");
    const name = requireName(raw.name, "user name");
    const role = requireOneOf(raw.role, ROLES, "user role");
    const passwordHash = await hashSecret(checkPassword(raw.password));
    insertUnique(
      () => this.context.database.prepare("INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?)")
        .run(name, passwordHash, role, this.context.nowIso()),
      `a user named ${name} exists already: choose another name`,
    );
    return this.get(name);
  }

  get(name: string): User {
    const row = this.context.database.prepare("SELECT * FROM users WHERE name = ?").get(name) as UserRow | undefined;
    if (row === undefined) throw notFound(`no user named ${name}: list the users to check the name`);
    return toUser(row);
  }

  list(): User[] {
    return (this.context.database.prepare("SELECT * FROM users ORDER BY name").all() as UserRow[]).map(toUser);
  }

  /** Changes the role or the password. */
  async update(name: string, changes: { role?: Role; password?: string }): Promise<User> {
    const current = this.get(name);
    requireOnlyKeys(requireRecord(changes, "user changes"), ["role", "password"], "user changes");
    const role = requireOneOf(changes.role ?? current.role, ROLES, "user role");
    const passwordHash = changes.password === undefined ? undefined : await hashSecret(checkPassword(changes.password));
    const changed = this.context.database.prepare("UPDATE users SET role = ?, password_hash = coalesce(?, password_hash) WHERE name = ?")
      .run(role, passwordHash ?? null, name).changes;
    if (changed === 0) throw notFound(`no user named ${name}: it was deleted meanwhile`);
    return this.get(name);
  }

  delete(name: string): void {
    this.get(name);
    this.context.database.prepare("DELETE FROM users WHERE name = ?").run(name);
  }

  /** The user when `password` is theirs; undefined for an unknown user or a wrong password alike. */
  async verifyPassword(name: string, password: string): Promise<User | undefined> {
    const row = this.context.database.prepare("SELECT * FROM users WHERE name = ?").get(name) as UserRow | undefined;
    return (await verifyOrWaste(password, row?.password_hash)) && row !== undefined ? toUser(row) : undefined;
  }
}

// Where TokenIssuer keeps its grants (token SHA-256 → subject, role, expiry): in memory, or in the
// framework's model (api_tokens), so tokens outlive a restart of `ovs up`.
import type Database from "better-sqlite3";
import type { Role } from "./secrets.ts";

export interface TokenGrant { subject: string; role: Role; expiresAtMs: number }

export interface TokenGrantStore {
  get(tokenSha256: string): TokenGrant | undefined;
  set(tokenSha256: string, grant: TokenGrant): void;
  delete(tokenSha256: string): void;
  /** Forgets every grant expired at `nowMs`. */
  deleteExpired(nowMs: number): void;
}

export class MemoryTokenGrants implements TokenGrantStore {
  private readonly grants = new Map<string, TokenGrant>();

  get(tokenSha256: string): TokenGrant | undefined {
    return this.grants.get(tokenSha256);
  }

  set(tokenSha256: string, grant: TokenGrant): void {
    this.grants.set(tokenSha256, grant);
  }

  delete(tokenSha256: string): void {
    this.grants.delete(tokenSha256);
  }

  deleteExpired(nowMs: number): void {
    for (const [key, grant] of this.grants) if (grant.expiresAtMs <= nowMs) this.grants.delete(key);
  }
}

interface GrantRow { subject: string; role: Role; expires_at_ms: number }

/** The grants in the model's api_tokens table (schema version 3). */
export class SqliteTokenGrants implements TokenGrantStore {
  constructor(private readonly database: Database.Database) {}

  get(tokenSha256: string): TokenGrant | undefined {
    const row = this.database.prepare("SELECT subject, role, expires_at_ms FROM api_tokens WHERE token_sha256 = ?").get(tokenSha256) as GrantRow | undefined;
    return row === undefined ? undefined : { subject: row.subject, role: row.role, expiresAtMs: row.expires_at_ms };
  }

  set(tokenSha256: string, grant: TokenGrant): void {
    this.database.prepare("INSERT OR REPLACE INTO api_tokens (token_sha256, subject, role, expires_at_ms) VALUES (?, ?, ?, ?)")
      .run(tokenSha256, grant.subject, grant.role, grant.expiresAtMs);
  }

  delete(tokenSha256: string): void {
    this.database.prepare("DELETE FROM api_tokens WHERE token_sha256 = ?").run(tokenSha256);
  }

  deleteExpired(nowMs: number): void {
    this.database.prepare("DELETE FROM api_tokens WHERE expires_at_ms <= ?").run(nowMs);
  }
}

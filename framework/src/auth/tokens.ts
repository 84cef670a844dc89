// Bearer tokens of the framework API: random 32-byte strings handed out by POST /api/oauth2/token,
// kept only as their SHA-256 with subject, role and expiry, in memory (a restart of `ovs up` asks
// everyone to log in again). Expired tokens are dropped as they are met and on each issue.
import { createHash, randomBytes } from "node:crypto";
import type { Role } from "./auth-store.ts";

export const TOKEN_LIFETIME_SECONDS_DEFAULT = 8 * 3600;

export interface TokenGrant { subject: string; role: Role; expiresAtMs: number }

const digest = (token: string): string => createHash("sha256").update(token).digest("hex");

export class TokenIssuer {
  private readonly grants = new Map<string, TokenGrant>();

  constructor(private readonly options: { lifetimeSeconds?: number; nowMs?: () => number } = {}) {}

  private now(): number {
    return (this.options.nowMs ?? Date.now)();
  }

  issue(subject: string, role: Role): { token: string; expiresInSeconds: number } {
    const now = this.now();
    for (const [key, grant] of this.grants) if (grant.expiresAtMs <= now) this.grants.delete(key);
    const lifetimeSeconds = this.options.lifetimeSeconds ?? TOKEN_LIFETIME_SECONDS_DEFAULT;
    const token = randomBytes(32).toString("base64url");
    this.grants.set(digest(token), { subject, role, expiresAtMs: now + lifetimeSeconds * 1000 });
    return { token, expiresInSeconds: lifetimeSeconds };
  }

  /** The grant of a valid, unexpired token, else undefined. */
  verify(token: string): TokenGrant | undefined {
    const key = digest(token);
    const grant = this.grants.get(key);
    if (grant === undefined) return undefined;
    if (grant.expiresAtMs <= this.now()) {
      this.grants.delete(key);
      return undefined;
    }
    return grant;
  }
}

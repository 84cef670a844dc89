// Bearer tokens of the framework API: random 32-byte strings handed out by POST /api/oauth2/token,
// kept only as their SHA-256 with subject, role and expiry, in a grant store (token-grants.ts: in
// memory by default; `ovs up` keeps them in the model, so a restart does not log everyone out).
// Expired tokens are dropped as they are met and on each issue.
import { createHash, randomBytes } from "node:crypto";
import { MemoryTokenGrants, type TokenGrant, type TokenGrantStore } from "./token-grants.ts";
import type { Role } from "./auth-store.ts";

export type { TokenGrant } from "./token-grants.ts";

export const TOKEN_LIFETIME_SECONDS_DEFAULT = 8 * 3600;

const digest = (token: string): string => createHash("sha256").update(token).digest("hex");

export class TokenIssuer {
  private readonly grants: TokenGrantStore;

  constructor(private readonly options: { lifetimeSeconds?: number; nowMs?: () => number; grants?: TokenGrantStore } = {}) {
    this.grants = options.grants ?? new MemoryTokenGrants();
  }

  private now(): number {
    return (this.options.nowMs ?? Date.now)();
  }

  issue(subject: string, role: Role): { token: string; expiresInSeconds: number } {
    const now = this.now();
    this.grants.deleteExpired(now);
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

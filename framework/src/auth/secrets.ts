// Roles and secret hashing of the framework: scrypt (node:crypto) with a salt per secret, compared
// in constant time, in the form "scrypt$N$r$p$salt$hash". Shared by the model's users and API clients
// (model/access-repository.ts) and the API's auth (auth-store.ts, auth-routes.ts).
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";

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


// Checks of input fields at the model's edge. Inputs may come straight from a JSON body, so every
// field is checked at run time whatever its TypeScript type says; each failure is ModelError
// "Invalid" naming the field and what a valid value looks like.
import { invalid } from "./model-error.ts";

/** Names of storage routers, backends, users and API clients: 1-63 of [a-z0-9_-], starting alphanumeric. */
export const ENTITY_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ENTITY_NAME_HINT = "1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit";
/** The largest JSON document the model stores in one column (configs, schedules, task results). */
export const JSON_COLUMN_BYTES_MAX = 64 * 1024;

export function requireRecord(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid(`${where} must be a JSON object`);
  return value as Record<string, unknown>;
}

export function requireOnlyKeys(value: Record<string, unknown>, allowedKeys: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowedKeys.includes(key)) {
      throw invalid(`${where} has the unknown field ${JSON.stringify(key)}: allowed fields are ${allowedKeys.join(", ")}`);
    }
  }
}

export function requireName(value: unknown, where: string, pattern = ENTITY_NAME_PATTERN, hint = ENTITY_NAME_HINT): string {
  if (typeof value !== "string" || !pattern.test(value)) throw invalid(`${where} must be ${hint}, got ${JSON.stringify(value)}`);
  return value;
}

export function requireString(value: unknown, where: string, lengthMax = 1024): string {
  if (typeof value !== "string" || value.length === 0 || value.length > lengthMax) {
    throw invalid(`${where} must be a non-empty string of at most ${lengthMax} characters`);
  }
  return value;
}

export function requireInteger(value: unknown, min: number, max: number, where: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(`${where} must be a whole number in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return value;
}

export function requireBoolean(value: unknown, where: string): boolean {
  if (typeof value !== "boolean") throw invalid(`${where} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

export function requireOneOf<T extends string>(value: unknown, allowed: readonly T[], where: string): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw invalid(`${where} must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

/** A TCP port a service listens on (0, "any free port", is not a stored port). */
export function requirePort(value: unknown, where: string): number {
  return requireInteger(value, 1, 65535, where);
}

/** `value` as JSON text of at most JSON_COLUMN_BYTES_MAX bytes; undefined, functions and cycles are Invalid. */
export function toJsonColumn(value: unknown, where: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw invalid(`${where} cannot be stored as JSON: ${(error as Error).message}`);
  }
  if (text === undefined) throw invalid(`${where} must be a JSON value`);
  if (Buffer.byteLength(text) > JSON_COLUMN_BYTES_MAX) throw invalid(`${where} is larger than ${JSON_COLUMN_BYTES_MAX} bytes as JSON: store less`);
  return text;
}

// The connection config of a backend, checked per kind. The part that says where the store is reuses
// the StorageDriver's own checks (volumedriver backend-spec.ts), so the model accepts exactly what a
// StorageDriver can open. Credentials ride along in the same JSON object, split in two:
// identities (an access key id, a user name) are public; secrets (a secret key, a password) are
// stored apart and leave the model only through Backends.connection(), never in a listing.
import path from "node:path";
import { BACKEND_TYPES, parseBackendSpec, type BackendSpec } from "../../../volumedriver/src/storagedriver/backend-spec.ts";
import { requireRecord, requireString } from "./field-checks.ts";
import { invalid } from "./model-error.ts";

export const BACKEND_KINDS = BACKEND_TYPES;
export type BackendKind = (typeof BACKEND_KINDS)[number];

interface CredentialFields {
  identity: readonly string[];
  secret: readonly string[];
  /** Sets of fields that must be given together (or not at all, then the environment provides them). */
  together: readonly (readonly string[])[];
}

/**
 * s3: an access key pair (otherwise AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the StorageDriver).
 * swift: tempauth user and key, or Keystone user, password and project (otherwise ST_* / OS_*).
 */
const CREDENTIALS: Record<BackendKind, CredentialFields> = {
  local: { identity: [], secret: [], together: [] },
  s3: { identity: ["accessKeyId"], secret: ["secretAccessKey"], together: [["accessKeyId", "secretAccessKey"]] },
  swift: {
    identity: ["user", "projectName", "userDomainName", "projectDomainName", "regionName"],
    secret: ["key", "password"],
    together: [],
  },
  alba: { identity: [], secret: [], together: [] },
};

export interface CheckedBackendConfig {
  /** The public part: the spec without its `type`, plus the identities. */
  config: Record<string, unknown>;
  secrets: Record<string, string>;
}

/** Checks `value` as the config of a `kind` backend; ModelError "Invalid" names the field. */
export function checkBackendConfig(kind: BackendKind, value: unknown): CheckedBackendConfig {
  const raw = requireRecord(value, `${kind} backend config`);
  const fields = CREDENTIALS[kind];
  const spec: Record<string, unknown> = { type: kind };
  const identities: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  for (const [key, field] of Object.entries(raw)) {
    if (key === "type") {
      if (field !== kind) throw invalid(`${kind} backend config has type ${JSON.stringify(field)}: leave it out or make it "${kind}"`);
    } else if (fields.identity.includes(key)) {
      identities[key] = requireString(field, `${kind} backend config ${key}`);
    } else if (fields.secret.includes(key)) {
      secrets[key] = requireString(field, `${kind} backend config ${key}`);
    } else {
      spec[key] = field;
    }
  }
  // The model has no directory of its own to resolve against: a local backend names an absolute path.
  if (kind === "local" && typeof spec.path === "string" && !path.isAbsolute(spec.path)) {
    throw invalid(`local backend config path must be an absolute directory, got ${JSON.stringify(spec.path)}`);
  }
  let checked: BackendSpec;
  try {
    checked = parseBackendSpec(spec, "/", `${kind} backend config`);
  } catch (error) {
    throw invalid((error as Error).message);
  }
  checkCredentialSets(kind, { ...identities, ...secrets }, spec);
  const { type: _type, ...config } = checked;
  return { config: { ...config, ...identities }, secrets };
}

function checkCredentialSets(kind: BackendKind, credentials: Record<string, string>, spec: Record<string, unknown>): void {
  const together = [...CREDENTIALS[kind].together];
  if (kind === "swift") {
    // Which fields belong together depends on the auth scheme.
    together.push(spec.auth === "keystone" ? ["user", "password", "projectName"] : ["user", "key"]);
    const other = spec.auth === "keystone" ? ["key"] : ["password", "projectName", "userDomainName", "projectDomainName", "regionName"];
    for (const field of other) {
      if (field in credentials) throw invalid(`swift backend config ${field} does not apply to ${String(spec.auth)} auth`);
    }
  }
  for (const set of together) {
    const given = set.filter((field) => field in credentials);
    if (given.length > 0 && given.length < set.length) {
      throw invalid(`${kind} backend config has ${given.join(", ")} but not ${set.filter((field) => !given.includes(field)).join(", ")}: give all of them, or none to use the StorageDriver's environment`);
    }
  }
}

/** The names of the secret fields a kind has (what a config without secrets leaves as they were). */
export function secretFieldsOf(kind: BackendKind): readonly string[] {
  return CREDENTIALS[kind].secret;
}

/** The names of the identity fields a kind has: public, but not part of the StorageDriver's spec. */
export function identityFieldsOf(kind: BackendKind): readonly string[] {
  return CREDENTIALS[kind].identity;
}

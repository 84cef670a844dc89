// Which object store a vPool lives on, as written in a StorageDriver config. The spec is a union
// tagged by `type`; s3, swift and alba join it as further members, each with a validator here and an
// opener in backend-opener.ts. Specs never hold secrets themselves: later backends name where the
// credentials are (an environment variable or a file), so configs can be logged and copied safely,
// and describeBackendSpec() is the only form of a spec that goes to the log.
import path from "node:path";

/** A directory on this host (the embedded default; one host only). */
export interface LocalBackendSpec {
  type: "local";
  /** Root directory of the store; relative paths are taken from the config file's directory. */
  path: string;
}

export type BackendSpec = LocalBackendSpec;

export const BACKEND_TYPES = ["local"] as const;

/** Checks a parsed JSON value; returns the spec with paths made absolute against baseDirectory. */
export function parseBackendSpec(value: unknown, baseDirectory: string, where: string): BackendSpec {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must be an object like {"type": "local", "path": "backend"}`);
  }
  const spec = value as Record<string, unknown>;
  switch (spec.type) {
    case "local": {
      checkOnlyKeys(spec, ["type", "path"], where);
      if (typeof spec.path !== "string" || spec.path.length === 0) {
        throw new Error(`${where}.path must be the directory of the local backend, e.g. "backend"`);
      }
      return { type: "local", path: path.resolve(baseDirectory, spec.path) };
    }
    default:
      throw new Error(`${where}.type is ${JSON.stringify(spec.type)}: supported backend types are ${BACKEND_TYPES.join(", ")} (s3, swift and alba come with later releases)`);
  }
}

/** The spec without anything secret, for logs and status output. */
export function describeBackendSpec(spec: BackendSpec): string {
  switch (spec.type) {
    case "local":
      return `local:${spec.path}`;
  }
}

export function checkOnlyKeys(value: Record<string, unknown>, allowedKeys: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowedKeys.includes(key)) {
      throw new Error(`${where} has the unknown field ${JSON.stringify(key)}: allowed fields are ${allowedKeys.join(", ")}`);
    }
  }
}

// Backends: the object stores vPools live on (local, s3, swift, alba). What Backends returns is the
// public view: the config without secrets, and the names of the secrets that are set. The secrets
// themselves leave only through connection(), for the code that opens the store. A backend cannot be
// deleted while a vPool uses it; its Alba ASDs and presets go with it.
import type { BackendSpec } from "../../../volumedriver/src/storagedriver/backend-spec.ts";
import { parseBackendSpec } from "../../../volumedriver/src/storagedriver/backend-spec.ts";
import { BACKEND_KINDS, checkBackendConfig, identityFieldsOf, secretFieldsOf, type BackendKind } from "./backend-config.ts";
import { requireName, requireOneOf, requireOnlyKeys, requireRecord, toJsonColumn } from "./field-checks.ts";
import { deleteUnreferenced, insertUnique, parseJsonColumn, type ModelContext } from "./model-context.ts";
import { conflict, notFound } from "./model-error.ts";

export interface Backend {
  name: string;
  kind: BackendKind;
  /** Where the store is and who to log in as, e.g. {"endpoint": ..., "bucket": ..., "accessKeyId": ...}. */
  config: Record<string, unknown>;
  /** Names of the secrets stored for it, e.g. ["secretAccessKey"]; never their values. */
  secretsSet: string[];
  createdAt: string;
}

export interface BackendInput {
  name: string;
  kind: BackendKind;
  /** The spec (as in a StorageDriver config, without "type") plus credentials, secrets included. */
  config: Record<string, unknown>;
}

/** What opening the store needs: the StorageDriver's spec and the credentials, secrets included. */
export interface BackendConnection {
  spec: BackendSpec;
  credentials: Record<string, string>;
}

interface BackendRow { name: string; kind: BackendKind; config_json: string; secrets_json: string; created_at: string }

function toBackend(row: BackendRow): Backend {
  const secrets = parseJsonColumn<Record<string, string>>(row.secrets_json);
  return {
    name: row.name, kind: row.kind, config: parseJsonColumn<Record<string, unknown>>(row.config_json),
    secretsSet: Object.keys(secrets).sort(), createdAt: row.created_at,
  };
}

export class Backends {
  constructor(private readonly context: ModelContext) {}

  create(input: BackendInput): Backend {
    const raw = requireRecord(input, "backend");
    requireOnlyKeys(raw, ["name", "kind", "config"], "backend");
    const name = requireName(raw.name, "backend name");
    const kind = requireOneOf(raw.kind, BACKEND_KINDS, "backend kind");
    const { config, secrets } = checkBackendConfig(kind, raw.config);
    insertUnique(
      () => this.context.database.prepare("INSERT INTO backends (name, kind, config_json, secrets_json, created_at) VALUES (?, ?, ?, ?, ?)")
        .run(name, kind, toJsonColumn(config, "backend config"), JSON.stringify(secrets), this.context.nowIso()),
      `a backend named ${name} exists already: choose another name`,
    );
    return this.get(name);
  }

  get(name: string): Backend {
    return toBackend(this.row(name));
  }

  list(): Backend[] {
    return (this.context.database.prepare("SELECT * FROM backends ORDER BY name").all() as BackendRow[]).map(toBackend);
  }

  /**
   * Replaces the config (the kind never changes). A config that gives none of the kind's secret
   * fields keeps the stored secrets, so a client can edit an endpoint without knowing the key.
   */
  update(name: string, changes: { config: Record<string, unknown> }): Backend {
    const row = this.row(name);
    requireOnlyKeys(requireRecord(changes, "backend changes"), ["config"], "backend changes (the name and kind never change)");
    const given = requireRecord(changes.config, `${row.kind} backend config`);
    const keepSecrets = !secretFieldsOf(row.kind).some((field) => field in given);
    const merged = keepSecrets ? { ...given, ...parseJsonColumn<Record<string, string>>(row.secrets_json) } : given;
    const { config, secrets } = checkBackendConfig(row.kind, merged);
    this.context.database.prepare("UPDATE backends SET config_json = ?, secrets_json = ? WHERE name = ?")
      .run(toJsonColumn(config, "backend config"), JSON.stringify(secrets), name);
    return this.get(name);
  }

  /** Deletes the backend with its ASDs and presets, in one statement (the foreign keys cascade). */
  delete(name: string): void {
    this.row(name);
    const vpools = this.context.database.prepare("SELECT name FROM vpools WHERE backend = ? ORDER BY name").pluck().all(name) as string[];
    if (vpools.length > 0) throw conflict(`backend ${name} is used by the vPools ${vpools.join(", ")}: delete them first`);
    deleteUnreferenced(
      () => this.context.database.prepare("DELETE FROM backends WHERE name = ?").run(name),
      `backend ${name} is used by a vPool: delete it first`,
    );
  }

  /** The spec and credentials, secrets included: for opening the store, never for showing. */
  connection(name: string): BackendConnection {
    const row = this.row(name);
    const stored = parseJsonColumn<Record<string, unknown>>(row.config_json);
    const identities = identityFieldsOf(row.kind);
    const spec: Record<string, unknown> = { type: row.kind };
    const credentials: Record<string, string> = { ...parseJsonColumn<Record<string, string>>(row.secrets_json) };
    for (const [key, value] of Object.entries(stored)) {
      if (identities.includes(key)) credentials[key] = value as string;
      else spec[key] = value;
    }
    return { spec: parseBackendSpec(spec, "/", `backend ${name}`), credentials };
  }

  private row(name: string): BackendRow {
    const row = this.context.database.prepare("SELECT * FROM backends WHERE name = ?").get(name) as BackendRow | undefined;
    if (row === undefined) throw notFound(`no backend named ${name}: list the backends to check the name`);
    return row;
  }
}

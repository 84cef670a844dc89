// The parts of an Alba backend the framework keeps: its ASDs (storage daemons) and its presets. Both
// belong to one backend of kind alba and are deleted with it. Presets are checked by Alba's own
// validatePreset, so the model holds only presets the proxy accepts; a preset's encryption key is
// stored but left out of every view (withKey() is for handing the preset to the proxy).
import { MetadataError } from "../../../alba/src/metadata/metadata-store.ts";
import { validatePreset } from "../../../alba/src/preset/preset-validation.ts";
import type { Preset } from "../../../alba/src/preset/preset.ts";
import { requireName, requireOneOf, requireOnlyKeys, requireRecord, requireString } from "./field-checks.ts";
import { insertUnique, parseJsonColumn, type ModelContext } from "./model-context.ts";
import { conflict, invalid, notFound } from "./model-error.ts";
import { ASD_STATUSES } from "./model-schema.ts";

export type AsdStatus = (typeof ASD_STATUSES)[number];

export interface AlbaAsd {
  asdId: string;
  backend: string;
  /** The fault domain (host or enclosure) it is in; a policy's x counts fragments per node id. */
  nodeId: string;
  /** http://host:port the proxy reaches it on. */
  url: string;
  status: AsdStatus;
  createdAt: string;
}

export type AlbaAsdInput = Pick<AlbaAsd, "asdId" | "nodeId" | "url"> & { status?: AsdStatus };

/** A preset as shown: everything but the encryption key. */
export type AlbaPreset = Omit<Preset, "encryptionKeyHex"> & { backend: string; createdAt: string };

interface AsdRow { asd_id: string; backend: string; node_id: string; url: string; status: AsdStatus; created_at: string }
interface PresetRow { backend: string; name: string; preset_json: string; created_at: string }

/** ASD ids are Alba's 32 hex digits, but imported ones may be any short identifier. */
const IDENTIFIER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const IDENTIFIER_HINT = "1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit";

function toAsd(row: AsdRow): AlbaAsd {
  return { asdId: row.asd_id, backend: row.backend, nodeId: row.node_id, url: row.url, status: row.status, createdAt: row.created_at };
}

function toPreset(row: PresetRow): AlbaPreset {
  const { encryptionKeyHex: _key, ...preset } = parseJsonColumn<Preset>(row.preset_json);
  return { ...preset, backend: row.backend, createdAt: row.created_at };
}

function checkAsd(input: unknown): Required<AlbaAsdInput> {
  const raw = requireRecord(input, "ASD");
  requireOnlyKeys(raw, ["asdId", "nodeId", "url", "status"], "ASD");
  const url = requireString(raw.url, "ASD url");
  if (!/^https?:\/\/[^/]+\/?$/.test(url) || !URL.canParse(url)) throw invalid(`ASD url must be like http://10.0.0.5:8601, got ${JSON.stringify(url)}`);
  return {
    asdId: requireName(raw.asdId, "ASD id", IDENTIFIER_PATTERN, IDENTIFIER_HINT),
    nodeId: requireName(raw.nodeId, "ASD node id", IDENTIFIER_PATTERN, IDENTIFIER_HINT),
    url,
    status: requireOneOf(raw.status ?? "claimed", ASD_STATUSES, "ASD status"),
  };
}

function checkPreset(input: unknown): Preset {
  try {
    return validatePreset(input);
  } catch (error) {
    if (error instanceof MetadataError) throw invalid(error.message);
    throw error;
  }
}

/** Throws unless `backend` exists and is an Alba backend. */
function requireAlbaBackend(context: ModelContext, backend: string): void {
  const kind = context.database.prepare("SELECT kind FROM backends WHERE name = ?").pluck().get(backend) as string | undefined;
  if (kind === undefined) throw notFound(`no backend named ${backend}: list the backends to check the name`);
  if (kind !== "alba") throw invalid(`backend ${backend} is a ${kind} backend: only alba backends have ASDs and presets`);
}

export class AlbaAsds {
  constructor(private readonly context: ModelContext) {}

  /** Adds an ASD (default status "claimed") to an Alba backend. */
  create(backend: string, input: AlbaAsdInput): AlbaAsd {
    const asd = checkAsd(input);
    requireAlbaBackend(this.context, backend);
    insertUnique(
      () => this.context.database.prepare("INSERT INTO alba_asds (asd_id, backend, node_id, url, status, created_at) VALUES (?, ?, ?, ?, ?, ?)")
        .run(asd.asdId, backend, asd.nodeId, asd.url, asd.status, this.context.nowIso()),
      `ASD ${asd.asdId} is known already (an ASD belongs to one backend): delete it there first`,
    );
    return this.get(asd.asdId);
  }

  get(asdId: string): AlbaAsd {
    const row = this.context.database.prepare("SELECT * FROM alba_asds WHERE asd_id = ?").get(asdId) as AsdRow | undefined;
    if (row === undefined) throw notFound(`no ASD ${asdId}: list the ASDs of the backend to check the id`);
    return toAsd(row);
  }

  list(backend: string): AlbaAsd[] {
    requireAlbaBackend(this.context, backend);
    return (this.context.database.prepare("SELECT * FROM alba_asds WHERE backend = ? ORDER BY node_id, asd_id").all(backend) as AsdRow[]).map(toAsd);
  }

  /** Moves an ASD (new url or node) or records its status. */
  update(asdId: string, changes: Partial<Omit<AlbaAsdInput, "asdId">>): AlbaAsd {
    const current = this.get(asdId);
    requireOnlyKeys(requireRecord(changes, "ASD changes"), ["nodeId", "url", "status"], "ASD changes");
    const asd = checkAsd({ asdId, nodeId: changes.nodeId ?? current.nodeId, url: changes.url ?? current.url, status: changes.status ?? current.status });
    this.context.database.prepare("UPDATE alba_asds SET node_id = ?, url = ?, status = ? WHERE asd_id = ?").run(asd.nodeId, asd.url, asd.status, asdId);
    return this.get(asdId);
  }

  delete(asdId: string): void {
    this.get(asdId);
    this.context.database.prepare("DELETE FROM alba_asds WHERE asd_id = ?").run(asdId);
  }
}

export class AlbaPresets {
  constructor(private readonly context: ModelContext) {}

  create(backend: string, input: unknown): AlbaPreset {
    const preset = checkPreset(input);
    requireAlbaBackend(this.context, backend);
    insertUnique(
      () => this.context.database.prepare("INSERT INTO alba_presets (backend, name, preset_json, created_at) VALUES (?, ?, ?, ?)")
        .run(backend, preset.name, JSON.stringify(preset), this.context.nowIso()),
      `backend ${backend} has a preset named ${preset.name} already: choose another name`,
    );
    return this.get(backend, preset.name);
  }

  get(backend: string, name: string): AlbaPreset {
    return toPreset(this.row(backend, name));
  }

  list(backend: string): AlbaPreset[] {
    requireAlbaBackend(this.context, backend);
    return (this.context.database.prepare("SELECT * FROM alba_presets WHERE backend = ? ORDER BY name").all(backend) as PresetRow[]).map(toPreset);
  }

  /** The preset with its encryption key: for handing to the proxy, never for showing. */
  withKey(backend: string, name: string): Preset {
    return parseJsonColumn<Preset>(this.row(backend, name).preset_json);
  }

  /**
   * Replaces the preset's policies, fragment size and codecs (the name stays). Without a new key, an
   * encrypted preset keeps its key, so a client can change policies without knowing it.
   */
  update(backend: string, name: string, changes: Partial<Omit<Preset, "name">>): AlbaPreset {
    const current = this.withKey(backend, name);
    const merged: Partial<Preset> = { ...current, ...changes, name };
    // Turning encryption off drops the stored key; a key given with encryption off is Invalid.
    if (merged.encryption !== "aes-256-ctr" && changes.encryptionKeyHex === undefined) delete merged.encryptionKeyHex;
    const preset = checkPreset(merged);
    this.context.database.prepare("UPDATE alba_presets SET preset_json = ? WHERE backend = ? AND name = ?").run(JSON.stringify(preset), backend, name);
    return this.get(backend, name);
  }

  /** Refused while the backend's config names it as the preset of new namespaces. */
  delete(backend: string, name: string): void {
    this.row(backend, name);
    this.requireDeletable(backend, name);
    this.context.database.prepare("DELETE FROM alba_presets WHERE backend = ? AND name = ?").run(backend, name);
  }

  /**
   * Throws Conflict while the backend's config names `name` as the preset its vPools' namespaces
   * get, whether or not the model holds a copy of the preset: the API asks this before it deletes
   * the preset in Alba, so Alba and the model never disagree over a refused delete.
   */
  requireDeletable(backend: string, name: string): void {
    requireAlbaBackend(this.context, backend);
    const config = this.context.database.prepare("SELECT config_json FROM backends WHERE name = ?").pluck().get(backend) as string;
    if (parseJsonColumn<{ presetName?: string }>(config).presetName === name) {
      throw conflict(`preset ${name} is the preset of backend ${backend}: name another preset in the backend's config first`);
    }
  }

  private row(backend: string, name: string): PresetRow {
    requireAlbaBackend(this.context, backend);
    const row = this.context.database.prepare("SELECT * FROM alba_presets WHERE backend = ? AND name = ?").get(backend, name) as PresetRow | undefined;
    if (row === undefined) throw notFound(`backend ${backend} has no preset named ${name}: list its presets to check the name`);
    return row;
  }
}

// vDisks as the framework knows them: name (unique in the cluster), vPool, size, the snapshot a
// clone was made from ("NAME@SNAP"), the template flag and per-vDisk setting overrides. A clone lives
// in its parent's vPool and has its snapshot's size (the parent may have grown since); a vDisk with
// clones cannot be deleted (the clones read their unwritten clusters from it). Sizes only grow, and
// a template stays a template, as in the engine.
import { DEFAULT_VPOOL_SETTINGS, VOLUME_NAME_PATTERN } from "../../../volumedriver/src/engine/vpool.ts";
import { SNAPSHOT_NAME_PATTERN } from "../../../volumedriver/src/engine/vpool-types.ts";
import { VPOOL_NAME_PATTERN } from "../../../volumedriver/src/storagedriver/config.ts";
import { vdiskSizeProblem } from "../../../volumedriver/src/storagedriver/size.ts";
import { requireBoolean, requireName, requireOnlyKeys, requireRecord, toJsonColumn } from "./field-checks.ts";
import { deleteUnreferenced, insertUnique, parseJsonColumn, type ModelContext } from "./model-context.ts";
import { conflict, invalid, notFound } from "./model-error.ts";

/** vPool settings a vDisk may override, with a number each (units in the names). */
export type VdiskConfigOverrides = Partial<Record<keyof typeof DEFAULT_VPOOL_SETTINGS, number>>;

export interface Vdisk {
  name: string;
  vpool: string;
  sizeBytes: number;
  /** "NAME@SNAP" for a clone of vDisk NAME's snapshot SNAP; null otherwise. */
  parentSnapshot: string | null;
  template: boolean;
  configOverrides: VdiskConfigOverrides;
  createdAt: string;
}

export type VdiskInput = Pick<Vdisk, "name" | "vpool" | "sizeBytes"> & Partial<Pick<Vdisk, "parentSnapshot" | "template" | "configOverrides">>;

interface VdiskRow {
  name: string; vpool: string; size_bytes: number; parent_vdisk: string | null; parent_snapshot: string | null;
  template: number; config_overrides_json: string; created_at: string;
}

const OVERRIDABLE_SETTINGS = Object.keys(DEFAULT_VPOOL_SETTINGS);

function toVdisk(row: VdiskRow): Vdisk {
  return {
    name: row.name, vpool: row.vpool, sizeBytes: row.size_bytes,
    parentSnapshot: row.parent_vdisk === null ? null : `${row.parent_vdisk}@${row.parent_snapshot}`,
    template: row.template === 1, configOverrides: parseJsonColumn<VdiskConfigOverrides>(row.config_overrides_json), createdAt: row.created_at,
  };
}

function checkSize(value: unknown, where: string): number {
  const problem = typeof value === "number" && Number.isSafeInteger(value) ? vdiskSizeProblem(value) : `${where} must be a whole number of bytes`;
  if (problem !== undefined) throw invalid(problem);
  return value as number;
}

/** Splits "NAME@SNAP"; Invalid unless both parts are valid names. */
export function parseParentSnapshot(value: unknown): { vdisk: string; snapshot: string } {
  const text = typeof value === "string" ? value : "";
  const at = text.indexOf("@");
  const vdisk = text.slice(0, at);
  const snapshot = text.slice(at + 1);
  if (at < 0 || !VOLUME_NAME_PATTERN.test(vdisk) || !SNAPSHOT_NAME_PATTERN.test(snapshot)) {
    throw invalid(`vDisk parentSnapshot must be "NAME@SNAPSHOT" naming a vDisk and one of its snapshots, got ${JSON.stringify(value)}`);
  }
  return { vdisk, snapshot };
}

function checkOverrides(value: unknown): VdiskConfigOverrides {
  const raw = requireRecord(value, "vDisk configOverrides");
  requireOnlyKeys(raw, OVERRIDABLE_SETTINGS, "vDisk configOverrides");
  for (const [key, setting] of Object.entries(raw)) {
    // Ranges are the engine's to check when it opens the vDisk, as for a StorageDriver config.
    if (typeof setting !== "number" || !Number.isFinite(setting) || setting < 0) throw invalid(`vDisk configOverrides.${key} must be a number >= 0`);
  }
  return raw as VdiskConfigOverrides;
}

export class Vdisks {
  constructor(private readonly context: ModelContext) {}

  create(input: VdiskInput): Vdisk {
    const raw = requireRecord(input, "vDisk");
    requireOnlyKeys(raw, ["name", "vpool", "sizeBytes", "parentSnapshot", "template", "configOverrides"], "vDisk");
    const name = requireName(raw.name, "vDisk name", VOLUME_NAME_PATTERN, "1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit");
    const vpool = requireName(raw.vpool, "vDisk vpool", VPOOL_NAME_PATTERN, "a vPool name");
    const sizeBytes = checkSize(raw.sizeBytes, "vDisk sizeBytes");
    const parent = raw.parentSnapshot === undefined || raw.parentSnapshot === null ? null : parseParentSnapshot(raw.parentSnapshot);
    const template = requireBoolean(raw.template ?? false, "vDisk template");
    const overrides = toJsonColumn(checkOverrides(raw.configOverrides ?? {}), "vDisk configOverrides");
    // One transaction: the parent cannot be deleted between the check and the insert.
    return this.context.database.transaction(() => {
      if (this.context.database.prepare("SELECT 1 FROM vpools WHERE name = ?").get(vpool) === undefined) {
        throw notFound(`no vPool named ${vpool}: list the vPools to check the name`);
      }
      if (parent !== null) {
        const parentVdisk = this.get(parent.vdisk);
        if (parentVdisk.vpool !== vpool) {
          throw invalid(`a clone lives in its parent's vPool: ${parent.vdisk} is in ${parentVdisk.vpool}, not ${vpool}`);
        }
      }
      insertUnique(
        () => this.context.database.prepare(
          `INSERT INTO vdisks (name, vpool, size_bytes, parent_vdisk, parent_snapshot, template, config_overrides_json, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(name, vpool, sizeBytes, parent?.vdisk ?? null, parent?.snapshot ?? null, template ? 1 : 0, overrides, this.context.nowIso()),
        `a vDisk named ${name} exists already (vDisk names are unique in the cluster): choose another name`,
      );
      return this.get(name);
    }).immediate();
  }

  get(name: string): Vdisk {
    const row = this.context.database.prepare("SELECT * FROM vdisks WHERE name = ?").get(name) as VdiskRow | undefined;
    if (row === undefined) throw notFound(`no vDisk named ${name}: list the vDisks to check the name`);
    return toVdisk(row);
  }

  /** Every vDisk, or those of one vPool. */
  list(filter: { vpool?: string } = {}): Vdisk[] {
    const rows = this.context.database.prepare("SELECT * FROM vdisks WHERE ? IS NULL OR vpool = ? ORDER BY name")
      .all(filter.vpool ?? null, filter.vpool ?? null) as VdiskRow[];
    return rows.map(toVdisk);
  }

  /** The vDisks cloned from a snapshot of `name` (of one snapshot when given). */
  clonesOf(name: string, snapshot?: string): Vdisk[] {
    const rows = this.context.database.prepare("SELECT * FROM vdisks WHERE parent_vdisk = ? AND (? IS NULL OR parent_snapshot = ?) ORDER BY name")
      .all(name, snapshot ?? null, snapshot ?? null) as VdiskRow[];
    return rows.map(toVdisk);
  }

  /** Grows the size, makes it a template, or replaces its overrides. Name, vPool and parent never change. */
  update(name: string, changes: Partial<Pick<Vdisk, "sizeBytes" | "template" | "configOverrides">>): Vdisk {
    const current = this.get(name);
    requireOnlyKeys(requireRecord(changes, "vDisk changes"), ["sizeBytes", "template", "configOverrides"], "vDisk changes");
    const sizeBytes = checkSize(changes.sizeBytes ?? current.sizeBytes, "vDisk sizeBytes");
    if (sizeBytes < current.sizeBytes) {
      throw invalid(`vDisk ${name} has ${current.sizeBytes} bytes and can only grow: shrinking would cut off data; clone it to a new vDisk instead`);
    }
    const template = requireBoolean(changes.template ?? current.template, "vDisk template");
    if (current.template && !template) throw invalid(`vDisk ${name} is a template and stays one: clone it to get a writable vDisk`);
    const overrides = toJsonColumn(checkOverrides(changes.configOverrides ?? current.configOverrides), "vDisk configOverrides");
    this.context.database.prepare("UPDATE vdisks SET size_bytes = ?, template = ?, config_overrides_json = ? WHERE name = ?")
      .run(sizeBytes, template ? 1 : 0, overrides, name);
    return this.get(name);
  }

  /** Refused while clones depend on it. */
  delete(name: string): void {
    this.get(name);
    const clones = this.clonesOf(name).map((clone) => `${clone.name} (from ${clone.parentSnapshot})`);
    if (clones.length > 0) throw conflict(`vDisk ${name} has clones: ${clones.join(", ")}: delete them first`);
    deleteUnreferenced(
      () => this.context.database.prepare("DELETE FROM vdisks WHERE name = ?").run(name),
      `vDisk ${name} has clones: delete them first`,
    );
  }
}

// vPools (a set of vDisks sharing one backend and one set of cache settings) and StorageDrivers (a
// vPool served from one StorageRouter). Settings are checked against the engine's own limits
// (openVPool would refuse them later, on some host, far from the operator who typed them).
// A vPool cannot be deleted while it holds vDisks; its StorageDrivers go with it. A StorageDriver's
// three ports are distinct and free among the StorageDrivers of its StorageRouter.
import type { EncryptionKeySource } from "../../../volumedriver/src/storagedriver/codec-config.ts";
import { parseCompression, parseEncryption } from "../../../volumedriver/src/storagedriver/codec-config.ts";
import type { Compression } from "../../../volumedriver/src/backend/chunk-codec.ts";
import { VPOOL_NAME_PATTERN } from "../../../volumedriver/src/storagedriver/config.ts";
import { DEFAULT_VPOOL_SETTINGS } from "../../../volumedriver/src/engine/vpool.ts";
import { CLUSTER_SIZE_BYTES, MIB } from "../../../volumedriver/src/engine/vpool-types.ts";
import { validateSchedule, type ScheduleSpec } from "../scheduler/scheduler.ts";
import { requireInteger, requireName, requireOnlyKeys, requirePort, requireRecord, toJsonColumn } from "./field-checks.ts";
import { deleteUnreferenced, insertUnique, parseJsonColumn, type ModelContext } from "./model-context.ts";
import { conflict, invalid, notFound } from "./model-error.ts";

export const SCO_SIZE_BYTES_MIN = 4 * MIB;
export const SCO_SIZE_BYTES_MAX = 128 * MIB;
/** The jobs a vPool can schedule its own way; null turns the job off for this vPool. */
export const VPOOL_SCHEDULED_JOBS = ["snapshots", "scrub"] as const;
export type VPoolSchedules = Partial<Record<(typeof VPOOL_SCHEDULED_JOBS)[number], ScheduleSpec | null>>;

export interface VPool {
  name: string;
  backend: string;
  scoSizeBytes: number;
  writeBufferSizeBytes: number;
  readCacheSizeBytes: number;
  compression: Compression;
  /** Where the AES-256 key is ({keyFile} or {keyEnv}, never the key); null: not encrypted. */
  encryption: EncryptionKeySource | null;
  /** Overrides of the cluster-wide schedules for this vPool's vDisks. */
  schedules: VPoolSchedules;
  createdAt: string;
}

/** Omitted settings take the engine's defaults. */
export type VPoolInput = Pick<VPool, "name" | "backend"> & Partial<Omit<VPool, "name" | "backend" | "createdAt">>;

export interface StorageDriver {
  vpool: string;
  storageRouter: string;
  nbdPort: number;
  iscsiPort: number;
  managementPort: number;
  createdAt: string;
}

export type StorageDriverInput = Omit<StorageDriver, "createdAt">;

interface VPoolRow {
  name: string; backend: string; sco_size_bytes: number; write_buffer_size_bytes: number; read_cache_size_bytes: number;
  compression: Compression; encryption_json: string | null; schedules_json: string; created_at: string;
}
interface StorageDriverRow { vpool: string; storage_router: string; nbd_port: number; iscsi_port: number; management_port: number; created_at: string }

const VPOOL_FIELDS = ["name", "backend", "scoSizeBytes", "writeBufferSizeBytes", "readCacheSizeBytes", "compression", "encryption", "schedules"];

function toVPool(row: VPoolRow): VPool {
  return {
    name: row.name, backend: row.backend, scoSizeBytes: row.sco_size_bytes, writeBufferSizeBytes: row.write_buffer_size_bytes,
    readCacheSizeBytes: row.read_cache_size_bytes, compression: row.compression,
    encryption: row.encryption_json === null ? null : parseJsonColumn<EncryptionKeySource>(row.encryption_json),
    schedules: parseJsonColumn<VPoolSchedules>(row.schedules_json), createdAt: row.created_at,
  };
}

function toStorageDriver(row: StorageDriverRow): StorageDriver {
  return {
    vpool: row.vpool, storageRouter: row.storage_router, nbdPort: row.nbd_port, iscsiPort: row.iscsi_port,
    managementPort: row.management_port, createdAt: row.created_at,
  };
}

/** Runs a volumedriver parser whose Errors are messages for the operator: they become Invalid. */
function asInvalid<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw invalid((error as Error).message);
  }
}

function checkVPool(input: unknown): Omit<VPool, "createdAt"> {
  const raw = requireRecord(input, "vPool");
  requireOnlyKeys(raw, VPOOL_FIELDS, "vPool");
  const scoSizeBytes = requireInteger(raw.scoSizeBytes ?? DEFAULT_VPOOL_SETTINGS.scoSizeBytes, SCO_SIZE_BYTES_MIN, SCO_SIZE_BYTES_MAX, "vPool scoSizeBytes");
  if (scoSizeBytes % CLUSTER_SIZE_BYTES !== 0) throw invalid(`vPool scoSizeBytes must be a multiple of ${CLUSTER_SIZE_BYTES}`);
  // The engine needs room for an open SCO and a sealed one being uploaded.
  const writeBufferSizeBytes = requireInteger(
    raw.writeBufferSizeBytes ?? DEFAULT_VPOOL_SETTINGS.writeBufferSizeBytes, 2 * scoSizeBytes, Number.MAX_SAFE_INTEGER, "vPool writeBufferSizeBytes (at least 2 SCOs)",
  );
  const encryption = raw.encryption ?? null;
  if (encryption !== null) {
    const keyFile = (encryption as { keyFile?: unknown }).keyFile;
    if (typeof keyFile === "string" && !keyFile.startsWith("/")) throw invalid(`vPool encryption keyFile must be an absolute path, got ${JSON.stringify(keyFile)}`);
  }
  return {
    name: requireName(raw.name, "vPool name", VPOOL_NAME_PATTERN, "1-31 characters of a-z, 0-9 and '-', starting with a letter or digit"),
    backend: requireName(raw.backend, "vPool backend"),
    scoSizeBytes,
    writeBufferSizeBytes,
    readCacheSizeBytes: requireInteger(raw.readCacheSizeBytes ?? DEFAULT_VPOOL_SETTINGS.readCacheSizeBytes, 0, Number.MAX_SAFE_INTEGER, "vPool readCacheSizeBytes"),
    compression: asInvalid(() => parseCompression(raw.compression, "vPool compression")),
    encryption: encryption === null ? null : asInvalid(() => parseEncryption(encryption, "/", "vPool encryption")) ?? null,
    schedules: checkSchedules(raw.schedules ?? {}),
  };
}

function checkSchedules(value: unknown): VPoolSchedules {
  const raw = requireRecord(value, "vPool schedules");
  requireOnlyKeys(raw, VPOOL_SCHEDULED_JOBS, "vPool schedules");
  const schedules: VPoolSchedules = {};
  for (const job of VPOOL_SCHEDULED_JOBS) {
    const spec = raw[job];
    if (spec === undefined) continue;
    schedules[job] = spec === null ? null : asInvalid(() => validateSchedule(spec));
  }
  return schedules;
}

function checkPorts(input: unknown): StorageDriverInput {
  const raw = requireRecord(input, "StorageDriver");
  requireOnlyKeys(raw, ["vpool", "storageRouter", "nbdPort", "iscsiPort", "managementPort"], "StorageDriver");
  const driver = {
    vpool: requireName(raw.vpool, "StorageDriver vpool", VPOOL_NAME_PATTERN, "a vPool name"),
    storageRouter: requireName(raw.storageRouter, "StorageDriver storageRouter"),
    nbdPort: requirePort(raw.nbdPort, "StorageDriver nbdPort"),
    iscsiPort: requirePort(raw.iscsiPort, "StorageDriver iscsiPort"),
    managementPort: requirePort(raw.managementPort, "StorageDriver managementPort"),
  };
  if (new Set([driver.nbdPort, driver.iscsiPort, driver.managementPort]).size !== 3) {
    throw invalid(`StorageDriver ports must differ: nbdPort ${driver.nbdPort}, iscsiPort ${driver.iscsiPort}, managementPort ${driver.managementPort}`);
  }
  return driver;
}

export class VPools {
  constructor(private readonly context: ModelContext) {}

  create(input: VPoolInput): VPool {
    const vpool = checkVPool(input);
    return this.context.database.transaction(() => {
      const backend = this.context.database.prepare("SELECT name FROM backends WHERE name = ?").pluck().get(vpool.backend);
      if (backend === undefined) throw notFound(`no backend named ${vpool.backend}: create it first, or list the backends to check the name`);
      insertUnique(
        () => this.context.database.prepare(
          `INSERT INTO vpools (name, backend, sco_size_bytes, write_buffer_size_bytes, read_cache_size_bytes, compression, encryption_json, schedules_json, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          vpool.name, vpool.backend, vpool.scoSizeBytes, vpool.writeBufferSizeBytes, vpool.readCacheSizeBytes, vpool.compression,
          vpool.encryption === null ? null : JSON.stringify(vpool.encryption), toJsonColumn(vpool.schedules, "vPool schedules"), this.context.nowIso(),
        ),
        `a vPool named ${vpool.name} exists already: choose another name`,
      );
      return this.get(vpool.name);
    }).immediate();
  }

  get(name: string): VPool {
    const row = this.context.database.prepare("SELECT * FROM vpools WHERE name = ?").get(name) as VPoolRow | undefined;
    if (row === undefined) throw notFound(`no vPool named ${name}: list the vPools to check the name`);
    return toVPool(row);
  }

  list(): VPool[] {
    return (this.context.database.prepare("SELECT * FROM vpools ORDER BY name").all() as VPoolRow[]).map(toVPool);
  }

  /** Changes settings; the name and the backend never change (the vDisks' data is on that backend). */
  update(name: string, changes: Partial<Omit<VPoolInput, "name">>): VPool {
    const current = this.get(name);
    if (changes.backend !== undefined && changes.backend !== current.backend) {
      throw invalid(`vPool ${name} stays on backend ${current.backend}: its vDisks' data is there; create a new vPool on the other backend instead`);
    }
    const { createdAt: _createdAt, ...settings } = current;
    const vpool = checkVPool({ ...settings, ...changes, name });
    this.context.database.prepare(
      `UPDATE vpools SET sco_size_bytes = ?, write_buffer_size_bytes = ?, read_cache_size_bytes = ?, compression = ?, encryption_json = ?, schedules_json = ?
       WHERE name = ?`,
    ).run(
      vpool.scoSizeBytes, vpool.writeBufferSizeBytes, vpool.readCacheSizeBytes, vpool.compression,
      vpool.encryption === null ? null : JSON.stringify(vpool.encryption), toJsonColumn(vpool.schedules, "vPool schedules"), name,
    );
    return this.get(name);
  }

  /** Deletes the vPool and its StorageDrivers; refused while it holds vDisks. */
  delete(name: string): void {
    this.get(name);
    const vdisks = this.context.database.prepare("SELECT name FROM vdisks WHERE vpool = ? ORDER BY name LIMIT 11").pluck().all(name) as string[];
    if (vdisks.length > 0) {
      const shown = vdisks.length > 10 ? `${vdisks.slice(0, 10).join(", ")}, ...` : vdisks.join(", ");
      throw conflict(`vPool ${name} holds vDisks (${shown}): delete them first`);
    }
    deleteUnreferenced(
      () => this.context.database.prepare("DELETE FROM vpools WHERE name = ?").run(name),
      `vPool ${name} holds vDisks: delete them first`,
    );
  }
}

export class StorageDrivers {
  constructor(private readonly context: ModelContext) {}

  create(input: StorageDriverInput): StorageDriver {
    const driver = checkPorts(input);
    return this.context.database.transaction(() => {
      if (this.context.database.prepare("SELECT 1 FROM vpools WHERE name = ?").get(driver.vpool) === undefined) {
        throw notFound(`no vPool named ${driver.vpool}: list the vPools to check the name`);
      }
      if (this.context.database.prepare("SELECT 1 FROM storage_routers WHERE name = ?").get(driver.storageRouter) === undefined) {
        throw notFound(`no storage router named ${driver.storageRouter}: list them to check the name`);
      }
      this.checkPortsFree(driver);
      insertUnique(
        () => this.context.database.prepare(
          "INSERT INTO storagedrivers (vpool, storage_router, nbd_port, iscsi_port, management_port, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        ).run(driver.vpool, driver.storageRouter, driver.nbdPort, driver.iscsiPort, driver.managementPort, this.context.nowIso()),
        `vPool ${driver.vpool} has a StorageDriver on ${driver.storageRouter} already`,
      );
      return this.get(driver.vpool, driver.storageRouter);
    }).immediate();
  }

  get(vpool: string, storageRouter: string): StorageDriver {
    const row = this.context.database.prepare("SELECT * FROM storagedrivers WHERE vpool = ? AND storage_router = ?").get(vpool, storageRouter) as
      | StorageDriverRow
      | undefined;
    if (row === undefined) throw notFound(`vPool ${vpool} has no StorageDriver on storage router ${storageRouter}`);
    return toStorageDriver(row);
  }

  /** Every StorageDriver, or those of one vPool or one StorageRouter. */
  list(filter: { vpool?: string; storageRouter?: string } = {}): StorageDriver[] {
    const rows = this.context.database.prepare(
      "SELECT * FROM storagedrivers WHERE (? IS NULL OR vpool = ?) AND (? IS NULL OR storage_router = ?) ORDER BY vpool, storage_router",
    ).all(filter.vpool ?? null, filter.vpool ?? null, filter.storageRouter ?? null, filter.storageRouter ?? null) as StorageDriverRow[];
    return rows.map(toStorageDriver);
  }

  /** Changes ports. */
  update(vpool: string, storageRouter: string, changes: Partial<Pick<StorageDriver, "nbdPort" | "iscsiPort" | "managementPort">>): StorageDriver {
    return this.context.database.transaction(() => {
      const current = this.get(vpool, storageRouter);
      requireOnlyKeys(requireRecord(changes, "StorageDriver changes"), ["nbdPort", "iscsiPort", "managementPort"], "StorageDriver changes");
      const driver = checkPorts({
        vpool, storageRouter, nbdPort: changes.nbdPort ?? current.nbdPort, iscsiPort: changes.iscsiPort ?? current.iscsiPort,
        managementPort: changes.managementPort ?? current.managementPort,
      });
      this.checkPortsFree(driver);
      this.context.database.prepare("UPDATE storagedrivers SET nbd_port = ?, iscsi_port = ?, management_port = ? WHERE vpool = ? AND storage_router = ?")
        .run(driver.nbdPort, driver.iscsiPort, driver.managementPort, vpool, storageRouter);
      return this.get(vpool, storageRouter);
    }).immediate();
  }

  delete(vpool: string, storageRouter: string): void {
    this.get(vpool, storageRouter);
    this.context.database.prepare("DELETE FROM storagedrivers WHERE vpool = ? AND storage_router = ?").run(vpool, storageRouter);
  }

  /** No port of `driver` may be any port of another StorageDriver on the same StorageRouter. */
  private checkPortsFree(driver: StorageDriverInput): void {
    const others = this.list({ storageRouter: driver.storageRouter }).filter((other) => other.vpool !== driver.vpool);
    for (const other of others) {
      const taken = [other.nbdPort, other.iscsiPort, other.managementPort];
      const clash = [driver.nbdPort, driver.iscsiPort, driver.managementPort].find((port) => taken.includes(port));
      if (clash !== undefined) {
        throw conflict(`port ${clash} on storage router ${driver.storageRouter} is taken by the StorageDriver of vPool ${other.vpool}: choose another port`);
      }
    }
  }
}

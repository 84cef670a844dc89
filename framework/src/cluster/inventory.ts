// What `ovs up` records in the framework's model (DATA/framework.db) about the cluster it runs, and
// what it reads back from it. config.json says how this host starts its first vPool; the model is
// the cluster's inventory: this StorageRouter, the backends (the first vPool's, recorded on every
// start, and those added through the API), the Alba backend's ASDs and presets, the vPools with their
// StorageDrivers. vPools created through the API live only in the model and are started from it.
import { hostname } from "node:os";
import path from "node:path";
import type { Logger } from "pino";
import type { AsdStatus } from "../../../alba/src/client/alba-client-api.ts";
import type { Preset } from "../../../alba/src/preset/preset.ts";
import type { Backend } from "../model/backend-repository.ts";
import type { FrameworkModel } from "../model/framework-model.ts";
import { ENTITY_NAME_PATTERN } from "../model/field-checks.ts";
import { isModelError } from "../model/model-error.ts";
import type { VPool } from "../model/vpool-repository.ts";
import { LOOPBACK_HOST, type ClusterConfig, type VPoolEntry } from "./cluster-config.ts";
import type { VPoolLaunch } from "./vpool-runtimes.ts";

/** The name the managed Alba backend has in the model. */
export const MANAGED_ALBA_BACKEND_NAME = "alba";

/** This host as a StorageRouter: its host name, made a valid entity name. */
export function storageRouterName(host = hostname()): string {
  const name = host.toLowerCase().split(".")[0].replace(/[^a-z0-9_-]/g, "-").replace(/^[^a-z0-9]+/, "").slice(0, 63);
  return ENTITY_NAME_PATTERN.test(name) ? name : "storagerouter-1";
}

/** The model's name and config of the first vPool's backend. */
export function primaryBackendOf(entry: VPoolEntry, dataDirectory: string): { name: string; kind: Backend["kind"]; config: Record<string, unknown>; managed: boolean } {
  const backend = entry.backend;
  if (backend.type === "managed-alba") {
    return { name: MANAGED_ALBA_BACKEND_NAME, kind: "alba", config: { proxyUrl: `http://${backend.proxy.host}:${backend.proxy.port}` }, managed: true };
  }
  if (backend.type === "local") return { name: "local", kind: "local", config: { path: path.resolve(dataDirectory, backend.path) }, managed: false };
  const { type, ...config } = backend;
  return { name: type, kind: type, config, managed: false };
}

export interface RecordInventoryOptions {
  model: FrameworkModel;
  config: ClusterConfig;
  dataDirectory: string;
  storageRouter: string;
  /** The first vPool's StorageDriver ports (management, NBD, iSCSI). */
  ports: { management: number; nbd: number; iscsi: number };
}

/** Records this host, the first vPool's backend, the vPool and its StorageDriver; idempotent. */
export function recordInventory(options: RecordInventoryOptions): void {
  const { model, config, dataDirectory, storageRouter, ports } = options;
  const entry = config.vpools[0];
  const backend = primaryBackendOf(entry, dataDirectory);
  model.transaction(() => {
    if (!model.storageRouters.list().some((router) => router.name === storageRouter)) {
      model.storageRouters.create({ name: storageRouter, host: hostname().toLowerCase(), ip: LOOPBACK_HOST });
    }
    const known = model.backends.list().find((candidate) => candidate.name === backend.name);
    if (known === undefined) model.backends.create({ name: backend.name, kind: backend.kind, config: backend.config });
    else if (JSON.stringify(known.config) !== JSON.stringify(backend.config)) model.backends.update(backend.name, { config: backend.config });
    const settings = modelSettingsOf(entry.settings);
    const recorded = model.vpools.list().find((vpool) => vpool.name === entry.name);
    if (recorded !== undefined && recorded.backend !== backend.name) {
      // `ovs up --backend` moved the first vPool to another backend: it is another vPool now.
      model.vpools.delete(entry.name);
    }
    if (recorded === undefined || recorded.backend !== backend.name) {
      model.vpools.create({ name: entry.name, backend: backend.name, ...settings });
    } else {
      model.vpools.update(entry.name, settings);
    }
    const driver = { nbdPort: ports.nbd, iscsiPort: ports.iscsi, managementPort: ports.management };
    if (model.storageDrivers.list({ vpool: entry.name, storageRouter }).length === 0) {
      model.storageDrivers.create({ vpool: entry.name, storageRouter, ...driver });
    } else {
      model.storageDrivers.update(entry.name, storageRouter, driver);
    }
  });
}

/** The vPool settings the model keeps as columns, from a config.json settings object. */
function modelSettingsOf(settings: Record<string, number>): Partial<Pick<VPool, "scoSizeBytes" | "writeBufferSizeBytes" | "readCacheSizeBytes">> {
  const picked: Partial<Pick<VPool, "scoSizeBytes" | "writeBufferSizeBytes" | "readCacheSizeBytes">> = {};
  if (settings.scoSizeBytes !== undefined) picked.scoSizeBytes = settings.scoSizeBytes;
  if (settings.writeBufferSizeBytes !== undefined) picked.writeBufferSizeBytes = settings.writeBufferSizeBytes;
  if (settings.readCacheSizeBytes !== undefined) picked.readCacheSizeBytes = settings.readCacheSizeBytes;
  return picked;
}

/** Records the managed Alba backend's ASDs and presets as its proxy reports them. */
export function recordAlbaInventory(model: FrameworkModel, backend: string, asds: readonly AsdStatus[], presets: readonly Preset[], logger: Logger): void {
  model.transaction(() => {
    for (const status of asds) {
      const url = `http://${status.record.host}:${status.record.port}`;
      const asdStatus = status.health === "up" ? "claimed" : "error";
      const known = model.albaAsds.list(backend).find((asd) => asd.asdId === status.record.asdId);
      if (known === undefined) model.albaAsds.create(backend, { asdId: status.record.asdId, nodeId: status.record.nodeId, url, status: asdStatus });
      else model.albaAsds.update(status.record.asdId, { nodeId: status.record.nodeId, url, status: asdStatus });
    }
    const knownPresets = new Set(model.albaPresets.list(backend).map((preset) => preset.name));
    for (const listed of presets) {
      if (knownPresets.has(listed.name)) continue;
      // The proxy's listing adds `encrypted` (its key is never sent): not a field of the model's copy.
      const { encrypted: _encrypted, ...preset } = listed as Preset & { encrypted?: boolean };
      try {
        model.albaPresets.create(backend, preset);
      } catch (error) {
        // An encrypted preset comes from the proxy without its key: Alba keeps it, the model cannot.
        if (!isModelError(error, "Invalid")) throw error;
        logger.warn({ backend, preset: preset.name, reason: (error as Error).message }, "preset not recorded in the model");
      }
    }
  });
}

/** The backend credentials as a StorageDriver reads them from its environment. */
export function credentialEnvironment(kind: Backend["kind"], spec: Record<string, unknown>, credentials: Record<string, string>): Record<string, string> {
  const names: Record<string, string> = kind === "s3"
    ? { accessKeyId: "AWS_ACCESS_KEY_ID", secretAccessKey: "AWS_SECRET_ACCESS_KEY" }
    : kind === "swift" && spec.auth === "keystone"
      ? { user: "OS_USERNAME", password: "OS_PASSWORD", projectName: "OS_PROJECT_NAME", userDomainName: "OS_USER_DOMAIN_NAME", projectDomainName: "OS_PROJECT_DOMAIN_NAME", regionName: "OS_REGION_NAME" }
      : kind === "swift" ? { user: "ST_USER", key: "ST_KEY" } : {};
  const environment: Record<string, string> = {};
  for (const [field, value] of Object.entries(credentials)) {
    const variable = names[field];
    if (variable !== undefined) environment[variable] = value;
  }
  return environment;
}

/** How to start a vPool the model holds (one created through the API) on this StorageRouter. */
export function launchOf(model: FrameworkModel, config: ClusterConfig, vpoolName: string, storageRouter: string): VPoolLaunch {
  const vpool = model.vpools.get(vpoolName);
  const driver = model.storageDrivers.get(vpoolName, storageRouter);
  const backend = model.backends.get(vpool.backend);
  const connection = model.backends.connection(vpool.backend);
  const environment = credentialEnvironment(backend.kind, connection.spec as unknown as Record<string, unknown>, connection.credentials);
  return {
    name: vpool.name,
    backend: connection.spec,
    ...(Object.keys(environment).length === 0 ? {} : { environment }),
    managementApi: { host: LOOPBACK_HOST, port: driver.managementPort },
    nbd: { ...config.frontends.nbd, port: driver.nbdPort },
    iscsi: { ...config.frontends.iscsi, port: driver.iscsiPort },
    settings: { scoSizeBytes: vpool.scoSizeBytes, writeBufferSizeBytes: vpool.writeBufferSizeBytes, readCacheSizeBytes: vpool.readCacheSizeBytes },
    ...(vpool.compression === "none" ? {} : { compression: vpool.compression }),
    ...(vpool.encryption === null ? {} : { encryption: vpool.encryption }),
  };
}

/** The vPools of this StorageRouter in the model other than config.json's (those created through the API). */
export function modelOnlyVPools(model: FrameworkModel, config: ClusterConfig, storageRouter: string): string[] {
  return model.storageDrivers.list({ storageRouter }).map((driver) => driver.vpool).filter((name) => name !== config.vpools[0].name);
}

/** A vDisk as a StorageDriver lists it (the fields the model keeps). */
export interface ListedVdisk {
  name: string;
  vpool: string;
  sizeBytes: number;
  template?: boolean;
  parent?: { volume: string; snapshot: string };
  /** The vDisk's setting overrides (PUT /vdisks/:name/config). */
  overrides?: Record<string, number>;
}

/**
 * Makes the model's vDisks of `vpool` what its StorageDriver just listed (the StorageDriver is the
 * truth; the model mirrors it for the inventory): new ones are added parents first, gone ones removed
 * clones first, sizes, template flags and setting overrides follow. A row the model refuses is skipped and logged.
 */
function sameOverrides(left: Record<string, number>, right: Record<string, number | undefined>): boolean {
  const keys = new Set([...Object.keys(left), ...Object.keys(right)]);
  return [...keys].every((key) => left[key] === right[key]);
}

export function reconcileVdisks(model: FrameworkModel, vpool: string, listed: readonly ListedVdisk[], logger: Logger): void {
  const skip = (name: string, error: unknown): void => {
    logger.warn({ vdisk: name, vpool, reason: (error as Error).message }, "vDisk not mirrored in the model");
  };
  model.transaction(() => {
    const known = new Map(model.vdisks.list({ vpool }).map((vdisk) => [vdisk.name, vdisk]));
    const wanted = new Map(listed.filter((vdisk) => vdisk.vpool === vpool).map((vdisk) => [vdisk.name, vdisk]));
    let gone = [...known.keys()].filter((name) => !wanted.has(name));
    while (gone.length > 0) {
      const leaves = gone.filter((name) => !gone.some((other) => known.get(other)?.parentSnapshot?.startsWith(`${name}@`) === true));
      for (const name of leaves.length > 0 ? leaves : gone) {
        try {
          model.vdisks.delete(name);
        } catch (error) {
          skip(name, error);
        }
      }
      gone = leaves.length > 0 ? gone.filter((name) => !leaves.includes(name)) : [];
    }
    let added = [...wanted.values()].filter((vdisk) => !known.has(vdisk.name));
    while (added.length > 0) {
      const ready = added.filter((vdisk) => vdisk.parent === undefined || !added.some((other) => other.name === vdisk.parent?.volume));
      for (const vdisk of ready.length > 0 ? ready : added) {
        try {
          model.vdisks.create({
            name: vdisk.name, vpool, sizeBytes: vdisk.sizeBytes, template: vdisk.template === true, configOverrides: vdisk.overrides ?? {},
            ...(vdisk.parent === undefined ? {} : { parentSnapshot: `${vdisk.parent.volume}@${vdisk.parent.snapshot}` }),
          });
        } catch (error) {
          skip(vdisk.name, error);
        }
      }
      added = ready.length > 0 ? added.filter((vdisk) => !ready.includes(vdisk)) : [];
    }
    for (const [name, row] of known) {
      const now = wanted.get(name);
      const overrides = now?.overrides ?? {};
      if (now === undefined || (now.sizeBytes === row.sizeBytes && (now.template === true) === row.template
        && sameOverrides(overrides, row.configOverrides))) continue;
      try {
        if (now.sizeBytes >= row.sizeBytes && (now.template === true || !row.template)) {
          model.vdisks.update(name, { sizeBytes: now.sizeBytes, template: now.template === true, configOverrides: overrides });
        } else {
          // Sizes only grow and templates stay templates in the model, but a vDisk deleted and made
          // again under the same name between two listings may be smaller: the row is made again.
          model.vdisks.delete(name);
          model.vdisks.create({
            name, vpool, sizeBytes: now.sizeBytes, template: now.template === true, configOverrides: overrides,
            ...(now.parent === undefined ? {} : { parentSnapshot: `${now.parent.volume}@${now.parent.snapshot}` }),
          });
        }
      } catch (error) {
        skip(name, error);
      }
    }
  });
}

// The cluster config of `ovs up`: DIR/config.json, created on the first start and read on every
// later one. Paths in it are relative to DIR, so a data directory can be moved or copied whole.
// Flags given on the command line override the stored values and are stored in turn.
import { randomUUID } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { backendSpecFromUrl, parseBackendSpec, type AlbaBackendSpec, type S3BackendSpec, type SwiftBackendSpec } from "../../../volumedriver/src/storagedriver/backend-spec.ts";
import { isPort } from "../../../volumedriver/src/storagedriver/config.ts";
import { validateSchedule, type ScheduleSpec } from "../scheduler/scheduler.ts";

export const CLUSTER_CONFIG_FORMAT_VERSION = 1;
export const CLUSTER_CONFIG_FILE_NAME = "config.json";

export interface ListenAddress {
  host: string;
  port: number;
}

export type NbdTlsModeSetting = "allow" | "require";

/** STARTTLS for NBD. Certificate and key are absolute paths (they usually live outside DIR). */
export interface NbdTlsEntry {
  mode: NbdTlsModeSetting;
  certificateFile: string;
  keyFile: string;
}

export interface NbdFrontendEntry extends ListenAddress {
  /** Absent: no TLS. */
  tls?: NbdTlsEntry;
}

/**
 * The iSCSI frontend: the vPool's target on host:port. chap and allowedInitiators, when present in
 * config.json, are passed to the StorageDriver as they are and checked there (see its config).
 */
export interface IscsiFrontendEntry extends ListenAddress {
  chap?: unknown;
  allowedInitiators?: unknown;
}

/**
 * The Alba backend `ovs up` runs itself (alba-service.ts): ASDs under DIRECTORY/asd-N, the backend
 * directory DIRECTORY/backend, a proxy. Ports are fixed: the backend records each ASD by address.
 */
export interface ManagedAlbaEntry {
  type: "managed-alba";
  /** Relative to the data directory. */
  directory: string;
  /** Where the proxy listens; the ASDs listen on the same host. */
  proxy: ListenAddress;
  /** One ASD per entry, each its own fault domain. */
  asds: Array<{ nodeId: string; port: number }>;
}

export interface VPoolEntry {
  name: string;
  /** Relative to the data directory. */
  directory: string;
  /**
   * managed-alba (the default): an Alba backend `ovs up` runs itself; local: a directory relative to
   * the data directory; s3 / swift: a server (credentials from the environment); alba: a proxy
   * someone else runs.
   */
  backend: ManagedAlbaEntry | { type: "local"; path: string } | S3BackendSpec | SwiftBackendSpec | AlbaBackendSpec;
  storagedriver: ListenAddress;
  /** vPool settings that differ from the engine's defaults. */
  settings: Record<string, number>;
}

export interface ClusterConfig {
  formatVersion: number;
  clusterId: string;
  createdAt: string;
  /** Set once the first start has finished its one-time steps (the demo vDisk). */
  firstStartCompleted: boolean;
  api: ListenAddress;
  /** Both are served by the StorageDriver. */
  frontends: { nbd: NbdFrontendEntry; iscsi: IscsiFrontendEntry };
  vpools: VPoolEntry[];
  /** Schedules changed through the API (PUT /api/schedules/NAME), by job; absent jobs use their defaults. */
  schedules?: Record<string, { schedule: ScheduleSpec; enabled: boolean }>;
}

export const LOOPBACK_HOST = "127.0.0.1";
export const API_PORT_DEFAULT = 8500;
export const STORAGEDRIVER_PORT_DEFAULT = 8510;
export const NBD_PORT_DEFAULT = 10809;
export const ISCSI_PORT_DEFAULT = 3260;
export const VPOOL_NAME_DEFAULT = "vpool1";
/** The managed Alba proxy; its ASDs take the next ports. */
export const ALBA_PROXY_PORT_DEFAULT = 8600;
export const ALBA_ASD_COUNT = 3;

/** A managed Alba backend on loopback: the proxy on proxyPort, ASD N on asdPorts[N - 1], node ids node-N. */
export function managedAlbaEntry(proxyPort = ALBA_PROXY_PORT_DEFAULT,
  asdPorts: readonly number[] = Array.from({ length: ALBA_ASD_COUNT }, (_, index) => ALBA_PROXY_PORT_DEFAULT + 1 + index)): ManagedAlbaEntry {
  return {
    type: "managed-alba",
    directory: "alba",
    proxy: { host: LOOPBACK_HOST, port: proxyPort },
    asds: asdPorts.map((port, index) => ({ nodeId: `node-${index + 1}`, port })),
  };
}

/** What the command line may override; undefined: keep the stored or default value. */
export interface ClusterConfigOverrides {
  apiHost?: string;
  apiPort?: number;
  storagedriverPort?: number;
  nbdHost?: string;
  nbdPort?: number;
  /** "off" removes the stored TLS settings. */
  nbdTls?: NbdTlsModeSetting | "off";
  /** Absolute paths (the CLI resolves them against its working directory). */
  nbdTlsCert?: string;
  nbdTlsKey?: string;
  iscsiHost?: string;
  iscsiPort?: number;
  /**
   * `ovs up --backend`: s3://HOST:PORT/BUCKET[?tls=1], swift://HOST:PORT/auth/v1.0 or alba://HOST:PORT
   * (a proxy run elsewhere); "local" for DIR/backend; "managed-alba" for the Alba backend ovs up runs.
   */
  backend?: string;
}

export function defaultClusterConfig(nowIso: string): ClusterConfig {
  return {
    formatVersion: CLUSTER_CONFIG_FORMAT_VERSION,
    clusterId: randomUUID(),
    createdAt: nowIso,
    firstStartCompleted: false,
    api: { host: LOOPBACK_HOST, port: API_PORT_DEFAULT },
    frontends: { nbd: { host: LOOPBACK_HOST, port: NBD_PORT_DEFAULT }, iscsi: { host: LOOPBACK_HOST, port: ISCSI_PORT_DEFAULT } },
    vpools: [{
      name: VPOOL_NAME_DEFAULT,
      directory: `vpools/${VPOOL_NAME_DEFAULT}`,
      backend: managedAlbaEntry(),
      storagedriver: { host: LOOPBACK_HOST, port: STORAGEDRIVER_PORT_DEFAULT },
      settings: {},
    }],
  };
}

export function applyOverrides(config: ClusterConfig, overrides: ClusterConfigOverrides, environment: NodeJS.ProcessEnv = process.env): ClusterConfig {
  const updated: ClusterConfig = structuredClone(config);
  if (overrides.backend !== undefined && !(overrides.backend === "managed-alba" && updated.vpools[0].backend.type === "managed-alba")) {
    updated.vpools[0].backend = overrides.backend === "local" ? { type: "local", path: "backend" }
      : overrides.backend === "managed-alba" ? managedAlbaEntry()
        : backendSpecFromUrl(overrides.backend, environment);
  }
  if (overrides.apiHost !== undefined) updated.api.host = overrides.apiHost;
  if (overrides.apiPort !== undefined) updated.api.port = overrides.apiPort;
  if (overrides.storagedriverPort !== undefined) updated.vpools[0].storagedriver.port = overrides.storagedriverPort;
  if (overrides.nbdHost !== undefined) updated.frontends.nbd.host = overrides.nbdHost;
  if (overrides.nbdPort !== undefined) updated.frontends.nbd.port = overrides.nbdPort;
  if (overrides.iscsiHost !== undefined) updated.frontends.iscsi.host = overrides.iscsiHost;
  if (overrides.iscsiPort !== undefined) updated.frontends.iscsi.port = overrides.iscsiPort;
  applyNbdTlsOverrides(updated.frontends.nbd, overrides);
  return updated;
}

/**
 * TLS flags: --nbd-tls off drops TLS; otherwise the flags given replace the stored values, and a
 * certificate without a mode means "require" (a certificate is given to be used). Throws Error when
 * a mode is left without its certificate and key.
 */
function applyNbdTlsOverrides(nbd: NbdFrontendEntry, overrides: ClusterConfigOverrides): void {
  const { nbdTls, nbdTlsCert, nbdTlsKey } = overrides;
  if (nbdTls === "off") {
    delete nbd.tls;
    return;
  }
  if (nbdTls === undefined && nbdTlsCert === undefined && nbdTlsKey === undefined) {
    return;
  }
  const mode = nbdTls ?? nbd.tls?.mode ?? "require";
  const certificateFile = nbdTlsCert ?? nbd.tls?.certificateFile;
  const keyFile = nbdTlsKey ?? nbd.tls?.keyFile;
  if (certificateFile === undefined || keyFile === undefined) {
    throw new Error(`NBD TLS (${mode}) needs a certificate and its key: pass --nbd-tls-cert FILE and --nbd-tls-key FILE (PEM)`);
  }
  nbd.tls = { mode, certificateFile, keyFile };
}

export interface LoadedClusterConfig {
  config: ClusterConfig;
  /** true: there was no config.json, this is the first start on this data directory. */
  created: boolean;
}

export async function loadOrCreateClusterConfig(dataDirectory: string, nowIso: string): Promise<LoadedClusterConfig> {
  const file = path.join(dataDirectory, CLUSTER_CONFIG_FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return { config: defaultClusterConfig(nowIso), created: true };
    }
    throw new Error(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file} is not valid JSON (${(error as Error).message}): fix it, or move it away to start with a fresh config`, { cause: error });
  }
  return { config: checkClusterConfig(value, file), created: false };
}

/** Checks the parts `ovs up` relies on; the StorageDriver config derived from it is checked in full. */
export function checkClusterConfig(value: unknown, where: string): ClusterConfig {
  const config = value as Partial<ClusterConfig> | null;
  if (typeof config !== "object" || config === null) {
    throw new Error(`${where} must hold a JSON object`);
  }
  if (config.formatVersion !== CLUSTER_CONFIG_FORMAT_VERSION) {
    throw new Error(`${where} has formatVersion ${JSON.stringify(config.formatVersion)}; this release reads version ${CLUSTER_CONFIG_FORMAT_VERSION}`);
  }
  const addresses: Array<[string, ListenAddress | undefined]> = [
    ["api", config.api], ["frontends.nbd", config.frontends?.nbd], ["frontends.iscsi", config.frontends?.iscsi],
  ];
  if (!Array.isArray(config.vpools) || config.vpools.length !== 1) {
    throw new Error(`${where}: "vpools" must list exactly one vPool (one host runs one vPool in this release)`);
  }
  const vpool = config.vpools[0];
  addresses.push(["vpools[0].storagedriver", vpool.storagedriver]);
  for (const [name, address] of addresses) {
    if (typeof address?.host !== "string" || !isPort(address.port)) {
      throw new Error(`${where}: "${name}" must be like {"host": "127.0.0.1", "port": 8500}`);
    }
  }
  if (typeof vpool.name !== "string" || typeof vpool.directory !== "string") {
    throw new Error(`${where}: "vpools[0]" must have a name, a directory and a backend {"type": "local", "path": ...}`);
  }
  if (vpool.backend?.type === "managed-alba") checkManagedAlba(vpool.backend, where);
  else parseBackendSpec(vpool.backend, "/", `${where}: "vpools[0].backend"`);
  const tls = config.frontends?.nbd.tls;
  if (tls !== undefined && (!["allow", "require"].includes(tls.mode) || typeof tls.certificateFile !== "string" || typeof tls.keyFile !== "string")) {
    throw new Error(`${where}: "frontends.nbd.tls" must be like {"mode": "require", "certificateFile": "/etc/ovs/nbd-cert.pem", "keyFile": "/etc/ovs/nbd-key.pem"} (mode allow or require)`);
  }
  vpool.settings ??= {};
  for (const [job, entry] of Object.entries(config.schedules ?? {})) {
    try {
      validateSchedule(entry?.schedule);
    } catch (error) {
      throw new Error(`${where}: "schedules.${job}": ${(error as Error).message}`, { cause: error });
    }
    if (typeof entry.enabled !== "boolean") throw new Error(`${where}: "schedules.${job}.enabled" must be true or false`);
  }
  return config as ClusterConfig;
}

function checkManagedAlba(entry: ManagedAlbaEntry, where: string): void {
  const example = `{"type": "managed-alba", "directory": "alba", "proxy": {"host": "127.0.0.1", "port": ${ALBA_PROXY_PORT_DEFAULT}}, "asds": [{"nodeId": "node-1", "port": ${ALBA_PROXY_PORT_DEFAULT + 1}}, ...]}`;
  const asdsValid = Array.isArray(entry.asds) && entry.asds.length >= 3
    && entry.asds.every((asd) => typeof asd?.nodeId === "string" && asd.nodeId.length > 0 && isPort(asd.port));
  if (typeof entry.directory !== "string" || typeof entry.proxy?.host !== "string" || !isPort(entry.proxy.port) || !asdsValid) {
    throw new Error(`${where}: "vpools[0].backend" of type managed-alba must be like ${example} (at least 3 ASDs)`);
  }
}

/** Writes DIR/config.json atomically (temporary file, then rename). */
export async function saveClusterConfig(dataDirectory: string, config: ClusterConfig): Promise<void> {
  await mkdir(dataDirectory, { recursive: true });
  const file = path.join(dataDirectory, CLUSTER_CONFIG_FILE_NAME);
  const temporaryFile = `${file}.tmp-${process.pid}`;
  await writeFile(temporaryFile, `${JSON.stringify(config, null, 2)}\n`);
  await rename(temporaryFile, file);
}

// The StorageDriver config file: which vPool this process hosts, where its local data and its backend
// are, and where the management API and the NBD and iSCSI frontends listen. JSON, checked field by field on load so that a mistake
// is reported with the file and the field. Relative paths are taken from the file's directory.
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { VPoolSettings } from "../engine/vpool-types.ts";
import { ISCSI_DEFAULT_HOST, ISCSI_DEFAULT_PORT, resolveIscsiSettings, validateChapSettings } from "../frontends/iscsi/iscsi-settings.ts";
import type { IscsiChapCredentials, IscsiChapSettings, IscsiServerSettings } from "../frontends/iscsi/iscsi-types.ts";
import { NBD_DEFAULT_HOST, NBD_DEFAULT_PORT } from "../frontends/nbd/nbd-settings.ts";
import type { NbdServerSettings, NbdTlsSettings } from "../frontends/nbd/nbd-types.ts";
import { checkOnlyKeys, parseBackendSpec, type BackendSpec } from "./backend-spec.ts";
import { parseCompression, parseEncryption, type CodecConfig } from "./codec-config.ts";

export const MANAGEMENT_API_HOST_DEFAULT = "127.0.0.1";
export const MANAGEMENT_API_PORT_DEFAULT = 8510;
export const VPOOL_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,30}$/;

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface ManagementApiAddress {
  host: string;
  /** 0 picks a free port (reported on stdout and to the parent process). */
  port: number;
}

/**
 * The NBD frontend of the StorageDriver: one export per running vDisk of its vPool. The server's own
 * settings (see nbd-types.ts), less its logger: host and port are required here, TLS absent means
 * no STARTTLS, absent limits keep the server's defaults.
 */
export type NbdFrontendConfig = Omit<NbdServerSettings, "logger">;

/**
 * The iSCSI frontend of the StorageDriver: the vPool's target iqn.2026-11.org.openvstorage:VPOOL with
 * one LUN per running vDisk. The server's own settings (see iscsi-types.ts), less its logger, plus
 * the target's CHAP and initiator ACL. Absent CHAP: no authentication; absent ACL: every initiator.
 */
export interface IscsiFrontendConfig extends Omit<IscsiServerSettings, "logger"> {
  /** CHAP of the vPool's target (one-way, or mutual with target credentials). */
  chap?: IscsiChapSettings;
  /** Initiator names (iqn., eui., naa.) allowed to discover and log in to the target. */
  allowedInitiators?: string[];
}

export interface StorageDriverConfig {
  /** vPool name: [a-z0-9][a-z0-9-]{0,30}. */
  vpool: string;
  /** Local directory of the vPool: write buffer and metadata. */
  directory: string;
  backend: BackendSpec;
  /** Compression and encryption of every object the vPool stores; absent: neither (objects stored as they are). */
  codec?: CodecConfig;
  managementApi: ManagementApiAddress;
  /** Absent: the vDisks are not served over NBD (management API only). */
  nbd?: NbdFrontendConfig;
  /** Absent: the vDisks are not served over iSCSI. */
  iscsi?: IscsiFrontendConfig;
  /** vPool settings that differ from the engine's defaults. */
  settings: Partial<VPoolSettings>;
  /** Log file (pino JSON lines); without it the log goes to stderr. */
  logFile?: string;
  logLevel: LogLevel;
  /** Written with this process's PID while it runs, removed on exit. */
  pidFile?: string;
}

const VPOOL_SETTING_NAMES: ReadonlyArray<keyof VPoolSettings> = [
  "scoSizeBytes", "scoMaxAgeMs", "tlogScoCountMax", "writeBufferSizeBytes", "writeBufferTriggerGapBytes",
  "readCacheSizeBytes", "metadataCacheSizeBytes", "uploadConcurrency", "prefetchClusters",
];

const CONFIG_KEYS = ["vpool", "directory", "backend", "compression", "encryption", "managementApi", "nbd", "iscsi", "settings", "logFile", "logLevel", "pidFile"];

export async function loadStorageDriverConfig(file: string): Promise<StorageDriverConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new Error(`cannot read the StorageDriver config ${file}: ${(error as Error).message}`, { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`the StorageDriver config ${file} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  return parseStorageDriverConfig(value, path.dirname(path.resolve(file)), file);
}

/** Checks a parsed config; relative paths are resolved against baseDirectory. Throws Error naming the field. */
export function parseStorageDriverConfig(value: unknown, baseDirectory: string, where: string): StorageDriverConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must hold a JSON object`);
  }
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, CONFIG_KEYS, where);
  if (typeof raw.vpool !== "string" || !VPOOL_NAME_PATTERN.test(raw.vpool)) {
    throw new Error(`${where}: "vpool" must be a vPool name of 1-31 characters of a-z, 0-9 and '-', starting with a letter or digit`);
  }
  const config: StorageDriverConfig = {
    vpool: raw.vpool,
    directory: parsePath(raw.directory, baseDirectory, `${where}: "directory"`),
    backend: parseBackendSpec(raw.backend, baseDirectory, `${where}: "backend"`),
    managementApi: parseAddress(raw.managementApi, `${where}: "managementApi"`),
    settings: parseSettings(raw.settings, `${where}: "settings"`),
    logLevel: parseLogLevel(raw.logLevel, `${where}: "logLevel"`),
  };
  if (raw.compression !== undefined || raw.encryption !== undefined) {
    config.codec = { compression: parseCompression(raw.compression, `${where}: "compression"`) };
    const encryption = parseEncryption(raw.encryption, baseDirectory, `${where}: "encryption"`);
    if (encryption !== undefined) {
      config.codec.encryption = encryption;
    }
  }
  if (raw.nbd !== undefined) {
    config.nbd = parseNbdFrontend(raw.nbd, baseDirectory, `${where}: "nbd"`);
  }
  if (raw.iscsi !== undefined) {
    config.iscsi = parseIscsiFrontend(raw.iscsi, `${where}: "iscsi"`);
  }
  if (raw.logFile !== undefined) {
    config.logFile = parsePath(raw.logFile, baseDirectory, `${where}: "logFile"`);
  }
  if (raw.pidFile !== undefined) {
    config.pidFile = parsePath(raw.pidFile, baseDirectory, `${where}: "pidFile"`);
  }
  return config;
}

function parsePath(value: unknown, baseDirectory: string, where: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new Error(`${where} must be a path (relative paths start at the config file's directory)`);
  }
  return path.resolve(baseDirectory, value);
}

function parseAddress(value: unknown, where: string): ManagementApiAddress {
  if (value === undefined) {
    return { host: MANAGEMENT_API_HOST_DEFAULT, port: MANAGEMENT_API_PORT_DEFAULT };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must be an object like {"host": "127.0.0.1", "port": 8510}`);
  }
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, ["host", "port"], where);
  return parseListenAddress(raw, MANAGEMENT_API_HOST_DEFAULT, MANAGEMENT_API_PORT_DEFAULT, where);
}

/** host and port of a listening socket, with defaults; errors name the field and say what to write. */
function parseListenAddress(raw: Record<string, unknown>, hostDefault: string, portDefault: number, where: string): { host: string; port: number } {
  const host = raw.host ?? hostDefault;
  const port = raw.port ?? portDefault;
  if (typeof host !== "string" || host.length === 0) {
    throw new Error(`${where}.host must be an address to listen on, e.g. "127.0.0.1"`);
  }
  if (!isPort(port)) {
    throw new Error(`${where}.port must be a TCP port 0-65535 (0: any free port)`);
  }
  return { host, port };
}

const NBD_LIMIT_NAMES = ["requestSizeBytesMax", "inFlightRequestsMax", "connectionsMax", "handshakeTimeoutMs"] as const;
const NBD_TLS_MODES = ["off", "allow", "require"] as const;

function parseNbdFrontend(value: unknown, baseDirectory: string, where: string): NbdFrontendConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must be an object like {"host": "127.0.0.1", "port": 10809}`);
  }
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, ["host", "port", "tls", ...NBD_LIMIT_NAMES], where);
  const nbd: NbdFrontendConfig = parseListenAddress(raw, NBD_DEFAULT_HOST, NBD_DEFAULT_PORT, where);
  for (const name of NBD_LIMIT_NAMES) {
    const limit = raw[name];
    if (limit === undefined) {
      continue;
    }
    // Ranges are the server's to check; here only the type.
    if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit <= 0) {
      throw new Error(`${where}.${name} must be a whole number > 0 (the unit is in its name)`);
    }
    nbd[name] = limit;
  }
  const tls = parseNbdTls(raw.tls, baseDirectory, `${where}.tls`);
  if (tls !== undefined) {
    nbd.tls = tls;
  }
  return nbd;
}

function parseNbdTls(value: unknown, baseDirectory: string, where: string): NbdTlsSettings | undefined {
  if (value === undefined) {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must be an object like {"mode": "require", "certificateFile": "nbd-cert.pem", "keyFile": "nbd-key.pem"}`);
  }
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, ["mode", "certificateFile", "keyFile"], where);
  if (typeof raw.mode !== "string" || !(NBD_TLS_MODES as readonly string[]).includes(raw.mode)) {
    throw new Error(`${where}.mode must be one of ${NBD_TLS_MODES.join(", ")} (require: plain connections are refused)`);
  }
  if (raw.mode === "off") {
    return undefined;
  }
  return {
    mode: raw.mode as NbdTlsSettings["mode"],
    certificateFile: parsePath(raw.certificateFile, baseDirectory, `${where}.certificateFile`),
    keyFile: parsePath(raw.keyFile, baseDirectory, `${where}.keyFile`),
  };
}

const ISCSI_LIMIT_NAMES = [
  "connectionsMax", "sessionsMax", "commandWindowSize", "outstandingTasksMax", "maxRecvDataSegmentLengthBytes", "maxBurstLengthBytes",
  "firstBurstLengthBytes", "maxOutstandingR2T", "transferLengthBytesMax", "dataOutBytesInFlightMax", "loginTimeoutMs", "nopInIntervalMs", "nopInTimeoutMs",
  "targetPortalGroupTag",
] as const;
const ISCSI_FLAG_NAMES = ["immediateData", "initialR2T"] as const;
/** RFC 7143 §4.2.7: iqn.YYYY-MM.reversed.domain[:anything], eui.<16 hex>, naa.<16 or 32 hex>; at most 223 bytes. */
const ISCSI_NAME_PATTERN = /^(iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[^\s]*)?|eui\.[0-9a-f]{16}|naa\.[0-9a-f]{16}([0-9a-f]{16})?)$/i;
const ISCSI_NAME_BYTES_MAX = 223;

function parseIscsiFrontend(value: unknown, where: string): IscsiFrontendConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must be an object like {"host": "127.0.0.1", "port": 3260}`);
  }
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, ["host", "port", "chap", "allowedInitiators", "discoveryChap", ...ISCSI_LIMIT_NAMES, ...ISCSI_FLAG_NAMES], where);
  const iscsi: IscsiFrontendConfig = parseListenAddress(raw, ISCSI_DEFAULT_HOST, ISCSI_DEFAULT_PORT, where);
  for (const name of ISCSI_LIMIT_NAMES) {
    const limit = raw[name];
    if (limit === undefined) continue;
    // nopInIntervalMs 0 turns the keepalive off; the other ranges are checked below by the server's resolver.
    if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 0) {
      throw new Error(`${where}.${name} must be a whole number >= 0 (the unit is in its name)`);
    }
    iscsi[name] = limit;
  }
  for (const name of ISCSI_FLAG_NAMES) {
    const flag = raw[name];
    if (flag === undefined) continue;
    if (typeof flag !== "boolean") throw new Error(`${where}.${name} must be true or false`);
    iscsi[name] = flag;
  }
  const chap = parseChap(raw.chap, `${where}.chap`);
  if (chap !== undefined) iscsi.chap = chap;
  const discoveryChap = parseChap(raw.discoveryChap, `${where}.discoveryChap`);
  if (discoveryChap !== undefined) iscsi.discoveryChap = discoveryChap;
  if (raw.allowedInitiators !== undefined) {
    iscsi.allowedInitiators = parseInitiatorNames(raw.allowedInitiators, `${where}.allowedInitiators`);
  }
  // The server checks every bound again when it starts; checking here names the file and the field.
  try {
    resolveIscsiSettings(iscsi);
  } catch (error) {
    throw new Error(`${where}: ${(error as Error).message}`, { cause: error });
  }
  return iscsi;
}

function parseChap(value: unknown, where: string): IscsiChapSettings | undefined {
  if (value === undefined) return undefined;
  const example = `{"initiator": {"username": "iqn.1994-05.com.redhat:host1", "secret": "12 to 255 bytes"}, "target": {...}, "mutualRequired": false}`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${where} must be an object like ${example}`);
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, ["initiator", "target", "mutualRequired"], where);
  const chap: IscsiChapSettings = { initiator: parseChapCredentials(raw.initiator, `${where}.initiator`) };
  if (raw.target !== undefined) chap.target = parseChapCredentials(raw.target, `${where}.target`);
  if (raw.mutualRequired !== undefined) {
    if (typeof raw.mutualRequired !== "boolean") throw new Error(`${where}.mutualRequired must be true or false`);
    chap.mutualRequired = raw.mutualRequired;
  }
  try {
    validateChapSettings(where, chap);
  } catch (error) {
    throw new Error((error as Error).message, { cause: error });
  }
  return chap;
}

function parseChapCredentials(value: unknown, where: string): IscsiChapCredentials {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must be an object like {"username": "NAME", "secret": "12 to 255 bytes"}`);
  }
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, ["username", "secret"], where);
  if (typeof raw.username !== "string" || typeof raw.secret !== "string") {
    throw new Error(`${where} needs a "username" and a "secret" (strings)`);
  }
  return { username: raw.username, secret: raw.secret };
}

function parseInitiatorNames(value: unknown, where: string): string[] {
  if (!Array.isArray(value)) throw new Error(`${where} must be a list of initiator names, e.g. ["iqn.1994-05.com.redhat:host1"]`);
  return value.map((name: unknown, index) => {
    if (typeof name !== "string" || !ISCSI_NAME_PATTERN.test(name) || Buffer.byteLength(name) > ISCSI_NAME_BYTES_MAX) {
      throw new Error(`${where}[${index}] must be an iSCSI name (iqn.YYYY-MM.domain:..., eui.16 hex digits or naa.16 or 32 hex digits), not ${JSON.stringify(name)}`);
    }
    return name;
  });
}

export function isPort(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 65535;
}

function parseSettings(value: unknown, where: string): Partial<VPoolSettings> {
  if (value === undefined) {
    return {};
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must be an object of vPool settings, e.g. {"scoSizeBytes": 67108864}`);
  }
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, VPOOL_SETTING_NAMES, where);
  const settings: Partial<VPoolSettings> = {};
  for (const name of VPOOL_SETTING_NAMES) {
    const setting = raw[name];
    if (setting === undefined) {
      continue;
    }
    // Ranges are the engine's to check (openVPool refuses values out of range, naming them).
    if (typeof setting !== "number" || !Number.isSafeInteger(setting) || setting < 0) {
      throw new Error(`${where}.${name} must be a whole number >= 0 (the unit is in its name)`);
    }
    settings[name] = setting;
  }
  return settings;
}

function parseLogLevel(value: unknown, where: string): LogLevel {
  if (value === undefined) {
    return "info";
  }
  if (typeof value !== "string" || !(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new Error(`${where} must be one of ${LOG_LEVELS.join(", ")}`);
  }
  return value as LogLevel;
}

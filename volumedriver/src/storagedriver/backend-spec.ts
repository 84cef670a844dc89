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

/**
 * An S3-compatible server (AWS, Ceph RGW, MinIO, Swift's s3api). With `bucket`, every namespace is a
 * key prefix in that one bucket; without, every namespace is a bucket named `bucketPrefix` + name.
 * Credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the SDK's
 * default chain when they are unset), never from the config.
 */
export interface S3BackendSpec {
  type: "s3";
  /** http(s)://host:port; omitted: AWS S3 of `region`. */
  endpoint?: string;
  /** Default: AWS_REGION, else us-east-1. */
  region?: string;
  bucket?: string;
  /** Key prefix inside `bucket`. Default "ovs". */
  prefix?: string;
  /** Bucket name prefix without `bucket`. Default "ovs-". */
  bucketPrefix?: string;
  /** Path-style addressing. Default: true with an endpoint. */
  pathStyle?: boolean;
  /** Keep-alive sockets. Default 64. */
  socketsMax?: number;
}

/**
 * OpenStack Swift, native API. Credentials come from the environment as the swift client reads them:
 * tempauth ST_USER / ST_KEY, or Keystone v3 OS_USERNAME / OS_PASSWORD / OS_PROJECT_NAME (and
 * OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME, OS_REGION_NAME).
 */
export interface SwiftBackendSpec {
  type: "swift";
  /** tempauth: http(s)://host:port/auth/v1.0; keystone: the v3 identity URL (OS_AUTH_URL). */
  authUrl: string;
  auth: "tempauth" | "keystone";
  /** Prepended to namespace names to name containers. Default "ovs-". */
  containerPrefix?: string;
}

/**
 * An Alba backend, through its proxy (`ovs alba proxy run`). The proxy holds the backend's
 * metadata and talks to the ASDs; the vPool needs only its URL. Each vDisk's namespace gets the
 * preset named here, or the backend's default preset.
 */
export interface AlbaBackendSpec {
  type: "alba";
  /** http://host:port of the Alba proxy. */
  proxyUrl: string;
  presetName?: string;
}

export type BackendSpec = LocalBackendSpec | S3BackendSpec | SwiftBackendSpec | AlbaBackendSpec;

export const BACKEND_TYPES = ["local", "s3", "swift", "alba"] as const;

function optionalString(spec: Record<string, unknown>, key: string, where: string, hint: string): string | undefined {
  const value = spec[key];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length === 0) throw new Error(`${where}.${key} must be ${hint}`);
  return value;
}

function httpUrl(value: string, where: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${where} must be a URL like http://127.0.0.1:8080, not ${JSON.stringify(value)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`${where} must be an http:// or https:// URL`);
  if (url.username !== "" || url.password !== "") throw new Error(`${where} must not hold credentials: they come from the environment`);
  return value;
}

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
    case "s3": {
      checkOnlyKeys(spec, ["type", "endpoint", "region", "bucket", "prefix", "bucketPrefix", "pathStyle", "socketsMax"], where);
      const endpoint = optionalString(spec, "endpoint", where, "the server's URL, e.g. \"http://127.0.0.1:8080\"");
      if (spec.pathStyle !== undefined && typeof spec.pathStyle !== "boolean") throw new Error(`${where}.pathStyle must be true or false`);
      if (spec.socketsMax !== undefined && (!Number.isSafeInteger(spec.socketsMax) || (spec.socketsMax as number) < 1)) {
        throw new Error(`${where}.socketsMax must be a positive integer`);
      }
      return {
        type: "s3",
        ...(endpoint === undefined ? {} : { endpoint: httpUrl(endpoint, `${where}.endpoint`) }),
        ...pick(spec, where, ["region", "bucket", "prefix", "bucketPrefix"]),
        ...(spec.pathStyle === undefined ? {} : { pathStyle: spec.pathStyle as boolean }),
        ...(spec.socketsMax === undefined ? {} : { socketsMax: spec.socketsMax as number }),
      };
    }
    case "swift": {
      checkOnlyKeys(spec, ["type", "authUrl", "auth", "containerPrefix"], where);
      const authUrl = optionalString(spec, "authUrl", where, "the auth URL, e.g. \"http://127.0.0.1:8080/auth/v1.0\"");
      if (authUrl === undefined) throw new Error(`${where}.authUrl is missing: the tempauth URL (http://HOST:PORT/auth/v1.0) or the Keystone v3 URL`);
      if (spec.auth !== "tempauth" && spec.auth !== "keystone") throw new Error(`${where}.auth must be "tempauth" or "keystone"`);
      return {
        type: "swift", authUrl: httpUrl(authUrl, `${where}.authUrl`), auth: spec.auth,
        ...pick(spec, where, ["containerPrefix"]),
      };
    }
    case "alba": {
      checkOnlyKeys(spec, ["type", "proxyUrl", "presetName"], where);
      const proxyUrl = optionalString(spec, "proxyUrl", where, "the Alba proxy's URL, e.g. \"http://127.0.0.1:8600\"");
      if (proxyUrl === undefined) throw new Error(`${where}.proxyUrl is missing: the Alba proxy's URL, e.g. "http://127.0.0.1:8600"`);
      if (new URL(httpUrl(proxyUrl, `${where}.proxyUrl`)).protocol !== "http:") throw new Error(`${where}.proxyUrl must be an http:// URL (the proxy listens on loopback)`);
      return { type: "alba", proxyUrl, ...pick(spec, where, ["presetName"]) };
    }
    default:
      throw new Error(`${where}.type is ${JSON.stringify(spec.type)}: supported backend types are ${BACKEND_TYPES.join(", ")}`);
  }
}

/** The spec without anything secret, for logs and status output. */
export function describeBackendSpec(spec: BackendSpec): string {
  switch (spec.type) {
    case "local":
      return `local:${spec.path}`;
    case "s3":
      return `s3:${spec.endpoint ?? `aws/${spec.region ?? "default region"}`}/${spec.bucket ?? `${spec.bucketPrefix ?? "ovs-"}*`}`;
    case "swift":
      return `swift:${spec.authUrl} (${spec.auth})`;
    case "alba":
      return `alba:${spec.proxyUrl}${spec.presetName === undefined ? "" : ` (preset ${spec.presetName})`}`;
  }
}

function pick(spec: Record<string, unknown>, where: string, keys: readonly string[]): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const key of keys) {
    const value = optionalString(spec, key, where, "a non-empty string");
    if (value !== undefined) picked[key] = value;
  }
  return picked;
}

/**
 * The spec of an `ovs up --backend` URL: `s3://HOST:PORT/BUCKET` (add `?tls=1` for https),
 * `swift://HOST:PORT/auth/v1.0` (Keystone when OS_AUTH_URL is set in `environment`) or
 * `alba://HOST:PORT[?preset=NAME]` (an Alba proxy).
 */
export function backendSpecFromUrl(value: string, environment: NodeJS.ProcessEnv): S3BackendSpec | SwiftBackendSpec | AlbaBackendSpec {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`--backend ${JSON.stringify(value)} is not a URL: use s3://HOST:PORT/BUCKET, swift://HOST:PORT/auth/v1.0 or alba://HOST:PORT`);
  }
  if (url.username !== "" || url.password !== "") throw new Error("--backend must not hold credentials: they come from the environment");
  const scheme = url.searchParams.get("tls") === "1" ? "https" : "http";
  if (url.protocol === "s3:") {
    const bucket = url.pathname.replace(/^\/+|\/+$/g, "");
    if (bucket === "" || bucket.includes("/")) throw new Error(`--backend ${value}: name one bucket, as in s3://HOST:PORT/BUCKET`);
    return { type: "s3", endpoint: `${scheme}://${url.host}`, bucket, ...(environment.AWS_REGION ? { region: environment.AWS_REGION } : {}) };
  }
  if (url.protocol === "swift:") {
    if (environment.OS_AUTH_URL) return { type: "swift", auth: "keystone", authUrl: httpUrl(environment.OS_AUTH_URL, "OS_AUTH_URL") };
    return { type: "swift", auth: "tempauth", authUrl: `${scheme}://${url.host}${url.pathname === "/" ? "/auth/v1.0" : url.pathname}` };
  }
  if (url.protocol === "alba:") {
    if (url.pathname !== "" && url.pathname !== "/") throw new Error(`--backend ${value}: an Alba proxy URL has no path, as in alba://127.0.0.1:8600`);
    const presetName = url.searchParams.get("preset");
    return { type: "alba", proxyUrl: `http://${url.host}`, ...(presetName === null || presetName === "" ? {} : { presetName }) };
  }
  throw new Error(`--backend ${value}: the scheme must be s3://, swift:// or alba://`);
}

export function checkOnlyKeys(value: Record<string, unknown>, allowedKeys: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowedKeys.includes(key)) {
      throw new Error(`${where} has the unknown field ${JSON.stringify(key)}: allowed fields are ${allowedKeys.join(", ")}`);
    }
  }
}

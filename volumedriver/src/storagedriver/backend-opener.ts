// Opens the object store a BackendSpec names, with the wrappers every StorageDriver stacks on it.
import type { ObjectStore } from "../backend/object-store.ts";
import { InstrumentedObjectStore, LocalObjectStore, RetryingObjectStore } from "../backend/index.ts";
import { AlbaObjectStore } from "../backend/alba-store.ts";
import { CodecObjectStore } from "../backend/codec-store.ts";
import { S3ObjectStore, type S3ObjectStoreOptions } from "../backend/s3-store.ts";
import { SwiftObjectStore, type SwiftCredentials } from "../backend/swift-store.ts";
import type { BackendSpec, S3BackendSpec, SwiftBackendSpec } from "./backend-spec.ts";
import { loadEncryptionKey, type CodecConfig } from "./codec-config.ts";

export interface OpenedBackend {
  /** What the engine uses: instrumented(retrying(store)), or codec(instrumented(retrying(store))) with compression or encryption. */
  store: ObjectStore;
  /** The meter on top, for statistics. */
  instrumented: InstrumentedObjectStore;
}

/**
 * Opens the store of a spec and stacks the wrappers every StorageDriver uses: retrying below (so
 * transient failures are retried with backoff) and instrumented on top (so the meter counts the
 * requests the engine makes, as a cost meter should). With a codec config, the codec wrapper goes on
 * top of all: the meter then counts the encoded bytes and the header reads, which is what the backend
 * serves and bills, and a retry resends the encoded bytes instead of encoding again. The encryption
 * key is read here (a missing or malformed key fails the open, saying what to do).
 */
export function openBackend(spec: BackendSpec, codec?: CodecConfig, environment: NodeJS.ProcessEnv = process.env): OpenedBackend {
  let base: ObjectStore;
  switch (spec.type) {
    case "local":
      base = new LocalObjectStore(spec.path);
      break;
    case "s3":
      base = new S3ObjectStore(s3Options(spec, environment));
      break;
    case "swift":
      base = new SwiftObjectStore({ credentials: swiftCredentials(spec, environment), containerPrefix: spec.containerPrefix ?? "ovs-" });
      break;
    case "alba":
      base = new AlbaObjectStore({ proxyUrl: spec.proxyUrl, ...(spec.presetName === undefined ? {} : { presetName: spec.presetName }) });
      break;
  }
  const encryptionKey = codec?.encryption === undefined ? undefined : loadEncryptionKey(codec.encryption, environment);
  const instrumented = new InstrumentedObjectStore(new RetryingObjectStore(base));
  // "compression": "none" without encryption still encodes (per-chunk CRC-32C): a config that names
  // a codec always reads and writes encoded objects, so a vPool never mixes the two forms.
  if (codec === undefined) {
    return { store: instrumented, instrumented };
  }
  const store = new CodecObjectStore(instrumented, { compression: codec.compression, encryption: encryptionKey === undefined ? undefined : { key: encryptionKey } });
  return { store, instrumented };
}


export interface BackendOperationSummary {
  requests: number;
  errors: number;
  bytesIn: number;
  bytesOut: number;
  latencyMsMax: number;
}

/** Per-operation counters of one namespace, without the histograms: what a vDisk's details show. */
export function summarizeNamespaceStats(instrumented: InstrumentedObjectStore, namespace: string): Record<string, BackendOperationSummary> {
  const table = instrumented.snapshot().namespaces[namespace] ?? {};
  const summary: Record<string, BackendOperationSummary> = {};
  for (const [operation, stats] of Object.entries(table)) {
    if (stats === undefined) continue;
    summary[operation] = {
      requests: stats.requests,
      errors: Object.values(stats.errors).reduce((sum, count) => sum + (count ?? 0), 0),
      bytesIn: stats.bytesIn,
      bytesOut: stats.bytesOut,
      latencyMsMax: stats.latencyMsMax,
    };
  }
  return summary;
}

function requireVariable(environment: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = environment[name];
  if (value === undefined || value === "") throw new Error(`${what}: set the environment variable ${name}`);
  return value;
}

/** S3 client options of a spec; static keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set, else the SDK's chain. */
export function s3Options(spec: S3BackendSpec, environment: NodeJS.ProcessEnv): S3ObjectStoreOptions {
  const accessKeyId = environment.AWS_ACCESS_KEY_ID;
  const secretAccessKey = environment.AWS_SECRET_ACCESS_KEY;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new Error("s3 backend: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (for the SDK's default chain)");
  }
  return {
    ...(spec.endpoint === undefined ? {} : { endpoint: spec.endpoint }),
    region: spec.region ?? environment.AWS_REGION ?? "us-east-1",
    ...(spec.pathStyle === undefined ? {} : { forcePathStyle: spec.pathStyle }),
    ...(accessKeyId === undefined || secretAccessKey === undefined ? {} : {
      credentials: { accessKeyId, secretAccessKey, ...(environment.AWS_SESSION_TOKEN ? { sessionToken: environment.AWS_SESSION_TOKEN } : {}) },
    }),
    namespaces: spec.bucket === undefined
      ? { kind: "bucketPerNamespace", bucketPrefix: spec.bucketPrefix ?? "ovs-" }
      : { kind: "sharedBucket", bucket: spec.bucket, prefix: spec.prefix ?? "ovs" },
    ...(spec.socketsMax === undefined ? {} : { socketsMax: spec.socketsMax }),
  };
}

/** Swift credentials of a spec from the environment, as the swift client names them. */
export function swiftCredentials(spec: SwiftBackendSpec, environment: NodeJS.ProcessEnv): SwiftCredentials {
  if (spec.auth === "tempauth") {
    return {
      kind: "tempauth", authUrl: spec.authUrl,
      user: requireVariable(environment, "ST_USER", "swift backend (tempauth)"), key: requireVariable(environment, "ST_KEY", "swift backend (tempauth)"),
    };
  }
  const what = "swift backend (Keystone v3)";
  return {
    kind: "keystone", authUrl: spec.authUrl,
    userName: requireVariable(environment, "OS_USERNAME", what), password: requireVariable(environment, "OS_PASSWORD", what),
    projectName: requireVariable(environment, "OS_PROJECT_NAME", what),
    userDomainName: environment.OS_USER_DOMAIN_NAME ?? "Default", projectDomainName: environment.OS_PROJECT_DOMAIN_NAME ?? "Default",
    ...(environment.OS_REGION_NAME ? { region: environment.OS_REGION_NAME } : {}),
  };
}

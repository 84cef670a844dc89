// Real object servers on loopback for tests: an OpenStack Swift all-in-one (native API with tempauth
// and the S3 API through s3api, one proxy) and a single-node Ceph RGW (S3), each started by its
// deploy/*/start.sh on a free port under a test's temp dir and stopped by exactly its PIDs with
// deploy/*/stop.sh. A missing server skips the test with a printed reason, or fails it when CI=true.
import { readFileSync } from "node:fs";
import path from "node:path";
import { onPath, requirePeers, runTool } from "./nbd-tools.ts";
import { freePort, REPOSITORY_ROOT } from "./process-harness.ts";

export type ObjectServerKind = "swift" | "ceph-rgw";

/** Credentials for the S3 API (SigV4, path-style addressing). */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

/** Swift tempauth v1: GET authUrl with X-Auth-User / X-Auth-Key gives X-Auth-Token and X-Storage-Url. */
export interface SwiftCredentials {
  authUrl: string;
  user: string;
  key: string;
}

export interface ObjectServer {
  readonly kind: ObjectServerKind;
  /** Where the configs, data and logs live (DIR/log/*.log). */
  readonly directory: string;
  /** The S3 endpoint, e.g. http://127.0.0.1:PORT (use path-style addressing). */
  readonly endpoint: string;
  readonly s3: S3Credentials;
  readonly pids: readonly number[];
  /** Stops exactly the processes start.sh started (SIGTERM, then SIGKILL); safe to call twice. */
  stop(): Promise<void>;
}

export interface SwiftServer extends ObjectServer {
  readonly kind: "swift";
  readonly swift: SwiftCredentials;
}

export interface CephRgwServer extends ObjectServer {
  readonly kind: "ceph-rgw";
}

interface ServerScripts {
  directory: string;
  commands: string[];
  packages: string;
  startTimeoutMs: number;
  stopTimeoutMs: number;
}

const SERVER_SCRIPTS: Record<ObjectServerKind, ServerScripts> = {
  swift: {
    directory: path.join(REPOSITORY_ROOT, "deploy", "swift"),
    commands: ["memcached", "swift-ring-builder", "swift-proxy-server", "swift-account-server", "swift-container-server", "swift-object-server", "python3"],
    packages: "memcached swift swift-proxy swift-account swift-container swift-object",
    startTimeoutMs: 120_000,
    stopTimeoutMs: 30_000,
  },
  "ceph-rgw": {
    directory: path.join(REPOSITORY_ROOT, "deploy", "ceph"),
    commands: ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "ceph-authtool", "python3"],
    packages: "ceph-mon ceph-osd radosgw ceph-common",
    startTimeoutMs: 180_000,
    stopTimeoutMs: 40_000,
  },
};

const missingReasons = new Map<ObjectServerKind, string | undefined>();

/** Why the server cannot be started here, or undefined when it can. Checked once per process. */
export function objectServerMissingReason(kind: ObjectServerKind): string | undefined {
  if (!missingReasons.has(kind)) {
    missingReasons.set(kind, checkServer(kind));
  }
  return missingReasons.get(kind);
}

function checkServer(kind: ObjectServerKind): string | undefined {
  if (process.platform !== "linux") return `${kind} test servers run on Linux only`;
  const scripts = SERVER_SCRIPTS[kind];
  const missing = scripts.commands.filter((command) => !onPath(command));
  if (missing.length === 0) return undefined;
  return `${kind}: ${missing.join(", ")} not on PATH (apt-get install ${scripts.packages}, or run deploy/install-test-deps.sh with CI=true)`;
}

/**
 * For before() hooks: when a server's programs are missing, skip (outside CI, printing why) or fail
 * (CI=true: the CI machine must have every test peer; deploy/install-test-deps.sh installs them).
 */
export function requireServer(context: Mocha.Context, ...kinds: ObjectServerKind[]): void {
  requirePeers(context, kinds.map(objectServerMissingReason));
}

/**
 * Starts a Swift all-in-one (proxy with s3api + tempauth, memcached, account/container/object
 * servers). objectReplicas (default 1): copies of each object, on as many devices.
 */
export async function startSwift(directory: string, options: { objectReplicas?: number } = {}): Promise<SwiftServer> {
  const environment = options.objectReplicas === undefined ? {} : { SWIFT_OBJECT_REPLICAS: String(options.objectReplicas) };
  const { values, ...server } = await startServer("swift", directory, environment);
  return {
    ...server,
    kind: "swift",
    swift: { authUrl: requireValue(values, "SWIFT_AUTH_URL"), user: requireValue(values, "SWIFT_USER"), key: requireValue(values, "SWIFT_KEY") },
  };
}

/** Starts a single-node Ceph cluster (mon, memstore OSD) with radosgw and one S3 user. */
export async function startCephRgw(directory: string): Promise<CephRgwServer> {
  const { values: _values, ...server } = await startServer("ceph-rgw", directory);
  return { ...server, kind: "ceph-rgw" };
}

interface StartedServer {
  directory: string;
  endpoint: string;
  s3: S3Credentials;
  pids: number[];
  stop(): Promise<void>;
  values: Record<string, string>;
}

async function startServer(kind: ObjectServerKind, directory: string, environment: NodeJS.ProcessEnv = {}): Promise<StartedServer> {
  const scripts = SERVER_SCRIPTS[kind];
  const port = await freePort();
  const result = await runTool(path.join(scripts.directory, "start.sh"), [directory, String(port)], {
    timeoutMs: scripts.startTimeoutMs, env: environment,
  });
  if (result.code !== 0) {
    throw new Error(`${kind}: start.sh ${directory} ${port} exited ${result.code ?? result.signal}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
  const values = parseKeyValueLines(result.stdout);
  const pids = readPidFile(path.join(directory, "pids"));
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= stopServer(kind, directory, pids);
    return stopped;
  };
  return {
    directory,
    endpoint: requireValue(values, "S3_ENDPOINT"),
    s3: {
      accessKeyId: requireValue(values, "S3_ACCESS_KEY"),
      secretAccessKey: requireValue(values, "S3_SECRET_KEY"),
      region: requireValue(values, "S3_REGION"),
    },
    pids,
    stop,
    values,
  };
}

async function stopServer(kind: ObjectServerKind, directory: string, pids: readonly number[]): Promise<void> {
  const scripts = SERVER_SCRIPTS[kind];
  const result = await runTool(path.join(scripts.directory, "stop.sh"), [directory], { timeoutMs: scripts.stopTimeoutMs });
  if (result.code !== 0) {
    throw new Error(`${kind}: stop.sh ${directory} exited ${result.code ?? result.signal}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
  const survivors = pids.filter(isRunning);
  if (survivors.length > 0) {
    throw new Error(`${kind}: processes ${survivors.join(", ")} still run after stop.sh ${directory}`);
  }
}

/** Lines "KEY=VALUE" from start.sh's stdout; other lines are ignored. */
function parseKeyValueLines(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (match !== null) values[match[1]] = match[2];
  }
  return values;
}

function requireValue(values: Record<string, string>, key: string): string {
  const value = values[key];
  if (value === undefined || value === "") throw new Error(`start.sh printed no ${key}=`);
  return value;
}

/** The PIDs in a deploy/lib/processes.sh pid file ("name pid start-time" per line). */
function readPidFile(file: string): number[] {
  return readFileSync(file, "utf8").split("\n").filter((line) => line.trim() !== "").map((line) => {
    const pid = Number(line.split(" ")[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`bad line in ${file}: ${line}`);
    return pid;
  });
}

/** True while the process exists and is not a zombie (an unreaped zombie has already stopped). */
export function isRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // The state is the first field after the command name, which ends at the last ')'.
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/** The servers of a describe block that runs against Swift and Ceph RGW both. */
export interface SwiftAndCeph {
  swift: SwiftServer;
  ceph: CephRgwServer;
}

/**
 * Registers the hooks of a describe block that needs Swift and Ceph RGW: before() requires and starts
 * both (in parallel, under `directory()`), after() stops them by PID. The returned object is filled in
 * by before().
 */
export function useSwiftAndCeph(directory: (name: string) => Promise<string>): SwiftAndCeph {
  const servers = {} as SwiftAndCeph;
  before(async function () {
    this.timeout(180_000);
    requireServer(this, "swift", "ceph-rgw");
    [servers.swift, servers.ceph] = await Promise.all([startSwift(await directory("swift")), startCephRgw(await directory("ceph"))]);
  });
  after(async function () {
    this.timeout(120_000);
    await (servers.swift as SwiftServer | undefined)?.stop();
    await (servers.ceph as CephRgwServer | undefined)?.stop();
  });
  return servers;
}

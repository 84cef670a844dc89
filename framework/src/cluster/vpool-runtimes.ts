// The StorageDrivers `ovs up` runs on this host, one supervised child process per vPool: the vPool of
// config.json and those created through the API (kept in the model). Each has its files under the
// data directory by vPool name:
//   vpools/<vpool>/              its local data (write buffer, metadata)
//   storagedrivers/<vpool>.json  its config, written on every start
//   storagedrivers/<vpool>.pid   its PID while it runs
//   logs/storagedriver-<vpool>.log
// The backend's credentials reach a StorageDriver through its environment, never its config file.
import { readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { StorageDriverClient } from "../api/storagedriver-client.ts";
import type { IscsiFrontendEntry, ListenAddress, NbdFrontendEntry } from "./cluster-config.ts";
import { processExists, readPidFile } from "./pid-file.ts";
import type { ChildExit } from "./process-supervisor.ts";
import { StorageDriverService, type Output, type StartResult } from "./storagedriver-service.ts";

/** Everything a vPool's StorageDriver is started with. */
export interface VPoolLaunch {
  name: string;
  /** Its local data, absolute; default DATA/vpools/<name>. */
  directory?: string;
  /** The StorageDriver config's backend spec ({type: "local", path}, s3, swift, alba). */
  backend: unknown;
  /** The backend's credentials as the StorageDriver reads them (AWS_*, ST_*, OS_*). */
  environment?: Record<string, string>;
  managementApi: ListenAddress;
  nbd: NbdFrontendEntry;
  iscsi: IscsiFrontendEntry;
  /** vPool settings that differ from the engine's defaults. */
  settings: Record<string, number>;
  compression?: string;
  encryption?: unknown;
}

export interface VPoolFiles {
  directory: string;
  config: string;
  pidFile: string;
  log: string;
}

export function vpoolFiles(dataDirectory: string, vpool: string): VPoolFiles {
  return {
    directory: path.join(dataDirectory, "vpools", vpool),
    config: path.join(dataDirectory, "storagedrivers", `${vpool}.json`),
    pidFile: path.join(dataDirectory, "storagedrivers", `${vpool}.pid`),
    log: path.join(dataDirectory, "logs", `storagedriver-${vpool}.log`),
  };
}

export interface RunningVPool {
  launch: VPoolLaunch;
  files: VPoolFiles;
  /** Follows the StorageDriver to its new URL after a restart. */
  client: StorageDriverClient;
  service: StorageDriverService;
  /** What it reported when it first came up (its URLs). */
  ready: Extract<StartResult, { outcome: "ready" }>["message"];
}

export type VPoolStartResult = StartResult | { outcome: "abandoned" };

export interface VPoolRuntimesOptions {
  dataDirectory: string;
  output: Output;
  logger: Logger;
}

export class VPoolRuntimes {
  private readonly running = new Map<string, RunningVPool>();
  /** vPools being started or stopped: a second start or stop of the same one is refused. */
  private readonly busy = new Set<string>();

  constructor(private readonly options: VPoolRuntimesOptions) {}

  /**
   * Writes the StorageDriver's config and starts it; resolves once it serves requests, failed to
   * come up (nothing left running), or `abandon` resolved first (a stop request).
   */
  async start(launch: VPoolLaunch, abandon: Promise<void>): Promise<VPoolStartResult> {
    if (this.running.has(launch.name) || this.busy.has(launch.name)) throw new Error(`the StorageDriver of vPool ${launch.name} runs already`);
    this.busy.add(launch.name);
    try {
      const files = { ...vpoolFiles(this.options.dataDirectory, launch.name), ...(launch.directory === undefined ? {} : { directory: launch.directory }) };
      await Promise.all([files.directory, path.dirname(files.config), path.dirname(files.log)].map((directory) => mkdir(directory, { recursive: true })));
      refuseOrphanStorageDriver(files.pidFile);
      await writeStorageDriverConfig(launch, files);
      const client = new StorageDriverClient({ vpool: launch.name, baseUrl: urlOf(launch.managementApi), logHint: files.log });
      const service = new StorageDriverService({
        vpool: launch.name, configFile: files.config, logFile: files.log, client, output: this.options.output,
        logger: this.options.logger.child({ vpool: launch.name }), ...(launch.environment === undefined ? {} : { environment: launch.environment }),
      });
      const started = await service.start(abandon);
      if (started.outcome === "ready") this.running.set(launch.name, { launch, files, client, service, ready: started.message });
      return started;
    } finally {
      this.busy.delete(launch.name);
    }
  }

  get(name: string): RunningVPool | undefined {
    return this.running.get(name);
  }

  /** In the order they were started. */
  list(): RunningVPool[] {
    return [...this.running.values()];
  }

  /** Stops the vPool's StorageDriver (it flushes and uploads first); undefined when it was not running. */
  async stop(name: string): Promise<ChildExit | undefined> {
    const running = this.running.get(name);
    if (running === undefined) return undefined;
    this.busy.add(name);
    try {
      const exit = await running.service.stop();
      this.running.delete(name);
      return exit;
    } finally {
      this.busy.delete(name);
    }
  }

  /** Stops every StorageDriver at once; the exits by vPool. */
  async stopAll(): Promise<Map<string, ChildExit | undefined>> {
    const names = [...this.running.keys()];
    const exits = await Promise.all(names.map((name) => this.stop(name)));
    return new Map(names.map((name, index) => [name, exits[index]]));
  }

  /**
   * Records settings the running StorageDriver took through its API in its config file too, so that
   * a restart by the supervisor keeps them.
   */
  async updateSettings(name: string, settings: Record<string, number>): Promise<void> {
    const running = this.running.get(name);
    if (running === undefined) return;
    Object.assign(running.launch.settings, settings);
    await writeStorageDriverConfig(running.launch, running.files);
  }

  /** Removes a stopped vPool's local files (its data is in the backend, or gone with its vDisks). */
  async removeFiles(name: string): Promise<void> {
    if (this.running.has(name)) throw new Error(`vPool ${name} still runs: stop it first`);
    const files = vpoolFiles(this.options.dataDirectory, name);
    await Promise.all([files.directory, files.config, files.pidFile].map((target) => rm(target, { recursive: true, force: true })));
  }
}

export function urlOf(address: ListenAddress): string {
  return `http://${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
}

/**
 * A StorageDriver left running by an `ovs up` that was killed would fight the new one over the vPool.
 * It stops by itself when it loses its parent; if it is still there, say so rather than guess.
 */
function refuseOrphanStorageDriver(pidFile: string): void {
  const pid = readPidFile(pidFile);
  if (pid === undefined || !processExists(pid) || !commandLineMentions(pid, "storagedriver")) {
    return;
  }
  throw new Error(`a storagedriver of an earlier \`ovs up\` still runs (pid ${pid}, ${pidFile}): it is finishing its uploads; wait for it to exit, or stop it with kill ${pid}`);
}

function commandLineMentions(pid: number, word: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(word);
  } catch {
    // No /proc (not Linux): trust the PID.
    return true;
  }
}

async function writeStorageDriverConfig(launch: VPoolLaunch, files: VPoolFiles): Promise<void> {
  const storagedriverConfig = {
    vpool: launch.name,
    directory: files.directory,
    backend: launch.backend,
    ...(launch.compression === undefined ? {} : { compression: launch.compression }),
    ...(launch.encryption === undefined ? {} : { encryption: launch.encryption }),
    managementApi: launch.managementApi,
    nbd: launch.nbd,
    iscsi: launch.iscsi,
    settings: launch.settings,
    pidFile: files.pidFile,
    logLevel: "info",
  };
  await writeFile(files.config, `${JSON.stringify(storagedriverConfig, null, 2)}\n`);
}

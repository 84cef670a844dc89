// The StorageDriver of one vPool as `ovs up` runs it: a supervised child process
// (`ovs storagedriver run --config FILE`) that reports "ready" over IPC. This file turns the
// supervisor's events into what `ovs up` waits for (first ready, or why not) and into the lines the
// operator sees when the StorageDriver dies and comes back.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import type { StorageDriverMessage } from "../../../volumedriver/src/storagedriver/storagedriver.ts";
import type { StorageDriverClient } from "../api/storagedriver-client.ts";
import { describeExit, ProcessSupervisor, type ChildExit } from "./process-supervisor.ts";

/** The StorageDriver must open its vPool and listen within this time (it may be rebuilding from the backend). */
export const STORAGEDRIVER_START_TIMEOUT_MS = 120_000;
/**
 * The StorageDriver is SIGKILLed this long after SIGTERM. It closes its vPool within 25 s and exits
 * by 29 s on its own; 28 s keeps the whole of `ovs up` within its 30 s stop promise.
 */
export const STORAGEDRIVER_STOP_TIMEOUT_MS = 28_000;

const OVS_BIN = fileURLToPath(new URL("../../bin/ovs.js", import.meta.url));

export type ReadyMessage = Extract<StorageDriverMessage, { type: "ready" }>;

export function isReadyMessage(message: unknown): message is ReadyMessage {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === "ready";
}

export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export type StartResult =
  | { outcome: "ready"; message: ReadyMessage }
  | { outcome: "failed"; reason: string; logLines: string[] };

export interface StorageDriverServiceOptions {
  vpool: string;
  configFile: string;
  logFile: string;
  /** Follows the StorageDriver to its new URL after a restart. */
  client: StorageDriverClient;
  output: Output;
  logger: Logger;
  /** Added to the StorageDriver's environment: the backend's credentials (never in its config file). */
  environment?: Record<string, string>;
}

export class StorageDriverService {
  /** Resolves when the supervisor gives up on a StorageDriver that keeps dying. */
  readonly gaveUp: Promise<ChildExit>;
  private readonly options: StorageDriverServiceOptions;
  private readonly supervisor: ProcessSupervisor;
  private started = false;
  /** Ready and not exited since (ovs_storagedriver_up). */
  private ready = false;
  private unexpectedExitCount = 0;
  private resolveGaveUp: (exit: ChildExit) => void = () => {};
  private resolveFirstReady: (message: ReadyMessage) => void = () => {};
  private resolveFirstExit: (exit: ChildExit) => void = () => {};
  private readonly firstReady: Promise<ReadyMessage>;
  private readonly firstExit: Promise<ChildExit>;

  constructor(options: StorageDriverServiceOptions) {
    this.options = options;
    this.gaveUp = new Promise((resolve) => { this.resolveGaveUp = resolve; });
    this.firstReady = new Promise((resolve) => { this.resolveFirstReady = resolve; });
    this.firstExit = new Promise((resolve) => { this.resolveFirstExit = resolve; });
    this.supervisor = new ProcessSupervisor({
      command: process.execPath,
      args: [OVS_BIN, "storagedriver", "run", "--config", options.configFile],
      logFile: options.logFile,
      ...(options.environment === undefined ? {} : { env: { ...process.env, ...options.environment } }),
      stopTimeoutMs: STORAGEDRIVER_STOP_TIMEOUT_MS,
      onSpawn: (pid) => options.logger.info({ pid }, "storagedriver spawned"),
      onMessage: (message) => this.onMessage(message),
      onUnexpectedExit: (exit, restartInMs) => this.onUnexpectedExit(exit, restartInMs),
    });
  }

  /**
   * Spawns the StorageDriver and waits until it serves requests, it exits, the start timeout
   * passes, or `abandon` resolves (a stop request). A start that failed leaves nothing running.
   */
  async start(abandon: Promise<void>): Promise<StartResult | { outcome: "abandoned" }> {
    this.supervisor.start();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => { timer = setTimeout(() => resolve("timeout"), STORAGEDRIVER_START_TIMEOUT_MS); });
    const first = await Promise.race([this.firstReady, this.firstExit, timeout, abandon.then(() => "abandon" as const)]);
    clearTimeout(timer);
    if (isReadyMessage(first)) {
      this.started = true;
      return { outcome: "ready", message: first };
    }
    await this.supervisor.stop();
    if (first === "abandon") {
      return { outcome: "abandoned" };
    }
    const reason = first === "timeout"
      ? `it did not come up within ${STORAGEDRIVER_START_TIMEOUT_MS / 1000} s`
      : `it exited before serving requests (${describeExit(first)})`;
    return { outcome: "failed", reason, logLines: await logTail(this.options.logFile, 10) };
  }

  /** SIGTERM, then SIGKILL after STORAGEDRIVER_STOP_TIMEOUT_MS; no more restarts. */
  stop(): Promise<ChildExit | undefined> {
    this.ready = false;
    return this.supervisor.stop();
  }

  /** For the framework's metrics (SupervisedStorageDriver). */
  get vpool(): string {
    return this.options.vpool;
  }

  up(): boolean {
    return this.ready;
  }

  unexpectedExits(): number {
    return this.unexpectedExitCount;
  }

  private onMessage(message: unknown): void {
    if (!isReadyMessage(message)) {
      return;
    }
    this.ready = true;
    this.options.client.baseUrl = message.url;
    this.options.logger.info({ url: message.url, pid: message.pid }, "storagedriver ready");
    if (this.started) {
      this.options.output.out(`storagedriver ${message.vpool} restarted (pid ${message.pid}): management API on ${message.url}`);
    }
    this.resolveFirstReady(message);
  }

  private onUnexpectedExit(exit: ChildExit, restartInMs: number | undefined): void {
    this.ready = false;
    this.unexpectedExitCount++;
    this.options.logger.error({ exit, restartInMs }, "storagedriver exited unexpectedly");
    const { vpool, logFile, output } = this.options;
    if (!this.started) {
      this.resolveFirstExit(exit);
    } else if (restartInMs === undefined) {
      output.err(`storagedriver ${vpool} keeps exiting (${describeExit(exit)}): giving up; see ${logFile}`);
      this.resolveGaveUp(exit);
    } else {
      output.err(`storagedriver ${vpool} exited unexpectedly (${describeExit(exit)}): restarting in ${Math.round(restartInMs / 1000)} s; see ${logFile}`);
    }
  }
}

async function logTail(file: string, lineCount: number): Promise<string[]> {
  try {
    const lines = (await readFile(file, "utf8")).trimEnd().split("\n");
    return lines.slice(-lineCount).map(readableLogLine);
  } catch {
    return [];
  }
}

/** A pino JSON line as "level: message (error)"; other lines as they are. */
function readableLogLine(line: string): string {
  try {
    const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
    const level = entry.level === undefined ? "" : (PINO_LEVEL_NAMES.get(entry.level) ?? String(entry.level));
    const cause = entry.err?.message === undefined ? "" : ` (${entry.err.message})`;
    return `${level}: ${entry.msg ?? ""}${cause}`;
  } catch {
    return line;
  }
}

const PINO_LEVEL_NAMES = new Map([[10, "trace"], [20, "debug"], [30, "info"], [40, "warn"], [50, "error"], [60, "fatal"]]);

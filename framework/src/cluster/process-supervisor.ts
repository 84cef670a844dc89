// Keeps one child process running: spawns it with an IPC channel and its output appended to a log
// file, restarts it with exponential backoff when it dies unexpectedly, and stops it by PID (SIGTERM,
// then SIGKILL after stopTimeoutMs). A child that keeps dying is given up on after a bounded number
// of consecutive restarts, so a broken config shows up as an error instead of a silent crash loop.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import path from "node:path";

export interface SupervisorSettings {
  /** Wait before the first restart; doubles per consecutive failure. */
  restartBackoffMsMin: number;
  restartBackoffMsMax: number;
  /** A child that ran this long counts as healthy: the failure count starts again. */
  stableAfterMs: number;
  /** Consecutive unexpected exits after which the supervisor gives up. */
  restartsConsecutiveMax: number;
  /** SIGTERM, then SIGKILL after this long. */
  stopTimeoutMs: number;
}

export const SUPERVISOR_SETTINGS_DEFAULT: SupervisorSettings = {
  restartBackoffMsMin: 1_000,
  restartBackoffMsMax: 30_000,
  stableAfterMs: 60_000,
  restartsConsecutiveMax: 5,
  stopTimeoutMs: 30_000,
};

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SupervisorEvents {
  onSpawn?(pid: number): void;
  /** A message the child sent over IPC. */
  onMessage?(message: unknown): void;
  /** The child died while it should be running; restartInMs undefined: the supervisor gave up. */
  onUnexpectedExit?(exit: ChildExit, restartInMs: number | undefined): void;
}

export interface SupervisorOptions extends Partial<SupervisorSettings>, SupervisorEvents {
  command: string;
  args: string[];
  /** The child's stdout and stderr are appended here. */
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  nowMs?: () => number;
}

/** Backoff before restart number `consecutiveFailures` (1-based): min, 2 min, 4 min, ..., capped at max. */
export function restartBackoffMs(consecutiveFailures: number, settings: Pick<SupervisorSettings, "restartBackoffMsMin" | "restartBackoffMsMax">): number {
  const exponent = Math.min(Math.max(consecutiveFailures - 1, 0), 30);
  return Math.min(settings.restartBackoffMsMin * 2 ** exponent, settings.restartBackoffMsMax);
}

export function describeExit(exit: ChildExit): string {
  return exit.signal !== null ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
}

export class ProcessSupervisor {
  readonly settings: SupervisorSettings;
  private readonly options: SupervisorOptions;
  private readonly nowMs: () => number;
  private child: ChildProcess | undefined;
  private childStartedAtMs = 0;
  private consecutiveFailures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private exited: Promise<ChildExit> | undefined;
  private givenUp = false;

  constructor(options: SupervisorOptions) {
    this.options = options;
    this.settings = { ...SUPERVISOR_SETTINGS_DEFAULT, ...definedOnly(options) };
    this.nowMs = options.nowMs ?? Date.now;
  }

  /** PID of the running child, if any. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get gaveUp(): boolean {
    return this.givenUp;
  }

  start(): void {
    if (this.child !== undefined || this.stopping) {
      throw new Error("ProcessSupervisor.start: already started");
    }
    this.spawnChild();
  }

  /** Stops supervising: no more restarts; SIGTERM the child, SIGKILL it after stopTimeoutMs. */
  async stop(): Promise<ChildExit | undefined> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    const exited = this.exited;
    if (child === undefined || exited === undefined) {
      return undefined;
    }
    child.kill("SIGTERM");
    const killTimer = setTimeout(() => child.kill("SIGKILL"), this.settings.stopTimeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(killTimer);
    }
  }

  private spawnChild(): void {
    mkdirSync(path.dirname(this.options.logFile), { recursive: true });
    const logFd = openSync(this.options.logFile, "a");
    let child: ChildProcess;
    try {
      child = spawn(this.options.command, this.options.args, {
        cwd: this.options.cwd,
        env: this.options.env,
        // Own process group: a Ctrl-C in the terminal reaches only the supervisor, which stops the
        // child in order. The IPC channel lets the child notice when the supervisor dies.
        detached: true,
        stdio: ["ignore", logFd, logFd, "ipc"],
      });
    } finally {
      closeSync(logFd);
    }
    this.child = child;
    this.childStartedAtMs = this.nowMs();
    this.exited = new Promise<ChildExit>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    child.on("message", (message) => this.options.onMessage?.(message));
    // Spawn failures (ENOENT...) arrive as 'error' followed by 'exit'; the exit path handles them.
    child.on("error", () => {});
    void this.exited.then((exit) => this.onChildExit(child, exit));
    if (child.pid !== undefined) {
      this.options.onSpawn?.(child.pid);
    }
  }

  private onChildExit(child: ChildProcess, exit: ChildExit): void {
    if (this.child !== child) {
      return;
    }
    this.child = undefined;
    if (this.stopping) {
      return;
    }
    if (this.nowMs() - this.childStartedAtMs >= this.settings.stableAfterMs) {
      this.consecutiveFailures = 0;
    }
    this.consecutiveFailures += 1;
    if (this.consecutiveFailures > this.settings.restartsConsecutiveMax) {
      this.givenUp = true;
      this.options.onUnexpectedExit?.(exit, undefined);
      return;
    }
    const delayMs = restartBackoffMs(this.consecutiveFailures, this.settings);
    this.options.onUnexpectedExit?.(exit, delayMs);
    this.restartTimer = setTimeout(() => {
      if (!this.stopping) {
        this.spawnChild();
      }
    }, delayMs);
  }
}

function definedOnly(options: Partial<SupervisorSettings>): Partial<SupervisorSettings> {
  const result: Partial<SupervisorSettings> = {};
  for (const key of Object.keys(SUPERVISOR_SETTINGS_DEFAULT) as Array<keyof SupervisorSettings>) {
    const value = options[key];
    if (value !== undefined) {
      result[key] = value;
    }
  }
  return result;
}

// Real child processes for integration tests: spawn `node framework/bin/ovs.js ...`, wait for a
// line of its output or its exit (always with a deadline), and kill it by PID in after() hooks.
// Failures include the output collected so far, so a red test says what the process printed.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

export const REPOSITORY_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const OVS_BIN = fileURLToPath(new URL("../../framework/bin/ovs.js", import.meta.url));

/** A TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ChildHarness {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  private stdoutText = "";
  private stderrText = "";
  private exit: Exit | undefined;

  private constructor(child: ChildProcess) {
    this.child = child;
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => { this.stdoutText += chunk; });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => { this.stderrText += chunk; });
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => {
      this.exit = { code, signal };
      resolve(this.exit);
    }));
  }

  /** Runs `node framework/bin/ovs.js ...args` in the repository root. */
  static ovs(args: string[], env: NodeJS.ProcessEnv = {}): ChildHarness {
    return new ChildHarness(spawn(process.execPath, [OVS_BIN, ...args], {
      cwd: REPOSITORY_ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    }));
  }

  /** Runs any command in the repository root in its own process group (signal it with killGroup). */
  static command(command: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildHarness {
    return new ChildHarness(spawn(command, args, {
      cwd: REPOSITORY_ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    }));
  }

  /** Signals the whole process group, as a terminal's Ctrl-C does (only for children from command()). */
  killGroup(signal: NodeJS.Signals): boolean {
    return killPid(-this.pid, signal);
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error("the child process did not start");
    return this.child.pid;
  }

  get stdout(): string {
    return this.stdoutText;
  }

  get stderr(): string {
    return this.stderrText;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  describe(): string {
    return `stdout:\n${this.stdoutText}\nstderr:\n${this.stderrText}`;
  }

  /** Resolves with the first match of pattern in stdout; rejects if the process exits first or time runs out. */
  async waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadlineMs = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.stdoutText);
      if (match !== null) return match;
      if (this.exit !== undefined) {
        throw new Error(`process exited (${JSON.stringify(this.exit)}) before printing ${pattern}\n${this.describe()}`);
      }
      if (Date.now() > deadlineMs) {
        throw new Error(`no output matching ${pattern} within ${timeoutMs} ms\n${this.describe()}`);
      }
      await sleep(50);
    }
  }

  /** Resolves with the exit; rejects (leaving the process running) if it does not exit in time. */
  async waitForExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`process did not exit within ${timeoutMs} ms\n${this.describe()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** For after() hooks: SIGKILL by PID if it still runs, and wait for it briefly. */
  async killHard(): Promise<void> {
    if (this.running && this.child.pid !== undefined) {
      killPid(this.child.pid, "SIGKILL");
      await this.waitForExit(5_000).catch(() => undefined);
    }
  }
}

/** Sends a signal to a PID; a process that is already gone is not an error. */
export function killPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs a short `ovs` command to completion (bounded) and returns its exit code and output. */
export async function runOvs(args: string[], timeoutMs = 30_000, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const harness = ChildHarness.ovs(args, env);
  try {
    const exit = await harness.waitForExit(timeoutMs);
    return { code: exit.code, stdout: harness.stdout, stderr: harness.stderr };
  } finally {
    await harness.killHard();
  }
}

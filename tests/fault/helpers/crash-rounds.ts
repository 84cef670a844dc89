// Rounds of a SIGKILL test: run a child script under tsx, kill it a while after it printed "ready",
// and hand its stdout to the caller, which recovers the engine in this process and checks it.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { sleep } from "../../helpers/volume-assertions.ts";

/** Engine warnings collected while recovering, as a suffix for a failure message ("" if none). */
export function engineWarnings(warnings: string[]): string {
  if (warnings.length === 0) return "";
  return `\n  engine warnings while recovering:\n    ${warnings.slice(0, 5).map((line) => line.slice(0, 600)).join("\n    ")}`;
}

export interface KilledChild {
  stdout: string;
  /** The child killed itself with SIGKILL (at an OVS_CRASH_AT crash point) before the timer did. */
  killedItself: boolean;
}

/**
 * Runs `script` (a .ts file) with its arguments as one JSON argument, SIGKILLs it `killAfterMs` after
 * it printed "ready", returns its stdout. Fails if it never gets ready within 60 s or exits on its own,
 * unless `crashAt` names a crash point (OVS_CRASH_AT, volumedriver/src/engine/crash-points.ts): then
 * the child may SIGKILL itself there first.
 */
export async function runUntilKilled(
  script: string,
  scriptArguments: unknown,
  killAfterMs: number,
  children: Set<ChildProcess>,
  context: string,
  crashAt?: string,
): Promise<KilledChild> {
  const child = spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(scriptArguments)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: crashAt === undefined ? process.env : { ...process.env, OVS_CRASH_AT: crashAt },
  });
  children.add(child);
  const chunks: Buffer[] = [];
  let stderr = "";
  let readySeen = false;
  let onReady: (() => void) | undefined;
  child.stdout!.on("data", (chunk: Buffer) => {
    chunks.push(chunk);
    if (!readySeen && Buffer.concat(chunks).includes("ready\n")) {
      readySeen = true;
      onReady?.();
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    if (stderr.length < 20_000) stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
    if (readySeen) resolve();
  });
  const startup = await Promise.race([ready.then(() => "ready" as const), exited.then(() => "exited" as const), sleep(60_000).then(() => "timeout" as const)]);
  if (startup !== "ready") {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL");
    await exited;
    children.delete(child);
    assert.fail(`${context}: child ${startup} before ready; stdout:\n${Buffer.concat(chunks).toString().slice(-2000)}\nstderr:\n${stderr}`);
  }
  await Promise.race([sleep(killAfterMs), exited]);
  const stillRunning = child.exitCode === null && child.signalCode === null;
  if (child.pid !== undefined && stillRunning) process.kill(child.pid, "SIGKILL");
  await exited;
  children.delete(child);
  const killedItself = !stillRunning && crashAt !== undefined && child.signalCode === "SIGKILL";
  if (!stillRunning && !killedItself) {
    assert.fail(`${context}: child exited on its own (code ${child.exitCode}, signal ${child.signalCode}); stderr:\n${stderr}\nstdout tail:\n${Buffer.concat(chunks).toString().slice(-2000)}`);
  }
  return { stdout: Buffer.concat(chunks).toString(), killedItself };
}

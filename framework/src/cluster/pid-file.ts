// A PID file that is also a lock: one `ovs up` per data directory. Created exclusively; a file left
// by a process that no longer runs is taken over, one whose process still runs is refused.
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";

export class PidFileBusyError extends Error {
  readonly pid: number;
  constructor(file: string, pid: number, what: string) {
    super(`${what} (pid ${pid}) is already running with ${file}: stop it first (kill ${pid}), or use another data directory`);
    this.name = "PidFileBusyError";
    this.pid = pid;
  }
}

/** true when a process of that PID exists (EPERM: it exists but belongs to someone else). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The PID recorded in a PID file, or undefined if there is no file or it holds no PID. */
export function readPidFile(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Takes the PID file for this process; returns the function that releases it. Throws
 * PidFileBusyError if a live process holds it. `what` names the holder in the error message.
 */
export function acquirePidFile(file: string, what: string): () => void {
  // Two rounds at most: the second after removing a stale file.
  for (let round = 0; round < 2; round += 1) {
    let fd: number;
    try {
      fd = openSync(file, "wx");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw error;
      }
      const pid = readPidFile(file);
      if (pid !== undefined && pid !== process.pid && processExists(pid)) {
        throw new PidFileBusyError(file, pid, what);
      }
      rmSync(file, { force: true });
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    let released = false;
    return () => {
      if (!released && readPidFile(file) === process.pid) {
        rmSync(file, { force: true });
      }
      released = true;
    };
  }
  throw new Error(`cannot take the PID file ${file}: another process keeps creating it`);
}

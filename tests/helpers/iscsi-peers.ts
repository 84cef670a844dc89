// tgt, the iSCSI peer our target is compared with (tests/interop/iscsi-conformance.test.ts and
// tests/bench/iscsi): `tgtd -f` on a free loopback port with one target whose LUN 1 is a sparse file
// (backing store rdwr: the page cache; LUN 0 is tgt's controller), configured with tgtadm, stopped
// by PID; its log is DIRECTORY/tgtd.log. tgtd ignores SIGTERM while it has targets, so stop() sends
// SIGKILL after a moment.
import { spawn, type ChildProcess } from "node:child_process";
import { open, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { freePort, killPid, sleep } from "./process-harness.ts";
import { runTool, runToolOk } from "./nbd-tools.ts";

const TGTD_READY_TIMEOUT_MS = 30_000;
const TGTD_SIGTERM_GRACE_MS = 2_000;

export interface TgtTarget {
  /** libiscsi URL of the file LUN: iscsi://127.0.0.1:PORT/TARGET/1. */
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * The management socket is not a TCP port: tgtd names it /var/run/tgtd/socket.N after -C N and
 * refuses N above 32767. One per test process (and per call within it), so parallel runs do not meet.
 */
let controlPortsTaken = 0;
function nextControlPort(): number {
  controlPortsTaken += 1;
  return 20_000 + ((process.pid * 7 + controlPortsTaken) % 12_000);
}

async function tgtadm(controlPort: number, args: string[]): Promise<void> {
  await runToolOk("tgtadm", ["-C", String(controlPort), "--lld", "iscsi", ...args], { timeoutMs: 30_000 });
}

/** Starts tgtd with `targetName` whose LUN 1 is `directory`/tgt.img of `sizeBytes` (sparse). */
export async function startTgt(directory: string, targetName: string, sizeBytes: number): Promise<TgtTarget> {
  const imageFile = path.join(directory, "tgt.img");
  await writeFile(imageFile, "");
  await truncate(imageFile, sizeBytes);
  const port = await freePort();
  const controlPort = nextControlPort();
  // tgtd logs every failed request (many on purpose in a conformance run) to stderr: into a file.
  const log = await open(path.join(directory, "tgtd.log"), "a");
  let child: ChildProcess;
  try {
    child = spawn("tgtd", ["-f", "--iscsi", `portal=127.0.0.1:${port}`, "-C", String(controlPort)], { stdio: ["ignore", log.fd, log.fd] });
  } finally {
    await log.close();
  }
  if (child.pid === undefined) throw new Error("tgtd did not start");
  const pid = child.pid;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    killPid(pid, "SIGTERM");
    await Promise.race([exited, sleep(TGTD_SIGTERM_GRACE_MS)]);
    if (child.exitCode !== null || child.signalCode !== null) return;
    killPid(pid, "SIGKILL");
    await Promise.race([exited, sleep(5_000)]);
  };
  try {
    const deadlineMs = Date.now() + TGTD_READY_TIMEOUT_MS;
    for (;;) {
      const probe = await runTool("tgtadm", ["-C", String(controlPort), "--lld", "iscsi", "--mode", "target", "--op", "show"], { timeoutMs: 10_000 });
      if (probe.code === 0) break;
      if (child.exitCode !== null) throw new Error(`tgtd exited with code ${child.exitCode} before answering on control port ${controlPort}`);
      if (Date.now() > deadlineMs) throw new Error(`tgtd did not answer on control port ${controlPort}: ${probe.stderr}`);
      await sleep(100);
    }
    await tgtadm(controlPort, ["--mode", "target", "--op", "new", "--tid", "1", "--targetname", targetName]);
    await tgtadm(controlPort, ["--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1", "--backing-store", imageFile]);
    await tgtadm(controlPort, ["--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL"]);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `iscsi://127.0.0.1:${port}/${targetName}/1`, pid, stop };
}

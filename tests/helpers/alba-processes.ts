// Real Alba daemons for integration and fault tests: `startAsd` spawns `ovs alba asd run --port 0`
// and resolves once its ready line names the port; stop() is SIGTERM with a SIGKILL deadline,
// kill() is SIGKILL. Call stopAll() in after()/afterEach() hooks so no process outlives its test.
import { ChildHarness, killPid, type Exit } from "./process-harness.ts";

/** How long an ASD may take to print its ready line (tsx start of ovs.js is about a second). */
export const ASD_START_TIMEOUT_MS = 30_000;
/** How long stop() waits after SIGTERM before it sends SIGKILL. */
export const ASD_STOP_TIMEOUT_MS = 10_000;

const READY_LINE = /^ASD ([0-9a-f]{32}) node (\S+) listening on (\S+):(\d+)$/m;

export interface StartAsdOptions {
  directory: string;
  nodeId: string;
  capacityBytes?: number;
  /** Extra environment, e.g. { OVS_ASD_CRASH_AT: "files-written" }. */
  env?: NodeJS.ProcessEnv;
}

export interface RunningAsd {
  asdId: string;
  nodeId: string;
  host: string;
  port: number;
  pid: number;
  directory: string;
  harness: ChildHarness;
  /** SIGTERM, wait; SIGKILL if it has not exited within ASD_STOP_TIMEOUT_MS. Resolves with how it exited. */
  stop(): Promise<Exit>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<Exit>;
}

export async function startAsd(options: StartAsdOptions): Promise<RunningAsd> {
  const args = ["alba", "asd", "run", "--path", options.directory, "--port", "0", "--node-id", options.nodeId];
  if (options.capacityBytes !== undefined) args.push("--capacity", String(options.capacityBytes));
  const harness = ChildHarness.ovs(args, { OVS_LOG_LEVEL: "warn", ...options.env });
  let match: RegExpMatchArray;
  try {
    match = await harness.waitForOutput(READY_LINE, ASD_START_TIMEOUT_MS);
  } catch (error) {
    await harness.killHard();
    throw error;
  }
  const pid = harness.pid;
  return {
    asdId: match[1]!,
    nodeId: match[2]!,
    host: match[3]!,
    port: Number(match[4]),
    pid,
    directory: options.directory,
    harness,
    async stop(): Promise<Exit> {
      if (harness.running) killPid(pid, "SIGTERM");
      try {
        return await harness.waitForExit(ASD_STOP_TIMEOUT_MS);
      } catch {
        killPid(pid, "SIGKILL");
        return harness.waitForExit(ASD_STOP_TIMEOUT_MS);
      }
    },
    async kill(): Promise<Exit> {
      if (harness.running) killPid(pid, "SIGKILL");
      return harness.waitForExit(ASD_STOP_TIMEOUT_MS);
    },
  };
}

/** Stops every ASD of the list at once (SIGTERM, then SIGKILL); for after() hooks. */
export async function stopAll(asds: Iterable<RunningAsd | undefined>): Promise<void> {
  await Promise.all([...asds].map(async (asd) => {
    if (asd !== undefined) await asd.stop();
  }));
}

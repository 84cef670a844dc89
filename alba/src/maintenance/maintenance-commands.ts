// `ovs alba maintenance [--proxy URL] [--repair] [--verify] [--gc] [--rebalance] [--json]`: starts a
// maintenance run on the proxy (POST /v1/maintenance/run), polls it (GET /v1/maintenance/runs?id=,
// which the proxy's exact-path extra routes can serve) with a progress bar on a terminal or one
// line per job otherwise (on stderr), and prints the final report on stdout. No job flag means
// every job. The proxy URL comes from --proxy or OVS_ALBA_PROXY.
import { Option, type Command } from "commander";
import { ALBA_PROXY_URL_DEFAULT, ProxyClient } from "../proxy/proxy-client.ts";
import type { MaintenanceProgress, MaintenanceRunReport } from "./maintenance-report.ts";
import { MAINTENANCE_RUN_PATH, MAINTENANCE_RUNS_PATH, type MaintenanceJobFlags, type MaintenanceRunInfo } from "./maintenance-routes.ts";
import { formatBytes } from "../cli/format.ts";

export type RunAction = (action: () => Promise<void>) => Promise<void>;
export type Print = (text: string) => void;

/** How often a run is polled; a run takes seconds to hours. */
export const MAINTENANCE_POLL_INTERVAL_MS = 500;

interface MaintenanceCommandOptions {
  proxy: string;
  repair?: boolean;
  verify?: boolean;
  gc?: boolean;
  rebalance?: boolean;
  json?: boolean;
}

/** An error whose message is meant for the operator as is. */
export class MaintenanceCommandError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MaintenanceCommandError";
  }
}

const JOB_LABELS: Record<MaintenanceProgress["job"], string> = {
  detectDeadAsds: "dead ASDs", repair: "repair", verify: "verify", collectOrphans: "gc", rebalance: "rebalance",
};

function progressText(progress: MaintenanceProgress): string {
  const items = progress.job === "collectOrphans" ? "keys" : "objects";
  return `${JOB_LABELS[progress.job]}: ${progress.itemsDone} ${items}, ${progress.fragmentsWritten} fragments written, ${formatBytes(progress.bytesTransferred)} moved`;
}


interface ProgressView {
  update(info: MaintenanceRunInfo): void;
  stop(): void;
}

/** Progress on stderr, so stdout holds only the report: a bar on a terminal, a line per job otherwise. */
async function progressView(jobCount: number): Promise<ProgressView> {
  if (process.stderr.isTTY !== true) {
    let lastJob = "";
    return {
      update: (info) => {
        if (info.progress !== undefined && info.progress.job !== lastJob) {
          lastJob = info.progress.job;
          process.stderr.write(`maintenance ${info.runId}: ${JOB_LABELS[info.progress.job]}\n`);
        }
      },
      stop: () => {},
    };
  }
  // Loaded only on a terminal: scripts and pipes never pay for it.
  const { SingleBar, Presets } = (await import("cli-progress")).default;
  const bar = new SingleBar({
    format: "maintenance [{bar}] {value}/{total} jobs | {text}",
    hideCursor: true,
    clearOnComplete: true,
    stream: process.stderr,
  }, Presets.shades_classic);
  // Jobs counted as they start: detectDeadAsds, then the chosen ones.
  const seen: string[] = [];
  let started = false;
  return {
    update: (info) => {
      const progress = info.progress;
      if (progress !== undefined && !seen.includes(progress.job)) seen.push(progress.job);
      const done = info.state === "running" ? Math.max(0, seen.length - 1) : jobCount + 1;
      const payload = { text: progress === undefined ? "starting" : progressText(progress) };
      if (!started) {
        bar.start(jobCount + 1, done, payload);
        started = true;
      } else {
        bar.update(done, payload);
      }
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/** The report as "name: value" lines, nested objects flattened with dots, lists shortened. */
export function formatMaintenanceReport(report: MaintenanceRunReport): string {
  const lines: string[] = [];
  const walk = (prefix: string, value: unknown): void => {
    if (Array.isArray(value)) {
      if (value.length === 0) return;
      value.forEach((item, index) => walk(`${prefix}[${index}]`, item));
      return;
    }
    if (value !== null && typeof value === "object") {
      for (const [name, inner] of Object.entries(value)) walk(prefix === "" ? name : `${prefix}.${name}`, inner);
      return;
    }
    lines.push(`${prefix}: ${typeof value === "number" && /bytes/i.test(prefix) ? formatBytes(value) : String(value)}`);
  };
  walk("", report);
  return lines.join("\n");
}

/**
 * Starts a run on the proxy and polls it to the end; resolves with its final state (done or
 * failed). Errors of the proxy come as ProxyClient's AlbaErrors (409 while another run goes on).
 */
export async function runMaintenanceThroughProxy(
  proxy: ProxyClient, flags: MaintenanceJobFlags, onUpdate: (info: MaintenanceRunInfo) => void = () => {},
  pollIntervalMs = MAINTENANCE_POLL_INTERVAL_MS,
): Promise<MaintenanceRunInfo> {
  const { runId } = await proxy.extension<{ runId: string }>("POST", MAINTENANCE_RUN_PATH, flags);
  if (typeof runId !== "string") throw new MaintenanceCommandError("the proxy answered the maintenance run without a runId");
  for (;;) {
    const info = await proxy.extension<MaintenanceRunInfo>("GET", `${MAINTENANCE_RUNS_PATH}?id=${encodeURIComponent(runId)}`);
    onUpdate(info);
    if (info.state !== "running") return info;
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
}

export function registerMaintenanceCommands(albaCommand: Command, run: RunAction, print: Print): Command {
  return albaCommand.command("maintenance")
    .description("repair, verify, collect orphan fragments and rebalance, through the proxy (no job flag: all of them)")
    .addOption(new Option("--proxy <url>", "the Alba proxy to run it on").env("OVS_ALBA_PROXY").default(ALBA_PROXY_URL_DEFAULT))
    .option("--repair", "rebuild fragments lost with dead ASDs or missing on live ones")
    .option("--verify", "read every fragment, check its CRC-32C, rewrite the bad ones")
    .option("--gc", "delete orphan fragments (failed uploads, deleted objects, leftovers of moves)")
    .option("--rebalance", "move fragments from the fullest ASDs to the emptiest")
    .option("--json", "print the final run (state, report) as JSON")
    .action((options: MaintenanceCommandOptions) => run(async () => {
      const flags: MaintenanceJobFlags = {};
      if (options.repair === true) flags.repair = true;
      if (options.verify === true) flags.verify = true;
      if (options.gc === true) flags.collectOrphans = true;
      if (options.rebalance === true) flags.rebalance = true;
      const chosen = Object.keys(flags).length;
      const view = await progressView(chosen === 0 ? 4 : chosen);
      const proxy = new ProxyClient(options.proxy);
      let info: MaintenanceRunInfo;
      try {
        info = await runMaintenanceThroughProxy(proxy, flags, (update) => view.update(update));
      } finally {
        view.stop();
        await proxy.close();
      }
      if (options.json === true) print(JSON.stringify(info, null, 2));
      else if (info.report !== undefined) print(formatMaintenanceReport(info.report));
      if (info.state === "failed") {
        throw new MaintenanceCommandError(`maintenance run ${info.runId} failed: ${info.error?.message ?? "no reason given"}`);
      }
    }));
}

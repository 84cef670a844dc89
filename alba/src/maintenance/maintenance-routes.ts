// The maintenance part of the proxy's HTTP API (alba/docs/maintenance.md, "HTTP API"):
//   POST /v1/maintenance/run {repair?, verify?, collectOrphans?, rebalance?} → 202 {runId}
//   GET  /v1/maintenance/runs?id=:id   → 200 {runId, state: running|done|failed, options, progress, report, error}
// A run goes on in the background after the POST answers; at most one runs at a time (a second
// POST gets 409 naming the running run). The last runsKeptMax runs stay queryable until the
// process exits. Errors are {code, message}, like the rest of the proxy's API.
//
// `maintenanceProxyRoutes(runs)` gives the routes for the proxy server's `extraRoutes` option (which
// matches exact paths, so a run is polled with ?id=).
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { pino } from "pino";
import type { ProxyExtraRoute } from "../proxy/proxy-server.ts";
import type { MaintenanceProgress, MaintenanceRunOptions, MaintenanceRunReport } from "./maintenance-report.ts";

/** Finished runs remembered for GET. */
export const MAINTENANCE_RUNS_KEPT_MAX = 20;

export type MaintenanceJobFlags = Pick<MaintenanceRunOptions, "repair" | "verify" | "collectOrphans" | "rebalance">;
const JOB_FLAGS: ReadonlyArray<keyof MaintenanceJobFlags> = ["repair", "verify", "collectOrphans", "rebalance"];

export interface MaintenanceRunInfo {
  runId: string;
  state: "running" | "done" | "failed";
  /** The jobs asked for (none: all). */
  options: MaintenanceJobFlags;
  startedAt: string;
  finishedAt?: string;
  progress?: MaintenanceProgress;
  report?: MaintenanceRunReport;
  error?: { code: string; message: string };
}

/** What the routes need from AlbaMaintenance. */
export interface MaintenanceRunner {
  runOnce(options: MaintenanceRunOptions): Promise<MaintenanceRunReport>;
}

export class MaintenanceConflictError extends Error {
  constructor(readonly runningRunId: string) {
    super(`maintenance run ${runningRunId} is still running: wait for it (GET /v1/maintenance/runs/${runningRunId})`);
    this.name = "MaintenanceConflictError";
  }
}

/** Starts maintenance runs in the background, one at a time, and remembers how they went. */
export class MaintenanceRuns {
  private readonly runs = new Map<string, MaintenanceRunInfo>();
  private running: { runId: string; done: Promise<void> } | undefined;
  private readonly logger: Logger;

  constructor(private readonly maintenance: MaintenanceRunner, options: { logger?: Logger; runsKeptMax?: number } = {}) {
    this.logger = (options.logger ?? pino({ level: "silent" })).child({ component: "alba-maintenance-runs" });
    this.runsKeptMax = options.runsKeptMax ?? MAINTENANCE_RUNS_KEPT_MAX;
  }

  private readonly runsKeptMax: number;

  /** Starts a run; throws MaintenanceConflictError while another runs. */
  start(flags: MaintenanceJobFlags): MaintenanceRunInfo {
    if (this.running !== undefined) throw new MaintenanceConflictError(this.running.runId);
    const runId = randomBytes(8).toString("hex");
    const info: MaintenanceRunInfo = { runId, state: "running", options: { ...flags }, startedAt: new Date().toISOString() };
    this.runs.set(runId, info);
    this.forgetOldRuns();
    const done = this.maintenance.runOnce({ ...flags, onProgress: (progress) => { info.progress = progress; } }).then(
      (report) => {
        info.state = "done";
        info.report = report;
      },
      (error: unknown) => {
        info.state = "failed";
        info.error = { code: "MaintenanceFailed", message: error instanceof Error ? error.message : String(error) };
        this.logger.error({ err: error, runId }, "maintenance run failed");
      },
    ).finally(() => {
      info.finishedAt = new Date().toISOString();
      this.running = undefined;
    });
    this.running = { runId, done };
    this.logger.info({ runId, options: flags }, "maintenance run started");
    return { ...info };
  }

  get(runId: string): MaintenanceRunInfo | undefined {
    const info = this.runs.get(runId);
    return info === undefined ? undefined : { ...info };
  }

  /** Resolves when no run is going on (for shutdown and tests). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running.done;
  }

  private forgetOldRuns(): void {
    for (const [runId, info] of this.runs) {
      if (this.runs.size <= this.runsKeptMax) break;
      if (info.state !== "running") this.runs.delete(runId);
    }
  }
}

export interface RouteResponse {
  status: number;
  json: unknown;
}

function errorResponse(status: number, code: string, message: string): RouteResponse {
  return { status, json: { code, message } };
}

/** The job flags of a POST body: an object whose only fields are the four booleans (absent or empty body: all jobs). */
export function parseMaintenanceRunBody(body: unknown): MaintenanceJobFlags | string {
  if (body === undefined || body === null || body === "") return {};
  if (typeof body !== "object" || Array.isArray(body)) return "the body must be a JSON object like {\"repair\": true}";
  const flags: MaintenanceJobFlags = {};
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    if (!(JOB_FLAGS as readonly string[]).includes(name)) return `unknown field ${JSON.stringify(name)}: use ${JOB_FLAGS.join(", ")}`;
    if (typeof value !== "boolean") return `field ${name} must be true or false`;
    flags[name as keyof MaintenanceJobFlags] = value;
  }
  return flags;
}

export const MAINTENANCE_RUN_PATH = "/v1/maintenance/run";
export const MAINTENANCE_RUNS_PATH = "/v1/maintenance/runs";
const RUN_ID_PATTERN = /^[0-9a-f]{16}$/;

function startRun(runs: MaintenanceRuns, body: unknown): RouteResponse {
  const flags = parseMaintenanceRunBody(body);
  if (typeof flags === "string") return errorResponse(400, "Invalid", flags);
  try {
    return { status: 202, json: { runId: runs.start(flags).runId } };
  } catch (error) {
    if (error instanceof MaintenanceConflictError) return { status: 409, json: { code: "Conflict", message: error.message, runId: error.runningRunId } };
    throw error;
  }
}

function showRun(runs: MaintenanceRuns, runId: string | null): RouteResponse {
  const info = runId !== null && RUN_ID_PATTERN.test(runId) ? runs.get(runId) : undefined;
  if (info === undefined) return errorResponse(404, "NotFound", `no maintenance run ${JSON.stringify(runId ?? "")} (runs are remembered in memory until the proxy restarts)`);
  return { status: 200, json: info };
}

/** The maintenance routes for startProxyServer's `extraRoutes` (exact paths: poll with GET /v1/maintenance/runs?id=ID). */
export function maintenanceProxyRoutes(runs: MaintenanceRuns): ProxyExtraRoute[] {
  return [
    { method: "POST", path: MAINTENANCE_RUN_PATH, handler: async (body) => {
      const response = startRun(runs, body);
      return { status: response.status, body: response.json };
    } },
    { method: "GET", path: MAINTENANCE_RUNS_PATH, handler: async (_body, query) => {
      const response = showRun(runs, query.get("id"));
      return { status: response.status, body: response.json };
    } },
  ];
}

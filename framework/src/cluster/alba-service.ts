// The Alba backend `ovs up` runs for its vPool by default: ASD processes (`ovs alba asd run`), one per
// directory under DIR/alba/asd-N, each its own fault domain, and the proxy (`ovs alba proxy run`) over
// the backend directory DIR/alba/backend, all supervised (restarted with backoff when they die).
// On the first start the backend is created with the single-host preset and every ASD is claimed;
// later starts claim only ASDs not yet known (by address). Ports are fixed in config.json, since the
// backend records each ASD by address.
import { fileURLToPath } from "node:url";
import path from "node:path";
import type { Logger } from "pino";
import { AsdClient } from "../../../alba/src/asd/asd-client.ts";
import { createAlbaBackend } from "../../../alba/src/backend/backend-directory.ts";
import type { Preset } from "../../../alba/src/preset/preset.ts";
import { ProxyClient } from "../../../alba/src/proxy/proxy-client.ts";
import type { AsdStatus } from "../../../alba/src/client/alba-client-api.ts";
import type { AlbaBackendView } from "../api/backend-routes.ts";
import type { ManagedAlbaEntry } from "./cluster-config.ts";
import { describeExit, ProcessSupervisor } from "./process-supervisor.ts";
import type { Output } from "./storagedriver-service.ts";

const OVS_BIN = fileURLToPath(new URL("../../bin/ovs.js", import.meta.url));
/** ASDs and the proxy open SQLite files and listen: they are up within seconds. */
const ALBA_START_TIMEOUT_MS = 60_000;
const ALBA_STOP_TIMEOUT_MS = 20_000;
const READY_POLL_INTERVAL_MS = 200;
/** How long one answer of the proxy's ASD list is shared between callers. */
const ASD_STATUS_TTL_MS = 1000;

/**
 * The preset of a single-host backend of three ASDs, each its own node id: (2, 1, 2, 1) stores a
 * chunk as 2 data and 1 parity fragment on 3 distinct ASDs (1.5x overhead), reads survive the loss
 * of any one ASD, and a write succeeds once 2 fragments are durable (maintenance adds the third
 * when the missing ASD is back or replaced).
 */
export const SINGLE_HOST_PRESET: Preset = {
  name: "single-host",
  policies: [{ k: 2, m: 1, c: 2, x: 1 }],
  fragmentSizeBytes: 1024 * 1024,
  compression: "none",
  encryption: "none",
  checksum: "crc32c",
};

export interface ManagedAlbaOptions {
  entry: ManagedAlbaEntry;
  dataDirectory: string;
  logDirectory: string;
  output: Output;
  logger: Logger;
}

export class ManagedAlba implements AlbaBackendView {
  private readonly options: ManagedAlbaOptions;
  private readonly asdSupervisors: ProcessSupervisor[] = [];
  private asdStatusCache: { atMs: number; statuses: Promise<AsdStatus[]> } | undefined;
  private proxySupervisor: ProcessSupervisor | undefined;
  /** For status queries (the API's /api/backend and /api/health, the metrics); made by start(). */
  private statusClient: ProxyClient | undefined;

  constructor(options: ManagedAlbaOptions) {
    this.options = options;
  }

  get directory(): string {
    return path.resolve(this.options.dataDirectory, this.options.entry.directory);
  }

  get proxyUrl(): string {
    return `http://${this.options.entry.proxy.host}:${this.options.entry.proxy.port}`;
  }

  /** Creates the backend if needed, starts the ASDs and the proxy, claims new ASDs. Stops what it started on failure. */
  async start(): Promise<void> {
    const { entry, output, logger } = this.options;
    const backendDirectory = path.join(this.directory, "backend");
    const created = await createAlbaBackend(backendDirectory, { preset: SINGLE_HOST_PRESET });
    try {
      await Promise.all(entry.asds.map(async (asd, index) => {
        const name = `asd-${index + 1}`;
        const supervisor = this.supervise(name, ["alba", "asd", "run", "--path", path.join(this.directory, name), "--host", entry.proxy.host,
          "--port", String(asd.port), "--node-id", asd.nodeId]);
        this.asdSupervisors.push(supervisor);
        supervisor.start();
        await waitUntil(`ASD ${name} on ${entry.proxy.host}:${asd.port}`, () => asdAnswers(entry.proxy.host, asd.port));
      }));
      this.proxySupervisor = this.supervise("alba-proxy", ["alba", "proxy", "run", "--backend", backendDirectory, "--host", entry.proxy.host,
        "--port", String(entry.proxy.port)]);
      this.proxySupervisor.start();
      const proxy = new ProxyClient(this.proxyUrl);
      try {
        await waitUntil(`the Alba proxy on ${this.proxyUrl}`, async () => (await proxy.listAsds().then(() => true, () => false)));
        const claimed = new Set((await proxy.listAsds()).map((status) => `${status.record.host}:${status.record.port}`));
        for (const asd of entry.asds) {
          if (claimed.has(`${entry.proxy.host}:${asd.port}`)) continue;
          const record = await proxy.claimAsd(entry.proxy.host, asd.port);
          logger.info({ asd: record }, "ASD claimed");
        }
      } finally {
        await proxy.close();
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.statusClient = new ProxyClient(this.proxyUrl);
    output.out(`alba backend ${backendDirectory}${created.created ? " (new, preset single-host)" : ""}: ${entry.asds.length} ASDs, proxy on ${this.proxyUrl}`);
  }

  /**
   * The backend's ASDs as the proxy sees them (health from its probes, statistics from the ASDs).
   * /api/health, /api/backend and /metrics all ask (the dashboard polls every second): answers are
   * shared for ASD_STATUS_TTL_MS, and concurrent callers share one request.
   */
  async asdStatuses(): Promise<AsdStatus[]> {
    const client = this.statusClient;
    if (client === undefined) throw new Error("the Alba backend is not running");
    const cached = this.asdStatusCache;
    if (cached !== undefined && Date.now() - cached.atMs < ASD_STATUS_TTL_MS) return cached.statuses;
    const statuses = client.listAsds();
    this.asdStatusCache = { atMs: Date.now(), statuses };
    // A failure is not kept: the next caller asks again.
    statuses.catch(() => {
      if (this.asdStatusCache?.statuses === statuses) this.asdStatusCache = undefined;
    });
    return statuses;
  }

  /** The proxy first (no new requests to the ASDs), then the ASDs. */
  async stop(): Promise<void> {
    await this.statusClient?.close().catch(() => undefined);
    this.statusClient = undefined;
    this.asdStatusCache = undefined;
    await this.proxySupervisor?.stop();
    await Promise.all(this.asdSupervisors.map((supervisor) => supervisor.stop()));
  }

  private supervise(name: string, args: string[]): ProcessSupervisor {
    const { output, logger, logDirectory } = this.options;
    const logFile = path.join(logDirectory, `${name}.log`);
    return new ProcessSupervisor({
      command: process.execPath,
      args: [OVS_BIN, ...args],
      logFile,
      stopTimeoutMs: ALBA_STOP_TIMEOUT_MS,
      env: { ...process.env, OVS_LOG_LEVEL: process.env.OVS_LOG_LEVEL ?? "info" },
      onSpawn: (pid) => logger.info({ name, pid }, "alba process spawned"),
      onUnexpectedExit: (exit, restartInMs) => {
        logger.error({ name, exit, restartInMs }, "alba process exited unexpectedly");
        output.err(restartInMs === undefined
          ? `${name} keeps exiting (${describeExit(exit)}): giving up; see ${logFile}`
          : `${name} exited unexpectedly (${describeExit(exit)}): restarting in ${Math.round(restartInMs / 1000)} s; see ${logFile}`);
      },
    });
  }
}

async function asdAnswers(host: string, port: number): Promise<boolean> {
  const client = new AsdClient(host, port, { requestTimeoutMs: 2_000 });
  try {
    await client.health();
    return true;
  } catch {
    return false;
  } finally {
    await client.close().catch(() => undefined);
  }
}

async function waitUntil(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadlineMs = Date.now() + ALBA_START_TIMEOUT_MS;
  while (!(await probe())) {
    if (Date.now() > deadlineMs) throw new Error(`${what} did not come up within ${ALBA_START_TIMEOUT_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_INTERVAL_MS));
  }
}

// The framework's Prometheus metrics (prom-client), served at GET /metrics of the framework API:
// its own process (CPU, memory, event-loop lag; prefix ovs_framework_), the API's requests by
// route, method and status with their durations, and the supervision of the StorageDrivers (up,
// unexpected exits), and the managed Alba backend's ASDs (up, used and capacity bytes). Each
// StorageDriver serves the engine's metrics itself (its management API's
// /metrics); Prometheus scrapes both.
import type { FastifyInstance } from "fastify";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AsdStatus } from "../../../alba/src/client/alba-client-api.ts";
import type { AlbaBackendView } from "./backend-routes.ts";

/** What the framework knows of one supervised StorageDriver. */
export interface SupervisedStorageDriver {
  vpool: string;
  /** True while its process runs and has reported ready. */
  up(): boolean;
  /** Unexpected exits since `ovs up` started (each one is followed by a restart unless it gave up). */
  unexpectedExits(): number;
}

export interface FrameworkMetricsOptions {
  /** The StorageDrivers now (vPools come and go while ovs up runs). */
  storagedrivers?: SupervisedStorageDriver[] | (() => SupervisedStorageDriver[]);
  /** The Alba backend ovs up runs: its ASDs' health and fill are exported. */
  alba?: AlbaBackendView;
  /** Collect prom-client's process metrics (default true; tests building many registries turn it off). */
  processMetrics?: boolean;
}

export interface FrameworkMetrics {
  registry: Registry;
  /** Counts every API request (by route pattern, so path parameters do not multiply the series). */
  instrument(app: FastifyInstance): void;
}

/** Durations of API requests (seconds): most answer in milliseconds, long ones wait on a StorageDriver. */
const REQUEST_DURATION_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createFrameworkMetrics(options: FrameworkMetricsOptions = {}): FrameworkMetrics {
  const registry = new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: "ovs_framework_" });
  const requests = new Counter({
    name: "ovs_api_requests_total", help: "Framework API requests by route, method and status code",
    labelNames: ["route", "method", "status"], registers: [registry],
  });
  const durations = new Histogram({
    name: "ovs_api_request_duration_seconds", help: "Framework API request durations by route and method",
    labelNames: ["route", "method"], buckets: REQUEST_DURATION_BUCKETS_SECONDS, registers: [registry],
  });
  const given = options.storagedrivers ?? [];
  const storagedriversNow = typeof given === "function" ? given : () => given;
  new Gauge({
    name: "ovs_storagedriver_up", help: "1 while the StorageDriver of the vPool runs and is ready, else 0",
    labelNames: ["vpool"], registers: [registry],
    collect() {
      this.reset();
      for (const storagedriver of storagedriversNow()) this.set({ vpool: storagedriver.vpool }, storagedriver.up() ? 1 : 0);
    },
  });
  new Counter({
    name: "ovs_storagedriver_unexpected_exits_total", help: "StorageDriver processes that exited without being asked to (crashes, kills)",
    labelNames: ["vpool"], registers: [registry],
    collect() {
      this.reset();
      for (const storagedriver of storagedriversNow()) this.inc({ vpool: storagedriver.vpool }, storagedriver.unexpectedExits());
    },
  });
  const alba = options.alba;
  if (alba !== undefined) registerAlbaMetrics(registry, alba);
  return {
    registry,
    instrument(app: FastifyInstance): void {
      app.addHook("onResponse", async (request, reply) => {
        // The route pattern (/api/vdisks/:name), or "unmatched" for a 404 on an unknown path.
        const route = request.routeOptions.url ?? "unmatched";
        requests.inc({ route, method: request.method, status: String(reply.statusCode) });
        durations.observe({ route, method: request.method }, reply.elapsedTime / 1000);
      });
    },
  };
}

/** ASD health and fill of the managed Alba backend, asked of its proxy at each scrape. */
function registerAlbaMetrics(registry: Registry, alba: AlbaBackendView): void {
  // One proxy request per scrape, shared by the gauges below (prom-client collects them back to back).
  let pending: { atMs: number; statuses: Promise<AsdStatus[] | undefined> } | undefined;
  const statuses = (): Promise<AsdStatus[] | undefined> => {
    if (pending === undefined || Date.now() - pending.atMs > 1_000) {
      pending = { atMs: Date.now(), statuses: alba.asdStatuses().catch(() => undefined) };
    }
    return pending.statuses;
  };
  new Gauge({
    name: "ovs_alba_proxy_up", help: "1 when the Alba proxy answers", registers: [registry],
    async collect() {
      this.set((await statuses()) === undefined ? 0 : 1);
    },
  });
  const perAsd = (name: string, help: string, value: (status: AsdStatus) => number | undefined): void => {
    new Gauge({
      name, help, labelNames: ["asd_id", "node_id"], registers: [registry],
      async collect() {
        this.reset();
        for (const status of (await statuses()) ?? []) {
          const sample = value(status);
          if (sample !== undefined) this.set({ asd_id: status.record.asdId, node_id: status.record.nodeId }, sample);
        }
      },
    });
  };
  perAsd("ovs_asd_up", "1 when the ASD answered the proxy's last probe", (status) => (status.health === "up" ? 1 : 0));
  perAsd("ovs_asd_used_bytes", "Bytes stored by the ASD", (status) => status.statistics?.usedBytes);
  perAsd("ovs_asd_capacity_bytes", "Capacity of the ASD (writes are refused beyond it)", (status) => status.statistics?.capacityBytes);
}

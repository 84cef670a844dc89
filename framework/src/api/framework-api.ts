// The framework API (what `ovs` talks to): /api/vdisks, /api/tasks and /api/health, one plugin each,
// Prometheus metrics at /metrics and the dashboard at /, with the project's shared Fastify settings and error handling.
// It listens on loopback by default; it has no authentication yet.
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { createApiServer } from "../../../volumedriver/src/storagedriver/api-server.ts";
import { installErrorHandlers } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import { DASHBOARD_ROUTES, dashboardRoutes } from "./dashboard-routes.ts";
import type { FrameworkMetrics } from "./framework-metrics.ts";
import { healthRoutes } from "./health-routes.ts";
import type { StorageDriverClient } from "./storagedriver-client.ts";
import { MANAGEMENT_ROUTE_LIST } from "../../../volumedriver/src/storagedriver/management-api.ts";
import { taskRoutes } from "./task-routes.ts";
import { vdiskRoutes } from "./vdisk-routes.ts";

export const FRAMEWORK_ROUTES = [...MANAGEMENT_ROUTE_LIST.map((route) => route.replace(" /", " /api/")), "GET /metrics", ...DASHBOARD_ROUTES].join(", ");

export interface FrameworkApiOptions {
  storagedriver: StorageDriverClient;
  logger?: Logger;
  nowMs?: () => number;
  /** Prometheus metrics served at GET /metrics; the API's own requests are counted in them. */
  metrics?: FrameworkMetrics;
}

export function buildFrameworkApi(options: FrameworkApiOptions): FastifyInstance {
  const app = createApiServer(options.logger);
  installErrorHandlers(app, FRAMEWORK_ROUTES);
  void app.register(vdiskRoutes(options.storagedriver), { prefix: "/api" });
  void app.register(taskRoutes(options.storagedriver), { prefix: "/api" });
  void app.register(healthRoutes(options.storagedriver, options.nowMs ?? Date.now), { prefix: "/api" });
  void app.register(dashboardRoutes());
  const metrics = options.metrics;
  if (metrics !== undefined) {
    metrics.instrument(app);
    app.get("/metrics", async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }
  return app;
}

// The framework API (what `ovs` talks to): /api/vdisks, /api/tasks and /api/health, one plugin each,
// Prometheus metrics at /metrics and the dashboard at /, with the project's shared Fastify settings and error handling.
// It listens on loopback by default; with `auth` every route but the open ones needs a bearer token.
import { readFileSync } from "node:fs";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { createApiServer } from "../../../volumedriver/src/storagedriver/api-server.ts";
import { installErrorHandlers } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import type { JobInfo, Scheduler } from "../scheduler/scheduler.ts";
import { type FrameworkAuth, installAuth } from "./auth-routes.ts";
import { type AlbaBackendView, backendRoutes } from "./backend-routes.ts";
import { scheduleRoutes } from "./schedule-routes.ts";
import { DASHBOARD_ROUTES, dashboardRoutes } from "./dashboard-routes.ts";
import type { FrameworkMetrics } from "./framework-metrics.ts";
import { healthRoutes } from "./health-routes.ts";
import type { StorageDriverClient } from "./storagedriver-client.ts";
import { MANAGEMENT_ROUTE_LIST } from "../../../volumedriver/src/storagedriver/management-api.ts";
import { taskRoutes } from "./task-routes.ts";
import { vdiskRoutes } from "./vdisk-routes.ts";

export const FRAMEWORK_ROUTES = [...MANAGEMENT_ROUTE_LIST.map((route) => route.replace(" /", " /api/")), "POST /api/oauth2/token", "POST /api/clients", "GET /api/clients", "DELETE /api/clients/:id", "GET /api/backend", "GET /api/schedules", "PUT /api/schedules/:name", "POST /api/schedules/:name/run", "GET /api/schedules/:name/runs", "GET /api/docs", "GET /metrics", ...DASHBOARD_ROUTES].join(", ");

/** The version in the OpenAPI document (the package's). */
const FRAMEWORK_API_VERSION = (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;

export interface FrameworkApiOptions {
  storagedriver: StorageDriverClient;
  logger?: Logger;
  nowMs?: () => number;
  /** Prometheus metrics served at GET /metrics; the API's own requests are counted in them. */
  metrics?: FrameworkMetrics;
  /** The vPool's backend type for /api/backend (default "unknown"), and the Alba backend ovs up runs, if it does. */
  backendType?: string;
  alba?: AlbaBackendView;
  /** The periodic jobs (/api/schedules); onScheduleChange stores an edited job. */
  scheduler?: Scheduler;
  onScheduleChange?: (job: JobInfo) => Promise<void>;
  /** Users, API clients and tokens: every /api route but the open ones then needs a bearer token (auth-routes.ts). */
  auth?: FrameworkAuth;
}

export function buildFrameworkApi(options: FrameworkApiOptions): FastifyInstance {
  const app = createApiServer(options.logger);
  installErrorHandlers(app, FRAMEWORK_ROUTES);
  // OpenAPI from the routes' JSON schemas (registered before them, so every route is seen), browsable
  // at /api/docs and as JSON at /api/docs/json; the UI's assets come from the package, not the network.
  void app.register(swagger, {
    openapi: {
      info: { title: "Open vStorage framework API", version: FRAMEWORK_API_VERSION, description: "vDisks, snapshots, clones, templates, scrubs and tasks of the cluster" },
      servers: [],
    },
  });
  void app.register(swaggerUi, { routePrefix: "/api/docs" });
  if (options.auth !== undefined) installAuth(app, options.auth);
  void app.register(vdiskRoutes(options.storagedriver), { prefix: "/api" });
  void app.register(taskRoutes(options.storagedriver), { prefix: "/api" });
  void app.register(healthRoutes(options.storagedriver, options.nowMs ?? Date.now, options.alba), { prefix: "/api" });
  void app.register(backendRoutes(options.backendType ?? "unknown", options.alba), { prefix: "/api" });
  if (options.scheduler !== undefined) void app.register(scheduleRoutes(options.scheduler, options.onScheduleChange), { prefix: "/api" });
  void app.register(dashboardRoutes());
  const metrics = options.metrics;
  if (metrics !== undefined) {
    metrics.instrument(app);
    app.get("/metrics", { schema: { description: "Prometheus metrics of the framework (text format)" } },
      async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }
  return app;
}

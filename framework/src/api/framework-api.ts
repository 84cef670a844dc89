// The framework API (what `ovs` talks to): /api/vdisks, /api/vpools, /api/backends, /api/tasks and
// /api/health, one plugin each,
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
import { backendsRoutes } from "./backends-routes.ts";
import type { FrameworkTasks } from "./framework-tasks.ts";
import { StorageDriverRouter } from "./storagedriver-router.ts";
import { vpoolRoutes, type VPoolService } from "./vpool-routes.ts";
import type { FrameworkModel } from "../model/framework-model.ts";

export const FRAMEWORK_ROUTES = [...MANAGEMENT_ROUTE_LIST.map((route) => route.replace(" /", " /api/")), "POST /api/oauth2/token", "POST /api/clients", "GET /api/clients", "DELETE /api/clients/:id", "GET /api/backend", "GET /api/backends", "POST /api/backends", "GET /api/backends/:name", "PATCH /api/backends/:name", "DELETE /api/backends/:name", "GET /api/backends/:name/presets", "POST /api/backends/:name/presets", "PATCH /api/backends/:name/presets/:preset", "DELETE /api/backends/:name/presets/:preset", "GET /api/vpools", "POST /api/vpools", "GET /api/vpools/:name", "PATCH /api/vpools/:name", "DELETE /api/vpools/:name", "GET /api/schedules", "PUT /api/schedules/:name", "POST /api/schedules/:name/run", "GET /api/schedules/:name/runs", "GET /api/docs", "GET /metrics", ...DASHBOARD_ROUTES].join(", ");

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
  /** The cluster's inventory: /api/backends (with the backend ovs up runs, by its model name). */
  model?: FrameworkModel;
  managedBackend?: string;
  /** /api/vpools: creating, listing and deleting vPools (cluster/vpool-control.ts). */
  vpools?: VPoolService;
  /** The framework's own tasks, listed with the StorageDrivers' at /api/tasks. */
  frameworkTasks?: FrameworkTasks;
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
  void app.register(taskRoutes(options.storagedriver, options.frameworkTasks), { prefix: "/api" });
  const storagedriver = options.storagedriver;
  const storagedrivers = (): StorageDriverClient[] => (storagedriver instanceof StorageDriverRouter ? storagedriver.list() : [storagedriver]);
  void app.register(healthRoutes(storagedrivers, options.nowMs ?? Date.now, options.alba), { prefix: "/api" });
  if (options.model !== undefined) {
    void app.register(backendsRoutes({ model: options.model, ...(options.managedBackend === undefined ? {} : { managedBackend: options.managedBackend }) }), { prefix: "/api" });
  }
  if (options.vpools !== undefined) void app.register(vpoolRoutes(options.vpools), { prefix: "/api" });
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

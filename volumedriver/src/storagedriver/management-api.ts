// The StorageDriver's management API: create (or clone), list, inspect and delete the vDisks of its
// vPool, their snapshots, rollback, templates and scrubs (background tasks), and a health check. One
// plugin per resource; every body and path parameter has a JSON schema, and every error goes through
// http-errors.ts. The API only ever listens on loopback: it has no authentication (the framework API
// in front of it is where users and tokens will be checked).
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { VPool } from "../engine/vpool-types.ts";
import { createApiServer } from "./api-server.ts";
import type { BackendOperationSummary } from "./backend-opener.ts";
import { HttpError, httpErrorResponse, installErrorHandlers } from "./http-errors.ts";
import { settingsRoutes } from "./settings-routes.ts";
import { snapshotRoutes } from "./snapshot-routes.ts";
import { taskRoutes } from "./task-routes.ts";
import { TaskRegistry } from "./task-registry.ts";
import { decodeCreateVdiskBody, vdiskNotFound, type CloneSource } from "./vdisk-requests.ts";
import {
  createVdiskBodySchema, resizeBodySchema, vdiskConfigBodySchema, vdiskParamsSchema,
  type CreateVdiskBody, type ResizeBody, type VdiskConfigBody, type VdiskParams,
} from "./vdisk-schemas.ts";
import { VOLUME_OVERRIDE_KEYS, type VolumeOverrideKey, type VolumeOverrides } from "../engine/formats/volume-config.ts";
import { parseVdiskSizeBytes } from "./size.ts";

export interface ManagementApiOptions {
  vpool: VPool;
  /** A description of the backend for /health, without secrets. */
  backendDescription: string;
  /** Backend requests of one namespace (from the instrumented store), per operation. */
  backendStats?: (namespace: string) => Record<string, BackendOperationSummary>;
  /** Background tasks (scrubs); one is made if none is given. The owner closes it on stop. */
  tasks?: TaskRegistry;
  logger?: Logger;
  nowMs?: () => number;
  /**
   * Called after every request that may have changed the vDisks (any but GET), before its answer is
   * sent: the iSCSI target adds and removes LUNs here, so a created vDisk is a LUN when its creator
   * hears of it. Must not reject.
   */
  afterChange?: () => Promise<void>;
  /** Where a vDisk is served over iSCSI, shown in its details; undefined when it is not. */
  iscsiLunOf?: (vdisk: string) => IscsiLunAddress | undefined;
  /** Prometheus metrics (metrics.ts) served at GET /metrics; without it the route answers 404. */
  metrics?: Registry;
}

/** A vDisk's logical unit: the vPool's target, its LUN, and libiscsi's URL of it. */
export interface IscsiLunAddress {
  target: string;
  lun: number;
  url: string;
}

/** The routes of the management API; the framework API serves the same ones under /api. */
export const MANAGEMENT_ROUTE_LIST: readonly string[] = [
  "POST /vdisks", "GET /vdisks", "GET /vdisks/:name", "DELETE /vdisks/:name",
  "POST /vdisks/:name/snapshots", "GET /vdisks/:name/snapshots", "DELETE /vdisks/:name/snapshots/:snapshot",
  "POST /vdisks/:name/rollback", "POST /vdisks/:name/template", "POST /vdisks/:name/scrub",
  "POST /vdisks/:name/resize", "GET /vdisks/:name/config", "PUT /vdisks/:name/config",
  "GET /tasks", "GET /tasks/:id", "GET /health",
];
/** The routes of this API: the vDisk routes, and those the framework does not proxy (settings, Prometheus). */
export const MANAGEMENT_ROUTES = [...MANAGEMENT_ROUTE_LIST, "GET /settings", "PATCH /settings", "GET /metrics"].join(", ");

/** The registry of background tasks a StorageDriver keeps, with errors told as the API tells them. */
export function createTaskRegistry(nowMs?: () => number): TaskRegistry {
  return new TaskRegistry({ describeError: (error) => httpErrorResponse(error).body.error, ...(nowMs === undefined ? {} : { nowMs }) });
}

export function buildManagementApi(options: ManagementApiOptions): FastifyInstance {
  const app = createApiServer(options.logger);
  const tasks = options.tasks ?? createTaskRegistry(options.nowMs);
  installErrorHandlers(app, MANAGEMENT_ROUTES);
  const afterChange = options.afterChange;
  if (afterChange !== undefined) {
    app.addHook("onSend", async (request, _reply, payload) => {
      if (request.method !== "GET" && request.method !== "HEAD") await afterChange();
      return payload;
    });
  }
  void app.register(vdiskRoutes(options.vpool, options.backendStats, options.iscsiLunOf));
  void app.register(snapshotRoutes(options.vpool, tasks));
  void app.register(taskRoutes(tasks));
  void app.register(settingsRoutes(options.vpool));
  void app.register(healthRoutes(options));
  const metrics = options.metrics;
  if (metrics !== undefined) {
    app.get("/metrics", async (_request, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));
  }
  return app;
}

function vdiskRoutes(vpool: VPool, backendStats: ManagementApiOptions["backendStats"], iscsiLunOf: ManagementApiOptions["iscsiLunOf"]): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: CreateVdiskBody }>("/vdisks", { schema: { body: createVdiskBodySchema } }, async (request, reply) => {
      const decoded = decodeCreateVdiskBody(request.body);
      if (decoded.kind === "create") {
        const volume = await vpool.createVolume(decoded.name, decoded.sizeBytes);
        request.log.info({ vdisk: decoded.name, sizeBytes: decoded.sizeBytes }, "vDisk created");
        return reply.code(201).send(volume.info());
      }
      if (decoded.sizeBytes !== undefined) checkCloneSize(vpool, decoded.from, decoded.sizeBytes);
      const volume = await vpool.cloneVolume(decoded.name, decoded.from);
      // A bigger size than the snapshot's grows the clone at once (before anyone can write to it).
      const info = decoded.sizeBytes !== undefined && decoded.sizeBytes > volume.sizeBytes
        ? await vpool.resizeVolume(decoded.name, decoded.sizeBytes) : volume.info();
      request.log.info({ vdisk: decoded.name, parent: info.parent }, "vDisk cloned");
      return reply.code(201).send(info);
    });

    app.get("/vdisks", async () => ({ vdisks: vpool.listVolumes() }));

    app.get<{ Params: VdiskParams }>("/vdisks/:name", { schema: { params: vdiskParamsSchema } }, async (request) => {
      const name = request.params.name;
      const volume = vpool.getVolume(name);
      if (volume !== undefined) {
        const info = volume.info();
        const iscsi = iscsiLunOf?.(name);
        return { ...info, stats: volume.stats(), backendStats: backendStats?.(info.namespace) ?? {}, ...(iscsi === undefined ? {} : { iscsi }) };
      }
      // A vDisk that failed to open is listed (with its error) but has no statistics.
      const listed = vpool.listVolumes().find((info) => info.name === name);
      if (listed === undefined) {
        throw vdiskNotFound(vpool, name);
      }
      return listed;
    });

    app.post<{ Params: VdiskParams; Body: ResizeBody }>("/vdisks/:name/resize",
      { schema: { params: vdiskParamsSchema, body: resizeBodySchema } }, async (request) => {
        const info = await vpool.resizeVolume(request.params.name, parseVdiskSizeBytes(request.body.size));
        request.log.info({ vdisk: request.params.name, sizeBytes: info.sizeBytes }, "vDisk resized");
        return info;
      });

    app.get<{ Params: VdiskParams }>("/vdisks/:name/config", { schema: { params: vdiskParamsSchema } }, async (request) =>
      vdiskConfigOf(vpool, request.params.name));

    app.put<{ Params: VdiskParams; Body: VdiskConfigBody }>("/vdisks/:name/config",
      { schema: { params: vdiskParamsSchema, body: vdiskConfigBodySchema } }, async (request) => {
        await vpool.setVolumeOverrides(request.params.name, request.body);
        request.log.info({ vdisk: request.params.name, overrides: request.body }, "vDisk settings changed");
        return vdiskConfigOf(vpool, request.params.name);
      });

    app.delete<{ Params: VdiskParams }>("/vdisks/:name", { schema: { params: vdiskParamsSchema } }, async (request, reply) => {
      // The engine refuses missing names (NotFound), vDisks with clones (Exists), and can delete
      // vDisks that failed to open.
      await vpool.deleteVolume(request.params.name);
      request.log.info({ vdisk: request.params.name }, "vDisk deleted");
      return reply.code(204).send();
    });
  };
}

/**
 * A clone starts with the size of its snapshot and can only grow, so a size given with a parent must
 * be at least that: a smaller one is refused before anything is made. A parent the engine will refuse
 * anyway (no such vDisk or snapshot) is left to it, for one message per mistake.
 */
function checkCloneSize(vpool: VPool, from: CloneSource, sizeBytes: number): void {
  if (vpool.getVolume(from.volume) === undefined) return;
  const snapshots = vpool.listSnapshots(from.volume);
  const snapshot = from.snapshot === undefined ? snapshots.at(-1) : snapshots.find((candidate) => candidate.name === from.snapshot);
  if (snapshot !== undefined && snapshot.sizeBytes > sizeBytes) {
    throw new HttpError(400, "INVALID_REQUEST", `a clone has at least the size of its snapshot (${snapshot.sizeBytes} bytes), not ${sizeBytes}: leave "size" out or give a bigger one`);
  }
}

/** GET /vdisks/:name/config: what the vDisk overrides, and the settings it runs with. */
function vdiskConfigOf(vpool: VPool, name: string): { overrides: VolumeOverrides; settings: Record<VolumeOverrideKey, number> } {
  const volume = vpool.getVolume(name);
  if (volume === undefined) throw vdiskNotFound(vpool, name);
  const effective = vpool.volumeSettings(name);
  return {
    overrides: volume.info().overrides,
    settings: Object.fromEntries(VOLUME_OVERRIDE_KEYS.map((key) => [key, effective[key]])) as Record<VolumeOverrideKey, number>,
  };
}

function healthRoutes(options: ManagementApiOptions): FastifyPluginAsync {
  const nowMs = options.nowMs ?? Date.now;
  const startedAtMs = nowMs();
  return async (app) => {
    app.get("/health", async () => ({
      status: "ok",
      vpool: options.vpool.name,
      vdiskCount: options.vpool.listVolumes().length,
      backend: options.backendDescription,
      pid: process.pid,
      uptimeSeconds: Math.round((nowMs() - startedAtMs) / 1000),
    }));
  };
}

// The StorageDriver's management API: create, list, inspect and delete the vDisks of its vPool, and
// a health check. One plugin per resource; every body and path parameter has a JSON schema, and every
// error goes through http-errors.ts. The API only ever listens on loopback: it has no authentication
// (the framework API in front of it is where users and tokens will be checked).
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import type { Logger } from "pino";
import { VolumeError } from "../engine/block-device.ts";
import type { VPool } from "../engine/vpool-types.ts";
import { createApiServer } from "./api-server.ts";
import type { BackendOperationSummary } from "./backend-opener.ts";
import { installErrorHandlers } from "./http-errors.ts";
import { parseVdiskSizeBytes } from "./size.ts";
import { createVdiskBodySchema, vdiskParamsSchema, type CreateVdiskBody, type VdiskParams } from "./vdisk-schemas.ts";

export interface ManagementApiOptions {
  vpool: VPool;
  /** A description of the backend for /health, without secrets. */
  backendDescription: string;
  /** Backend requests of one namespace (from the instrumented store), per operation. */
  backendStats?: (namespace: string) => Record<string, BackendOperationSummary>;
  logger?: Logger;
  nowMs?: () => number;
}


export const MANAGEMENT_ROUTES = "POST /vdisks, GET /vdisks, GET /vdisks/:name, DELETE /vdisks/:name, GET /health";

export function buildManagementApi(options: ManagementApiOptions): FastifyInstance {
  const app = createApiServer(options.logger);
  installErrorHandlers(app, MANAGEMENT_ROUTES);
  void app.register(vdiskRoutes(options.vpool, options.backendStats));
  void app.register(healthRoutes(options));
  return app;
}

function vdiskRoutes(vpool: VPool, backendStats: ManagementApiOptions["backendStats"]): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: CreateVdiskBody }>("/vdisks", { schema: { body: createVdiskBodySchema } }, async (request, reply) => {
      const sizeBytes = parseVdiskSizeBytes(request.body.size);
      const volume = await vpool.createVolume(request.body.name, sizeBytes);
      request.log.info({ vdisk: request.body.name, sizeBytes }, "vDisk created");
      return reply.code(201).send(volume.info());
    });

    app.get("/vdisks", async () => ({ vdisks: vpool.listVolumes() }));

    app.get<{ Params: VdiskParams }>("/vdisks/:name", { schema: { params: vdiskParamsSchema } }, async (request) => {
      const name = request.params.name;
      const volume = vpool.getVolume(name);
      if (volume !== undefined) {
        const info = volume.info();
        return { ...info, stats: volume.stats(), backendStats: backendStats?.(info.namespace) ?? {} };
      }
      // A vDisk that failed to open is listed (with its error) but has no statistics.
      const listed = vpool.listVolumes().find((info) => info.name === name);
      if (listed === undefined) {
        throw notFound(vpool, name);
      }
      return listed;
    });

    app.delete<{ Params: VdiskParams }>("/vdisks/:name", { schema: { params: vdiskParamsSchema } }, async (request, reply) => {
      // The engine refuses missing names (NotFound) and can delete vDisks that failed to open.
      await vpool.deleteVolume(request.params.name);
      request.log.info({ vdisk: request.params.name }, "vDisk deleted");
      return reply.code(204).send();
    });
  };
}

function notFound(vpool: VPool, name: string): VolumeError {
  return new VolumeError("NotFound", `no vDisk named ${name} in vPool ${vpool.name}`);
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

// /api/health: is the framework up, and can it reach its StorageDriver? 200 when everything answers,
// 503 (with the same body shape) when the StorageDriver does not, so load balancers and scripts can
// use the status code alone.
import type { FastifyPluginAsync } from "fastify";
import { httpErrorResponse } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import type { StorageDriverClient } from "./storagedriver-client.ts";

export function healthRoutes(storagedriver: StorageDriverClient, nowMs: () => number): FastifyPluginAsync {
  const startedAtMs = nowMs();
  return async (app) => {
    app.get("/health", async (_request, reply) => {
      let storagedriverHealth: unknown;
      let healthy: boolean;
      try {
        const response = await storagedriver.health();
        healthy = response.statusCode === 200;
        storagedriverHealth = response.body;
      } catch (error) {
        healthy = false;
        storagedriverHealth = httpErrorResponse(error).body;
      }
      return reply.code(healthy ? 200 : 503).send({
        status: healthy ? "ok" : "degraded",
        uptimeSeconds: Math.round((nowMs() - startedAtMs) / 1000),
        storagedrivers: [{ vpool: storagedriver.vpool, url: storagedriver.baseUrl, status: healthy ? "ok" : "unreachable", health: storagedriverHealth }],
      });
    });
  };
}

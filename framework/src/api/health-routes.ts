// /api/health: is the framework up, can it reach every vPool's StorageDriver, and (with the Alba backend ovs up
// runs) does the Alba proxy answer with every ASD up? 200 when everything is fine, 503 (with the same
// body shape, status "degraded") when any component is not, so load balancers and scripts can use
// the status code alone; the body says which component and why.
import type { FastifyPluginAsync } from "fastify";
import { httpErrorResponse } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import type { AlbaBackendView } from "./backend-routes.ts";
import type { StorageDriverClient } from "./storagedriver-client.ts";

/** The Alba component of /api/health: ok when the proxy answers and every ASD is up. */
async function albaComponent(alba: AlbaBackendView): Promise<{ status: "ok" | "asds-down" | "unreachable"; proxyUrl: string; asdsUp?: number; asdsTotal?: number; error?: string }> {
  try {
    const statuses = await alba.asdStatuses();
    const up = statuses.filter((status) => status.health === "up").length;
    return { status: up === statuses.length ? "ok" : "asds-down", proxyUrl: alba.proxyUrl, asdsUp: up, asdsTotal: statuses.length };
  } catch (error) {
    return { status: "unreachable", proxyUrl: alba.proxyUrl, error: (error as Error).message };
  }
}

export function healthRoutes(storagedrivers: () => StorageDriverClient[], nowMs: () => number, alba?: AlbaBackendView): FastifyPluginAsync {
  const startedAtMs = nowMs();
  return async (app) => {
    app.get("/health", async (_request, reply) => {
      const [drivers, albaHealth] = await Promise.all([
        Promise.all(storagedrivers().map(storagedriverComponent)),
        alba === undefined ? undefined : albaComponent(alba),
      ]);
      const allHealthy = drivers.every((driver) => driver.status === "ok") && (albaHealth === undefined || albaHealth.status === "ok");
      return reply.code(allHealthy ? 200 : 503).send({
        status: allHealthy ? "ok" : "degraded",
        uptimeSeconds: Math.round((nowMs() - startedAtMs) / 1000),
        storagedrivers: drivers,
        ...(albaHealth === undefined ? {} : { alba: albaHealth }),
      });
    });
  };
}

async function storagedriverComponent(storagedriver: StorageDriverClient): Promise<{ vpool: string; url: string; status: "ok" | "unreachable"; health: unknown }> {
  try {
    const response = await storagedriver.health();
    return { vpool: storagedriver.vpool, url: storagedriver.baseUrl, status: response.statusCode === 200 ? "ok" : "unreachable", health: response.body };
  } catch (error) {
    return { vpool: storagedriver.vpool, url: storagedriver.baseUrl, status: "unreachable", health: httpErrorResponse(error).body };
  }
}

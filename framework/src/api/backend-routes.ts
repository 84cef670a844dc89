// /api/backend: the vPool's backend as the framework sees it. For the Alba backend `ovs up` runs:
// the proxy's address and every ASD with its node id, health (from the proxy's probes) and fill;
// for any other backend just its type. The dashboard's backend panel and /api/health read it.
import type { FastifyPluginAsync } from "fastify";
import type { AsdStatus } from "../../../alba/src/client/alba-client-api.ts";
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";

/** What the framework can ask of a running Alba backend (alba-service.ts). */
export interface AlbaBackendView {
  readonly proxyUrl: string;
  asdStatuses(): Promise<AsdStatus[]>;
}

export interface BackendInfo {
  type: string;
  proxyUrl?: string;
  asds?: Array<{ asdId: string; nodeId: string; address: string; health: "up" | "down"; usedBytes?: number; capacityBytes?: number }>;
}

/** The backend's details; throws HttpError 503 when the Alba proxy does not answer. */
export async function backendInfo(type: string, alba: AlbaBackendView | undefined): Promise<BackendInfo> {
  if (alba === undefined) return { type };
  let statuses: AsdStatus[];
  try {
    statuses = await alba.asdStatuses();
  } catch (error) {
    throw new HttpError(503, "UNAVAILABLE", `the Alba proxy at ${alba.proxyUrl} does not answer (${(error as Error).message}): ovs up restarts it; see data/logs/alba-proxy.log`, { cause: error });
  }
  return {
    type,
    proxyUrl: alba.proxyUrl,
    asds: statuses.map((status) => ({
      asdId: status.record.asdId, nodeId: status.record.nodeId, address: `${status.record.host}:${status.record.port}`, health: status.health,
      ...(status.statistics === undefined ? {} : { usedBytes: status.statistics.usedBytes, capacityBytes: status.statistics.capacityBytes }),
    })),
  };
}

export function backendRoutes(type: string, alba: AlbaBackendView | undefined): FastifyPluginAsync {
  return async (app) => {
    app.get("/backend", { schema: { description: "The vPool's backend; for the Alba backend ovs up runs, its ASDs with health and fill" } },
      async () => backendInfo(type, alba));
  };
}

// Goal: with the Alba backend ovs up runs, the framework reports it: /api/backend lists every ASD
// with node id, health and fill; /api/health is 503 "degraded" naming the Alba component as soon
// as an ASD is down or the proxy does not answer; /metrics exports ASD health and fill. A fake
// backend view stands in for the proxy (its answers are what the proxy's listAsds returns).
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import type { AsdStatus } from "../../../alba/src/client/alba-client-api.ts";
import type { AlbaBackendView } from "../../../framework/src/api/backend-routes.ts";
import { buildFrameworkApi } from "../../../framework/src/api/framework-api.ts";
import { createFrameworkMetrics } from "../../../framework/src/api/framework-metrics.ts";
import { unreachableStorageDriver } from "../../helpers/framework-fixtures.ts";

function asd(index: number, health: "up" | "down"): AsdStatus {
  return {
    record: { asdId: `asd${index}`.padEnd(32, "0"), nodeId: `node-${index}`, host: "127.0.0.1", port: 8600 + index, state: "claimed", claimedAt: "2026-11-22T00:00:00Z" },
    health,
    ...(health === "up" ? {
      statistics: {
        asdId: `asd${index}`.padEnd(32, "0"), nodeId: `node-${index}`, capacityBytes: 1000, usedBytes: 250 * index, diskFreeBytes: 5000, keyCount: 1,
        batchCount: 1, fsyncCount: 1, getCount: 0, readBytes: 0, writtenBytes: 0, startedAt: "2026-11-22T00:00:00Z",
      },
    } : {}),
  } as AsdStatus;
}

describe("framework: the managed Alba backend in /api/backend, /api/health and /metrics", function () {
  let app: FastifyInstance;
  const fake = {
    proxyUrl: "http://127.0.0.1:8600",
    answer: [asd(1, "up"), asd(2, "up"), asd(3, "up")] as AsdStatus[] | Error,
    async asdStatuses(): Promise<AsdStatus[]> {
      if (this.answer instanceof Error) throw this.answer;
      return this.answer;
    },
  } satisfies AlbaBackendView & { answer: AsdStatus[] | Error };

  before(async function () {
    const storagedriver = unreachableStorageDriver();
    app = buildFrameworkApi({ storagedriver, backendType: "managed-alba", alba: fake, metrics: createFrameworkMetrics({ alba: fake, processMetrics: false }) });
    await app.ready();
  });

  after(async function () {
    await app.close();
  });

  it("lists the ASDs with health and fill", async function () {
    fake.answer = [asd(1, "up"), asd(2, "up"), asd(3, "down")];
    const response = await app.inject({ method: "GET", url: "/api/backend" });
    assert.equal(response.statusCode, 200);
    const body = response.json<{ type: string; proxyUrl: string; asds: Array<{ nodeId: string; health: string; usedBytes?: number; address: string }> }>();
    assert.equal(body.type, "managed-alba");
    assert.equal(body.proxyUrl, "http://127.0.0.1:8600");
    assert.deepEqual(body.asds.map((entry) => [entry.nodeId, entry.health, entry.usedBytes, entry.address]),
      [["node-1", "up", 250, "127.0.0.1:8601"], ["node-2", "up", 500, "127.0.0.1:8602"], ["node-3", "down", undefined, "127.0.0.1:8603"]]);
  });

  it("answers 503 with a clear message when the proxy does not", async function () {
    fake.answer = new Error("connect ECONNREFUSED 127.0.0.1:8600");
    const response = await app.inject({ method: "GET", url: "/api/backend" });
    assert.equal(response.statusCode, 503);
    assert.match(response.json<{ error: { message: string } }>().error.message, /Alba proxy at http:\/\/127\.0\.0\.1:8600 does not answer.*alba-proxy\.log/);
  });

  it("health names the Alba component: an ASD down or the proxy gone is degraded", async function () {
    // The StorageDriver is unreachable here (port 1) in every case; the Alba part is what differs.
    fake.answer = [asd(1, "up"), asd(2, "down"), asd(3, "up")];
    let health = (await app.inject({ method: "GET", url: "/api/health" })).json<{ status: string; alba: { status: string; asdsUp: number; asdsTotal: number } }>();
    assert.equal(health.status, "degraded");
    assert.deepEqual([health.alba.status, health.alba.asdsUp, health.alba.asdsTotal], ["asds-down", 2, 3]);
    fake.answer = new Error("timeout");
    health = (await app.inject({ method: "GET", url: "/api/health" })).json();
    assert.equal(health.alba.status, "unreachable");
    fake.answer = [asd(1, "up"), asd(2, "up"), asd(3, "up")];
    health = (await app.inject({ method: "GET", url: "/api/health" })).json();
    assert.equal(health.alba.status, "ok");
  });

  it("exports ASD health and fill, and whether the proxy answers", async function () {
    fake.answer = [asd(1, "up"), asd(2, "down"), asd(3, "up")];
    let text = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(text, /^ovs_alba_proxy_up 1$/m);
    assert.match(text, /^ovs_asd_up\{asd_id="asd2\d+",node_id="node-2"\} 0$/m);
    assert.match(text, /^ovs_asd_used_bytes\{asd_id="asd3\d+",node_id="node-3"\} 750$/m);
    assert.match(text, /^ovs_asd_capacity_bytes\{asd_id="asd1\d+",node_id="node-1"\} 1000$/m);
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // past the one-scrape cache
    fake.answer = new Error("gone");
    text = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(text, /^ovs_alba_proxy_up 0$/m);
  });
});

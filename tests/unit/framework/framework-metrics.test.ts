// Goal: the framework's /metrics counts its API requests by route pattern, method and status (with
// durations), reports whether each supervised StorageDriver is up and how often it exited
// unexpectedly, and includes the process metrics. Uses inject(): no listening sockets.
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildFrameworkApi } from "../../../framework/src/api/framework-api.ts";
import { createFrameworkMetrics } from "../../../framework/src/api/framework-metrics.ts";
import { unreachableStorageDriver } from "../../helpers/framework-fixtures.ts";

function sampleValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const labelText = line.slice(name.length + 1, line.lastIndexOf("}"));
    if (Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

describe("framework: Prometheus metrics", function () {
  let app: FastifyInstance;
  const supervised = { vpool: "vpool1", isUp: true, exits: 0, up(): boolean { return this.isUp; }, unexpectedExits(): number { return this.exits; } };

  before(async function () {
    // Port 1 on loopback: nothing listens there, so vDisk requests end in 503 from the framework itself.
    const storagedriver = unreachableStorageDriver();
    app = buildFrameworkApi({ storagedriver, metrics: createFrameworkMetrics({ storagedrivers: [supervised] }) });
    await app.ready();
  });

  after(async function () {
    await app.close();
  });

  it("counts requests by route pattern, method and status, with durations", async function () {
    for (let index = 0; index < 3; index++) assert.equal((await app.inject({ method: "GET", url: "/api/vdisks" })).statusCode, 503);
    assert.equal((await app.inject({ method: "GET", url: "/api/vdisks/disk-a" })).statusCode, 503);
    assert.equal((await app.inject({ method: "GET", url: "/api/vdisks/disk-b" })).statusCode, 503);
    assert.equal((await app.inject({ method: "POST", url: "/api/vdisks", payload: { name: "Bad" } })).statusCode, 400);
    assert.equal((await app.inject({ method: "GET", url: "/api/nowhere" })).statusCode, 404);
    const response = await app.inject({ method: "GET", url: "/metrics" });
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers["content-type"]), /^text\/plain/);
    const text = response.body;
    assert.equal(sampleValue(text, "ovs_api_requests_total", { route: "/api/vdisks", method: "GET", status: "503" }), 3);
    assert.equal(sampleValue(text, "ovs_api_requests_total", { route: "/api/vdisks/:name", method: "GET", status: "503" }), 2, "one series per route pattern");
    assert.equal(sampleValue(text, "ovs_api_requests_total", { route: "/api/vdisks", method: "POST", status: "400" }), 1);
    assert.equal(sampleValue(text, "ovs_api_requests_total", { route: "unmatched", method: "GET", status: "404" }), 1);
    assert.equal(sampleValue(text, "ovs_api_request_duration_seconds_count", { route: "/api/vdisks", method: "GET" }), 3);
    assert.match(text, /^ovs_framework_process_cpu_seconds_total /m, "process metrics");
  });

  it("reports whether the StorageDriver is up and its unexpected exits", async function () {
    supervised.isUp = false;
    supervised.exits = 2;
    let text = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.equal(sampleValue(text, "ovs_storagedriver_up", { vpool: "vpool1" }), 0);
    assert.equal(sampleValue(text, "ovs_storagedriver_unexpected_exits_total", { vpool: "vpool1" }), 2);
    supervised.isUp = true;
    text = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.equal(sampleValue(text, "ovs_storagedriver_up", { vpool: "vpool1" }), 1);
  });
});

// Goal: the framework API refuses invalid requests at its edge (400 with a message naming the field
// and how to write it) before anything reaches a StorageDriver, and reports an unreachable
// StorageDriver as 503 UNAVAILABLE. Uses inject(): no listening sockets.
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildFrameworkApi } from "../../../framework/src/api/framework-api.ts";
import { unreachableStorageDriver } from "../../helpers/framework-fixtures.ts";

describe("framework: API request validation", function () {
  let app: FastifyInstance;

  before(async function () {
    // Port 1 on loopback: nothing listens there, so a request that got past validation would fail with 503.
    const storagedriver = unreachableStorageDriver();
    app = buildFrameworkApi({ storagedriver });
    await app.ready();
  });

  after(async function () {
    await app.close();
  });

  async function post(body: unknown): Promise<{ statusCode: number; code: string; message: string }> {
    const response = await app.inject({ method: "POST", url: "/api/vdisks", payload: body as object });
    const parsed = response.json<{ error: { code: string; message: string } }>();
    return { statusCode: response.statusCode, code: parsed.error.code, message: parsed.error.message };
  }

  const invalidBodies: Array<[string, unknown, RegExp]> = [
    ["an upper-case name", { name: "Demo", size: "10G" }, /body\.name must match pattern.*a vDisk name is 1-63 characters/],
    ["a name starting with '-'", { name: "-x", size: "10G" }, /body\.name/],
    ["a name of 64 characters", { name: "a".repeat(64), size: "10G" }, /body\.name/],
    ["a missing size", { name: "disk" }, /must have the field "size"/],
    ["a missing name", { size: 4096 }, /must have the field "name"/],
    ["an unknown field", { name: "disk", size: 4096, sise: 1 }, /unknown field "sise"/],
    ["a size that is not a multiple of 4096", { name: "disk", size: 5000 }, /body\.size must be multiple of 4096/],
    ["a size of 0", { name: "disk", size: 0 }, /body\.size must be >= 4096/],
    ["a size over 64 TiB", { name: "disk", size: 2 ** 47 }, /body\.size must be <= /],
    ["a size text with a decimal unit", { name: "disk", size: "10GB" }, /use G or GiB/],
    ["a size text that is not a multiple of 4096", { name: "disk", size: "1000" }, /not a multiple of 4096/],
    ["a size text over 64 TiB", { name: "disk", size: "65T" }, /exceeds the largest vDisk/],
    ["a size of the wrong type", { name: "disk", size: true }, /body\.size must be integer,string/],
    ["a negative size text", { name: "disk", size: "-4096" }, /body\.size must match pattern/],
  ];
  for (const [what, body, message] of invalidBodies) {
    it(`refuses ${what} with 400 INVALID_REQUEST`, async function () {
      const response = await post(body);
      assert.equal(response.statusCode, 400, response.message);
      assert.equal(response.code, "INVALID_REQUEST");
      assert.match(response.message, message);
    });
  }

  it("refuses malformed JSON with 400 and a hint about the body", async function () {
    const response = await app.inject({ method: "POST", url: "/api/vdisks", headers: { "content-type": "application/json" }, payload: "{\"name\": " });
    assert.equal(response.statusCode, 400);
    assert.match(response.json<{ error: { message: string } }>().error.message, /JSON/);
  });

  it("refuses an invalid name in the path with 400", async function () {
    for (const method of ["GET", "DELETE"] as const) {
      const response = await app.inject({ method, url: "/api/vdisks/Bad..Name" });
      assert.equal(response.statusCode, 400, method);
      assert.match(response.json<{ error: { message: string } }>().error.message, /params\.name must match pattern/);
    }
  });

  it("answers unknown routes with 404 ROUTE_NOT_FOUND listing the routes", async function () {
    const response = await app.inject({ method: "GET", url: "/api/nothing" });
    assert.equal(response.statusCode, 404);
    assert.equal(response.json<{ error: { code: string } }>().error.code, "ROUTE_NOT_FOUND");
    assert.match(response.json<{ error: { message: string } }>().error.message, /GET \/api\/vdisks/);
  });

  it("reports a StorageDriver that does not answer as 503 UNAVAILABLE, with what to do", async function () {
    const response = await app.inject({ method: "GET", url: "/api/vdisks" });
    assert.equal(response.statusCode, 503);
    const error = response.json<{ error: { code: string; message: string } }>().error;
    assert.equal(error.code, "UNAVAILABLE");
    assert.match(error.message, /not reachable.*retry/);
    const health = await app.inject({ method: "GET", url: "/api/health" });
    assert.equal(health.statusCode, 503);
    assert.equal(health.json<{ status: string }>().status, "degraded");
  });
});

// Goal: the framework API describes itself: an OpenAPI 3 document at /api/docs/json built from the
// routes' JSON schemas (every vDisk, snapshot and task route, with the request body schemas), and a
// browsable page at /api/docs whose assets are served locally. Uses inject(): no sockets.
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildFrameworkApi } from "../../../framework/src/api/framework-api.ts";
import { MANAGEMENT_ROUTE_LIST } from "../../../volumedriver/src/storagedriver/management-api.ts";
import { unreachableStorageDriver } from "../../helpers/framework-fixtures.ts";

interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> } }>>;
}

describe("framework: OpenAPI at /api/docs", function () {
  let app: FastifyInstance;

  before(async function () {
    const storagedriver = unreachableStorageDriver();
    app = buildFrameworkApi({ storagedriver });
    await app.ready();
  });

  after(async function () {
    await app.close();
  });

  it("lists every API route with its schemas", async function () {
    const response = await app.inject({ method: "GET", url: "/api/docs/json" });
    assert.equal(response.statusCode, 200);
    const document = response.json<OpenApiDocument>();
    assert.match(document.openapi, /^3\./);
    assert.equal(document.info.title, "Open vStorage framework API");
    for (const route of MANAGEMENT_ROUTE_LIST) {
      const [method, pathname] = route.split(" ");
      const openApiPath = `/api${pathname.replace(/:(\w+)/g, "{$1}")}`;
      assert.ok(document.paths[openApiPath]?.[method.toLowerCase()] !== undefined, `${method} ${openApiPath} is documented`);
    }
    const create = document.paths["/api/vdisks"].post;
    assert.ok(create.requestBody?.content["application/json"].schema.properties?.name !== undefined, "POST /api/vdisks documents its body");
    assert.equal(document.paths["/"], undefined, "the dashboard's files are not API routes");
  });

  it("serves the browsable page with local assets", async function () {
    const page = await app.inject({ method: "GET", url: "/api/docs/" });
    assert.equal(page.statusCode, 200, page.body.slice(0, 200));
    assert.match(page.body, /swagger/i);
    assert.doesNotMatch(page.body, /https?:\/\/(?!127\.0\.0\.1|localhost)[a-z0-9.-]+\/[^"']*\.(js|css)/i, "no asset from another host");
  });
});

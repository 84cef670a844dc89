// The dashboard (framework/dashboard/): GET / and its two assets, read once from disk and served as
// they are. No build step, nothing fetched from the network at run time; the page talks to /api.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyPluginAsync } from "fastify";

const DASHBOARD_DIRECTORY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../dashboard");

const ASSETS: ReadonlyArray<{ route: string; file: string; type: string }> = [
  { route: "/", file: "index.html", type: "text/html; charset=utf-8" },
  { route: "/dashboard/dashboard.js", file: "dashboard.js", type: "text/javascript; charset=utf-8" },
  { route: "/dashboard/dashboard.css", file: "dashboard.css", type: "text/css; charset=utf-8" },
];

export const DASHBOARD_ROUTES = ASSETS.map((asset) => `GET ${asset.route}`);

export function dashboardRoutes(): FastifyPluginAsync {
  const files = ASSETS.map((asset) => ({ ...asset, body: readFileSync(path.join(DASHBOARD_DIRECTORY, asset.file)) }));
  return async (app) => {
    for (const asset of files) {
      app.get(asset.route, { schema: { hide: true } }, async (_request, reply) => reply.type(asset.type).header("cache-control", "no-cache").send(asset.body));
    }
  };
}

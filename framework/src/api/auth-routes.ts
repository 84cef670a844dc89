// Authentication and authorization of the framework API. POST /api/oauth2/token issues bearer tokens
// (RFC 6749: the password grant for users, client credentials for API clients, in a form or JSON
// body, client credentials also as HTTP Basic); every other /api route needs a token, and its role
// must allow the request: read for GET, write for anything that changes vDisks, manage for API
// clients, schedules, backends and vPools. Open without a token: the token endpoint, /api/health (for load balancers),
// the OpenAPI pages, the dashboard's files (the page logs in itself) and /metrics (keep it on loopback).
// 401 carries WWW-Authenticate: Bearer; 403 names the role needed. Secrets are never logged.
import type { FastifyInstance, FastifyRequest } from "fastify";
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import { type AuthStore, type Role, ROLES, roleAllows } from "../auth/auth-store.ts";
import type { TokenIssuer } from "../auth/tokens.ts";

export interface FrameworkAuth {
  store: AuthStore;
  tokens: TokenIssuer;
}

const TOKEN_PATH = "/api/oauth2/token";

/** The role a request needs, or undefined when it is open. */
export function requiredRole(method: string, pathname: string): Role | undefined {
  if (!pathname.startsWith("/api/") && pathname !== "/api") return undefined;
  if (pathname === TOKEN_PATH || pathname === "/api/health" || pathname === "/api/docs" || pathname.startsWith("/api/docs/")) return undefined;
  if (pathname === "/api/clients" || pathname.startsWith("/api/clients/")) return "manage";
  const reading = method === "GET" || method === "HEAD";
  if (pathname.startsWith("/api/schedules")) return reading ? "read" : "manage";
  // Backends (with their credentials) and vPools are the cluster's infrastructure.
  if (/^\/api\/(backends|vpools)(\/|$)/.test(pathname)) return reading ? "read" : "manage";
  return reading ? "read" : "write";
}

function unauthorized(reply: { header(name: string, value: string): unknown }, message: string): HttpError {
  reply.header("www-authenticate", 'Bearer realm="ovs"');
  return new HttpError(401, "UNAUTHORIZED", message);
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match?.[1];
}

interface TokenBody {
  grant_type?: unknown;
  username?: unknown;
  password?: unknown;
  client_id?: unknown;
  client_secret?: unknown;
}

/**
 * Registers the hook and routes as a plugin that is not encapsulated (like fastify-plugin does): the
 * hook must see every route, and registering in plugin order lets the OpenAPI document list the routes.
 */
export function installAuth(app: FastifyInstance, auth: FrameworkAuth): void {
  const plugin = async (root: FastifyInstance): Promise<void> => authPlugin(root, auth);
  (plugin as unknown as Record<symbol, boolean>)[Symbol.for("skip-override")] = true;
  void app.register(plugin);
}

async function authPlugin(app: FastifyInstance, auth: FrameworkAuth): Promise<void> {
  // OAuth2 clients send the token request as a form (RFC 6749 §4.3.2); JSON is accepted too.
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.addHook("onRequest", async (request, reply) => {
    const pathname = request.url.split("?")[0];
    const needed = requiredRole(request.method, pathname);
    if (needed === undefined) return;
    const token = bearerToken(request);
    if (token === undefined) {
      throw unauthorized(reply, `${request.method} ${pathname} needs a bearer token: get one with \`ovs login\` or POST ${TOKEN_PATH} (grant_type password or client_credentials), then send Authorization: Bearer TOKEN`);
    }
    const grant = auth.tokens.verify(token);
    if (grant === undefined) throw unauthorized(reply, "the bearer token is unknown or expired: log in again (`ovs login`)");
    if (!roleAllows(grant.role, needed)) {
      throw new HttpError(403, "FORBIDDEN", `${request.method} ${pathname} needs the ${needed} role; ${grant.subject} has ${grant.role}`);
    }
  });

  app.post<{ Body: TokenBody }>(TOKEN_PATH, { schema: { description: "OAuth2 token endpoint: password or client_credentials grant" } }, async (request) => {
    const body = (request.body ?? {}) as TokenBody;
    const text = (value: unknown): string | undefined => (typeof value === "string" && value.length > 0 && value.length <= 1024 ? value : undefined);
    let subject: string;
    let role: Role | undefined;
    if (body.grant_type === "password") {
      const username = text(body.username);
      const password = text(body.password);
      if (username === undefined || password === undefined) throw new HttpError(400, "INVALID_REQUEST", "the password grant needs username and password");
      role = await auth.store.verifyUser(username, password);
      if (role === undefined) throw new HttpError(401, "INVALID_GRANT", "wrong user name or password");
      subject = `user ${username}`;
    } else if (body.grant_type === "client_credentials") {
      let clientId = text(body.client_id);
      let clientSecret = text(body.client_secret);
      const basic = /^Basic\s+(\S+)$/i.exec(request.headers.authorization ?? "");
      if (basic !== null) {
        const decoded = Buffer.from(basic[1], "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        if (colon > 0) {
          clientId = decodeURIComponent(decoded.slice(0, colon));
          clientSecret = decodeURIComponent(decoded.slice(colon + 1));
        }
      }
      if (clientId === undefined || clientSecret === undefined) throw new HttpError(400, "INVALID_REQUEST", "the client_credentials grant needs client_id and client_secret (in the body or as HTTP Basic)");
      role = await auth.store.verifyClient(clientId, clientSecret);
      if (role === undefined) throw new HttpError(401, "INVALID_CLIENT", "unknown client or wrong secret");
      subject = `client ${clientId}`;
    } else {
      throw new HttpError(400, "UNSUPPORTED_GRANT_TYPE", 'grant_type must be "password" or "client_credentials"');
    }
    const issued = auth.tokens.issue(subject, role);
    request.log.info({ subject, role }, "token issued");
    return { access_token: issued.token, token_type: "Bearer", expires_in: issued.expiresInSeconds, scope: role };
  });

  const clientBodySchema = {
    type: "object", required: ["role"], additionalProperties: false,
    properties: {
      role: { type: "string", enum: [...ROLES], description: "read, write or manage" },
      description: { type: "string", maxLength: 200, description: "what the client is for, e.g. 'backup scripts' (default: API client (ROLE))" },
    },
  } as const;
  app.post<{ Body: { role: Role; description?: string } }>("/api/clients", { schema: { body: clientBodySchema } }, async (request, reply) => {
    const description = request.body.description === undefined || request.body.description.trim() === "" ? `API client (${request.body.role})` : request.body.description;
    const created = await auth.store.createClient(request.body.role, description);
    request.log.info({ clientId: created.clientId, role: created.info.role }, "API client created");
    return reply.code(201).send({ ...created.info, clientSecret: created.clientSecret });
  });
  app.get("/api/clients", async () => ({ clients: auth.store.listClients() }));
  app.delete<{ Params: { id: string } }>("/api/clients/:id", {
    schema: { params: { type: "object", required: ["id"], additionalProperties: false, properties: { id: { type: "string", minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9-]+$" } } } },
  }, async (request, reply) => {
    if (!auth.store.deleteClient(request.params.id)) throw new HttpError(404, "NOT_FOUND", `no API client ${request.params.id}: \`GET /api/clients\` lists them`);
    return reply.code(204).send();
  });
}

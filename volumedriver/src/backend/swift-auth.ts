// Authentication to Swift: tempauth (v1.0: GET the auth URL with X-Auth-User / X-Auth-Key, get
// X-Storage-Url and X-Auth-Token back) or Keystone v3 password auth (POST {authUrl}/auth/tokens,
// get X-Subject-Token and the object-store endpoint from the token's catalog; Identity API v3,
// "Password authentication with unscoped authorization" scoped to a project). The store keeps one
// session and asks for a new one when Swift answers 401 (an expired or revoked token).
// Never put a key, password or token in an error message or a log line.
import { StoreError } from "./object-store.ts";
import { CREDENTIALS_HINT } from "./swift-errors.ts";
import type { SwiftHttpClient } from "./swift-http-client.ts";

export interface SwiftTempAuthCredentials {
  kind: "tempauth";
  /** e.g. http://127.0.0.1:8080/auth/v1.0 */
  authUrl: string;
  /** "account:user", e.g. "test:tester" */
  user: string;
  key: string;
}

export interface SwiftKeystoneCredentials {
  kind: "keystone";
  /** The Identity v3 URL, e.g. http://keystone:5000/v3 */
  authUrl: string;
  userName: string;
  password: string;
  /** Default "Default". */
  userDomainName?: string;
  projectName: string;
  /** Default "Default". */
  projectDomainName?: string;
  /** The catalog region to use; without it, the first object-store endpoint of the interface. */
  region?: string;
  /** Default "public". */
  endpointInterface?: "public" | "internal" | "admin";
}

export type SwiftCredentials = SwiftTempAuthCredentials | SwiftKeystoneCredentials;

/** What every request needs: where the account is, and the token to present. */
export interface SwiftSession {
  /** The account URL, e.g. http://127.0.0.1:8080/v1/AUTH_test (no trailing slash). */
  storageUrl: URL;
  token: string;
}

/** Logs in once; `storageUrlOverride` replaces the URL the auth service names (a proxy reached another way). */
export async function authenticate(client: SwiftHttpClient, credentials: SwiftCredentials, storageUrlOverride?: string): Promise<SwiftSession> {
  const session = credentials.kind === "tempauth" ? await tempAuth(client, credentials) : await keystoneAuth(client, credentials);
  return storageUrlOverride === undefined ? session : { ...session, storageUrl: parseStorageUrl(storageUrlOverride, "storageUrl setting") };
}

async function tempAuth(client: SwiftHttpClient, credentials: SwiftTempAuthCredentials): Promise<SwiftSession> {
  const authUrl = parseUrl(credentials.authUrl, "tempauth authUrl");
  const context = `swift: tempauth at ${authUrl.origin}${authUrl.pathname} as ${credentials.user}`;
  const response = await client.request({
    method: "GET",
    origin: authUrl,
    path: `${authUrl.pathname}${authUrl.search}`,
    headers: { "x-auth-user": credentials.user, "x-auth-key": credentials.key },
    idempotent: true,
  });
  checkAuthStatus(response.status, context);
  const storageUrl = singleHeader(response.headers["x-storage-url"]);
  const token = singleHeader(response.headers["x-auth-token"]);
  if (storageUrl === undefined || token === undefined) {
    throw new StoreError("Internal", `${context}: the reply lacks X-Storage-Url or X-Auth-Token (is authUrl a tempauth /auth/v1.0 URL?)`);
  }
  return { storageUrl: parseStorageUrl(storageUrl, context), token };
}

async function keystoneAuth(client: SwiftHttpClient, credentials: SwiftKeystoneCredentials): Promise<SwiftSession> {
  const identityUrl = parseUrl(credentials.authUrl.replace(/\/+$/, ""), "Keystone authUrl");
  const context = `swift: Keystone at ${identityUrl.origin}${identityUrl.pathname} as ${credentials.userName} (project ${credentials.projectName})`;
  const requestBody = {
    auth: {
      identity: {
        methods: ["password"],
        password: {
          user: { name: credentials.userName, domain: { name: credentials.userDomainName ?? "Default" }, password: credentials.password },
        },
      },
      scope: { project: { name: credentials.projectName, domain: { name: credentials.projectDomainName ?? "Default" } } },
    },
  };
  const response = await client.request({
    method: "POST",
    origin: identityUrl,
    path: `${identityUrl.pathname}/auth/tokens`,
    headers: { "content-type": "application/json", accept: "application/json" },
    body: { data: Buffer.from(JSON.stringify(requestBody), "utf8") },
    idempotent: true,
  });
  checkAuthStatus(response.status, context);
  const token = singleHeader(response.headers["x-subject-token"]);
  if (token === undefined) throw new StoreError("Internal", `${context}: the reply lacks X-Subject-Token (is authUrl the Identity v3 URL?)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(response.body.toString("utf8"));
  } catch (error) {
    throw new StoreError("Internal", `${context}: the token reply is not JSON`, { cause: error });
  }
  const endpoint = findObjectStoreEndpoint(parsed, credentials.endpointInterface ?? "public", credentials.region);
  if (typeof endpoint !== "string") throw new StoreError("Internal", `${context}: ${endpoint.problem}`);
  return { storageUrl: parseStorageUrl(endpoint, context), token };
}

/**
 * The URL of the object-store endpoint with `endpointInterface` (and `region`, if given) in a
 * Keystone v3 token body ({token: {catalog: [{type, endpoints: [{interface, region, region_id, url}]}]}}),
 * or what is missing.
 */
export function findObjectStoreEndpoint(tokenBody: unknown, endpointInterface: string, region: string | undefined): string | { problem: string } {
  const catalog = (tokenBody as { token?: { catalog?: unknown } } | null)?.token?.catalog;
  if (!Array.isArray(catalog)) return { problem: "the token has no catalog (is the project scope right?)" };
  const services = catalog.filter((service): service is { endpoints?: unknown } => (service as { type?: unknown } | null)?.type === "object-store");
  if (services.length === 0) return { problem: "the catalog has no object-store service: register Swift in Keystone, or set storageUrl" };
  const where = `interface ${endpointInterface}${region === undefined ? "" : `, region ${region}`}`;
  for (const service of services) {
    if (!Array.isArray(service.endpoints)) continue;
    for (const endpoint of service.endpoints as Array<Record<string, unknown> | null>) {
      if (endpoint === null || typeof endpoint !== "object" || endpoint.interface !== endpointInterface || typeof endpoint.url !== "string") continue;
      if (region !== undefined && endpoint.region_id !== region && endpoint.region !== region) continue;
      return endpoint.url;
    }
  }
  return { problem: `the catalog has no object-store endpoint with ${where}: check the region and interface settings` };
}

function checkAuthStatus(status: number, context: string): void {
  if (status === 200 || status === 201 || status === 204) return;
  if (status === 401 || status === 403) throw new StoreError("Internal", `${context}: HTTP ${status}, ${CREDENTIALS_HINT}`);
  if (status >= 500) throw new StoreError("Transient", `${context}: HTTP ${status}, the auth service failed or is overloaded`);
  throw new StoreError("Internal", `${context}: HTTP ${status}, unexpected reply (is authUrl right?)`);
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  const single = Array.isArray(value) ? value[0] : value;
  return single === undefined || single === "" ? undefined : single;
}

function parseUrl(text: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch (error) {
    throw new StoreError("Invalid", `swift: ${what} ${JSON.stringify(text)} is not a URL`, { cause: error });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new StoreError("Invalid", `swift: ${what} ${JSON.stringify(text)}: use http or https`);
  return url;
}

function parseStorageUrl(text: string, context: string): URL {
  const url = parseUrl(text, `storage URL from ${context}`);
  url.pathname = url.pathname.replace(/\/+$/, "");
  return url;
}

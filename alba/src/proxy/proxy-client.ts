// AlbaApi over the proxy's HTTP API (alba/docs/proxy-protocol.md), for the volumedriver's `alba`
// store and the CLI. One keep-alive agent; a request that cannot connect, is reset or gets no
// answer within requestTimeoutMs fails as AlbaError("Unavailable"); the proxy's {code, message}
// errors come back as the AlbaError of that code. A request that finds its reused keep-alive
// socket closed by the server (ECONNRESET before any answer) is sent again once on a new socket.
import http from "node:http";
import type { ByteRange } from "../asd/asd-api.ts";
import {
  AlbaError, isAlbaError, type AlbaApi, type AlbaErrorKind, type AlbaListOptions, type AlbaListPage, type AlbaObjectInfo, type AlbaPutOptions,
  type AlbaReadOptions,
  type AsdStatus, type DiskSafety,
} from "../client/alba-client-api.ts";
import type { AsdRecord, NamespaceRecord, ObjectManifest } from "../metadata/metadata-store.ts";
import type { Preset, PresetChanges } from "../preset/preset.ts";
import { PROXY_API_PREFIX } from "./proxy-server.ts";
import { isConnectFailure, isLoopbackHost } from "../net/loopback.ts";

export const ALBA_PROXY_URL_DEFAULT = "http://127.0.0.1:8600";

export interface ProxyClientSettings {
  /** No answer for this long: Unavailable. Large puts count from the first byte sent. */
  requestTimeoutMs: number;
  /** Connections to the proxy at once. */
  socketsMax: number;
  /** Idle keep-alive sockets are closed after this (shorter than the server's keep-alive timeout). */
  idleSocketTimeoutMs: number;
  /** The largest response body accepted. */
  responseSizeBytesMax: number;
  /**
   * For a proxy on a loopback address, use the Unix socket it names in /v1/health (after checking
   * it reaches the same proxy): half the CPU per byte of loopback TCP.
   */
  useLocalSocket: boolean;
}

export const PROXY_CLIENT_SETTINGS_DEFAULT: ProxyClientSettings = {
  requestTimeoutMs: 120_000,
  socketsMax: 32,
  idleSocketTimeoutMs: 30_000,
  responseSizeBytesMax: 1024 * 1024 * 1024,
  useLocalSocket: true,
};

const ERROR_KINDS: ReadonlySet<string> = new Set<AlbaErrorKind>(["NotFound", "PreconditionFailed", "NoSatisfiablePolicy", "Unavailable", "Invalid", "Conflict", "Corrupt"]);

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

interface RequestOptions {
  method: string;
  path: string;
  headers?: http.OutgoingHttpHeaders;
  body?: Uint8Array;
}

/** One path segment; "." and ".." are escaped too, so nothing on the way treats them as dot segments. */
function encodeSegment(value: string): string {
  return encodeURIComponent(value).replace(/\./g, "%2E");
}

function errorFromResponse(response: Response, what: string): AlbaError {
  let code: string | undefined;
  let message = `${what}: HTTP ${response.status}`;
  try {
    const parsed = JSON.parse(response.body.toString("utf8")) as { code?: unknown; message?: unknown };
    if (typeof parsed.code === "string") code = parsed.code;
    if (typeof parsed.message === "string") message = parsed.message;
  } catch {
    // Not our JSON (e.g. HEAD, or something else answering): the status decides.
    code = response.headers["x-alba-error-code"] as string | undefined;
  }
  if (code !== undefined && ERROR_KINDS.has(code)) return new AlbaError(code as AlbaErrorKind, message);
  // Internal errors of the proxy (and anything 5xx) may pass: retry later.
  if (response.status >= 500) return new AlbaError("Unavailable", message);
  if (response.status === 404) return new AlbaError("NotFound", message);
  return new AlbaError("Invalid", message);
}

function quoted(etag: string): string {
  return `"${etag}"`;
}

export class ProxyClient implements AlbaApi {
  readonly url: URL;
  private readonly agent: http.Agent;
  private readonly settings: ProxyClientSettings;
  private closed = false;
  /** The proxy's Unix socket, once found and checked; requests go there instead of TCP. */
  private localSocketPath: string | undefined;
  private localSocketDiscovery: Promise<void> | undefined;

  constructor(url: string = ALBA_PROXY_URL_DEFAULT, settings: Partial<ProxyClientSettings> = {}) {
    this.url = new URL(url);
    if (this.url.protocol !== "http:") throw new AlbaError("Invalid", `proxy URL ${url}: only http:// is supported`);
    this.settings = { ...PROXY_CLIENT_SETTINGS_DEFAULT, ...settings };
    this.agent = new http.Agent({ keepAlive: true, maxSockets: this.settings.socketsMax, maxFreeSockets: this.settings.socketsMax, timeout: this.settings.idleSocketTimeoutMs });
  }

  /** Whether requests currently go over the proxy's Unix socket (for tests and diagnostics). */
  get usesLocalSocket(): boolean {
    return this.localSocketPath !== undefined;
  }

  /**
   * Asks the proxy (over TCP) for its local socket and checks that the socket answers as the same
   * proxy instance: a socket path names a file on this host, and only a loopback proxy is on this
   * host. Any failure leaves requests on TCP and lets a later request try again.
   */
  private async discoverLocalSocket(): Promise<void> {
    try {
      const healthPath = `${PROXY_API_PREFIX}/health`;
      const overTcp = JSON.parse((await this.send({ method: "GET", path: healthPath }, "health", null)).body.toString("utf8")) as { instanceId?: unknown; localSocketPath?: unknown };
      if (typeof overTcp.localSocketPath !== "string" || typeof overTcp.instanceId !== "string") return;
      const overSocket = JSON.parse((await this.send({ method: "GET", path: healthPath }, "health", overTcp.localSocketPath)).body.toString("utf8")) as { instanceId?: unknown };
      if (overSocket.instanceId === overTcp.instanceId) this.localSocketPath = overTcp.localSocketPath;
    } catch {
      this.localSocketDiscovery = undefined;
    }
  }

  private async request(options: RequestOptions, what: string): Promise<Response> {
    if (this.closed) throw new AlbaError("Unavailable", "the proxy client is closed");
    if (this.settings.useLocalSocket && this.localSocketPath === undefined && isLoopbackHost(this.url.hostname)) {
      this.localSocketDiscovery ??= this.discoverLocalSocket();
      await this.localSocketDiscovery;
    }
    const socketPath = this.localSocketPath ?? null;
    try {
      try {
        return await this.send(options, what, socketPath);
      } catch (error) {
        if (error instanceof StaleSocketError) return await this.send(options, what, socketPath);
        throw error;
      }
    } catch (error) {
      // Nobody listens on the socket any more (the proxy stopped or moved): back to TCP, and find
      // the socket again later. The error itself is the caller's, as over TCP.
      if (socketPath !== null && isAlbaError(error, "Unavailable") && isConnectFailure(error)) {
        this.localSocketPath = undefined;
        this.localSocketDiscovery = undefined;
      }
      throw error;
    }
  }

  /** One request, over the Unix socket `socketPath` or (null) over TCP. */
  private send(options: RequestOptions, what: string, socketPath: string | null): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      const body = options.body;
      const request = http.request({
        ...(socketPath === null ? { host: this.url.hostname.replace(/^\[|\]$/g, ""), port: this.url.port === "" ? 80 : Number(this.url.port) } : { socketPath }),
        method: options.method, path: options.path, agent: this.agent,
        headers: { ...options.headers, ...(body === undefined ? {} : { "content-length": body.length, "content-type": "application/octet-stream" }) },
      });
      let settled = false;
      const fail = (error: unknown): void => {
        if (settled) return;
        settled = true;
        request.destroy();
        reject(error);
      };
      const timer = setTimeout(() => fail(new AlbaError("Unavailable", `${what}: no answer from the proxy at ${this.url.host} within ${this.settings.requestTimeoutMs} ms`)), this.settings.requestTimeoutMs);
      request.on("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (request.reusedSocket && (error.code === "ECONNRESET" || error.code === "EPIPE") && !settled) {
          settled = true;
          reject(new StaleSocketError());
          return;
        }
        fail(new AlbaError("Unavailable", `${what}: cannot reach the proxy at ${this.url.host}: ${error.message}`, { cause: error }));
      });
      request.on("response", (response) => {
        const declared = Number(response.headers["content-length"] ?? "0");
        if (declared > this.settings.responseSizeBytesMax) {
          clearTimeout(timer);
          fail(new AlbaError("Unavailable", `${what}: response of ${declared} bytes exceeds ${this.settings.responseSizeBytesMax}`));
          return;
        }
        const parts: Buffer[] = [];
        let receivedBytes = 0;
        response.on("data", (part: Buffer) => {
          receivedBytes += part.length;
          if (receivedBytes > this.settings.responseSizeBytesMax) {
            clearTimeout(timer);
            fail(new AlbaError("Unavailable", `${what}: response exceeds ${this.settings.responseSizeBytesMax} bytes`));
            return;
          }
          parts.push(part);
        });
        response.on("end", () => {
          clearTimeout(timer);
          if (settled) return;
          // A streamed GET that fails after its headers is cut short: never take a short body as the object.
          if (options.method !== "HEAD" && response.headers["content-length"] !== undefined && receivedBytes !== declared) {
            fail(new AlbaError("Unavailable", `${what}: the proxy sent ${receivedBytes} of ${declared} bytes`));
            return;
          }
          settled = true;
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts, receivedBytes) });
        });
        response.on("error", (error) => {
          clearTimeout(timer);
          fail(new AlbaError("Unavailable", `${what}: connection to the proxy broke: ${error.message}`, { cause: error }));
        });
      });
      request.end(body === undefined ? undefined : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    });
  }

  private async json<T>(options: RequestOptions, what: string, expected: number[] = [200]): Promise<T> {
    const response = await this.request(options, what);
    if (!expected.includes(response.status)) throw errorFromResponse(response, what);
    return JSON.parse(response.body.toString("utf8")) as T;
  }

  private async expectStatus(options: RequestOptions, what: string, expected: number[]): Promise<Response> {
    const response = await this.request(options, what);
    if (!expected.includes(response.status)) throw errorFromResponse(response, what);
    return response;
  }

  private jsonBody(value: unknown): { headers: http.OutgoingHttpHeaders; body: Buffer } {
    return { headers: { "content-type": "application/json" }, body: Buffer.from(JSON.stringify(value), "utf8") };
  }

  private objectPath(namespace: string, key: string, sub = "objects"): string {
    return `${PROXY_API_PREFIX}/namespaces/${encodeSegment(namespace)}/${sub}/${encodeSegment(key)}`;
  }

  // ---- namespaces ----

  async createNamespace(name: string, options: { presetName?: string } = {}): Promise<NamespaceRecord> {
    return this.json({ method: "PUT", path: `${PROXY_API_PREFIX}/namespaces/${encodeSegment(name)}`, ...this.jsonBody(options) }, `create namespace ${name}`, [201]);
  }

  async deleteNamespace(name: string): Promise<void> {
    await this.expectStatus({ method: "DELETE", path: `${PROXY_API_PREFIX}/namespaces/${encodeSegment(name)}` }, `delete namespace ${name}`, [204]);
  }

  async listNamespaces(): Promise<NamespaceRecord[]> {
    return (await this.json<{ namespaces: NamespaceRecord[] }>({ method: "GET", path: `${PROXY_API_PREFIX}/namespaces` }, "list namespaces")).namespaces;
  }

  async getNamespace(name: string): Promise<NamespaceRecord | undefined> {
    const response = await this.request({ method: "GET", path: `${PROXY_API_PREFIX}/namespaces/${encodeSegment(name)}` }, `namespace ${name}`);
    if (response.status === 404) {
      const error = errorFromResponse(response, `namespace ${name}`);
      if (error.kind === "NotFound") return undefined;
      throw error;
    }
    if (response.status !== 200) throw errorFromResponse(response, `namespace ${name}`);
    return JSON.parse(response.body.toString("utf8")) as NamespaceRecord;
  }

  // ---- objects ----

  async put(namespace: string, key: string, data: Uint8Array, options: AlbaPutOptions = {}): Promise<AlbaObjectInfo> {
    const headers: http.OutgoingHttpHeaders = {};
    if (options.ifAbsent === true) headers["if-none-match"] = "*";
    if (options.ifMatch !== undefined) headers["if-match"] = quoted(options.ifMatch);
    return this.json({ method: "PUT", path: this.objectPath(namespace, key), headers, body: data }, `put ${namespace}/${key}`);
  }

  async get(namespace: string, key: string): Promise<Buffer> {
    return (await this.expectStatus({ method: "GET", path: this.objectPath(namespace, key) }, `get ${namespace}/${key}`, [200])).body;
  }

  async getRanges(namespace: string, key: string, ranges: readonly ByteRange[], options: AlbaReadOptions = {}): Promise<Buffer[]> {
    const what = `get ranges of ${namespace}/${key}`;
    const body = this.jsonBody({ ranges });
    if (options.ifMatch !== undefined) body.headers["if-match"] = quoted(options.ifMatch);
    if (options.sequential === true) body.headers["x-alba-sequential"] = "1";
    const response = await this.expectStatus({ method: "POST", path: this.objectPath(namespace, key, "ranges"), ...body }, what, [200]);
    const lengths = String(response.headers["x-alba-part-lengths"] ?? "").split(",").filter((text) => text !== "").map(Number);
    if (lengths.length !== ranges.length || lengths.reduce((sum, length) => sum + length, 0) !== response.body.length) {
      throw new AlbaError("Unavailable", `${what}: the proxy's answer does not match its part lengths`);
    }
    const parts: Buffer[] = [];
    let offset = 0;
    for (const length of lengths) {
      parts.push(response.body.subarray(offset, offset + length));
      offset += length;
    }
    return parts;
  }

  async head(namespace: string, key: string): Promise<AlbaObjectInfo | undefined> {
    const what = `head ${namespace}/${key}`;
    const response = await this.request({ method: "HEAD", path: this.objectPath(namespace, key) }, what);
    if (response.status === 404 && response.headers["x-alba-error-code"] === undefined) return undefined;
    if (response.status !== 200) throw errorFromResponse(response, what);
    const etag = String(response.headers.etag ?? "").replace(/^"|"$/g, "");
    return { key, sizeBytes: Number(response.headers["x-alba-size-bytes"]), etag };
  }

  async delete(namespace: string, key: string, options: { ifMatch?: string } = {}): Promise<void> {
    const headers: http.OutgoingHttpHeaders = options.ifMatch === undefined ? {} : { "if-match": quoted(options.ifMatch) };
    await this.expectStatus({ method: "DELETE", path: this.objectPath(namespace, key), headers }, `delete ${namespace}/${key}`, [204]);
  }

  async list(namespace: string, options: AlbaListOptions = {}): Promise<AlbaListPage> {
    const query = new URLSearchParams();
    if (options.prefix !== undefined) query.set("prefix", options.prefix);
    if (options.startAfter !== undefined) query.set("startAfter", options.startAfter);
    if (options.limitKeys !== undefined) query.set("limitKeys", String(options.limitKeys));
    const suffix = query.size === 0 ? "" : `?${query.toString()}`;
    return this.json({ method: "GET", path: `${PROXY_API_PREFIX}/namespaces/${encodeSegment(namespace)}/objects${suffix}` }, `list ${namespace}`);
  }

  async getManifest(namespace: string, key: string): Promise<ObjectManifest | undefined> {
    const what = `manifest of ${namespace}/${key}`;
    return (await this.json<ObjectManifest | null>({ method: "GET", path: this.objectPath(namespace, key, "manifests") }, what)) ?? undefined;
  }

  // ---- administration ----

  async claimAsd(host: string, port: number): Promise<AsdRecord> {
    return this.json({ method: "POST", path: `${PROXY_API_PREFIX}/asds`, ...this.jsonBody({ host, port }) }, `claim ASD ${host}:${port}`, [201]);
  }

  async listAsds(): Promise<AsdStatus[]> {
    return (await this.json<{ asds: AsdStatus[] }>({ method: "GET", path: `${PROXY_API_PREFIX}/asds` }, "list ASDs")).asds;
  }

  async addPreset(preset: Preset): Promise<void> {
    await this.expectStatus({ method: "POST", path: `${PROXY_API_PREFIX}/presets`, ...this.jsonBody(preset) }, `add preset ${preset.name}`, [201]);
  }

  /** Presets as the proxy shows them: without encryption keys (`encrypted` says whether one is set). */
  async listPresets(): Promise<Preset[]> {
    return (await this.json<{ presets: Preset[] }>({ method: "GET", path: `${PROXY_API_PREFIX}/presets` }, "list presets")).presets;
  }

  /** The preset as the proxy shows it after the change: without its encryption key. */
  async updatePreset(name: string, changes: PresetChanges): Promise<Preset> {
    return this.json({ method: "PATCH", path: `${PROXY_API_PREFIX}/presets/${encodeSegment(name)}`, ...this.jsonBody(changes) }, `update preset ${name}`);
  }

  async deletePreset(name: string): Promise<void> {
    await this.expectStatus({ method: "DELETE", path: `${PROXY_API_PREFIX}/presets/${encodeSegment(name)}` }, `delete preset ${name}`, [204]);
  }

  async diskSafety(): Promise<DiskSafety[]> {
    return (await this.json<{ presets: DiskSafety[] }>({ method: "GET", path: `${PROXY_API_PREFIX}/disk-safety` }, "disk safety")).presets;
  }

  /** GET /v1/health: resolves when the proxy answers. */
  async health(): Promise<void> {
    await this.json({ method: "GET", path: `${PROXY_API_PREFIX}/health` }, "health");
  }

  /** A JSON request to an extension route (e.g. POST /v1/maintenance/run). */
  async extension<T>(method: "GET" | "POST" | "PUT" | "DELETE", path: string, body?: unknown): Promise<T> {
    return this.json({ method, path, ...(body === undefined ? {} : this.jsonBody(body)) }, `${method} ${path}`, [200, 201, 202]);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.agent.destroy();
  }
}

class StaleSocketError extends Error {}

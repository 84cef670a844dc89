// The Alba proxy's HTTP API (alba/docs/proxy-protocol.md): AlbaApi over HTTP/1.1 for the
// volumedriver's `alba` store and the `ovs alba` CLI. Plain node:http rather than a framework:
// object bodies are large and go straight from the socket to one Buffer (sized by Content-Length,
// bounded by objectSizeBytesMax) and back with res.end(buffer), no per-request schema work.
// Protocol code only: decode and validate the request, call AlbaApi, encode the answer. Errors
// map to HTTP status in one place (statusForError); the body is always {code, message}.
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { pino } from "pino";
import type { ByteRange } from "../asd/asd-api.ts";
import type { BufferPool } from "../memory/buffer-pool.ts";
import { AlbaError, isAlbaError, type AlbaApi, type AlbaErrorKind, type AlbaObjectInfo } from "../client/alba-client-api.ts";
import type { Preset, PresetChanges } from "../preset/preset.ts";

export const PROXY_API_PREFIX = "/v1";
/** Unix socket paths are limited to 108 bytes (sun_path). */
export const LOCAL_SOCKET_PATH_BYTES_MAX = 100;
/** A whole-object GET whose object is replaced this many times between its head and first read gives up. */
const STREAM_START_ATTEMPTS_MAX = 3;

export interface ProxyServerSettings {
  /** The largest object body a PUT accepts (413 beyond). */
  objectSizeBytesMax: number;
  /** The largest JSON request body. */
  jsonBodySizeBytesMax: number;
  /** Ranges one ranged read may ask for. */
  rangesPerRequestMax: number;
  /** Idle keep-alive connections are closed after this (longer than ProxyClient's idle timeout). */
  keepAliveTimeoutMs: number;
  /** A request whose headers and body take longer than this is dropped. */
  requestTimeoutMs: number;
  /** A whole-object GET is read and sent in parts of this size, one read ahead of the one being sent. */
  streamPartSizeBytes: number;
}

export const PROXY_SERVER_SETTINGS_DEFAULT: ProxyServerSettings = {
  objectSizeBytesMax: 256 * 1024 * 1024,
  jsonBodySizeBytesMax: 1024 * 1024,
  rangesPerRequestMax: 4096,
  keepAliveTimeoutMs: 65_000,
  requestTimeoutMs: 300_000,
  streamPartSizeBytes: 16 * 1024 * 1024,
};

/** An extra route (e.g. maintenance's POST /v1/maintenance/run): JSON in, JSON out. */
export interface ProxyExtraRoute {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** Exact path, e.g. "/v1/maintenance/run". */
  path: string;
  handler: (body: unknown, query: URLSearchParams) => Promise<{ status?: number; body: unknown }>;
}

export interface ProxyServerOptions {
  api: AlbaApi;
  /**
   * Also serve on this Unix socket (a stale socket file is replaced), for clients on this host:
   * loopback TCP costs about twice the CPU per byte, and every object byte crosses this hop.
   * Clients find it through GET /v1/health. Paths over LOCAL_SOCKET_PATH_BYTES_MAX are skipped.
   */
  localSocketPath?: string;
  /**
   * Where large request bodies come from and where response buffers go back to once sent: give the
   * same pool to the AlbaClient (outputBuffers) so object reads reuse memory end to end.
   */
  buffers?: BufferPool;
  settings?: Partial<ProxyServerSettings>;
  logger?: Logger;
  extraRoutes?: readonly ProxyExtraRoute[];
}

/** The one table from error kinds to HTTP status codes (documented in proxy-protocol.md). */
const STATUS_BY_KIND: Record<AlbaErrorKind | "Internal", number> = {
  Invalid: 400,
  NotFound: 404,
  Conflict: 409,
  PreconditionFailed: 412,
  Corrupt: 500,
  Internal: 500,
  Unavailable: 503,
  // 507 Insufficient Storage (RFC 4918 §11.5): the backend cannot place the object now.
  NoSatisfiablePolicy: 507,
};

class HttpError extends Error {
  constructor(readonly status: number, readonly code: AlbaErrorKind | "Internal", message: string) {
    super(message);
  }
}

function statusForError(error: unknown): { status: number; code: string; message: string } {
  if (error instanceof HttpError) return { status: error.status, code: error.code, message: error.message };
  if (isAlbaError(error)) return { status: STATUS_BY_KIND[error.kind], code: error.kind, message: error.message };
  return { status: 500, code: "Internal", message: error instanceof Error ? error.message : String(error) };
}

function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  response.end(text);
}

function sendEmpty(response: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders = {}): void {
  response.writeHead(status, { ...headers, "content-length": 0 });
  response.end();
}

/** The Content-Length of a request (checked against `limitBytes`: 413 beyond), or undefined without one. */
function declaredLength(request: http.IncomingMessage, limitBytes: number): number | undefined {
  const declared = request.headers["content-length"];
  if (declared === undefined) return undefined;
  const declaredBytes = Number(declared);
  if (!Number.isSafeInteger(declaredBytes) || declaredBytes < 0) throw new HttpError(400, "Invalid", `bad Content-Length ${declared}`);
  if (declaredBytes > limitBytes) throw new HttpError(413, "Invalid", `body of ${declaredBytes} bytes exceeds the limit of ${limitBytes}`);
  return declaredBytes;
}

/** The request body as one Buffer, at most `limitBytes` (413 beyond). */
function readBody(request: http.IncomingMessage, limitBytes: number, buffers?: BufferPool): Promise<Buffer> {
  const declared = request.headers["content-length"];
  const declaredBytes = declared === undefined ? undefined : Number(declared);
  if (declaredBytes !== undefined && (!Number.isSafeInteger(declaredBytes) || declaredBytes < 0)) {
    return Promise.reject(new HttpError(400, "Invalid", `bad Content-Length ${declared}`));
  }
  if (declaredBytes !== undefined && declaredBytes > limitBytes) {
    return Promise.reject(new HttpError(413, "Invalid", `body of ${declaredBytes} bytes exceeds the limit of ${limitBytes}`));
  }
  return new Promise((resolve, reject) => {
    // With a Content-Length the body lands in one preallocated buffer (no concat of a 64 MiB list).
    const preallocated = declaredBytes === undefined ? undefined : (buffers?.take(declaredBytes) ?? Buffer.allocUnsafe(declaredBytes));
    const parts: Buffer[] = [];
    let receivedBytes = 0;
    request.on("data", (part: Buffer) => {
      if (receivedBytes + part.length > (declaredBytes ?? limitBytes)) {
        request.removeAllListeners("data");
        request.resume();
        if (preallocated !== undefined) buffers?.release(preallocated);
        reject(new HttpError(413, "Invalid", `body exceeds ${declaredBytes ?? limitBytes} bytes`));
        return;
      }
      if (preallocated !== undefined) part.copy(preallocated, receivedBytes);
      else parts.push(part);
      receivedBytes += part.length;
    });
    request.on("end", () => {
      if (preallocated === undefined) return resolve(Buffer.concat(parts, receivedBytes));
      if (receivedBytes !== declaredBytes) {
        buffers?.release(preallocated);
        return reject(new HttpError(400, "Invalid", `body has ${receivedBytes} bytes, Content-Length says ${declaredBytes}`));
      }
      resolve(preallocated);
    });
    request.on("error", reject);
  });
}

/** A request body with a Content-Length, filling one buffer in order while readers wait for the parts they need. */
interface StreamedBody {
  data: Buffer;
  /** Resolves once bytes [0, endOffsetBytes) have arrived; rejects if the body is cut first. */
  available(endOffsetBytes: number): Promise<void>;
  /** Resolves when the whole body has arrived; rejects if it is cut, or longer than declared. */
  complete: Promise<void>;
}

/**
 * Starts receiving a body of `declaredBytes` (its Content-Length, already checked against the limit)
 * into a buffer from `buffers`, so a put can code the first chunks while the rest arrives.
 */
function streamBody(request: http.IncomingMessage, declaredBytes: number, buffers: BufferPool | undefined): StreamedBody {
  const data = buffers?.take(declaredBytes) ?? Buffer.allocUnsafe(declaredBytes);
  let receivedBytes = 0;
  let failure: HttpError | undefined;
  const waiters: Array<{ endOffsetBytes: number; resolve: () => void; reject: (error: unknown) => void }> = [];
  const settleWaiters = (): void => {
    for (let index = waiters.length - 1; index >= 0; index--) {
      const waiter = waiters[index]!;
      if (failure !== undefined) waiter.reject(failure);
      else if (receivedBytes >= waiter.endOffsetBytes) waiter.resolve();
      else continue;
      waiters.splice(index, 1);
    }
  };
  const complete = new Promise<void>((resolve, reject) => {
    const fail = (error: HttpError): void => {
      if (failure !== undefined) return;
      failure = error;
      settleWaiters();
      reject(error);
    };
    request.on("data", (part: Buffer) => {
      if (failure !== undefined) return;
      if (receivedBytes + part.length > declaredBytes) {
        request.resume();
        fail(new HttpError(413, "Invalid", `body exceeds its Content-Length of ${declaredBytes} bytes`));
        return;
      }
      part.copy(data, receivedBytes);
      receivedBytes += part.length;
      settleWaiters();
    });
    request.on("end", () => {
      if (receivedBytes !== declaredBytes) fail(new HttpError(400, "Invalid", `body has ${receivedBytes} bytes, Content-Length says ${declaredBytes}`));
      else resolve();
    });
    request.on("error", () => fail(new HttpError(400, "Invalid", "the request body was cut")));
    request.on("aborted", () => fail(new HttpError(400, "Invalid", "the request body was cut")));
  });
  complete.catch(() => undefined); // observed by whoever awaits it; a cut body also rejects the waiters
  return {
    data,
    complete,
    available: (endOffsetBytes) => {
      if (failure !== undefined) return Promise.reject(failure);
      if (receivedBytes >= endOffsetBytes) return Promise.resolve();
      return new Promise<void>((resolve, reject) => waiters.push({ endOffsetBytes, resolve, reject }));
    },
  };
}

async function readJson(request: http.IncomingMessage, limitBytes: number): Promise<unknown> {
  const body = await readBody(request, limitBytes);
  if (body.length === 0) return {};
  try {
    return JSON.parse(body.toString("utf8")) as unknown;
  } catch {
    throw new HttpError(400, "Invalid", "the request body is not valid JSON");
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses `Range: bytes=START-END` or `bytes=START-` (one range; suffix ranges are not supported). */
function parseRangeHeader(header: string): ByteRange {
  const match = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (match === null) throw new HttpError(400, "Invalid", `unsupported Range ${JSON.stringify(header)}: use bytes=START-END or bytes=START- (one range)`);
  const offsetBytes = Number(match[1]);
  const lastBytes = match[2] === "" ? Number.MAX_SAFE_INTEGER - 1 : Number(match[2]);
  if (lastBytes < offsetBytes) throw new HttpError(400, "Invalid", `Range end ${lastBytes} is before its start ${offsetBytes}`);
  return { offsetBytes, lengthBytes: Math.min(lastBytes - offsetBytes + 1, Number.MAX_SAFE_INTEGER - offsetBytes) };
}

function parseRanges(body: unknown, rangesMax: number): ByteRange[] {
  if (!isRecord(body) || !Array.isArray(body.ranges)) throw new HttpError(400, "Invalid", "expected {\"ranges\": [{\"offsetBytes\": N, \"lengthBytes\": N}, ...]}");
  if (body.ranges.length > rangesMax) throw new HttpError(400, "Invalid", `at most ${rangesMax} ranges per request`);
  return body.ranges.map((range: unknown) => {
    if (!isRecord(range) || typeof range.offsetBytes !== "number" || typeof range.lengthBytes !== "number") {
      throw new HttpError(400, "Invalid", "each range needs numeric offsetBytes and lengthBytes");
    }
    return { offsetBytes: range.offsetBytes, lengthBytes: range.lengthBytes };
  });
}

function optionalString(query: URLSearchParams, name: string): string | undefined {
  return query.get(name) ?? undefined;
}

/** Presets leave the proxy without their encryption key: the key stays in the metadata store. */
function presetWithoutSecrets(preset: Preset): Preset & { encrypted: boolean } {
  const { encryptionKeyHex: _secret, ...rest } = preset;
  return { ...rest, encrypted: preset.encryption !== "none" };
}

function etagHeader(etag: string): string {
  return `"${etag}"`;
}

/** An If-Match / If-None-Match value without its quotes (weak etags are not ours). */
function unquoteEtag(value: string): string {
  const trimmed = value.trim();
  return trimmed.startsWith("\"") && trimmed.endsWith("\"") && trimmed.length >= 2 ? trimmed.slice(1, -1) : trimmed;
}

export interface RunningProxyServer {
  server: http.Server;
  host: string;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Builds the request handler (also usable with any http.Server). */
export function proxyRequestHandler(options: ProxyServerOptions): http.RequestListener {
  const api = options.api;
  const settings = { ...PROXY_SERVER_SETTINGS_DEFAULT, ...options.settings };
  const logger = (options.logger ?? pino({ level: "silent" })).child({ component: "proxy-server" });
  const extraRoutes = options.extraRoutes ?? [];
  const buffers = options.buffers;
  /** Response buffers go back to the pool once the response is done with them (sent, or the connection gone). */
  const releaseWhenSent = (response: http.ServerResponse, sent: readonly Buffer[]): void => {
    if (buffers === undefined) return;
    response.once("close", () => {
      for (const buffer of sent) buffers.release(buffer);
    });
  };
  // Names this server in /v1/health, so a client can check that a socket reaches the same proxy.
  const instanceId = randomBytes(8).toString("hex");
  const localSocketPath = options.localSocketPath !== undefined && Buffer.byteLength(options.localSocketPath) <= LOCAL_SOCKET_PATH_BYTES_MAX
    ? options.localSocketPath : undefined;

  async function route(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    // Not `new URL(...).pathname`: WHATWG URL parsing removes "." and ".." segments (also as
    // %2E), which are valid object keys here. The raw path is split and decoded by hand.
    const target = request.url ?? "/";
    const queryStart = target.indexOf("?");
    const url = { pathname: queryStart === -1 ? target : target.slice(0, queryStart) };
    const method = request.method ?? "GET";
    const query = new URLSearchParams(queryStart === -1 ? "" : target.slice(queryStart + 1));
    for (const extra of extraRoutes) {
      if (extra.method === method && extra.path === url.pathname) {
        const result = await extra.handler(await readJson(request, settings.jsonBodySizeBytesMax), query);
        return sendJson(response, result.status ?? 200, result.body);
      }
    }
    // Path segments are percent-decoded one by one, so a key may hold any character, "/" included.
    const raw = url.pathname.split("/").slice(1);
    if (`/${raw[0]}` !== PROXY_API_PREFIX) throw new HttpError(404, "Invalid", `no such route ${method} ${url.pathname}`);
    let segments: string[];
    try {
      segments = raw.slice(1).map((segment) => decodeURIComponent(segment));
    } catch {
      throw new HttpError(400, "Invalid", "bad percent-encoding in the path");
    }
    const [resource, name, sub, key] = segments;
    const noRoute = (): never => { throw new HttpError(404, "Invalid", `no such route ${method} ${url.pathname}`); };

    switch (resource) {
      case "health":
        return sendJson(response, 200, { status: "ok", instanceId, ...(localSocketPath === undefined ? {} : { localSocketPath }) });
      case "asds":
        if (segments.length !== 1) return noRoute();
        if (method === "GET") return sendJson(response, 200, { asds: await api.listAsds() });
        if (method === "POST") {
          const body = await readJson(request, settings.jsonBodySizeBytesMax);
          if (!isRecord(body) || typeof body.host !== "string" || typeof body.port !== "number") throw new HttpError(400, "Invalid", "expected {\"host\": \"H\", \"port\": N}");
          return sendJson(response, 201, await api.claimAsd(body.host, body.port));
        }
        return noRoute();
      case "presets":
        if (segments.length === 1) {
          if (method === "GET") return sendJson(response, 200, { presets: (await api.listPresets()).map(presetWithoutSecrets) });
          if (method === "POST") {
            await api.addPreset(await readJson(request, settings.jsonBodySizeBytesMax) as Preset);
            return sendEmpty(response, 201);
          }
          return noRoute();
        }
        // /v1/presets/NAME; the changes are checked by the metadata store (validatePresetChanges).
        if (segments.length !== 2 || name === undefined || name === "") return noRoute();
        if (method === "PATCH") {
          const updated = await api.updatePreset(name, await readJson(request, settings.jsonBodySizeBytesMax) as PresetChanges);
          return sendJson(response, 200, presetWithoutSecrets(updated));
        }
        if (method === "DELETE") {
          await api.deletePreset(name);
          return sendEmpty(response, 204);
        }
        return noRoute();
      case "disk-safety":
        if (segments.length !== 1 || method !== "GET") return noRoute();
        return sendJson(response, 200, { presets: await api.diskSafety() });
      case "namespaces":
        break;
      default:
        return noRoute();
    }

    if (name === undefined || name === "") {
      if (method === "GET" && segments.length === 1) return sendJson(response, 200, { namespaces: await api.listNamespaces() });
      return noRoute();
    }
    if (sub === undefined) {
      if (method === "PUT") {
        const body = await readJson(request, settings.jsonBodySizeBytesMax);
        const presetName = isRecord(body) && typeof body.presetName === "string" ? body.presetName : undefined;
        return sendJson(response, 201, await api.createNamespace(name, presetName === undefined ? {} : { presetName }));
      }
      if (method === "GET") {
        const record = await api.getNamespace(name);
        if (record === undefined) throw new AlbaError("NotFound", `namespace ${name} does not exist`);
        return sendJson(response, 200, record);
      }
      if (method === "DELETE") {
        await api.deleteNamespace(name);
        return sendEmpty(response, 204);
      }
      return noRoute();
    }
    if (sub === "objects" && key === undefined && method === "GET") {
      const limit = optionalString(query, "limitKeys");
      const limitKeys = limit === undefined ? undefined : Number(limit);
      const page = await api.list(name, {
        ...(optionalString(query, "prefix") === undefined ? {} : { prefix: optionalString(query, "prefix") }),
        ...(optionalString(query, "startAfter") === undefined ? {} : { startAfter: optionalString(query, "startAfter") }),
        ...(limitKeys === undefined ? {} : { limitKeys }),
      });
      return sendJson(response, 200, page);
    }
    if (key === undefined || segments.length !== 4) return noRoute();
    switch (sub) {
      case "objects":
        return objectRoute(request, response, method, name, key);
      case "ranges": {
        if (method !== "POST") return noRoute();
        const ranges = parseRanges(await readJson(request, settings.jsonBodySizeBytesMax), settings.rangesPerRequestMax);
        const ifMatch = request.headers["if-match"];
        const parts = await api.getRanges(name, key, ranges, {
          ...(ifMatch === undefined ? {} : { ifMatch: unquoteEtag(ifMatch) }),
          ...(request.headers["x-alba-sequential"] === "1" ? { sequential: true } : {}),
        });
        const total = parts.reduce((sum, part) => sum + part.length, 0);
        response.writeHead(200, {
          "content-type": "application/octet-stream", "content-length": total, "x-alba-part-lengths": parts.map((part) => part.length).join(","),
        });
        releaseWhenSent(response, parts);
        for (const part of parts) response.write(part);
        response.end();
        return;
      }
      case "manifests": {
        if (method !== "GET") return noRoute();
        // A missing object is `null`, not 404: 404 means the namespace is missing.
        return sendJson(response, 200, (await api.getManifest(name, key)) ?? null);
      }
      default:
        return noRoute();
    }
  }

  /**
   * A whole object, sent part by part as it is decoded (one part read ahead), all parts of the
   * version the first head saw (ifMatch), so a concurrent overwrite cannot mix two versions: it cuts
   * the response instead, which the client sees as a short body and retries.
   */
  async function streamObject(response: http.ServerResponse, namespace: string, key: string): Promise<void> {
    const partSizeBytes = settings.streamPartSizeBytes;
    let info: AlbaObjectInfo | undefined;
    const readPart = async (offsetBytes: number): Promise<Buffer> => {
      const lengthBytes = Math.min(partSizeBytes, info!.sizeBytes - offsetBytes);
      const [part] = await api.getRanges(namespace, key, [{ offsetBytes, lengthBytes }], { ifMatch: info!.etag, sequential: true });
      return part!;
    };
    // The first part is read before the headers go out, so a failure still gets a proper status;
    // an overwrite between the head and that read just means reading the new version.
    let part: Buffer | undefined;
    for (let attempt = 1; ; attempt++) {
      info = await api.head(namespace, key);
      if (info === undefined) throw new AlbaError("NotFound", `object ${namespace}/${key} does not exist`);
      try {
        part = info.sizeBytes === 0 ? undefined : await readPart(0);
        break;
      } catch (error) {
        if (!isAlbaError(error, "PreconditionFailed") || attempt >= STREAM_START_ATTEMPTS_MAX) throw error;
      }
    }
    let next: Promise<Buffer> | undefined;
    response.writeHead(200, { "content-type": "application/octet-stream", "content-length": info.sizeBytes, etag: etagHeader(info.etag) });
    try {
      for (let offsetBytes = 0; part !== undefined; ) {
        const afterBytes = offsetBytes + part.length;
        next = afterBytes < info.sizeBytes ? readPart(afterBytes) : undefined;
        next?.catch(() => undefined); // awaited below; a failure while this part is written is not lost
        const sent = part;
        const drained = response.write(sent, () => buffers?.release(sent));
        if (!drained) {
          await new Promise<void>((resolve) => {
            response.once("drain", resolve);
            response.once("close", resolve);
          });
        }
        if (response.destroyed) return; // the client went away; the part read ahead goes to the GC
        offsetBytes = afterBytes;
        part = next === undefined ? undefined : await next;
      }
      response.end();
    } catch (error) {
      // Headers are out: the only way to say "failed" is to cut the body short.
      logger.warn({ err: error, namespace, key }, "object read failed while streaming; the response is cut");
      response.destroy();
    }
  }

  async function objectRoute(request: http.IncomingMessage, response: http.ServerResponse, method: string, namespace: string, key: string): Promise<void> {
    const ifMatch = request.headers["if-match"];
    switch (method) {
      case "PUT": {
        const ifNoneMatch = request.headers["if-none-match"];
        if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== "*") throw new HttpError(400, "Invalid", "If-None-Match supports only *");
        const putOptions = {
          ...(ifNoneMatch === undefined ? {} : { ifAbsent: true }),
          ...(ifMatch === undefined ? {} : { ifMatch: unquoteEtag(ifMatch) }),
        };
        const declared = declaredLength(request, settings.objectSizeBytesMax);
        let info;
        if (declared === undefined) {
          const data = await readBody(request, settings.objectSizeBytesMax, buffers);
          try {
            info = await api.put(namespace, key, data, putOptions);
          } finally {
            // The put has settled: the client encoded copies of the body and keeps no reference to it.
            buffers?.release(data);
          }
        } else {
          // Streamed: the put codes and writes the first chunks while the rest of the body arrives,
          // instead of storing the whole object first and forwarding it after.
          const body = streamBody(request, declared, buffers);
          try {
            info = await api.put(namespace, key, body.data, { ...putOptions, dataAvailable: body.available });
            await body.complete;
          } catch (error) {
            // A put refused early (a precondition) leaves the body unread: it is drained and dropped.
            await body.complete.catch(() => undefined);
            throw error;
          } finally {
            buffers?.release(body.data);
          }
        }
        response.setHeader("etag", etagHeader(info.etag));
        return sendJson(response, 200, info);
      }
      case "GET": {
        const rangeHeader = request.headers.range;
        if (rangeHeader === undefined) return streamObject(response, namespace, key);
        const range = parseRangeHeader(rangeHeader);
        const info = await api.head(namespace, key);
        if (info === undefined) throw new AlbaError("NotFound", `object ${namespace}/${key} does not exist`);
        const [part] = await api.getRanges(namespace, key, [range]);
        const end = range.offsetBytes + part!.length - 1;
        response.writeHead(206, {
          "content-type": "application/octet-stream", "content-length": part!.length, etag: etagHeader(info.etag),
          "content-range": part!.length === 0 ? `bytes */${info.sizeBytes}` : `bytes ${range.offsetBytes}-${end}/${info.sizeBytes}`,
        });
        releaseWhenSent(response, [part!]);
        response.end(part);
        return;
      }
      case "HEAD": {
        const info = await api.head(namespace, key);
        if (info === undefined) return sendEmpty(response, 404);
        response.writeHead(200, { "content-length": info.sizeBytes, etag: etagHeader(info.etag), "x-alba-size-bytes": info.sizeBytes });
        response.end();
        return;
      }
      case "DELETE":
        await api.delete(namespace, key, ifMatch === undefined ? {} : { ifMatch: unquoteEtag(ifMatch) });
        return sendEmpty(response, 204);
      default:
        throw new HttpError(405, "Invalid", `method ${method} not allowed on objects`);
    }
  }

  return (request, response) => {
    const startedAt = process.hrtime.bigint();
    route(request, response).catch((error: unknown) => {
      const { status, code, message } = statusForError(error);
      if (status >= 500 && code !== "Unavailable") logger.error({ err: error, method: request.method, url: request.url }, "request failed");
      else logger.debug({ code, method: request.method, url: request.url, message }, "request refused");
      if (response.headersSent) {
        response.destroy();
        return;
      }
      // A body we did not read must not be parsed as the next request on this connection.
      if (!request.complete) response.setHeader("connection", "close");
      if (request.method === "HEAD") return sendEmpty(response, status, { "x-alba-error-code": code });
      sendJson(response, status, { code, message });
    }).finally(() => {
      logger.trace({ method: request.method, url: request.url, status: response.statusCode, durationMs: Number(process.hrtime.bigint() - startedAt) / 1e6 }, "request");
    });
  };
}

/** Starts the proxy's HTTP server on host:port (0: any free port). */
export async function startProxyServer(options: ProxyServerOptions & { host: string; port: number }): Promise<RunningProxyServer> {
  const settings = { ...PROXY_SERVER_SETTINGS_DEFAULT, ...options.settings };
  const handler = proxyRequestHandler(options);
  const server = http.createServer({ keepAliveTimeout: settings.keepAliveTimeoutMs, requestTimeout: settings.requestTimeoutMs }, handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostInUrl = options.host.includes(":") ? `[${options.host}]` : options.host;
  const servers = [server];
  if (options.localSocketPath !== undefined && Buffer.byteLength(options.localSocketPath) <= LOCAL_SOCKET_PATH_BYTES_MAX) {
    const localServer = http.createServer({ keepAliveTimeout: settings.keepAliveTimeoutMs, requestTimeout: settings.requestTimeoutMs }, handler);
    const socketPath = options.localSocketPath;
    await rm(socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      localServer.once("error", reject);
      localServer.listen(socketPath, () => {
        localServer.off("error", reject);
        resolve();
      });
    });
    servers.push(localServer);
  }
  return {
    server, host: options.host, port, url: `http://${hostInUrl}:${port}`,
    close: async () => {
      await Promise.all(servers.map((each) => new Promise<void>((resolve) => {
        each.close(() => resolve());
        each.closeIdleConnections();
      })));
    },
  };
}

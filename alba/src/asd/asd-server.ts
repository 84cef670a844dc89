// The HTTP/1.1 face of one ASD (alba/docs/asd-protocol.md): decode and validate each request, call
// the store, encode the answer. Errors reach the wire in one place (errorStatusTable). Every
// resource a client can make the server hold is bounded: requests in flight, body bytes buffered,
// body size, ranges per request, time per request.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import pino, { type Logger } from "pino";
import { isAsdError, type ByteRange } from "./asd-api.ts";
import { ASD_REQUEST_SIZE_BYTES_MAX, decodeAsdBatch } from "./asd-batch-format.ts";
import type { AsdStore } from "./asd-store.ts";

export interface AsdServerSettings {
  /** Requests being served at once; more are answered 503 at once (the client tries another ASD or later). */
  requestsInFlightMax: number;
  /** Batch body bytes buffered at once across all requests. */
  bodyBytesInFlightMax: number;
  /** One batch body at most (the encoded batch). */
  requestSizeBytesMax: number;
  /** Ranges in one GET (the URL must fit Node's 16 KiB header limit). */
  rangesPerRequestMax: number;
  /** A request must arrive completely within this time. */
  requestTimeoutMs: number;
  /** Idle keep-alive connections are closed after this; clients should drop theirs earlier. */
  keepAliveTimeoutMs: number;
  /** On shutdown, connections still busy after this are cut. */
  shutdownGraceMs: number;
}

export const ASD_SERVER_DEFAULT_SETTINGS: Readonly<AsdServerSettings> = Object.freeze({
  requestsInFlightMax: 128,
  bodyBytesInFlightMax: 512 * 1024 * 1024,
  requestSizeBytesMax: ASD_REQUEST_SIZE_BYTES_MAX,
  rangesPerRequestMax: 256,
  requestTimeoutMs: 120_000,
  keepAliveTimeoutMs: 65_000,
  shutdownGraceMs: 10_000,
});

/** Error codes on the wire: the AsdErrorKinds a client acts on, plus the server's own. */
export type AsdWireErrorCode = "AssertFailed" | "Full" | "Invalid" | "Unavailable" | "KeyNotFound" | "NoSuchEndpoint" | "Internal";

/** The one place errors map to HTTP statuses (asd-protocol.md "Errors"). */
export const errorStatusTable: Readonly<Record<AsdWireErrorCode, number>> = Object.freeze({
  AssertFailed: 409,
  Full: 507,
  Invalid: 400,
  Unavailable: 503,
  KeyNotFound: 404,
  NoSuchEndpoint: 404,
  Internal: 500,
});

class HttpError extends Error {
  constructor(readonly code: AsdWireErrorCode, message: string, readonly status = errorStatusTable[code]) {
    super(message);
  }
}

function wireErrorOf(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (isAsdError(error)) {
    // A closed store means this ASD is shutting down: to the client that is "try another ASD".
    const code: AsdWireErrorCode = error.kind === "Closed" ? "Unavailable" : error.kind;
    return new HttpError(code, error.message);
  }
  return new HttpError("Internal", "internal error in the ASD (see its log)");
}

const RANGE_PATTERN = /^(\d{1,15}):(\d{1,15})$/;
const LIMIT_PATTERN = /^\d{1,9}$/;
const KEYS_PATH = "/v1/keys/";

/**
 * Unix socket paths are limited to 108 bytes (sun_path); a longer one cannot be bound, and the ASD
 * then serves TCP only.
 */
export const LOCAL_SOCKET_PATH_BYTES_MAX = 100;

export class AsdServer {
  private readonly server: Server;
  /**
   * The same API on a Unix socket in the ASD's directory, for clients on this host: loopback TCP
   * costs about twice the CPU per byte of a Unix socket (both ends copy through the TCP stack), and
   * fragments are the bulk of an ASD's traffic. Clients find it through /v1/health.
   */
  private readonly localServer: Server;
  private localSocketPath: string | undefined;
  private readonly settings: AsdServerSettings;
  private readonly logger: Logger;
  private requestsInFlight = 0;
  private bodyBytesInFlight = 0;
  private stopping = false;
  private readonly idle = new Set<() => void>();

  constructor(private readonly store: AsdStore, options: { logger?: Logger; settings?: Partial<AsdServerSettings> } = {}) {
    this.settings = { ...ASD_SERVER_DEFAULT_SETTINGS, ...options.settings };
    this.logger = options.logger ?? pino({ level: "silent" });
    const serverOptions = { keepAlive: true, requestTimeout: this.settings.requestTimeoutMs, keepAliveTimeout: this.settings.keepAliveTimeoutMs };
    this.server = createServer(serverOptions, (request, response) => this.onRequest(request, response));
    this.localServer = createServer(serverOptions, (request, response) => this.onRequest(request, response));
  }

  /**
   * Also serves on a Unix socket at `socketPath` (a stale socket file of an earlier run is replaced).
   * Resolves false, serving TCP only, when the path is too long to bind.
   */
  async listenLocal(socketPath: string): Promise<boolean> {
    if (Buffer.byteLength(socketPath) > LOCAL_SOCKET_PATH_BYTES_MAX) {
      this.logger.warn({ socketPath }, "the local socket path is too long for a Unix socket: serving TCP only");
      return false;
    }
    await rm(socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.localServer.once("error", reject);
      this.localServer.listen(socketPath, () => {
        this.localServer.off("error", reject);
        this.localServer.on("error", (error) => this.logger.error({ err: error }, "ASD local socket error"));
        resolve();
      });
    });
    this.localSocketPath = socketPath;
    return true;
  }

  /** Listens and resolves with the real address (port 0 picks a free port). */
  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        this.server.on("error", (error) => this.logger.error({ err: error }, "ASD server error"));
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting, lets requests in flight finish (cutting them after shutdownGraceMs), then resolves. */
  async close(): Promise<void> {
    this.stopping = true;
    const servers = this.localSocketPath === undefined ? [this.server] : [this.server, this.localServer];
    const closed = Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const server of servers) server.closeIdleConnections();
    const grace = setTimeout(() => {
      for (const server of servers) server.closeAllConnections();
    }, this.settings.shutdownGraceMs);
    try {
      await this.untilIdle();
      for (const server of servers) server.closeIdleConnections();
      await closed;
    } finally {
      clearTimeout(grace);
    }
  }

  private untilIdle(): Promise<void> {
    if (this.requestsInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  private onRequest(request: IncomingMessage, response: ServerResponse): void {
    this.requestsInFlight++;
    response.once("close", () => {
      this.requestsInFlight--;
      if (this.requestsInFlight === 0) {
        for (const resolve of this.idle) resolve();
        this.idle.clear();
      }
    });
    if (this.stopping) response.setHeader("connection", "close");
    this.handle(request, response).catch((error: unknown) => this.sendError(request, response, error));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (this.requestsInFlight > this.settings.requestsInFlightMax) {
      throw new HttpError("Unavailable", `the ASD is busy (${this.settings.requestsInFlightMax} requests in flight); retry later`);
    }
    const url = request.url ?? "/";
    const queryStart = url.indexOf("?");
    // The raw path, not a URL object: URL would resolve "." and ".." segments that keys may contain.
    const pathname = queryStart < 0 ? url : url.slice(0, queryStart);
    const query = new URLSearchParams(queryStart < 0 ? "" : url.slice(queryStart + 1));
    const method = request.method ?? "GET";

    if (pathname === "/v1/batch") {
      requireMethod(method, "POST");
      await this.applyBatch(request, response);
    } else if (pathname.startsWith(KEYS_PATH)) {
      requireMethod(method, "GET");
      const key = decodeKey(pathname.slice(KEYS_PATH.length));
      const ranges = query.get("ranges");
      if (ranges === null) await this.getValue(key, response);
      else await this.getRanges(key, this.parseRanges(ranges), response);
    } else if (pathname === "/v1/list") {
      requireMethod(method, "GET");
      const limit = query.get("limit");
      if (limit !== null && !LIMIT_PATTERN.test(limit)) throw new HttpError("Invalid", "limit must be a positive integer");
      const page = this.store.list({
        ...(query.has("prefix") ? { prefix: query.get("prefix")! } : {}),
        ...(query.has("startAfter") ? { startAfter: query.get("startAfter")! } : {}),
        ...(limit === null ? {} : { limitKeys: Number(limit) }),
      });
      sendJson(response, 200, page);
    } else if (pathname === "/v1/statistics") {
      requireMethod(method, "GET");
      sendJson(response, 200, await this.store.statistics());
    } else if (pathname === "/v1/health") {
      requireMethod(method, "GET");
      sendJson(response, 200, {
        status: "ok", asdId: this.store.asdId, nodeId: this.store.nodeId,
        ...(this.localSocketPath === undefined ? {} : { localSocketPath: this.localSocketPath }),
      });
    } else {
      throw new HttpError("NoSuchEndpoint", `no endpoint ${pathname}`);
    }
  }

  private async applyBatch(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const lengthBytes = this.contentLength(request, response);
    if (this.bodyBytesInFlight + lengthBytes > this.settings.bodyBytesInFlightMax) {
      response.setHeader("connection", "close");
      throw new HttpError("Unavailable", "the ASD is busy (too many batch bytes in flight); retry later");
    }
    // Held until the batch is applied: the decoded batch is made of views into the body.
    this.bodyBytesInFlight += lengthBytes;
    try {
      const body = await readBody(request, lengthBytes);
      const batch = decodeAsdBatch(body, this.settings.requestSizeBytesMax);
      await this.store.applyBatch(batch);
    } finally {
      this.bodyBytesInFlight -= lengthBytes;
    }
    response.writeHead(204).end();
  }

  private contentLength(request: IncomingMessage, response: ServerResponse): number {
    const lengthHeader = request.headers["content-length"];
    if (lengthHeader === undefined || !/^\d{1,12}$/.test(lengthHeader)) {
      response.setHeader("connection", "close");
      throw new HttpError("Invalid", "a batch needs a Content-Length", 411);
    }
    const lengthBytes = Number(lengthHeader);
    if (lengthBytes > this.settings.requestSizeBytesMax) {
      response.setHeader("connection", "close");
      throw new HttpError("Invalid", `a batch is at most ${this.settings.requestSizeBytesMax} bytes`, 413);
    }
    return lengthBytes;
  }

  private async getValue(key: string, response: ServerResponse): Promise<void> {
    const stored = await this.store.read(key);
    if (stored === undefined) throw new HttpError("KeyNotFound", "no such key");
    response.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": stored.value.length,
      "x-crc32c": String(stored.crc32c),
      "x-size-bytes": String(stored.sizeBytes),
    }).end(stored.value);
  }

  private async getRanges(key: string, ranges: ByteRange[], response: ServerResponse): Promise<void> {
    const stored = await this.store.readRanges(key, ranges);
    if (stored === undefined) throw new HttpError("KeyNotFound", "no such key");
    let lengthBytes = 0;
    for (const part of stored.parts) lengthBytes += part.length;
    response.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": lengthBytes,
      "x-range-lengths": stored.parts.map((part) => part.length).join(","),
      "x-crc32c": String(stored.crc32c),
      "x-size-bytes": String(stored.sizeBytes),
    });
    for (const part of stored.parts) response.write(part);
    response.end();
  }

  private parseRanges(text: string): ByteRange[] {
    const items = text.split(",");
    if (items.length > this.settings.rangesPerRequestMax) {
      throw new HttpError("Invalid", `at most ${this.settings.rangesPerRequestMax} ranges per request`);
    }
    return items.map((item) => {
      const match = RANGE_PATTERN.exec(item);
      if (match === null) throw new HttpError("Invalid", "ranges are offset:length pairs of decimal integers, comma-separated");
      return { offsetBytes: Number(match[1]), lengthBytes: Number(match[2]) };
    });
  }

  private sendError(request: IncomingMessage, response: ServerResponse, error: unknown): void {
    const wire = wireErrorOf(error);
    if (wire.code === "Internal") this.logger.error({ err: error, method: request.method, url: request.url }, "request failed");
    else this.logger.debug({ code: wire.code, message: wire.message, method: request.method, url: request.url }, "request refused");
    if (response.headersSent) {
      response.destroy();
      return;
    }
    sendJson(response, wire.status, { code: wire.code, message: wire.message });
  }
}

/** Reads a request body of a known length into one buffer. */
async function readBody(request: IncomingMessage, lengthBytes: number): Promise<Buffer> {
  const body = Buffer.allocUnsafe(lengthBytes);
  let received = 0;
  await new Promise<void>((resolve, reject) => {
    request.on("data", (chunk: Buffer) => {
      // Node enforces Content-Length; this guard only keeps the copy inside the buffer.
      if (received + chunk.length > lengthBytes) {
        reject(new HttpError("Invalid", "body longer than its Content-Length"));
        request.destroy();
        return;
      }
      chunk.copy(body, received);
      received += chunk.length;
    });
    request.once("end", () => resolve());
    request.once("error", reject);
    request.once("close", () => reject(new HttpError("Invalid", "the request was cut before its body ended")));
  });
  if (received !== lengthBytes) throw new HttpError("Invalid", "body shorter than its Content-Length");
  return body;
}

function requireMethod(method: string, expected: string): void {
  if (method !== expected) throw new HttpError("Invalid", `use ${expected} here`, 405);
}

function decodeKey(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    throw new HttpError("Invalid", "the key in the path is not valid percent-encoded UTF-8");
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

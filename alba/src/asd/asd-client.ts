// AsdApi over the ASD's HTTP protocol (alba/docs/asd-protocol.md). Anything that means "this ASD
// cannot answer now" (refused, reset, timeout, 5xx other than Full) becomes AsdError("Unavailable")
// so the caller tries another ASD; the server's AssertFailed/Full/Invalid come back as themselves.
import { Agent, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { isIP } from "node:net";
import {
  AsdError, type AsdApi, type AsdBatch, type AsdErrorKind, type AsdListOptions, type AsdListPage, type AsdStatistics, type ByteRange,
} from "./asd-api.ts";
import { asdKeyBytes, encodeAsdBatch } from "./asd-batch-format.ts";
import { isConnectFailure, isLoopbackHost } from "../net/loopback.ts";

export interface AsdClientSettings {
  /** A request with no progress (connect, send, receive) for this long fails as Unavailable. */
  requestTimeoutMs: number;
  /** Connections to this ASD at once; further requests wait for one. */
  socketsMax: number;
  /** Idle keep-alive connections are dropped after this; shorter than the server's keep-alive timeout, so a reused connection is never one the server is closing. */
  idleSocketTimeoutMs: number;
  /** Ranges per HTTP request; more are split over several requests. */
  rangesPerRequestMax: number;
  /** The largest response body accepted. */
  responseSizeBytesMax: number;
  /**
   * For an ASD on a loopback address, use the Unix socket it names in /v1/health (after checking it
   * reaches the same ASD): half the CPU per byte of loopback TCP.
   */
  useLocalSocket: boolean;
}

export const ASD_CLIENT_DEFAULT_SETTINGS: Readonly<AsdClientSettings> = Object.freeze({
  requestTimeoutMs: 30_000,
  socketsMax: 16,
  idleSocketTimeoutMs: 30_000,
  rangesPerRequestMax: 256,
  responseSizeBytesMax: 64 * 1024 * 1024 + 1024 * 1024,
  useLocalSocket: true,
});

/** Errors from the server that keep their meaning for the caller; everything else is Unavailable. */
const PASSED_THROUGH_KINDS: ReadonlySet<string> = new Set<AsdErrorKind>(["AssertFailed", "Full", "Invalid"]);
const RETRYABLE_SOCKET_ERRORS = new Set(["ECONNRESET", "EPIPE"]);

interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export class AsdClient implements AsdApi {
  readonly address: string;
  private readonly agent: Agent;
  private readonly settings: AsdClientSettings;
  private closed = false;
  /** The ASD's Unix socket, once found and checked; requests go there instead of TCP. */
  private localSocketPath: string | undefined;
  /** The one discovery in progress or done; undefined: not tried, or to be tried again. */
  private localSocketDiscovery: Promise<void> | undefined;

  constructor(readonly host: string, readonly port: number, settings: Partial<AsdClientSettings> = {}) {
    this.settings = { ...ASD_CLIENT_DEFAULT_SETTINGS, ...settings };
    this.address = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
    this.agent = new Agent({
      keepAlive: true,
      maxSockets: this.settings.socketsMax,
      maxFreeSockets: this.settings.socketsMax,
      timeout: this.settings.idleSocketTimeoutMs,
    });
  }

  async applyBatch(batch: AsdBatch): Promise<void> {
    const encoded = encodeAsdBatch(batch);
    const response = await this.request("POST", "/v1/batch", encoded.parts, encoded.sizeBytes);
    if (response.status !== 204) throw this.errorOf(response);
  }

  async get(key: string): Promise<Buffer | undefined> {
    asdKeyBytes(key);
    const response = await this.request("GET", keyPath(key));
    if (isKeyNotFound(response)) return undefined;
    if (response.status !== 200) throw this.errorOf(response);
    return response.body;
  }

  async getRanges(key: string, ranges: readonly ByteRange[]): Promise<Buffer[] | undefined> {
    asdKeyBytes(key);
    if (ranges.length === 0) throw new AsdError("Invalid", "give at least one range");
    for (const range of ranges) {
      if (!Number.isSafeInteger(range.offsetBytes) || range.offsetBytes < 0 || !Number.isSafeInteger(range.lengthBytes) || range.lengthBytes < 0) {
        throw new AsdError("Invalid", "a range has a non-negative integer offset and length");
      }
    }
    const parts: Buffer[] = [];
    for (let first = 0; first < ranges.length; first += this.settings.rangesPerRequestMax) {
      const slice = ranges.slice(first, first + this.settings.rangesPerRequestMax);
      const query = slice.map((range) => `${range.offsetBytes}:${range.lengthBytes}`).join(",");
      const response = await this.request("GET", `${keyPath(key)}?ranges=${query}`);
      if (isKeyNotFound(response)) return undefined;
      if (response.status !== 200) throw this.errorOf(response);
      parts.push(...splitRanges(response, slice.length, this.address));
    }
    return parts;
  }

  async list(options: AsdListOptions = {}): Promise<AsdListPage> {
    const query = new URLSearchParams();
    if (options.prefix !== undefined) query.set("prefix", options.prefix);
    if (options.startAfter !== undefined) query.set("startAfter", options.startAfter);
    if (options.limitKeys !== undefined) {
      if (!Number.isSafeInteger(options.limitKeys) || options.limitKeys < 1) throw new AsdError("Invalid", "limitKeys must be a positive integer");
      query.set("limit", String(options.limitKeys));
    }
    const response = await this.request("GET", `/v1/list?${query.toString()}`);
    if (response.status !== 200) throw this.errorOf(response);
    return this.json<AsdListPage>(response);
  }

  async statistics(): Promise<AsdStatistics> {
    const response = await this.request("GET", "/v1/statistics");
    if (response.status !== 200) throw this.errorOf(response);
    return this.json<AsdStatistics>(response);
  }

  /** Resolves when the ASD answers its health check; AsdError("Unavailable") otherwise. */
  async health(): Promise<{ asdId: string; nodeId: string; localSocketPath?: string }> {
    const response = await this.request("GET", "/v1/health");
    if (response.status !== 200) throw this.errorOf(response);
    return this.json<{ asdId: string; nodeId: string; localSocketPath?: string }>(response);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.agent.destroy();
  }

  /** Whether requests currently go over the ASD's Unix socket (for tests and diagnostics). */
  get usesLocalSocket(): boolean {
    return this.localSocketPath !== undefined;
  }

  /**
   * Asks the ASD (over TCP) for its local socket and checks that the socket answers with the same
   * ASD id: a socket path names a file on this host, and only a loopback ASD is on this host. Any
   * failure leaves requests on TCP and lets a later request try again.
   */
  private async discoverLocalSocket(): Promise<void> {
    try {
      const overTcp = this.json<{ asdId?: unknown; localSocketPath?: unknown }>(await this.requestOnce("GET", "/v1/health", undefined, 0, null));
      if (typeof overTcp.localSocketPath !== "string" || typeof overTcp.asdId !== "string") return;
      const overSocket = this.json<{ asdId?: unknown }>(await this.requestOnce("GET", "/v1/health", undefined, 0, overTcp.localSocketPath));
      if (overSocket.asdId === overTcp.asdId) this.localSocketPath = overTcp.localSocketPath;
    } catch {
      this.localSocketDiscovery = undefined;
    }
  }

  private async request(method: "GET" | "POST", path: string, body?: Uint8Array[], bodyBytes = 0): Promise<HttpResponse> {
    if (this.settings.useLocalSocket && this.localSocketPath === undefined && isLoopbackHost(this.host)) {
      this.localSocketDiscovery ??= this.discoverLocalSocket();
      await this.localSocketDiscovery;
    }
    // A GET on a reused keep-alive connection that the server had just closed fails with a reset
    // before the server saw it; it is safe to send once more. A batch is not resent: it may have applied.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.requestOnce(method, path, body, bodyBytes, this.localSocketPath ?? null);
      } catch (error) {
        // The socket file is gone or nobody listens on it (the ASD stopped, or moved): back to TCP,
        // and find the socket again later. The error itself is the caller's, as over TCP.
        if (this.localSocketPath !== undefined && error instanceof AsdError && isConnectFailure(error)) {
          this.localSocketPath = undefined;
          this.localSocketDiscovery = undefined;
        }
        const retry = method === "GET" && attempt === 1 && error instanceof AsdError &&
          (error as AsdError & { reusedSocket?: boolean }).reusedSocket === true;
        if (!retry) throw error;
      }
    }
  }

  /** One request, over the Unix socket `socketPath` or (null) over TCP. */
  private requestOnce(method: "GET" | "POST", path: string, body: Uint8Array[] | undefined, bodyBytes: number, socketPath: string | null): Promise<HttpResponse> {
    if (this.closed) return Promise.reject(new AsdError("Closed", `the client of ASD ${this.address} is closed`));
    return new Promise((resolve, reject) => {
      const request = httpRequest({
        ...(socketPath === null ? { host: this.host, port: this.port } : { socketPath }), method, path, agent: this.agent,
        headers: method === "POST" ? { "content-type": "application/octet-stream", "content-length": bodyBytes } : {},
      }, (response) => {
        const declared = Number(response.headers["content-length"] ?? 0);
        if (declared > this.settings.responseSizeBytesMax) {
          response.destroy();
          reject(new AsdError("Unavailable", `ASD ${this.address} sent a ${declared}-byte response; at most ${this.settings.responseSizeBytesMax}`));
          return;
        }
        const chunks: Buffer[] = [];
        let receivedBytes = 0;
        response.on("data", (chunk: Buffer) => {
          receivedBytes += chunk.length;
          if (receivedBytes > this.settings.responseSizeBytesMax) {
            response.destroy(new Error("response larger than responseSizeBytesMax"));
            return;
          }
          chunks.push(chunk);
        });
        response.once("end", () => resolve({
          status: response.statusCode ?? 0, headers: response.headers,
          body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, receivedBytes),
        }));
        response.once("error", (error) => reject(this.unavailable(error, false)));
        response.once("aborted", () => reject(new AsdError("Unavailable", `ASD ${this.address} cut its response`)));
      });
      request.setTimeout(this.settings.requestTimeoutMs, () => {
        request.destroy(new AsdError("Unavailable", `ASD ${this.address} did not answer within ${this.settings.requestTimeoutMs} ms`));
      });
      request.once("error", (error) => reject(this.unavailable(error, request.reusedSocket)));
      if (body !== undefined) for (const part of body) request.write(part);
      request.end();
    });
  }

  private unavailable(error: Error, reusedSocket: boolean): AsdError {
    if (error instanceof AsdError) return error;
    const code = (error as { code?: unknown }).code;
    const result = new AsdError("Unavailable", `ASD ${this.address} is unreachable: ${error.message}`, { cause: error });
    if (reusedSocket && typeof code === "string" && RETRYABLE_SOCKET_ERRORS.has(code)) {
      (result as AsdError & { reusedSocket?: boolean }).reusedSocket = true;
    }
    return result;
  }

  private errorOf(response: HttpResponse): AsdError {
    let code: unknown;
    let message = `HTTP ${response.status}`;
    try {
      const parsed = JSON.parse(response.body.toString("utf8")) as { code?: unknown; message?: unknown };
      code = parsed.code;
      if (typeof parsed.message === "string") message = parsed.message;
    } catch {
      // Not our JSON (a proxy in between?): the status decides.
    }
    if (typeof code === "string" && PASSED_THROUGH_KINDS.has(code)) {
      return new AsdError(code as AsdErrorKind, `ASD ${this.address}: ${message}`);
    }
    if (response.status >= 500) return new AsdError("Unavailable", `ASD ${this.address}: ${message}`);
    return new AsdError("Invalid", `ASD ${this.address} refused the request: ${message}`);
  }

  private json<T>(response: HttpResponse): T {
    try {
      return JSON.parse(response.body.toString("utf8")) as T;
    } catch (error) {
      throw new AsdError("Unavailable", `ASD ${this.address} sent malformed JSON`, { cause: error });
    }
  }
}

function keyPath(key: string): string {
  return `/v1/keys/${encodeURIComponent(key)}`;
}

function isKeyNotFound(response: HttpResponse): boolean {
  if (response.status !== 404) return false;
  try {
    return (JSON.parse(response.body.toString("utf8")) as { code?: unknown }).code === "KeyNotFound";
  } catch {
    return false;
  }
}

/** Cuts a ranged response into its parts by the x-range-lengths header. */
function splitRanges(response: HttpResponse, count: number, address: string): Buffer[] {
  const header = response.headers["x-range-lengths"];
  const lengths = typeof header === "string" ? header.split(",").map(Number) : [];
  const total = lengths.reduce((sum, length) => sum + length, 0);
  if (lengths.length !== count || lengths.some((length) => !Number.isSafeInteger(length) || length < 0) || total !== response.body.length) {
    throw new AsdError("Unavailable", `ASD ${address} sent a ranged response that does not match its x-range-lengths`);
  }
  const parts: Buffer[] = [];
  let offset = 0;
  for (const length of lengths) {
    parts.push(response.body.subarray(offset, offset + length));
    offset += length;
  }
  return parts;
}

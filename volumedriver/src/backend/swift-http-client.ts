// The HTTP transport under the Swift store: one keep-alive agent per scheme (bounded sockets), an
// idle timeout on every request, request bodies from memory or streamed from a file, and
// `Expect: 100-continue` for large bodies so a 401 or 412 costs no upload (RFC 9110 §10.1.1).
// It knows nothing of Swift: it returns status, headers and body, and turns network failures into
// Transient StoreErrors. Status codes are mapped to error kinds in swift-errors.ts.
import { createHash } from "node:crypto";
import http from "node:http";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { StoreError } from "./object-store.ts";

export type HttpMethod = "GET" | "HEAD" | "PUT" | "POST" | "DELETE";

/** A request body: bytes in memory, or a stream (opened anew for each attempt) of exactly `sizeBytes`. */
export type HttpRequestBody = { data: Uint8Array } | { openStream: () => Readable; sizeBytes: number };

export interface HttpRequest {
  method: HttpMethod;
  /** Scheme, host and port are used; the path comes from `path`. */
  origin: URL;
  /** Already percent-encoded path and query, sent as it is (no dot-segment normalization, which would mangle keys like "."). */
  path: string;
  headers: OutgoingHttpHeaders;
  body?: HttpRequestBody;
  /** May be sent again once on a fresh connection if a reused keep-alive connection was found closed. False for conditional PUTs. */
  idempotent: boolean;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** MD5 hex of the streamed request body, when the body was a stream (so a caller can check it against the ETag). */
  sentBodyMd5?: string;
}

export interface SwiftHttpClientOptions {
  /** Longest silence on a request's connection (connecting, sending, waiting, receiving) before it fails Transient. */
  requestTimeoutMs: number;
  /** Sockets per host in the keep-alive pool; more requests wait in the agent's queue. */
  connectionsMax: number;
  /** Bodies at least this large are sent after `100 Continue` only. */
  expectContinueMinBytes: number;
}

/** Network error codes that mean "the connection failed", not "the request was wrong". */
const NETWORK_ERROR_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "ECONNABORTED",
]);

export class SwiftHttpClient {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;

  constructor(private readonly options: SwiftHttpClientOptions) {
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: options.connectionsMax });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: options.connectionsMax });
  }

  /** Sends `request`; resolves with any HTTP status, rejects only with Transient (network, timeout) or the body stream's own error. */
  async request(request: HttpRequest): Promise<HttpResponse> {
    try {
      return await this.attempt(request);
    } catch (error) {
      // A keep-alive connection the server closed while it sat idle fails at once: send it again on a new one.
      if (error instanceof ReusedSocketError && request.idempotent) return this.attempt(request);
      throw error instanceof ReusedSocketError ? error.storeError : error;
    }
  }

  /** Closes every pooled connection; requests in flight fail. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  private attempt(request: HttpRequest): Promise<HttpResponse> {
    const { origin } = request;
    const isHttps = origin.protocol === "https:";
    const body = request.body;
    const bodySizeBytes = body === undefined ? 0 : "data" in body ? body.data.length : body.sizeBytes;
    const headers: OutgoingHttpHeaders = { ...request.headers };
    if (body !== undefined) headers["content-length"] = String(bodySizeBytes);
    const expectContinue = body !== undefined && bodySizeBytes >= this.options.expectContinueMinBytes;
    if (expectContinue) headers.expect = "100-continue";
    const where = `${request.method} ${origin.host}`;

    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      let bodyStarted = false;
      let sentBodyMd5: string | undefined;
      const fail = (error: Error): void => {
        if (settled) return;
        settled = true;
        reject(error);
      };
      const outgoing = (isHttps ? https : http).request({
        protocol: origin.protocol,
        hostname: origin.hostname,
        port: origin.port === "" ? undefined : Number(origin.port),
        method: request.method,
        path: request.path,
        headers,
        agent: isHttps ? this.httpsAgent : this.httpAgent,
      });
      outgoing.setTimeout(this.options.requestTimeoutMs, () => {
        outgoing.destroy(new StoreError("Transient", `${where}: no progress for ${this.options.requestTimeoutMs} ms (requestTimeoutMs)`));
      });
      outgoing.on("error", (error: NodeJS.ErrnoException) => {
        if (error instanceof StoreError) return fail(error);
        const storeError = networkError(where, error);
        fail(outgoing.reusedSocket && !bodyStarted && error.code === "ECONNRESET" ? new ReusedSocketError(storeError) : storeError);
      });
      outgoing.on("response", (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
        incoming.on("error", (error) => fail(networkError(where, error)));
        incoming.on("end", () => {
          if (!incoming.complete) return fail(new StoreError("Transient", `${where}: the reply was cut short`));
          // A final reply before the body was sent (a refused 100-continue) leaves the connection
          // expecting body bytes: it cannot be reused.
          if (expectContinue && !bodyStarted) outgoing.destroy();
          if (settled) return;
          settled = true;
          resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, body: Buffer.concat(chunks), sentBodyMd5 });
        });
      });
      const sendBody = (): void => {
        bodyStarted = true;
        if (body === undefined) return void outgoing.end();
        if ("data" in body) return void outgoing.end(body.data);
        const stream = body.openStream();
        const md5 = createHash("md5");
        let streamedBytes = 0;
        stream.on("data", (chunk: Buffer) => {
          md5.update(chunk);
          streamedBytes += chunk.length;
          if (!outgoing.write(chunk)) {
            stream.pause();
            outgoing.once("drain", () => stream.resume());
          }
        });
        stream.on("error", (error) => {
          outgoing.destroy();
          fail(error);
        });
        stream.on("end", () => {
          if (streamedBytes !== body.sizeBytes) {
            outgoing.destroy();
            return fail(new StoreError("Invalid", `${where}: the source file yielded ${streamedBytes} bytes, not ${body.sizeBytes}: it changed while it was sent`));
          }
          sentBodyMd5 = md5.digest("hex");
          outgoing.end();
        });
      };
      if (expectContinue) {
        outgoing.on("continue", sendBody);
        outgoing.flushHeaders();
      } else {
        sendBody();
      }
    });
  }
}

/** A reset on a reused keep-alive connection before any body byte went out: safe to send again once. */
class ReusedSocketError extends Error {
  constructor(readonly storeError: StoreError) {
    super(storeError.message);
  }
}

function networkError(where: string, error: NodeJS.ErrnoException): StoreError {
  const code = error.code ?? "";
  const detail = NETWORK_ERROR_CODES.has(code) ? `${code} (is the Swift proxy up and reachable?)` : error.message;
  return new StoreError("Transient", `${where}: connection failed: ${detail}`, { cause: error });
}

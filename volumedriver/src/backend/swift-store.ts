// An ObjectStore on the native OpenStack Swift API (Object Storage API v1): one container per
// namespace (named containerPrefix + namespace), one Swift object per key, etag = Swift's ETag
// (the MD5 hex of the bytes). Authentication is tempauth or Keystone v3 (swift-auth.ts); a 401
// renews the token once and sends the request again. Status codes map to StoreError kinds in
// swift-errors.ts; network failures and timeouts are Transient (swift-http-client.ts).
//
// What Swift does not give, and how the store makes up for it:
// - Conditional puts. Swift honours `If-None-Match: *` (412 when the object exists) but checks it
//   on each object server before writing, so two writers racing to create one key can both win;
//   it has no conditional PUT on an etag, so ifMatch is HEAD, compare, PUT. Within one store
//   instance, puts, putFiles and deletes of a key are serialized, so both conditions are atomic
//   among the callers of that instance; across instances (processes) they are not.
// - Objects are at most 5 GiB (Swift's max_file_size); larger ones would need SLO, out of scope.
// Retries of Transient failures are left to RetryingObjectStore (stack it on top); this store
// sends a request again only after a 401 (with a new token) and after a reset on a reused
// keep-alive connection (not for conditional puts).
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { createHash } from "node:crypto";
import { NAMESPACE_NAME_PATTERN, StoreError, validateKey, validateNamespace } from "./object-store.ts";
import type { ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutOptions, StoreErrorKind, PutFileOptions } from "./object-store.ts";
import { compareKeys, resolveListLimitKeys } from "./list-paging.ts";
import { resolveRange, validateRange } from "./object-range.ts";
import { authenticate } from "./swift-auth.ts";
import type { SwiftCredentials, SwiftSession } from "./swift-auth.ts";
import { storeErrorForStatus } from "./swift-errors.ts";
import { SwiftHttpClient } from "./swift-http-client.ts";
import type { HttpMethod, HttpRequestBody, HttpResponse } from "./swift-http-client.ts";

export type { SwiftCredentials, SwiftKeystoneCredentials, SwiftTempAuthCredentials } from "./swift-auth.ts";

/** Swift's default max_file_size: the largest object one PUT may store (5 GiB). */
export const SWIFT_OBJECT_SIZE_BYTES_MAX = 5 * 1024 ** 3;
const CONTAINER_PREFIX_PATTERN = /^[A-Za-z0-9._-]{0,128}$/;
const ACCOUNT_LISTING_LIMIT = 10_000;
const ACCOUNT_LISTING_PAGES_MAX = 10_000;
/** deleteNamespace lists and deletes, then deletes the container; a writer still putting makes that 409 and it starts over, this often. */
const NAMESPACE_DELETE_ROUNDS_MAX = 10;

export interface SwiftObjectStoreOptions {
  credentials: SwiftCredentials;
  /** Use this account URL instead of the one the auth service names. */
  storageUrl?: string;
  /** Prepended to every namespace to name its container (e.g. "ovs-"); containers without it are ignored. Default "". */
  containerPrefix?: string;
  /** Longest silence on a request's connection before it fails Transient. Default 30000 ms. */
  requestTimeoutMs?: number;
  /** Keep-alive sockets to the proxy (and to Keystone). Default 16. */
  connectionsMax?: number;
  /** Bodies at least this large wait for `100 Continue`, so a 401 or 412 costs no upload. Default 1 MiB. */
  expectContinueMinBytes?: number;
  /** Object deletes in flight while deleteNamespace empties a container. Default 16. */
  namespaceDeleteInFlightMax?: number;
}

interface SwiftListingEntry {
  name: string;
  bytes: number;
  hash: string;
}

export class SwiftObjectStore implements ObjectStore {
  readonly description: string;
  readonly containerPrefix: string;
  private readonly client: SwiftHttpClient;
  private readonly credentials: SwiftCredentials;
  private readonly storageUrlOverride: string | undefined;
  private readonly namespaceDeleteInFlightMax: number;
  private readonly keyLocks = new KeyLocks();
  private session: Promise<SwiftSession> | undefined;
  private closed = false;

  constructor(options: SwiftObjectStoreOptions) {
    this.containerPrefix = options.containerPrefix ?? "";
    if (!CONTAINER_PREFIX_PATTERN.test(this.containerPrefix)) {
      throw new StoreError("Invalid", `swift: containerPrefix ${JSON.stringify(this.containerPrefix)}: use up to 128 of [A-Za-z0-9._-]`);
    }
    const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    const connectionsMax = options.connectionsMax ?? 16;
    const expectContinueMinBytes = options.expectContinueMinBytes ?? 1024 * 1024;
    this.namespaceDeleteInFlightMax = options.namespaceDeleteInFlightMax ?? 16;
    for (const [name, value] of Object.entries({ requestTimeoutMs, connectionsMax, namespaceDeleteInFlightMax: this.namespaceDeleteInFlightMax })) {
      if (!Number.isSafeInteger(value) || value < 1) throw new StoreError("Invalid", `swift: ${name} ${value}: use a positive integer`);
    }
    if (!Number.isSafeInteger(expectContinueMinBytes) || expectContinueMinBytes < 0) {
      throw new StoreError("Invalid", `swift: expectContinueMinBytes ${expectContinueMinBytes}: use an integer >= 0`);
    }
    this.credentials = options.credentials;
    this.storageUrlOverride = options.storageUrl;
    this.client = new SwiftHttpClient({ requestTimeoutMs, connectionsMax, expectContinueMinBytes });
    this.description = `swift:${options.credentials.authUrl}${this.containerPrefix === "" ? "" : ` (containers ${this.containerPrefix}*)`}`;
  }

  /** Creating an existing container is a no-op for Swift too (202 instead of 201). */
  async createNamespace(namespace: NamespaceName): Promise<void> {
    return this.operate(async () => {
      validateNamespace(namespace);
      const context = `${this.description}: createNamespace ${namespace}`;
      const response = await this.send("PUT", (session) => this.containerPath(session, namespace), {}, undefined, true);
      if (response.status !== 201 && response.status !== 202) throw this.failure(response, context);
    });
  }

  /** Deletes every object, then the container; starts over if the container is not empty by then (a racing put). */
  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    return this.operate(async () => {
      validateNamespace(namespace);
      const context = `${this.description}: deleteNamespace ${namespace}`;
      for (let round = 1; round <= NAMESPACE_DELETE_ROUNDS_MAX; round++) {
        await this.deleteAllObjects(namespace);
        const response = await this.send("DELETE", (session) => this.containerPath(session, namespace), {}, undefined, true);
        if (response.status === 204 || response.status === 200) return;
        if (response.status === 404) throw new StoreError("NotFound", `${context}: no such namespace`);
        if (response.status !== 409) throw this.failure(response, context);
      }
      throw new StoreError("Transient", `${context}: still not empty after ${NAMESPACE_DELETE_ROUNDS_MAX} rounds (is a writer still putting into it?)`);
    });
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    return this.operate(async () => {
      const context = `${this.description}: listNamespaces`;
      const namespaces: NamespaceName[] = [];
      let marker = "";
      for (let pageCount = 0; pageCount < ACCOUNT_LISTING_PAGES_MAX; pageCount++) {
        const query = `?format=json&limit=${ACCOUNT_LISTING_LIMIT}&prefix=${encodeURIComponent(this.containerPrefix)}&marker=${encodeURIComponent(marker)}`;
        const response = await this.send("GET", (session) => `${session.storageUrl.pathname}${query}`, {}, undefined, true);
        if (response.status === 204) break;
        if (response.status !== 200) throw this.failure(response, context);
        const names = parseJsonArray(response.body, context).map((entry) => {
          const name = (entry as { name?: unknown } | null)?.name;
          if (typeof name !== "string") throw new StoreError("Internal", `${context}: unexpected account listing entry`);
          return name;
        });
        for (const name of names) {
          const namespace = name.slice(this.containerPrefix.length);
          // Containers of other users of the account (or of another prefix) are not namespaces.
          if (name.startsWith(this.containerPrefix) && NAMESPACE_NAME_PATTERN.test(namespace)) namespaces.push(namespace);
        }
        if (names.length < ACCOUNT_LISTING_LIMIT) return namespaces.sort(compareKeys);
        marker = names[names.length - 1];
      }
      return namespaces.sort(compareKeys);
    });
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    return this.operate(async () => {
      validateNamespace(namespace);
      return this.containerExists(namespace);
    });
  }

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    return this.operate(async () => {
      validateNamespace(namespace);
      validateKey(key);
      if (data.length > SWIFT_OBJECT_SIZE_BYTES_MAX) throw tooLarge(data.length);
      // Swift checks the MD5 we send against the bytes it receives (422 on a mismatch).
      const md5 = createHash("md5").update(data).digest("hex");
      return this.putObject(namespace, key, { data }, data.length, md5, options);
    });
  }

  /** Streams the file as the request body (Content-Length from fstat of the open file); its MD5 is computed on the way and checked against Swift's ETag. */
  async putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo> {
    return this.operate(async () => {
      validateNamespace(namespace);
      validateKey(key);
      const handle = await openSourceFile(filePath);
      try {
        const stats = await handle.stat();
        if (!stats.isFile()) throw new StoreError("Invalid", `putFile: ${filePath} is not a regular file (name an existing regular file)`);
        if (stats.size > SWIFT_OBJECT_SIZE_BYTES_MAX) throw tooLarge(stats.size);
        const sizeBytes = stats.size;
        const body: HttpRequestBody =
          sizeBytes === 0
            ? { data: Buffer.alloc(0) }
            : { openStream: () => handle.createReadStream({ start: 0, end: sizeBytes - 1, autoClose: false }), sizeBytes };
        return await this.putObject(namespace, key, body, sizeBytes, sizeBytes === 0 ? EMPTY_MD5 : undefined, options);
      } finally {
        await handle.close();
      }
    });
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    return this.operate(async () => {
      validateNamespace(namespace);
      validateKey(key);
      validateRange(range);
      const context = `${this.description}: get ${namespace}/${key}`;
      if (range !== undefined && range.lengthBytes === 0) {
        // HTTP cannot ask for zero bytes; the size alone decides between empty and Invalid.
        const info = await this.headObject(namespace, key, context);
        if (info === undefined) throw new StoreError("NotFound", `${context}: no such key`);
        resolveRange(range, info.sizeBytes);
        return Buffer.alloc(0);
      }
      const headers: Record<string, string> = {};
      // RFC 9110 §14.1.2: last-byte-pos is inclusive; one past the end is clamped by the server.
      if (range !== undefined) headers.range = `bytes=${range.offsetBytes}-${range.offsetBytes + range.lengthBytes - 1}`;
      const response = await this.send("GET", (session) => this.objectPath(session, namespace, key), headers, undefined, true);
      switch (response.status) {
        case 200: {
          // The whole object (asked for, or the server ignored the Range): verify it, then slice.
          const etag = etagOf(response);
          if (etag !== undefined && isMd5Hex(etag) && createHash("md5").update(response.body).digest("hex") !== etag) {
            throw new StoreError("Transient", `${context}: the bytes received do not match their ETag (Swift quarantines a damaged replica; a retry reads another)`);
          }
          if (range === undefined) return response.body;
          const { startBytes, endBytes } = resolveRange(range, response.body.length);
          return response.body.subarray(startBytes, endBytes);
        }
        case 206: {
          const start = /^bytes (\d+)-/.exec(String(response.headers["content-range"] ?? ""));
          if (start === null || Number(start[1]) !== range?.offsetBytes) {
            throw new StoreError("Internal", `${context}: a 206 reply with Content-Range ${String(response.headers["content-range"])} for offset ${range?.offsetBytes}`);
          }
          return response.body;
        }
        case 416: {
          // The range starts at or past the end: Swift names the size as "bytes */<size>".
          const size = /^bytes \*\/(\d+)$/.exec(String(response.headers["content-range"] ?? ""));
          if (range === undefined || size === null) throw this.failure(response, context);
          resolveRange(range, Number(size[1]));
          return Buffer.alloc(0);
        }
        case 404:
          throw new StoreError("NotFound", `${context}: no such key or namespace`);
        default:
          throw this.failure(response, context);
      }
    });
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    return this.operate(async () => {
      validateNamespace(namespace);
      validateKey(key);
      return this.headObject(namespace, key, `${this.description}: head ${namespace}/${key}`);
    });
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    return this.operate(async () => {
      validateNamespace(namespace);
      validateKey(key);
      const context = `${this.description}: delete ${namespace}/${key}`;
      await this.keyLocks.run(`${namespace}/${key}`, async () => {
        const response = await this.send("DELETE", (session) => this.objectPath(session, namespace, key), {}, undefined, true);
        if (response.status === 204 || response.status === 200) return;
        if (response.status !== 404) throw this.failure(response, context);
        // A missing key is fine (idempotent); a missing namespace is not.
        if (!(await this.containerExists(namespace))) throw new StoreError("NotFound", `${context}: no such namespace`);
      });
    });
  }

  async list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage> {
    return this.operate(async () => {
      validateNamespace(namespace);
      return this.listPage(namespace, options, resolveListLimitKeys(options));
    });
  }

  /** Closes the pooled connections; every later call fails Closed. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  /** Runs one public call: Closed before it starts, and any failure after close() is reported as Closed. */
  private async operate<T>(call: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError("Closed", `${this.description} is closed`);
    try {
      return await call();
    } catch (error) {
      if (this.closed) throw new StoreError("Closed", `${this.description} is closed`, { cause: error });
      throw error;
    }
  }

  private async putObject(
    namespace: NamespaceName,
    key: string,
    body: HttpRequestBody,
    sizeBytes: number,
    md5: string | undefined,
    options: PutOptions | undefined,
  ): Promise<ObjectInfo> {
    const context = `${this.description}: put ${namespace}/${key}`;
    return this.keyLocks.run(`${namespace}/${key}`, async () => {
      if (options?.ifMatch !== undefined) {
        // Not atomic against other store instances: Swift has no conditional PUT on an etag.
        const current = await this.headObject(namespace, key, context);
        if (current?.etag !== options.ifMatch) throw new StoreError("PreconditionFailed", `${context}: the etag is not ${options.ifMatch}`);
      }
      const headers: Record<string, string> = { "content-type": "application/octet-stream" };
      if (md5 !== undefined) headers.etag = md5;
      if (options?.ifAbsent === true) headers["if-none-match"] = "*";
      const conditional = options?.ifAbsent === true || options?.ifMatch !== undefined;
      const response = await this.send("PUT", (session) => this.objectPath(session, namespace, key), headers, body, !conditional);
      if (response.status === 201) {
        const etag = etagOf(response);
        const expected = md5 ?? response.sentBodyMd5;
        if (etag === undefined || etag !== expected) {
          throw new StoreError("Transient", `${context}: Swift's ETag ${etag} differs from the MD5 ${expected} of the bytes sent (damaged on the way; put again)`);
        }
        return { key, sizeBytes, etag };
      }
      if (response.status === 412) throw new StoreError("PreconditionFailed", `${context}: the key exists`);
      if (response.status === 404) throw new StoreError("NotFound", `${context}: no such namespace`);
      throw this.failure(response, context);
    });
  }

  /** The object's info, undefined if the key is absent; NotFound if the namespace is. */
  private async headObject(namespace: NamespaceName, key: string, context: string): Promise<ObjectInfo | undefined> {
    const response = await this.send("HEAD", (session) => this.objectPath(session, namespace, key), {}, undefined, true);
    if (response.status === 200 || response.status === 204) {
      const etag = etagOf(response);
      const sizeBytes = Number(response.headers["content-length"]);
      if (etag === undefined || !Number.isSafeInteger(sizeBytes)) throw new StoreError("Internal", `${context}: HEAD reply without ETag or Content-Length`);
      return { key, sizeBytes, etag };
    }
    if (response.status !== 404) throw this.failure(response, context);
    // Swift's 404 does not say whether the object or its container is missing.
    if (!(await this.containerExists(namespace))) throw new StoreError("NotFound", `${context}: no such namespace`);
    return undefined;
  }

  private async containerExists(namespace: NamespaceName): Promise<boolean> {
    const response = await this.send("HEAD", (session) => this.containerPath(session, namespace), {}, undefined, true);
    if (response.status === 204 || response.status === 200) return true;
    if (response.status === 404) return false;
    throw this.failure(response, `${this.description}: namespaceExists ${namespace}`);
  }

  /** One page of the container listing; Swift sorts names by their UTF-8 bytes (SQLite's BINARY collation), the contract's order. */
  private async listPage(namespace: NamespaceName, options: ListOptions | undefined, limitKeys: number): Promise<ListPage> {
    const context = `${this.description}: list ${namespace}`;
    // One more than asked for tells whether more keys follow without another request.
    let query = `?format=json&limit=${limitKeys + 1}`;
    if (options?.prefix !== undefined && options.prefix !== "") query += `&prefix=${encodeText(options.prefix, context)}`;
    if (options?.startAfter !== undefined && options.startAfter !== "") query += `&marker=${encodeText(options.startAfter, context)}`;
    const response = await this.send("GET", (session) => `${this.containerPath(session, namespace)}${query}`, {}, undefined, true);
    if (response.status === 404) throw new StoreError("NotFound", `${context}: no such namespace`);
    if (response.status === 204) return { objects: [] };
    if (response.status !== 200) throw this.failure(response, context);
    const entries = parseJsonArray(response.body, context).map((entry) => listingEntry(entry, context));
    const objects = entries.slice(0, limitKeys).map((entry) => ({ key: entry.name, sizeBytes: entry.bytes, etag: entry.hash }));
    return entries.length > limitKeys ? { objects, nextStartAfter: objects[objects.length - 1].key } : { objects };
  }

  /** Deletes every object of the namespace, `namespaceDeleteInFlightMax` at a time. */
  private async deleteAllObjects(namespace: NamespaceName): Promise<void> {
    const context = `${this.description}: deleteNamespace ${namespace}`;
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.listPage(namespace, { startAfter }, 1000);
      const keys = page.objects.map((object) => object.key);
      for (let start = 0; start < keys.length; start += this.namespaceDeleteInFlightMax) {
        await Promise.all(
          keys.slice(start, start + this.namespaceDeleteInFlightMax).map(async (key) => {
            const response = await this.send("DELETE", (session) => this.objectPath(session, namespace, key), {}, undefined, true);
            if (response.status !== 204 && response.status !== 200 && response.status !== 404) throw this.failure(response, `${context}: delete ${key}`);
          }),
        );
      }
      if (page.nextStartAfter === undefined) return;
      startAfter = page.nextStartAfter;
    }
  }

  /**
   * Sends one request with the current token; on a 401 it renews the token (once for all the
   * requests that saw the same stale token) and sends the request again. A second 401 is
   * returned to the caller, which reports it as Internal with a hint about the credentials.
   */
  private async send(
    method: HttpMethod,
    pathFor: (session: SwiftSession) => string,
    headers: Record<string, string>,
    body: HttpRequestBody | undefined,
    idempotent: boolean,
  ): Promise<HttpResponse> {
    const request = (session: SwiftSession): Promise<HttpResponse> =>
      this.client.request({ method, origin: session.storageUrl, path: pathFor(session), headers: { ...headers, "x-auth-token": session.token }, body, idempotent });
    const session = await this.currentSession();
    const response = await request(session);
    if (response.status !== 401) return response;
    return request(await this.renewSession(session));
  }

  private currentSession(): Promise<SwiftSession> {
    if (this.session === undefined) {
      const session = authenticate(this.client, this.credentials, this.storageUrlOverride);
      this.session = session;
      // A failed login is not kept: the next call tries again.
      session.catch(() => {
        if (this.session === session) this.session = undefined;
      });
    }
    return this.session;
  }

  /** A new session, unless another request already replaced `stale` (then that one). */
  private async renewSession(stale: SwiftSession): Promise<SwiftSession> {
    const pending = this.session;
    if (pending !== undefined) {
      const current = await pending.catch(() => undefined);
      if (current !== undefined && current.token !== stale.token) return current;
      if (this.session === pending) this.session = undefined;
    }
    return this.currentSession();
  }

  private containerPath(session: SwiftSession, namespace: NamespaceName): string {
    return `${session.storageUrl.pathname}/${encodeURIComponent(this.containerPrefix + namespace)}`;
  }

  private objectPath(session: SwiftSession, namespace: NamespaceName, key: string): string {
    return `${this.containerPath(session, namespace)}/${encodeText(key, `${this.description}: ${namespace}/${key}`)}`;
  }

  private failure(response: HttpResponse, context: string): StoreError {
    return storeErrorForStatus(response.status, context, response.body);
  }
}

const EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e";

/** Serializes the writes of one key within this store instance (a map holding only keys in use). */
class KeyLocks {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(lockKey: string, critical: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(lockKey) ?? Promise.resolve();
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => held);
    this.tails.set(lockKey, tail);
    await previous;
    try {
      return await critical();
    } finally {
      release();
      if (this.tails.get(lockKey) === tail) this.tails.delete(lockKey);
    }
  }
}

/** Percent-encodes a key (or prefix, marker) for a path or query: every byte but [A-Za-z0-9-_.!~*'()]; '/' too, which Swift decodes back. */
function encodeText(text: string, context: string): string {
  try {
    return encodeURIComponent(text);
  } catch (error) {
    throw new StoreError("Invalid", `${context}: the key has an unpaired surrogate (no UTF-8 spelling)`, { cause: error });
  }
}

/** Swift's ETag without the quotes some versions (and large objects) put around it. */
function etagOf(response: HttpResponse): string | undefined {
  const value = response.headers.etag;
  return value === undefined ? undefined : value.replace(/^"(.*)"$/, "$1");
}

function isMd5Hex(text: string): boolean {
  return /^[0-9a-f]{32}$/.test(text);
}

function parseJsonArray(body: Buffer, context: string): unknown[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new StoreError("Internal", `${context}: the listing is not JSON`, { cause: error });
  }
  if (!Array.isArray(parsed)) throw new StoreError("Internal", `${context}: the listing is not a JSON array`);
  return parsed;
}

function listingEntry(entry: unknown, context: string): SwiftListingEntry {
  const { name, bytes, hash } = (entry ?? {}) as Partial<Record<keyof SwiftListingEntry, unknown>>;
  if (typeof name !== "string" || typeof bytes !== "number" || typeof hash !== "string") {
    throw new StoreError("Internal", `${context}: unexpected listing entry ${JSON.stringify(entry).slice(0, 200)}`);
  }
  return { name, bytes, hash: hash.replace(/^"(.*)"$/, "$1") };
}

function tooLarge(sizeBytes: number): StoreError {
  return new StoreError("Invalid", `swift: an object of ${sizeBytes} bytes is larger than Swift's ${SWIFT_OBJECT_SIZE_BYTES_MAX}-byte limit (large objects are not supported)`);
}

/** Opens the putFile source; a missing file (or a directory path) is the caller's mistake: Invalid, as in every store. */
async function openSourceFile(filePath: string): Promise<FileHandle> {
  try {
    return await open(filePath, "r");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const kind: StoreErrorKind =
      code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR" ? "Invalid" : code === "EIO" || code === "EMFILE" || code === "ENFILE" || code === "EAGAIN" || code === "EINTR" ? "Transient" : "Internal";
    const message = `putFile: cannot read ${filePath}: ${error instanceof Error ? error.message : String(error)}`;
    throw new StoreError(kind, kind === "Invalid" ? `${message} (name an existing regular file)` : message, { cause: error });
  }
}

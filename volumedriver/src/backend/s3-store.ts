// The `s3` ObjectStore on @aws-sdk/client-s3: AWS S3 and the S3 APIs of Swift (s3api), Ceph RGW,
// MinIO. Namespaces map to buckets or to key prefixes of one shared bucket (s3-namespace-layout.ts);
// large objects go up in parallel multipart uploads (s3-multipart.ts); conditional puts use the
// server's If-None-Match / If-Match when a probe shows it honours them (s3-conditional-writes.ts)
// and otherwise a HEAD-then-PUT that is atomic only within this store instance. All failures
// become StoreError kinds in s3-error-map.ts.
//
// Retries: the SDK's own retries are off (maxAttempts 1). Stack RetryingObjectStore on this store:
// one retry policy, bounded, with the conditional-put ambiguity handled in one place. Only the
// parts of a multipart upload are retried here (a bounded few times), so one lost part does not
// resend a whole SCO.
import {
  CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand,
  ListBucketsCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client, AbortMultipartUploadCommand,
} from "@aws-sdk/client-s3";
import type { BucketLocationConstraint, S3ClientConfig } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { randomBytes } from "node:crypto";
import { open, stat } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { compareKeys, resolveListLimitKeys } from "./list-paging.ts";
import { resolveRange, validateRange } from "./object-range.ts";
import { isStoreError, StoreError, validateKey, validateNamespace } from "./object-store.ts";
import type { ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutOptions, PutFileOptions } from "./object-store.ts";
import { probeConditionalWrites } from "./s3-conditional-writes.ts";
import type { ConditionalWriteSupport } from "./s3-conditional-writes.ts";
import { mapS3Error } from "./s3-error-map.ts";
import { S3NamespaceLayout } from "./s3-namespace-layout.ts";
import type { S3NamespaceMapping } from "./s3-namespace-layout.ts";
import { planParts, uploadMultipart } from "./s3-multipart.ts";
import type { PartReader } from "./s3-multipart.ts";
import { readSourceFile } from "./source-file.ts";

const MIB = 1024 * 1024;

export interface S3ObjectStoreOptions {
  /** http(s)://host:port of an S3-compatible server; omitted: AWS S3 of `region`. */
  endpoint?: string;
  /** Default "us-east-1" (what Swift's s3api and Ceph RGW accept by default). */
  region?: string;
  /** Path-style URLs (http://host/bucket/key), which most non-AWS servers need. Default: true when `endpoint` is set. */
  forcePathStyle?: boolean;
  /** Static credentials; omitted: the SDK's default chain (environment, shared config, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Default: one bucket per namespace, every bucket a namespace. */
  namespaces?: S3NamespaceMapping;
  /** Objects larger than this go up as multipart uploads. Default 16 MiB. */
  multipartThresholdBytes?: number;
  /** Part size of multipart uploads (at least 5 MiB; raised if 10,000 parts would not do). Default 8 MiB. */
  multipartPartSizeBytes?: number;
  /** Parts of one upload in flight (and in memory) at once. Default 4. */
  multipartPartsInFlightMax?: number;
  /** Attempts per part, the first included, for Transient failures. Default 3. */
  multipartPartAttemptsMax?: number;
  /** Sockets per host of the keep-alive agent. Default 64. */
  socketsMax?: number;
  /** Bound on connecting. Default 5,000 ms. */
  connectTimeoutMs?: number;
  /** Bound on one request until its response starts, and on socket idleness. Default 120,000 ms. */
  requestTimeoutMs?: number;
  /** "detect" (default): probe the server once; "native": trust it; "emulated": HEAD-then-PUT, atomic within this store only. */
  conditionalWrites?: "detect" | "native" | "emulated";
  /** Deletes in flight while a namespace is emptied. Default 16. */
  deletesInFlightMax?: number;
  /** Tests: replaces the HTTP handler (and so the network). */
  requestHandler?: S3ClientConfig["requestHandler"];
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  readonly layout: S3NamespaceLayout;
  readonly multipartThresholdBytes: number;
  readonly multipartPartSizeBytes: number;
  readonly multipartPartsInFlightMax: number;
  readonly multipartPartAttemptsMax: number;
  readonly deletesInFlightMax: number;
  private readonly client: S3Client;
  private readonly region: string;
  private readonly agents: Array<http.Agent | https.Agent> = [];
  private readonly conditionalWritesMode: "detect" | "native" | "emulated";
  /** The probe's verdict per kind of write, once known (a failed probe leaves it unset). */
  private readonly conditionalSupport: { put?: Promise<ConditionalWriteSupport>; multipart?: Promise<ConditionalWriteSupport> } = {};
  /** Writes and deletes of one object are serialized in this store, so emulated conditions are atomic here. */
  private readonly keyLocks = new Map<string, Promise<void>>();
  private closed = false;

  constructor(options: S3ObjectStoreOptions = {}) {
    this.layout = new S3NamespaceLayout(options.namespaces ?? { kind: "bucketPerNamespace" });
    this.region = options.region ?? "us-east-1";
    this.multipartThresholdBytes = positiveInteger("multipartThresholdBytes", options.multipartThresholdBytes ?? 16 * MIB);
    this.multipartPartSizeBytes = positiveInteger("multipartPartSizeBytes", options.multipartPartSizeBytes ?? 8 * MIB);
    this.multipartPartsInFlightMax = positiveInteger("multipartPartsInFlightMax", options.multipartPartsInFlightMax ?? 4);
    this.multipartPartAttemptsMax = positiveInteger("multipartPartAttemptsMax", options.multipartPartAttemptsMax ?? 3);
    this.deletesInFlightMax = positiveInteger("deletesInFlightMax", options.deletesInFlightMax ?? 16);
    this.conditionalWritesMode = options.conditionalWrites ?? "detect";
    if (options.endpoint !== undefined && !/^https?:\/\/[^/]+\/?$/.test(options.endpoint)) {
      throw new RangeError(`endpoint ${JSON.stringify(options.endpoint)}: use http(s)://host:port`);
    }
    const mapping = this.layout.mapping;
    const where = mapping.kind === "sharedBucket" ? ` bucket ${mapping.bucket}/${mapping.prefix}` : mapping.bucketPrefix ? ` buckets ${mapping.bucketPrefix}*` : "";
    this.description = `s3:${options.endpoint ?? `aws:${this.region}`}${where}`;
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: this.region,
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      credentials: options.credentials,
      maxAttempts: 1,
      // The SDK's default CRC checksums (and aws-chunked bodies) are not understood by every
      // S3-compatible server; ETags already carry MD5s of what the server stored.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: options.requestHandler ?? this.makeHttpHandler(options),
    });
  }

  private makeHttpHandler(options: S3ObjectStoreOptions): NodeHttpHandler {
    const socketsMax = positiveInteger("socketsMax", options.socketsMax ?? 64);
    const requestTimeoutMs = positiveInteger("requestTimeoutMs", options.requestTimeoutMs ?? 120_000);
    const httpAgent = new http.Agent({ keepAlive: true, maxSockets: socketsMax });
    const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: socketsMax });
    this.agents.push(httpAgent, httpsAgent);
    return new NodeHttpHandler({
      httpAgent,
      httpsAgent,
      connectionTimeout: positiveInteger("connectTimeoutMs", options.connectTimeoutMs ?? 5000),
      requestTimeout: requestTimeoutMs,
      throwOnRequestTimeout: true,
      socketTimeout: requestTimeoutMs,
    });
  }

  // ---- namespaces ----

  async createNamespace(namespace: NamespaceName): Promise<void> {
    return this.call(`createNamespace ${namespace}`, namespace, undefined, async (bucket) => {
      if (this.layout.sharedBucket) {
        await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: this.layout.markerKey(namespace), Body: Buffer.alloc(0) }));
        return;
      }
      try {
        // AWS wants a LocationConstraint everywhere but us-east-1, where it refuses one.
        const configuration = this.region === "us-east-1" ? undefined : { LocationConstraint: this.region as BucketLocationConstraint };
        await this.client.send(new CreateBucketCommand({ Bucket: bucket, CreateBucketConfiguration: configuration }));
      } catch (error) {
        const name = (error as { name?: string }).name;
        if (name === "BucketAlreadyOwnedByYou") return;
        // Some servers (Swift's s3api among them) answer BucketAlreadyExists to the owner too.
        if (name === "BucketAlreadyExists" && (await this.bucketExists(bucket))) return;
        throw error;
      }
    });
  }

  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    return this.call(`deleteNamespace ${namespace}`, namespace, undefined, async (bucket) => {
      await this.requireNamespace(namespace, bucket);
      if (this.layout.sharedBucket) {
        // Objects first, the marker last: a deletion cut short leaves the namespace existing, so retrying it finishes the job.
        await this.deleteAllUnder(bucket, this.layout.namespacePrefix(namespace));
        await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: this.layout.markerKey(namespace) }));
        await this.deleteAllUnder(bucket, this.layout.namespacePrefix(namespace));
        return;
      }
      for (let round = 1; round <= 5; round++) {
        await this.deleteAllUnder(bucket, "");
        await this.abortUploads(bucket);
        try {
          await this.client.send(new DeleteBucketCommand({ Bucket: bucket }));
          return;
        } catch (error) {
          const name = (error as { name?: string }).name;
          if (name === "NoSuchBucket") return;
          if (name !== "BucketNotEmpty") throw error;
        }
      }
      throw new StoreError("Transient", `${this.description}: deleteNamespace ${namespace}: objects keep appearing in bucket ${bucket}; stop its writers and retry`);
    });
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    this.assertOpen();
    const namespaces: NamespaceName[] = [];
    const context = this.context("listNamespaces", this.layout.sharedBucket ? this.layout.bucket("") : undefined);
    try {
      if (this.layout.sharedBucket) {
        const bucket = this.layout.bucket("");
        await this.forEachObject(bucket, this.layout.markerPrefix, (objectKey) => {
          namespaces.push(objectKey.slice(this.layout.markerPrefix.length));
        });
      } else {
        let continuationToken: string | undefined;
        for (let pageCount = 0; pageCount < 10_000; pageCount++) {
          const page = await this.client.send(new ListBucketsCommand({ ContinuationToken: continuationToken }));
          for (const bucket of page.Buckets ?? []) {
            const namespace = bucket.Name === undefined ? undefined : this.layout.namespaceOfBucket(bucket.Name);
            if (namespace !== undefined) namespaces.push(namespace);
          }
          continuationToken = page.ContinuationToken;
          if (continuationToken === undefined || continuationToken === "") break;
        }
      }
    } catch (error) {
      throw this.failure(error, context);
    }
    return namespaces.sort(compareKeys);
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    return this.call(`namespaceExists ${namespace}`, namespace, undefined, (bucket) => this.namespaceExistsIn(namespace, bucket));
  }

  // ---- objects ----

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    return this.call(`put ${objectName(namespace, key)}`, namespace, key, async (bucket) => {
      const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      return this.write(namespace, bucket, key, bytes.length, options, async (offsetBytes, lengthBytes) => bytes.subarray(offsetBytes, offsetBytes + lengthBytes));
    });
  }

  async putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo> {
    return this.call(`putFile ${objectName(namespace, key)}`, namespace, key, async (bucket) => {
      const sizeBytes = await sourceFileSize(filePath);
      if (sizeBytes <= this.multipartThresholdBytes) {
        const bytes = await readSourceFile(filePath);
        if (bytes.length !== sizeBytes) throw new StoreError("Invalid", `putFile: ${filePath} changed size while read (${sizeBytes} -> ${bytes.length}); it must be immutable`);
        return this.write(namespace, bucket, key, sizeBytes, options, async (offsetBytes, lengthBytes) => bytes.subarray(offsetBytes, offsetBytes + lengthBytes));
      }
      let file;
      try {
        file = await open(filePath, "r");
      } catch {
        await readSourceFile(filePath); // throws the kind that says what to do
        throw new StoreError("Internal", `putFile: cannot open ${filePath}`);
      }
      try {
        return await this.write(namespace, bucket, key, sizeBytes, options, async (offsetBytes, lengthBytes) => {
          const part = Buffer.allocUnsafe(lengthBytes);
          const { bytesRead } = await file.read(part, 0, lengthBytes, offsetBytes);
          if (bytesRead !== lengthBytes) throw new StoreError("Invalid", `putFile: ${filePath} shrank while read; it must be immutable`);
          return part;
        });
      } finally {
        await file.close();
      }
    });
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    validateRange(range);
    return this.call(`get ${objectName(namespace, key)}`, namespace, key, async (bucket) => {
      const objectKey = this.layout.objectKey(namespace, key);
      if (range !== undefined && range.lengthBytes === 0) return this.emptyRead(namespace, bucket, key, range);
      const rangeHeader = range === undefined ? undefined : `bytes=${range.offsetBytes}-${range.offsetBytes + range.lengthBytes - 1}`;
      let response;
      try {
        response = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey, Range: rangeHeader }));
      } catch (error) {
        const { name, status } = errorNameAndStatus(error);
        // 416: the range starts at or past the end. At the end (or any range of an empty object) is an empty read.
        if (range !== undefined && (name === "InvalidRange" || status === 416)) return this.emptyRead(namespace, bucket, key, range);
        throw error;
      }
      const body = response.Body === undefined ? new Uint8Array(0) : await response.Body.transformToByteArray();
      const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      if (response.ContentLength !== undefined && response.ContentLength !== bytes.length) {
        throw new StoreError("Transient", `${this.description}: get ${objectName(namespace, key)}: ${bytes.length} of ${response.ContentLength} bytes arrived`);
      }
      // A server that ignores Range answers 200 with the whole object: slice it here.
      if (range !== undefined && response.ContentRange === undefined) {
        const { startBytes, endBytes } = resolveRange(range, bytes.length);
        return bytes.subarray(startBytes, endBytes);
      }
      return bytes;
    });
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    return this.call(`head ${objectName(namespace, key)}`, namespace, key, (bucket) => this.headIn(namespace, bucket, key));
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    return this.call(`delete ${objectName(namespace, key)}`, namespace, key, async (bucket) => {
      // A bucket's absence shows in DeleteObject's answer; a shared-bucket namespace's needs its marker.
      if (this.layout.sharedBucket) await this.requireNamespace(namespace, bucket);
      const objectKey = this.layout.objectKey(namespace, key);
      await this.withKeyLock(bucket, objectKey, async () => {
        await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey }));
      });
    });
  }

  async list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage> {
    const limitKeys = resolveListLimitKeys(options);
    return this.call(`list ${namespace}`, namespace, undefined, async (bucket) => {
      const namespacePrefix = this.layout.namespacePrefix(namespace);
      const objects: ObjectInfo[] = [];
      let truncated = false;
      let continuationToken: string | undefined;
      // A truncated page may hold no keys (S3 allows it); follow it, boundedly, until keys or the end.
      for (let pageCount = 0; pageCount < 100 && objects.length === 0; pageCount++) {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: `${namespacePrefix}${options?.prefix ?? ""}`,
            StartAfter: options?.startAfter === undefined ? undefined : `${namespacePrefix}${options.startAfter}`,
            ContinuationToken: continuationToken,
            MaxKeys: limitKeys,
            // Keys may hold characters XML 1.0 cannot carry (U+FFFF, most controls).
            EncodingType: "url",
          }),
        );
        for (const entry of page.Contents ?? []) {
          if (entry.Key === undefined) continue;
          const key = this.layout.keyOfObjectKey(namespace, decodeListedKey(entry.Key));
          objects.push({ key, sizeBytes: entry.Size ?? 0, etag: normalizeEtag(entry.ETag) });
        }
        truncated = page.IsTruncated === true;
        continuationToken = page.NextContinuationToken;
        if (!truncated || continuationToken === undefined) break;
      }
      if (objects.length === 0 && this.layout.sharedBucket) await this.requireNamespace(namespace, bucket);
      if (objects.length > limitKeys) objects.length = limitKeys;
      return truncated && objects.length > 0 ? { objects, nextStartAfter: objects[objects.length - 1].key } : { objects };
    });
  }

  /** Destroys the client and its sockets. Calls in flight fail Closed. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
    for (const agent of this.agents) agent.destroy();
  }

  /** The probe's verdict for single puts (undefined until a conditional put needed it). Tests and reports read it. */
  async conditionalWriteSupport(kind: "put" | "multipart"): Promise<ConditionalWriteSupport | undefined> {
    return this.conditionalSupport[kind]?.catch(() => undefined);
  }

  // ---- internals ----

  /** Validates the names, runs `body` with the namespace's bucket, and maps every failure. */
  private async call<T>(what: string, namespace: NamespaceName, key: string | undefined, body: (bucket: string) => Promise<T>): Promise<T> {
    validateNamespace(namespace);
    if (key !== undefined) validateKey(key);
    this.assertOpen();
    const bucket = this.layout.bucket(namespace);
    const context = this.context(what, bucket);
    try {
      return await body(bucket);
    } catch (error) {
      throw this.failure(error, context);
    }
  }

  private context(what: string, bucket: string | undefined): { description: string; bucket?: string; bucketIsConfigured: boolean } {
    return { description: `${this.description}: ${what}`, bucket, bucketIsConfigured: this.layout.sharedBucket };
  }

  private failure(error: unknown, context: ReturnType<S3ObjectStore["context"]>): StoreError {
    if (this.closed) return new StoreError("Closed", `${this.description} is closed`, { cause: error });
    return mapS3Error(error, context);
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreError("Closed", `${this.description} is closed`);
  }

  private async bucketExists(bucket: string): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (error) {
      if (errorNameAndStatus(error).status === 404) return false;
      throw error;
    }
  }

  private async namespaceExistsIn(namespace: NamespaceName, bucket: string): Promise<boolean> {
    if (!this.layout.sharedBucket) return this.bucketExists(bucket);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: this.layout.markerKey(namespace) }));
      return true;
    } catch (error) {
      if (errorNameAndStatus(error).status === 404) return false;
      throw error;
    }
  }

  private async requireNamespace(namespace: NamespaceName, bucket: string): Promise<void> {
    if (!(await this.namespaceExistsIn(namespace, bucket))) throw new StoreError("NotFound", `${this.description}: namespace ${namespace} does not exist`);
  }

  private async headIn(namespace: NamespaceName, bucket: string, key: string): Promise<ObjectInfo | undefined> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: this.layout.objectKey(namespace, key) }));
      return { key, sizeBytes: response.ContentLength ?? 0, etag: normalizeEtag(response.ETag) };
    } catch (error) {
      // A 404 to HEAD has no body, so a missing key and a missing namespace look alike: ask.
      if (errorNameAndStatus(error).status !== 404) throw error;
      await this.requireNamespace(namespace, bucket);
      return undefined;
    }
  }

  /** A ranged read that returns no bytes: the object must exist and the range must not start past its end. */
  private async emptyRead(namespace: NamespaceName, bucket: string, key: string, range: ObjectRange): Promise<Buffer> {
    const info = await this.headIn(namespace, bucket, key);
    if (info === undefined) throw new StoreError("NotFound", `${this.description}: get ${objectName(namespace, key)}: no such key`);
    const { startBytes, endBytes } = resolveRange(range, info.sizeBytes);
    if (endBytes > startBytes) throw new StoreError("Transient", `${this.description}: get ${objectName(namespace, key)}: the object changed during the read`);
    return Buffer.alloc(0);
  }

  /** Stores `sizeBytes` bytes read by `readPart` under `key`, honouring `options`; one PUT or a multipart upload. */
  private async write(namespace: NamespaceName, bucket: string, key: string, sizeBytes: number, options: PutOptions | undefined, readPart: PartReader): Promise<ObjectInfo> {
    if (this.layout.sharedBucket) await this.requireNamespace(namespace, bucket);
    const objectKey = this.layout.objectKey(namespace, key);
    const multipart = sizeBytes > this.multipartThresholdBytes;
    const conditional = options?.ifAbsent === true || options?.ifMatch !== undefined;
    const support = conditional ? await this.supportFor(multipart ? "multipart" : "put", bucket) : { ifNoneMatch: false, ifMatch: false };
    return this.withKeyLock(bucket, objectKey, async () => {
      let ifNoneMatch: string | undefined;
      let ifMatch: string | undefined;
      if (options?.ifAbsent === true) {
        if (support.ifNoneMatch) ifNoneMatch = "*";
        else if ((await this.headIn(namespace, bucket, key)) !== undefined) throw new StoreError("PreconditionFailed", `${this.description}: put ${objectName(namespace, key)}: the key exists`);
      }
      if (options?.ifMatch !== undefined) {
        if (support.ifMatch) ifMatch = `"${options.ifMatch}"`;
        else if ((await this.headIn(namespace, bucket, key))?.etag !== options.ifMatch) {
          throw new StoreError("PreconditionFailed", `${this.description}: put ${objectName(namespace, key)}: the etag is not ${options.ifMatch}`);
        }
      }
      const etag = multipart
        ? await uploadMultipart({
            client: this.client, bucket, objectKey, objectSizeBytes: sizeBytes, readPart,
            plan: planParts(sizeBytes, this.multipartPartSizeBytes),
            partsInFlightMax: this.multipartPartsInFlightMax, partAttemptsMax: this.multipartPartAttemptsMax,
            ifNoneMatch, ifMatch,
            mapError: (error) => (this.closed ? new StoreError("Closed", `${this.description} is closed`) : mapS3Error(error, this.context(`put ${objectName(namespace, key)}`, bucket))),
          })
        : await this.putObject(bucket, objectKey, await readPart(0, sizeBytes), ifNoneMatch, ifMatch);
      // Ceph RGW may answer a (conditional) CompleteMultipartUpload without an ETag: ask for it.
      return { key, sizeBytes, etag: etag === undefined || etag === "" ? await this.etagOf(namespace, bucket, key) : normalizeEtag(etag) };
    });
  }

  /** The etag of an object just written (held under its key lock). */
  private async etagOf(namespace: NamespaceName, bucket: string, key: string): Promise<string> {
    const info = await this.headIn(namespace, bucket, key);
    if (info === undefined) throw new StoreError("Transient", `${this.description}: put ${objectName(namespace, key)}: the object vanished right after its upload`);
    return info.etag;
  }

  private async putObject(bucket: string, objectKey: string, body: Buffer, ifNoneMatch?: string, ifMatch?: string): Promise<string | undefined> {
    const response = await this.client.send(
      new PutObjectCommand({ Bucket: bucket, Key: objectKey, Body: body, ContentLength: body.length, IfNoneMatch: ifNoneMatch, IfMatch: ifMatch }),
    );
    return response.ETag;
  }

  /** The server's conditional-write support for this kind of write: probed once, or as configured. */
  private async supportFor(kind: "put" | "multipart", bucket: string): Promise<ConditionalWriteSupport> {
    if (this.conditionalWritesMode === "native") return { ifNoneMatch: true, ifMatch: true };
    if (this.conditionalWritesMode === "emulated") return { ifNoneMatch: false, ifMatch: false };
    let verdict = this.conditionalSupport[kind];
    if (verdict === undefined) {
      const probeKey = this.layout.probeKey(randomBytes(8).toString("hex"));
      const context = this.context(`probe conditional writes (${kind}) ${bucket}/${probeKey}`, bucket);
      const body = Buffer.from("ovs conditional write probe");
      verdict = probeConditionalWrites({
        write: async (condition) => {
          try {
            const etag = kind === "put"
              ? await this.putObject(bucket, probeKey, body, condition.ifNoneMatch, condition.ifMatch)
              : await uploadMultipart({
                  client: this.client, bucket, objectKey: probeKey, objectSizeBytes: body.length,
                  readPart: async () => body, plan: planParts(body.length, this.multipartPartSizeBytes),
                  partsInFlightMax: 1, partAttemptsMax: 1, ...condition,
                  mapError: (error) => mapS3Error(error, context),
                });
            if (etag === undefined || etag === "") {
              return normalizeEtag((await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: probeKey }))).ETag);
            }
            return normalizeEtag(etag);
          } catch (error) {
            throw mapS3Error(error, context);
          }
        },
        remove: async () => {
          await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: probeKey }));
        },
      });
      this.conditionalSupport[kind] = verdict;
      // A probe that failed (an outage, a missing bucket) gives no verdict: the next conditional write probes again.
      verdict.catch(() => {
        if (this.conditionalSupport[kind] === verdict) delete this.conditionalSupport[kind];
      });
    }
    return verdict;
  }

  /** Runs `body` after every earlier write or delete of this object in this store has settled. */
  private async withKeyLock<T>(bucket: string, objectKey: string, body: () => Promise<T>): Promise<T> {
    const lockKey = `${bucket}\0${objectKey}`;
    const previous = this.keyLocks.get(lockKey) ?? Promise.resolve();
    let release!: () => void;
    const current = new Promise<void>((resolve) => (release = resolve));
    const chained = previous.then(() => current);
    this.keyLocks.set(lockKey, chained);
    await previous;
    try {
      return await body();
    } finally {
      release();
      if (this.keyLocks.get(lockKey) === chained) this.keyLocks.delete(lockKey);
    }
  }

  /** Calls `visit` with every object key under `prefix` in `bucket`, in order. */
  private async forEachObject(bucket: string, prefix: string, visit: (objectKey: string) => void): Promise<void> {
    let continuationToken: string | undefined;
    for (let pageCount = 0; pageCount < 1_000_000; pageCount++) {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: continuationToken, EncodingType: "url" }));
      for (const entry of page.Contents ?? []) if (entry.Key !== undefined) visit(decodeListedKey(entry.Key));
      continuationToken = page.NextContinuationToken;
      if (page.IsTruncated !== true || continuationToken === undefined) return;
    }
  }

  /** Deletes every object under `prefix`, listing and deleting page by page with deletesInFlightMax deletes in flight. */
  private async deleteAllUnder(bucket: string, prefix: string): Promise<void> {
    const objectKeys: string[] = [];
    await this.forEachObject(bucket, prefix, (objectKey) => objectKeys.push(objectKey));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < objectKeys.length) {
        const objectKey = objectKeys[next++];
        await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey }));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.deletesInFlightMax, objectKeys.length) }, () => worker()));
  }

  /** Aborts the unfinished multipart uploads in `bucket` (their parts would keep it from being deleted). */
  private async abortUploads(bucket: string): Promise<void> {
    let uploads;
    try {
      uploads = await this.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    } catch (error) {
      if (errorNameAndStatus(error).status === 501) return;
      throw error;
    }
    for (const upload of uploads.Uploads ?? []) {
      if (upload.Key === undefined || upload.UploadId === undefined) continue;
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId })).catch((error: unknown) => {
        if (!isStoreError(mapS3Error(error, this.context("abort upload", bucket)), "NotFound")) throw error;
      });
    }
  }
}

/** Etags without the quotes S3 puts around them (some servers omit them in some answers). */
export function normalizeEtag(etag: string | undefined): string {
  if (etag === undefined || etag === "") throw new StoreError("Internal", "the server returned no ETag");
  return etag.startsWith('"') && etag.endsWith('"') && etag.length >= 2 ? etag.slice(1, -1) : etag;
}

/**
 * A key from a listing made with encoding-type=url. AWS writes a space as "+" and escapes a
 * literal "+" as %2B; Swift and RGW escape both; so "+" means a space everywhere.
 */
export function decodeListedKey(encoded: string): string {
  return decodeURIComponent(encoded.replace(/\+/g, " "));
}

function errorNameAndStatus(error: unknown): { name: string | undefined; status: number | undefined } {
  const shape = error as { name?: unknown; $metadata?: { httpStatusCode?: unknown } } | undefined;
  return {
    name: typeof shape?.name === "string" ? shape.name : undefined,
    status: typeof shape?.$metadata?.httpStatusCode === "number" ? shape.$metadata.httpStatusCode : undefined,
  };
}

/** The size of putFile's source; a file that cannot be read fails as readSourceFile says (missing, a directory: Invalid). */
async function sourceFileSize(filePath: string): Promise<number> {
  let fileStat;
  try {
    fileStat = await stat(filePath);
  } catch {
    await readSourceFile(filePath);
    throw new StoreError("Internal", `putFile: cannot stat ${filePath}`);
  }
  if (!fileStat.isFile()) throw new StoreError("Invalid", `putFile: ${filePath} is not a regular file (name an existing regular file)`);
  return fileStat.size;
}

/** `namespace/key` for messages, with a long key shortened (keys may be 1024 characters). */
function objectName(namespace: NamespaceName, key: string): string {
  return key.length <= 100 ? `${namespace}/${key}` : `${namespace}/${key.slice(0, 60)}…(${key.length} characters)`;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} ${value}: use a positive integer`);
  return value;
}

// AlbaClient: Alba's object and admin API in-process, on a metadata store and an AsdPool. The
// proxy serves it over HTTP; maintenance and tests use it directly. Algorithms (put, get,
// degraded reads, caches) are described in alba/docs/client.md.
//
// Invariants:
// - An object is visible only once its manifest commits, and a manifest commits only after each of
//   its chunks has at least c durable fragments. A failed put leaves no visible object; its
//   fragments are deleted, or left with a pending-upload record for maintenance's GC.
// - Every object version has a fresh object id, so fragments are never overwritten in place, and
//   cached fragments (keyed by object id) never go stale.
// - Reads return bytes only from fragments that pass their checks, or fail.
// The client owns the metadata store and the pool it is given: close() closes both.
import { randomBytes } from "node:crypto";
import path from "node:path";
import { LRUCache } from "lru-cache";
import { BufferPool } from "../memory/buffer-pool.ts";
import type { Logger } from "pino";
import { pino } from "pino";
import type { ByteRange } from "../asd/asd-api.ts";
import { AsdError } from "../asd/asd-api.ts";
import type { AlbaMetadataStore, AsdRecord, NamespaceRecord, ObjectManifest } from "../metadata/metadata-store.ts";
import { MetadataError } from "../metadata/metadata-store.ts";
import { SqliteMetadataStore } from "../metadata/sqlite-metadata-store.ts";
import { selectPolicy } from "../preset/policy-selection.ts";
import { validatePreset } from "../preset/preset-validation.ts";
import type { Preset, PresetChanges } from "../preset/preset.ts";
import { PRESET_NAME_PATTERN } from "../preset/preset.ts";
import {
  AlbaError, isAlbaError,
  type AlbaApi, type AlbaListOptions, type AlbaListPage, type AlbaObjectInfo, type AlbaPutOptions, type AlbaReadOptions, type AsdStatus, type DiskSafety,
} from "./alba-client-api.ts";
import { AsdPool, type AsdConnectionFactory, type AsdPoolSettings } from "./asd-pool.ts";
import { FragmentDeleter, FRAGMENT_DELETER_SETTINGS_DEFAULT } from "./fragment-deleter.ts";
import { fragmentKey } from "./fragment-key.ts";
import { readObjectRanges, type ObjectReaderContext } from "./object-reader.ts";
import { TooFewFragmentsError, writeObjectChunks, type WrittenFragment } from "./object-writer.ts";

export interface AlbaClientSettings {
  /** Chunks of one put encoded and written at once (each holds a chunk, its parity and encoded copies). */
  chunkWritesInFlightMax: number;
  /** Free coding buffers (the padded chunk and its parity) kept for the next chunks, in bytes. */
  codingBuffersFreeBytesMax: number;
  /** Chunks of one get read at once. */
  chunkReadsInFlightMax: number;
  /** Placement attempts of one put: a retry picks new ASDs after writes failed (ASDs down or full). */
  putAttemptsMax: number;
  /** Manifests kept in the cache (each a few hundred bytes per chunk). */
  manifestCacheEntriesMax: number;
  /** A cached manifest is re-read after this long, so changes by other processes (maintenance) show. */
  manifestCacheTtlMs: number;
  /** Bytes of decoded data fragments kept for ranged reads. */
  fragmentCacheBytesMax: number;
  /**
   * Per chunk, ranges of at most this many bytes of uncompressed objects are read partially (0:
   * never, the default). Partial reads are not CRC-checked (the CRC covers whole fragments and the
   * ASD does not verify ranges), so they are only for callers that verify bytes themselves.
   */
  partialReadSizeBytesMax: number;
  /** Background fragment deletes (replaced versions, deleted namespaces) in flight. */
  backgroundDeletesInFlightMax: number;
  /** How long close() waits for background deletes before leaving the rest to GC. */
  closeDrainTimeoutMs: number;
  /** An ASD probe at claim time gives up after this long. */
  claimProbeTimeoutMs: number;
}

export const ALBA_CLIENT_SETTINGS_DEFAULT: AlbaClientSettings = {
  chunkWritesInFlightMax: 4,
  codingBuffersFreeBytesMax: 64 * 1024 * 1024,
  chunkReadsInFlightMax: 4,
  putAttemptsMax: 2,
  manifestCacheEntriesMax: 10_000,
  manifestCacheTtlMs: 30_000,
  fragmentCacheBytesMax: 64 * 1024 * 1024,
  partialReadSizeBytesMax: 0,
  backgroundDeletesInFlightMax: 4,
  closeDrainTimeoutMs: 5_000,
  claimProbeTimeoutMs: 5_000,
};

/** Keys: 1-1024 UTF-8 bytes without NUL (the volumedriver's stricter rules apply in its AlbaObjectStore). */
export const ALBA_KEY_SIZE_BYTES_MAX = 1024;
const NAMESPACE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Manifests per page when diskSafety scans them. */
const SCAN_PAGE_MANIFESTS = 1000;

export interface AlbaClientOptions {
  metadata: AlbaMetadataStore;
  pool: AsdPool;
  settings?: Partial<AlbaClientSettings>;
  logger?: Logger;
  /**
   * Where get/getRanges allocate their results; a caller that knows when it is done with a result
   * (the proxy, once the response is sent) releases it there. Without it: plain allocations.
   */
  outputBuffers?: BufferPool;
}

export interface OpenAlbaClientOptions {
  /** Makes the connection to each ASD (the proxy passes AsdClient's). */
  connect: AsdConnectionFactory;
  settings?: Partial<AlbaClientSettings>;
  poolSettings?: Partial<AsdPoolSettings>;
  logger?: Logger;
  outputBuffers?: BufferPool;
}

/** Coding buffers smaller than this (tiny objects) are plain allocations. */
const CODING_BUFFER_SIZE_BYTES_MIN = 256 * 1024;

/** The metadata file of a backend directory. */
export function metadataPathOf(backendDirectory: string): string {
  return path.join(backendDirectory, "metadata.sqlite");
}

/** Maps a metadata store's error to the client's; anything else passes through. */
export function albaErrorFromMetadata(error: unknown): unknown {
  if (!(error instanceof MetadataError)) return error;
  switch (error.kind) {
    case "NotFound": return new AlbaError("NotFound", error.message, { cause: error });
    case "Conflict": return new AlbaError("Conflict", error.message, { cause: error });
    case "Invalid": return new AlbaError("Invalid", error.message, { cause: error });
    case "InUse": return new AlbaError("Conflict", error.message, { cause: error });
  }
}

function withMetadataErrors<T>(action: () => T): T {
  try {
    return action();
  } catch (error) {
    throw albaErrorFromMetadata(error);
  }
}

function validateNamespaceName(name: string): void {
  if (typeof name !== "string" || !NAMESPACE_NAME_PATTERN.test(name)) {
    throw new AlbaError("Invalid", `invalid namespace name ${JSON.stringify(name)}: use 1-63 of [a-z0-9._-] starting with a letter or digit`);
  }
}

function validateKey(key: string): void {
  if (typeof key !== "string" || key.length === 0 || key.includes("\0") || Buffer.byteLength(key, "utf8") > ALBA_KEY_SIZE_BYTES_MAX) {
    throw new AlbaError("Invalid", `invalid object key ${JSON.stringify(key)}: use 1-${ALBA_KEY_SIZE_BYTES_MAX} UTF-8 bytes without NUL`);
  }
}

function validateRanges(ranges: readonly ByteRange[], sizeBytes: number): ByteRange[] {
  return ranges.map((range) => {
    const { offsetBytes, lengthBytes } = range;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
      throw new AlbaError("Invalid", `invalid range offset ${offsetBytes} length ${lengthBytes}: use non-negative integers`);
    }
    if (offsetBytes > sizeBytes) throw new AlbaError("Invalid", `range offset ${offsetBytes} is past the end of a ${sizeBytes}-byte object`);
    return { offsetBytes, lengthBytes: Math.min(lengthBytes, sizeBytes - offsetBytes) };
  });
}

function infoOf(manifest: ObjectManifest): AlbaObjectInfo {
  return { key: manifest.key, sizeBytes: manifest.sizeBytes, etag: manifest.objectId };
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new AsdError("Unavailable", `${what} timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class AlbaClient implements AlbaApi {
  readonly settings: AlbaClientSettings;
  readonly metadata: AlbaMetadataStore;
  readonly pool: AsdPool;
  private readonly logger: Logger;
  private readonly manifestCache: LRUCache<string, ObjectManifest>;
  private readonly fragmentCache: LRUCache<string, Buffer>;
  private readonly presets = new Map<string, Preset>();
  private readonly deleter: FragmentDeleter;
  private readonly reader: ObjectReaderContext;
  private readonly codingBuffers: BufferPool;
  private placementRotation = 0;
  private closed = false;

  constructor(options: AlbaClientOptions) {
    this.settings = { ...ALBA_CLIENT_SETTINGS_DEFAULT, ...options.settings };
    this.metadata = options.metadata;
    this.pool = options.pool;
    this.logger = (options.logger ?? pino({ level: "silent" })).child({ component: "alba-client" });
    this.manifestCache = new LRUCache({ max: this.settings.manifestCacheEntriesMax, ttl: this.settings.manifestCacheTtlMs });
    this.fragmentCache = new LRUCache<string, Buffer>({ maxSize: Math.max(1, this.settings.fragmentCacheBytesMax), sizeCalculation: (buffer) => Math.max(1, buffer.length) });
    this.deleter = new FragmentDeleter(this.pool, this.logger, { ...FRAGMENT_DELETER_SETTINGS_DEFAULT, deletesInFlightMax: this.settings.backgroundDeletesInFlightMax });
    this.codingBuffers = new BufferPool({ sizeBytesMin: CODING_BUFFER_SIZE_BYTES_MIN, freeBytesMax: this.settings.codingBuffersFreeBytesMax });
    this.reader = {
      pool: this.pool, logger: this.logger, fragmentCache: this.fragmentCache,
      chunkReadsInFlightMax: this.settings.chunkReadsInFlightMax, partialReadSizeBytesMax: this.settings.partialReadSizeBytesMax,
      ...(options.outputBuffers === undefined ? {} : { outputBuffers: options.outputBuffers }),
    };
  }

  /** Opens the backend in `backendDirectory` (made by createAlbaBackend) and probes its ASDs. */
  static async open(backendDirectory: string, options: OpenAlbaClientOptions): Promise<AlbaClient> {
    const metadata = SqliteMetadataStore.open(metadataPathOf(backendDirectory));
    const pool = new AsdPool({ metadata, connect: options.connect, settings: options.poolSettings, logger: options.logger });
    await pool.probeAll();
    return new AlbaClient({
      metadata, pool, settings: options.settings, logger: options.logger,
      ...(options.outputBuffers === undefined ? {} : { outputBuffers: options.outputBuffers }),
    });
  }

  private checkOpen(): void {
    if (this.closed) throw new AlbaError("Unavailable", "the Alba client is closed");
  }

  private preset(name: string): Preset {
    let preset = this.presets.get(name);
    if (preset === undefined) {
      preset = this.metadata.getPreset(name);
      if (preset === undefined) throw new AlbaError("NotFound", `preset ${name} does not exist`);
      // Presets change only through updatePreset and deletePreset below, which drop the cached
      // copy (the proxy is the one process that owns the metadata).
      this.presets.set(name, preset);
    }
    return preset;
  }

  private namespaceRecord(name: string): NamespaceRecord {
    validateNamespaceName(name);
    const record = this.metadata.getNamespace(name);
    if (record === undefined) throw new AlbaError("NotFound", `namespace ${name} does not exist`);
    return record;
  }

  private cachedManifest(namespace: string, key: string): ObjectManifest | undefined {
    const cacheKey = `${namespace}\0${key}`;
    const cached = this.manifestCache.get(cacheKey);
    if (cached !== undefined) return cached;
    this.namespaceRecord(namespace);
    const manifest = this.metadata.getManifest(namespace, key);
    if (manifest !== undefined) this.manifestCache.set(cacheKey, manifest);
    return manifest;
  }

  private forgetManifest(namespace: string, key: string): void {
    this.manifestCache.delete(`${namespace}\0${key}`);
  }

  // ---- namespaces ----

  async createNamespace(name: string, options: { presetName?: string } = {}): Promise<NamespaceRecord> {
    this.checkOpen();
    validateNamespaceName(name);
    const presetName = options.presetName ?? this.metadata.defaultPresetName();
    if (presetName === undefined) throw new AlbaError("Invalid", "no preset named and the backend has no default preset: add one (ovs alba preset add)");
    return withMetadataErrors(() => this.metadata.createNamespace(name, presetName));
  }

  async deleteNamespace(name: string): Promise<void> {
    this.checkOpen();
    validateNamespaceName(name);
    const manifests = withMetadataErrors(() => this.metadata.deleteNamespace(name));
    for (const key of [...this.manifestCache.keys()]) if (key.startsWith(`${name}\0`)) this.manifestCache.delete(key);
    for (const manifest of manifests) this.deleteFragmentsInBackground(manifest);
    this.logger.info({ namespace: name, objects: manifests.length }, "namespace deleted; its fragments are deleted in the background");
  }

  async listNamespaces(): Promise<NamespaceRecord[]> {
    this.checkOpen();
    return this.metadata.listNamespaces();
  }

  async getNamespace(name: string): Promise<NamespaceRecord | undefined> {
    this.checkOpen();
    validateNamespaceName(name);
    return this.metadata.getNamespace(name);
  }

  // ---- objects ----

  async put(namespace: string, key: string, data: Uint8Array, options: AlbaPutOptions = {}): Promise<AlbaObjectInfo> {
    this.checkOpen();
    validateKey(key);
    if (options.ifMatch !== undefined && typeof options.ifMatch !== "string") throw new AlbaError("Invalid", "ifMatch must be an etag string");
    const preset = this.preset(this.namespaceRecord(namespace).presetName);
    // Cheap early checks: failing here writes no fragments. The commit checks again atomically.
    const current = this.metadata.getManifest(namespace, key);
    if (options.ifAbsent === true && current !== undefined) throw new AlbaError("PreconditionFailed", `${namespace}/${key} exists (ifAbsent)`);
    if (options.ifMatch !== undefined && current?.objectId !== options.ifMatch) {
      throw new AlbaError("PreconditionFailed", `${namespace}/${key} is ${current?.objectId ?? "absent"}, not ${options.ifMatch} (ifMatch)`);
    }
    for (let attempt = 1; ; attempt++) {
      const manifest = await this.writeAttempt(namespace, key, data, preset, attempt, options.dataAvailable);
      if (manifest === undefined) continue;
      return this.commit(manifest, options);
    }
  }

  /** One placement and write of every chunk: the manifest to commit, or undefined to retry with a new placement. */
  private async writeAttempt(
    namespace: string, key: string, data: Uint8Array, preset: Preset, attempt: number, dataAvailable: AlbaPutOptions["dataAvailable"],
  ): Promise<ObjectManifest | undefined> {
    const neededFreeBytes = Math.max(1, Math.min(data.length, preset.fragmentSizeBytes));
    const candidates = this.pool.liveAsds()
      .filter((asd) => asd.freeBytes === undefined || asd.freeBytes >= neededFreeBytes)
      .map((asd) => ({ asdId: asd.record.asdId, nodeId: asd.record.nodeId, ...(asd.freeBytes === undefined ? {} : { freeBytes: asd.freeBytes }) }));
    const selection = selectPolicy(preset, candidates, { rotation: this.placementRotation++ });
    if (selection === undefined) {
      const nodeCount = new Set(candidates.map((candidate) => candidate.nodeId)).size;
      const policies = preset.policies.map((policy) => `(${policy.k},${policy.m},${policy.c},${policy.x})`).join(", ");
      throw new AlbaError("NoSatisfiablePolicy", `no satisfiable policy in preset ${preset.name} [${policies}]: only ${candidates.length} live ASDs with room on ${nodeCount} node ids; claim more ASDs or free space`);
    }
    const objectId = randomBytes(16).toString("hex");
    const { policy, placement } = selection;
    this.metadata.addPendingUpload({ objectId, namespace, key, startedAt: new Date().toISOString() });
    const written: WrittenFragment[] = [];
    try {
      const chunks = await writeObjectChunks(
        { pool: this.pool, logger: this.logger, chunkWritesInFlightMax: this.settings.chunkWritesInFlightMax, codingBuffers: this.codingBuffers },
        { objectId, preset, policy, placement, ...(dataAvailable === undefined ? {} : { dataAvailable }) }, data, written,
      );
      return {
        namespace, key, objectId, sizeBytes: data.length, createdAt: new Date().toISOString(), presetName: preset.name, policy,
        compression: preset.compression, encryption: preset.encryption, chunkSizeBytes: policy.k * preset.fragmentSizeBytes, chunks,
      };
    } catch (error) {
      await this.abandonUpload(objectId, written);
      if (!(error instanceof TooFewFragmentsError)) throw error;
      this.logger.warn({ namespace, key, attempt, policy, err: error }, "put attempt failed");
      if (attempt >= this.settings.putAttemptsMax) {
        throw new AlbaError("Unavailable", `put ${namespace}/${key}: ${error.message} after ${attempt} attempts; retry when more ASDs are up`, { cause: error });
      }
      return undefined;
    }
  }

  private async commit(manifest: ObjectManifest, options: AlbaPutOptions): Promise<AlbaObjectInfo> {
    const { namespace, key } = manifest;
    let replaced: ObjectManifest | undefined;
    try {
      replaced = this.metadata.commitManifest(manifest, { ...(options.ifAbsent === true ? { ifAbsent: true } : {}), ...(options.ifMatch === undefined ? {} : { ifMatch: options.ifMatch }) });
    } catch (error) {
      await this.abandonUpload(manifest.objectId, writtenFragmentsOf(manifest));
      if (error instanceof MetadataError && error.kind === "Conflict") throw new AlbaError("PreconditionFailed", error.message, { cause: error });
      throw albaErrorFromMetadata(error);
    } finally {
      this.forgetManifest(namespace, key);
    }
    this.manifestCache.set(`${namespace}\0${key}`, manifest);
    if (replaced !== undefined) this.deleteFragmentsInBackground(replaced);
    return infoOf(manifest);
  }

  /** Deletes an uncommitted upload's fragments; ends its pending record only if that worked. */
  private async abandonUpload(objectId: string, written: readonly WrittenFragment[]): Promise<void> {
    const byAsd = new Map<string, string[]>();
    for (const fragment of written) {
      let keys = byAsd.get(fragment.asdId);
      if (keys === undefined) byAsd.set(fragment.asdId, (keys = []));
      keys.push(fragment.key);
    }
    const results = await Promise.allSettled([...byAsd.entries()].map(async ([asdId, keys]) => {
      const connection = this.pool.connection(asdId);
      if (connection === undefined) throw new Error(`ASD ${asdId} is no longer claimed`);
      await connection.applyBatch({ asserts: [], updates: keys.map((key) => ({ kind: "delete", key })) });
    }));
    const failed = results.filter((result) => result.status === "rejected").length;
    if (failed === 0) {
      this.metadata.removePendingUpload(objectId);
    } else {
      this.logger.warn({ objectId, failedAsds: failed }, "could not delete every fragment of a failed upload; its pending record stays for garbage collection");
    }
  }

  private deleteFragmentsInBackground(manifest: ObjectManifest): void {
    for (const [asdId, keys] of writtenFragmentsByAsd(manifest)) this.deleter.enqueue(asdId, keys);
  }

  async get(namespace: string, key: string): Promise<Buffer> {
    const [data] = await this.read(namespace, key, undefined, { cacheFragments: false });
    return data!;
  }

  async getRanges(namespace: string, key: string, ranges: readonly ByteRange[], options: AlbaReadOptions = {}): Promise<Buffer[]> {
    if (!Array.isArray(ranges)) throw new AlbaError("Invalid", "ranges must be a list of {offsetBytes, lengthBytes}");
    return this.read(namespace, key, ranges, { cacheFragments: options.sequential !== true, ...(options.ifMatch === undefined ? {} : { ifMatch: options.ifMatch }) });
  }

  private async read(
    namespace: string, key: string, ranges: readonly ByteRange[] | undefined, options: { cacheFragments: boolean; ifMatch?: string },
  ): Promise<Buffer[]> {
    this.checkOpen();
    validateKey(key);
    let manifest = this.cachedManifest(namespace, key);
    for (let attempt = 1; ; attempt++) {
      if (manifest === undefined) throw new AlbaError("NotFound", `object ${namespace}/${key} does not exist`);
      if (options.ifMatch !== undefined && manifest.objectId !== options.ifMatch) {
        throw new AlbaError("PreconditionFailed", `${namespace}/${key} is ${manifest.objectId}, not ${options.ifMatch} (ifMatch)`);
      }
      const resolved = ranges === undefined ? [{ offsetBytes: 0, lengthBytes: manifest.sizeBytes }] : validateRanges(ranges, manifest.sizeBytes);
      try {
        return await readObjectRanges(this.reader, manifest, this.preset(manifest.presetName), resolved, options);
      } catch (error) {
        if (attempt > 1 || !(isAlbaError(error, "Unavailable") || isAlbaError(error, "Corrupt"))) throw error;
        // The cached manifest may be stale (maintenance moved fragments, another writer replaced
        // the object): read it again, and retry once if it changed.
        this.forgetManifest(namespace, key);
        const fresh = this.metadata.getManifest(namespace, key);
        if (fresh !== undefined && JSON.stringify(fresh) === JSON.stringify(manifest)) throw error;
        manifest = fresh;
        if (manifest !== undefined) this.manifestCache.set(`${namespace}\0${key}`, manifest);
      }
    }
  }

  async head(namespace: string, key: string): Promise<AlbaObjectInfo | undefined> {
    this.checkOpen();
    validateKey(key);
    const manifest = this.cachedManifest(namespace, key);
    return manifest === undefined ? undefined : infoOf(manifest);
  }

  async delete(namespace: string, key: string, options: { ifMatch?: string } = {}): Promise<void> {
    this.checkOpen();
    validateKey(key);
    this.namespaceRecord(namespace);
    let removed: ObjectManifest | undefined;
    try {
      removed = this.metadata.deleteManifest(namespace, key, options.ifMatch === undefined ? {} : { ifMatch: options.ifMatch });
    } catch (error) {
      if (error instanceof MetadataError && error.kind === "Conflict") throw new AlbaError("PreconditionFailed", error.message, { cause: error });
      throw albaErrorFromMetadata(error);
    } finally {
      this.forgetManifest(namespace, key);
    }
    if (removed !== undefined) this.deleteFragmentsInBackground(removed);
  }

  async list(namespace: string, options: AlbaListOptions = {}): Promise<AlbaListPage> {
    this.checkOpen();
    validateNamespaceName(namespace);
    const page = withMetadataErrors(() => this.metadata.listManifests(namespace, {
      ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
      ...(options.startAfter === undefined ? {} : { startAfter: options.startAfter }),
      ...(options.limitKeys === undefined ? {} : { limitKeys: options.limitKeys }),
    }));
    return { objects: page.manifests.map(infoOf), ...(page.nextStartAfter === undefined ? {} : { nextStartAfter: page.nextStartAfter }) };
  }

  async getManifest(namespace: string, key: string): Promise<ObjectManifest | undefined> {
    this.checkOpen();
    validateKey(key);
    this.namespaceRecord(namespace);
    // Fresh from the store: callers (tests, maintenance tools) want the current fragment placement.
    return this.metadata.getManifest(namespace, key);
  }

  // ---- administration ----

  async claimAsd(host: string, port: number): Promise<AsdRecord> {
    this.checkOpen();
    if (typeof host !== "string" || host.length === 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new AlbaError("Invalid", `invalid ASD address ${JSON.stringify(host)}:${port}`);
    }
    const probeRecord: AsdRecord = { asdId: "unclaimed", nodeId: "unclaimed", host, port, state: "claimed", claimedAt: new Date().toISOString() };
    const connection = this.pool.connect(probeRecord);
    let statistics;
    try {
      statistics = await withTimeout(connection.statistics(), this.settings.claimProbeTimeoutMs, `statistics of ${host}:${port}`);
    } catch (error) {
      throw new AlbaError("Unavailable", `cannot reach an ASD at ${host}:${port}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    } finally {
      await connection.close().catch(() => undefined);
    }
    const existing = this.metadata.getAsd(statistics.asdId);
    if (existing !== undefined) {
      throw new AlbaError("Conflict", `ASD ${statistics.asdId} (node ${existing.nodeId}) at ${host}:${port} is already claimed (as ${existing.host}:${existing.port})`);
    }
    const record: AsdRecord = { asdId: statistics.asdId, nodeId: statistics.nodeId, host, port, state: "claimed", claimedAt: new Date().toISOString() };
    withMetadataErrors(() => this.metadata.addAsd(record));
    this.pool.refresh();
    await this.pool.probe(record.asdId);
    this.logger.info({ asdId: record.asdId, nodeId: record.nodeId, host, port }, "ASD claimed");
    return record;
  }

  async listAsds(): Promise<AsdStatus[]> {
    this.checkOpen();
    await this.pool.probeAll();
    return this.pool.statuses().map((status) => ({
      record: status.record, health: status.health,
      ...(status.downSince === undefined ? {} : { downSince: status.downSince }),
      ...(status.statistics === undefined ? {} : { statistics: status.statistics }),
    }));
  }

  async addPreset(preset: Preset): Promise<void> {
    this.checkOpen();
    const valid = withMetadataErrors(() => validatePreset(preset));
    if (!PRESET_NAME_PATTERN.test(valid.name)) throw new AlbaError("Invalid", `invalid preset name ${valid.name}`);
    withMetadataErrors(() => this.metadata.addPreset(valid));
    this.logger.info({ preset: valid.name, policies: valid.policies, compression: valid.compression, encryption: valid.encryption }, "preset added");
  }

  async listPresets(): Promise<Preset[]> {
    this.checkOpen();
    return this.metadata.listPresets();
  }

  async updatePreset(name: string, changes: PresetChanges): Promise<Preset> {
    this.checkOpen();
    const updated = withMetadataErrors(() => this.metadata.updatePreset(name, changes));
    // Writes from now on use the new policies; reads follow their manifests' policies anyway.
    this.presets.delete(name);
    this.logger.info({ preset: name, policies: updated.policies, madeDefault: changes.default === true }, "preset updated");
    return updated;
  }

  async deletePreset(name: string): Promise<void> {
    this.checkOpen();
    withMetadataErrors(() => this.metadata.deletePreset(name));
    // A preset added later under the same name may have other settings.
    this.presets.delete(name);
    this.logger.info({ preset: name }, "preset deleted");
  }

  async diskSafety(): Promise<DiskSafety[]> {
    this.checkOpen();
    const safety = new Map<string, DiskSafety>();
    for (const preset of this.metadata.listPresets()) safety.set(preset.name, { presetName: preset.name, objectCount: 0, chunksByRemainingRedundancy: {} });
    for (let afterObjectId: string | undefined; ;) {
      const page = this.metadata.scanManifests({ ...(afterObjectId === undefined ? {} : { afterObjectId }), limit: SCAN_PAGE_MANIFESTS });
      for (const manifest of page) {
        let entry = safety.get(manifest.presetName);
        if (entry === undefined) safety.set(manifest.presetName, (entry = { presetName: manifest.presetName, objectCount: 0, chunksByRemainingRedundancy: {} }));
        entry.objectCount++;
        for (const chunk of manifest.chunks) {
          const lost = chunk.fragments.filter((fragment) => fragment.asdId === null || !this.pool.isUp(fragment.asdId)).length;
          const remaining = String(manifest.policy.m - lost);
          entry.chunksByRemainingRedundancy[remaining] = (entry.chunksByRemainingRedundancy[remaining] ?? 0) + 1;
        }
      }
      if (page.length < SCAN_PAGE_MANIFESTS) break;
      afterObjectId = page[page.length - 1]!.objectId;
    }
    return [...safety.values()];
  }

  /** Waits (bounded) for background deletes, then closes the pool and the metadata store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.deleter.idle(this.settings.closeDrainTimeoutMs);
    await this.pool.close();
    this.metadata.close();
  }

  /** Resolves when background fragment deletes are done (tests, maintenance). */
  async backgroundIdle(timeoutMs: number): Promise<void> {
    await this.deleter.idle(timeoutMs);
  }
}

/** Every fragment of a manifest that is stored somewhere, grouped by ASD. */
function writtenFragmentsByAsd(manifest: ObjectManifest): Map<string, string[]> {
  const byAsd = new Map<string, string[]>();
  for (const fragment of writtenFragmentsOf(manifest)) {
    let keys = byAsd.get(fragment.asdId);
    if (keys === undefined) byAsd.set(fragment.asdId, (keys = []));
    keys.push(fragment.key);
  }
  return byAsd;
}

function writtenFragmentsOf(manifest: ObjectManifest): WrittenFragment[] {
  const written: WrittenFragment[] = [];
  manifest.chunks.forEach((chunk, chunkIndex) => chunk.fragments.forEach((fragment, fragmentIndex) => {
    if (fragment.asdId !== null) written.push({ asdId: fragment.asdId, key: fragmentKey({ objectId: manifest.objectId, chunkIndex, fragmentIndex }) });
  }));
  return written;
}

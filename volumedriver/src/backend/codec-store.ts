// An ObjectStore wrapper that compresses and encrypts every object per chunk (the vPool's
// "compression" and "encryption" settings), in the encoded object format of
// chunked-object-format.ts. Callers see plain bytes and plain sizes; the inner store sees only
// encoded objects, and never the key.
//
// Ranged gets read only the chunks they touch, with one ranged get of the inner store when the
// object's header and table are cached (a bounded LRU per namespace and key), two otherwise. A
// cached table may be stale (the key was overwritten): the chunks read then fail their CRC or GCM
// tag, and the wrapper reads the header again; only if the object is still the one the table
// describes (same random object nonce) is it Corrupt. head and list report plain sizes, which only
// the header knows: a size is cached with the inner etag it belongs to, and on a miss read as
// "get header, then head": the header belongs to the etag when the etag did not change across it
// (etags differ for every put of an encoded object, whose nonce is random).
import { LRUCache } from "lru-cache";
import type { Compression } from "./chunk-codec.ts";
import { ENCRYPTION_KEY_SIZE_BYTES } from "./chunk-codec.ts";
import {
  CHUNK_SIZE_BYTES_DEFAULT, CHUNK_SIZE_BYTES_MAX, CHUNK_SIZE_BYTES_MIN, chunkSpan, decodeChunks, decodeObject, encodeObject, objectKeyFor, parseHeader,
} from "./chunked-object-format.ts";
import type { EncodedObjectHeader, ObjectCodec } from "./chunked-object-format.ts";
import { mapBounded } from "./local-store-concurrency.ts";
import { isStoreError, StoreError, validateKey, validateNamespace } from "./object-store.ts";
import type { ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutOptions, PutFileOptions } from "./object-store.ts";
import { resolveRange, validateRange } from "./object-range.ts";
import { readSourceFile } from "./source-file.ts";

export interface CodecObjectStoreOptions {
  compression: Compression;
  /** AES-256-GCM with this 32-byte key; absent: no encryption. */
  encryption?: { key: Buffer };
  /** Plain bytes per chunk (4 KiB to 16 MiB); default 64 KiB. Only writes use it: readers take it from each object. */
  chunkSizeBytes?: number;
  /** Headers and tables cached; default 4096. */
  headerCacheEntriesMax?: number;
  /** Bytes of tables cached, in all; default 32 MiB. */
  headerCacheSizeBytesMax?: number;
  /** Bytes read from an object's start to get its header and table in one request; default 16 KiB (a 64 MiB object of 64 KiB chunks). */
  headerReadSizeBytes?: number;
}

interface CachedHeader {
  header: EncodedObjectHeader;
  /** The object key derived for this header, once a read needed it (encrypted objects only). */
  objectKey: Buffer | undefined;
  /** The inner etag of the object this header belongs to, when known. */
  etag: string | undefined;
}

/** Reads of a header while the object keeps changing, before giving up (Transient). */
const READ_ATTEMPTS_MAX = 4;
/** Headers read at once to learn the plain sizes of a list page. */
const LIST_HEADER_READS_IN_FLIGHT_MAX = 16;

export class CodecObjectStore implements ObjectStore {
  readonly description: string;
  private readonly inner: ObjectStore;
  private readonly codec: ObjectCodec;
  private readonly headerReadSizeBytes: number;
  private readonly headers: LRUCache<string, CachedHeader>;
  private closed = false;

  constructor(inner: ObjectStore, options: CodecObjectStoreOptions) {
    const chunkSizeBytes = options.chunkSizeBytes ?? CHUNK_SIZE_BYTES_DEFAULT;
    if (!Number.isSafeInteger(chunkSizeBytes) || chunkSizeBytes < CHUNK_SIZE_BYTES_MIN || chunkSizeBytes > CHUNK_SIZE_BYTES_MAX) {
      throw new RangeError(`chunkSizeBytes ${chunkSizeBytes}: use ${CHUNK_SIZE_BYTES_MIN} to ${CHUNK_SIZE_BYTES_MAX}`);
    }
    const key = options.encryption?.key;
    if (key !== undefined && key.length !== ENCRYPTION_KEY_SIZE_BYTES) {
      throw new RangeError(`an AES-256 key has ${ENCRYPTION_KEY_SIZE_BYTES} bytes, not ${key.length}`);
    }
    this.inner = inner;
    this.codec = { compression: options.compression, encryptionKey: key === undefined ? undefined : Buffer.from(key), chunkSizeBytes };
    this.headerReadSizeBytes = options.headerReadSizeBytes ?? 16 * 1024;
    this.headers = new LRUCache<string, CachedHeader>({
      max: options.headerCacheEntriesMax ?? 4096,
      maxSize: options.headerCacheSizeBytesMax ?? 32 * 1024 * 1024,
      sizeCalculation: (entry) => 256 + entry.header.chunkCount * 17,
    });
    const codecName = [options.compression, key === undefined ? undefined : "aes-256-gcm"].filter((name) => name !== undefined).join("+");
    this.description = `codec(${codecName}):${inner.description}`;
  }

  async createNamespace(namespace: NamespaceName): Promise<void> {
    this.checkOpen();
    await this.inner.createNamespace(namespace);
  }

  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    this.checkOpen();
    try {
      await this.inner.deleteNamespace(namespace);
    } finally {
      const prefix = `${namespace}/`;
      for (const cacheKey of [...this.headers.keys()]) if (cacheKey.startsWith(prefix)) this.headers.delete(cacheKey);
    }
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    this.checkOpen();
    return this.inner.listNamespaces();
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    this.checkOpen();
    return this.inner.namespaceExists(namespace);
  }

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    this.checkOpen();
    validateNamespace(namespace);
    validateKey(key);
    const encoded = await encodeObject(data, this.codec);
    const info = await this.inner.put(namespace, key, encoded, options);
    const header = parseHeader(encoded, this.where(namespace, key), true) as EncodedObjectHeader;
    this.headers.set(cacheKeyOf(namespace, key), { header, objectKey: undefined, etag: info.etag });
    return { key, sizeBytes: header.plainSizeBytes, etag: info.etag };
  }

  /** Reads the file and puts its encoded bytes: an encoded object cannot adopt the caller's file. */
  async putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo> {
    this.checkOpen();
    validateNamespace(namespace);
    validateKey(key);
    // The caller's block checksums describe the plain bytes, not the encoded object: drop them.
    const { blockCrc32cs: _plainChecksums, ...putOptions } = options ?? {};
    return this.put(namespace, key, await readSourceFile(filePath), putOptions);
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    this.checkOpen();
    validateRange(range);
    if (range === undefined) {
      const where = this.where(namespace, key);
      const { header, plain } = decodeObject(await this.inner.get(namespace, key), this.codec.encryptionKey, where);
      this.remember(namespace, key, header, undefined);
      return plain;
    }
    return this.getRange(namespace, key, range);
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    this.checkOpen();
    const info = await this.inner.head(namespace, key);
    if (info === undefined) return undefined;
    return this.plainInfo(namespace, key, info.etag);
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    this.checkOpen();
    try {
      await this.inner.delete(namespace, key);
    } finally {
      this.headers.delete(cacheKeyOf(namespace, key));
    }
  }

  async list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage> {
    this.checkOpen();
    const page = await this.inner.list(namespace, options);
    const infos = await mapBounded(page.objects, LIST_HEADER_READS_IN_FLIGHT_MAX, (object) => this.plainInfo(namespace, object.key, object.etag));
    const listed: ListPage = { objects: infos.filter((info): info is ObjectInfo => info !== undefined) };
    if (page.nextStartAfter !== undefined) listed.nextStartAfter = page.nextStartAfter;
    return listed;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.headers.clear();
    await this.inner.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError("Closed", `${this.description}: the store is closed`);
  }

  private where(namespace: NamespaceName, key: string): string {
    return `${this.description}: ${namespace}/${key}`;
  }

  private remember(namespace: NamespaceName, key: string, header: EncodedObjectHeader, etag: string | undefined): CachedHeader {
    const cacheKey = cacheKeyOf(namespace, key);
    const previous = this.headers.get(cacheKey);
    const sameObject = previous !== undefined && previous.header.objectNonce.equals(header.objectNonce);
    const entry: CachedHeader = {
      header,
      objectKey: sameObject ? previous.objectKey : undefined,
      etag: etag ?? (sameObject ? previous.etag : undefined),
    };
    this.headers.set(cacheKey, entry);
    return entry;
  }

  /**
   * Reads and verifies the header and table at the start of the object (one ranged get, two for a
   * table larger than the first read). Returns them with the bytes read, which may hold chunks too.
   */
  private async readHeader(namespace: NamespaceName, key: string): Promise<{ entry: CachedHeader; prefix: Buffer; wholeObject: boolean }> {
    const where = this.where(namespace, key);
    let prefix = await this.inner.get(namespace, key, { offsetBytes: 0, lengthBytes: this.headerReadSizeBytes });
    let wholeObject = prefix.length < this.headerReadSizeBytes;
    let parsed = parseHeader(prefix, where, wholeObject);
    if ("bytesNeeded" in parsed) {
      // Read header and table again in one request, so that they come from one version of the object.
      prefix = await this.inner.get(namespace, key, { offsetBytes: 0, lengthBytes: parsed.bytesNeeded });
      wholeObject = prefix.length < parsed.bytesNeeded;
      parsed = parseHeader(prefix, where, true);
      if ("bytesNeeded" in parsed) throw new StoreError("Corrupt", `${where}: the header changed between two reads`);
    }
    return { entry: this.remember(namespace, key, parsed, undefined), prefix, wholeObject };
  }

  private async getRange(namespace: NamespaceName, key: string, range: ObjectRange): Promise<Buffer> {
    const where = this.where(namespace, key);
    const cacheKey = cacheKeyOf(namespace, key);
    let entry = this.headers.get(cacheKey);
    let read: { prefix: Buffer; wholeObject: boolean } | undefined;
    for (let attempt = 1; attempt <= READ_ATTEMPTS_MAX; attempt++) {
      if (entry === undefined) {
        ({ entry, ...read } = await this.readHeader(namespace, key));
      }
      let resolved: { startBytes: number; endBytes: number };
      try {
        resolved = resolveRange(range, entry.header.plainSizeBytes);
      } catch (error) {
        // Past the end of the object a cached table describes: the object may have grown since.
        if (read !== undefined) throw error;
        entry = undefined;
        continue;
      }
      const { startBytes, endBytes } = resolved;
      if (startBytes === endBytes) return Buffer.alloc(0);
      const span = chunkSpan(entry.header, startBytes, endBytes);
      try {
        const stored = await this.readStored(namespace, key, span.storedStartBytes, span.storedEndBytes, read);
        entry.objectKey ??= objectKeyFor(entry.header, this.codec.encryptionKey, where);
        const plain = decodeChunks(entry.header, entry.objectKey, stored, span.firstChunk, span.lastChunk, where);
        const plainStartBytes = span.firstChunk * entry.header.chunkSizeBytes;
        return Buffer.from(plain.subarray(startBytes - plainStartBytes, endBytes - plainStartBytes));
      } catch (error) {
        if (isStoreError(error, "NotFound")) this.headers.delete(cacheKey);
        if (!isStoreError(error, "Corrupt")) throw error;
        // The table may describe an object that was replaced since: read the header again, and
        // report the error only if it still describes the same object.
        const used = entry;
        ({ entry, ...read } = await this.readHeader(namespace, key));
        if (entry.header.objectNonce.equals(used.header.objectNonce)) throw error;
      }
    }
    throw new StoreError("Transient", `${where}: the object changed during each of ${READ_ATTEMPTS_MAX} reads: retry`);
  }

  /** Stored bytes [startBytes, endBytes): from the bytes read with the header when they hold them, else with one ranged get. */
  private async readStored(namespace: NamespaceName, key: string, startBytes: number, endBytes: number, read: { prefix: Buffer; wholeObject: boolean } | undefined): Promise<Buffer> {
    if (read !== undefined && (read.wholeObject || read.prefix.length >= endBytes)) {
      // A short result is a truncated object; decodeChunks reports it.
      return read.prefix.subarray(Math.min(startBytes, read.prefix.length), endBytes);
    }
    try {
      return await this.inner.get(namespace, key, { offsetBytes: startBytes, lengthBytes: endBytes - startBytes });
    } catch (error) {
      // The table places chunks past the end of the object: truncated (or replaced; the caller checks).
      if (isStoreError(error, "Invalid")) throw new StoreError("Corrupt", `${this.where(namespace, key)}: truncated: the chunks start past the end of the object`, { cause: error });
      throw error;
    }
  }

  /** The plain size of the object with inner etag `etag`, as its info; undefined if it is gone. */
  private async plainInfo(namespace: NamespaceName, key: string, etag: string): Promise<ObjectInfo | undefined> {
    const cached = this.headers.get(cacheKeyOf(namespace, key));
    if (cached !== undefined && cached.etag === etag) return { key, sizeBytes: cached.header.plainSizeBytes, etag };
    let etagBefore = etag;
    for (let attempt = 1; attempt <= READ_ATTEMPTS_MAX; attempt++) {
      let entry: CachedHeader;
      try {
        ({ entry } = await this.readHeader(namespace, key));
      } catch (error) {
        if (isStoreError(error, "NotFound") && (await this.inner.namespaceExists(namespace))) return undefined;
        throw error;
      }
      const after = await this.inner.head(namespace, key);
      if (after === undefined) return undefined;
      if (after.etag === etagBefore) {
        entry.etag = after.etag;
        return { key, sizeBytes: entry.header.plainSizeBytes, etag: after.etag };
      }
      etagBefore = after.etag;
    }
    throw new StoreError("Transient", `${this.where(namespace, key)}: the object changed during each of ${READ_ATTEMPTS_MAX} header reads: retry`);
  }
}

function cacheKeyOf(namespace: NamespaceName, key: string): string {
  // Namespace names hold no '/', so this is unique.
  return `${namespace}/${key}`;
}

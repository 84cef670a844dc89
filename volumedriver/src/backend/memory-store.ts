// An ObjectStore in a Map, for tests and simulations. It keeps the whole contract (the contract
// suite runs over it) and copies every buffer in and out, so no caller can change stored bytes
// by writing to a buffer it passed in or got back.
// Etags are "v<n>" with n counting puts in this store: every put yields a new etag, even of
// identical bytes.
import { StoreError, validateKey, validateNamespace } from "./object-store.ts";
import type { ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutOptions, PutFileOptions } from "./object-store.ts";
import { compareKeys, resolveListLimitKeys, selectPage } from "./list-paging.ts";
import { resolveRange, validateRange } from "./object-range.ts";
import { readSourceFile } from "./source-file.ts";

interface StoredObject {
  data: Buffer;
  etag: string;
}

interface MemoryNamespace {
  objects: Map<string, StoredObject>;
  /** The keys in list order; dropped when a key is added or removed, rebuilt by the next list. */
  sortedKeys: string[] | undefined;
}

export class MemoryObjectStore implements ObjectStore {
  readonly description = "memory";
  private readonly namespaces = new Map<NamespaceName, MemoryNamespace>();
  private putCount = 0;
  private closed = false;

  /** Creating an existing namespace is a no-op (see ObjectStore.createNamespace). */
  async createNamespace(namespace: NamespaceName): Promise<void> {
    this.checkOpen();
    validateNamespace(namespace);
    if (!this.namespaces.has(namespace)) this.namespaces.set(namespace, { objects: new Map(), sortedKeys: undefined });
  }

  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    this.checkOpen();
    validateNamespace(namespace);
    if (!this.namespaces.delete(namespace)) throw namespaceNotFound(namespace);
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    this.checkOpen();
    return [...this.namespaces.keys()].sort(compareKeys);
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    this.checkOpen();
    validateNamespace(namespace);
    return this.namespaces.has(namespace);
  }

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    return this.store(namespace, key, Buffer.from(data), options);
  }

  /** Copies the file's bytes, so later changes to the file (against the contract) do not show. */
  async putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo> {
    this.objectsOf(namespace, key);
    return this.store(namespace, key, await readSourceFile(filePath), options);
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    validateRange(range);
    const stored = this.objectsOf(namespace, key).objects.get(key);
    if (stored === undefined) throw new StoreError("NotFound", `object ${namespace}/${key} does not exist`);
    const { startBytes, endBytes } = resolveRange(range, stored.data.length);
    return Buffer.from(stored.data.subarray(startBytes, endBytes));
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    const stored = this.objectsOf(namespace, key).objects.get(key);
    return stored === undefined ? undefined : { key, sizeBytes: stored.data.length, etag: stored.etag };
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    const objects = this.objectsOf(namespace, key);
    if (objects.objects.delete(key)) objects.sortedKeys = undefined;
  }

  async list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage> {
    this.checkOpen();
    validateNamespace(namespace);
    const limitKeys = resolveListLimitKeys(options);
    const objects = this.namespaces.get(namespace);
    if (objects === undefined) throw namespaceNotFound(namespace);
    objects.sortedKeys ??= [...objects.objects.keys()].sort(compareKeys);
    const page = selectPage(objects.sortedKeys, options, limitKeys);
    const infos = page.keys.map((key): ObjectInfo => {
      const stored = objects.objects.get(key) as StoredObject;
      return { key, sizeBytes: stored.data.length, etag: stored.etag };
    });
    return page.more ? { objects: infos, nextStartAfter: page.keys[page.keys.length - 1] } : { objects: infos };
  }

  /** Idempotent; every other call after it fails with Closed. */
  async close(): Promise<void> {
    this.closed = true;
  }

  /** Stores `data`, which the store owns from now on. */
  private store(namespace: NamespaceName, key: string, data: Buffer, options: PutOptions | undefined): ObjectInfo {
    const objects = this.objectsOf(namespace, key);
    const current = objects.objects.get(key);
    if (options?.ifAbsent === true && current !== undefined) {
      throw new StoreError("PreconditionFailed", `put ${namespace}/${key} if absent: the key exists`);
    }
    if (options?.ifMatch !== undefined && current?.etag !== options.ifMatch) {
      throw new StoreError("PreconditionFailed", `put ${namespace}/${key} if etag ${options.ifMatch}: the etag is ${current?.etag ?? "absent"}`);
    }
    this.putCount += 1;
    const stored: StoredObject = { data, etag: `v${this.putCount}` };
    objects.objects.set(key, stored);
    if (current === undefined) objects.sortedKeys = undefined;
    return { key, sizeBytes: stored.data.length, etag: stored.etag };
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError("Closed", "memory object store is closed");
  }

  /** The edge checks of every key operation; returns the namespace, which must exist. */
  private objectsOf(namespace: NamespaceName, key: string): MemoryNamespace {
    this.checkOpen();
    validateNamespace(namespace);
    validateKey(key);
    const objects = this.namespaces.get(namespace);
    if (objects === undefined) throw namespaceNotFound(namespace);
    return objects;
  }
}

function namespaceNotFound(namespace: NamespaceName): StoreError {
  return new StoreError("NotFound", `namespace ${namespace} does not exist`);
}

// The `alba` ObjectStore: a vPool's objects in an Alba backend, through the Alba proxy's HTTP API
// (ProxyClient). Namespaces and keys are checked here with the same rules as every other store;
// Alba's own rules are looser, so anything valid here is valid there.
//
// Error kinds (AlbaError → StoreError):
// - NotFound → NotFound, PreconditionFailed → PreconditionFailed, Invalid → Invalid, Corrupt → Corrupt.
// - Unavailable → Transient: the proxy or too many ASDs are down; the retrying wrapper retries.
// - NoSatisfiablePolicy → Transient: the backend cannot place fragments *now* (ASDs down or full);
//   an operator claiming ASDs or freeing space fixes it without the vPool doing anything, so the
//   engine should keep its data and retry rather than treat the write as rejected. The message
//   ("no satisfiable policy ...") is kept so logs say what to do.
// - Conflict: createNamespace of an existing namespace is a no-op (the contract); anywhere else
//   Conflict means something exists or is in use, which retrying does not fix: Invalid.
import { isAlbaError, type AlbaApi, type AlbaErrorKind } from "../../../alba/src/client/alba-client-api.ts";
import { BufferPool } from "../../../alba/src/memory/buffer-pool.ts";
import { ProxyClient, type ProxyClientSettings } from "../../../alba/src/proxy/proxy-client.ts";
import { LIST_LIMIT_KEYS_MAX, resolveListLimitKeys } from "./list-paging.ts";
import { validateRange } from "./object-range.ts";
import { StoreError, validateKey, validateNamespace } from "./object-store.ts";
import type {
  ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutFileOptions, PutOptions, StoreErrorKind,
} from "./object-store.ts";
import { readSourceFile } from "./source-file.ts";

export interface AlbaObjectStoreOptions {
  /** The proxy, e.g. http://127.0.0.1:8600. */
  proxyUrl: string;
  /** Preset of the namespaces this store creates (default: the backend's default preset). */
  presetName?: string;
  proxySettings?: Partial<ProxyClientSettings>;
  /** An AlbaApi to use instead of a ProxyClient (in-process tests). */
  api?: AlbaApi;
}

/**
 * SCOs (up to 128 MiB) are read whole to be sent to the proxy; reusing the buffers spares mapping
 * fresh memory for each one (alba/src/memory/buffer-pool.ts). Process-wide, bounded.
 */
const SOURCE_FILE_BUFFERS_FREE_BYTES_MAX = 256 * 1024 * 1024;
const sourceFileBuffers = new BufferPool({ sizeBytesMin: 1024 * 1024, freeBytesMax: SOURCE_FILE_BUFFERS_FREE_BYTES_MAX });

const STORE_KIND_BY_ALBA_KIND: Record<AlbaErrorKind, StoreErrorKind> = {
  NotFound: "NotFound",
  PreconditionFailed: "PreconditionFailed",
  Invalid: "Invalid",
  Corrupt: "Corrupt",
  Unavailable: "Transient",
  NoSatisfiablePolicy: "Transient",
  Conflict: "Invalid",
};

function storeError(error: unknown): unknown {
  if (error instanceof StoreError) return error;
  if (isAlbaError(error)) return new StoreError(STORE_KIND_BY_ALBA_KIND[error.kind], `alba: ${error.message}`, { cause: error });
  return new StoreError("Internal", `alba: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

export class AlbaObjectStore implements ObjectStore {
  readonly description: string;
  private readonly api: AlbaApi;
  private readonly presetName: string | undefined;
  private closed = false;

  constructor(options: AlbaObjectStoreOptions) {
    this.api = options.api ?? new ProxyClient(options.proxyUrl, options.proxySettings);
    this.presetName = options.presetName;
    this.description = `alba:${options.proxyUrl}`;
  }

  private async call<T>(action: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError("Closed", "the alba store is closed");
    try {
      return await action();
    } catch (error) {
      throw storeError(error);
    }
  }

  async createNamespace(namespace: NamespaceName): Promise<void> {
    validateNamespace(namespace);
    await this.call(async () => {
      try {
        await this.api.createNamespace(namespace, this.presetName === undefined ? {} : { presetName: this.presetName });
      } catch (error) {
        // Exists already: a no-op by the contract (a racing creator, or a retry).
        if (isAlbaError(error, "Conflict") && (await this.api.getNamespace(namespace)) !== undefined) return;
        throw error;
      }
    });
  }

  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    validateNamespace(namespace);
    await this.call(() => this.api.deleteNamespace(namespace));
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    return this.call(async () => (await this.api.listNamespaces()).map((record) => record.name));
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    validateNamespace(namespace);
    return this.call(async () => (await this.api.getNamespace(namespace)) !== undefined);
  }

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    validateNamespace(namespace);
    validateKey(key);
    return this.call(() => this.api.put(namespace, key, data, options));
  }

  /** Reads the whole file and puts it (the proxy takes one body; streaming is a later step). */
  async putFile(namespace: NamespaceName, key: string, filePath: string, options: PutFileOptions = {}): Promise<ObjectInfo> {
    validateNamespace(namespace);
    validateKey(key);
    if (this.closed) throw new StoreError("Closed", "the alba store is closed");
    // A missing namespace is NotFound even when the file is missing too, as with put.
    if (!(await this.namespaceExists(namespace))) throw new StoreError("NotFound", `namespace ${namespace} does not exist`);
    const data = await readSourceFile(filePath, sourceFileBuffers);
    const putOptions: PutOptions = {
      ...(options.ifAbsent === undefined ? {} : { ifAbsent: options.ifAbsent }),
      ...(options.ifMatch === undefined ? {} : { ifMatch: options.ifMatch }),
    };
    const info = await this.put(namespace, key, data, putOptions);
    // Sent and answered: nothing refers to the bytes any more. (After a failure the buffer is left
    // to the GC: an aborted request may still hold it.)
    sourceFileBuffers.release(data);
    return info;
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    validateNamespace(namespace);
    validateKey(key);
    validateRange(range);
    return this.call(async () => {
      if (range === undefined) return this.api.get(namespace, key);
      const [part] = await this.api.getRanges(namespace, key, [range]);
      return part!;
    });
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    validateNamespace(namespace);
    validateKey(key);
    return this.call(() => this.api.head(namespace, key));
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    validateNamespace(namespace);
    validateKey(key);
    await this.call(() => this.api.delete(namespace, key));
  }

  async list(namespace: NamespaceName, options: ListOptions = {}): Promise<ListPage> {
    validateNamespace(namespace);
    const limitKeys = resolveListLimitKeys(options);
    return this.call(async () => {
      const page = await this.api.list(namespace, {
        ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
        ...(options.startAfter === undefined ? {} : { startAfter: options.startAfter }),
        limitKeys: Math.min(limitKeys, LIST_LIMIT_KEYS_MAX),
      });
      return { objects: page.objects, ...(page.nextStartAfter === undefined ? {} : { nextStartAfter: page.nextStartAfter }) };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.api.close();
  }
}


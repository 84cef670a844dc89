// An ObjectStore in a local directory: the embedded default backend. A directory per namespace,
// a file per object (names: local-file-names.ts; bytes: local-object-file.ts; the whole layout:
// volumedriver/docs/backends.md "Local store").
//
// Invariants:
// - A put writes a temp file in the namespace directory, fsyncs it, renames it over the final
//   name (or links it, for ifAbsent: link fails with EEXIST, so that check is atomic across
//   processes too), then fsyncs the directory (concurrent puts share that fsync). Readers see
//   the old file or the new one, whole; a put resolves once its object is durable.
// - Puts and deletes of one key are serialized inside this instance (per-key locks), which makes
//   ifMatch atomic within the process. Across processes only ifAbsent is atomic.
// - Temp files are never listed or read; opening a store removes those whose writer is gone.
// - Every read is checked: the header against its CRC, each block read against its CRC.
import { randomBytes } from "node:crypto";
import { link, mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { NAMESPACE_NAME_PATTERN, StoreError, validateKey, validateNamespace } from "./object-store.ts";
import type { ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutOptions } from "./object-store.ts";
import { compareKeys, resolveListLimitKeys } from "./list-paging.ts";
import { resolveRange, validateRange } from "./object-range.ts";
import { classifyFileName, fileNameOfKey, TEMP_FILE_PREFIX } from "./local-file-names.ts";
import {
  decodeObjectFileHeader,
  encodeObjectFilePrefix,
  OBJECT_FILE_HEADER_SIZE_BYTES_MAX,
  verifyObjectFileBlocks,
} from "./local-object-file.ts";
import type { ObjectFileHeader } from "./local-object-file.ts";

/** Header reads one list call keeps in flight (each is open + read + close on the libuv pool). */
const LIST_HEADER_READS_IN_FLIGHT_MAX = 16;
/** A deleted namespace directory is renamed to this prefix (never a namespace name) before removal. */
const DELETING_DIRECTORY_PREFIX = "~deleting-";
const TEMP_FILE_NAME_PATTERN = /^~tmp-(\d+)-([0-9a-f]+)-\d+$/;

/** Ids of the stores open in this process: their temp files belong to puts that may be in flight. */
const liveInstanceIds = new Set<string>();

interface ObjectLocation {
  namespace: NamespaceName;
  key: string;
  directory: string;
  filePath: string;
  /** "namespace/key", for messages. */
  description: string;
}

export class LocalObjectStore implements ObjectStore {
  readonly description: string;
  readonly rootDirectory: string;
  private readonly instanceId = randomBytes(6).toString("hex");
  /** Creating the root and removing abandoned temp files; every call waits for it. */
  private readonly ready: Promise<void>;
  private readonly keyLocks = new KeyedMutex();
  private readonly directorySyncs = new DirectorySyncs();
  private readonly inFlight = new Set<Promise<unknown>>();
  private tempFileCount = 0;
  private closing: Promise<void> | undefined;

  /** Opens (creating if needed) a store in `rootDirectory` and waits until it is ready. */
  static async open(rootDirectory: string): Promise<LocalObjectStore> {
    const store = new LocalObjectStore(rootDirectory);
    await store.run("open", async () => undefined);
    return store;
  }

  /** Starts opening the store; the first call reports any failure (LocalObjectStore.open reports it at once). */
  constructor(rootDirectory: string) {
    this.rootDirectory = path.resolve(rootDirectory);
    this.description = `local:${this.rootDirectory}`;
    liveInstanceIds.add(this.instanceId);
    this.ready = this.recover();
    this.ready.catch(() => undefined);
  }

  /** Creating an existing namespace is a no-op (see ObjectStore.createNamespace). */
  async createNamespace(namespace: NamespaceName): Promise<void> {
    return this.run(`create namespace ${namespace}`, async () => {
      validateNamespace(namespace);
      try {
        await mkdir(this.namespaceDirectory(namespace));
      } catch (error) {
        if (errnoCode(error) === "EEXIST") return;
        throw error;
      }
      await fsyncDirectory(this.rootDirectory);
    });
  }

  async deleteNamespace(namespace: NamespaceName): Promise<void> {
    return this.run(`delete namespace ${namespace}`, async () => {
      validateNamespace(namespace);
      // Renaming first makes the deletion atomic for readers; the slow removal happens out of sight.
      const doomedDirectory = path.join(this.rootDirectory, `${DELETING_DIRECTORY_PREFIX}${namespace}-${randomBytes(6).toString("hex")}`);
      try {
        await rename(this.namespaceDirectory(namespace), doomedDirectory);
      } catch (error) {
        if (errnoCode(error) === "ENOENT") throw namespaceNotFound(namespace);
        throw error;
      }
      await fsyncDirectory(this.rootDirectory);
      // The namespace is gone for every caller now; a failed removal is finished by the next open.
      await rm(doomedDirectory, { recursive: true, force: true }).catch(() => undefined);
    });
  }

  async listNamespaces(): Promise<NamespaceName[]> {
    return this.run("list namespaces", async () => {
      const entries = await readdir(this.rootDirectory, { withFileTypes: true });
      return entries
        .filter((entry) => entry.isDirectory() && NAMESPACE_NAME_PATTERN.test(entry.name))
        .map((entry) => entry.name)
        .sort(compareKeys);
    });
  }

  async namespaceExists(namespace: NamespaceName): Promise<boolean> {
    return this.run(`namespace exists ${namespace}`, async () => {
      validateNamespace(namespace);
      return this.namespaceDirectoryExists(namespace);
    });
  }

  async put(namespace: NamespaceName, key: string, data: Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    return this.run(`put ${namespace}/${key}`, async () => {
      const location = this.locate(namespace, key);
      return this.keyLocks.run(location.filePath, async () => {
        if (options?.ifMatch !== undefined) await this.checkEtag(location, options.ifMatch);
        const { tempPath, etag } = await this.writeTempFile(location, data);
        let tempFileMoved = false;
        try {
          if (options?.ifAbsent === true) {
            await linkIfAbsent(tempPath, location);
          } else {
            await rename(tempPath, location.filePath);
            tempFileMoved = true;
          }
        } catch (error) {
          // ENOENT here: the temp file went away with its namespace directory (deleted meanwhile).
          if (errnoCode(error) === "ENOENT") throw namespaceNotFound(namespace);
          throw error;
        } finally {
          if (!tempFileMoved) await unlink(tempPath).catch(() => undefined);
        }
        await this.directorySyncs.sync(location.directory);
        return { key, sizeBytes: data.length, etag };
      });
    });
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    return this.run(`get ${namespace}/${key}`, async () => {
      const location = this.locate(namespace, key);
      validateRange(range);
      const handle = await this.openObject(location);
      if (handle === undefined) throw new StoreError("NotFound", `object ${location.description} does not exist`);
      try {
        return await readObjectRange(handle, location, range);
      } finally {
        await handle.close();
      }
    });
  }

  async head(namespace: NamespaceName, key: string): Promise<ObjectInfo | undefined> {
    return this.run(`head ${namespace}/${key}`, async () => {
      const location = this.locate(namespace, key);
      const header = await this.readHeader(location);
      return header === undefined ? undefined : { key, sizeBytes: header.dataSizeBytes, etag: header.etag };
    });
  }

  async delete(namespace: NamespaceName, key: string): Promise<void> {
    return this.run(`delete ${namespace}/${key}`, async () => {
      const location = this.locate(namespace, key);
      await this.keyLocks.run(location.filePath, async () => {
        try {
          await unlink(location.filePath);
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") throw error;
          await this.checkNamespaceExists(namespace);
          return;
        }
        await this.directorySyncs.sync(location.directory);
      });
    });
  }

  async list(namespace: NamespaceName, options?: ListOptions): Promise<ListPage> {
    return this.run(`list ${namespace}`, async () => {
      validateNamespace(namespace);
      const limitKeys = resolveListLimitKeys(options);
      const directory = this.namespaceDirectory(namespace);
      const prefix = options?.prefix ?? "";
      const startAfter = options?.startAfter;
      const selected = (await this.listFileKeys(namespace))
        .filter(({ key }) => key.startsWith(prefix) && (startAfter === undefined || compareKeys(key, startAfter) > 0))
        .sort((left, right) => compareKeys(left.key, right.key));
      const page = selected.slice(0, limitKeys);
      const headers = await mapBounded(page, LIST_HEADER_READS_IN_FLIGHT_MAX, ({ key, fileName }) =>
        readHeaderOfFile(path.join(directory, fileName), `${namespace}/${key}`, key),
      );
      const objects: ObjectInfo[] = [];
      headers.forEach((header, index) => {
        // undefined: deleted since the directory was read; the page just holds one key fewer.
        if (header !== undefined) objects.push({ key: page[index].key, sizeBytes: header.dataSizeBytes, etag: header.etag });
      });
      return selected.length > limitKeys ? { objects, nextStartAfter: page[page.length - 1].key } : { objects };
    });
  }

  /** Waits for the calls in flight, so no temp file of this instance is left behind. Idempotent. */
  async close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.inFlight]);
      liveInstanceIds.delete(this.instanceId);
    })();
    return this.closing;
  }

  /** Every public call goes through here: the Closed check, the wait for open, error mapping, tracking for close. */
  private run<T>(context: string, operation: () => Promise<T>): Promise<T> {
    if (this.closing !== undefined) return Promise.reject(new StoreError("Closed", `${this.description} is closed`));
    const result = this.ready.then(operation).catch((error: unknown) => {
      throw this.toStoreError(error, context);
    });
    this.inFlight.add(result);
    const forget = () => this.inFlight.delete(result);
    result.then(forget, forget);
    return result;
  }

  private namespaceDirectory(namespace: NamespaceName): string {
    return path.join(this.rootDirectory, namespace);
  }

  private locate(namespace: NamespaceName, key: string): ObjectLocation {
    validateNamespace(namespace);
    validateKey(key);
    const directory = this.namespaceDirectory(namespace);
    return { namespace, key, directory, filePath: path.join(directory, fileNameOfKey(key)), description: `${namespace}/${key}` };
  }

  private async namespaceDirectoryExists(namespace: NamespaceName): Promise<boolean> {
    try {
      return (await stat(this.namespaceDirectory(namespace))).isDirectory();
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return false;
      throw error;
    }
  }

  private async checkNamespaceExists(namespace: NamespaceName): Promise<void> {
    if (!(await this.namespaceDirectoryExists(namespace))) throw namespaceNotFound(namespace);
  }

  /** The object's file opened for reading, or undefined if the key is absent (NotFound if the namespace is). */
  private async openObject(location: ObjectLocation): Promise<FileHandle | undefined> {
    try {
      return await open(location.filePath, "r");
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw error;
      await this.checkNamespaceExists(location.namespace);
      return undefined;
    }
  }

  private async readHeader(location: ObjectLocation): Promise<ObjectFileHeader | undefined> {
    const header = await readHeaderOfFile(location.filePath, location.description, location.key);
    if (header === undefined) await this.checkNamespaceExists(location.namespace);
    return header;
  }

  private async checkEtag(location: ObjectLocation, expectedEtag: string): Promise<void> {
    const header = await this.readHeader(location);
    if (header?.etag !== expectedEtag) {
      throw new StoreError("PreconditionFailed", `put ${location.description} if etag ${expectedEtag}: the etag is ${header?.etag ?? "absent"}`);
    }
  }

  /** Writes the object file under a temp name and fsyncs it; returns the temp path and the new etag. */
  private async writeTempFile(location: ObjectLocation, data: Uint8Array): Promise<{ tempPath: string; etag: string }> {
    this.tempFileCount += 1;
    const tempPath = path.join(location.directory, `${TEMP_FILE_PREFIX}${process.pid}-${this.instanceId}-${this.tempFileCount}`);
    const { prefix, etag } = encodeObjectFilePrefix(location.key, data);
    let handle: FileHandle;
    try {
      handle = await open(tempPath, "wx", 0o644);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") throw namespaceNotFound(location.namespace);
      throw error;
    }
    try {
      try {
        await writeAll(handle, [prefix, data]);
        // fdatasync: the data and the size are what must survive; the name is made durable by the directory fsync.
        await handle.datasync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await unlink(tempPath).catch(() => undefined);
      throw error;
    }
    return { tempPath, etag };
  }

  /** The (key, file name) of every object file in the namespace, in directory order. */
  private async listFileKeys(namespace: NamespaceName): Promise<Array<{ key: string; fileName: string }>> {
    const directory = this.namespaceDirectory(namespace);
    let entries;
    try {
      entries = await readdir(directory, { withFileTypes: true });
    } catch (error) {
      if (errnoCode(error) === "ENOENT") throw namespaceNotFound(namespace);
      throw error;
    }
    const files: Array<{ key: string; fileName: string }> = [];
    const hashedFileNames: string[] = [];
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const kind = classifyFileName(entry.name);
      if (kind.kind === "key") files.push({ key: kind.key, fileName: entry.name });
      else if (kind.kind === "hashed") hashedFileNames.push(entry.name);
    }
    // Long keys live under a hash of the key, so their key has to come from the header.
    const hashedHeaders = await mapBounded(hashedFileNames, LIST_HEADER_READS_IN_FLIGHT_MAX, (fileName) =>
      readHeaderOfFile(path.join(directory, fileName), `${namespace}/${fileName}`, undefined),
    );
    hashedHeaders.forEach((header, index) => {
      if (header === undefined) return;
      const fileName = hashedFileNames[index];
      if (fileNameOfKey(header.key) !== fileName) {
        throw new StoreError("Corrupt", `object file ${namespace}/${fileName}: holds key ${JSON.stringify(header.key)}, whose file name differs`);
      }
      files.push({ key: header.key, fileName });
    });
    return files;
  }

  /** Creates the root, finishes interrupted namespace deletions and removes temp files of puts whose writer is gone. */
  private async recover(): Promise<void> {
    await mkdir(this.rootDirectory, { recursive: true });
    for (const entry of await readdir(this.rootDirectory, { withFileTypes: true })) {
      const entryPath = path.join(this.rootDirectory, entry.name);
      if (entry.name.startsWith(DELETING_DIRECTORY_PREFIX)) {
        await rm(entryPath, { recursive: true, force: true });
      } else if (entry.isDirectory() && NAMESPACE_NAME_PATTERN.test(entry.name)) {
        for (const name of await readdir(entryPath)) {
          if (isAbandonedTempFile(name)) await unlink(path.join(entryPath, name)).catch(() => undefined);
        }
      }
    }
  }

  /** Maps what the file system threw to the StoreError kind that tells the caller what to do. */
  private toStoreError(error: unknown, context: string): StoreError {
    if (error instanceof StoreError) return error;
    const message = `${this.description}: ${context}: ${error instanceof Error ? error.message : String(error)}`;
    switch (errnoCode(error)) {
      case "ENOENT":
        return new StoreError("NotFound", message, { cause: error });
      case "ENOSPC":
      case "EDQUOT":
        return new StoreError("Transient", `${message} (the disk is full: free space, then retry)`, { cause: error });
      case "EIO":
        return new StoreError("Transient", `${message} (an I/O error: check the disk and the kernel log)`, { cause: error });
      case "EMFILE":
      case "ENFILE":
      case "EAGAIN":
      case "EBUSY":
      case "EINTR":
        return new StoreError("Transient", `${message} (out of file handles or busy: retry later)`, { cause: error });
      case "EACCES":
      case "EPERM":
      case "EROFS":
        return new StoreError("Internal", `${message} (check the permissions and the mount of ${this.rootDirectory})`, { cause: error });
      default:
        return new StoreError("Internal", message, { cause: error });
    }
  }
}

/** Links the finished temp file to the final name; the link fails if that name exists, atomically. */
async function linkIfAbsent(tempPath: string, location: ObjectLocation): Promise<void> {
  try {
    await link(tempPath, location.filePath);
  } catch (error) {
    if (errnoCode(error) === "EEXIST") throw new StoreError("PreconditionFailed", `put ${location.description} if absent: the key exists`);
    throw error;
  }
}

/** Reads the requested bytes, verifying the header and the checksum of every block they touch. */
async function readObjectRange(handle: FileHandle, location: ObjectLocation, range: ObjectRange | undefined): Promise<Buffer> {
  const fileStart = await readFileStart(handle);
  const header = decodeHeaderOf(fileStart, location.description, location.key);
  const { startBytes, endBytes } = resolveRange(range, header.dataSizeBytes);
  if (startBytes === endBytes) return Buffer.alloc(0);
  const blockSizeBytes = header.blockSizeBytes;
  const firstBlock = Math.floor(startBytes / blockSizeBytes);
  const lastBlock = Math.floor((endBytes - 1) / blockSizeBytes);
  const blocksStartBytes = firstBlock * blockSizeBytes;
  const blocksEndBytes = Math.min(header.dataSizeBytes, (lastBlock + 1) * blockSizeBytes);
  const tableOffsetBytes = header.tableOffsetBytes + 4 * firstBlock;
  const table = await readRegion(handle, fileStart, tableOffsetBytes, 4 * (lastBlock - firstBlock + 1), location);
  const blocks = await readRegion(handle, fileStart, header.dataOffsetBytes + blocksStartBytes, blocksEndBytes - blocksStartBytes, location);
  verifyObjectFileBlocks(header, firstBlock, table, blocks, location.description);
  const exact = startBytes === blocksStartBytes && endBytes === blocksEndBytes && blocks.buffer !== fileStart.buffer;
  // A copy of just the range, so the caller holds no more memory than it asked for.
  return exact ? blocks : Buffer.from(blocks.subarray(startBytes - blocksStartBytes, endBytes - blocksStartBytes));
}

/** The first bytes of an object file: enough for any header (all of a small file). */
async function readFileStart(handle: FileHandle): Promise<Buffer> {
  const buffer = Buffer.alloc(OBJECT_FILE_HEADER_SIZE_BYTES_MAX);
  const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
  return buffer.subarray(0, bytesRead);
}

/** `lengthBytes` bytes at `positionBytes`, from the already read file start when they lie in it. */
async function readRegion(
  handle: FileHandle,
  fileStart: Buffer,
  positionBytes: number,
  lengthBytes: number,
  location: ObjectLocation,
): Promise<Buffer> {
  if (positionBytes + lengthBytes <= fileStart.length) return fileStart.subarray(positionBytes, positionBytes + lengthBytes);
  const buffer = Buffer.allocUnsafe(lengthBytes);
  let filledBytes = 0;
  while (filledBytes < lengthBytes) {
    const { bytesRead } = await handle.read(buffer, filledBytes, lengthBytes - filledBytes, positionBytes + filledBytes);
    if (bytesRead === 0) throw new StoreError("Corrupt", `object file ${location.description}: truncated (ends before byte ${positionBytes + lengthBytes})`);
    filledBytes += bytesRead;
  }
  return buffer;
}

/** The verified header of the object file at `filePath`, or undefined if there is none. */
async function readHeaderOfFile(filePath: string, fileDescription: string, expectedKey: string | undefined): Promise<ObjectFileHeader | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(filePath, "r");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
  try {
    return decodeHeaderOf(await readFileStart(handle), fileDescription, expectedKey);
  } finally {
    await handle.close();
  }
}

function decodeHeaderOf(fileStart: Buffer, fileDescription: string, expectedKey: string | undefined): ObjectFileHeader {
  const header = decodeObjectFileHeader(fileStart, fileDescription);
  if (expectedKey !== undefined && header.key !== expectedKey) {
    throw new StoreError("Corrupt", `object file ${fileDescription}: holds key ${JSON.stringify(header.key)}`);
  }
  return header;
}

/** Writes all `pieces` from offset 0. A regular file takes a whole writev unless the disk fills up; finish a short one piece by piece. */
async function writeAll(handle: FileHandle, pieces: Uint8Array[]): Promise<void> {
  let writtenBytes = (await handle.writev(pieces, 0)).bytesWritten;
  let pieceStartBytes = 0;
  for (const piece of pieces) {
    const pieceEndBytes = pieceStartBytes + piece.length;
    while (writtenBytes < pieceEndBytes) {
      const { bytesWritten } = await handle.write(piece, writtenBytes - pieceStartBytes, pieceEndBytes - writtenBytes, writtenBytes);
      if (bytesWritten === 0) throw new StoreError("Transient", "a write made no progress");
      writtenBytes += bytesWritten;
    }
    pieceStartBytes = pieceEndBytes;
  }
}

async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A temp file is abandoned when the process that wrote it is gone, or it is this process but no open store of it. */
function isAbandonedTempFile(name: string): boolean {
  const match = TEMP_FILE_NAME_PATTERN.exec(name);
  if (match === null) return false;
  const pid = Number(match[1]);
  if (pid === process.pid) return !liveInstanceIds.has(match[2]);
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errnoCode(error) === "ESRCH";
  }
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

function namespaceNotFound(namespace: NamespaceName): StoreError {
  return new StoreError("NotFound", `namespace ${namespace} does not exist`);
}

/**
 * Group commit for directory fsyncs (STYLE.md habit 7): a request is answered by the first fsync
 * of that directory that starts after it, so concurrent puts into one namespace share fsyncs. At
 * most one fsync per directory runs, and at most one more is queued behind it.
 */
class DirectorySyncs {
  private readonly states = new Map<string, { running: Promise<void>; queued: Promise<void> | undefined }>();

  sync(directory: string): Promise<void> {
    const state = this.states.get(directory);
    if (state === undefined) return this.start(directory);
    state.queued ??= state.running.then(ignore, ignore).then(() => this.start(directory));
    return state.queued;
  }

  private start(directory: string): Promise<void> {
    const running: Promise<void> = fsyncDirectory(directory).finally(() => {
      const state = this.states.get(directory);
      if (state?.running === running && state.queued === undefined) this.states.delete(directory);
    });
    const state = this.states.get(directory);
    if (state === undefined) {
      this.states.set(directory, { running, queued: undefined });
    } else {
      state.running = running;
      state.queued = undefined;
    }
    return running;
  }
}

function ignore(): void {}

/** Runs at most `inFlightMax` mappings at once; results in input order. */
async function mapBounded<T, R>(items: readonly T[], inFlightMax: number, mapper: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    while (nextIndex < items.length) {
      const index = nextIndex++;
      results[index] = await mapper(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlightMax, items.length) }, worker));
  return results;
}

/** Serializes async critical sections per key. The map holds only keys with a section running or queued. */
class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, critical: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    let release: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous === undefined ? done : previous.then(() => done);
    this.tails.set(key, tail);
    if (previous !== undefined) await previous;
    try {
      return await critical();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

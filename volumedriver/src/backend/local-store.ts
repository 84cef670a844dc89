// An ObjectStore in a local directory: the embedded default backend. A directory per namespace,
// a file per object, or two for an object stored by putFile (names: local-file-names.ts; bytes:
// local-object-file.ts; reads: local-object-reader.ts; the whole layout: volumedriver/docs/backends.md
// "Local store").
//
// Invariants:
// - A put writes an object file (version 1: data inline) under a temp name in the namespace
//   directory, fdatasyncs it, renames it over the final name (or links it, for ifAbsent: link fails
//   with EEXIST, so that check is atomic across processes too), then fsyncs the directory
//   (concurrent puts share that fsync). Readers see the old file or the new one, whole; a put
//   resolves once its object is durable.
// - A putFile adopts the caller's file: it hard-links it into the namespace directory as a data
//   file, checksums it by reading it (or adopts the caller's block checksums) and fdatasyncs it,
//   writes a meta file (version 2: header and
//   checksum table, naming the data file) under a temp name, fsyncs the directory (so the data
//   file's name is durable before any meta file names it), then publishes the meta file exactly
//   as put publishes its file. If the link fails (another file system, a link limit), it copies.
// - A data file is removed only after the meta file that named it is durably gone or replaced, so
//   a crash never leaves a meta file naming a missing data file; it may leave a data file that no
//   meta file names, which opening a store removes (once its writer is gone).
// - Puts and deletes of one key are serialized inside this instance (per-key locks), which makes
//   ifMatch atomic within the process. Across processes only ifAbsent is atomic.
// - Temp and data files are never listed; opening a store removes temp files whose writer is gone.
// - Every read is checked: the header against its CRC, each block read against its CRC.
import { randomBytes } from "node:crypto";
import { link, lstat, mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { isStoreError, NAMESPACE_NAME_PATTERN, StoreError, validateKey, validateNamespace } from "./object-store.ts";
import type { ListOptions, ListPage, NamespaceName, ObjectInfo, ObjectRange, ObjectStore, PutOptions, PutFileOptions } from "./object-store.ts";
import { compareKeys, resolveListLimitKeys } from "./list-paging.ts";
import { validateRange } from "./object-range.ts";
import { classifyFileName, dataFileNameOf, fileNameOfKey, TEMP_FILE_PREFIX } from "./local-file-names.ts";
import type { FileWriter } from "./local-file-names.ts";
import { blockCountOf, encodeMetaFile, encodeObjectFilePrefix, OBJECT_FILE_BLOCK_SIZE_BYTES, writeBlockChecksums } from "./local-object-file.ts";
import type { ObjectFileHeader } from "./local-object-file.ts";
import { readHeaderOfFile, readObjectRange } from "./local-object-reader.ts";
import type { ObjectLocation, ObjectRangeRead } from "./local-object-reader.ts";
import { DirectorySyncs, fsyncDirectory, KeyedMutex, mapBounded } from "./local-store-concurrency.ts";
import { readSourceFile } from "./source-file.ts";

/** Header reads one list call (or one namespace sweep at open) keeps in flight (each is open + read + close on the libuv pool). */
const LIST_HEADER_READS_IN_FLIGHT_MAX = 16;
/** A deleted namespace directory is renamed to this prefix (never a namespace name) before removal. */
const DELETING_DIRECTORY_PREFIX = "~deleting-";
const TEMP_FILE_NAME_PATTERN = /^~tmp-(\d+)-([0-9a-f]+)-\d+$/;
/** putFile reads the file it adopts in chunks of this size to checksum it (a multiple of the block size). */
const DATA_FILE_READ_CHUNK_SIZE_BYTES = 1024 * 1024;
/**
 * Attempts of one get whose meta file is replaced between reading it and opening the data file it
 * names (the replacing put removes that data file). Each attempt that loses this race saw a new
 * object, so running out means the key is being overwritten without pause: Transient.
 */
const OBJECT_READ_ATTEMPTS_MAX = 4;

/** Ids of the stores open in this process: their temp and data files belong to puts that may be in flight. */
const liveInstanceIds = new Set<string>();

export class LocalObjectStore implements ObjectStore {
  readonly description: string;
  readonly rootDirectory: string;
  private readonly instanceId = randomBytes(6).toString("hex");
  /** Creating the root and removing abandoned temp and data files; every call waits for it. */
  private readonly ready: Promise<void>;
  private readonly keyLocks = new KeyedMutex();
  private readonly directorySyncs = new DirectorySyncs();
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Numbers the temp and data files of this instance. */
  private fileCount = 0;
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
        const replaced = await this.checkPrecondition(location, options);
        return this.putInline(location, data, options, replaced);
      });
    });
  }

  /** Adopts the file by hard link (no copy of its bytes); copies it when it cannot be linked. */
  async putFile(namespace: NamespaceName, key: string, filePath: string, options?: PutFileOptions): Promise<ObjectInfo> {
    return this.run(`put file ${namespace}/${key}`, async () => {
      const location = this.locate(namespace, key);
      return this.keyLocks.run(location.filePath, async () => {
        const replaced = await this.checkPrecondition(location, options);
        const dataPath = await this.linkDataFile(location, filePath);
        if (dataPath === undefined) return this.putInline(location, await readSourceFile(filePath), options, replaced);
        return this.putMeta(location, dataPath, options, replaced, options?.blockCrc32cs);
      });
    });
  }

  async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    return this.run(`get ${namespace}/${key}`, async () => {
      const location = this.locate(namespace, key);
      validateRange(range);
      let missingDataFileName: string | undefined;
      for (let attempt = 1; attempt <= OBJECT_READ_ATTEMPTS_MAX; attempt++) {
        const handle = await this.openObject(location);
        if (handle === undefined) throw new StoreError("NotFound", `object ${location.description} does not exist`);
        let read: ObjectRangeRead;
        try {
          read = await readObjectRange(handle, location, range);
        } finally {
          await handle.close();
        }
        if ("data" in read) return read.data;
        // The data file is gone: the object was replaced or deleted since its meta file was read
        // (then the next attempt sees the new state), unless the meta file still names it.
        if (read.missingDataFileName === missingDataFileName) {
          throw new StoreError("Corrupt", `object file ${location.description}: its data file ${missingDataFileName} is missing`);
        }
        missingDataFileName = read.missingDataFileName;
      }
      throw new StoreError("Transient", `get ${location.description}: replaced ${OBJECT_READ_ATTEMPTS_MAX} times while being read; retry`);
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
        const deleted = await readReplacedHeader(location);
        try {
          await unlink(location.filePath);
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") throw error;
          await this.checkNamespaceExists(namespace);
          return;
        }
        await this.directorySyncs.sync(location.directory);
        await removeReplacedDataFile(location, deleted);
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

  /** Waits for the calls in flight, so no temp or unnamed data file of this instance is left behind. Idempotent. */
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
    const fileName = fileNameOfKey(key);
    return { namespace, key, directory, fileName, filePath: path.join(directory, fileName), description: `${namespace}/${key}` };
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

  /**
   * Checks ifMatch, and returns the header of the object the put is about to replace (undefined
   * if none, or for ifAbsent, which replaces nothing), so its data file can be removed afterwards.
   */
  private async checkPrecondition(location: ObjectLocation, options: PutOptions | undefined): Promise<ObjectFileHeader | undefined> {
    if (options?.ifAbsent === true) return undefined;
    if (options?.ifMatch === undefined) return readReplacedHeader(location);
    const header = await this.readHeader(location);
    if (header?.etag !== options.ifMatch) {
      throw new StoreError("PreconditionFailed", `put ${location.description} if etag ${options.ifMatch}: the etag is ${header?.etag ?? "absent"}`);
    }
    return header;
  }

  /** Stores `data` in one object file (version 1) and publishes it. */
  private async putInline(
    location: ObjectLocation,
    data: Uint8Array,
    options: PutOptions | undefined,
    replaced: ObjectFileHeader | undefined,
  ): Promise<ObjectInfo> {
    const { prefix, etag } = encodeObjectFilePrefix(location.key, data);
    const tempPath = await this.writeTempFile(location, [prefix, data]);
    await publish(location, tempPath, options);
    await this.directorySyncs.sync(location.directory);
    await removeReplacedDataFile(location, replaced);
    return { key: location.key, sizeBytes: data.length, etag };
  }

  /** Stores the linked data file at `dataPath` under a meta file (version 2) and publishes that. */
  private async putMeta(
    location: ObjectLocation,
    dataPath: string,
    options: PutOptions | undefined,
    replaced: ObjectFileHeader | undefined,
    blockCrc32cs: Uint32Array | undefined,
  ): Promise<ObjectInfo> {
    let published = false;
    try {
      const { table, sizeBytes } = await checksumAndSyncDataFile(dataPath, blockCrc32cs);
      const { file, etag } = encodeMetaFile(location.key, path.basename(dataPath), sizeBytes, table);
      const tempPath = await this.writeTempFile(location, [file]);
      // The data file's name must be durable before a meta file names it (the temp file's name
      // rides along, harmlessly).
      await this.directorySyncs.sync(location.directory);
      await publish(location, tempPath, options);
      published = true;
      await this.directorySyncs.sync(location.directory);
      await removeReplacedDataFile(location, replaced);
      return { key: location.key, sizeBytes, etag };
    } finally {
      // Once published, the meta file names the data file: it stays even if the last fsync failed.
      if (!published) await unlink(dataPath).catch(() => undefined);
    }
  }

  /**
   * Hard-links the regular file `filePath` into the namespace directory under a new data file
   * name; returns that path, or undefined when the file cannot be adopted by a link (another file
   * system, a link limit, permissions, not a regular file, missing): the caller copies it instead.
   */
  private async linkDataFile(location: ObjectLocation, filePath: string): Promise<string | undefined> {
    const writer: FileWriter = { pid: process.pid, instanceId: this.instanceId };
    this.fileCount += 1;
    const dataPath = path.join(location.directory, dataFileNameOf(location.fileName, writer, this.fileCount));
    try {
      // lstat: link() does not follow a symbolic link, and adopting the link would not adopt the bytes.
      if (!(await lstat(filePath)).isFile()) return undefined;
      await link(filePath, dataPath);
      return dataPath;
    } catch (error) {
      // The namespace directory may be what is missing: that is NotFound, not a reason to copy.
      if (errnoCode(error) === "ENOENT") await this.checkNamespaceExists(location.namespace);
      return undefined;
    }
  }

  /** Writes `pieces` to a new temp file in the namespace directory and fdatasyncs it; returns its path. */
  private async writeTempFile(location: ObjectLocation, pieces: Uint8Array[]): Promise<string> {
    this.fileCount += 1;
    const tempPath = path.join(location.directory, `${TEMP_FILE_PREFIX}${process.pid}-${this.instanceId}-${this.fileCount}`);
    let handle: FileHandle;
    try {
      handle = await open(tempPath, "wx", 0o644);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") throw namespaceNotFound(location.namespace);
      throw error;
    }
    try {
      try {
        await writeAll(handle, pieces);
        // fdatasync: the data and the size are what must survive; the name is made durable by the directory fsync.
        await handle.datasync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await unlink(tempPath).catch(() => undefined);
      throw error;
    }
    return tempPath;
  }

  /** The (key, file name) of every object or meta file in the namespace, in directory order. */
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

  /** Creates the root, finishes interrupted namespace deletions and sweeps every namespace directory. */
  private async recover(): Promise<void> {
    await mkdir(this.rootDirectory, { recursive: true });
    for (const entry of await readdir(this.rootDirectory, { withFileTypes: true })) {
      const entryPath = path.join(this.rootDirectory, entry.name);
      if (entry.name.startsWith(DELETING_DIRECTORY_PREFIX)) {
        await rm(entryPath, { recursive: true, force: true });
      } else if (entry.isDirectory() && NAMESPACE_NAME_PATTERN.test(entry.name)) {
        await sweepNamespaceDirectory(entryPath);
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

/**
 * Moves the finished temp file to the object's name: rename over it, or (ifAbsent) link to it,
 * which fails if that name exists, atomically. The temp name is gone afterwards either way.
 */
async function publish(location: ObjectLocation, tempPath: string, options: PutOptions | undefined): Promise<void> {
  let tempFileMoved = false;
  try {
    if (options?.ifAbsent === true) {
      await link(tempPath, location.filePath);
    } else {
      await rename(tempPath, location.filePath);
      tempFileMoved = true;
    }
  } catch (error) {
    if (errnoCode(error) === "EEXIST") throw new StoreError("PreconditionFailed", `put ${location.description} if absent: the key exists`);
    // ENOENT here: the temp file went away with its namespace directory (deleted meanwhile).
    if (errnoCode(error) === "ENOENT") throw namespaceNotFound(location.namespace);
    throw error;
  } finally {
    if (!tempFileMoved) await unlink(tempPath).catch(() => undefined);
  }
}

/**
 * The header of the object a put or delete is about to replace or remove, if it is readable. A
 * damaged one reads as absent: it does not stop the put or delete, and its data file (if any) is
 * then left for the sweep at open.
 */
async function readReplacedHeader(location: ObjectLocation): Promise<ObjectFileHeader | undefined> {
  try {
    return await readHeaderOfFile(location.filePath, location.description, location.key);
  } catch (error) {
    if (isStoreError(error, "Corrupt")) return undefined;
    throw error;
  }
}

/**
 * Removes the data file of a replaced or deleted object, once the change is durable. A failure
 * leaves an orphan for the sweep at open, not a failed put: the new state is already durable.
 */
async function removeReplacedDataFile(location: ObjectLocation, replaced: ObjectFileHeader | undefined): Promise<void> {
  if (replaced?.dataFileName === undefined) return;
  await unlink(path.join(location.directory, replaced.dataFileName)).catch(() => undefined);
}

/**
 * Reads the adopted data file once (from the page cache, as a rule: the caller just wrote it) to
 * build its checksum table, then fdatasyncs it (cheap when the caller already synced it).
 */
/**
 * The block checksum table of a data file, and the file fdatasynced. The caller's table (putFile's
 * blockCrc32cs) is adopted when it has one entry per block of the file as it is now, which spares
 * reading the whole file back; a table of the wrong length is ignored. An entry that is wrong makes
 * reads of that block fail as Corrupt, as a block damaged on disk would.
 */
async function checksumAndSyncDataFile(dataPath: string, blockCrc32cs: Uint32Array | undefined): Promise<{ table: Buffer; sizeBytes: number }> {
  const handle = await open(dataPath, "r");
  try {
    const sizeBytes = (await handle.stat()).size;
    const table = Buffer.alloc(4 * blockCountOf(sizeBytes));
    if (blockCrc32cs !== undefined && blockCrc32cs.length === blockCountOf(sizeBytes)) {
      for (let block = 0; block < blockCrc32cs.length; block++) table.writeUInt32LE(blockCrc32cs[block]!, 4 * block);
      await handle.datasync();
      return { table, sizeBytes };
    }
    const chunk = Buffer.allocUnsafe(Math.min(sizeBytes, DATA_FILE_READ_CHUNK_SIZE_BYTES));
    for (let positionBytes = 0; positionBytes < sizeBytes; positionBytes += chunk.length) {
      const lengthBytes = Math.min(chunk.length, sizeBytes - positionBytes);
      await readExactly(handle, chunk, lengthBytes, positionBytes, dataPath);
      writeBlockChecksums(table, positionBytes / OBJECT_FILE_BLOCK_SIZE_BYTES, chunk.subarray(0, lengthBytes));
    }
    await handle.datasync();
    return { table, sizeBytes };
  } finally {
    await handle.close();
  }
}

/** Fills `buffer[0, lengthBytes)` from `positionBytes`; a file that ends first broke putFile's promise not to change. */
async function readExactly(handle: FileHandle, buffer: Buffer, lengthBytes: number, positionBytes: number, filePath: string): Promise<void> {
  for (let filledBytes = 0; filledBytes < lengthBytes; ) {
    const { bytesRead } = await handle.read(buffer, filledBytes, lengthBytes - filledBytes, positionBytes + filledBytes);
    if (bytesRead === 0) throw new StoreError("Invalid", `putFile: ${filePath} shrank while being stored (the file must not change)`);
    filledBytes += bytesRead;
  }
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

/**
 * Removes the temp files and the orphaned data files (named by no meta file) of writers that are
 * gone. Each candidate data file costs one header read of the meta file its name points to; a
 * meta file that fails its checks keeps its data file (it may be needed to repair the object).
 */
async function sweepNamespaceDirectory(directory: string): Promise<void> {
  const dataFiles: Array<{ name: string; metaFileName: string }> = [];
  for (const name of await readdir(directory)) {
    const kind = classifyFileName(name);
    if (kind.kind === "temp" && isAbandonedTempFile(name)) await unlink(path.join(directory, name)).catch(() => undefined);
    if (kind.kind === "data" && isWriterGone(kind.writer)) dataFiles.push({ name, metaFileName: kind.metaFileName });
  }
  await mapBounded(dataFiles, LIST_HEADER_READS_IN_FLIGHT_MAX, async ({ name, metaFileName }) => {
    const metaPath = path.join(directory, metaFileName);
    let header: ObjectFileHeader | undefined;
    try {
      header = await readHeaderOfFile(metaPath, `${path.basename(directory)}/${metaFileName}`, undefined);
    } catch (error) {
      if (isStoreError(error, "Corrupt")) return;
      throw error;
    }
    if (header?.dataFileName !== name) await unlink(path.join(directory, name)).catch(() => undefined);
  });
}

function isAbandonedTempFile(name: string): boolean {
  const match = TEMP_FILE_NAME_PATTERN.exec(name);
  return match !== null && isWriterGone({ pid: Number(match[1]), instanceId: match[2] });
}

/** A writer is gone when its process no longer runs, or it is this process but no open store of it. */
function isWriterGone(writer: FileWriter): boolean {
  if (writer.pid === process.pid) return !liveInstanceIds.has(writer.instanceId);
  try {
    process.kill(writer.pid, 0);
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

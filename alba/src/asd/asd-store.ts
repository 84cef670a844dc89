// The key/value store of one ASD directory (layout and crash rules: alba/docs/asd-format.md).
// Keys live in SQLite (WAL, synchronous=FULL) with their size and CRC-32C; small values inline,
// large ones as files under files/. Batches are applied by group commit: every batch that arrives
// while a group is being made durable joins the next group, which writes and fsyncs its value files
// (plus the directory once), then applies all its batches in ONE SQLite transaction (one fsync).
//
// Invariants:
// - One group at a time is the only writer, so the accept/reject decision made for each batch before
//   its files are written (asserts and capacity, evaluated in arrival order) still holds when the
//   transaction applies it; the transaction re-checks the asserts and crashes loudly if they differ.
// - A value file is referenced by SQLite only after it and the directory are fsynced; a file no row
//   references is an orphan (crash before the commit, or after it but before an old file's unlink)
//   and is removed at open.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, unlinkSync } from "node:fs";
import { open, readFile, statfs, unlink } from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import pino, { type Logger } from "pino";
import { crc32c } from "../codec/crc32c.ts";
import {
  AsdError, type AsdAssert, type AsdBatch, type AsdKeyInfo, type AsdListOptions, type AsdListPage, type AsdStatistics, type ByteRange,
} from "./asd-api.ts";
import { asdKeyBytes, validateAsdBatch } from "./asd-batch-format.ts";
import { openDatabase } from "./asd-database.ts";
import { loadOrCreateIdentity, type AsdIdentity } from "./asd-identity.ts";

export interface AsdStoreSettings {
  /** Values up to this size are stored inline in SQLite; larger ones as files. */
  inlineValueSizeBytesMax: number;
  /** A group commit takes at most this many queued batches... */
  groupBatchesMax: number;
  /** ...and at most this many value bytes (a single larger batch still forms a group alone). */
  groupValueBytesMax: number;
  /** Value files written (and fsynced) concurrently within one group. */
  fileWritesInFlightMax: number;
  /** Keys per list page, whatever the caller asks. */
  listKeysMax: number;
  /** Ranges per getRanges call. */
  rangesMax: number;
  /** Bytes one getRanges call may return (ranges may overlap, so this is not the value size). */
  rangesReadBytesMax: number;
}

export const ASD_STORE_DEFAULT_SETTINGS: Readonly<AsdStoreSettings> = Object.freeze({
  inlineValueSizeBytesMax: 64 * 1024,
  groupBatchesMax: 256,
  groupValueBytesMax: 256 * 1024 * 1024,
  fileWritesInFlightMax: 8,
  listKeysMax: 1000,
  rangesMax: 1024,
  rangesReadBytesMax: 64 * 1024 * 1024,
});

/** Where a test can make the process die (SIGKILL) in the middle of a group commit. */
export type AsdCrashPoint = "files-written" | "committed-before-reply";
export const ASD_CRASH_POINTS: readonly AsdCrashPoint[] = ["files-written", "committed-before-reply"];

export interface AsdStoreOptions {
  directory: string;
  nodeId: string;
  /** Default: the filesystem's free space at open plus the bytes already stored. */
  capacityBytes?: number;
  settings?: Partial<AsdStoreSettings>;
  logger?: Logger;
  /** Only for fault tests: SIGKILL this process when the group commit reaches this point. */
  crashAt?: AsdCrashPoint;
}

export const ASD_DATABASE_FILE = "keys.sqlite";
export const ASD_FILES_DIRECTORY = "files";
const VALUE_FILE_SUFFIX = ".value";
const VALUE_FILE_PATTERN = /^[0-9a-f]{32}-[0-9a-f]{16}\.value$/;
/** How often a read retries when a concurrent group replaced the file it was about to open. */
const READ_ATTEMPTS_MAX = 3;

interface KeyRow {
  size_bytes: number;
  crc32c: number;
  inline_value: Buffer | null;
  file_name: string | null;
}

type KeyMeta = Pick<KeyRow, "size_bytes" | "crc32c" | "file_name">;

interface PreparedSet {
  key: string;
  keyBytes: Buffer;
  value: Uint8Array;
  crc32c: number;
  /** Set when the value goes to a file. */
  fileName?: string;
}

interface PendingBatch {
  batch: AsdBatch;
  sets: PreparedSet[];
  deletes: Buffer[];
  valueBytes: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

export interface StoredValue {
  value: Buffer;
  sizeBytes: number;
  crc32c: number;
}

export interface StoredRanges {
  parts: Buffer[];
  sizeBytes: number;
  crc32c: number;
}

interface KeyState {
  sizeBytes: number;
  crc32c: number;
}

/** The statistics a store keeps itself; AsdStatistics adds identity, capacity and disk numbers. */
interface Counters {
  batchCount: number;
  fsyncCount: number;
  getCount: number;
  readBytes: number;
  writtenBytes: number;
}

export class AsdStore {
  readonly asdId: string;
  readonly nodeId: string;
  readonly directory: string;
  readonly capacityBytes: number;
  private readonly settings: AsdStoreSettings;
  private readonly filesDirectory: string;
  private readonly database: Database.Database;
  private readonly logger: Logger;
  private readonly crashAt: AsdCrashPoint | undefined;
  private readonly startedAt = new Date().toISOString();
  private readonly counters: Counters = { batchCount: 0, fsyncCount: 0, getCount: 0, readBytes: 0, writtenBytes: 0 };
  private usedBytes: number;
  private keyCount: number;
  private corruptReads = 0;
  private readonly queue: PendingBatch[] = [];
  private groupRunning: Promise<void> | undefined;
  private groupScheduled = false;
  private closed = false;
  /** Set when an fsync or commit failed: the on-disk state is in doubt, so no more writes (fail-stop). */
  private failure: Error | undefined;
  private readonly statements: {
    selectRow: Database.Statement<[Buffer], KeyRow>;
    selectMeta: Database.Statement<[Buffer], KeyMeta>;
    upsert: Database.Statement<[Buffer, number, number, Buffer | null, string | null]>;
    deleteKey: Database.Statement<[Buffer]>;
    list: Database.Statement<[Buffer, Buffer, Buffer, number], { key: Buffer; size_bytes: number; crc32c: number }>;
    fileReferenced: Database.Statement<[string], { one: number }>;
  };

  private constructor(options: AsdStoreOptions, identity: AsdIdentity, database: Database.Database, capacityBytes: number | undefined) {
    this.directory = options.directory;
    this.asdId = identity.asdId;
    this.nodeId = identity.nodeId;
    this.settings = { ...ASD_STORE_DEFAULT_SETTINGS, ...options.settings };
    this.filesDirectory = path.join(options.directory, ASD_FILES_DIRECTORY);
    this.database = database;
    this.logger = (options.logger ?? pino({ level: "silent" })).child({ asdId: identity.asdId });
    this.crashAt = options.crashAt;
    this.statements = {
      selectRow: database.prepare("SELECT size_bytes, crc32c, inline_value, file_name FROM keys WHERE key = ?"),
      selectMeta: database.prepare("SELECT size_bytes, crc32c, file_name FROM keys WHERE key = ?"),
      upsert: database.prepare(`INSERT INTO keys (key, size_bytes, crc32c, inline_value, file_name) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (key) DO UPDATE SET size_bytes = excluded.size_bytes, crc32c = excluded.crc32c,
          inline_value = excluded.inline_value, file_name = excluded.file_name`),
      deleteKey: database.prepare("DELETE FROM keys WHERE key = ?"),
      // key >= prefix AND key < prefix || x'ff' selects exactly the keys with that prefix, because
      // UTF-8 never contains the byte 0xff (see asd-format.md).
      list: database.prepare(`SELECT key, size_bytes, crc32c FROM keys WHERE key > ? AND key >= ? AND key < ?
        ORDER BY key LIMIT ?`),
      fileReferenced: database.prepare("SELECT 1 AS one FROM keys WHERE file_name = ?"),
    };
    const totals = database.prepare("SELECT count(*) AS keyCount, coalesce(sum(size_bytes), 0) AS usedBytes FROM keys")
      .get() as { keyCount: number; usedBytes: number };
    this.keyCount = totals.keyCount;
    this.usedBytes = totals.usedBytes;
    this.capacityBytes = capacityBytes ?? 0;
  }

  /** Opens (creating on first use) the ASD directory, removes orphan value files, and loads the totals. */
  static async open(options: AsdStoreOptions): Promise<AsdStore> {
    if (options.capacityBytes !== undefined && (!Number.isSafeInteger(options.capacityBytes) || options.capacityBytes < 0)) {
      throw new Error(`capacity must be a non-negative integer number of bytes, got ${options.capacityBytes}`);
    }
    const filesDirectory = path.join(options.directory, ASD_FILES_DIRECTORY);
    mkdirSync(filesDirectory, { recursive: true });
    const identity = loadOrCreateIdentity(options.directory, options.nodeId);
    const database = openDatabase(path.join(options.directory, ASD_DATABASE_FILE));
    let store: AsdStore;
    try {
      store = new AsdStore(options, identity, database, options.capacityBytes);
      store.removeOrphanFiles();
    } catch (error) {
      database.close();
      throw error;
    }
    if (options.capacityBytes === undefined) {
      (store as { capacityBytes: number }).capacityBytes = (await diskFreeBytes(options.directory)) + store.usedBytes;
    }
    store.logger.info({ keyCount: store.keyCount, usedBytes: store.usedBytes, capacityBytes: store.capacityBytes }, "ASD store open");
    return store;
  }

  /** Reads that found a value whose bytes no longer match its size or CRC-32C (bit rot), since open. */
  get corruptReadCount(): number {
    return this.corruptReads;
  }

  /**
   * Applies a batch atomically and durably. Rejects with AssertFailed or Full (nothing applied),
   * Invalid (malformed), Closed, or Unavailable (a disk error: this store takes no more writes).
   */
  applyBatch(batch: AsdBatch): Promise<void> {
    if (this.closed) return Promise.reject(new AsdError("Closed", "the ASD store is closed"));
    if (this.failure !== undefined) return Promise.reject(this.unavailable());
    let valueBytes: number;
    try {
      valueBytes = validateAsdBatch(batch);
    } catch (error) {
      return Promise.reject(error);
    }
    const sets: PreparedSet[] = [];
    const deletes: Buffer[] = [];
    for (const update of batch.updates) {
      const keyBytes = asdKeyBytes(update.key);
      if (update.kind === "delete") {
        deletes.push(keyBytes);
        continue;
      }
      const prepared: PreparedSet = { key: update.key, keyBytes, value: update.value, crc32c: crc32c(update.value) };
      if (update.value.length > this.settings.inlineValueSizeBytesMax) prepared.fileName = valueFileName(keyBytes);
      sets.push(prepared);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ batch, sets, deletes, valueBytes, resolve, reject });
      this.scheduleGroup();
    });
  }

  /** The whole value, or undefined. A value whose CRC-32C no longer matches is returned as stored (and logged). */
  async get(key: string): Promise<Buffer | undefined> {
    return (await this.read(key))?.value;
  }

  /** Like get, with the size and CRC-32C recorded when the value was written. */
  async read(key: string): Promise<StoredValue | undefined> {
    this.assertOpen();
    const keyBytes = asdKeyBytes(key);
    this.counters.getCount++;
    for (let attempt = 1; ; attempt++) {
      const row = this.statements.selectRow.get(keyBytes);
      if (row === undefined) return undefined;
      let value: Buffer;
      if (row.inline_value !== null) value = row.inline_value;
      else {
        try {
          value = await readFile(this.filePath(row.file_name!));
        } catch (error) {
          if (isErrorCode(error, "ENOENT") && attempt < READ_ATTEMPTS_MAX) continue; // replaced meanwhile
          if (isErrorCode(error, "ENOENT")) return this.lostFile(key, row);
          throw error;
        }
      }
      if (value.length !== row.size_bytes || crc32c(value) !== row.crc32c) {
        this.corruptReads++;
        this.logger.warn({ key, sizeBytes: row.size_bytes, readBytes: value.length, crc32c: row.crc32c, readCrc32c: crc32c(value) },
          "stored value does not match its size or CRC-32C (bit rot?): returned as stored, the client verifies fragments");
      }
      this.counters.readBytes += value.length;
      return { value, sizeBytes: row.size_bytes, crc32c: row.crc32c };
    }
  }

  /** Parts of one value (ranges clamped at its end; a range starting past the end is Invalid), or undefined. */
  async getRanges(key: string, ranges: readonly ByteRange[]): Promise<Buffer[] | undefined> {
    return (await this.readRanges(key, ranges))?.parts;
  }

  /** Like getRanges, with the size and CRC-32C of the whole value as recorded when it was written. */
  async readRanges(key: string, ranges: readonly ByteRange[]): Promise<StoredRanges | undefined> {
    this.assertOpen();
    const keyBytes = asdKeyBytes(key);
    this.validateRanges(ranges);
    this.counters.getCount++;
    for (let attempt = 1; ; attempt++) {
      const row = this.statements.selectRow.get(keyBytes);
      if (row === undefined) return undefined;
      const clamped = this.clampRanges(ranges, row.size_bytes);
      let parts: Buffer[];
      if (row.inline_value !== null) {
        const value = row.inline_value;
        parts = clamped.map((range) => value.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes));
      } else {
        try {
          parts = await this.readFileRanges(row.file_name!, clamped);
        } catch (error) {
          if (isErrorCode(error, "ENOENT") && attempt < READ_ATTEMPTS_MAX) continue;
          if (isErrorCode(error, "ENOENT")) return this.lostFile(key, row);
          throw error;
        }
      }
      for (const part of parts) this.counters.readBytes += part.length;
      return { parts, sizeBytes: row.size_bytes, crc32c: row.crc32c };
    }
  }

  list(options: AsdListOptions = {}): AsdListPage {
    this.assertOpen();
    const prefix = options.prefix ?? "";
    const prefixBytes = prefix === "" ? Buffer.alloc(0) : asdKeyBytes(prefix);
    const startAfterBytes = options.startAfter === undefined || options.startAfter === "" ? Buffer.alloc(0) : asdKeyBytes(options.startAfter);
    const limit = options.limitKeys ?? this.settings.listKeysMax;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new AsdError("Invalid", "limitKeys must be a positive integer");
    const limitKeys = Math.min(limit, this.settings.listKeysMax);
    const upperBound = Buffer.concat([prefixBytes, Buffer.from([0xff])]);
    const rows = this.statements.list.all(startAfterBytes, prefixBytes, upperBound, limitKeys + 1);
    const keys: AsdKeyInfo[] = rows.slice(0, limitKeys).map((row) => ({ key: row.key.toString("utf8"), sizeBytes: row.size_bytes, crc32c: row.crc32c }));
    const page: AsdListPage = { keys };
    if (rows.length > limitKeys) page.nextStartAfter = keys[keys.length - 1]!.key;
    return page;
  }

  async statistics(): Promise<AsdStatistics> {
    this.assertOpen();
    return {
      asdId: this.asdId,
      nodeId: this.nodeId,
      capacityBytes: this.capacityBytes,
      usedBytes: this.usedBytes,
      diskFreeBytes: await diskFreeBytes(this.directory),
      keyCount: this.keyCount,
      ...this.counters,
      startedAt: this.startedAt,
    };
  }

  /** Refuses new batches, waits until every queued batch is applied or rejected, and closes SQLite. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.groupRunning !== undefined || this.queue.length > 0) {
      if (this.groupRunning === undefined) this.startGroup();
      await this.groupRunning;
    }
    this.database.close();
    this.logger.info("ASD store closed");
  }

  // ---- group commit ----

  private scheduleGroup(): void {
    if (this.groupRunning !== undefined || this.groupScheduled) return;
    // setImmediate lets every request whose body completed in this turn of the event loop join the group.
    this.groupScheduled = true;
    setImmediate(() => {
      this.groupScheduled = false;
      if (this.groupRunning === undefined && this.queue.length > 0) this.startGroup();
    });
  }

  private startGroup(): void {
    const group: PendingBatch[] = [];
    let valueBytes = 0;
    while (this.queue.length > 0 && group.length < this.settings.groupBatchesMax) {
      const next = this.queue[0]!;
      if (group.length > 0 && valueBytes + next.valueBytes > this.settings.groupValueBytesMax) break;
      group.push(this.queue.shift()!);
      valueBytes += next.valueBytes;
    }
    this.groupRunning = this.commitGroup(group).finally(() => {
      this.groupRunning = undefined;
      if (this.queue.length > 0) this.scheduleGroup();
    });
  }

  private async commitGroup(group: PendingBatch[]): Promise<void> {
    if (this.failure !== undefined) {
      for (const pending of group) pending.reject(this.unavailable());
      return;
    }
    const { accepted, rejected } = this.decide(group);
    for (const [pending, error] of rejected) pending.reject(error);
    if (accepted.length === 0) return;

    const writeFailures = await this.writeValueFiles(accepted);
    if (writeFailures.size > 0) {
      // Decisions assumed every accepted batch applies; with some gone they must be made again, so
      // the survivors go back to the front of the queue (their files are written again: rare path).
      await this.removeFiles(accepted.flatMap((pending) => pending.sets.flatMap((set) => set.fileName ?? [])));
      const survivors = accepted.filter((pending) => !writeFailures.has(pending));
      for (const [pending, error] of writeFailures) pending.reject(error);
      for (const pending of survivors) {
        for (const set of pending.sets) if (set.fileName !== undefined) set.fileName = valueFileName(set.keyBytes);
      }
      this.queue.unshift(...survivors);
      return;
    }
    this.crashIfAsked("files-written");

    let obsoleteFiles: string[];
    try {
      obsoleteFiles = this.applyInTransaction(accepted);
    } catch (error) {
      await this.removeFiles(accepted.flatMap((pending) => pending.sets.flatMap((set) => set.fileName ?? [])));
      const asdError = this.databaseWriteError(error);
      for (const pending of accepted) pending.reject(asdError);
      return;
    }
    this.crashIfAsked("committed-before-reply");
    await this.removeFiles(obsoleteFiles);
    for (const pending of accepted) pending.resolve();
  }

  /**
   * Decides, in arrival order, which batches of a group apply: asserts and capacity are evaluated
   * against the committed state plus the batches accepted before in the same group.
   */
  private decide(group: PendingBatch[]): { accepted: PendingBatch[]; rejected: Array<[PendingBatch, AsdError]> } {
    const overlay = new Map<string, KeyState | undefined>();
    const stateOf = (key: string, keyBytes?: Buffer): KeyState | undefined => {
      if (overlay.has(key)) return overlay.get(key);
      const row = this.statements.selectMeta.get(keyBytes ?? asdKeyBytes(key));
      return row === undefined ? undefined : { sizeBytes: row.size_bytes, crc32c: row.crc32c };
    };
    let usedBytes = this.usedBytes;
    const accepted: PendingBatch[] = [];
    const rejected: Array<[PendingBatch, AsdError]> = [];
    for (const pending of group) {
      const failed = pending.batch.asserts.find((check) => !assertHolds(check, stateOf(check.key)));
      if (failed !== undefined) {
        rejected.push([pending, new AsdError("AssertFailed", `assert ${failed.kind} failed on key ${JSON.stringify(failed.key)}`)]);
        continue;
      }
      let deltaBytes = 0;
      for (const set of pending.sets) deltaBytes += set.value.length - (stateOf(set.key, set.keyBytes)?.sizeBytes ?? 0);
      for (const keyBytes of pending.deletes) deltaBytes -= stateOf(keyBytes.toString("utf8"), keyBytes)?.sizeBytes ?? 0;
      if (deltaBytes > 0 && usedBytes + deltaBytes > this.capacityBytes) {
        rejected.push([pending, new AsdError("Full",
          `the batch adds ${deltaBytes} bytes; ${usedBytes} of ${this.capacityBytes} bytes are used (reads and deletes still work)`)]);
        continue;
      }
      usedBytes += deltaBytes;
      for (const set of pending.sets) overlay.set(set.key, { sizeBytes: set.value.length, crc32c: set.crc32c });
      for (const keyBytes of pending.deletes) overlay.set(keyBytes.toString("utf8"), undefined);
      accepted.push(pending);
    }
    return { accepted, rejected };
  }

  /** Writes and fsyncs every value file of the group, then fsyncs files/ once. Returns the batches that failed. */
  private async writeValueFiles(group: PendingBatch[]): Promise<Map<PendingBatch, AsdError>> {
    const work: Array<{ pending: PendingBatch; set: PreparedSet }> = [];
    for (const pending of group) for (const set of pending.sets) if (set.fileName !== undefined) work.push({ pending, set });
    const failures = new Map<PendingBatch, AsdError>();
    if (work.length === 0) return failures;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < work.length) {
        const { pending, set } = work[next++]!;
        if (failures.has(pending)) continue;
        try {
          await this.writeValueFile(set.fileName!, set.value);
        } catch (error) {
          failures.set(pending, fileWriteError(error));
          this.logger.error({ err: error, key: set.key }, "writing a value file failed: the batch is refused");
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.settings.fileWritesInFlightMax, work.length) }, worker));
    if (failures.size === 0) {
      try {
        await this.fsyncFilesDirectory();
      } catch (error) {
        this.failStop(error);
        for (const pending of group) failures.set(pending, this.unavailable());
      }
    }
    return failures;
  }

  private async writeValueFile(fileName: string, value: Uint8Array): Promise<void> {
    const handle = await open(this.filePath(fileName), "wx", 0o644);
    try {
      await handle.writeFile(value);
      await handle.sync();
      this.counters.fsyncCount++;
    } finally {
      await handle.close();
    }
  }

  private async fsyncFilesDirectory(): Promise<void> {
    const handle = await open(this.filesDirectory, "r");
    try {
      await handle.sync();
      this.counters.fsyncCount++;
    } finally {
      await handle.close();
    }
  }

  /** Applies the accepted batches in one transaction (one WAL fsync); returns the value files it made obsolete. */
  private applyInTransaction(group: PendingBatch[]): string[] {
    const obsoleteFiles: string[] = [];
    let usedBytes = this.usedBytes;
    let keyCount = this.keyCount;
    let writtenBytes = 0;
    this.database.transaction(() => {
      for (const pending of group) {
        for (const check of pending.batch.asserts) {
          const row = this.statements.selectMeta.get(asdKeyBytes(check.key));
          assert.ok(assertHolds(check, row === undefined ? undefined : { sizeBytes: row.size_bytes, crc32c: row.crc32c }),
            "an assert decided before the files were written no longer holds: a second writer?");
        }
        for (const set of pending.sets) {
          const old = this.statements.selectMeta.get(set.keyBytes);
          if (old === undefined) keyCount++;
          else {
            usedBytes -= old.size_bytes;
            if (old.file_name !== null) obsoleteFiles.push(old.file_name);
          }
          const inline = set.fileName === undefined ? Buffer.from(set.value.buffer, set.value.byteOffset, set.value.byteLength) : null;
          this.statements.upsert.run(set.keyBytes, set.value.length, set.crc32c, inline, set.fileName ?? null);
          usedBytes += set.value.length;
          writtenBytes += set.value.length;
        }
        for (const keyBytes of pending.deletes) {
          const old = this.statements.selectMeta.get(keyBytes);
          if (old === undefined) continue;
          this.statements.deleteKey.run(keyBytes);
          keyCount--;
          usedBytes -= old.size_bytes;
          if (old.file_name !== null) obsoleteFiles.push(old.file_name);
        }
      }
    })();
    this.counters.fsyncCount++;
    this.counters.batchCount += group.length;
    this.counters.writtenBytes += writtenBytes;
    this.usedBytes = usedBytes;
    this.keyCount = keyCount;
    return obsoleteFiles;
  }

  // ---- reads ----

  private validateRanges(ranges: readonly ByteRange[]): void {
    if (!Array.isArray(ranges) || ranges.length === 0) throw new AsdError("Invalid", "give at least one range");
    if (ranges.length > this.settings.rangesMax) throw new AsdError("Invalid", `at most ${this.settings.rangesMax} ranges per read`);
    for (const range of ranges) {
      if (!Number.isSafeInteger(range.offsetBytes) || range.offsetBytes < 0 || !Number.isSafeInteger(range.lengthBytes) || range.lengthBytes < 0) {
        throw new AsdError("Invalid", "a range has a non-negative integer offset and length");
      }
    }
  }

  private clampRanges(ranges: readonly ByteRange[], sizeBytes: number): ByteRange[] {
    let totalBytes = 0;
    const clamped = ranges.map((range) => {
      if (range.offsetBytes > sizeBytes) {
        throw new AsdError("Invalid", `range offset ${range.offsetBytes} is past the end of the ${sizeBytes}-byte value`);
      }
      const lengthBytes = Math.min(range.lengthBytes, sizeBytes - range.offsetBytes);
      totalBytes += lengthBytes;
      return { offsetBytes: range.offsetBytes, lengthBytes };
    });
    if (totalBytes > this.settings.rangesReadBytesMax) {
      throw new AsdError("Invalid", `the ranges ask for ${totalBytes} bytes; at most ${this.settings.rangesReadBytesMax} per read`);
    }
    return clamped;
  }

  /** Reads only the requested bytes (pread); a file shorter than recorded yields shorter parts. */
  private async readFileRanges(fileName: string, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    const handle = await open(this.filePath(fileName), "r");
    try {
      const parts: Buffer[] = [];
      for (const range of ranges) {
        const buffer = Buffer.allocUnsafe(range.lengthBytes);
        let filled = 0;
        while (filled < range.lengthBytes) {
          const { bytesRead } = await handle.read(buffer, filled, range.lengthBytes - filled, range.offsetBytes + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        parts.push(filled === range.lengthBytes ? buffer : buffer.subarray(0, filled));
      }
      return parts;
    } finally {
      await handle.close();
    }
  }

  /** A key whose value file is gone: damage on disk. Report the key as missing so the client repairs it. */
  private lostFile(key: string, row: KeyRow): undefined {
    this.corruptReads++;
    this.logger.error({ key, fileName: row.file_name }, "the value file of a key is missing (damaged disk?): reported as missing");
    return undefined;
  }

  // ---- helpers ----

  private filePath(fileName: string): string {
    return path.join(this.filesDirectory, fileName);
  }

  private removeOrphanFiles(): void {
    let removed = 0;
    for (const name of readdirSync(this.filesDirectory)) {
      if (VALUE_FILE_PATTERN.test(name) && this.statements.fileReferenced.get(name) !== undefined) continue;
      unlinkSync(this.filePath(name));
      removed++;
    }
    if (removed > 0) this.logger.info({ removed }, "removed orphan value files (a crash interrupted a batch or a cleanup)");
  }

  private async removeFiles(fileNames: string[]): Promise<void> {
    await Promise.all(fileNames.map(async (fileName) => {
      try {
        await unlink(this.filePath(fileName));
      } catch (error) {
        // Left behind it is an orphan, removed at the next open.
        if (!isErrorCode(error, "ENOENT")) this.logger.warn({ err: error, fileName }, "could not remove a value file");
      }
    }));
  }

  private crashIfAsked(point: AsdCrashPoint): void {
    if (this.crashAt === point) {
      this.logger.warn({ point }, "crash point reached: SIGKILL (OVS_ASD_CRASH_AT)");
      process.kill(process.pid, "SIGKILL");
    }
  }

  private databaseWriteError(error: unknown): AsdError {
    const code = (error as { code?: unknown }).code;
    if (code === "SQLITE_FULL") return new AsdError("Full", "the disk is full (SQLite)", { cause: error });
    this.failStop(error);
    return this.unavailable();
  }

  private failStop(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error instanceof Error ? error : new Error(String(error));
    this.logger.error({ err: error }, "a disk write or fsync failed: this ASD refuses writes until restarted");
  }

  private unavailable(): AsdError {
    return new AsdError("Unavailable", `a disk write failed on this ASD (${this.failure?.message}); restart it or use another ASD`,
      { cause: this.failure });
  }

  private assertOpen(): void {
    if (this.closed) throw new AsdError("Closed", "the ASD store is closed");
  }
}

function assertHolds(check: AsdAssert, state: KeyState | undefined): boolean {
  if (check.kind === "absent") return state === undefined;
  if (check.kind === "present") return state !== undefined;
  return state !== undefined && state.crc32c === check.crc32c;
}

/** `<first 32 hex of sha256(key)>-<16 random hex>.value`: the prefix lets an operator find a key's file. */
function valueFileName(keyBytes: Buffer): string {
  const keyHash = createHash("sha256").update(keyBytes).digest("hex").slice(0, 32);
  return `${keyHash}-${randomBytes(8).toString("hex")}${VALUE_FILE_SUFFIX}`;
}

/** The SHA-256 prefix that names the value file of a key (see asd-format.md). */
export function valueFileKeyHash(key: string): string {
  return createHash("sha256").update(Buffer.from(key, "utf8")).digest("hex").slice(0, 32);
}

function fileWriteError(error: unknown): AsdError {
  if (isErrorCode(error, "ENOSPC") || isErrorCode(error, "EDQUOT")) return new AsdError("Full", "the disk is full", { cause: error });
  return new AsdError("Unavailable", `writing a value file failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

function isErrorCode(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === code;
}

async function diskFreeBytes(directory: string): Promise<number> {
  const stats = await statfs(directory);
  return stats.bavail * stats.bsize;
}

// The cluster -> location map of one volume: pages of 256 entries of 16 bytes, persisted in SQLite
// (better-sqlite3) with a bytes-bounded LRU of clean pages. It is a cache of the TLogs: it records the
// TLog position it is consistent with, and can always be rebuilt by replaying TLogs from there.
//
// Invariants:
// - Pages changed since the last checkpoint live in `dirtyPages` and are never evicted.
// - freeze() hands those pages to a checkpoint, which is immutable from then on (copy-on-write);
//   commit() writes it in one SQLite transaction together with its TLog position. So SQLite is always
//   exactly the state after some TLog prefix, never a mix.
// - Lookups consult dirty, then frozen (newest first), then the LRU, then SQLite.
import Database from "better-sqlite3";
import { LRUCache } from "lru-cache";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import { type BlockExtent, VolumeError } from "./block-device.ts";
import { CLUSTER_SIZE_BYTES } from "./vpool-types.ts";

export const METADATA_ENTRY_SIZE_BYTES = 16;
export const METADATA_PAGE_ENTRIES = 256;
export const METADATA_PAGE_SIZE_BYTES = METADATA_ENTRY_SIZE_BYTES * METADATA_PAGE_ENTRIES;
const METADATA_SCHEMA_VERSION = 1;

/** Shared all-holes page; never mutated. */
const HOLE_PAGE = Buffer.alloc(METADATA_PAGE_SIZE_BYTES);

export interface TlogPosition {
  tlogNumber: number;
  /** Entries of that TLog already applied. */
  entryCount: number;
}

export interface FrozenCheckpoint {
  pages: Map<number, Buffer>;
  position: TlogPosition;
}

export interface ClusterLocation {
  /** 0: this vDisk's own SCO; n: a SCO of its n-th ancestor (clone parent chain). */
  cloneIndex: number;
  scoNumber: number;
  scoOffset: number;
  dataCrc: number;
}

export class MetadataStore {
  private readonly database: Database.Database;
  private readonly cleanPages: LRUCache<number, Buffer>;
  private dirtyPages = new Map<number, Buffer>();
  private readonly frozen: FrozenCheckpoint[] = [];
  private readonly selectPage: Database.Statement<[number], { data: Buffer; crc: number }>;
  private readonly upsertPage: Database.Statement<[number, Buffer, number]>;
  private readonly deletePage: Database.Statement<[number]>;
  private readonly selectPageNumbers: Database.Statement<[number, number], { page: number }>;

  constructor(path: string, cacheSizeBytes: number) {
    this.database = new Database(path);
    try {
      this.database.pragma("journal_mode = WAL");
      this.database.pragma("synchronous = NORMAL");
      this.database.exec(`
        CREATE TABLE IF NOT EXISTS pages (page INTEGER PRIMARY KEY, data BLOB NOT NULL, crc INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      `);
    } catch (error) {
      this.database.close();
      throw error;
    }
    const version = this.getMeta("schema_version");
    if (version === undefined) this.setMeta("schema_version", String(METADATA_SCHEMA_VERSION));
    else if (Number(version) !== METADATA_SCHEMA_VERSION) {
      throw new VolumeError("Invalid", `metadata schema version ${version} is not supported (expected ${METADATA_SCHEMA_VERSION})`);
    }
    this.selectPage = this.database.prepare("SELECT data, crc FROM pages WHERE page = ?");
    this.upsertPage = this.database.prepare("INSERT OR REPLACE INTO pages (page, data, crc) VALUES (?, ?, ?)");
    this.deletePage = this.database.prepare("DELETE FROM pages WHERE page = ?");
    this.selectPageNumbers = this.database.prepare("SELECT page FROM pages WHERE page >= ? AND page < ? ORDER BY page");
    this.cleanPages = new LRUCache<number, Buffer>({
      maxSize: Math.max(cacheSizeBytes, 64 * METADATA_PAGE_SIZE_BYTES),
      sizeCalculation: (page) => (page === HOLE_PAGE ? 64 : METADATA_PAGE_SIZE_BYTES + 64),
    });
  }

  /** Throws if SQLite finds the database damaged (cheap check, run at open). */
  verifyIntegrity(): void {
    const rows = this.database.pragma("quick_check") as Array<{ quick_check: string }>;
    if (rows.length !== 1 || rows[0].quick_check !== "ok") {
      throw new VolumeError("Io", `metadata database damaged: ${rows.map((row) => row.quick_check).join("; ").slice(0, 200)}`);
    }
  }

  getMeta(key: string): string | undefined {
    const row = this.database.prepare("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.database.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run(key, value);
  }

  /** The TLog position the persisted pages are consistent with. */
  persistedPosition(): TlogPosition {
    const raw = this.getMeta("checkpoint");
    if (raw === undefined) return { tlogNumber: 0, entryCount: 0 };
    return JSON.parse(raw) as TlogPosition;
  }

  /** The page holding `pageNumber`, for reading only (may be the shared hole page). */
  private readPage(pageNumber: number): Buffer {
    const dirty = this.dirtyPages.get(pageNumber);
    if (dirty !== undefined) return dirty;
    for (let index = this.frozen.length - 1; index >= 0; index--) {
      const page = this.frozen[index].pages.get(pageNumber);
      if (page !== undefined) return page;
    }
    const cached = this.cleanPages.get(pageNumber);
    if (cached !== undefined) return cached;
    const row = this.selectPage.get(pageNumber);
    let page: Buffer = HOLE_PAGE;
    if (row !== undefined) {
      if (row.data.length !== METADATA_PAGE_SIZE_BYTES || crc32c(row.data) !== row.crc) {
        throw new VolumeError("Io", `metadata page ${pageNumber} is corrupt; remove metadata.sqlite to rebuild it from TLogs`);
      }
      page = row.data;
    }
    this.cleanPages.set(pageNumber, page);
    return page;
  }

  /** A page this checkpoint interval may modify in place. */
  private writablePage(pageNumber: number): Buffer {
    let page = this.dirtyPages.get(pageNumber);
    if (page !== undefined && page !== HOLE_PAGE) return page;
    const source = page ?? this.readPage(pageNumber);
    const inFrozen = this.frozen.some((checkpoint) => checkpoint.pages.get(pageNumber) === source);
    if (source === HOLE_PAGE || inFrozen) {
      page = Buffer.from(source);
    } else {
      page = source; // clean page: adopt it
      this.cleanPages.delete(pageNumber);
    }
    this.dirtyPages.set(pageNumber, page);
    return page;
  }

  /** Location of a cluster, or undefined for a hole. */
  lookup(clusterAddress: number): ClusterLocation | undefined {
    const page = this.readPage(Math.floor(clusterAddress / METADATA_PAGE_ENTRIES));
    const position = (clusterAddress % METADATA_PAGE_ENTRIES) * METADATA_ENTRY_SIZE_BYTES;
    const scoNumber = page.readUInt32LE(position);
    if (scoNumber === 0) return undefined;
    return { cloneIndex: page.readUInt8(position + 6), scoNumber, scoOffset: page.readUInt16LE(position + 4), dataCrc: page.readUInt32LE(position + 8) };
  }

  setLocation(clusterAddress: number, scoNumber: number, scoOffset: number, dataCrc: number, cloneIndex = 0): void {
    const page = this.writablePage(Math.floor(clusterAddress / METADATA_PAGE_ENTRIES));
    const position = (clusterAddress % METADATA_PAGE_ENTRIES) * METADATA_ENTRY_SIZE_BYTES;
    page.writeUInt32LE(scoNumber, position);
    page.writeUInt16LE(scoOffset, position + 4);
    page.writeUInt8(cloneIndex, position + 6);
    page.writeUInt8(0, position + 7); // SCO version
    page.writeUInt32LE(dataCrc, position + 8);
    page.writeUInt32LE(0, position + 12);
  }

  /** Makes clusters [first, first + count) holes. Whole pages become the shared hole page. */
  clearRange(firstCluster: number, clusterCount: number): void {
    let cluster = firstCluster;
    const end = firstCluster + clusterCount;
    while (cluster < end) {
      const pageNumber = Math.floor(cluster / METADATA_PAGE_ENTRIES);
      const pageStart = pageNumber * METADATA_PAGE_ENTRIES;
      const stop = Math.min(end, pageStart + METADATA_PAGE_ENTRIES);
      if (cluster === pageStart && stop === pageStart + METADATA_PAGE_ENTRIES) {
        this.dirtyPages.set(pageNumber, HOLE_PAGE);
      } else if (this.readPage(pageNumber) !== HOLE_PAGE) {
        const page = this.writablePage(pageNumber);
        page.fill(0, (cluster - pageStart) * METADATA_ENTRY_SIZE_BYTES, (stop - pageStart) * METADATA_ENTRY_SIZE_BYTES);
      }
      cluster = stop;
    }
  }

  /**
   * Calls visit(firstCluster, count, allocated) for maximal runs of holes / allocated clusters in
   * [firstCluster, firstCluster + clusterCount), skipping pages that hold nothing without reading them.
   */
  forEachRun(firstCluster: number, clusterCount: number, visit: (first: number, count: number, allocated: boolean) => void): void {
    const end = firstCluster + clusterCount;
    let runStart = firstCluster;
    let runAllocated: boolean | undefined;
    const emit = (cluster: number, allocated: boolean): void => {
      if (runAllocated === undefined) { runAllocated = allocated; runStart = cluster; return; }
      if (allocated !== runAllocated) {
        visit(runStart, cluster - runStart, runAllocated);
        runStart = cluster;
        runAllocated = allocated;
      }
    };
    let cluster = firstCluster;
    while (cluster < end) {
      const pageNumber = Math.floor(cluster / METADATA_PAGE_ENTRIES);
      const stop = Math.min(end, (pageNumber + 1) * METADATA_PAGE_ENTRIES);
      const page = this.readPage(pageNumber);
      if (page === HOLE_PAGE) {
        emit(cluster, false);
      } else {
        for (let address = cluster; address < stop; address++) {
          emit(address, page.readUInt32LE((address % METADATA_PAGE_ENTRIES) * METADATA_ENTRY_SIZE_BYTES) !== 0);
        }
      }
      cluster = stop;
    }
    if (runAllocated !== undefined) visit(runStart, end - runStart, runAllocated);
  }

  /** The allocation map of a byte range, as BlockDevice.blockStatus reports it (extents clipped to the range, merged). */
  extents(offsetBytes: number, lengthBytes: number): BlockExtent[] {
    const extents: BlockExtent[] = [];
    if (lengthBytes === 0) return extents;
    const end = offsetBytes + lengthBytes;
    const firstCluster = Math.floor(offsetBytes / CLUSTER_SIZE_BYTES);
    const endCluster = Math.ceil(end / CLUSTER_SIZE_BYTES);
    this.forEachRun(firstCluster, endCluster - firstCluster, (first, count, allocated) => {
      const start = Math.max(offsetBytes, first * CLUSTER_SIZE_BYTES);
      const stop = Math.min(end, (first + count) * CLUSTER_SIZE_BYTES);
      extents.push({ offsetBytes: start, lengthBytes: stop - start, allocated });
    });
    return extents;
  }

  /** Number of pages changed since the last freeze. */
  dirtyPageCount(): number {
    return this.dirtyPages.size;
  }

  /** Captures the pages changed since the last freeze as the state at `position`. */
  freeze(position: TlogPosition): FrozenCheckpoint {
    const checkpoint = { pages: this.dirtyPages, position };
    this.dirtyPages = new Map();
    this.frozen.push(checkpoint);
    return checkpoint;
  }

  /** Persists a frozen checkpoint (the oldest one: checkpoints commit in order). */
  commit(checkpoint: FrozenCheckpoint, extraMeta: Record<string, string> = {}): void {
    if (this.frozen[0] !== checkpoint) throw new Error("assertion: metadata checkpoints must commit in order");
    const write = this.database.transaction(() => {
      for (const [pageNumber, page] of checkpoint.pages) {
        if (page === HOLE_PAGE || page.equals(HOLE_PAGE)) this.deletePage.run(pageNumber);
        else this.upsertPage.run(pageNumber, page, crc32c(page));
      }
      this.setMeta("checkpoint", JSON.stringify(checkpoint.position));
      for (const [key, value] of Object.entries(extraMeta)) this.setMeta(key, value);
    });
    write();
    this.frozen.shift();
    for (const [pageNumber, page] of checkpoint.pages) {
      if (!this.dirtyPages.has(pageNumber)) this.cleanPages.set(pageNumber, page.equals(HOLE_PAGE) ? HOLE_PAGE : page);
    }
  }

  /** Drops every page (before a rebuild from TLogs). */
  clearAll(): void {
    this.database.exec("DELETE FROM pages; DELETE FROM meta WHERE key = 'checkpoint';");
    this.cleanPages.clear();
    this.dirtyPages.clear();
    this.frozen.length = 0;
  }

  /** Page numbers present in SQLite within [firstPage, endPage): for tests and tools. */
  persistedPages(firstPage: number, endPage: number): number[] {
    return this.selectPageNumbers.all(firstPage, endPage).map((row) => row.page);
  }

  close(): void {
    this.database.close();
  }
}

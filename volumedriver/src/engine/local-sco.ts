// State of one SCO held in the local write buffer: its file, the clusters still only in memory
// (appended but not yet written by the journal), and its place in the upload life cycle.
//   open -> sealed (immutable, fsynced) -> safe (it and its TLog are on the backend: disposable)
// A safe SCO may be evicted: its file is unlinked; readers that hold the handle finish first.
import { read, readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { CLUSTER_SIZE_BYTES } from "./vpool-types.ts";
import { SCO_HEADER_SIZE_BYTES, scoClusterOffsetBytes } from "./formats/sco-format.ts";

/**
 * pread through the callback API: on the 4 KiB random-read path it costs less than FileHandle.read
 * (no per-call FileHandle bookkeeping). The caller keeps the handle open while this runs.
 */
function readAt(fd: number, target: Buffer, targetOffset: number, lengthBytes: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, target, targetOffset, lengthBytes, position, (error, bytesRead) => (error === null ? resolve(bytesRead) : reject(error)));
  });
}

/** Small reads are tried synchronously (see readSmallAt). */
const SYNC_READ_BYTES_MAX = 64 * 1024;
/** A synchronous read slower than this means the page cache missed: go async for a while. */
const SYNC_READ_SLOW_NS = 2_000_000n;
const SYNC_READ_BACKOFF_MS = 1000;
let syncReadsPausedUntilMs = 0;

/**
 * Reads a small range. A pread of a few KiB that the page cache holds (the common case for the
 * write buffer, which was just written) costs a few microseconds done in place, far less than a
 * round trip through the libuv thread pool; but a pread that goes to the disk must not block the
 * event loop. So reads run synchronously until one is slow, then asynchronously for a second.
 */
function readSmallAt(fd: number, target: Buffer, targetOffset: number, lengthBytes: number, position: number): Promise<number> | number {
  if (lengthBytes > SYNC_READ_BYTES_MAX || Date.now() < syncReadsPausedUntilMs) return readAt(fd, target, targetOffset, lengthBytes, position);
  const startedNs = process.hrtime.bigint();
  const bytesRead = readSync(fd, target, targetOffset, lengthBytes, position);
  if (process.hrtime.bigint() - startedNs > SYNC_READ_SLOW_NS) syncReadsPausedUntilMs = Date.now() + SYNC_READ_BACKOFF_MS;
  return bytesRead;
}

export type ScoState = "open" | "sealed" | "safe";

export interface PendingChunk {
  firstCluster: number;
  clusterCount: number;
  /** clusterCount * 4 KiB of data, cluster firstCluster first. */
  data: Buffer;
}

export class LocalSco {
  readonly scoNumber: number;
  readonly tlogNumber: number;
  readonly path: string;
  /** Clusters appended (in memory or in the file). */
  clusterCount = 0;
  /** Clusters written to the file by the journal. */
  fileClusterCount = 0;
  readonly pendingChunks: PendingChunk[] = [];
  state: ScoState = "open";
  evicted = false;
  /** When the first cluster was appended (ms), for age-based sealing. */
  firstWriteMs = 0;
  /** Last time a read touched it, for eviction order. */
  lastUseMs = 0;
  /**
   * CRC-32C of each 4 KiB block of the file as this process wrote it: the header, then cluster i at
   * i + 1. Handed to the backend's putFile (blockCrc32cs) so the local store need not read the SCO
   * back; absent for an SCO recovered after a restart, and dropped once the SCO is safe.
   */
  private blockCrc32cs: Uint32Array | undefined;
  private blockCrc32cCount = 0;
  private handle: FileHandle | undefined;
  private handleOpening: Promise<FileHandle> | undefined;
  private readers = 0;

  constructor(scoNumber: number, tlogNumber: number, path: string) {
    this.scoNumber = scoNumber;
    this.tlogNumber = tlogNumber;
    this.path = path;
  }

  /** Records the CRC-32C of block `blockIndex` (0: the header; i + 1: cluster i), written once each. */
  recordBlockCrc32c(blockIndex: number, crc32c: number, blockCountMax: number): void {
    this.blockCrc32cs ??= new Uint32Array(blockCountMax);
    this.blockCrc32cs[blockIndex] = crc32c;
    this.blockCrc32cCount++;
  }

  /** The block checksums of the whole file, if this process recorded every one of them. */
  fileBlockCrc32cs(): Uint32Array | undefined {
    const blockCount = 1 + this.clusterCount;
    if (this.blockCrc32cs === undefined || this.blockCrc32cCount !== blockCount) return undefined;
    return this.blockCrc32cs.subarray(0, blockCount);
  }

  /** The backend holds the SCO: its checksums are no longer needed here. */
  dropBlockCrc32cs(): void {
    this.blockCrc32cs = undefined;
  }

  get sizeBytes(): number {
    return SCO_HEADER_SIZE_BYTES + this.clusterCount * CLUSTER_SIZE_BYTES;
  }

  /** The journal hands over the handle it created the file with. */
  adoptHandle(handle: FileHandle): void {
    this.handle = handle;
  }

  currentHandle(): FileHandle | undefined {
    return this.handle;
  }

  private async readHandle(): Promise<FileHandle> {
    if (this.handle !== undefined) return this.handle;
    this.handleOpening ??= open(this.path, "r").then((handle) => {
      this.handle = handle;
      this.handleOpening = undefined;
      return handle;
    }, (error: unknown) => {
      this.handleOpening = undefined;
      throw error;
    });
    return this.handleOpening;
  }

  /**
   * Copies clusters [first, first + count) into target at targetOffset. Returns false if the SCO was
   * evicted meanwhile (the caller then reads from the backend).
   */
  async readClusters(first: number, count: number, target: Buffer, targetOffset: number): Promise<boolean> {
    if (this.evicted) return false;
    this.readers++;
    try {
      let cluster = first;
      const end = first + count;
      while (cluster < end) {
        const chunk = this.pendingChunks.find((candidate) =>
          cluster >= candidate.firstCluster && cluster < candidate.firstCluster + candidate.clusterCount);
        if (chunk !== undefined) {
          const stop = Math.min(end, chunk.firstCluster + chunk.clusterCount);
          chunk.data.copy(target, targetOffset + (cluster - first) * CLUSTER_SIZE_BYTES,
            (cluster - chunk.firstCluster) * CLUSTER_SIZE_BYTES, (stop - chunk.firstCluster) * CLUSTER_SIZE_BYTES);
          cluster = stop;
          continue;
        }
        // Not pending: on file. Read up to the next pending chunk (or the end).
        let stop = end;
        for (const candidate of this.pendingChunks) {
          if (candidate.firstCluster > cluster && candidate.firstCluster < stop) stop = candidate.firstCluster;
        }
        const handle = await this.readHandle();
        const lengthBytes = (stop - cluster) * CLUSTER_SIZE_BYTES;
        const bytesRead = await readSmallAt(handle.fd, target, targetOffset + (cluster - first) * CLUSTER_SIZE_BYTES, lengthBytes, scoClusterOffsetBytes(cluster));
        if (bytesRead !== lengthBytes) {
          // A short read means the file is shorter than the metadata says: let the checksum catch it.
          target.fill(0, targetOffset + (cluster - first) * CLUSTER_SIZE_BYTES + bytesRead, targetOffset + (stop - first) * CLUSTER_SIZE_BYTES);
        }
        cluster = stop;
      }
      return true;
    } finally {
      this.readers--;
      if (this.readers === 0 && this.evicted) await this.closeHandle();
    }
  }

  /** After eviction (file unlinked), closes the handle once no reader holds it. */
  async markEvicted(): Promise<void> {
    this.evicted = true;
    if (this.readers === 0) await this.closeHandle();
  }

  async closeHandle(): Promise<void> {
    if (this.handleOpening !== undefined) await this.handleOpening.catch(() => undefined);
    const handle = this.handle;
    this.handle = undefined;
    if (handle !== undefined) await handle.close().catch(() => undefined);
  }
}

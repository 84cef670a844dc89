// The scrubber: reclaims backend space in the snapshot ranges of a vDisk's history. Works only from
// the backend (never from the owner's state), so the owner keeps serving I/O meanwhile; the owner
// applies the result (volume.ts applyScrub).
//
// A write entry in snapshot range j (the TLogs written between snapshots j-1 and j) is live when no
// later entry of the same range writes or trims its cluster: only then is it visible at snapshot j,
// and every later point sees it only through that. So per range:
// - the TLogs are rewritten as one (or a few) new TLogs holding the same entries in the same order
//   minus the dead writes and minus relocation entries (no-ops when the whole history is replayed);
// - SCOs whose live fraction is under the setting get their live clusters copied into new SCOs
//   (numbered from SCRUB_SCO_NUMBER_BASE), and the rewritten TLogs point there;
// - SCOs with no live cluster are garbage; so are the replaced TLogs and the copied SCOs.
// Ranges up to the newest snapshot that has clones never have SCOs copied (the clones' metadata points
// into them); their TLogs are still compacted and their dead SCOs collected (no clone can see a dead
// cluster: a clone sees the parent as of a snapshot).
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import type { ObjectStore } from "../backend/object-store.ts";
import { VolumeError } from "./block-device.ts";
import { encodeScoHeader, SCO_HEADER_SIZE_BYTES, scoClusterOffsetBytes, scoNumberFromKey, scoObjectKey } from "./formats/sco-format.ts";
import {
  encodeEndEntry, encodeTlogHeader, encodeTrimEntry, encodeWriteEntry, ENTRY_WRITE, TLOG_ENTRY_SIZE_BYTES, TLOG_HEADER_SIZE_BYTES,
  tlogObjectKey, type TlogEntry,
} from "./formats/tlog-format.ts";
import { type ChainLink, readTlogEntries } from "./history.ts";
import { CLUSTER_SIZE_BYTES, type ScrubProgress } from "./vpool-types.ts";

/** Entries per rewritten TLog (32 MiB): a range with more live entries gets several. */
const SCRUB_TLOG_ENTRIES_MAX = 1024 * 1024;

export interface ScrubRangeInput {
  snapshotUuid: string;
  tlogs: number[];
  /** False for ranges a clone may read from: no SCO is copied there. */
  mayCopyScos: boolean;
}

export interface Relocation {
  clusterAddress: number;
  oldScoNumber: number;
  oldScoOffset: number;
  newScoNumber: number;
  newScoOffset: number;
  dataCrc: number;
}

export interface ScrubRangeResult {
  snapshotUuid: string;
  oldTlogs: number[];
  newTlogs: number[];
  relocations: Relocation[];
  /** Backend keys that leave the history when this range's result is applied. */
  garbageKeys: string[];
  scosCopied: number;
}

export interface ScrubOutput {
  ranges: ScrubRangeResult[];
  /** Next free scrub numbers after this run. */
  scrubScoNumber: number;
  scrubTlogNumber: number;
}

/** What the scrubber needs of a backend (in a worker thread: calls proxied to the owner's store). */
export type ScrubStore = Pick<ObjectStore, "get" | "put" | "list">;

export interface ScrubInput {
  store: ScrubStore;
  link: ChainLink;
  ranges: ScrubRangeInput[];
  /** Clusters per new SCO (the vDisk's SCO size). */
  scoClusterCount: number;
  /** SCOs keeping at least this fraction of live clusters are left alone (default 0.9). */
  liveFractionKeep: number;
  scrubScoNumber: number;
  scrubTlogNumber: number;
  nowMs: () => number;
  onProgress?: (progress: ScrubProgress) => void;
}

/** SCO object sizes of the namespace, by SCO number. */
export async function listScoSizes(store: ScrubStore, namespace: string): Promise<Map<number, number>> {
  const sizes = new Map<number, number>();
  let startAfter: string | undefined;
  for (;;) {
    const page = await store.list(namespace, { prefix: "sco/", startAfter, limitKeys: 1000 });
    for (const object of page.objects) {
      const scoNumber = scoNumberFromKey(object.key);
      if (scoNumber !== undefined) sizes.set(scoNumber, object.sizeBytes);
    }
    if (page.nextStartAfter === undefined) return sizes;
    startAfter = page.nextStartAfter;
  }
}

/** Marks each write entry live or dead within its range (see the top of this file). */
function liveWrites(entries: TlogEntry[]): boolean[] {
  const live = new Array<boolean>(entries.length).fill(false);
  const written = new Set<number>();
  const trimmed: Array<[number, number]> = [];
  const isTrimmed = (address: number): boolean => trimmed.some(([start, end]) => address >= start && address < end);
  for (let index = entries.length - 1; index >= 0; index--) {
    const entry = entries[index];
    if (entry.type === ENTRY_WRITE) {
      live[index] = !written.has(entry.clusterAddress) && !isTrimmed(entry.clusterAddress);
      written.add(entry.clusterAddress);
    } else {
      trimmed.push([entry.clusterAddress, entry.clusterAddress + entry.clusterCount]);
    }
  }
  return live;
}

/** Encodes a sealed TLog of the given entries (sequence numbers renumbered). */
function encodeTlog(tlogNumber: number, volumeUuid: string, createdAtMs: number, entries: TlogEntry[]): Buffer {
  const buffer = Buffer.alloc(TLOG_HEADER_SIZE_BYTES + (entries.length + 1) * TLOG_ENTRY_SIZE_BYTES);
  encodeTlogHeader({ tlogNumber, volumeUuid, createdAtMs }).copy(buffer, 0);
  entries.forEach((entry, index) => {
    const position = TLOG_HEADER_SIZE_BYTES + index * TLOG_ENTRY_SIZE_BYTES;
    if (entry.type === ENTRY_WRITE) {
      encodeWriteEntry(buffer, position, index, entry.clusterAddress, entry.scoNumber, entry.scoOffset, entry.dataCrc, true);
    } else {
      encodeTrimEntry(buffer, position, index, entry.clusterAddress, entry.clusterCount);
    }
  });
  const entriesEnd = TLOG_HEADER_SIZE_BYTES + entries.length * TLOG_ENTRY_SIZE_BYTES;
  encodeEndEntry(buffer, entriesEnd, entries.length, crc32c(buffer.subarray(TLOG_HEADER_SIZE_BYTES, entriesEnd)));
  return buffer;
}

/** Collects new SCOs of live clusters, uploading each when full. */
class ScoWriter {
  private buffer: Buffer | undefined;
  private clusterCount = 0;
  private scoNumber = 0;
  scosWritten = 0;

  constructor(private readonly input: ScrubInput, private readonly tlogNumber: number, private nextScoNumber: number) {}

  get nextNumber(): number {
    return this.nextScoNumber;
  }

  /** Appends one verified cluster; returns its new location. */
  async append(cluster: Buffer): Promise<{ scoNumber: number; scoOffset: number }> {
    if (this.buffer === undefined) {
      this.scoNumber = this.nextScoNumber++;
      this.buffer = Buffer.alloc(SCO_HEADER_SIZE_BYTES + this.input.scoClusterCount * CLUSTER_SIZE_BYTES);
      encodeScoHeader({ scoNumber: this.scoNumber, tlogNumber: this.tlogNumber, volumeUuid: this.input.link.uuid }).copy(this.buffer, 0);
      this.clusterCount = 0;
    }
    cluster.copy(this.buffer, scoClusterOffsetBytes(this.clusterCount));
    const location = { scoNumber: this.scoNumber, scoOffset: this.clusterCount };
    this.clusterCount++;
    if (this.clusterCount === this.input.scoClusterCount) await this.finish();
    return location;
  }

  async finish(): Promise<void> {
    if (this.buffer === undefined) return;
    const data = this.buffer.subarray(0, scoClusterOffsetBytes(this.clusterCount));
    await this.input.store.put(this.input.link.namespace, scoObjectKey(this.scoNumber), data);
    this.buffer = undefined;
    this.scosWritten++;
  }
}

/** Reads clusters [offset, offset + count) of a SCO from the backend and checks each against its CRC. */
async function readLiveRun(input: ScrubInput, scoNumber: number, run: Array<{ entry: TlogEntry & { type: typeof ENTRY_WRITE } }>): Promise<Buffer> {
  const first = run[0].entry.scoOffset;
  const data = await input.store.get(input.link.namespace, scoObjectKey(scoNumber), {
    offsetBytes: scoClusterOffsetBytes(first), lengthBytes: run.length * CLUSTER_SIZE_BYTES,
  });
  if (data.length !== run.length * CLUSTER_SIZE_BYTES) {
    throw new VolumeError("Io", `scrub of ${input.link.name}: SCO ${scoNumber} is shorter than its TLog says`);
  }
  run.forEach(({ entry }, index) => {
    if (crc32c(data.subarray(index * CLUSTER_SIZE_BYTES, (index + 1) * CLUSTER_SIZE_BYTES)) !== entry.dataCrc) {
      throw new VolumeError("Io", `scrub of ${input.link.name}: cluster ${entry.clusterAddress} in SCO ${scoNumber} offset ${entry.scoOffset} fails its checksum; nothing was changed`);
    }
  });
  return data;
}

async function scrubRange(input: ScrubInput, range: ScrubRangeInput, scoSizes: Map<number, number>,
  numbers: { sco: number; tlog: number }): Promise<ScrubRangeResult | undefined> {
  const entries: TlogEntry[] = [];
  let relocationsDropped = 0;
  for (const tlogNumber of range.tlogs) {
    for (const entry of await readTlogEntries(input.store, input.link, tlogNumber)) {
      if (entry.type === ENTRY_WRITE && entry.relocation) relocationsDropped++;
      else entries.push(entry);
    }
  }
  const live = liveWrites(entries);
  const liveCount = new Map<number, number>();
  const referenced = new Set<number>();
  entries.forEach((entry, index) => {
    if (entry.type !== ENTRY_WRITE) return;
    referenced.add(entry.scoNumber);
    if (live[index]) liveCount.set(entry.scoNumber, (liveCount.get(entry.scoNumber) ?? 0) + 1);
  });
  const copied = new Set<number>();
  const dead = new Set<number>();
  for (const scoNumber of referenced) {
    const count = liveCount.get(scoNumber) ?? 0;
    const sizeBytes = scoSizes.get(scoNumber);
    if (count === 0) {
      dead.add(scoNumber);
    } else if (range.mayCopyScos && sizeBytes !== undefined) {
      const physicalClusters = Math.max(1, Math.floor((sizeBytes - SCO_HEADER_SIZE_BYTES) / CLUSTER_SIZE_BYTES));
      if (count / physicalClusters < input.liveFractionKeep) copied.add(scoNumber);
    }
  }
  const deadEntries = entries.filter((entry, index) => entry.type === ENTRY_WRITE && !live[index]).length;
  if (deadEntries === 0 && copied.size === 0 && dead.size === 0 && relocationsDropped === 0 && range.tlogs.length <= 1) return undefined;

  // Copy the live clusters of the copied SCOs, SCO by SCO, in runs of consecutive offsets.
  const firstNewTlog = numbers.tlog;
  const writer = new ScoWriter(input, firstNewTlog, numbers.sco);
  const relocations: Relocation[] = [];
  const newLocation = new Map<string, { scoNumber: number; scoOffset: number }>();
  const liveBySco = new Map<number, Array<{ entry: TlogEntry & { type: typeof ENTRY_WRITE } }>>();
  entries.forEach((entry, index) => {
    if (entry.type === ENTRY_WRITE && live[index] && copied.has(entry.scoNumber)) {
      let list = liveBySco.get(entry.scoNumber);
      if (list === undefined) liveBySco.set(entry.scoNumber, (list = []));
      list.push({ entry });
    }
  });
  for (const [scoNumber, list] of liveBySco) {
    list.sort((left, right) => left.entry.scoOffset - right.entry.scoOffset);
    for (let start = 0; start < list.length;) {
      let end = start + 1;
      while (end < list.length && list[end].entry.scoOffset === list[end - 1].entry.scoOffset + 1 && end - start < 256) end++;
      const run = list.slice(start, end);
      const data = await readLiveRun(input, scoNumber, run);
      for (let index = 0; index < run.length; index++) {
        const { entry } = run[index];
        const location = await writer.append(data.subarray(index * CLUSTER_SIZE_BYTES, (index + 1) * CLUSTER_SIZE_BYTES));
        newLocation.set(`${scoNumber}/${entry.scoOffset}`, location);
        relocations.push({
          clusterAddress: entry.clusterAddress, oldScoNumber: scoNumber, oldScoOffset: entry.scoOffset,
          newScoNumber: location.scoNumber, newScoOffset: location.scoOffset, dataCrc: entry.dataCrc,
        });
      }
      start = end;
    }
  }
  await writer.finish();
  numbers.sco = writer.nextNumber;

  // The rewritten TLogs: live writes (moved where copied) and every trim, in the original order.
  const kept: TlogEntry[] = [];
  entries.forEach((entry, index) => {
    if (entry.type !== ENTRY_WRITE) kept.push(entry);
    else if (live[index]) {
      const moved = newLocation.get(`${entry.scoNumber}/${entry.scoOffset}`);
      kept.push(moved === undefined ? entry : { ...entry, scoNumber: moved.scoNumber, scoOffset: moved.scoOffset });
    }
  });
  const newTlogs: number[] = [];
  for (let start = 0; start === 0 || start < kept.length; start += SCRUB_TLOG_ENTRIES_MAX) {
    const tlogNumber = numbers.tlog++;
    await input.store.put(input.link.namespace, tlogObjectKey(tlogNumber),
      encodeTlog(tlogNumber, input.link.uuid, input.nowMs(), kept.slice(start, start + SCRUB_TLOG_ENTRIES_MAX)));
    newTlogs.push(tlogNumber);
  }
  return {
    snapshotUuid: range.snapshotUuid, oldTlogs: range.tlogs, newTlogs, relocations, scosCopied: copied.size,
    garbageKeys: [...range.tlogs.map(tlogObjectKey), ...[...copied, ...dead].map(scoObjectKey)],
  };
}

/** Scrubs the ranges from the backend; uploads the new SCOs and TLogs; returns what the owner applies. */
export async function runScrub(input: ScrubInput): Promise<ScrubOutput> {
  const scoSizes = await listScoSizes(input.store, input.link.namespace);
  const numbers = { sco: input.scrubScoNumber, tlog: input.scrubTlogNumber };
  const ranges: ScrubRangeResult[] = [];
  for (let index = 0; index < input.ranges.length; index++) {
    input.onProgress?.({ phase: "rewriting", done: index, total: input.ranges.length });
    const result = await scrubRange(input, input.ranges[index], scoSizes, numbers);
    if (result !== undefined) ranges.push(result);
  }
  input.onProgress?.({ phase: "rewriting", done: input.ranges.length, total: input.ranges.length });
  return { ranges, scrubScoNumber: numbers.sco, scrubTlogNumber: numbers.tlog };
}

// Brings a volume's local state back after a stop: from its local directory (replaying local TLogs
// past the metadata checkpoint, cutting a torn tail), or from the backend alone (a new host, or a lost
// local disk: download volume.json and every TLog, rebuild the metadata; SCOs stay on the backend and
// are read on demand).
import { mkdir, open, readdir, readFile, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { crc32c } from "../../../alba/src/codec/crc32c.ts";
import type { ObjectStore } from "../backend/object-store.ts";
import { VolumeError } from "./block-device.ts";
import {
  type Ancestor, applyAncestors, applyEntry, applyTlogs, backendHeadTlogs, fetchManifest, listAllKeys, resolveAncestors,
} from "./history.ts";
import { LocalSco } from "./local-sco.ts";
import { MetadataStore } from "./metadata-store.ts";
import { decodeScoHeader, SCO_HEADER_SIZE_BYTES, scoClusterOffsetBytes, scoNumberFromKey, SCRUB_SCO_NUMBER_BASE } from "./formats/sco-format.ts";
import {
  decodeManifest, encodeManifest, historyBeforeHead, SNAPSHOTS_MANIFEST_KEY, type SnapshotsManifest,
} from "./formats/snapshots-manifest.ts";
import {
  decodeTlog, encodeEndEntry, ENTRY_WRITE, SCRUB_TLOG_NUMBER_BASE, TLOG_ENTRY_SIZE_BYTES, TLOG_HEADER_SIZE_BYTES, tlogNumberFromKey,
  type TlogEntry,
} from "./formats/tlog-format.ts";
import { decodeVolumeConfig, VOLUME_CONFIG_KEY, type VolumeConfig } from "./formats/volume-config.ts";
import { CLUSTER_SIZE_BYTES } from "./vpool-types.ts";

export const METADATA_FILE = "metadata.sqlite";

export interface RecoveredState {
  metadata: MetadataStore;
  scos: Map<number, LocalSco>;
  nextScoNumber: number;
  nextTlogNumber: number;
  backendTlogNumber: number;
  /** Sealed TLogs not yet on the backend, in order, with the SCOs they name. */
  tlogsToUpload: Array<{ tlogNumber: number; scoNumbers: number[] }>;
  /** The vDisk's history (snapshots.json) as this host knows it. */
  manifest: SnapshotsManifest;
  /** The generation of snapshots.json known to be on the backend. */
  backendManifestGeneration: number;
  /** For a clone: its ancestors, nearest first (recorded when the metadata was built). */
  ancestors: Ancestor[];
}

function scoNumbersOf(entries: TlogEntry[]): number[] {
  const numbers = new Set<number>();
  for (const entry of entries) if (entry.type === ENTRY_WRITE && !entry.relocation) numbers.add(entry.scoNumber);
  return [...numbers].sort((left, right) => left - right);
}

async function listNumbered(directory: string, parse: (key: string) => number | undefined, prefix: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch {
    return [];
  }
  const numbers: number[] = [];
  for (const name of names) {
    const number = parse(`${prefix}/${name}`);
    if (number !== undefined) numbers.push(number);
  }
  return numbers.sort((left, right) => left - right);
}

/** Reads cluster `scoOffset` of a local SCO file, or undefined if the file is too short or absent. */
async function readLocalCluster(path: string, scoOffset: number): Promise<Buffer | undefined> {
  try {
    const handle = await open(path, "r");
    try {
      const buffer = Buffer.alloc(CLUSTER_SIZE_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, CLUSTER_SIZE_BYTES, scoClusterOffsetBytes(scoOffset));
      return bytesRead === CLUSTER_SIZE_BYTES ? buffer : undefined;
    } finally {
      await handle.close();
    }
  } catch {
    return undefined;
  }
}

/** Recovers a volume from its local directory after a clean stop or a crash. */
export async function recoverLocal(directory: string, store: ObjectStore, config: VolumeConfig, metadataCacheBytes: number,
  logger: Logger): Promise<RecoveredState> {
  const metadata = await openMetadata(directory, store, config, metadataCacheBytes, logger);
  try {
    const position = metadata.persistedPosition();
    const backendTlogNumber = Number(metadata.getMeta("backend_tlog") ?? "0");
    let maxScoNumber = Number(metadata.getMeta("uploaded_max_sco") ?? "0");
    // Journal numbers only (a checkpoint written by an older build may name a scrubbed TLog).
    let maxTlogNumber = Math.max(backendTlogNumber, position.tlogNumber < SCRUB_TLOG_NUMBER_BASE ? position.tlogNumber : 0);
    const tlogDirectory = join(directory, "tlog");
    const tlogNumbers = await listNumbered(tlogDirectory, tlogNumberFromKey, "tlog");
    const tlogsToUpload: RecoveredState["tlogsToUpload"] = [];
    let lastApplied = position;
    let torn = false;
    for (const tlogNumber of tlogNumbers) {
      const path = join(tlogDirectory, tlogNumber.toString(16).padStart(16, "0"));
      if (tlogNumber <= backendTlogNumber || torn) {
        // Already on the backend (left over from a crash before the local copy was removed), or after a torn TLog.
        await rm(path, { force: true });
        continue;
      }
      const bytes = await readFile(path);
      const isLast = tlogNumber === tlogNumbers[tlogNumbers.length - 1];
      if (isLast && bytes.length < TLOG_HEADER_SIZE_BYTES) {
        // Killed between creating the newest TLog and writing its header: it holds nothing.
        logger.info({ volume: config.name, tlogNumber, bytes: bytes.length }, "removing an empty TLog left by an unclean stop");
        await rm(path, { force: true });
        continue;
      }
      let decoded;
      try {
        decoded = decodeTlog(bytes);
      } catch (error) {
        throw new VolumeError("Io", `local TLog ${tlogNumber} of ${config.name} is unreadable: ${(error as Error).message}`);
      }
      if (decoded.header.tlogNumber !== tlogNumber || decoded.header.volumeUuid !== config.uuid) {
        throw new VolumeError("Io", `local TLog ${tlogNumber} of ${config.name} belongs to another volume or number`);
      }
      let entries = decoded.entries;
      if (!decoded.sealed) {
        // The open TLog at the crash: keep the prefix of entries whose data is on disk and intact.
        // Then cut back to the end of the last whole request: a request's clusters land all or none.
        let intact = 0;
        let valid = 0;
        for (const entry of entries) {
          if (entry.type === ENTRY_WRITE && !entry.relocation) {
            const data = await readLocalCluster(join(directory, "sco", entry.scoNumber.toString(16).padStart(16, "0")), entry.scoOffset);
            if (data === undefined || crc32c(data) !== entry.dataCrc) break;
          }
          intact++;
          if (entry.endOfRequest) valid = intact;
        }
        entries = entries.slice(0, valid);
        torn = true;
        logger.info({ volume: config.name, tlogNumber, entriesKept: valid, entriesFound: decoded.entries.length, reason: decoded.stopReason },
          "replayed the open TLog after an unclean stop");
        // Seal it as it now stands, so it can be uploaded like any other.
        const lengthBytes = TLOG_HEADER_SIZE_BYTES + valid * TLOG_ENTRY_SIZE_BYTES;
        await truncate(path, lengthBytes);
        const bytes = await readFile(path);
        const end = Buffer.alloc(TLOG_ENTRY_SIZE_BYTES);
        encodeEndEntry(end, 0, valid, crc32c(bytes.subarray(TLOG_HEADER_SIZE_BYTES)));
        const handle = await open(path, "r+");
        try {
          await handle.write(end, 0, TLOG_ENTRY_SIZE_BYTES, lengthBytes);
          await handle.sync();
        } finally {
          await handle.close();
        }
      }
      const skip = tlogNumber === position.tlogNumber ? position.entryCount : tlogNumber < position.tlogNumber ? entries.length : 0;
      for (let index = skip; index < entries.length; index++) applyEntry(metadata, entries[index], 0);
      if (entries.length > skip) lastApplied = { tlogNumber, entryCount: entries.length };
      const scoNumbers = scoNumbersOf(entries);
      for (const scoNumber of scoNumbers) maxScoNumber = Math.max(maxScoNumber, scoNumber);
      maxTlogNumber = Math.max(maxTlogNumber, tlogNumber);
      tlogsToUpload.push({ tlogNumber, scoNumbers });
    }
    metadata.commit(metadata.freeze(lastApplied));

    // Local SCO files: which are safe (their TLog is on the backend), which await upload, which are debris.
    const scos = new Map<number, LocalSco>();
    const scoDirectory = join(directory, "sco");
    const referenced = new Set(tlogsToUpload.flatMap((tlog) => tlog.scoNumbers));
    for (const scoNumber of await listNumbered(scoDirectory, scoNumberFromKey, "sco")) {
      const path = join(scoDirectory, scoNumber.toString(16).padStart(16, "0"));
      let header;
      let sizeBytes;
      try {
        const handle = await open(path, "r");
        try {
          const buffer = Buffer.alloc(SCO_HEADER_SIZE_BYTES);
          await handle.read(buffer, 0, SCO_HEADER_SIZE_BYTES, 0);
          header = decodeScoHeader(buffer);
          sizeBytes = (await stat(path)).size;
        } finally {
          await handle.close();
        }
      } catch (error) {
        const empty = (await stat(path).catch(() => undefined))?.size ?? 0;
        if (empty < SCO_HEADER_SIZE_BYTES) {
          // Killed between creating the file and writing its header: no TLog entry can name it.
          logger.info({ volume: config.name, scoNumber }, "removing an empty SCO left by an unclean stop");
          maxScoNumber = Math.max(maxScoNumber, scoNumber);
        } else {
          logger.warn({ volume: config.name, scoNumber, err: error }, "removing unreadable local SCO file");
        }
        await rm(path, { force: true });
        continue;
      }
      const safe = header.tlogNumber <= backendTlogNumber;
      // Counted even when removed below: the backend may hold an upload of it, so its number is never reused.
      maxScoNumber = Math.max(maxScoNumber, scoNumber);
      if (!safe && !referenced.has(scoNumber)) {
        // Written after the last TLog entry that survived: nothing refers to it.
        await rm(path, { force: true });
        continue;
      }
      const sco = new LocalSco(scoNumber, header.tlogNumber, path);
      sco.clusterCount = Math.max(0, Math.floor((sizeBytes - SCO_HEADER_SIZE_BYTES) / CLUSTER_SIZE_BYTES));
      sco.fileClusterCount = sco.clusterCount;
      sco.state = safe ? "safe" : "sealed";
      scos.set(scoNumber, sco);
      maxScoNumber = Math.max(maxScoNumber, scoNumber);
    }
    for (const tlog of tlogsToUpload) {
      for (const scoNumber of tlog.scoNumbers) {
        if (!scos.has(scoNumber)) throw new VolumeError("Io", `SCO ${scoNumber} of ${config.name} named by local TLog ${tlog.tlogNumber} is missing`);
      }
    }
    const manifest = await loadLocalManifest(directory, store, config);
    const recordedAncestors = metadata.getMeta("clone_ancestors");
    let ancestors: Ancestor[];
    if (recordedAncestors !== undefined) {
      ancestors = JSON.parse(recordedAncestors) as Ancestor[];
    } else {
      ancestors = await resolveAncestors(store, config);
      metadata.setMeta("clone_ancestors", JSON.stringify(ancestors));
    }
    return {
      ancestors,
      metadata, scos, backendTlogNumber, tlogsToUpload, manifest,
      nextScoNumber: Math.max(maxScoNumber + 1, manifest.nextScoNumber),
      nextTlogNumber: Math.max(maxTlogNumber + 1, manifest.nextTlogNumber, manifest.headStartTlog),
      backendManifestGeneration: Number(metadata.getMeta("manifest_generation") ?? "0"),
    };
  } catch (error) {
    metadata.close();
    throw error;
  }
}

/** Reads and verifies volume.json from a namespace. */
export async function fetchVolumeConfig(store: ObjectStore, namespace: string): Promise<VolumeConfig> {
  return decodeVolumeConfig(await store.get(namespace, VOLUME_CONFIG_KEY));
}

export function localManifestPath(directory: string): string {
  return join(directory, SNAPSHOTS_MANIFEST_KEY);
}

/** The local snapshots.json; without one (older vDisks), the backend's, else an empty history. */
async function loadLocalManifest(directory: string, store: ObjectStore, config: VolumeConfig): Promise<SnapshotsManifest> {
  let data: Buffer;
  try {
    data = await readFile(localManifestPath(directory));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    const manifest = await fetchManifest(store, config.namespace, config.uuid);
    await writeLocalManifest(directory, manifest);
    return manifest;
  }
  let manifest: SnapshotsManifest;
  try {
    manifest = decodeManifest(data);
  } catch (error) {
    throw new VolumeError("Io", `local ${SNAPSHOTS_MANIFEST_KEY} of ${config.name} is unreadable: ${(error as Error).message}`);
  }
  if (manifest.volumeUuid !== config.uuid) throw new VolumeError("Io", `local ${SNAPSHOTS_MANIFEST_KEY} of ${config.name} belongs to another vDisk`);
  return manifest;
}

/** Replaces the local snapshots.json atomically and durably. */
export async function writeLocalManifest(directory: string, manifest: SnapshotsManifest): Promise<void> {
  await writeFileDurably(directory, SNAPSHOTS_MANIFEST_KEY, encodeManifest(manifest));
}

/**
 * Applies the whole history of the vDisk on the backend to an empty metadata store: the clone
 * ancestors' TLogs, then its own as snapshots.json lists them, then the journal's head TLogs. Commits
 * the result with the backend position. The "rebuilding" mark makes a rebuild cut short by a crash
 * start over instead of passing for a complete one. Returns the number of own TLogs applied.
 */
async function rebuildMetadataFromBackend(store: ObjectStore, config: VolumeConfig, metadata: MetadataStore): Promise<{ tlogCount: number; manifest: SnapshotsManifest }> {
  metadata.setMeta("rebuilding", "1");
  const ancestors = await resolveAncestors(store, config);
  metadata.setMeta("clone_ancestors", JSON.stringify(ancestors));
  const manifest = await fetchManifest(store, config.namespace, config.uuid);
  const head = await backendHeadTlogs(store, config, manifest);
  let position = { tlogNumber: 0, entryCount: 0 };
  const commitNowAndThen = (tlogNumber: number, entryCount: number): void => {
    // The checkpoint names journal TLogs only: a scrubbed TLog's number (2^40 and up) would push the
    // journal's numbering into the scrubber's range.
    if (tlogNumber < SCRUB_TLOG_NUMBER_BASE) position = { tlogNumber, entryCount };
    if (metadata.dirtyPageCount() > 4096) metadata.commit(metadata.freeze(position));
  };
  await applyAncestors(store, ancestors, metadata, () => {
    if (metadata.dirtyPageCount() > 4096) metadata.commit(metadata.freeze(position));
  });
  const self = { name: config.name, uuid: config.uuid, namespace: config.namespace };
  const history = [...historyBeforeHead(manifest), ...head];
  let maxScoNumber = await applyTlogs(store, self, history, metadata, 0, { afterTlog: commitNowAndThen });
  for (const key of await listAllKeys(store, config.namespace, "sco/")) {
    const scoNumber = scoNumberFromKey(key);
    if (scoNumber !== undefined && scoNumber < SCRUB_SCO_NUMBER_BASE) maxScoNumber = Math.max(maxScoNumber, scoNumber);
  }
  maxScoNumber = Math.max(maxScoNumber, manifest.nextScoNumber - 1);
  const lastTlog = head.length > 0 ? head[head.length - 1] : Math.max(0, manifest.headStartTlog - 1);
  metadata.commit(metadata.freeze(position), {
    backend_tlog: String(lastTlog), uploaded_max_sco: String(maxScoNumber), manifest_generation: String(manifest.generation), rebuilding: "0",
  });
  return { tlogCount: history.length, manifest };
}

/**
 * Rebuilds a volume's local directory from its backend namespace. On failure the partial directory
 * is removed, so a later attempt starts clean.
 */
export async function restoreFromBackend(directory: string, store: ObjectStore, config: VolumeConfig,
  metadataCacheBytes: number, logger: Logger): Promise<void> {
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true });
  let metadata: MetadataStore | undefined;
  try {
    metadata = new MetadataStore(join(directory, METADATA_FILE), metadataCacheBytes);
    const { tlogCount, manifest } = await rebuildMetadataFromBackend(store, config, metadata);
    await writeLocalManifest(directory, manifest);
    metadata.close();
    metadata = undefined;
    logger.info({ volume: config.name, tlogs: tlogCount }, "restored volume from the backend");
  } catch (error) {
    metadata?.close();
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Opens the metadata of a local vDisk. A database that cannot be opened is moved aside; a new (or
 * moved-aside) one is rebuilt from the backend's TLogs, and the local TLogs are replayed on top by
 * the caller: the metadata is only ever a cache of the TLogs.
 */
async function openMetadata(directory: string, store: ObjectStore, config: VolumeConfig, metadataCacheBytes: number, logger: Logger): Promise<MetadataStore> {
  const path = join(directory, METADATA_FILE);
  let metadata: MetadataStore;
  try {
    metadata = new MetadataStore(path, metadataCacheBytes);
    metadata.verifyIntegrity();
  } catch (error) {
    const aside = `${path}.unreadable-${Date.now()}`;
    logger.error({ volume: config.name, err: error, movedTo: aside }, "metadata database unreadable; rebuilding it from the TLogs");
    for (const suffix of ["", "-wal", "-shm"]) await rename(`${path}${suffix}`, `${aside}${suffix}`).catch(() => undefined);
    metadata = new MetadataStore(path, metadataCacheBytes);
  }
  if (metadata.getMeta("checkpoint") === undefined || metadata.getMeta("rebuilding") === "1") {
    try {
      metadata.clearAll();
      const { tlogCount } = await rebuildMetadataFromBackend(store, config, metadata);
      if (tlogCount > 0) logger.warn({ volume: config.name, tlogs: tlogCount }, "rebuilt the metadata from the backend's TLogs");
    } catch (error) {
      metadata.close();
      await rm(path, { force: true });
      throw error;
    }
  }
  return metadata;
}

export async function writeLocalConfig(directory: string, encoded: Buffer): Promise<void> {
  await writeFileDurably(directory, VOLUME_CONFIG_KEY, encoded);
}

/** Writes `name` in `directory` via a temp file, fsync and rename, then fsyncs the directory. */
async function writeFileDurably(directory: string, name: string, data: Buffer): Promise<void> {
  await mkdir(directory, { recursive: true });
  const temporary = join(directory, `${name}.tmp`);
  await writeFile(temporary, data);
  const handle = await open(temporary, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, join(directory, name));
  const directoryHandle = await open(directory, "r");
  try {
    await directoryHandle.sync();
  } finally {
    await directoryHandle.close();
  }
}

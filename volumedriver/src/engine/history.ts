// The write history of a vDisk as TLogs, and how to replay it into metadata: its own TLogs (listed
// by snapshots.json, then the journal's head TLogs on the backend) on top of those of its clone
// ancestors, each up to the snapshot the child was cloned from. A cluster written by the n-th
// ancestor carries clone index n in the metadata, so reads go to that ancestor's namespace.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { isStoreError, type ObjectStore } from "../backend/object-store.ts";
import { VolumeError } from "./block-device.ts";
import type { MetadataStore } from "./metadata-store.ts";
import {
  decodeManifest, emptyManifest, snapshotHistory, SNAPSHOTS_MANIFEST_KEY, type SnapshotsManifest,
} from "./formats/snapshots-manifest.ts";
import { SCRUB_SCO_NUMBER_BASE } from "./formats/sco-format.ts";
import { decodeTlog, ENTRY_WRITE, SCRUB_TLOG_NUMBER_BASE, tlogNumberFromKey, tlogObjectKey, type TlogEntry } from "./formats/tlog-format.ts";
import { decodeVolumeConfig, VOLUME_CONFIG_KEY, type VolumeConfig } from "./formats/volume-config.ts";

/** Clone chains deeper than this are refused (the clone index is one byte). */
export const CLONE_DEPTH_MAX = 64;

/** One vDisk of a clone chain: where its objects live. Index 0 is the vDisk itself. */
export interface ChainLink {
  name: string;
  uuid: string;
  namespace: string;
}

export interface Ancestor {
  link: ChainLink;
  /** The ancestor's TLogs up to the snapshot its child was cloned from, in order. */
  tlogs: number[];
}

export async function listAllKeys(store: ObjectStore, namespace: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let startAfter: string | undefined;
  for (;;) {
    const page = await store.list(namespace, { prefix, startAfter, limitKeys: 1000 });
    for (const object of page.objects) keys.push(object.key);
    if (page.nextStartAfter === undefined) return keys;
    startAfter = page.nextStartAfter;
  }
}

/** The backend's snapshots.json of a namespace; an empty history when there is none yet. */
export async function fetchManifest(store: ObjectStore, namespace: string, volumeUuid: string): Promise<SnapshotsManifest> {
  let data: Buffer;
  try {
    data = await store.get(namespace, SNAPSHOTS_MANIFEST_KEY);
  } catch (error) {
    if (isStoreError(error, "NotFound")) return emptyManifest(volumeUuid);
    throw error;
  }
  let manifest: SnapshotsManifest;
  try {
    manifest = decodeManifest(data);
  } catch (error) {
    throw new VolumeError("Io", `${SNAPSHOTS_MANIFEST_KEY} of namespace ${namespace} is corrupt: ${(error as Error).message}`);
  }
  if (manifest.volumeUuid !== volumeUuid) throw new VolumeError("Io", `${SNAPSHOTS_MANIFEST_KEY} of namespace ${namespace} belongs to another vDisk`);
  return manifest;
}

/** The ancestors of a clone, nearest first (clone index 1, 2, ...), read from the backend. */
export async function resolveAncestors(store: ObjectStore, config: VolumeConfig): Promise<Ancestor[]> {
  const ancestors: Ancestor[] = [];
  let parent = config.parent;
  while (parent !== undefined) {
    if (ancestors.length >= CLONE_DEPTH_MAX) throw new VolumeError("Invalid", `clone chain of ${config.name} is deeper than ${CLONE_DEPTH_MAX}`);
    let parentConfig: VolumeConfig;
    try {
      parentConfig = decodeVolumeConfig(await store.get(parent.namespace, VOLUME_CONFIG_KEY));
    } catch (error) {
      throw new VolumeError("Io", `clone parent ${parent.volumeName} (namespace ${parent.namespace}) is unreadable: ${(error as Error).message}`, { cause: error });
    }
    const manifest = await fetchManifest(store, parent.namespace, parent.volumeUuid);
    const index = manifest.snapshots.findIndex((snapshot) => snapshot.uuid === parent?.snapshotUuid);
    if (index < 0) {
      throw new VolumeError("Io", `snapshot ${parent.snapshotName} of ${parent.volumeName}, the parent of a clone, is not on the backend`);
    }
    ancestors.push({
      link: { name: parentConfig.name, uuid: parentConfig.uuid, namespace: parentConfig.namespace },
      tlogs: snapshotHistory(manifest, index),
    });
    parent = parentConfig.parent;
  }
  return ancestors;
}

/**
 * The entries of one sealed TLog of `link`: from the local TLog directory when given and the file is
 * there (not uploaded yet), else from the backend. A TLog that fails its checks is an Io error.
 */
export async function readTlogEntries(store: Pick<ObjectStore, "get">, link: ChainLink, tlogNumber: number, localTlogDirectory?: string): Promise<TlogEntry[]> {
  let data: Buffer | undefined;
  let where = "the backend";
  if (localTlogDirectory !== undefined) {
    try {
      data = await readFile(join(localTlogDirectory, tlogNumber.toString(16).padStart(16, "0")));
      where = "the write buffer";
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  if (data === undefined) {
    try {
      data = await store.get(link.namespace, tlogObjectKey(tlogNumber));
    } catch (error) {
      if (isStoreError(error, "NotFound")) throw new VolumeError("Io", `vDisk ${link.name}: TLog ${tlogNumber} is missing from the backend`, { cause: error });
      throw error;
    }
  }
  let tlog;
  try {
    tlog = decodeTlog(data);
  } catch (error) {
    throw new VolumeError("Io", `vDisk ${link.name}: TLog ${tlogNumber} in ${where} is corrupt: ${(error as Error).message}`);
  }
  if (!tlog.sealed || tlog.stopReason !== undefined || tlog.header.tlogNumber !== tlogNumber || tlog.header.volumeUuid !== link.uuid) {
    throw new VolumeError("Io", `vDisk ${link.name}: TLog ${tlogNumber} in ${where} is corrupt: ${tlog.stopReason ?? "not sealed or wrong header"}`);
  }
  return tlog.entries;
}

export function applyEntry(metadata: MetadataStore, entry: TlogEntry, cloneIndex: number): void {
  if (entry.type === ENTRY_WRITE) metadata.setLocation(entry.clusterAddress, entry.scoNumber, entry.scoOffset, entry.dataCrc, cloneIndex);
  else metadata.clearRange(entry.clusterAddress, entry.clusterCount);
}

export interface ApplyOptions {
  localTlogDirectory?: string;
  /** Called after each TLog with its number and entry count (e.g. to commit a checkpoint). */
  afterTlog?: (tlogNumber: number, entryCount: number) => void;
}

/** Applies the TLogs, in order, to the metadata with `cloneIndex`. Returns the highest journal SCO number they name. */
export async function applyTlogs(store: ObjectStore, link: ChainLink, tlogNumbers: number[], metadata: MetadataStore, cloneIndex: number,
  options: ApplyOptions = {}): Promise<number> {
  let maxScoNumber = 0;
  for (const tlogNumber of tlogNumbers) {
    const entries = await readTlogEntries(store, link, tlogNumber, options.localTlogDirectory);
    for (const entry of entries) {
      applyEntry(metadata, entry, cloneIndex);
      if (entry.type === ENTRY_WRITE && entry.scoNumber < SCRUB_SCO_NUMBER_BASE) maxScoNumber = Math.max(maxScoNumber, entry.scoNumber);
    }
    options.afterTlog?.(tlogNumber, entries.length);
  }
  return maxScoNumber;
}

/** Applies every ancestor's history, farthest first, each with its clone index. */
export async function applyAncestors(store: ObjectStore, ancestors: Ancestor[], metadata: MetadataStore,
  afterTlog?: ApplyOptions["afterTlog"]): Promise<void> {
  for (let depth = ancestors.length; depth >= 1; depth--) {
    const ancestor = ancestors[depth - 1];
    await applyTlogs(store, ancestor.link, ancestor.tlogs, metadata, depth, { afterTlog });
  }
}

/**
 * The journal's head TLogs on the backend: numbers from `headStartTlog` on, in order. A gap among
 * them is an Io error naming the missing TLog: a history with a hole must not be served.
 */
export async function backendHeadTlogs(store: ObjectStore, config: VolumeConfig, manifest: SnapshotsManifest): Promise<number[]> {
  const listed = new Set([...manifest.snapshots.flatMap((snapshot) => snapshot.tlogs), ...manifest.headTlogs]);
  const numbers = (await listAllKeys(store, config.namespace, "tlog/"))
    .map(tlogNumberFromKey)
    .filter((number): number is number => number !== undefined && number >= manifest.headStartTlog && number < SCRUB_TLOG_NUMBER_BASE
      && !listed.has(number))
    .sort((left, right) => left - right);
  for (let index = 1; index < numbers.length; index++) {
    if (numbers[index] !== numbers[index - 1] + 1) {
      throw new VolumeError("Io", `volume ${config.name}: TLog ${numbers[index - 1] + 1} is missing from the backend (found ${numbers[index]} after ${numbers[index - 1]})`);
    }
  }
  return numbers;
}

// snapshots.json: the history of one vDisk — its snapshots, in order, each with the TLogs written
// since the snapshot before it, and where the current ("head") TLogs start. Stored in the vDisk's
// backend namespace (uploaded after the TLogs it names, so the backend stays a consistent prefix) and
// in its local directory. A checksummed JSON document like volume.json. Layout and rules:
// volumedriver/docs/formats.md "snapshots.json".
//
// The TLogs of the history, in order, are: every snapshot's `tlogs`, then `headTlogs`, then the
// journal's TLogs numbered `headStartTlog` and up (contiguous). The data as of snapshot i is the
// replay of the TLogs of snapshots 0..i.
import { encodeChecksummedJson, parseChecksummedJson, verifyChecksum } from "./checksummed-json.ts";
import { SCRUB_SCO_NUMBER_BASE } from "./sco-format.ts";
import { SCRUB_TLOG_NUMBER_BASE } from "./tlog-format.ts";

export const SNAPSHOTS_MANIFEST_KEY = "snapshots.json";
export const SNAPSHOTS_MANIFEST_FORMAT = "ovs-snapshots";
export const SNAPSHOTS_MANIFEST_VERSION = 1;

export interface SnapshotRecord {
  name: string;
  uuid: string;
  createdAt: string;
  sizeBytes: number;
  /** TLogs written since the previous snapshot, in order. */
  tlogs: number[];
  /** The manifest generation that first held this snapshot: it is on the backend once that generation is. */
  generation: number;
}

export interface SnapshotsManifest {
  format: typeof SNAPSHOTS_MANIFEST_FORMAT;
  version: number;
  volumeUuid: string;
  /** Increases with every change; the backend copy is current once its generation is the local one. */
  generation: number;
  snapshots: SnapshotRecord[];
  /** Head TLogs that come before `headStartTlog` (those of a deleted last snapshot). */
  headTlogs: number[];
  /** The journal's TLogs from this number on belong to the head; lower unlisted numbers are garbage. */
  headStartTlog: number;
  /** Lowest SCO number never used: numbers of dropped objects are never reused (the read cache keys on them). */
  nextScoNumber: number;
  /** Lowest TLog number never used. */
  nextTlogNumber: number;
  /** A template refuses writes; clones can be made from its latest snapshot. */
  template: boolean;
  /** A snapshot was deleted (or a rollback dropped data) since the last scrub. */
  scrubPending: boolean;
  /** Next SCO and TLog numbers for scrub output (from SCRUB_SCO_NUMBER_BASE / SCRUB_TLOG_NUMBER_BASE). */
  scrubScoNumber: number;
  scrubTlogNumber: number;
  /** Objects that left the history, deleted once `notBeforeMs` has passed (readers may still hold them). */
  garbage: GarbageObject[];
}

export interface GarbageObject {
  key: string;
  notBeforeMs: number;
}

export function emptyManifest(volumeUuid: string): SnapshotsManifest {
  return {
    format: SNAPSHOTS_MANIFEST_FORMAT, version: SNAPSHOTS_MANIFEST_VERSION, volumeUuid, generation: 0,
    snapshots: [], headTlogs: [], headStartTlog: 1, nextScoNumber: 1, nextTlogNumber: 1, template: false, scrubPending: false,
    scrubScoNumber: SCRUB_SCO_NUMBER_BASE, scrubTlogNumber: SCRUB_TLOG_NUMBER_BASE, garbage: [],
  };
}

function canonical(manifest: SnapshotsManifest): string {
  const {
    format, version, volumeUuid, generation, snapshots, headTlogs, headStartTlog, nextScoNumber, nextTlogNumber, template, scrubPending,
    scrubScoNumber, scrubTlogNumber, garbage,
  } = manifest;
  return JSON.stringify({
    format, version, volumeUuid, generation,
    snapshots: snapshots.map(({ name, uuid, createdAt, sizeBytes, tlogs, generation: added }) => ({ name, uuid, createdAt, sizeBytes, tlogs, generation: added })),
    headTlogs, headStartTlog, nextScoNumber, nextTlogNumber, template, scrubPending, scrubScoNumber, scrubTlogNumber,
    garbage: garbage.map(({ key, notBeforeMs }) => ({ key, notBeforeMs })),
  });
}

export function encodeManifest(manifest: SnapshotsManifest): Buffer {
  return encodeChecksummedJson(canonical(manifest));
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isTlogList = (value: unknown): value is number[] => Array.isArray(value) && value.every((number) => isCount(number) && number > 0);

/** Parses and verifies snapshots.json; throws an Error saying what is wrong. */
export function decodeManifest(data: Buffer): SnapshotsManifest {
  const parsed = parseChecksummedJson(data, "snapshots.json", SNAPSHOTS_MANIFEST_FORMAT, SNAPSHOTS_MANIFEST_VERSION);
  const manifest = parsed as unknown as SnapshotsManifest;
  if (!Array.isArray(manifest.snapshots) || !isTlogList(manifest.headTlogs)) throw new Error("snapshots.json: bad lists");
  for (const snapshot of manifest.snapshots) {
    if (typeof snapshot?.name !== "string" || typeof snapshot.uuid !== "string" || !isTlogList(snapshot.tlogs)
      || !isCount(snapshot.sizeBytes) || !isCount(snapshot.generation)) {
      throw new Error("snapshots.json: bad snapshot record");
    }
  }
  if (!Array.isArray(manifest.garbage) || !manifest.garbage.every((object) => typeof object?.key === "string" && isCount(object.notBeforeMs))) {
    throw new Error("snapshots.json: bad garbage list");
  }
  for (const field of ["generation", "headStartTlog", "nextScoNumber", "nextTlogNumber", "scrubScoNumber", "scrubTlogNumber"] as const) {
    if (!isCount(manifest[field])) throw new Error(`snapshots.json: bad ${field}`);
  }
  verifyChecksum(parsed, canonical(manifest), "snapshots.json");
  return manifest;
}

/** The TLogs of the history up to and including snapshot `index`, in order. */
export function snapshotHistory(manifest: SnapshotsManifest, index: number): number[] {
  return manifest.snapshots.slice(0, index + 1).flatMap((snapshot) => snapshot.tlogs);
}

/** The TLogs of the history before the journal's head TLogs (all snapshots, then headTlogs). */
export function historyBeforeHead(manifest: SnapshotsManifest): number[] {
  return [...snapshotHistory(manifest, manifest.snapshots.length - 1), ...manifest.headTlogs];
}

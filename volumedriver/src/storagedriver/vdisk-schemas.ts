// JSON schemas of the vDisk, snapshot and task management requests, shared by the StorageDriver API
// and the framework API so that both edges accept exactly the same requests. Each field carries a
// hint (its schema's description) that the error handler appends to a validation failure, so the
// message says how to write the field correctly.
import { VOLUME_OVERRIDE_KEYS, type VolumeOverrides } from "../engine/formats/volume-config.ts";
import type { LIVE_VPOOL_SETTINGS } from "../engine/vpool.ts";
import { SNAPSHOT_NAME_PATTERN } from "../engine/vpool-types.ts";
import { SIZE_TEXT_SCHEMA_PATTERN, VDISK_SIZE_ALIGNMENT_BYTES, VDISK_SIZE_BYTES_MAX } from "./size.ts";

/** vDisk names: 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit. */
export const VDISK_NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$";
export const VDISK_NAME_HINT = "a vDisk name is 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit";
export const VDISK_SIZE_HINT = `a vDisk size is a number of bytes (a multiple of ${VDISK_SIZE_ALIGNMENT_BYTES}, at most 64 TiB) or a text like "10G" or "512M"`;
export const SNAPSHOT_NAME_HINT = "a snapshot name is 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit";
export const CLONE_PARENT_HINT = `a parent is "VDISK@SNAPSHOT" (clone that snapshot) or "VDISK" (clone the latest snapshot of a template)`;
export const CREATE_VDISK_BODY_HINT = `send a JSON object like {"name": "disk1", "size": "10G"}, or {"name": "clone1", "parent": "disk1@snap1"} for a clone`;

/** Separates the vDisk from the snapshot in a clone parent ("disk1@snap1") and an NBD export name. */
export const SNAPSHOT_SEPARATOR = "@";

export const vdiskNameSchema = { type: "string", pattern: VDISK_NAME_PATTERN, maxLength: 63, description: VDISK_NAME_HINT } as const;

export const snapshotNameSchema = { type: "string", pattern: SNAPSHOT_NAME_PATTERN.source, maxLength: 63, description: SNAPSHOT_NAME_HINT } as const;

export const cloneParentSchema = {
  type: "string",
  pattern: `${VDISK_NAME_PATTERN.slice(0, -1)}(${SNAPSHOT_SEPARATOR}${SNAPSHOT_NAME_PATTERN.source.slice(1, -1)})?$`,
  maxLength: 127,
  description: CLONE_PARENT_HINT,
} as const;

export const vdiskSizeSchema = {
  type: ["integer", "string"],
  // For numbers:
  minimum: VDISK_SIZE_ALIGNMENT_BYTES,
  maximum: VDISK_SIZE_BYTES_MAX,
  multipleOf: VDISK_SIZE_ALIGNMENT_BYTES,
  // For texts (their value is checked after parsing):
  pattern: SIZE_TEXT_SCHEMA_PATTERN,
  maxLength: 32,
  description: VDISK_SIZE_HINT,
} as const;

/** A new vDisk has a size; a clone has a parent (and the size of its snapshot). */
export interface CreateVdiskBody {
  name: string;
  size?: number | string;
  parent?: string;
}

export interface VdiskParams {
  name: string;
}

export interface SnapshotParams {
  name: string;
  snapshot: string;
}

export interface CreateSnapshotBody {
  name: string;
}

export interface RollbackBody {
  snapshot: string;
}

export interface ResizeBody {
  size: number | string;
}

/** PUT /vdisks/:name/config: the vDisk's overrides, whole (a key left out follows the vPool again). */
export type VdiskConfigBody = VolumeOverrides;

export interface TaskParams {
  id: string;
}

export const createVdiskBodySchema = {
  type: "object",
  required: ["name"],
  additionalProperties: false,
  properties: { name: vdiskNameSchema, size: vdiskSizeSchema, parent: cloneParentSchema },
  description: CREATE_VDISK_BODY_HINT,
} as const;

export const vdiskParamsSchema = {
  type: "object",
  required: ["name"],
  additionalProperties: false,
  properties: { name: vdiskNameSchema },
} as const;

export const snapshotParamsSchema = {
  type: "object",
  required: ["name", "snapshot"],
  additionalProperties: false,
  properties: { name: vdiskNameSchema, snapshot: snapshotNameSchema },
} as const;

export const createSnapshotBodySchema = {
  type: "object",
  required: ["name"],
  additionalProperties: false,
  properties: { name: snapshotNameSchema },
  description: `send a JSON object like {"name": "before-upgrade"}`,
} as const;

export const rollbackBodySchema = {
  type: "object",
  required: ["snapshot"],
  additionalProperties: false,
  properties: { snapshot: snapshotNameSchema },
  description: `send a JSON object like {"snapshot": "before-upgrade"}`,
} as const;

export const resizeBodySchema = {
  type: "object",
  required: ["size"],
  additionalProperties: false,
  properties: { size: vdiskSizeSchema },
  description: `send a JSON object like {"size": "20G"}: the new size, at least the current one (vDisks only grow)`,
} as const;

/** How to write each vPool setting that can change at run time (per vDisk or per vPool: settings-routes.ts). */
export const SETTING_HINTS: Record<(typeof LIVE_VPOOL_SETTINGS)[number], string> = {
  scoSizeBytes: "scoSizeBytes: SCO size of vDisks created from now on, 4 MiB-128 MiB, a multiple of 4096",
  scoMaxAgeMs: "scoMaxAgeMs: milliseconds before a SCO holding data is sealed and uploaded (10-3600000)",
  tlogScoCountMax: "tlogScoCountMax: SCOs per TLog before it is rolled (1-1024)",
  writeBufferSizeBytes: "writeBufferSizeBytes: the local write buffer in bytes, at least 2 SCOs",
  writeBufferTriggerGapBytes: "writeBufferTriggerGapBytes: uploaded SCOs are evicted when less room than this is left (at most half the buffer; default 1/8)",
  readCacheSizeBytes: "readCacheSizeBytes: the in-memory read cache in bytes (0: none)",
  uploadConcurrency: "uploadConcurrency: objects each vDisk uploads at once (1-64)",
  prefetchClusters: "prefetchClusters: 4 KiB clusters read ahead once reads are sequential (0-65536)",
  scrubLiveFractionKeep: "scrubLiveFractionKeep: a scrub rewrites SCOs with less than this fraction live (0-1)",
  scrubGracePeriodMs: "scrubGracePeriodMs: how long objects a scrub replaced are kept for readers (0-604800000)",
};

export const VDISK_CONFIG_BODY_HINT = `send a JSON object with the settings this vDisk overrides, like {"scoMaxAgeMs": 2000}; {} follows the vPool for all; the keys: ${VOLUME_OVERRIDE_KEYS.join(", ")}`;

export const vdiskConfigBodySchema = {
  type: "object",
  additionalProperties: false,
  properties: Object.fromEntries(VOLUME_OVERRIDE_KEYS.map((key) =>
    [key, { type: key === "scrubLiveFractionKeep" ? "number" : "integer", description: SETTING_HINTS[key] }])),
  description: VDISK_CONFIG_BODY_HINT,
} as const;

/** For actions that take no parameters (template, scrub): no body, or {}. See allowEmptyBody (vdisk-requests.ts). */
export const emptyBodySchema = {
  type: "object",
  additionalProperties: false,
  properties: {},
  description: "send no body, or {}",
} as const;

export const taskParamsSchema = {
  type: "object",
  required: ["id"],
  additionalProperties: false,
  // Task ids are UUIDs; anything that could not be one is refused before the lookup.
  properties: { id: { type: "string", pattern: "^[A-Za-z0-9-]{1,64}$", description: "a task id is the id a 202 answer returned (GET /tasks lists them)" } },
} as const;

/** Hints by the JSON pointer of the offending field, for failures whose schema has no description. */
export const FIELD_HINTS: ReadonlyMap<string, string> = new Map([
  ["", CREATE_VDISK_BODY_HINT],
  ["/name", VDISK_NAME_HINT],
  ["/size", VDISK_SIZE_HINT],
]);

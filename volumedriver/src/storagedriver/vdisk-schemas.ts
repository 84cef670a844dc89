// JSON schemas of the vDisk management requests, shared by the StorageDriver API and the framework
// API so that both edges accept exactly the same requests. Each field carries a hint that the error
// handler appends to a validation failure, so the message says how to write the field correctly.
import { SIZE_TEXT_SCHEMA_PATTERN, VDISK_SIZE_ALIGNMENT_BYTES, VDISK_SIZE_BYTES_MAX } from "./size.ts";

/** vDisk names: 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit. */
export const VDISK_NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$";
export const VDISK_NAME_HINT = "a vDisk name is 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit";
export const VDISK_SIZE_HINT = `a vDisk size is a number of bytes (a multiple of ${VDISK_SIZE_ALIGNMENT_BYTES}, at most 64 TiB) or a text like "10G" or "512M"`;

export const vdiskNameSchema = { type: "string", pattern: VDISK_NAME_PATTERN, maxLength: 63 } as const;

export const vdiskSizeSchema = {
  type: ["integer", "string"],
  // For numbers:
  minimum: VDISK_SIZE_ALIGNMENT_BYTES,
  maximum: VDISK_SIZE_BYTES_MAX,
  multipleOf: VDISK_SIZE_ALIGNMENT_BYTES,
  // For texts (their value is checked after parsing):
  pattern: SIZE_TEXT_SCHEMA_PATTERN,
  maxLength: 32,
} as const;

export interface CreateVdiskBody {
  name: string;
  size: number | string;
}

export interface VdiskParams {
  name: string;
}

export const createVdiskBodySchema = {
  type: "object",
  required: ["name", "size"],
  additionalProperties: false,
  properties: { name: vdiskNameSchema, size: vdiskSizeSchema },
} as const;

export const vdiskParamsSchema = {
  type: "object",
  required: ["name"],
  additionalProperties: false,
  properties: { name: vdiskNameSchema },
} as const;

/** Hints by the JSON pointer of the offending field, as ajv reports it in instancePath. */
export const FIELD_HINTS: ReadonlyMap<string, string> = new Map([
  ["", `send a JSON object like {"name": "disk1", "size": "10G"}`],
  ["/name", VDISK_NAME_HINT],
  ["/size", VDISK_SIZE_HINT],
]);

// volume.json: the configuration of one vDisk, stored in its backend namespace (so a new host can find
// and restore it) and in its local directory. A checksummed JSON document: the "checksum" field is the
// CRC-32C (hex) of the canonical JSON of all other fields in the order written here.
import { encodeChecksummedJson, parseChecksummedJson, verifyChecksum } from "./checksummed-json.ts";

export const VOLUME_CONFIG_KEY = "volume.json";
export const VOLUME_CONFIG_FORMAT = "ovs-volume";
export const VOLUME_CONFIG_VERSION = 1;

/** Where a clone comes from: the parent vDisk's namespace and the snapshot it was cloned from. */
export interface VolumeParent {
  namespace: string;
  volumeUuid: string;
  volumeName: string;
  snapshotUuid: string;
  snapshotName: string;
}

export interface VolumeConfig {
  format: typeof VOLUME_CONFIG_FORMAT;
  version: number;
  name: string;
  uuid: string;
  vpool: string;
  namespace: string;
  sizeBytes: number;
  clusterSizeBytes: number;
  scoSizeBytes: number;
  createdAt: string;
  /** Set for a clone (absent otherwise, so older documents keep their checksum). */
  parent?: VolumeParent;
  /** Settings of this vDisk that differ from its vPool's (absent when none, for the same reason). */
  overrides?: VolumeOverrides;
}

/** The vPool settings a vDisk may override (vpool-types.ts VPoolSettings has their meaning). */
export const VOLUME_OVERRIDE_KEYS = ["scoMaxAgeMs", "tlogScoCountMax", "uploadConcurrency", "prefetchClusters", "scrubLiveFractionKeep"] as const;
export type VolumeOverrideKey = typeof VOLUME_OVERRIDE_KEYS[number];
export type VolumeOverrides = Partial<Record<VolumeOverrideKey, number>>;

function canonical(config: VolumeConfig): string {
  const { format, version, name, uuid, vpool, namespace, sizeBytes, clusterSizeBytes, scoSizeBytes, createdAt, parent, overrides } = config;
  const fields: Record<string, unknown> = { format, version, name, uuid, vpool, namespace, sizeBytes, clusterSizeBytes, scoSizeBytes, createdAt };
  if (parent !== undefined) {
    const { namespace: parentNamespace, volumeUuid, volumeName, snapshotUuid, snapshotName } = parent;
    fields.parent = { namespace: parentNamespace, volumeUuid, volumeName, snapshotUuid, snapshotName };
  }
  if (overrides !== undefined) fields.overrides = Object.fromEntries(VOLUME_OVERRIDE_KEYS.filter((key) => overrides[key] !== undefined).map((key) => [key, overrides[key]]));
  return JSON.stringify(fields);
}

export function encodeVolumeConfig(config: VolumeConfig): Buffer {
  return encodeChecksummedJson(canonical(config));
}

/** Parses and verifies volume.json; throws an Error saying what is wrong. */
export function decodeVolumeConfig(data: Buffer): VolumeConfig {
  const parsed = parseChecksummedJson(data, "volume.json", VOLUME_CONFIG_FORMAT, VOLUME_CONFIG_VERSION);
  const config = parsed as unknown as VolumeConfig;
  verifyChecksum(parsed, canonical(config), "volume.json");
  const parent = config.parent;
  if (parent !== undefined && (typeof parent !== "object" || parent === null
    || !["namespace", "volumeUuid", "volumeName", "snapshotUuid", "snapshotName"].every((key) => typeof (parent as unknown as Record<string, unknown>)[key] === "string"))) {
    throw new Error("volume.json: bad parent");
  }
  const overrides = config.overrides;
  if (overrides !== undefined && (typeof overrides !== "object" || overrides === null
    || !Object.entries(overrides).every(([key, value]) => (VOLUME_OVERRIDE_KEYS as readonly string[]).includes(key) && typeof value === "number"))) {
    throw new Error("volume.json: bad overrides");
  }
  for (const field of ["sizeBytes", "clusterSizeBytes", "scoSizeBytes"] as const) {
    if (!Number.isSafeInteger(config[field]) || config[field] <= 0) throw new Error(`volume.json: bad ${field}`);
  }
  return config;
}

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
}

function canonical(config: VolumeConfig): string {
  const { format, version, name, uuid, vpool, namespace, sizeBytes, clusterSizeBytes, scoSizeBytes, createdAt, parent } = config;
  const fields = { format, version, name, uuid, vpool, namespace, sizeBytes, clusterSizeBytes, scoSizeBytes, createdAt };
  if (parent === undefined) return JSON.stringify(fields);
  const { namespace: parentNamespace, volumeUuid, volumeName, snapshotUuid, snapshotName } = parent;
  return JSON.stringify({ ...fields, parent: { namespace: parentNamespace, volumeUuid, volumeName, snapshotUuid, snapshotName } });
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
  for (const field of ["sizeBytes", "clusterSizeBytes", "scoSizeBytes"] as const) {
    if (!Number.isSafeInteger(config[field]) || config[field] <= 0) throw new Error(`volume.json: bad ${field}`);
  }
  return config;
}

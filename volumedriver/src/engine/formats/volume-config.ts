// volume.json: the configuration of one vDisk, stored in its backend namespace (so a new host can find
// and restore it) and in its local directory. A checksummed JSON document: the "checksum" field is the
// CRC-32C (hex) of the canonical JSON of all other fields in the order written here.
import { crc32c } from "../../../../alba/src/codec/crc32c.ts";

export const VOLUME_CONFIG_KEY = "volume.json";
export const VOLUME_CONFIG_FORMAT = "ovs-volume";
export const VOLUME_CONFIG_VERSION = 1;

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
}

function canonical(config: VolumeConfig): string {
  const { format, version, name, uuid, vpool, namespace, sizeBytes, clusterSizeBytes, scoSizeBytes, createdAt } = config;
  return JSON.stringify({ format, version, name, uuid, vpool, namespace, sizeBytes, clusterSizeBytes, scoSizeBytes, createdAt });
}

export function encodeVolumeConfig(config: VolumeConfig): Buffer {
  const body = canonical(config);
  const checksum = crc32c(Buffer.from(body)).toString(16).padStart(8, "0");
  return Buffer.from(`${body.slice(0, -1)},"checksum":"${checksum}"}\n`);
}

/** Parses and verifies volume.json; throws an Error saying what is wrong. */
export function decodeVolumeConfig(data: Buffer): VolumeConfig {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(data.toString("utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`volume.json is not valid JSON: ${(error as Error).message}`);
  }
  if (parsed.format !== VOLUME_CONFIG_FORMAT) throw new Error("volume.json: not an ovs-volume document");
  if (parsed.version !== VOLUME_CONFIG_VERSION) throw new Error(`volume.json: unsupported version ${String(parsed.version)}`);
  const config = parsed as unknown as VolumeConfig;
  const expected = crc32c(Buffer.from(canonical(config))).toString(16).padStart(8, "0");
  if (parsed.checksum !== expected) throw new Error("volume.json: checksum mismatch");
  for (const field of ["sizeBytes", "clusterSizeBytes", "scoSizeBytes"] as const) {
    if (!Number.isSafeInteger(config[field]) || config[field] <= 0) throw new Error(`volume.json: bad ${field}`);
  }
  return config;
}

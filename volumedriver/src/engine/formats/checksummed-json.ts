// The envelope of our JSON documents (volume.json, snapshots.json): the canonical JSON of the fields
// in a fixed order, then a "checksum" field: the CRC-32C, as 8 lowercase hex digits, of that
// canonical JSON's UTF-8 bytes. Layout: volumedriver/docs/formats.md.
import { crc32c } from "../../../../alba/src/codec/crc32c.ts";

function checksumOf(canonicalJson: string): string {
  return crc32c(Buffer.from(canonicalJson)).toString(16).padStart(8, "0");
}

/** The document: `canonicalJson` (an object) with the checksum field appended, and a newline. */
export function encodeChecksummedJson(canonicalJson: string): Buffer {
  return Buffer.from(`${canonicalJson.slice(0, -1)},"checksum":"${checksumOf(canonicalJson)}"}\n`);
}

/** Parses a document and checks its format and version fields; throws an Error naming `documentName`. */
export function parseChecksummedJson(data: Buffer, documentName: string, format: string, version: number): Record<string, unknown> {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(data.toString("utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`${documentName} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null) throw new Error(`${documentName}: not a JSON object`);
  if (parsed.format !== format) throw new Error(`${documentName}: not an ${format} document`);
  if (parsed.version !== version) throw new Error(`${documentName}: unsupported version ${String(parsed.version)}`);
  return parsed;
}

/** Throws unless the parsed document's checksum matches the canonical JSON of its fields. */
export function verifyChecksum(parsed: Record<string, unknown>, canonicalJson: string, documentName: string): void {
  if (parsed.checksum !== checksumOf(canonicalJson)) throw new Error(`${documentName}: checksum mismatch`);
}

// How the local store names files inside a namespace directory (volumedriver/docs/backends.md
// "Local store layout"). Every name says what it is from its first character:
// - a key: its UTF-8 bytes, each byte outside [A-Za-z0-9._-] written %XX (upper-case hex), and a
//   leading '.' written %2E (so no key becomes "." or ".." or a hidden file);
// - '#' + SHA-256 hex of the key's UTF-8 bytes, when the encoded key would be longer than
//   FILE_NAME_ENCODED_LENGTH_MAX (file names are limited to 255 bytes); the key is in the header;
// - "~tmp-<pid>-<instance>-<counter>": a put in progress (or left behind by a crash);
// - "<meta file name>~<pid>-<instance>-<counter>": the data file of an object stored by putFile,
//   named by the meta file at "<meta file name>" (the key's name or hashed name above).
// A key's spelling never holds '#' or '~' (both are percent-encoded), so the four kinds cannot
// collide; a file whose name is not the canonical spelling of a key is foreign and ignored.
import { createHash } from "node:crypto";
import { StoreError, validateKey } from "./object-store.ts";

/** Longest percent-encoded key used as a file name as is; longer keys get a hashed name. */
export const FILE_NAME_ENCODED_LENGTH_MAX = 200;
export const TEMP_FILE_PREFIX = "~tmp-";
/** Separates a data file's meta file name from its writer and counter. */
const DATA_FILE_SEPARATOR = "~";
const HASHED_FILE_PREFIX = "#";
const PLAIN_KEY_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
const HASHED_FILE_NAME_PATTERN = /^#[0-9a-f]{64}$/;
const DATA_FILE_NAME_PATTERN = /^([^~]+)~(\d{1,10})-([0-9a-f]{1,32})-(\d{1,16})$/;
const LONE_SURROGATE_PATTERN = /\p{Surrogate}/u;
const UTF8_DECODER = new TextDecoder("utf-8", { fatal: true });

/** The process and store instance that wrote a file (a put's temp file or a putFile's data file). */
export interface FileWriter {
  pid: number;
  instanceId: string;
}

export type FileNameKind =
  | { kind: "key"; key: string }
  | { kind: "hashed" }
  | { kind: "temp" }
  | { kind: "data"; metaFileName: string; writer: FileWriter }
  | { kind: "foreign" };

/** The file name of a (validated) key. Keys that are not well-formed UTF-16 have no UTF-8 bytes: Invalid. */
export function fileNameOfKey(key: string): string {
  if (key.length <= FILE_NAME_ENCODED_LENGTH_MAX && PLAIN_KEY_PATTERN.test(key)) return key;
  if (LONE_SURROGATE_PATTERN.test(key)) {
    throw new StoreError("Invalid", `invalid object key ${JSON.stringify(key)}: it has an unpaired surrogate, so no UTF-8 spelling`);
  }
  const keyBytes = Buffer.from(key, "utf8");
  const encoded = percentEncode(keyBytes);
  if (encoded.length <= FILE_NAME_ENCODED_LENGTH_MAX) return encoded;
  return HASHED_FILE_PREFIX + createHash("sha256").update(keyBytes).digest("hex");
}

/**
 * The name of a new data file for the object whose meta file is `metaFileName`: at most
 * 200 + 1 + 10 + 1 + 12 + 1 + 16 = 241 bytes, below the 255 a file name may have.
 */
export function dataFileNameOf(metaFileName: string, writer: FileWriter, counter: number): string {
  const name = `${metaFileName}${DATA_FILE_SEPARATOR}${writer.pid}-${writer.instanceId}-${counter}`;
  const kind = classifyFileName(name);
  if (kind.kind !== "data" || kind.metaFileName !== metaFileName) throw new Error(`assertion: ${name} is no data file name of ${metaFileName}`);
  return name;
}

/** What a file name in a namespace directory is; for a plainly encoded key, the key. */
export function classifyFileName(name: string): FileNameKind {
  if (name.startsWith(TEMP_FILE_PREFIX)) return { kind: "temp" };
  const data = DATA_FILE_NAME_PATTERN.exec(name);
  if (data !== null) {
    const meta = classifyFileName(data[1]);
    if (meta.kind !== "key" && meta.kind !== "hashed") return { kind: "foreign" };
    return { kind: "data", metaFileName: data[1], writer: { pid: Number(data[2]), instanceId: data[3] } };
  }
  if (HASHED_FILE_NAME_PATTERN.test(name)) return { kind: "hashed" };
  if (name.length <= FILE_NAME_ENCODED_LENGTH_MAX && PLAIN_KEY_PATTERN.test(name)) return { kind: "key", key: name };
  const key = percentDecode(name);
  if (key === undefined) return { kind: "foreign" };
  try {
    validateKey(key);
    if (fileNameOfKey(key) !== name) return { kind: "foreign" };
  } catch {
    return { kind: "foreign" };
  }
  return { kind: "key", key };
}

function percentEncode(bytes: Buffer): string {
  let encoded = "";
  for (let index = 0; index < bytes.length; index++) {
    const byte = bytes[index];
    const safe = isUnreservedByte(byte) && !(index === 0 && byte === 0x2e);
    encoded += safe ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}

/** The key a percent-encoded name spells, or undefined when it spells no UTF-8 string. */
function percentDecode(name: string): string | undefined {
  const bytes: number[] = [];
  for (let index = 0; index < name.length; index++) {
    const code = name.charCodeAt(index);
    if (code !== 0x25) {
      if (code > 0x7f) return undefined;
      bytes.push(code);
      continue;
    }
    const hexDigits = name.slice(index + 1, index + 3);
    if (!/^[0-9A-F]{2}$/.test(hexDigits)) return undefined;
    bytes.push(Number.parseInt(hexDigits, 16));
    index += 2;
  }
  try {
    return UTF8_DECODER.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

/** [A-Za-z0-9._-]: the bytes a file name holds as themselves. */
function isUnreservedByte(byte: number): boolean {
  return (
    (byte >= 0x30 && byte <= 0x39) ||
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x61 && byte <= 0x7a) ||
    byte === 0x2e ||
    byte === 0x5f ||
    byte === 0x2d
  );
}

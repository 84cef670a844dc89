// The vPool's compression and encryption settings in a StorageDriver config ("compression" and
// "encryption"), and the loading of the encryption key. A config never holds the key itself, only
// where it is: a file (keyFile) or an environment variable (keyEnv), each holding 64 hex digits
// (32 bytes, AES-256), so configs can be logged and copied safely. The settings apply to every
// object the vPool writes; objects are read with the settings in their own header, except the key,
// which must be the one they were written with.
import { readFileSync } from "node:fs";
import path from "node:path";
import { COMPRESSIONS, ENCRYPTION_KEY_SIZE_BYTES } from "../backend/chunk-codec.ts";
import type { Compression } from "../backend/chunk-codec.ts";
import { checkOnlyKeys } from "./backend-spec.ts";

export type EncryptionKeySource = { keyFile: string } | { keyEnv: string };

export interface CodecConfig {
  compression: Compression;
  /** Absent: objects are not encrypted. */
  encryption?: EncryptionKeySource;
}

const KEY_HINT = "64 hex digits (32 bytes), e.g. made with: openssl rand -hex 32 > vpool.key && chmod 600 vpool.key";
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function parseCompression(value: unknown, where: string): Compression {
  if (value === undefined) return "none";
  if (typeof value !== "string" || !(COMPRESSIONS as readonly string[]).includes(value)) {
    throw new Error(`${where} must be one of ${COMPRESSIONS.join(", ")} (per chunk of every object)`);
  }
  return value as Compression;
}

/** `{"keyFile": PATH}` (relative to baseDirectory) or `{"keyEnv": NAME}`; undefined for absent. */
export function parseEncryption(value: unknown, baseDirectory: string, where: string): EncryptionKeySource | undefined {
  if (value === undefined) return undefined;
  const example = `{"keyFile": "vpool.key"} or {"keyEnv": "OVS_VPOOL_KEY"}`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where} must be an object like ${example}: the key itself never goes into a config`);
  }
  const raw = value as Record<string, unknown>;
  checkOnlyKeys(raw, ["keyFile", "keyEnv"], where);
  if ((raw.keyFile === undefined) === (raw.keyEnv === undefined)) {
    throw new Error(`${where} must name exactly one of keyFile and keyEnv, like ${example}`);
  }
  if (raw.keyFile !== undefined) {
    if (typeof raw.keyFile !== "string" || raw.keyFile.length === 0) throw new Error(`${where}.keyFile must be the path of a file holding ${KEY_HINT}`);
    return { keyFile: path.resolve(baseDirectory, raw.keyFile) };
  }
  if (typeof raw.keyEnv !== "string" || !ENV_NAME_PATTERN.test(raw.keyEnv)) {
    throw new Error(`${where}.keyEnv must be the name of an environment variable holding ${KEY_HINT}`);
  }
  return { keyEnv: raw.keyEnv };
}

/** Reads the key a source names; a missing or malformed key is an Error that says what to do. */
export function loadEncryptionKey(source: EncryptionKeySource, environment: NodeJS.ProcessEnv = process.env): Buffer {
  let text: string;
  let origin: string;
  if ("keyFile" in source) {
    origin = `the encryption key file ${source.keyFile}`;
    try {
      text = readFileSync(source.keyFile, "utf8");
    } catch (error) {
      throw new Error(`cannot read ${origin}: ${(error as Error).message} (it must hold ${KEY_HINT})`, { cause: error });
    }
  } else {
    origin = `the environment variable ${source.keyEnv}`;
    const value = environment[source.keyEnv];
    if (value === undefined || value.length === 0) throw new Error(`${origin} (the vPool's encryption key) is not set: set it to ${KEY_HINT}`);
    text = value;
  }
  const hex = text.trim();
  if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== 2 * ENCRYPTION_KEY_SIZE_BYTES) {
    throw new Error(`${origin} does not hold an AES-256 key: it must hold ${KEY_HINT}`);
  }
  return Buffer.from(hex, "hex");
}

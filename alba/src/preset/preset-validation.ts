// Checks a preset, or the changes to one, from the edge (CLI, admin API, metadata store) and
// returns a clean copy; the default preset. Limits come from the erasure coder
// (@ronomon/reed-solomon: k <= 24, m <= 6) and the fragment codec (fragments of at most 16 MiB).
// Every problem found is listed in one MetadataError("Invalid"), so a user fixes them all in one go.
// An update is checked by applying it to the current preset and checking the result like a new
// one, so a policy an update may set is exactly one an add accepts.
import { MetadataError } from "../metadata/metadata-store.ts";
import { ERASURE_DATA_FRAGMENTS_MAX, ERASURE_PARITY_FRAGMENTS_MAX } from "../encoding/erasure-coder.ts";
import { FRAGMENT_PLAIN_SIZE_BYTES_MAX } from "../encoding/fragment-codec.ts";
import { PRESET_COMPRESSIONS, PRESET_ENCRYPTIONS, PRESET_NAME_PATTERN } from "./preset.ts";
import type { Policy, Preset, PresetChanges, PresetCompression, PresetEncryption } from "./preset.ts";

/** Fragment sizes are whole 4 KiB pages, so the volumedriver's 4 KiB-aligned ranged reads map onto fragments cleanly. */
export const PRESET_FRAGMENT_SIZE_ALIGNMENT_BYTES = 4096;
export const PRESET_FRAGMENT_SIZE_BYTES_MIN = 4096;
export const PRESET_FRAGMENT_SIZE_BYTES_MAX = FRAGMENT_PLAIN_SIZE_BYTES_MAX;
/** A preset is tried policy by policy on every write; a short list keeps that cheap and readable. */
export const PRESET_POLICIES_MAX = 16;
export const POLICY_DATA_FRAGMENTS_MAX = ERASURE_DATA_FRAGMENTS_MAX;
export const POLICY_PARITY_FRAGMENTS_MAX = ERASURE_PARITY_FRAGMENTS_MAX;

const PRESET_FIELDS = new Set(["name", "policies", "fragmentSizeBytes", "compression", "encryption", "encryptionKeyHex", "checksum"]);
/** What an update may set; the other preset fields are fixed once the preset exists. */
const PRESET_CHANGE_FIELDS = new Set(["policies", "default"]);
const POLICY_FIELDS = ["k", "m", "c", "x"] as const;
const ENCRYPTION_KEY_HEX_PATTERN = /^[0-9a-f]{64}$/i;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function validatePolicy(input: unknown, where: string, problems: string[]): Policy | undefined {
  if (!isRecord(input)) {
    problems.push(`${where} must be an object {k, m, c, x}`);
    return undefined;
  }
  for (const field of Object.keys(input)) {
    if (!(POLICY_FIELDS as readonly string[]).includes(field)) problems.push(`${where} has an unknown field "${field}"`);
  }
  const before = problems.length;
  const integer = (field: (typeof POLICY_FIELDS)[number], min: number, max: number, meaning: string): number => {
    const value = input[field];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      problems.push(`${where}.${field} (${meaning}) must be an integer in ${min}..${max}, got ${JSON.stringify(value)}`);
      return Number.NaN;
    }
    return value;
  };
  const k = integer("k", 1, POLICY_DATA_FRAGMENTS_MAX, "data fragments");
  const m = integer("m", 0, POLICY_PARITY_FRAGMENTS_MAX, "parity fragments");
  const c = integer("c", 1, POLICY_DATA_FRAGMENTS_MAX + POLICY_PARITY_FRAGMENTS_MAX, "fragments that make a write durable");
  const x = integer("x", 1, POLICY_DATA_FRAGMENTS_MAX + POLICY_PARITY_FRAGMENTS_MAX, "most fragments per node");
  if (problems.length > before) return undefined;
  if (c < k || c > k + m) {
    problems.push(`${where}: c must be between k and k + m (${k}..${k + m}), got ${c}: fewer than k fragments cannot be decoded`);
    return undefined;
  }
  return { k, m, c, x };
}

/** The preset in `input`, checked and copied (unknown fields rejected); throws MetadataError("Invalid") listing every problem. */
export function validatePreset(input: unknown): Preset {
  if (!isRecord(input)) throw new MetadataError("Invalid", "invalid preset: expected an object");
  const problems: string[] = [];
  const preset = checkPreset(input, problems);
  if (preset === undefined) {
    const label = typeof input.name === "string" ? ` "${input.name}"` : "";
    throw new MetadataError("Invalid", `invalid preset${label}: ${problems.join("; ")}`);
  }
  return preset;
}

/**
 * The preset `current` becomes with `input` (PresetChanges from the edge) applied, and whether it is
 * to become the default; throws MetadataError("Invalid") listing every problem. The new policies
 * are checked by checkPreset, as on add. The fixed fields (name, fragment size, codecs, key,
 * checksum) may be given only with their current value, so a client may send a whole preset back;
 * a different value is refused, since the objects stored already are read with the current ones.
 */
export function validatePresetChanges(current: Preset, input: unknown): { preset: Preset; makeDefault: boolean } {
  const label = `invalid change of preset "${current.name}"`;
  if (!isRecord(input)) throw new MetadataError("Invalid", `${label}: expected an object {"policies"?: [...], "default"?: true}`);
  const problems: string[] = [];
  const changedFixedFields: string[] = [];
  for (const [field, value] of Object.entries(input)) {
    if (PRESET_CHANGE_FIELDS.has(field)) continue;
    if (!PRESET_FIELDS.has(field)) problems.push(`unknown field "${field}"`);
    else if (!sameFieldValue(field, value, current[field as keyof Preset])) changedFixedFields.push(field);
  }
  if (changedFixedFields.length > 0) {
    problems.push(`${changedFixedFields.join(", ")} cannot change once a preset exists (its objects are read with them): add a new preset instead, and create new namespaces with it`);
  }
  const changes = input as PresetChanges;
  if (changes.default !== undefined && changes.default !== true) {
    problems.push(`default can only be true (make this the default preset), got ${JSON.stringify(changes.default)}: to stop a preset being the default, make another preset the default`);
  }
  if (changes.policies === undefined && changes.default === undefined) problems.push("nothing to change: give policies, default: true, or both");
  const preset = checkPreset({ ...current, ...(changes.policies === undefined ? {} : { policies: changes.policies }) }, problems);
  if (preset === undefined || problems.length > 0) throw new MetadataError("Invalid", `${label}: ${problems.join("; ")}`);
  return { preset, makeDefault: changes.default === true };
}

/** Whether a fixed field of an update holds the current value (keys compare as hex, in any case). */
function sameFieldValue(field: string, given: unknown, current: unknown): boolean {
  if (field === "encryptionKeyHex" && typeof given === "string" && typeof current === "string") return given.toLowerCase() === current.toLowerCase();
  return JSON.stringify(given) === JSON.stringify(current);
}

/** The checks of validatePreset: adds every problem of `input` to `problems`; the clean copy when it adds none. */
function checkPreset(input: Record<string, unknown>, problems: string[]): Preset | undefined {
  const before = problems.length;
  for (const field of Object.keys(input)) {
    if (!PRESET_FIELDS.has(field)) problems.push(`unknown field "${field}"`);
  }

  const name = input.name;
  if (typeof name !== "string" || !PRESET_NAME_PATTERN.test(name)) {
    problems.push(`name must be 1-63 of [a-z0-9._-] starting with a letter or digit, got ${JSON.stringify(name)}`);
  }

  const policies: Policy[] = [];
  if (!Array.isArray(input.policies) || input.policies.length === 0 || input.policies.length > PRESET_POLICIES_MAX) {
    problems.push(`policies must be a list of 1..${PRESET_POLICIES_MAX} policies {k, m, c, x}`);
  } else {
    for (const [index, policyInput] of input.policies.entries()) {
      const policy = validatePolicy(policyInput, `policies[${index}]`, problems);
      if (policy !== undefined) policies.push(policy);
    }
  }

  const fragmentSizeBytes = input.fragmentSizeBytes;
  if (
    typeof fragmentSizeBytes !== "number" || !Number.isInteger(fragmentSizeBytes) ||
    fragmentSizeBytes < PRESET_FRAGMENT_SIZE_BYTES_MIN || fragmentSizeBytes > PRESET_FRAGMENT_SIZE_BYTES_MAX ||
    fragmentSizeBytes % PRESET_FRAGMENT_SIZE_ALIGNMENT_BYTES !== 0
  ) {
    problems.push(`fragmentSizeBytes must be a multiple of ${PRESET_FRAGMENT_SIZE_ALIGNMENT_BYTES} in ${PRESET_FRAGMENT_SIZE_BYTES_MIN}..${PRESET_FRAGMENT_SIZE_BYTES_MAX} (4 KiB..16 MiB), got ${JSON.stringify(fragmentSizeBytes)}`);
  }

  const compression = input.compression ?? "none";
  if (!(PRESET_COMPRESSIONS as readonly unknown[]).includes(compression)) {
    problems.push(`compression must be one of ${PRESET_COMPRESSIONS.join(", ")}, got ${JSON.stringify(compression)}`);
  }
  const encryption = input.encryption ?? "none";
  if (!(PRESET_ENCRYPTIONS as readonly unknown[]).includes(encryption)) {
    problems.push(`encryption must be one of ${PRESET_ENCRYPTIONS.join(", ")}, got ${JSON.stringify(encryption)}`);
  }
  const encryptionKeyHex = input.encryptionKeyHex;
  if (encryption === "aes-256-ctr") {
    if (typeof encryptionKeyHex !== "string" || !ENCRYPTION_KEY_HEX_PATTERN.test(encryptionKeyHex)) {
      problems.push("encryptionKeyHex must be 64 hex digits (a 256-bit key) when encryption is aes-256-ctr");
    }
  } else if (encryptionKeyHex !== undefined) {
    problems.push("encryptionKeyHex is only allowed when encryption is aes-256-ctr");
  }
  const checksum = input.checksum ?? "crc32c";
  if (checksum !== "crc32c") problems.push(`checksum must be crc32c, got ${JSON.stringify(checksum)}`);

  if (problems.length > before) return undefined;
  const preset: Preset = {
    name: name as string,
    policies,
    fragmentSizeBytes: fragmentSizeBytes as number,
    compression: compression as PresetCompression,
    encryption: encryption as PresetEncryption,
    checksum: "crc32c",
  };
  if (encryption === "aes-256-ctr") preset.encryptionKeyHex = (encryptionKeyHex as string).toLowerCase();
  return preset;
}

/**
 * The preset a backend starts with. Policies, in order:
 * - (4, 2, 5, 2): 1.5x overhead, survives any 2 lost fragments; a write needs 5 ASDs on at least 3
 *   node ids (at most 2 fragments per node, so losing a whole node costs at most 2 fragments).
 * - (2, 2, 3, 4): the fallback for small or degraded backends, 2x overhead, still survives 2 lost
 *   fragments; 3 ASDs on one node suffice (x = 4 places all fragments on one node if need be).
 * Fragments of 1 MiB (4 MiB chunks under the first policy) keep per-fragment overhead small and
 * degraded reads bounded. No compression: the volumedriver compresses its own objects when its
 * vPool is configured to, and compressing incompressible data only costs CPU. No encryption: that
 * needs a key, so it is a preset the operator adds.
 */
export function defaultPreset(name = "default"): Preset {
  return validatePreset({
    name,
    policies: [{ k: 4, m: 2, c: 5, x: 2 }, { k: 2, m: 2, c: 3, x: 4 }],
    fragmentSizeBytes: 1024 * 1024,
    compression: "none",
    encryption: "none",
    checksum: "crc32c",
  });
}

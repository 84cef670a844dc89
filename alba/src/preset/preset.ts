// Presets: how Alba stores the objects of a namespace. A preset is an ordered list of policies plus
// the fragment size and codecs. Each policy (k, m, c, x) means: split each chunk into k data
// fragments, add m parity fragments (Reed-Solomon, systematic), call the write durable once at
// least c fragments are stored, and put at most x fragments of one chunk on ASDs of one node id
// (fault domain). The first policy whose c can be met with live, non-full ASDs is used, and the
// object's manifest records which. Only the policies of a preset can change once it exists (reads
// and repairs follow the policy a manifest records); its fragment size and codecs never do.

export interface Policy {
  /** Data fragments per chunk, 1-24 (the limit of @ronomon/reed-solomon). */
  k: number;
  /** Parity fragments per chunk, 0-6 (the limit of @ronomon/reed-solomon; 0: no coding at all). */
  m: number;
  /** Fragments that must be durable for a write to succeed, k <= c <= k + m. */
  c: number;
  /** At most this many fragments of one chunk per node id, >= 1. */
  x: number;
}

export const PRESET_COMPRESSIONS = ["none", "lz4", "snappy"] as const;
export type PresetCompression = (typeof PRESET_COMPRESSIONS)[number];
export const PRESET_ENCRYPTIONS = ["none", "aes-256-ctr"] as const;
export type PresetEncryption = (typeof PRESET_ENCRYPTIONS)[number];

export interface Preset {
  /** 1-63 of [a-z0-9._-], starting alphanumeric. */
  name: string;
  /** Tried in order; at least one. */
  policies: Policy[];
  /** Size of one data fragment before compression: a chunk holds k times this. Multiple of 4096, 4 KiB-16 MiB. */
  fragmentSizeBytes: number;
  compression: PresetCompression;
  encryption: PresetEncryption;
  /** The AES-256 key as 64 hex digits when encryption is aes-256-ctr (kept in the metadata store, as Alba does). */
  encryptionKeyHex?: string;
  /** Every fragment carries a CRC-32C of its stored bytes (in the manifest). Fixed, recorded for clarity. */
  checksum: "crc32c";
}

export const PRESET_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * What an update of a preset may change. New policies apply to objects written from then on;
 * objects written already keep the policy their manifest records. `default: true` makes it the
 * preset new namespaces get when none is named (false is refused: make another preset the default).
 */
export interface PresetChanges {
  policies?: Policy[];
  default?: boolean;
}

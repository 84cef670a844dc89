// vDisk sizes as people type them ("10G", "512M", "4096") and as the engine needs them (a whole number
// of 4 KiB clusters, at most 64 TiB). Shared by the StorageDriver API, the framework API and the CLI, so
// a size means the same thing everywhere. Units are binary (K = 1024); "GB"-style units are refused
// rather than guessed, because 10 GB and 10 GiB differ by 7 %.

export const KIB = 1024;
export const MIB = 1024 * KIB;
export const GIB = 1024 * MIB;
export const TIB = 1024 * GIB;

/** The cluster size of the engine: every vDisk size is a multiple of it. */
export const VDISK_SIZE_ALIGNMENT_BYTES = 4096;
/** The largest vDisk the engine accepts. */
export const VDISK_SIZE_BYTES_MAX = 64 * TIB;

/** A size the caller typed wrongly; the message says how to write it instead. */
export class SizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SizeError";
  }
}

const UNIT_BYTES: ReadonlyMap<string, number> = new Map([
  ["", 1], ["b", 1],
  ["k", KIB], ["ki", KIB], ["kib", KIB],
  ["m", MIB], ["mi", MIB], ["mib", MIB],
  ["g", GIB], ["gi", GIB], ["gib", GIB],
  ["t", TIB], ["ti", TIB], ["tib", TIB],
]);

const SIZE_TEXT_PATTERN = /^\s*(\d+)(?:\.(\d+))?\s*([a-zA-Z]*)\s*$/;

/** Text a size may be given as (for JSON schemas): digits, an optional binary unit. */
export const SIZE_TEXT_SCHEMA_PATTERN = "^\\s*\\d+(\\.\\d+)?\\s*[a-zA-Z]{0,3}\\s*$";

/** Parses "10G", "512MiB", "4096" or a number of bytes. Throws SizeError; does not check vDisk limits. */
export function parseSizeBytes(input: string | number): number {
  if (typeof input === "number") {
    if (!Number.isSafeInteger(input) || input < 0) {
      throw new SizeError(`size ${input} is not a whole number of bytes: give e.g. 10737418240 or "10G"`);
    }
    return input;
  }
  const match = SIZE_TEXT_PATTERN.exec(input);
  if (match === null) {
    throw new SizeError(`size ${JSON.stringify(input)} is not a size: write a whole number with an optional unit K, M, G or T (binary), e.g. "10G" or "512M"`);
  }
  const [, digits, fraction, unitText] = match;
  const unit = unitText.toLowerCase();
  const unitBytes = UNIT_BYTES.get(unit);
  if (unitBytes === undefined) {
    const binary = /^[kmgt]b$/.test(unit) ? `${unit[0].toUpperCase()} or ${unit[0].toUpperCase()}iB` : "K, M, G or T";
    throw new SizeError(`size ${JSON.stringify(input)} has unit ${JSON.stringify(unitText)}: use ${binary} (binary units, 1K = 1024 bytes)`);
  }
  if (fraction !== undefined) {
    throw new SizeError(`size ${JSON.stringify(input)} has a fraction: write a whole number of a smaller unit, e.g. "1536M" instead of "1.5G"`);
  }
  const sizeBytes = Number(digits) * unitBytes;
  if (!Number.isSafeInteger(sizeBytes)) {
    throw new SizeError(`size ${JSON.stringify(input)} is too large: a vDisk holds at most ${formatSizeBytes(VDISK_SIZE_BYTES_MAX)}`);
  }
  return sizeBytes;
}

/** Returns why sizeBytes cannot be the size of a vDisk, or undefined if it can. */
export function vdiskSizeProblem(sizeBytes: number): string | undefined {
  if (sizeBytes <= 0) {
    return `a vDisk size must be greater than 0: give e.g. "10G"`;
  }
  if (sizeBytes > VDISK_SIZE_BYTES_MAX) {
    return `size ${formatSizeBytes(sizeBytes)} exceeds the largest vDisk, ${formatSizeBytes(VDISK_SIZE_BYTES_MAX)}: give a smaller size`;
  }
  if (sizeBytes % VDISK_SIZE_ALIGNMENT_BYTES !== 0) {
    const roundedUpBytes = Math.ceil(sizeBytes / VDISK_SIZE_ALIGNMENT_BYTES) * VDISK_SIZE_ALIGNMENT_BYTES;
    return `size ${sizeBytes} bytes is not a multiple of ${VDISK_SIZE_ALIGNMENT_BYTES} (the cluster size): use ${roundedUpBytes}`;
  }
  return undefined;
}

/** Parses a vDisk size and checks it against the engine's limits. Throws SizeError. */
export function parseVdiskSizeBytes(input: string | number): number {
  const sizeBytes = parseSizeBytes(input);
  const problem = vdiskSizeProblem(sizeBytes);
  if (problem !== undefined) {
    throw new SizeError(problem);
  }
  return sizeBytes;
}

/** "10 GiB", "512 MiB", "1.5 GiB", "1000 B": the largest binary unit that leaves at least 1, two decimals at most. */
export function formatSizeBytes(sizeBytes: number): string {
  const units: Array<[string, number]> = [["TiB", TIB], ["GiB", GIB], ["MiB", MIB], ["KiB", KIB]];
  for (const [name, unitBytes] of units) {
    if (Math.abs(sizeBytes) >= unitBytes) {
      const value = sizeBytes / unitBytes;
      const text = Number.isInteger(value) ? String(value) : String(Math.round(value * 100) / 100);
      return `${text} ${name}`;
    }
  }
  return `${sizeBytes} B`;
}

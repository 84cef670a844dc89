// Self-identifying 512-byte sectors for crash tests: every sector written by write number `seq`
// carries (magic, generation, seq, sector index) and a body derived from them, so reading the
// device tells exactly which write last landed on each sector, and a torn or stale sector is seen.
export const SECTOR_BYTES = 512;
const MAGIC = 0x5453_564f; // "OVST" little-endian

/** Fills `target` (a whole number of sectors) with the pattern of write `seq` starting at `firstSector`. */
export function fillSectors(target: Buffer, generation: number, seq: number, firstSector: number): void {
  if (target.byteLength % SECTOR_BYTES !== 0) throw new Error("fillSectors: not a whole number of sectors");
  for (let offset = 0, sector = firstSector; offset < target.byteLength; offset += SECTOR_BYTES, sector++) {
    writeSector(target, offset, generation, seq, sector);
  }
}

function writeSector(target: Buffer, offset: number, generation: number, seq: number, sector: number): void {
  target.writeUInt32LE(MAGIC, offset);
  target.writeUInt32LE(generation >>> 0, offset + 4);
  target.writeUInt32LE(seq >>> 0, offset + 8);
  target.writeUInt32LE(sector >>> 0, offset + 12);
  let state = (Math.imul(seq, 0x9e37_79b1) ^ Math.imul(sector, 0x85eb_ca6b) ^ generation) | 0;
  for (let word = 16; word < SECTOR_BYTES; word += 4) {
    state = (state + 0x6d2b_79f5) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    target.writeUInt32LE((z ^ (z >>> 14)) >>> 0, offset + word);
  }
}

export type SectorTag =
  | { kind: "zero" }
  | { kind: "written"; generation: number; seq: number }
  | { kind: "garbage"; reason: string };

const scratch = Buffer.alloc(SECTOR_BYTES);

/** Decodes and fully verifies the sector at `offset` of `device`, which should be sector number `sector`. */
export function decodeSector(device: Buffer, offset: number, sector: number): SectorTag {
  const view = device.subarray(offset, offset + SECTOR_BYTES);
  if (view.readUInt32LE(0) !== MAGIC) {
    for (let index = 0; index < SECTOR_BYTES; index++) {
      if (view[index] !== 0) return { kind: "garbage", reason: "neither zeros nor a tagged sector" };
    }
    return { kind: "zero" };
  }
  const generation = view.readUInt32LE(4);
  const seq = view.readUInt32LE(8);
  const taggedSector = view.readUInt32LE(12);
  if (taggedSector !== sector) return { kind: "garbage", reason: `sector tagged for sector ${taggedSector} (stale location?)` };
  writeSector(scratch, 0, generation, seq, sector);
  if (!scratch.equals(view)) return { kind: "garbage", reason: `torn sector of seq ${seq}` };
  return { kind: "written", generation, seq };
}

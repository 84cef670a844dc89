// CRC-32C (Castagnoli), the checksum of every on-disk and on-wire format in this project.
// Backed by @node-rs/crc32 (SIMD). Shared by alba and volumedriver, so it lives in alba/src/codec.
import { crc32c as nativeCrc32c } from "@node-rs/crc32";

/** CRC-32C of `data`, continuing from `initial` (0 for a fresh checksum). Returns an unsigned 32-bit value. */
export function crc32c(data: Uint8Array, initial = 0): number {
  return nativeCrc32c(data as Buffer, initial) >>> 0;
}

// Hashing of whole devices and buffers, to compare a device with its expected content bit for bit.
import { createHash } from "node:crypto";
import type { BlockDevice } from "../../volumedriver/src/engine/block-device.ts";
import { MIB } from "../../volumedriver/src/engine/vpool-types.ts";

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** SHA-256 of the whole device, read in chunks of chunkBytes (default 4 MiB). */
export async function hashDevice(device: BlockDevice, chunkBytes = 4 * MIB): Promise<string> {
  const hash = createHash("sha256");
  for (let offset = 0; offset < device.sizeBytes; offset += chunkBytes) {
    const lengthBytes = Math.min(chunkBytes, device.sizeBytes - offset);
    hash.update(await device.read(offset, lengthBytes));
  }
  return hash.digest("hex");
}

/** The whole device in one Buffer (only for small devices). */
export async function readWholeDevice(device: BlockDevice, chunkBytes = 4 * MIB): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let offset = 0; offset < device.sizeBytes; offset += chunkBytes) {
    parts.push(await device.read(offset, Math.min(chunkBytes, device.sizeBytes - offset)));
  }
  return Buffer.concat(parts, device.sizeBytes);
}

/** Byte offset of the first difference between two equal-length buffers, or -1. */
export function firstDifference(actual: Uint8Array, expected: Uint8Array): number {
  const lengthBytes = Math.min(actual.byteLength, expected.byteLength);
  // Compare in 64 KiB steps with Buffer.compare, then narrow down byte by byte.
  const step = 65536;
  for (let start = 0; start < lengthBytes; start += step) {
    const end = Math.min(start + step, lengthBytes);
    if (Buffer.compare(actual.subarray(start, end), expected.subarray(start, end)) !== 0) {
      for (let index = start; index < end; index++) if (actual[index] !== expected[index]) return index;
    }
  }
  return actual.byteLength === expected.byteLength ? -1 : lengthBytes;
}

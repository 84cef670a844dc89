// Byte ranges of ranged gets, resolved the same way by every store that slices by itself.
// Semantics (like an HTTP Range, RFC 9110 §14.1.2, except at the very end): a range that ends past
// the end of the object is clamped; one that starts past the end is Invalid; one that starts
// exactly at the end, or has length 0, is an empty read.
import { StoreError } from "./object-store.ts";
import type { ObjectRange } from "./object-store.ts";

/** Checks the shape of a range at the edge, before the object's size is known. */
export function validateRange(range: ObjectRange | undefined): void {
  if (range === undefined) return;
  const { offsetBytes, lengthBytes } = range;
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
    throw new StoreError("Invalid", `invalid range offset ${offsetBytes} length ${lengthBytes}: use non-negative integers`);
  }
}

/** The half-open byte interval [startBytes, endBytes) a (validated) range selects in an object of `sizeBytes`. */
export function resolveRange(range: ObjectRange | undefined, sizeBytes: number): { startBytes: number; endBytes: number } {
  if (range === undefined) return { startBytes: 0, endBytes: sizeBytes };
  if (range.offsetBytes > sizeBytes) {
    throw new StoreError("Invalid", `range offset ${range.offsetBytes} is past the end of a ${sizeBytes}-byte object`);
  }
  return { startBytes: range.offsetBytes, endBytes: Math.min(sizeBytes, range.offsetBytes + range.lengthBytes) };
}

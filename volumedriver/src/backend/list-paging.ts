// Key order and list paging shared by the stores that list by themselves (memory, local).
// The contract orders keys by their UTF-8 bytes, as S3 does; JavaScript's `<` orders by UTF-16 code
// units instead, which differs for characters above U+FFFF, so stores must use compareKeys.
import { StoreError } from "./object-store.ts";
import type { ListOptions } from "./object-store.ts";

/** The most keys one list page returns, whatever the caller asks (S3's ListObjectsV2 cap). */
export const LIST_LIMIT_KEYS_MAX = 1000;

/**
 * Orders two keys as their UTF-8 encodings compare byte by byte. UTF-8 byte order is code point
 * order; UTF-16 code unit order matches it except that surrogates (0xD800-0xDFFF, which encode
 * code points from U+10000) must sort after the units 0xE000-0xFFFF. Remapping those two ranges
 * fixes that without encoding either string.
 */
export function compareKeys(left: string, right: string): number {
  const sharedLength = Math.min(left.length, right.length);
  for (let index = 0; index < sharedLength; index++) {
    const leftUnit = left.charCodeAt(index);
    const rightUnit = right.charCodeAt(index);
    if (leftUnit !== rightUnit) return codePointOrderOfUnit(leftUnit) - codePointOrderOfUnit(rightUnit);
  }
  return left.length - right.length;
}

function codePointOrderOfUnit(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

/** Checks list options at the edge and returns the page size to use (capped at LIST_LIMIT_KEYS_MAX). */
export function resolveListLimitKeys(options: ListOptions | undefined): number {
  const limitKeys = options?.limitKeys;
  if (limitKeys === undefined) return LIST_LIMIT_KEYS_MAX;
  if (!Number.isSafeInteger(limitKeys) || limitKeys < 1) {
    throw new StoreError("Invalid", `invalid list limitKeys ${limitKeys}: use a positive integer`);
  }
  return Math.min(limitKeys, LIST_LIMIT_KEYS_MAX);
}

/**
 * One page of `sortedKeys` (ascending by compareKeys): the keys with `prefix` that come strictly
 * after `startAfter`, at most `limitKeys` of them, and whether more follow. Keys sharing a prefix
 * are contiguous in this order, so a binary search finds the start and the scan stops at the
 * first key without the prefix.
 */
export function selectPage(
  sortedKeys: readonly string[],
  options: ListOptions | undefined,
  limitKeys: number,
): { keys: string[]; more: boolean } {
  const prefix = options?.prefix ?? "";
  const startAfter = options?.startAfter;
  let index = firstIndexNotBefore(sortedKeys, prefix);
  if (startAfter !== undefined) index = Math.max(index, firstIndexAfter(sortedKeys, startAfter));
  const keys: string[] = [];
  for (; index < sortedKeys.length; index++) {
    const key = sortedKeys[index];
    if (!key.startsWith(prefix)) break;
    if (keys.length === limitKeys) return { keys, more: true };
    keys.push(key);
  }
  return { keys, more: false };
}

/** Index of the first key >= `bound`. */
function firstIndexNotBefore(sortedKeys: readonly string[], bound: string): number {
  let low = 0;
  let high = sortedKeys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareKeys(sortedKeys[middle], bound) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Index of the first key > `bound`. */
function firstIndexAfter(sortedKeys: readonly string[], bound: string): number {
  let low = 0;
  let high = sortedKeys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareKeys(sortedKeys[middle], bound) <= 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

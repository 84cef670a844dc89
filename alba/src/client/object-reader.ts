// The read half of get and ranged get. A byte range of an object maps to slices of data fragments
// (the code is systematic), so a healthy read fetches only the data fragments it needs and never
// decodes. Per chunk:
// 1. Partial read (uncompressed presets, small ranges): ask the ASDs for just the slices (ASD
//    getRanges) and decrypt them in place. Any problem falls back to 2.
// 2. Whole data fragments, from the fragment cache or the ASDs, each checked against its CRC-32C.
// 3. Degraded: when a wanted data fragment is missing, on a down ASD, or fails its checks, fetch
//    more fragments (other data, then parity) until k pass their checks, and rebuild the wanted
//    ones by Reed-Solomon decoding. Fewer than k: Unavailable when some fragments were merely
//    unreachable (retry later), Corrupt when they are all gone or damaged.
// Bytes are never returned unless they come from CRC-checked fragments or, for partial reads, from
// the exact stored bytes of a fragment whose ASD checks the value on read (see docs/client.md).
import type { Logger } from "pino";
import type { LRUCache } from "lru-cache";
import type { BufferPool } from "../memory/buffer-pool.ts";
import type { ByteRange } from "../asd/asd-api.ts";
import { isAsdError } from "../asd/asd-api.ts";
import { reconstructFragments } from "../encoding/erasure-coder.ts";
import { fragmentSlicesForRange, type FragmentSlice } from "../encoding/chunk-layout.ts";
import { decodeFragment, decryptFragmentRange, FragmentCorruptError } from "../encoding/fragment-codec.ts";
import type { ChunkManifest, ObjectManifest } from "../metadata/metadata-store.ts";
import type { Preset } from "../preset/preset.ts";
import { AlbaError } from "./alba-client-api.ts";
import type { AsdPool } from "./asd-pool.ts";
import { forEachBounded } from "./bounded-parallel.ts";
import { fragmentKey } from "./fragment-key.ts";

export interface ObjectReaderContext {
  pool: AsdPool;
  logger: Logger;
  /** Decoded data fragments by `objectId/chunk/fragment`; sized in bytes. */
  fragmentCache: LRUCache<string, Buffer>;
  chunkReadsInFlightMax: number;
  /** Ranges of at most this many bytes per chunk use partial reads (0: never). */
  partialReadSizeBytesMax: number;
  /** Where the result buffers come from (a caller that knows when it is done with them gives them back). */
  outputBuffers?: BufferPool;
}

export interface ReadOptions {
  /** Keep the data fragments read in the fragment cache (ranged reads do; whole-object reads would only flush it). */
  cacheFragments: boolean;
}

/** Counts of why fragments could not be used, for the error message and the error kind. */
interface FragmentFailures {
  missing: number;
  corrupt: number;
  unreachable: number;
}

interface SliceTarget {
  slice: FragmentSlice;
  output: Buffer;
}

function cacheKey(objectId: string, chunkIndex: number, fragmentIndex: number): string {
  return `${objectId}/${chunkIndex}/${fragmentIndex}`;
}

/**
 * The bytes of each range (validated and clamped by the caller: within the object) of the object
 * `manifest` describes, written with `preset` (for its key).
 */
export async function readObjectRanges(
  context: ObjectReaderContext, manifest: ObjectManifest, preset: Preset, ranges: readonly ByteRange[], options: ReadOptions,
): Promise<Buffer[]> {
  const outputs = ranges.map((range) => context.outputBuffers?.take(range.lengthBytes) ?? Buffer.allocUnsafe(range.lengthBytes));
  const byChunk = new Map<number, SliceTarget[]>();
  for (const [index, range] of ranges.entries()) {
    for (const slice of fragmentSlicesForRange(manifest.chunks, manifest.chunkSizeBytes, range)) {
      let targets = byChunk.get(slice.chunkIndex);
      if (targets === undefined) byChunk.set(slice.chunkIndex, (targets = []));
      targets.push({ slice, output: outputs[index]! });
    }
  }
  await forEachBounded([...byChunk.entries()], context.chunkReadsInFlightMax, async ([chunkIndex, targets]) => {
    if (await tryPartialRead(context, manifest, preset, chunkIndex, targets)) return;
    const wanted = [...new Set(targets.map((target) => target.slice.fragmentIndex))];
    const plains = await readDataFragments(context, manifest, preset, chunkIndex, wanted, options);
    for (const { slice, output } of targets) {
      plains.get(slice.fragmentIndex)!.copy(output, slice.offsetInRangeBytes, slice.offsetInFragmentBytes, slice.offsetInFragmentBytes + slice.lengthBytes);
    }
  });
  return outputs;
}

/** Partial read of one chunk's slices; false (nothing written) when it does not apply or anything fails. */
async function tryPartialRead(
  context: ObjectReaderContext, manifest: ObjectManifest, preset: Preset, chunkIndex: number, targets: readonly SliceTarget[],
): Promise<boolean> {
  if (manifest.compression !== "none" || context.partialReadSizeBytesMax === 0) return false;
  const totalBytes = targets.reduce((sum, target) => sum + target.slice.lengthBytes, 0);
  if (totalBytes > context.partialReadSizeBytesMax) return false;
  const chunk = manifest.chunks[chunkIndex]!;
  const byFragment = new Map<number, SliceTarget[]>();
  for (const target of targets) {
    const fragmentIndex = target.slice.fragmentIndex;
    // A cached fragment is checked and whole: use the full path, which serves it from the cache.
    if (context.fragmentCache.has(cacheKey(manifest.objectId, chunkIndex, fragmentIndex))) return false;
    const fragment = chunk.fragments[fragmentIndex]!;
    if (fragment.asdId === null || fragment.compressed || !context.pool.isUp(fragment.asdId)) return false;
    let list = byFragment.get(fragmentIndex);
    if (list === undefined) byFragment.set(fragmentIndex, (list = []));
    list.push(target);
  }
  const parts = await Promise.all([...byFragment.entries()].map(async ([fragmentIndex, list]) => {
    const asdId = chunk.fragments[fragmentIndex]!.asdId!;
    const connection = context.pool.connection(asdId);
    if (connection === undefined) return undefined;
    const address = { objectId: manifest.objectId, chunkIndex, fragmentIndex };
    let slices: Buffer[] | undefined;
    try {
      slices = await connection.getRanges(fragmentKey(address), list.map((target) => ({ offsetBytes: target.slice.offsetInFragmentBytes, lengthBytes: target.slice.lengthBytes })));
    } catch (error) {
      if (!isAsdError(error)) throw error;
      context.pool.reportError(asdId, error);
      context.logger.debug({ asdId, ...address, err: error }, "partial read failed; reading whole fragments");
      return undefined;
    }
    if (slices === undefined || slices.length !== list.length) return undefined;
    const pieces: Array<{ target: SliceTarget; plain: Buffer }> = [];
    for (const [index, target] of list.entries()) {
      const stored = slices[index]!;
      if (stored.length !== target.slice.lengthBytes) return undefined;
      pieces.push({ target, plain: decryptFragmentRange(stored, preset, address, target.slice.offsetInFragmentBytes) });
    }
    return pieces;
  }));
  // Nothing is copied until every slice arrived: a fallback then starts from clean outputs.
  if (parts.some((part) => part === undefined)) return false;
  for (const piece of parts.flatMap((part) => part!)) piece.plain.copy(piece.target.output, piece.target.slice.offsetInRangeBytes);
  return true;
}

/**
 * The plain bytes of data fragments `wanted` of one chunk (each exactly the chunk's fragment
 * size), from the cache, the ASDs, or rebuilt from any k healthy fragments.
 */
export async function readDataFragments(
  context: ObjectReaderContext, manifest: ObjectManifest, preset: Preset, chunkIndex: number, wanted: readonly number[], options: ReadOptions,
): Promise<Map<number, Buffer>> {
  const chunk = manifest.chunks[chunkIndex]!;
  const { k, m } = manifest.policy;
  const result = new Map<number, Buffer>();
  const plains: Array<Buffer | undefined> = new Array<Buffer | undefined>(k + m).fill(undefined);
  for (let fragmentIndex = 0; fragmentIndex < k; fragmentIndex++) {
    const cached = context.fragmentCache.get(cacheKey(manifest.objectId, chunkIndex, fragmentIndex));
    if (cached === undefined) continue;
    plains[fragmentIndex] = cached;
    if (wanted.includes(fragmentIndex)) result.set(fragmentIndex, cached);
  }
  if (result.size === wanted.length) return result;

  const attempted = new Set<number>();
  const failures: FragmentFailures = { missing: 0, corrupt: 0, unreachable: 0 };
  const fetch = async (fragmentIndex: number, evenIfDown = false): Promise<void> => {
    attempted.add(fragmentIndex);
    plains[fragmentIndex] = await fetchFragment(context, manifest, preset, chunk, chunkIndex, fragmentIndex, failures, evenIfDown);
  };
  let triedDownAsds = false;
  await Promise.all(wanted.filter((fragmentIndex) => !result.has(fragmentIndex)).map((fragmentIndex) => fetch(fragmentIndex)));
  const stillMissing = wanted.filter((fragmentIndex) => plains[fragmentIndex] === undefined);
  if (stillMissing.length > 0) {
    // Degraded: gather k healthy fragments, data first (cheapest to decode), then parity.
    for (;;) {
      const present = plains.filter((plain) => plain !== undefined).length;
      if (present >= k) break;
      const candidates: number[] = [];
      const onDownAsds: number[] = [];
      for (let fragmentIndex = 0; fragmentIndex < k + m; fragmentIndex++) {
        if (plains[fragmentIndex] !== undefined) continue;
        const asdId = chunk.fragments[fragmentIndex]!.asdId;
        // Skipped because its ASD is down (possibly in the first round): worth a last try.
        if (asdId !== null && !context.pool.isUp(asdId)) onDownAsds.push(fragmentIndex);
        if (attempted.has(fragmentIndex)) continue;
        if (asdId === null) {
          attempted.add(fragmentIndex);
          failures.missing++;
        } else if (context.pool.isUp(asdId)) {
          candidates.push(fragmentIndex);
        }
      }
      if (candidates.length === 0 && onDownAsds.length > 0 && !triedDownAsds) {
        // Last resort before failing: an ASD marked down may be back before its next probe.
        triedDownAsds = true;
        failures.unreachable -= onDownAsds.filter((fragmentIndex) => attempted.has(fragmentIndex)).length;
        await Promise.all(onDownAsds.map((fragmentIndex) => fetch(fragmentIndex, true)));
        continue;
      }
      if (candidates.length === 0) {
        failures.unreachable += onDownAsds.filter((fragmentIndex) => !attempted.has(fragmentIndex)).length;
        const kind = failures.unreachable > 0 ? "Unavailable" : "Corrupt";
        throw new AlbaError(kind, `${manifest.namespace}/${manifest.key} chunk ${chunkIndex}: only ${present} of the ${k} fragments needed are readable `
          + `(${failures.missing} missing, ${failures.corrupt} corrupt, ${failures.unreachable} on unreachable ASDs)${kind === "Unavailable" ? "; retry when the ASDs are back" : ""}`);
      }
      await Promise.all(candidates.slice(0, k - present).map((fragmentIndex) => fetch(fragmentIndex)));
    }
    context.logger.info({ objectId: manifest.objectId, chunkIndex, rebuilt: stillMissing, ...failures }, "degraded read: decoding from parity");
    const rebuilt = await reconstructFragments(plains, k, m, chunk.fragmentSizeBytes, stillMissing);
    stillMissing.forEach((fragmentIndex, index) => { plains[fragmentIndex] = rebuilt[index]; });
  }
  for (const fragmentIndex of wanted) {
    const plain = plains[fragmentIndex]!;
    result.set(fragmentIndex, plain);
    if (options.cacheFragments) context.fragmentCache.set(cacheKey(manifest.objectId, chunkIndex, fragmentIndex), plain);
  }
  return result;
}

/** One fragment's plain bytes, or undefined (with the reason counted) when it cannot be used. */
async function fetchFragment(
  context: ObjectReaderContext, manifest: ObjectManifest, preset: Preset, chunk: ChunkManifest, chunkIndex: number, fragmentIndex: number,
  failures: FragmentFailures, evenIfDown: boolean,
): Promise<Buffer | undefined> {
  const fragment = chunk.fragments[fragmentIndex]!;
  if (fragment.asdId === null) {
    failures.missing++;
    return undefined;
  }
  const connection = context.pool.connection(fragment.asdId);
  if (connection === undefined || (!evenIfDown && !context.pool.isUp(fragment.asdId))) {
    failures.unreachable++;
    return undefined;
  }
  const address = { objectId: manifest.objectId, chunkIndex, fragmentIndex };
  try {
    const stored = await connection.get(fragmentKey(address));
    if (stored === undefined) {
      failures.missing++;
      context.logger.warn({ asdId: fragment.asdId, ...address }, "fragment missing on its ASD");
      return undefined;
    }
    return await decodeFragment(stored, fragment, preset, address, chunk.fragmentSizeBytes);
  } catch (error) {
    if (error instanceof FragmentCorruptError) {
      failures.corrupt++;
      context.logger.warn({ asdId: fragment.asdId, err: error }, "fragment fails its checks; reading others (maintenance repairs it)");
      return undefined;
    }
    if (isAsdError(error)) {
      context.pool.reportError(fragment.asdId, error);
      failures.unreachable++;
      return undefined;
    }
    throw error;
  }
}

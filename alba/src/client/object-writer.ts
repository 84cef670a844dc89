// The write half of a put: cut the object into chunks, erasure-code each chunk, encode each
// fragment (compress, encrypt, checksum) and write fragment i of every chunk to the ASD the
// placement gives it, one atomic batch per fragment (assert absent + set). A chunk is durable once
// at least c of its fragments are; a fragment that could not be written (ASD down, full, or no ASD
// placed) is recorded with asdId null for maintenance to repair. A chunk with fewer than c durable
// fragments fails the attempt (TooFewFragmentsError) after the chunks in flight finish, so the
// caller knows every fragment written and can delete them.
import type { Logger } from "pino";
import type { BufferPool } from "../memory/buffer-pool.ts";
import { encodeChunk, fragmentSizeForChunk } from "../encoding/erasure-coder.ts";
import { chunkRanges } from "../encoding/chunk-layout.ts";
import { encodeFragment } from "../encoding/fragment-codec.ts";
import type { ChunkManifest, FragmentManifest } from "../metadata/metadata-store.ts";
import type { Policy, Preset } from "../preset/preset.ts";
import type { AsdPool } from "./asd-pool.ts";
import { forEachBounded } from "./bounded-parallel.ts";
import { fragmentKey } from "./fragment-key.ts";

/** One fragment that reached an ASD (and must be deleted if the upload does not commit). */
export interface WrittenFragment {
  asdId: string;
  key: string;
}

export interface ObjectWritePlan {
  objectId: string;
  preset: Preset;
  policy: Policy;
  /** ASD of fragment i of every chunk, or null (k + m entries). */
  placement: ReadonlyArray<string | null>;
  /** When the data is still arriving: resolves once bytes [0, end) are in (AlbaPutOptions.dataAvailable). */
  dataAvailable?: (endOffsetBytes: number) => Promise<void>;
}

/** A chunk of the attempt could not get c durable fragments; the caller may retry with a new placement. */
export class TooFewFragmentsError extends Error {
  constructor(readonly chunkIndex: number, readonly durableCount: number, readonly requiredCount: number) {
    super(`chunk ${chunkIndex}: only ${durableCount} of the ${requiredCount} fragments a durable write needs could be stored`);
    this.name = "TooFewFragmentsError";
  }
}

export interface ObjectWriterContext {
  pool: AsdPool;
  logger: Logger;
  chunkWritesInFlightMax: number;
  /** Backing buffers of the coded fragments, reused chunk after chunk (4-6 MiB each with 1 MiB fragments). */
  codingBuffers?: BufferPool;
}

/**
 * Writes every chunk of `data` under `plan`; returns the chunk manifests. Every fragment written
 * is appended to `written` as soon as its batch succeeds, also when this rejects.
 */
export async function writeObjectChunks(
  context: ObjectWriterContext, plan: ObjectWritePlan, data: Uint8Array, written: WrittenFragment[],
): Promise<ChunkManifest[]> {
  const { k, m } = plan.policy;
  const chunkSizeBytes = k * plan.preset.fragmentSizeBytes;
  const ranges = chunkRanges(data.length, chunkSizeBytes);
  const chunks: ChunkManifest[] = new Array<ChunkManifest>(ranges.length);
  // Fragments of one chunk go to distinct ASDs, so one bad ASD costs each chunk at most one fragment.
  await forEachBounded(ranges, context.chunkWritesInFlightMax, async (range) => {
    await plan.dataAvailable?.(range.offsetBytes + range.sizeBytes);
    const chunk = Buffer.from(data.buffer, data.byteOffset + range.offsetBytes, range.sizeBytes);
    const fragmentSizeBytes = fragmentSizeForChunk(range.sizeBytes, k);
    const plains = await encodeChunk(chunk, k, m, fragmentSizeBytes, context.codingBuffers);
    const results = await Promise.all(plains.map((plain, fragmentIndex) =>
      writeFragment(context, plan, range.chunkIndex, fragmentIndex, plain, written)));
    // Every batch has been answered, so no request still holds the fragment bytes; after a failed
    // write (a request cut mid-send) the buffers are left to the GC instead.
    if (results.every((result) => !result.writeFailed)) for (const plain of plains) context.codingBuffers?.release(plain);
    const fragments = results.map((result) => result.fragment);
    const durableCount = fragments.filter((fragment) => fragment.asdId !== null).length;
    if (durableCount < plan.policy.c) throw new TooFewFragmentsError(range.chunkIndex, durableCount, plan.policy.c);
    chunks[range.chunkIndex] = { sizeBytes: range.sizeBytes, fragmentSizeBytes, fragments };
  });
  return chunks;
}

async function writeFragment(
  context: ObjectWriterContext, plan: ObjectWritePlan, chunkIndex: number, fragmentIndex: number, plain: Buffer, written: WrittenFragment[],
): Promise<{ fragment: FragmentManifest; writeFailed: boolean }> {
  const address = { objectId: plan.objectId, chunkIndex, fragmentIndex };
  // Encoded even when it will not be stored: the manifest then holds the CRC a repair must
  // reproduce (the codec is deterministic per fragment address).
  const encoded = await encodeFragment(plain, plan.preset, address);
  const missing: FragmentManifest = { asdId: null, storedSizeBytes: encoded.stored.length, crc32c: encoded.crc32c, compressed: encoded.compressed };
  const asdId = plan.placement[fragmentIndex] ?? null;
  if (asdId === null || !context.pool.isUp(asdId)) return { fragment: missing, writeFailed: false };
  const connection = context.pool.connection(asdId);
  if (connection === undefined) return { fragment: missing, writeFailed: false };
  const key = fragmentKey(address);
  try {
    // The assert guards against the (128-bit) chance of an object id collision.
    await connection.applyBatch({ asserts: [{ kind: "absent", key }], updates: [{ kind: "set", key, value: encoded.stored }] });
  } catch (error) {
    context.pool.reportError(asdId, error);
    context.logger.warn({ asdId, key, err: error }, "fragment write failed; the fragment is recorded missing");
    return { fragment: missing, writeFailed: true };
  }
  written.push({ asdId, key });
  return { fragment: { ...missing, asdId }, writeFailed: false };
}

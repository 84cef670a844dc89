// In-memory cache of clusters read from the backend, shared by the volumes of a vPool and bounded in
// bytes. Keys name an immutable location (volume, SCO, offset), so an overwrite never makes an entry
// stale: the metadata simply stops pointing at it.
import { LRUCache } from "lru-cache";
import { CLUSTER_SIZE_BYTES } from "./vpool-types.ts";

export class ReadCache {
  private cache: LRUCache<string, Buffer> | undefined;

  constructor(sizeBytes: number) {
    this.cache = ReadCache.make(sizeBytes);
  }

  private static make(sizeBytes: number): LRUCache<string, Buffer> | undefined {
    return sizeBytes >= CLUSTER_SIZE_BYTES
      ? new LRUCache<string, Buffer>({ maxSize: sizeBytes, sizeCalculation: () => CLUSTER_SIZE_BYTES })
      : undefined;
  }

  /** A new bound: the most recently used clusters that fit are kept. */
  resize(sizeBytes: number): void {
    const previous = this.cache;
    this.cache = ReadCache.make(sizeBytes);
    if (previous === undefined || this.cache === undefined) return;
    // Least recently used first, so the most recently used end up most recent (and survive a shrink).
    for (const [key, cluster] of previous.rentries() as Iterable<[string, Buffer]>) this.cache.set(key, cluster);
  }

  static key(volumeUuid: string, scoNumber: number, scoOffset: number): string {
    return `${volumeUuid}/${scoNumber}/${scoOffset}`;
  }

  get(key: string): Buffer | undefined {
    return this.cache?.get(key);
  }

  has(key: string): boolean {
    return this.cache?.has(key) ?? false;
  }

  /** Stores a copy of one cluster. */
  set(key: string, cluster: Buffer): void {
    this.cache?.set(key, Buffer.from(cluster));
  }

  get sizeBytes(): number {
    return this.cache?.calculatedSize ?? 0;
  }
}

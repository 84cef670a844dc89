// An ASD in memory, a test double of the ASD daemon for unit tests (integration tests use real
// processes): atomic batches with asserts, a capacity (Full), and switches to make it down.
import {
  AsdError, type AsdApi, type AsdBatch, type AsdListOptions, type AsdListPage, type AsdStatistics, type ByteRange,
} from "../../alba/src/asd/asd-api.ts";

/** An ASD in memory: atomic batches, capacity, and switches to make it down or corrupt. */
export class MemoryAsd implements AsdApi {
  readonly values = new Map<string, Buffer>();
  down = false;
  batchCount = 0;
  constructor(readonly asdId: string, readonly nodeId: string, public capacityBytes = 1 << 30) {}
  get address(): string {
    return `memory:${this.asdId}`;
  }
  private check(): void {
    if (this.down) throw new AsdError("Unavailable", `${this.asdId} is down`);
  }
  private usedBytes(): number {
    let used = 0;
    for (const value of this.values.values()) used += value.length;
    return used;
  }
  async applyBatch(batch: AsdBatch): Promise<void> {
    this.check();
    for (const assertion of batch.asserts) {
      const present = this.values.has(assertion.key);
      if ((assertion.kind === "absent" && present) || (assertion.kind === "present" && !present)) throw new AsdError("AssertFailed", assertion.key);
    }
    const added = batch.updates.reduce((sum, update) => sum + (update.kind === "set" ? update.value.length : 0), 0);
    if (added > 0 && this.usedBytes() + added > this.capacityBytes) throw new AsdError("Full", `${this.asdId} is full`);
    for (const update of batch.updates) {
      if (update.kind === "set") this.values.set(update.key, Buffer.from(update.value));
      else this.values.delete(update.key);
    }
    this.batchCount++;
  }
  async get(key: string): Promise<Buffer | undefined> {
    this.check();
    const value = this.values.get(key);
    return value === undefined ? undefined : Buffer.from(value);
  }
  async getRanges(key: string, ranges: readonly ByteRange[]): Promise<Buffer[] | undefined> {
    this.check();
    const value = this.values.get(key);
    if (value === undefined) return undefined;
    return ranges.map((range) => {
      if (range.offsetBytes > value.length) throw new AsdError("Invalid", "range past the end");
      return Buffer.from(value.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes));
    });
  }
  async list(options: AsdListOptions = {}): Promise<AsdListPage> {
    this.check();
    const keys = [...this.values.keys()].filter((key) => key.startsWith(options.prefix ?? "")).sort();
    return { keys: keys.map((key) => ({ key, sizeBytes: this.values.get(key)!.length, crc32c: 0 })) };
  }
  async statistics(): Promise<AsdStatistics> {
    this.check();
    const usedBytes = this.usedBytes();
    return {
      asdId: this.asdId, nodeId: this.nodeId, capacityBytes: this.capacityBytes, usedBytes, diskFreeBytes: 2 ** 40,
      keyCount: this.values.size, batchCount: this.batchCount, fsyncCount: this.batchCount, getCount: 0, readBytes: 0, writtenBytes: 0,
      startedAt: new Date(0).toISOString(),
    };
  }
  async close(): Promise<void> {}
}


// Reusable buffers for large WRITE payloads. A payload that arrives split over several socket
// chunks (every payload over 64 KiB does) must be copied into one buffer; allocating a fresh
// multi-MiB buffer per request made V8's background threads spend more CPU sweeping and freeing
// them than the main thread spent on the writes (1 MiB sequential writes: 5 s of GC threads per
// 4 GiB written, 2.9 s with this pool), and each fresh allocation faults in new pages.
//
// Invariant: a buffer is released only once the device call that used it has settled; the
// BlockDevice contract (block-device.ts) is that write() keeps no reference to its data after that.

/** Payloads at least this large come from the pool; smaller ones are cheap to allocate. */
export const PAYLOAD_POOL_SIZE_BYTES_MIN = 64 * 1024;
/** Free buffers the pool keeps, in bytes (one process-wide pool: the buffers are interchangeable). */
export const PAYLOAD_POOL_FREE_BYTES_MAX = 64 * 1024 * 1024;

export class PayloadBufferPool {
  /** Free buffers by size class (powers of two). */
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Every buffer this pool handed out and not yet dropped, so release() ignores foreign ones. */
  private readonly owned = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;

  constructor(private readonly freeBytesMax: number = PAYLOAD_POOL_FREE_BYTES_MAX) {}

  /** A buffer of exactly `sizeBytes` (a view of a pooled one when large enough). Its content is undefined. */
  take(sizeBytes: number): Buffer {
    if (sizeBytes < PAYLOAD_POOL_SIZE_BYTES_MIN) return Buffer.allocUnsafe(sizeBytes);
    const sizeClass = 2 ** Math.ceil(Math.log2(sizeBytes));
    let whole = this.free.get(sizeClass)?.pop();
    if (whole === undefined) {
      whole = new ArrayBuffer(sizeClass);
      this.owned.add(whole);
    } else {
      this.freeBytes -= sizeClass;
    }
    return Buffer.from(whole, 0, sizeBytes);
  }

  /** Returns a buffer from take() once nothing uses it; anything else is ignored (left to the GC). */
  release(buffer: Buffer): void {
    const whole = buffer.buffer;
    if (!(whole instanceof ArrayBuffer) || !this.owned.has(whole)) return;
    const list = this.free.get(whole.byteLength) ?? [];
    if (list.includes(whole)) throw new Error("payload buffer released twice");
    if (this.freeBytes + whole.byteLength > this.freeBytesMax) {
      this.owned.delete(whole);
      return;
    }
    list.push(whole);
    this.free.set(whole.byteLength, list);
    this.freeBytes += whole.byteLength;
  }

  get freeBytesNow(): number {
    return this.freeBytes;
  }
}

/** The process-wide pool the NBD receive path uses. */
export const payloadBufferPool = new PayloadBufferPool();

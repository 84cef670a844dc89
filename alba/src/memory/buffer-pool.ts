// Reusable large buffers. A fresh multi-MiB Buffer is an mmap of new pages that the kernel must
// fault in one by one (and, in a VM that hands freed memory back to its host, each fault is far
// dearer: 64 MiB took 34 ms fresh against 3 ms reused on the dev machine), and V8's background
// threads must sweep and unmap it again. Paths that move large payloads at a high rate (NBD WRITE
// payloads, Alba proxy bodies and objects) take their buffers from a pool and give them back once
// nothing uses them.
//
// Invariant: a caller releases a buffer only once nothing refers to it any more. release() of a
// buffer the pool did not hand out (or of a view of one that is not its start) is ignored, so a
// caller may release whatever it got without knowing where it came from.

export interface BufferPoolSettings {
  /** Requests smaller than this are plain allocations (the allocator's heap reuses small memory well). */
  sizeBytesMin: number;
  /** Free buffers kept, in bytes; a release beyond it drops the buffer (to the GC). */
  freeBytesMax: number;
}

export class BufferPool {
  /** Free buffers by size class (powers of two). */
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Every buffer this pool handed out and not yet dropped. */
  private readonly owned = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;

  constructor(private readonly settings: BufferPoolSettings) {}

  /** A buffer of exactly `sizeBytes` (a view of a pooled one when large enough). Its content is undefined. */
  take(sizeBytes: number): Buffer {
    if (sizeBytes < this.settings.sizeBytesMin) return Buffer.allocUnsafe(sizeBytes);
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

  /** Gives back a buffer from take() once nothing uses it; anything else is ignored. */
  release(buffer: Uint8Array): void {
    const whole = buffer.buffer;
    if (!(whole instanceof ArrayBuffer) || buffer.byteOffset !== 0 || !this.owned.has(whole)) return;
    const list = this.free.get(whole.byteLength) ?? [];
    if (list.includes(whole)) throw new Error("buffer released twice");
    if (this.freeBytes + whole.byteLength > this.settings.freeBytesMax) {
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

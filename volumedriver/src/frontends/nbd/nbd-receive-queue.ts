// Bytes received on one connection and not yet decoded, kept as the list of chunks the socket gave us.
// Decoders look at fixed-size headers in place (copied only when a header straddles two chunks) and
// take payloads as views of the received chunk when they lie inside one, so a 4 KiB WRITE payload is
// never copied on its way to the engine. Chunks are never reused by Node, so views stay valid. A
// payload that spans chunks is copied into a buffer of payload-buffer-pool.ts: hand it back with
// payloadBufferPool.release() once the device is done with it.
import { payloadBufferPool } from "./payload-buffer-pool.ts";

/** Largest header peek() serves; the request header (28 bytes) and option header (16 bytes) fit. */
const PEEK_BYTES_MAX = 64;

export class ReceiveQueue {
  private readonly chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private headOffset = 0;
  private readonly scratch = Buffer.allocUnsafe(PEEK_BYTES_MAX);
  /** Bytes held and not consumed. */
  length = 0;
  /** Set by peek(): where the peeked bytes can be read. Valid until the next push/take/skip. */
  view: Buffer = this.scratch;
  viewOffset = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Makes the next `count` bytes (≤ 64, all present) readable at view[viewOffset...] without consuming them. */
  peek(count: number): void {
    if (count > PEEK_BYTES_MAX || count > this.length) throw new RangeError(`peek(${count}) with ${this.length} bytes queued`);
    const head = this.chunks[0] as Buffer;
    if (head.length - this.headOffset >= count) {
      this.view = head;
      this.viewOffset = this.headOffset;
      return;
    }
    this.copyOut(this.scratch, 0, count);
    this.view = this.scratch;
    this.viewOffset = 0;
  }

  /** Consumes the next `count` bytes (all present): a view of the received chunk when possible, else one copy. */
  take(count: number): Buffer {
    if (count > this.length) throw new RangeError(`take(${count}) with ${this.length} bytes queued`);
    if (count === 0) return Buffer.alloc(0);
    const head = this.chunks[0] as Buffer;
    if (head.length - this.headOffset >= count) {
      const view = head.subarray(this.headOffset, this.headOffset + count);
      this.consume(count);
      return view;
    }
    // A payload split over chunks is copied once, into a pooled buffer the caller releases.
    const target = payloadBufferPool.take(count);
    this.copyOut(target, 0, count);
    this.consume(count);
    return target;
  }

  /** Consumes up to `count` bytes; returns how many were consumed. */
  skip(count: number): number {
    const skipped = Math.min(count, this.length);
    this.consume(skipped);
    return skipped;
  }

  /** Everything still queued, consumed (used when the stream changes hands, e.g. at STARTTLS). */
  takeAll(): Buffer {
    return this.take(this.length);
  }

  private copyOut(target: Buffer, targetOffset: number, count: number): void {
    let copied = 0;
    let offset = this.headOffset;
    for (let index = 0; copied < count; index++) {
      const chunk = this.chunks[index] as Buffer;
      const length = Math.min(chunk.length - offset, count - copied);
      chunk.copy(target, targetOffset + copied, offset, offset + length);
      copied += length;
      offset = 0;
    }
  }

  private consume(count: number): void {
    this.length -= count;
    let remaining = count;
    while (remaining > 0) {
      const head = this.chunks[0] as Buffer;
      const available = head.length - this.headOffset;
      if (remaining < available) {
        this.headOffset += remaining;
        return;
      }
      remaining -= available;
      this.chunks.shift();
      this.headOffset = 0;
    }
  }
}

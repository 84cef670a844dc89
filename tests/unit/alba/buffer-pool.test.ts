// The buffer pool hands out exact-size views, reuses a released buffer of the same size class,
// keeps at most its byte bound of free buffers, and ignores buffers it did not hand out.
import assert from "node:assert/strict";
import { BufferPool } from "../../../alba/src/memory/buffer-pool.ts";

const SIZE_BYTES_MIN = 64 * 1024;

const MIB = 1024 * 1024;

describe("BufferPool", function () {
  it("reuses a released buffer for the next payload of the same size class", function () {
    const pool = new BufferPool({ sizeBytesMin: SIZE_BYTES_MIN, freeBytesMax: 8 * MIB });
    const first = pool.take(1 * MIB - 100);
    assert.equal(first.length, 1 * MIB - 100);
    assert.equal(first.buffer.byteLength, 1 * MIB);
    const second = pool.take(1 * MIB);
    assert.notEqual(second.buffer, first.buffer, "a buffer in use is never handed out twice");
    pool.release(first);
    assert.equal(pool.freeBytesNow, 1 * MIB);
    const third = pool.take(600 * 1024);
    assert.equal(third.buffer, first.buffer, "the released buffer comes back");
    assert.equal(pool.freeBytesNow, 0);
  });

  it("small payloads are plain allocations, and foreign buffers are ignored", function () {
    const pool = new BufferPool({ sizeBytesMin: SIZE_BYTES_MIN, freeBytesMax: 8 * MIB });
    const small = pool.take(SIZE_BYTES_MIN - 1);
    pool.release(small);
    pool.release(Buffer.alloc(2 * MIB));
    const pooled = pool.take(MIB);
    pool.release(pooled.subarray(4096));
    assert.equal(pool.freeBytesNow, 0, "a view that does not start the buffer is not the buffer");
    assert.equal(pool.freeBytesNow, 0);
  });

  it("keeps at most its bound of free bytes and refuses a double release", function () {
    const pool = new BufferPool({ sizeBytesMin: SIZE_BYTES_MIN, freeBytesMax: 3 * MIB });
    const buffers = [pool.take(MIB), pool.take(MIB), pool.take(MIB), pool.take(MIB)];
    for (const buffer of buffers) pool.release(buffer);
    assert.equal(pool.freeBytesNow, 3 * MIB, "the fourth is dropped");
    const again = pool.take(MIB);
    pool.release(again);
    assert.throws(() => pool.release(again), /released twice/);
  });
});

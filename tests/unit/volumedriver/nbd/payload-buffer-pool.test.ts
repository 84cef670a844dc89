// The payload buffer pool hands out exact-size views, reuses a released buffer of the same size
// class, keeps at most its byte bound of free buffers, and ignores buffers it did not hand out.
import assert from "node:assert/strict";
import { PAYLOAD_POOL_SIZE_BYTES_MIN, PayloadBufferPool } from "../../../../volumedriver/src/frontends/nbd/payload-buffer-pool.ts";

const MIB = 1024 * 1024;

describe("PayloadBufferPool", function () {
  it("reuses a released buffer for the next payload of the same size class", function () {
    const pool = new PayloadBufferPool(8 * MIB);
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
    const pool = new PayloadBufferPool(8 * MIB);
    const small = pool.take(PAYLOAD_POOL_SIZE_BYTES_MIN - 1);
    pool.release(small);
    pool.release(Buffer.alloc(2 * MIB));
    assert.equal(pool.freeBytesNow, 0);
  });

  it("keeps at most its bound of free bytes and refuses a double release", function () {
    const pool = new PayloadBufferPool(3 * MIB);
    const buffers = [pool.take(MIB), pool.take(MIB), pool.take(MIB), pool.take(MIB)];
    for (const buffer of buffers) pool.release(buffer);
    assert.equal(pool.freeBytesNow, 3 * MIB, "the fourth is dropped");
    const again = pool.take(MIB);
    pool.release(again);
    assert.throws(() => pool.release(again), /released twice/);
  });
});

// Goal: the NBD server's transmission phase on a real vDisk: read/write round trips (aligned and
// unaligned, simple and structured replies), pipelining with out-of-order completion and the
// in-flight bound, structured reads with hole chunks, DF, block status after trim, write zeroes flags,
// FUA, flush, DISC, cache, every edge rejection with the spec's errno, engine errors, read-only
// exports, protocol violations, and multi-conn durability across a crash.
import assert from "node:assert/strict";
import { VolumeError } from "../../../../volumedriver/src/engine/block-device.ts";
import { openVPool } from "../../../../volumedriver/src/engine/vpool.ts";
import { SeededRandom } from "../../../helpers/seeded-random.ts";
import { TempDirs } from "../../../helpers/temp-dir.ts";
import { NBD_TEST_DEVICE_SIZE_BYTES, type NbdFixture, startNbdFixture } from "./nbd-fixture.ts";
import { NBD, type NbdReply, NbdTestClient, openNbdClient } from "./nbd-test-client.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const SIZE = NBD_TEST_DEVICE_SIZE_BYTES;

function pattern(lengthBytes: number, seed: number): Buffer {
  return new SeededRandom(seed).bytes(lengthBytes);
}

function assertOk(reply: NbdReply, what: string): void {
  assert.equal(reply.error, 0, `${what}: error ${reply.error} ${reply.errorMessage ?? ""}`);
}

describe("volumedriver NBD server: transmission", function () {
  this.timeout(30_000);
  const tempDirs = new TempDirs("nbd-transmission");
  let fixture: NbdFixture;
  const clients: NbdTestClient[] = [];

  async function open(name = "disk0", options: { structured?: boolean; baseAllocation?: boolean } = {}): Promise<NbdTestClient> {
    const client = await openNbdClient(fixture.port, name, options);
    clients.push(client);
    return client;
  }

  beforeEach(async function () {
    fixture = await startNbdFixture(tempDirs);
  });

  afterEach(async function () {
    for (const client of clients.splice(0)) client.close();
    await fixture.close();
  });

  after(async function () {
    await tempDirs.removeAll();
  });

  for (const structured of [false, true]) {
    const replies = structured ? "structured" : "simple";

    it(`write then read round trips, aligned and unaligned (${replies} replies)`, async function () {
      const nbd = await open("disk0", { structured });
      const cases = [
        { offset: 0, length: 4 * KIB }, { offset: 64 * KIB, length: 1 * MIB }, { offset: 5_000, length: 3_333 },
        { offset: 4 * KIB - 1, length: 2 }, { offset: SIZE - 700, length: 700 }, { offset: 2 * MIB + 17, length: 200 * KIB + 5 },
      ];
      for (const [index, { offset, length }] of cases.entries()) {
        const data = pattern(length, index + 1);
        assertOk(await nbd.write(offset, data), `write ${offset}+${length}`);
        const reply = await nbd.read(offset, length);
        assertOk(reply, `read ${offset}+${length}`);
        assert.ok(reply.data?.equals(data), `read back ${offset}+${length}`);
        assert.equal(reply.structured, structured);
      }
      // Neighbours of an unaligned write keep their bytes (read-modify-write below the frontend).
      const around = await nbd.read(4 * KIB - 5, 10);
      assert.ok(around.data?.subarray(0, 4).equals(pattern(4 * KIB, 1).subarray(4 * KIB - 5, 4 * KIB - 1)));
    });

    it(`zero-length READ, WRITE, TRIM, WRITE_ZEROES and CACHE succeed (${replies} replies)`, async function () {
      const nbd = await open("disk0", { structured });
      const read = await nbd.read(4096, 0);
      assertOk(read, "read of 0");
      assert.equal(read.data?.length, 0);
      assertOk(await nbd.write(4096, Buffer.alloc(0)), "write of 0");
      assertOk(await nbd.trim(SIZE, 0), "trim of 0 at the end");
      assertOk(await nbd.writeZeroes(0, 0), "write zeroes of 0");
      assertOk(await nbd.cache(0, 0), "cache of 0");
    });

    it(`requests beyond the end: READ/TRIM/CACHE EINVAL, WRITE/WRITE_ZEROES ENOSPC (${replies} replies)`, async function () {
      const nbd = await open("disk0", { structured });
      assert.equal((await nbd.read(SIZE, 1)).error, NBD.EINVAL);
      assert.equal((await nbd.read(SIZE - 4096, 8192)).error, NBD.EINVAL);
      assert.equal((await nbd.write(SIZE - 512, Buffer.alloc(1024))).error, NBD.ENOSPC);
      assert.equal((await nbd.writeZeroes(SIZE, 4096)).error, NBD.ENOSPC);
      assert.equal((await nbd.trim(SIZE - 4096, 8192)).error, NBD.EINVAL);
      assert.equal((await nbd.cache(SIZE + 4096, 1)).error, NBD.EINVAL);
      assert.equal((await nbd.read(2 ** 62, 512)).error, NBD.EINVAL, "offsets beyond 2^53 are out of range too");
      assert.equal((await nbd.read(SIZE + 1, 0)).error, NBD.EINVAL, "an empty range must still start inside");
      const readBack = await nbd.read(SIZE - 512, 512);
      assertOk(readBack, "the refused write left the end alone");
      assert.ok(readBack.data?.equals(Buffer.alloc(512)));
    });

    it(`unknown commands and flags are EINVAL and the stream stays in step (${replies} replies)`, async function () {
      const nbd = await open("disk0", { structured });
      assert.equal((await nbd.request(42, 0, 0)).error, NBD.EINVAL, "unknown command");
      assert.equal((await nbd.read(0, 512, 1 << 9)).error, NBD.EINVAL, "unknown flag");
      assert.equal((await nbd.write(0, Buffer.alloc(512, 3), NBD.CMD_FLAG_NO_HOLE)).error, NBD.EINVAL, "NO_HOLE is for WRITE_ZEROES");
      assert.equal((await nbd.trim(0, 512, NBD.CMD_FLAG_REQ_ONE)).error, NBD.EINVAL, "REQ_ONE is for BLOCK_STATUS");
      assert.equal((await nbd.request(NBD.CMD_FLUSH, 4096, 0)).error, NBD.EINVAL, "FLUSH with an offset");
      if (!structured) assert.equal((await nbd.read(0, 512, NBD.CMD_FLAG_DF)).error, NBD.EINVAL, "DF without structured replies");
      const after = await nbd.read(0, 512);
      assertOk(after, "read after rejections");
      assert.ok(after.data?.equals(Buffer.alloc(512)), "the refused write did not land");
    });

    it(`requests over requestSizeBytesMax are refused; a WRITE payload up to twice that is skipped (${replies} replies)`, async function () {
      await fixture.close();
      fixture = await startNbdFixture(tempDirs, { requestSizeBytesMax: 64 * KIB });
      const nbd = await open("disk0", { structured });
      assert.equal((await nbd.read(0, 64 * KIB + 1)).error, structured ? NBD.EOVERFLOW : NBD.EINVAL);
      assert.equal((await nbd.write(0, Buffer.alloc(100 * KIB, 1))).error, NBD.EINVAL);
      assertOk(await nbd.write(0, Buffer.alloc(64 * KIB, 2)), "a write at the limit");
      assertOk(await nbd.writeZeroes(0, 1 * MIB), "payload-less commands may exceed the limit");
      assert.equal((await nbd.read(0, 4096)).data?.[0], 0);
      const promise = nbd.write(0, Buffer.alloc(200 * KIB, 3));
      await assert.rejects(promise, "a WRITE too large to skip is a hard disconnect");
      await nbd.waitForClose();
    });
  }

  it("pipelined requests complete out of order and each reply carries its own cookie", async function () {
    const nbd = await open("disk0-controlled");
    fixture.controlled.delayMs = (operation, offset) => (operation === "read" && offset === 0 ? 300 : 0);
    assertOk(await nbd.write(8 * KIB, Buffer.alloc(4 * KIB, 0x11)), "seed data");
    const slow = nbd.request(NBD.CMD_READ, 0, 4 * KIB, undefined, { cookie: 0xdeadbeef_cafef00dn });
    const fast = nbd.request(NBD.CMD_READ, 8 * KIB, 4 * KIB, undefined, { cookie: 7n });
    const write = nbd.request(NBD.CMD_WRITE, 16 * KIB, 4 * KIB, Buffer.alloc(4 * KIB, 0x22), { cookie: 8n });
    const [slowReply, fastReply] = await Promise.all([slow, fast, write]);
    const order = nbd.completionOrder.slice(-3);
    assert.equal(order[2], 0xdeadbeef_cafef00dn, "later requests overtake the slow read");
    assert.deepEqual(order.slice(0, 2).sort(), [7n, 8n]);
    assert.ok(slowReply.data?.equals(Buffer.alloc(4 * KIB)));
    assert.ok(fastReply.data?.equals(Buffer.alloc(4 * KIB, 0x11)));
  });

  it("many pipelined writes and reads from one client all land (QD 64, mixed sizes)", async function () {
    const nbd = await open("disk0", { structured: true });
    const random = new SeededRandom(42);
    const model = Buffer.alloc(SIZE);
    const writes: Array<Promise<NbdReply>> = [];
    for (let index = 0; index < 256; index++) {
      const length = random.pick([512, 4096, 8192, 65536, 3000]);
      const offset = random.integer(0, (SIZE - length) / 512) * 512;
      const data = random.bytes(length);
      data.copy(model, offset);
      writes.push(nbd.write(offset, data));
      if (writes.length >= 64) assertOk(await writes.shift() as NbdReply, "write");
    }
    for (const reply of await Promise.all(writes)) assertOk(reply, "write");
    const reads = [];
    for (let offset = 0; offset < SIZE; offset += 1 * MIB) reads.push(nbd.read(offset, 1 * MIB));
    const replies = await Promise.all(reads);
    assert.ok(Buffer.concat(replies.map((reply) => reply.data as Buffer)).equals(model), "device matches the model");
  });

  it("large pipelined writes on a slow, sometimes failing device: pooled payload buffers are reused only once the device is done", async function () {
    // Goal: payloads split over socket chunks land in pooled buffers (payload-buffer-pool.ts); a buffer
    // released too early would be overwritten by a later request while the device still waits to copy it.
    const nbd = await open("disk0-controlled");
    const random = new SeededRandom(7);
    const model = Buffer.alloc(SIZE);
    const failing = new Set<number>();
    fixture.controlled.delayMs = (operation, offset) => (operation === "write" ? (7 - offset / (2 * MIB)) * 4 : 0);
    fixture.controlled.failure = (operation, offset) => (operation === "write" && failing.has(offset) ? new Error("injected") : undefined);
    // Windows of 8 pipelined writes into 8 disjoint 2 MiB slots, each slot delayed differently, so
    // requests overtake each other inside a window and the model stays exact.
    for (let window = 0; window < 12; window++) {
      const replies: Array<Promise<void>> = [];
      for (let slot = 0; slot < 8; slot++) {
        const length = random.pick([256 * KIB, 512 * KIB, 1 * MIB, 2 * MIB, 300 * KIB]);
        const offset = slot * 2 * MIB;
        const data = random.bytes(length);
        const fails = (window * 8 + slot) % 11 === 5;
        if (fails) failing.add(offset);
        else failing.delete(offset);
        if (!fails) data.copy(model, offset);
        replies.push(nbd.write(offset, data).then((reply) => {
          if (fails) assert.notEqual(reply.error, 0, "the injected failure reaches the client");
          else assertOk(reply, "write");
        }));
      }
      await Promise.all(replies);
    }
    fixture.controlled.failure = () => undefined;
    const reads = [];
    for (let offset = 0; offset < SIZE; offset += 1 * MIB) reads.push(nbd.read(offset, 1 * MIB));
    const replies = await Promise.all(reads);
    assert.ok(Buffer.concat(replies.map((reply) => reply.data as Buffer)).equals(model), "device matches the model");
  });

  it("at most inFlightRequestsMax requests reach the device at once", async function () {
    await fixture.close();
    fixture = await startNbdFixture(tempDirs, { inFlightRequestsMax: 3 });
    const nbd = await open("disk0-controlled");
    fixture.controlled.delayMs = () => 20;
    const replies = await Promise.all(Array.from({ length: 20 }, (_, index) => nbd.read(index * 4096, 4096)));
    for (const reply of replies) assertOk(reply, "read");
    assert.equal(fixture.controlled.runningMax, 3);
  });

  it("a structured read of a thin range is hole chunks; a mixed range mixes data and hole chunks", async function () {
    const nbd = await open("disk0", { structured: true });
    const fresh = await nbd.read(1 * MIB, 1 * MIB);
    assertOk(fresh, "read of a fresh range");
    assert.deepEqual(fresh.chunks, [{ flags: NBD.REPLY_FLAG_DONE, type: NBD.REPLY_TYPE_OFFSET_HOLE, offset: 1 * MIB, length: 1 * MIB }]);
    assert.ok(fresh.data?.equals(Buffer.alloc(1 * MIB)));

    const data = pattern(64 * KIB, 9);
    assertOk(await nbd.write(1 * MIB + 128 * KIB, data), "write in the middle");
    const mixed = await nbd.read(1 * MIB, 512 * KIB);
    assert.deepEqual(mixed.chunks.map((chunk) => [chunk.type, chunk.offset, chunk.length, chunk.flags]), [
      [NBD.REPLY_TYPE_OFFSET_HOLE, 1 * MIB, 128 * KIB, 0],
      [NBD.REPLY_TYPE_OFFSET_DATA, 1 * MIB + 128 * KIB, 64 * KIB, 0],
      [NBD.REPLY_TYPE_OFFSET_HOLE, 1 * MIB + 192 * KIB, 320 * KIB, NBD.REPLY_FLAG_DONE],
    ]);
    const expected = Buffer.alloc(512 * KIB);
    data.copy(expected, 128 * KIB);
    assert.ok(mixed.data?.equals(expected));

    const unfragmented = await nbd.read(1 * MIB, 512 * KIB, NBD.CMD_FLAG_DF);
    assert.deepEqual(unfragmented.chunks, [{ flags: NBD.REPLY_FLAG_DONE, type: NBD.REPLY_TYPE_OFFSET_DATA, offset: 1 * MIB, length: 512 * KIB }],
      "DF: one data chunk with the zeros in it");
    assert.ok(unfragmented.data?.equals(expected));
  });

  it("block status reports holes as HOLE|ZERO and data as 0, after writes and trims; REQ_ONE gives one extent", async function () {
    const nbd = await open("disk0", { structured: true, baseAllocation: true });
    const fresh = await nbd.blockStatus(0, SIZE);
    assertOk(fresh, "block status");
    assert.equal(fresh.contextId !== undefined && fresh.contextId > 0, true);
    assert.deepEqual(fresh.extents, [{ length: SIZE, flags: NBD.STATE_HOLE | NBD.STATE_ZERO }]);
    assert.equal(fresh.chunks[0]?.flags, NBD.REPLY_FLAG_DONE);

    assertOk(await nbd.write(0, pattern(1 * MIB, 3)), "write 1 MiB");
    assertOk(await nbd.trim(256 * KIB, 256 * KIB), "trim the second quarter");
    const status = await nbd.blockStatus(0, 2 * MIB);
    assert.deepEqual(status.extents, [
      { length: 256 * KIB, flags: 0 },
      { length: 256 * KIB, flags: NBD.STATE_HOLE | NBD.STATE_ZERO },
      { length: 512 * KIB, flags: 0 },
      { length: 1 * MIB, flags: NBD.STATE_HOLE | NBD.STATE_ZERO },
    ]);
    const one = await nbd.blockStatus(0, 2 * MIB, NBD.CMD_FLAG_REQ_ONE);
    assert.deepEqual(one.extents, [{ length: 256 * KIB, flags: 0 }]);
    const short = await nbd.blockStatus(4096, 100, NBD.CMD_FLAG_REQ_ONE);
    assert.deepEqual(short.extents, [{ length: 100, flags: 0 }], "never longer than the request");
    assert.equal((await nbd.blockStatus(SIZE - 4096, 8192)).error, NBD.EINVAL, "beyond the end");
    assert.equal((await nbd.blockStatus(0, 0)).error, NBD.EINVAL, "no valid descriptor for an empty range");
    const trimmed = await nbd.read(256 * KIB, 256 * KIB);
    assert.ok(trimmed.data?.equals(Buffer.alloc(256 * KIB)), "trimmed range reads zeros");
  });

  it("BLOCK_STATUS without a negotiated meta context, or one set for another export, is EINVAL", async function () {
    const structuredOnly = await open("disk0", { structured: true });
    assert.equal((await structuredOnly.blockStatus(0, 4096)).error, NBD.EINVAL);
    const simple = await open("disk0");
    assert.equal((await simple.blockStatus(0, 4096)).error, NBD.EINVAL);
    const other = await NbdTestClient.connect(fixture.port);
    clients.push(other);
    await other.negotiateStructuredReplies();
    await other.metaContext(NBD.OPT_SET_META_CONTEXT, "disk0-ro", ["base:allocation"]);
    await other.go("disk0");
    assert.equal((await other.blockStatus(0, 4096)).error, NBD.EINVAL);
  });

  it("WRITE_ZEROES punches holes by default, keeps them allocated with NO_HOLE, honours FAST_ZERO", async function () {
    const nbd = await open("disk0", { structured: true, baseAllocation: true });
    assertOk(await nbd.write(0, pattern(1 * MIB, 5)), "write");
    assertOk(await nbd.writeZeroes(0, 256 * KIB), "zero, may trim");
    assertOk(await nbd.writeZeroes(256 * KIB, 256 * KIB, NBD.CMD_FLAG_NO_HOLE), "zero, no hole");
    assertOk(await nbd.writeZeroes(512 * KIB, 256 * KIB, NBD.CMD_FLAG_FAST_ZERO | NBD.CMD_FLAG_FUA), "fast zero (trim-based)");
    const original = pattern(1 * MIB, 5);
    assert.equal((await nbd.writeZeroes(768 * KIB, 4 * KIB, NBD.CMD_FLAG_FAST_ZERO | NBD.CMD_FLAG_NO_HOLE)).error, NBD.ENOTSUP,
      "NO_HOLE zeroing writes data: not faster than a WRITE");
    const status = await nbd.blockStatus(0, 1 * MIB);
    assert.deepEqual(status.extents, [
      { length: 256 * KIB, flags: NBD.STATE_HOLE | NBD.STATE_ZERO },
      { length: 256 * KIB, flags: 0 },
      { length: 256 * KIB, flags: NBD.STATE_HOLE | NBD.STATE_ZERO },
      { length: 256 * KIB, flags: 0 },
    ]);
    const read = await nbd.read(0, 1 * MIB);
    assert.ok(read.data?.subarray(0, 768 * KIB).equals(Buffer.alloc(768 * KIB)));
    assert.ok(read.data?.subarray(768 * KIB).equals(original.subarray(768 * KIB)), "the refused fast zero changed nothing");
  });

  it("FUA on WRITE, TRIM and WRITE_ZEROES makes the data durable before the reply; FLUSH too", async function () {
    const nbd = await open("disk0");
    const syncs = (): number => fixture.volume.stats().flushSyncs;
    let before = syncs();
    assertOk(await nbd.write(0, Buffer.alloc(4096, 1), NBD.CMD_FLAG_FUA), "FUA write");
    assert.ok(syncs() > before, "a FUA write syncs");
    before = syncs();
    assertOk(await nbd.write(4096, Buffer.alloc(4096, 2)), "plain write");
    assert.equal(syncs(), before, "a plain write does not");
    assertOk(await nbd.flush(), "flush");
    assert.ok(syncs() > before, "flush syncs");
    before = syncs();
    assertOk(await nbd.trim(8192, 4096, NBD.CMD_FLAG_FUA), "FUA trim");
    assert.ok(syncs() > before, "a FUA trim syncs");
    before = syncs();
    assertOk(await nbd.writeZeroes(8192, 4096, NBD.CMD_FLAG_FUA), "FUA write zeroes");
    assert.ok(syncs() > before, "a FUA write zeroes syncs");
  });

  it("CACHE succeeds and reads nothing back to the client", async function () {
    const nbd = await open("disk0", { structured: true });
    const reply = await nbd.cache(0, 8 * MIB);
    assertOk(reply, "cache");
    assert.equal(reply.data, undefined);
  });

  it("a read-only export refuses WRITE, TRIM and WRITE_ZEROES with EPERM and serves reads", async function () {
    const writer = await open("disk0");
    assertOk(await writer.write(0, Buffer.alloc(4096, 0x33)), "write through the writable export");
    const nbd = await open("disk0-ro", { structured: true });
    assert.equal((await nbd.write(0, Buffer.alloc(512))).error, NBD.EPERM);
    assert.equal((await nbd.trim(0, 512)).error, NBD.EPERM);
    assert.equal((await nbd.writeZeroes(0, 512)).error, NBD.EPERM);
    const read = await nbd.read(0, 4096);
    assert.ok(read.data?.equals(Buffer.alloc(4096, 0x33)));
    assertOk(await nbd.flush(), "flush on a read-only export");
  });

  it("engine errors map to the wire: Io → EIO, Closed → ESHUTDOWN, anything else → EIO", async function () {
    const structured = await open("disk0-controlled", { structured: true });
    const simple = await open("disk0-controlled");
    fixture.controlled.failure = (operation, offset) => {
      if (offset === 4096) return new VolumeError("Io", "checksum mismatch in SCO 7");
      if (offset === 8192) return new VolumeError("Closed", "vDisk closed");
      if (offset === 12288) return new TypeError("a bug below the frontend");
      return undefined;
    };
    const io = await structured.read(4096, 512);
    assert.equal(io.error, NBD.EIO);
    assert.match(io.errorMessage ?? "", /checksum mismatch/);
    assert.equal((await simple.read(4096, 512)).error, NBD.EIO);
    assert.equal((await simple.write(8192, Buffer.alloc(512))).error, NBD.ESHUTDOWN);
    assert.equal((await structured.trim(12288, 512)).error, NBD.EIO);
    assertOk(await structured.read(0, 512), "other requests are unaffected");
  });

  it("a bad request magic disconnects that client only", async function () {
    const bad = await open("disk0");
    const good = await open("disk0");
    bad.rawWrite(Buffer.alloc(28, 0xee));
    await bad.waitForClose();
    assertOk(await good.write(0, Buffer.alloc(4096, 4)), "the other connection still writes");
    assert.ok((await good.read(0, 4096)).data?.equals(Buffer.alloc(4096, 4)));
  });

  it("DISC answers what is in flight, flushes and closes", async function () {
    const nbd = await open("disk0-controlled");
    fixture.controlled.delayMs = (operation) => (operation === "write" ? 100 : 0);
    const syncsBefore = fixture.volume.stats().flushSyncs;
    const write = nbd.write(0, Buffer.alloc(4096, 6));
    void nbd.request(NBD.CMD_DISC, 0, 0);
    assertOk(await write, "the write in flight at DISC is answered");
    await nbd.waitForClose();
    assert.ok(fixture.volume.stats().flushSyncs > syncsBefore, "DISC flushed");
  });

  it("multi-conn: a write completed on connection A is durable after a FLUSH on connection B (crash and reopen)", async function () {
    const a = await open("disk0");
    const b = await open("disk0");
    assert.ok((a.info?.transmissionFlags ?? 0) & NBD.FLAG_CAN_MULTI_CONN);
    const data = pattern(256 * KIB, 77);
    assertOk(await a.write(3 * MIB + 512, data), "write on A");
    assertOk(await b.flush(), "flush on B");
    await fixture.vpool.simulateCrash();
    await fixture.server.close();
    const reopened = await openVPool(fixture.vpoolConfig);
    try {
      const volume = reopened.getVolume("disk0");
      assert.ok(volume);
      assert.ok((await volume.read(3 * MIB + 512, data.length)).equals(data), "the write survived the crash");
    } finally {
      await reopened.close();
    }
  });

  it("server close answers in-flight requests, then closes the connection", async function () {
    const nbd = await open("disk0-controlled");
    fixture.controlled.delayMs = () => 200;
    const read = nbd.read(0, 4096);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closing = fixture.server.close();
    assertOk(await read, "the request in flight at close is answered");
    await closing;
    await nbd.waitForClose();
  });
});

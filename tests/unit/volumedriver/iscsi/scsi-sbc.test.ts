// Goal: every SBC-4 command we serve does what iscsi-test-cu checks (named like its tests), over a
// real engine volume: each write path is read back and compared, out-of-range and invalid fields
// get the right sense, FUA reaches the device, COMPARE AND WRITE is atomic against other writes.
import assert from "node:assert/strict";
import { type BlockDevice, type BlockExtent, VolumeError, type WriteOptions, type WriteZeroesOptions } from "../../../../volumedriver/src/engine/block-device.ts";
import { OPCODE } from "../../../../volumedriver/src/frontends/iscsi/scsi/cdb.ts";
import { SCSI_STATUS } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-types.ts";
import { ReadOnlyDevice } from "../nbd/nbd-fixture.ts";
import {
  BLOCK, CAPACITY_BLOCKS, cdb10, cdb12, cdb16, cdb6, clearUnitAttentions, expectGood, expectSense, pattern, run,
  type ScsiFixture, startScsiFixture, TempDirs,
} from "./scsi-fixture.ts";

/** Records what reached the device (offsets and FUA) and can hold reads back. */
class RecordingDevice implements BlockDevice {
  readonly readOnly = false;
  readonly log: string[] = [];
  readDelayMs = 0;
  constructor(private readonly inner: BlockDevice) {}
  get name(): string { return this.inner.name; }
  get sizeBytes(): number { return this.inner.sizeBytes; }
  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.log.push(`read ${offsetBytes}`);
    if (this.readDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.readDelayMs));
    return this.inner.read(offsetBytes, lengthBytes);
  }
  async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.log.push(`write ${offsetBytes} fua=${options?.fua === true}`);
    await this.inner.write(offsetBytes, data, options);
  }
  flush(): Promise<void> { this.log.push("flush"); return this.inner.flush(); }
  trim(offsetBytes: number, lengthBytes: number): Promise<void> { this.log.push(`trim ${offsetBytes} ${lengthBytes}`); return this.inner.trim(offsetBytes, lengthBytes); }
  writeZeroes(offsetBytes: number, lengthBytes: number, options?: WriteZeroesOptions): Promise<void> {
    this.log.push(`writeZeroes ${offsetBytes} ${lengthBytes}`);
    return this.inner.writeZeroes(offsetBytes, lengthBytes, options);
  }
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> { return this.inner.blockStatus(offsetBytes, lengthBytes); }
}

describe("SCSI SBC-4 block commands", function () {
  this.timeout(120_000);
  const tempDirs = new TempDirs("scsi-sbc");
  let fixture: ScsiFixture;
  let device: RecordingDevice;

  beforeEach(async () => {
    fixture = await startScsiFixture(tempDirs, { device: (volume) => (device = new RecordingDevice(volume)) });
    await clearUnitAttentions(fixture.target);
  });
  afterEach(async () => {
    await fixture.close();
  });
  after(async () => {
    await tempDirs.removeAll();
  });

  async function readBlocks(lba: number, blocks: number): Promise<Buffer> {
    return expectGood(await run(fixture.target, cdb16(OPCODE.READ_16, lba, blocks)));
  }

  it("test_readcapacity10_simple", async () => {
    const data = expectGood(await run(fixture.target, Buffer.from([OPCODE.READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
    assert.equal(data.readUInt32BE(0), CAPACITY_BLOCKS - 1);
    assert.equal(data.readUInt32BE(4), BLOCK);
    const bad = Buffer.from([OPCODE.READ_CAPACITY_10, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    expectSense(await run(fixture.target, bad), "InvalidFieldInCdb");
  });

  it("test_readcapacity16_simple", async () => {
    const cdb = cdb16(OPCODE.SERVICE_ACTION_IN_16, 0, 32, 0x10);
    const data = expectGood(await run(fixture.target, cdb));
    assert.equal(data.length, 32);
    assert.equal(data.readBigUInt64BE(0), BigInt(CAPACITY_BLOCKS - 1));
    assert.equal(data.readUInt32BE(8), BLOCK);
    assert.equal(data[13] & 0x0f, 0, "one logical block per physical block (the 4 KiB cluster is a Block Limits granularity hint)");
    assert.equal(data[14] & 0xc0, 0xc0, "LBPME and LBPRZ");
  });

  it("test_readcapacity16_alloclen", async () => {
    for (let allocation = 0; allocation < 16; allocation++) {
      const data = expectGood(await run(fixture.target, cdb16(OPCODE.SERVICE_ACTION_IN_16, 0, allocation, 0x10)));
      assert.equal(data.length, allocation);
    }
  });

  it("test_write6_read6_simple", async () => {
    const data = pattern(4, 6);
    expectGood(await run(fixture.target, cdb6(OPCODE.WRITE_6, 100, 4), { dataOut: data }));
    assert.deepEqual(expectGood(await run(fixture.target, cdb6(OPCODE.READ_6, 100, 4))), data);
    // TRANSFER LENGTH 0 means 256 blocks for the 6-byte commands (SBC-4 §5.15).
    const full = expectGood(await run(fixture.target, cdb6(OPCODE.READ_6, 0, 0)));
    assert.equal(full.length, 256 * BLOCK);
  });

  it("test_write10_simple / test_write12_simple / test_write16_simple read back", async () => {
    for (const [build, opcode, read, lba] of [
      [cdb10, OPCODE.WRITE_10, OPCODE.READ_10, 7], [cdb12, OPCODE.WRITE_12, OPCODE.READ_12, 1000], [cdb16, OPCODE.WRITE_16, OPCODE.READ_16, 20_001],
    ] as const) {
      const data = pattern(9, lba);
      expectGood(await run(fixture.target, build(opcode, lba, 9), { dataOut: data }));
      assert.deepEqual(expectGood(await run(fixture.target, build(read, lba, 9))), data);
    }
  });

  it("test_read10_beyond_eol / test_read16_beyond_eol / test_write10_beyond_eol", async () => {
    expectSense(await run(fixture.target, cdb10(OPCODE.READ_10, CAPACITY_BLOCKS - 1, 2)), "LbaOutOfRange");
    expectSense(await run(fixture.target, cdb10(OPCODE.READ_10, 0xffffffff, 1)), "LbaOutOfRange");
    expectSense(await run(fixture.target, cdb16(OPCODE.READ_16, 0xffffffffffffffffn, 1)), "LbaOutOfRange");
    expectSense(await run(fixture.target, cdb16(OPCODE.READ_16, 1n << 63n, 1)), "LbaOutOfRange");
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_10, CAPACITY_BLOCKS, 1), { dataOut: pattern(1, 1) }), "LbaOutOfRange");
    // The last block itself is in range.
    expectGood(await run(fixture.target, cdb10(OPCODE.READ_10, CAPACITY_BLOCKS - 1, 1)));
  });

  it("test_read10_0blocks", async () => {
    assert.equal(expectGood(await run(fixture.target, cdb10(OPCODE.READ_10, 0, 0))).length, 0);
    expectGood(await run(fixture.target, cdb10(OPCODE.READ_10, CAPACITY_BLOCKS, 0)));
    expectSense(await run(fixture.target, cdb10(OPCODE.READ_10, CAPACITY_BLOCKS + 1, 0)), "LbaOutOfRange");
    expectSense(await run(fixture.target, cdb10(OPCODE.READ_10, 0x80000000, 0)), "LbaOutOfRange");
  });

  it("test_read10_rdprotect / test_write10_wrprotect", async () => {
    for (let protect = 1; protect < 8; protect++) {
      expectSense(await run(fixture.target, cdb10(OPCODE.READ_10, 0, 1, protect << 5)), "InvalidFieldInCdb");
      expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_10, 0, 1, protect << 5), { dataOut: pattern(1, 2) }), "InvalidFieldInCdb");
    }
  });

  it("test_read10_dpofua / test_write10_dpofua: DPO ignored, FUA write reaches the device as FUA", async () => {
    expectGood(await run(fixture.target, cdb10(OPCODE.READ_10, 0, 1, 0x18)));
    const data = pattern(2, 3);
    device.log.length = 0;
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 40, 2, 0x18), { dataOut: data }));
    assert.deepEqual(device.log, [`write ${40 * BLOCK} fua=true`]);
    device.log.length = 0;
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_16, 40, 2), { dataOut: data }));
    assert.deepEqual(device.log, [`write ${40 * BLOCK} fua=false`]);
    assert.deepEqual(await readBlocks(40, 2), data);
  });

  it("test_write10_residuals: an EDTL below the CDB writes only the whole blocks sent", async () => {
    const before = await readBlocks(60, 2);
    // Data-Out ending inside a block: INVALID FIELD IN INFORMATION UNIT, nothing written, overflow reported.
    const partial = await run(fixture.target, cdb10(OPCODE.WRITE_10, 60, 2), { dataOut: pattern(2, 9).subarray(0, BLOCK + 200) });
    expectSense(partial, "InvalidFieldInInformationUnit");
    assert.equal(partial.transferLengthBytes, 2 * BLOCK, "the CDB's length, for the transport's residual");
    assert.deepEqual(await readBlocks(60, 2), before);
    // No Data-Out at all: GOOD, nothing written.
    const none = await run(fixture.target, cdb10(OPCODE.WRITE_10, 60, 2), { edtl: 0 });
    expectGood(none);
    assert.equal(none.transferLengthBytes, 2 * BLOCK);
    assert.deepEqual(await readBlocks(60, 2), before);
    // One whole block of the two: the first is written, the second keeps its data.
    const one = pattern(1, 11);
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 60, 2), { dataOut: one }));
    assert.deepEqual(await readBlocks(60, 2), Buffer.concat([one, before.subarray(BLOCK)]));
    // More Data-Out than the CDB asks for (underflow): the CDB's blocks are written.
    const data = pattern(3, 10);
    const underflow = await run(fixture.target, cdb10(OPCODE.WRITE_10, 60, 2), { dataOut: data });
    expectGood(underflow);
    assert.equal(underflow.transferLengthBytes, 2 * BLOCK);
    assert.deepEqual(await readBlocks(60, 2), data.subarray(0, 2 * BLOCK));
  });

  it("test_compareandwrite_datalength: Data-Out other than twice the blocks is INVALID FIELD IN CDB", async () => {
    const before = await readBlocks(70, 1);
    // 256 blocks wrap to 0 in the one-byte field: the Data-Out then cannot match.
    expectSense(await run(fixture.target, cdb16(OPCODE.COMPARE_AND_WRITE, 70, 0), { dataOut: Buffer.concat([before, before]) }), "InvalidFieldInCdb");
    expectSense(await run(fixture.target, cdb16(OPCODE.COMPARE_AND_WRITE, 70, 1), { dataOut: before }), "InvalidFieldInCdb");
    assert.deepEqual(await readBlocks(70, 1), before);
    expectGood(await run(fixture.target, cdb16(OPCODE.COMPARE_AND_WRITE, 70, 0), { dataOut: Buffer.alloc(0) }));
  });

  it("test_read10_residuals: Data-In never exceeds the expected transfer length", async () => {
    const result = await run(fixture.target, cdb10(OPCODE.READ_10, 0, 4), { edtl: 700 });
    assert.equal(expectGood(result).length, 700);
    assert.equal(result.transferLengthBytes, 4 * BLOCK, "the CDB's length, for the transport's overflow residual");
  });

  it("test_prefetch10 / test_prefetch16: reads the range ahead, GOOD, range checked, IMMED answers first", async () => {
    device.log.length = 0;
    expectGood(await run(fixture.target, cdb10(OPCODE.PRE_FETCH_10, 16, 8)));
    assert.deepEqual(device.log, [`read ${16 * BLOCK}`]);
    device.log.length = 0;
    expectGood(await run(fixture.target, cdb16(OPCODE.PRE_FETCH_16, 32, 8)));
    assert.deepEqual(device.log, [`read ${32 * BLOCK}`]);
    expectSense(await run(fixture.target, cdb10(OPCODE.PRE_FETCH_10, CAPACITY_BLOCKS - 4, 8)), "LbaOutOfRange");
    // IMMED: GOOD before the read has finished.
    device.readDelayMs = 200;
    device.log.length = 0;
    const startedMs = Date.now();
    expectGood(await run(fixture.target, cdb10(OPCODE.PRE_FETCH_10, 64, 8, 0x02)));
    assert.ok(Date.now() - startedMs < 150, "IMMED does not wait for the read");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(device.log, [`read ${64 * BLOCK}`]);
    device.readDelayMs = 0;
  });

  it("test_read10_max_transfer_length", async () => {
    expectSense(await run(fixture.target, cdb16(OPCODE.READ_16, 0, 65_537)), "InvalidFieldInCdb");
  });

  it("test_write10_writeprotect", async () => {
    const readOnly = await startScsiFixture(tempDirs, { device: (volume) => new ReadOnlyDevice(volume) });
    try {
      await clearUnitAttentions(readOnly.target);
      expectSense(await run(readOnly.target, cdb10(OPCODE.WRITE_10, 0, 1), { dataOut: pattern(1, 1) }), "WriteProtected");
      expectSense(await run(readOnly.target, cdb10(OPCODE.WRITE_SAME_10, 0, 1), { dataOut: pattern(1, 1) }), "WriteProtected");
      expectSense(await run(readOnly.target, cdb16(OPCODE.COMPARE_AND_WRITE, 0, 0), { dataOut: Buffer.alloc(0) }), "WriteProtected");
      expectGood(await run(readOnly.target, cdb10(OPCODE.READ_10, 0, 1)));
      const modeSense = expectGood(await run(readOnly.target, Buffer.from([OPCODE.MODE_SENSE_6, 0, 0x3f, 0, 255, 0])));
      assert.equal(modeSense[2] & 0x80, 0x80, "WP in the device-specific parameter");
    } finally {
      await readOnly.close();
    }
  });

  it("test_verify10_simple / test_verify12_simple / test_verify16_simple", async () => {
    const data = pattern(5, 4);
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 300, 5), { dataOut: data }));
    expectGood(await run(fixture.target, cdb10(OPCODE.VERIFY_10, 300, 5, 0x02), { dataOut: data }));
    expectGood(await run(fixture.target, cdb12(OPCODE.VERIFY_12, 300, 5, 0x02), { dataOut: data }));
    expectGood(await run(fixture.target, cdb16(OPCODE.VERIFY_16, 300, 5, 0x02), { dataOut: data }));
    expectGood(await run(fixture.target, cdb10(OPCODE.VERIFY_10, 300, 5)));
    expectSense(await run(fixture.target, cdb10(OPCODE.VERIFY_10, 300, 5, 0x04)), "InvalidFieldInCdb");
  });

  it("test_verify10_mismatch: MISCOMPARE with the offset in INFORMATION", async () => {
    const data = pattern(4, 5);
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 500, 4), { dataOut: data }));
    const altered = Buffer.from(data);
    altered[1234] ^= 0x58;
    const sense = expectSense(await run(fixture.target, cdb10(OPCODE.VERIFY_10, 500, 4, 0x02), { dataOut: altered }), "MiscompareDuringVerify");
    assert.equal(sense[0] & 0x80, 0x80, "VALID");
    assert.equal(sense.readUInt32BE(3), 1234);
  });

  it("test_verify10_mismatch_no_cmp: BYTCHK 0 does not compare", async () => {
    expectGood(await run(fixture.target, cdb10(OPCODE.VERIFY_10, 500, 4)));
  });

  it("test_verify16_beyond_eol", async () => {
    expectSense(await run(fixture.target, cdb16(OPCODE.VERIFY_16, CAPACITY_BLOCKS, 1)), "LbaOutOfRange");
  });

  it("test_writeverify10_simple / 12 / 16 read back", async () => {
    for (const [build, opcode, lba] of [[cdb10, OPCODE.WRITE_AND_VERIFY_10, 700], [cdb12, OPCODE.WRITE_AND_VERIFY_12, 720], [cdb16, OPCODE.WRITE_AND_VERIFY_16, 740]] as const) {
      const data = pattern(3, lba);
      expectGood(await run(fixture.target, build(opcode, lba, 3, 0x02), { dataOut: data }));
      assert.deepEqual(await readBlocks(lba, 3), data);
    }
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_AND_VERIFY_10, CAPACITY_BLOCKS, 1), { dataOut: pattern(1, 1) }), "LbaOutOfRange");
  });

  it("test_synchronizecache10_simple / test_synchronizecache16_simple", async () => {
    device.log.length = 0;
    expectGood(await run(fixture.target, cdb10(OPCODE.SYNCHRONIZE_CACHE_10, 0, 0)));
    expectGood(await run(fixture.target, cdb16(OPCODE.SYNCHRONIZE_CACHE_16, 10, 100, 0x02)));
    assert.deepEqual(device.log, ["flush", "flush"]);
    expectSense(await run(fixture.target, cdb16(OPCODE.SYNCHRONIZE_CACHE_16, CAPACITY_BLOCKS, 1)), "LbaOutOfRange");
  });

  function unmapList(ranges: Array<[number, number]>, descriptorLength = 16 * ranges.length): Buffer {
    const list = Buffer.alloc(8 + 16 * ranges.length);
    list.writeUInt16BE(list.length - 2, 0);
    list.writeUInt16BE(descriptorLength, 2);
    ranges.forEach(([lba, blocks], index) => {
      list.writeBigUInt64BE(BigInt(lba), 8 + 16 * index);
      list.writeUInt32BE(blocks, 16 + 16 * index);
    });
    return list;
  }

  function unmapCdb(listLength: number): Buffer {
    const cdb = Buffer.alloc(10);
    cdb[0] = OPCODE.UNMAP;
    cdb.writeUInt16BE(listLength, 7);
    return cdb;
  }

  it("test_unmap_simple: unmapped blocks read as zeros and report deallocated", async () => {
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 0, 256), { dataOut: pattern(256, 11) }));
    for (const blocks of [1, 7, 8, 9, 64, 256]) {
      expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 0, 256), { dataOut: pattern(256, blocks) }));
      const list = unmapList([[0, blocks]]);
      expectGood(await run(fixture.target, unmapCdb(list.length), { dataOut: list }));
      const data = await readBlocks(0, 256);
      assert.ok(data.subarray(0, blocks * BLOCK).every((byte) => byte === 0), `${blocks} blocks read as zeros`);
      assert.deepEqual(data.subarray(blocks * BLOCK), pattern(256, blocks).subarray(blocks * BLOCK), "the rest is untouched");
    }
    // Several descriptors in one list.
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 0, 64), { dataOut: pattern(64, 3) }));
    const list = unmapList([[0, 8], [16, 8], [40, 8]]);
    expectGood(await run(fixture.target, unmapCdb(list.length), { dataOut: list }));
    const data = await readBlocks(0, 64);
    for (const [lba, blocks] of [[0, 8], [16, 8], [40, 8]]) assert.ok(data.subarray(lba * BLOCK, (lba + blocks) * BLOCK).every((byte) => byte === 0));
    assert.deepEqual(data.subarray(8 * BLOCK, 16 * BLOCK), pattern(64, 3).subarray(8 * BLOCK, 16 * BLOCK));
  });

  it("test_unmap_0blocks / parameter list checks", async () => {
    expectGood(await run(fixture.target, unmapCdb(0)));
    const empty = unmapList([[0, 0]]);
    expectGood(await run(fixture.target, unmapCdb(empty.length), { dataOut: empty }));
    expectSense(await run(fixture.target, unmapCdb(6), { dataOut: Buffer.alloc(6) }), "ParameterListLengthError");
    const beyond = unmapList([[CAPACITY_BLOCKS - 1, 2]]);
    expectSense(await run(fixture.target, unmapCdb(beyond.length), { dataOut: beyond }), "LbaOutOfRange");
    const tooMany = unmapList(Array.from({ length: 257 }, (_, index) => [index, 1] as [number, number]));
    expectSense(await run(fixture.target, unmapCdb(tooMany.length), { dataOut: tooMany }), "InvalidFieldInParameterList");
    const anchor = unmapCdb(empty.length);
    anchor[1] = 0x01;
    expectSense(await run(fixture.target, anchor, { dataOut: empty }), "InvalidFieldInCdb");
  });

  it("test_writesame10_simple / test_writesame16_simple: the pattern repeats over the range", async () => {
    const block = pattern(1, 42);
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_SAME_10, 1000, 300), { dataOut: block }));
    const data = await readBlocks(1000, 300);
    for (let index = 0; index < 300; index++) assert.deepEqual(data.subarray(index * BLOCK, (index + 1) * BLOCK), block);
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_SAME_16, CAPACITY_BLOCKS - 3, 3), { dataOut: block }));
    assert.deepEqual(await readBlocks(CAPACITY_BLOCKS - 3, 3), Buffer.concat([block, block, block]));
  });

  it("test_writesame10_unmap / test_writesame16_unmap: zeros with UNMAP deallocate", async () => {
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 2048, 64), { dataOut: pattern(64, 1) }));
    device.log.length = 0;
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_SAME_10, 2048, 64, 0x08), { dataOut: Buffer.alloc(BLOCK) }));
    assert.deepEqual(device.log, [`trim ${2048 * BLOCK} ${64 * BLOCK}`]);
    assert.ok((await readBlocks(2048, 64)).every((byte) => byte === 0));
    // Zeros without UNMAP stay mapped (writeZeroes), non-zero data with UNMAP is written.
    device.log.length = 0;
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_SAME_16, 2048, 8), { dataOut: Buffer.alloc(BLOCK) }));
    assert.deepEqual(device.log, [`writeZeroes ${2048 * BLOCK} ${8 * BLOCK}`]);
    const block = pattern(1, 5);
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_SAME_16, 2048, 2, 0x08), { dataOut: block }));
    assert.deepEqual(await readBlocks(2048, 2), Buffer.concat([block, block]));
  });

  it("test_writesame16_ndob: no Data-Out, zeros", async () => {
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 3000, 8), { dataOut: pattern(8, 2) }));
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_SAME_16, 3000, 8, 0x09)));
    assert.ok((await readBlocks(3000, 8)).every((byte) => byte === 0));
  });

  it("test_writesame10_0blocks / beyond_eol / anchor / invalid_dataout_size", async () => {
    const block = Buffer.alloc(BLOCK);
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_SAME_10, 0, 0), { dataOut: block }), "InvalidFieldInCdb");
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_SAME_10, CAPACITY_BLOCKS, 1), { dataOut: block }), "LbaOutOfRange");
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_SAME_10, 0, 1, 0x10), { dataOut: block }), "InvalidFieldInCdb");
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_SAME_10, 0, 1, 0x18), { dataOut: block }), "InvalidFieldInCdb");
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_SAME_10, 0, 1, 0x08), { dataOut: Buffer.alloc(BLOCK / 2) }), "InvalidFieldInCdb");
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_SAME_10, 0, 1, 0x08), { dataOut: Buffer.alloc(BLOCK * 2) }), "InvalidFieldInCdb");
  });

  function compareAndWriteCdb(lba: number, blocks: number, byte1 = 0): Buffer {
    const cdb = Buffer.alloc(16);
    cdb[0] = OPCODE.COMPARE_AND_WRITE;
    cdb[1] = byte1;
    cdb.writeBigUInt64BE(BigInt(lba), 2);
    cdb[13] = blocks;
    return cdb;
  }

  it("test_compareandwrite_simple", async () => {
    for (const [lba, blocks] of [[0, 1], [100, 8], [CAPACITY_BLOCKS - 255, 255]]) {
      const old = pattern(blocks, 1);
      const next = pattern(blocks, 2);
      expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_16, lba, blocks), { dataOut: old }));
      expectGood(await run(fixture.target, compareAndWriteCdb(lba, blocks), { dataOut: Buffer.concat([old, next]) }));
      assert.deepEqual(await readBlocks(lba, blocks), next);
    }
  });

  it("test_compareandwrite_miscompare: data unchanged, offset in INFORMATION", async () => {
    const old = pattern(2, 1);
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_16, 10, 2), { dataOut: old }));
    const expected = Buffer.from(old);
    expected[2 * BLOCK - 27] ^= 0xff;
    const sense = expectSense(await run(fixture.target, compareAndWriteCdb(10, 2), { dataOut: Buffer.concat([expected, pattern(2, 3)]) }), "MiscompareDuringVerify");
    assert.equal(sense.readUInt32BE(3), 2 * BLOCK - 27);
    assert.deepEqual(await readBlocks(10, 2), old);
  });

  it("test_compareandwrite_invalid_dataout_size / beyond_eol / dpofua", async () => {
    const old = pattern(1, 1);
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_16, 0, 1), { dataOut: old }));
    expectSense(await run(fixture.target, compareAndWriteCdb(0, 1), { dataOut: Buffer.alloc(4 * BLOCK) }), "InvalidFieldInCdb");
    expectSense(await run(fixture.target, compareAndWriteCdb(CAPACITY_BLOCKS, 1), { dataOut: Buffer.alloc(2 * BLOCK) }), "LbaOutOfRange");
    device.log.length = 0;
    expectGood(await run(fixture.target, compareAndWriteCdb(0, 1, 0x18), { dataOut: Buffer.concat([old, pattern(1, 9)]) }));
    assert.deepEqual(device.log, ["read 0", "write 0 fua=true"]);
  });

  it("test_compareandwrite_atomic: a write to the range waits for the compare and write", async () => {
    const old = pattern(8, 1);
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_16, 800, 8), { dataOut: old }));
    device.readDelayMs = 100;
    device.log.length = 0;
    const atomic = run(fixture.target, compareAndWriteCdb(800, 8), { dataOut: Buffer.concat([old, pattern(8, 2)]) });
    await new Promise((resolve) => setTimeout(resolve, 10));
    const later = pattern(4, 3);
    const plain = run(fixture.target, cdb16(OPCODE.WRITE_16, 802, 4), { dataOut: later });
    // A write elsewhere is not held up.
    expectGood(await run(fixture.target, cdb16(OPCODE.WRITE_16, 4000, 1), { dataOut: pattern(1, 4) }));
    expectGood(await atomic);
    expectGood(await plain);
    device.readDelayMs = 0;
    assert.deepEqual(device.log.filter((entry) => !entry.startsWith("write 2048000")), [`read ${800 * BLOCK}`, `write ${800 * BLOCK} fua=false`, `write ${802 * BLOCK} fua=false`]);
    const expected = pattern(8, 2);
    later.copy(expected, 2 * BLOCK);
    assert.deepEqual(await readBlocks(800, 8), expected);
  });

  it("test_get_lba_status_simple / test_get_lba_status_unmap_single", async () => {
    const lbaStatus = (lba: number, allocation = 1024) => cdb16(OPCODE.SERVICE_ACTION_IN_16, lba, allocation, 0x12);
    let data = expectGood(await run(fixture.target, lbaStatus(0)));
    assert.equal(data.readBigUInt64BE(8), 0n);
    assert.equal(data[8 + 12], 1, "a fresh volume is deallocated");
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 0, 264), { dataOut: pattern(264, 1) }));
    const list = Buffer.alloc(24);
    list.writeUInt16BE(22, 0);
    list.writeUInt16BE(16, 2);
    list.writeBigUInt64BE(8n, 8);
    list.writeUInt32BE(8, 16);
    expectGood(await run(fixture.target, unmapCdb(24), { dataOut: list }));
    data = expectGood(await run(fixture.target, lbaStatus(0)));
    const descriptors = (data.readUInt32BE(0) - 4) / 16;
    const parsed = Array.from({ length: descriptors }, (_, index) => [Number(data.readBigUInt64BE(8 + 16 * index)), data.readUInt32BE(16 + 16 * index), data[20 + 16 * index]]);
    assert.deepEqual(parsed.slice(0, 3), [[0, 8, 0], [8, 8, 1], [16, 248, 0]]);
    data = expectGood(await run(fixture.target, lbaStatus(16, 24)));
    assert.equal(data.length, 24);
    assert.deepEqual([Number(data.readBigUInt64BE(8)), data[20]], [16, 0]);
  });

  it("test_get_lba_status_beyond_eol", async () => {
    expectSense(await run(fixture.target, cdb16(OPCODE.SERVICE_ACTION_IN_16, CAPACITY_BLOCKS, 24, 0x12)), "LbaOutOfRange");
    expectGood(await run(fixture.target, cdb16(OPCODE.SERVICE_ACTION_IN_16, CAPACITY_BLOCKS - 1, 24, 0x12)));
  });

  it("test_write10_io_error maps to MEDIUM ERROR, never throws", async () => {
    const original = device.write.bind(device);
    device.write = async () => { throw new VolumeError("Io", "injected"); };
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_10, 0, 1), { dataOut: pattern(1, 1) }), "WriteError");
    device.write = original;
    const originalRead = device.read.bind(device);
    device.read = async () => { throw new Error("bug"); };
    expectSense(await run(fixture.target, cdb10(OPCODE.READ_10, 0, 1)), "InternalTargetFailure");
    device.read = async () => { throw new VolumeError("Closed", "closed"); };
    expectSense(await run(fixture.target, cdb10(OPCODE.READ_10, 0, 1)), "LogicalUnitOffline");
    device.read = originalRead;
    assert.equal((await run(fixture.target, cdb10(OPCODE.READ_10, 0, 1))).status, SCSI_STATUS.GOOD);
  });
});

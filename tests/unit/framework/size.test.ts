// Goal: a vDisk size means the same thing at the CLI, the framework API and the StorageDriver:
// binary units, whole numbers, a multiple of 4 KiB, at most 64 TiB, and every refusal says what to write.
import assert from "node:assert/strict";
import { formatSizeBytes, GIB, KIB, MIB, parseSizeBytes, parseVdiskSizeBytes, SizeError, TIB, VDISK_SIZE_BYTES_MAX, vdiskSizeProblem } from "../../../volumedriver/src/storagedriver/size.ts";

describe("framework: size parsing", function () {
  it("parses plain bytes and binary units in any case, with or without iB", function () {
    const cases: Array<[string | number, number]> = [
      ["4096", 4096], [4096, 4096], ["4096B", 4096], ["4K", 4 * KIB], ["4k", 4 * KIB], ["4KiB", 4 * KIB],
      ["512M", 512 * MIB], ["512mib", 512 * MIB], ["10G", 10 * GIB], ["10 GiB", 10 * GIB], [" 10Gi ", 10 * GIB],
      ["64T", 64 * TIB], ["0", 0],
    ];
    for (const [input, expected] of cases) {
      assert.equal(parseSizeBytes(input), expected, `parseSizeBytes(${JSON.stringify(input)})`);
    }
  });

  it("refuses decimal units, naming the binary one to use", function () {
    assert.throws(() => parseSizeBytes("10GB"), (error: Error) => error instanceof SizeError && /use G or GiB/.test(error.message));
    assert.throws(() => parseSizeBytes("1mb"), /use M or MiB/);
  });

  it("refuses fractions, unknown units, negative and non-integral numbers and garbage", function () {
    assert.throws(() => parseSizeBytes("1.5G"), /whole number of a smaller unit/);
    assert.throws(() => parseSizeBytes("10X"), /use K, M, G or T/);
    assert.throws(() => parseSizeBytes("-1"), /not a size/);
    assert.throws(() => parseSizeBytes("ten"), /not a size/);
    assert.throws(() => parseSizeBytes(""), /not a size/);
    assert.throws(() => parseSizeBytes(-4096), /not a whole number of bytes/);
    assert.throws(() => parseSizeBytes(4096.5), /not a whole number of bytes/);
    assert.throws(() => parseSizeBytes("99999999999999999999T"), /too large/);
  });

  it("checks vDisk limits: > 0, a multiple of 4096, at most 64 TiB", function () {
    assert.equal(vdiskSizeProblem(4096), undefined);
    assert.equal(vdiskSizeProblem(VDISK_SIZE_BYTES_MAX), undefined);
    assert.match(vdiskSizeProblem(0) ?? "", /greater than 0/);
    assert.match(vdiskSizeProblem(5000) ?? "", /not a multiple of 4096.*use 8192/);
    assert.match(vdiskSizeProblem(VDISK_SIZE_BYTES_MAX + 4096) ?? "", /exceeds the largest vDisk, 64 TiB/);
    assert.equal(parseVdiskSizeBytes("10G"), 10 * GIB);
    assert.throws(() => parseVdiskSizeBytes("65T"), SizeError);
    assert.throws(() => parseVdiskSizeBytes("1000"), /multiple of 4096/);
  });

  it("formats sizes with the largest binary unit", function () {
    assert.equal(formatSizeBytes(10 * GIB), "10 GiB");
    assert.equal(formatSizeBytes(512 * MIB), "512 MiB");
    assert.equal(formatSizeBytes(1536 * MIB), "1.5 GiB");
    assert.equal(formatSizeBytes(64 * TIB), "64 TiB");
    assert.equal(formatSizeBytes(4 * KIB), "4 KiB");
    assert.equal(formatSizeBytes(1000), "1000 B");
  });
});

// Goal: iSCSI text (RFC 7143 §6) parses and encodes key=value pairs with their bounds, rejects
// malformed text, and gathers text continued over PDUs (C bit), even split inside a pair.
import assert from "node:assert/strict";
import {
  decodeText, encodeText, parseBinary, parseNumber, splitText, TEXT_EXCHANGE_BYTES_MAX, TEXT_KEY_BYTES_MAX, TEXT_VALUE_BYTES_MAX,
  TextAccumulator, TextFormatError,
} from "../../../../volumedriver/src/frontends/iscsi/iscsi-text.ts";

describe("iSCSI text", () => {
  it("test_text_round_trip", () => {
    const pairs = [{ key: "InitiatorName", value: "iqn.2026-11.org.example:host" }, { key: "SendTargets", value: "" }, { key: "X-Vendor.key", value: "a=b" }];
    const encoded = encodeText(pairs);
    assert.equal(encoded.toString(), "InitiatorName=iqn.2026-11.org.example:host\0SendTargets=\0X-Vendor.key=a=b\0");
    assert.deepEqual(decodeText(encoded), pairs);
  });

  it("test_text_tolerates_missing_final_nul_and_trailing_zeros", () => {
    assert.deepEqual(decodeText(Buffer.from("A=1\0B=2")), [{ key: "A", value: "1" }, { key: "B", value: "2" }]);
    assert.deepEqual(decodeText(Buffer.from("A=1\0\0\0")), [{ key: "A", value: "1" }]);
    assert.deepEqual(decodeText(Buffer.alloc(0)), []);
  });

  it("test_text_rejects_malformed_entries", () => {
    for (const bad of ["novalue\0", "=x\0", "bad key=1\0", `${"K".repeat(TEXT_KEY_BYTES_MAX + 1)}=1\0`, `K=${"v".repeat(TEXT_VALUE_BYTES_MAX + 1)}\0`]) {
      assert.throws(() => decodeText(Buffer.from(bad)), TextFormatError, bad.slice(0, 20));
    }
    assert.throws(() => decodeText(Buffer.alloc(TEXT_EXCHANGE_BYTES_MAX + 1, 0x41)), TextFormatError);
  });

  it("test_text_continuation_across_pdus_split_inside_a_pair", () => {
    const text = encodeText([{ key: "HeaderDigest", value: "CRC32C,None" }, { key: "MaxBurstLength", value: "262144" }]);
    const accumulator = new TextAccumulator();
    assert.equal(accumulator.append(text.subarray(0, 5), true), undefined);
    assert.equal(accumulator.pending, true);
    assert.equal(accumulator.append(text.subarray(5, 20), true), undefined);
    assert.deepEqual(accumulator.append(text.subarray(20), false), [
      { key: "HeaderDigest", value: "CRC32C,None" }, { key: "MaxBurstLength", value: "262144" },
    ]);
    assert.equal(accumulator.pending, false);
  });

  it("test_text_continuation_is_bounded", () => {
    const accumulator = new TextAccumulator();
    const chunk = Buffer.alloc(16 * 1024, 0x41);
    assert.throws(() => {
      for (let index = 0; index < 8; index++) accumulator.append(chunk, true);
    }, TextFormatError);
    assert.equal(accumulator.pending, false, "a refused exchange is dropped");
  });

  it("test_text_split_into_segments", () => {
    const text = Buffer.alloc(1000, 0x41);
    const segments = splitText(text, 300);
    assert.deepEqual(segments.map((segment) => segment.length), [300, 300, 300, 100]);
    assert.deepEqual(Buffer.concat(segments), text);
  });

  it("test_text_numbers_and_binary_values", () => {
    assert.equal(parseNumber("8192"), 8192);
    assert.equal(parseNumber("0x2000"), 8192);
    assert.equal(parseNumber("-1"), undefined);
    assert.equal(parseNumber("12a"), undefined);
    assert.equal(parseNumber("9".repeat(20)), undefined);
    assert.deepEqual(parseBinary("0x0a0b"), Buffer.from([10, 11]));
    assert.deepEqual(parseBinary("0xabc"), Buffer.from([0x0a, 0xbc]));
    assert.deepEqual(parseBinary("0bAQID"), Buffer.from([1, 2, 3]));
    assert.equal(parseBinary("0xzz"), undefined);
    assert.equal(parseBinary("abc"), undefined);
  });
});

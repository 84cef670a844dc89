// Goal: every iSCSI PDU we send or receive encodes and decodes to the same fields (RFC 7143 §11),
// the byte layout matches hand-built headers, AHS and padding frame correctly, and CRC-32C digests
// match the RFC 3720 Appendix B.4 vectors in the byte order on the wire.
import assert from "node:assert/strict";
import {
  AHS_TYPE, decodeAhs, decodeLun, decodePdu, digestOf, encodeAhs, encodeBhs, encodeLun, encodePdu, type IscsiPdu, OPCODE, paddingBytes,
  PduFormatError, RESERVED_TAG, wireLength,
} from "../../../../volumedriver/src/frontends/iscsi/iscsi-pdu.ts";
import { PduReader } from "../../../../volumedriver/src/frontends/iscsi/iscsi-pdu-reader.ts";

const isid = Buffer.from([0x80, 1, 2, 3, 4, 5]);
const data = Buffer.from("key=value\0abc");
const numbers = { statSN: 0xfffffffe, expCmdSN: 7, maxCmdSN: 70 };

const SAMPLES: IscsiPdu[] = [
  { kind: "nop-out", immediate: true, lun: encodeLun(3), initiatorTaskTag: 9, targetTransferTag: RESERVED_TAG, cmdSN: 5, expStatSN: 6, data },
  {
    kind: "scsi-command", immediate: false, final: true, read: true, write: false, taskAttribute: 1, lun: encodeLun(300), initiatorTaskTag: 1,
    expectedDataTransferLength: 4096, cmdSN: 2, expStatSN: 3, cdb: Buffer.from([0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]), data: Buffer.alloc(0),
  },
  {
    kind: "scsi-command", immediate: false, final: false, read: false, write: true, taskAttribute: 2, lun: 0n, initiatorTaskTag: 2,
    expectedDataTransferLength: 8192, cmdSN: 2, expStatSN: 3, cdb: Buffer.alloc(16, 0x7f),
    ahs: [{ type: AHS_TYPE.EXTENDED_CDB, data: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]) }], data: Buffer.alloc(513, 1),
  },
  {
    kind: "task-management-request", immediate: true, function: 5, lun: encodeLun(1), initiatorTaskTag: 4, referencedTaskTag: RESERVED_TAG,
    cmdSN: 8, expStatSN: 9, refCmdSN: 10, expDataSN: 11, data: Buffer.alloc(0),
  },
  {
    kind: "login-request", transit: true, continue: false, currentStage: 1, nextStage: 3, versionMax: 0, versionMin: 0, isid, tsih: 0,
    initiatorTaskTag: 0x1234, cid: 7, cmdSN: 1, expStatSN: 0, data,
  },
  { kind: "text-request", immediate: false, final: false, continue: true, lun: 0n, initiatorTaskTag: 5, targetTransferTag: 6, cmdSN: 7, expStatSN: 8, data },
  { kind: "data-out", final: true, lun: encodeLun(2), initiatorTaskTag: 5, targetTransferTag: 6, expStatSN: 8, dataSN: 3, bufferOffset: 1536, data: Buffer.alloc(512, 9) },
  { kind: "logout-request", immediate: true, reasonCode: 1, initiatorTaskTag: 5, cid: 3, cmdSN: 4, expStatSN: 5, data: Buffer.alloc(0) },
  { kind: "snack-request", type: 1, lun: 0n, initiatorTaskTag: 5, targetTransferTag: 6, expStatSN: 7, begRun: 8, runLength: 9, data: Buffer.alloc(0) },
  { kind: "nop-in", lun: 0n, initiatorTaskTag: RESERVED_TAG, targetTransferTag: 77, ...numbers, data: Buffer.alloc(0) },
  {
    kind: "scsi-response", bidiOverflow: false, bidiUnderflow: false, overflow: false, underflow: true, response: 0, status: 2, initiatorTaskTag: 3,
    snackTag: 0, ...numbers, expDataSN: 4, bidiReadResidualCount: 0, residualCount: 100, data: Buffer.from([0, 18, ...Buffer.alloc(18, 1)]),
  },
  { kind: "task-management-response", response: 1, initiatorTaskTag: 3, ...numbers, data: Buffer.alloc(0) },
  {
    kind: "login-response", transit: true, continue: false, currentStage: 0, nextStage: 1, versionMax: 0, versionActive: 0, isid, tsih: 12,
    initiatorTaskTag: 0x1234, ...numbers, statusClass: 2, statusDetail: 1, data,
  },
  { kind: "text-response", final: true, continue: false, lun: 0n, initiatorTaskTag: 5, targetTransferTag: RESERVED_TAG, ...numbers, data },
  {
    kind: "data-in", final: true, acknowledge: false, overflow: true, underflow: false, statusPresent: true, status: 0, lun: encodeLun(1),
    initiatorTaskTag: 5, targetTransferTag: RESERVED_TAG, ...numbers, dataSN: 2, bufferOffset: 8192, residualCount: 512, data: Buffer.alloc(4096, 3),
  },
  { kind: "logout-response", response: 0, initiatorTaskTag: 5, ...numbers, time2WaitSeconds: 2, time2RetainSeconds: 20, data: Buffer.alloc(0) },
  { kind: "r2t", lun: encodeLun(1), initiatorTaskTag: 5, targetTransferTag: 6, ...numbers, r2tSN: 1, bufferOffset: 65536, desiredDataTransferLength: 262144, data: Buffer.alloc(0) },
  { kind: "async-message", lun: 0n, ...numbers, asyncEvent: 3, asyncVCode: 0, parameter1: 0, parameter2: 2, parameter3: 0, data: Buffer.alloc(0) },
  { kind: "reject", reason: 0x09, ...numbers, dataSN: 0, data: Buffer.alloc(48, 0xee) },
];

function wire(pdu: IscsiPdu, header = false, dataDigest = false): Buffer {
  return Buffer.concat(encodePdu(pdu, { header, data: dataDigest }));
}

function readBack(bytes: Buffer, header = false, dataDigest = false): IscsiPdu {
  const reader = new PduReader(1 << 20);
  reader.digests = { header, data: dataDigest };
  // Feed byte by byte: framing must work across any chunking.
  for (let at = 0; at < bytes.length; at += 7) reader.push(bytes.subarray(at, at + 7));
  const outcome = reader.next();
  assert.equal(outcome.type, "pdu");
  if (outcome.type !== "pdu") throw new Error("unreachable");
  assert.equal(outcome.pdu.dataDigestOk, true);
  assert.equal(reader.next().type, "incomplete");
  return decodePdu(outcome.pdu.bhs, outcome.pdu.ahs, outcome.pdu.data);
}

describe("iSCSI PDUs", () => {
  for (const sample of SAMPLES) {
    it(`test_pdu_round_trip_${sample.kind.replace(/-/g, "_")}${sample.ahs !== undefined ? "_with_ahs" : ""}`, () => {
      for (const [header, dataDigest] of [[false, false], [true, true], [true, false]] as const) {
        const bytes = wire(sample, header, dataDigest);
        assert.equal(bytes.length % 4, 0, "PDUs are 4-byte aligned");
        assert.equal(bytes.length, wireLength(bytes, { header, data: dataDigest }));
        const decoded = readBack(bytes, header, dataDigest);
        const expected = { ...sample, data: sample.data ?? Buffer.alloc(0) };
        // Tags the BHS fixes (Reject and Async carry the reserved ITT) are not fields of ours.
        assert.deepEqual(decoded, expected);
      }
    });
  }

  it("test_pdu_scsi_command_layout_matches_rfc_7143_section_11_3", () => {
    const bhs = encodeBhs(SAMPLES[1]!, 0);
    const expected = Buffer.from(
      "01c10000" + "00000000" + "0001" + "2c00" + "00000000" + "00000001" + "00001000" + "00000002" + "00000003"
      + "28000000000800000800000000000000", "hex");
    // LUN 300 uses the flat space method: 0x41 0x2c (SAM-5 §4.7.7.4).
    expected[8] = 0x41;
    expected[9] = 0x2c;
    expected[10] = 0;
    expected[11] = 0;
    assert.deepEqual(bhs, expected);
  });

  it("test_pdu_login_response_layout_matches_rfc_7143_section_11_13", () => {
    const bhs = encodeBhs(SAMPLES[12]!, 0);
    assert.equal(bhs[0], OPCODE.LOGIN_RESPONSE);
    assert.equal(bhs[1], 0x81, "T=1, CSG=0, NSG=1");
    assert.equal(bhs.readUIntBE(5, 3), data.length);
    assert.deepEqual(bhs.subarray(8, 14), isid);
    assert.equal(bhs.readUInt16BE(14), 12);
    assert.equal(bhs[36], 2);
    assert.equal(bhs[37], 1);
  });

  it("test_pdu_data_in_status_flags_layout", () => {
    const bhs = encodeBhs(SAMPLES[14]!, 0);
    assert.equal(bhs[0], 0x25);
    assert.equal(bhs[1], 0x80 | 0x04 | 0x01, "F, O, S");
    assert.equal(bhs.readUInt32BE(44), 512);
  });

  it("test_pdu_digest_matches_rfc_3720_b4_vectors_little_endian_on_the_wire", () => {
    const vectors: Array<[Buffer, string]> = [
      [Buffer.alloc(32, 0), "aa36918a"],
      [Buffer.alloc(32, 0xff), "43aba862"],
      [Buffer.from([...Array(32).keys()]), "4e79dd46"],
      [Buffer.from([...Array(32).keys()].reverse()), "5cdb3f11"],
    ];
    for (const [input, onWire] of vectors) {
      const bytes = Buffer.alloc(4);
      bytes.writeUInt32LE(digestOf([input]));
      assert.equal(bytes.toString("hex"), onWire);
      // A digest computed over pieces equals the one over the whole.
      assert.equal(digestOf([input.subarray(0, 5), input.subarray(5)]), digestOf([input]));
    }
  });

  it("test_pdu_header_digest_covers_bhs_and_ahs", () => {
    const bytes = wire(SAMPLES[2]!, true, false);
    const ahsBytes = bytes[4] * 4;
    assert.equal(bytes.readUInt32LE(48 + ahsBytes), digestOf([bytes.subarray(0, 48 + ahsBytes)]));
  });

  it("test_pdu_data_digest_covers_data_and_padding", () => {
    const pdu = SAMPLES[0]!;
    const bytes = wire(pdu, false, true);
    const padded = bytes.subarray(48, 48 + data.length + paddingBytes(data.length));
    assert.equal(bytes.readUInt32LE(48 + padded.length), digestOf([padded]));
  });

  it("test_pdu_reader_reports_header_digest_error", () => {
    const bytes = wire(SAMPLES[0]!, true, false);
    bytes[20] ^= 1;
    const reader = new PduReader(1 << 20);
    reader.digests = { header: true, data: false };
    reader.push(bytes);
    assert.equal(reader.next().type, "header-digest-error");
  });

  it("test_pdu_reader_reports_data_digest_error_and_keeps_framing", () => {
    const first = wire(SAMPLES[0]!, true, true);
    first[60] ^= 0xff;
    const reader = new PduReader(1 << 20);
    reader.digests = { header: true, data: true };
    reader.push(Buffer.concat([first, wire(SAMPLES[7]!, true, true)]));
    const bad = reader.next();
    assert.equal(bad.type === "pdu" && !bad.pdu.dataDigestOk, true);
    const good = reader.next();
    assert.equal(good.type === "pdu" && good.pdu.dataDigestOk, true);
  });

  it("test_pdu_reader_refuses_data_segment_over_bound_before_buffering", () => {
    const bytes = wire(SAMPLES[2]!);
    const reader = new PduReader(512);
    reader.push(bytes.subarray(0, 48 + bytes[4] * 4));
    const outcome = reader.next();
    assert.equal(outcome.type, "data-segment-too-long");
  });

  it("test_pdu_unknown_opcode_is_a_format_error", () => {
    const bhs = Buffer.alloc(48);
    bhs[0] = 0x1c;
    assert.throws(() => decodePdu(bhs), (error: unknown) => error instanceof PduFormatError && error.reason === "UnknownOpcode");
  });

  it("test_pdu_ahs_overrun_is_a_format_error", () => {
    const ahs = encodeAhs([{ type: 1, data: Buffer.alloc(8) }]);
    ahs.writeUInt16BE(200, 0);
    assert.throws(() => decodeAhs(ahs), PduFormatError);
  });

  it("test_pdu_lun_addressing_peripheral_and_flat", () => {
    assert.equal(encodeLun(5), 0x0005_0000_0000_0000n);
    assert.equal(encodeLun(300), 0x412c_0000_0000_0000n);
    for (const lun of [0, 1, 255, 256, 16383]) assert.equal(decodeLun(encodeLun(lun)), lun);
    assert.equal(decodeLun(0x0001_0000_0000_0001n), undefined, "multi-level LUNs are not served");
    assert.equal(decodeLun(0x8001_0000_0000_0000n), undefined, "logical unit addressing is not served");
  });
});

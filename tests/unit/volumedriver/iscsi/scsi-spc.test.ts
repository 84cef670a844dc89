// Goal: the SPC-5 commands answer as iscsi-test-cu expects (INQUIRY and its VPD pages, REPORT LUNS,
// MODE SENSE/SELECT, REPORT SUPPORTED OPERATION CODES, RESERVE/RELEASE), unknown opcodes and LUNs
// get the right sense, and Data-In respects allocation and expected transfer lengths.
import assert from "node:assert/strict";
import { OPCODE } from "../../../../volumedriver/src/frontends/iscsi/scsi/cdb.ts";
import { COMMANDS } from "../../../../volumedriver/src/frontends/iscsi/scsi/command-table.ts";
import { SCSI_STATUS } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-types.ts";
import {
  BLOCK, CAPACITY_BLOCKS, cdb10, clearUnitAttentions, expectConflict, expectGood, expectSense, NEXUS_A, NEXUS_B, pattern, run,
  type ScsiFixture, startScsiFixture, TempDirs,
} from "./scsi-fixture.ts";

const inquiry = (evpd: number, page: number, allocation: number) => Buffer.from([OPCODE.INQUIRY, evpd, page, allocation >> 8, allocation & 0xff, 0]);
const modeSense6 = (byte2: number, allocation = 255, dbd = 0) => Buffer.from([OPCODE.MODE_SENSE_6, dbd, byte2, 0, allocation, 0]);

function rsoc(options: number, opcode = 0, serviceAction = 0, rctd = false): Buffer {
  const cdb = Buffer.alloc(12);
  cdb[0] = OPCODE.MAINTENANCE_IN;
  cdb[1] = 0x0c;
  cdb[2] = (rctd ? 0x80 : 0) | options;
  cdb[3] = opcode;
  cdb.writeUInt16BE(serviceAction, 4);
  cdb.writeUInt32BE(65535, 6);
  return cdb;
}

describe("SCSI SPC-5 primary commands", function () {
  this.timeout(120_000);
  const tempDirs = new TempDirs("scsi-spc");
  let fixture: ScsiFixture;

  beforeEach(async () => {
    fixture = await startScsiFixture(tempDirs);
    await clearUnitAttentions(fixture.target, NEXUS_A);
    await clearUnitAttentions(fixture.target, NEXUS_B);
  });
  afterEach(async () => {
    await fixture.close();
  });
  after(async () => {
    await tempDirs.removeAll();
  });

  it("test_testunitready_simple", async () => {
    expectGood(await run(fixture.target, Buffer.from([0, 0, 0, 0, 0, 0])));
  });

  it("test_inquiry_standard", async () => {
    const data = expectGood(await run(fixture.target, inquiry(0, 0, 260)));
    assert.ok(data.length >= 36);
    assert.equal(data[0], 0x00, "qualifier 0, direct access");
    assert.ok([4, 5, 6].includes(data[2]), "VERSION accepted by libiscsi");
    assert.equal(data[3] & 0x0f, 2, "RESPONSE DATA FORMAT");
    assert.equal(data[4], data.length - 5, "ADDITIONAL LENGTH");
    assert.equal(data[3] & 0xc0, 0, "no AERC/TRMTSK");
    assert.equal(data[7] & 0x02, 0x02, "CMDQUE");
    for (let index = 8; index < 36; index++) assert.ok(data[index] === 0 || (data[index] >= 0x20 && data[index] <= 0x7e));
    const descriptors = Array.from({ length: 8 }, (_, index) => data.readUInt16BE(58 + 2 * index));
    assert.ok(descriptors.includes(0x0460) && descriptors.includes(0x04c0), "claims SPC-4 and SBC-3");
  });

  it("test_inquiry_alloc_length", async () => {
    for (let allocation = 5; allocation < 256; allocation += 25) {
      assert.equal(expectGood(await run(fixture.target, inquiry(0, 0, allocation))).length, Math.min(allocation, 96));
    }
    assert.deepEqual(expectGood(await run(fixture.target, inquiry(0, 0, 511))), expectGood(await run(fixture.target, inquiry(0, 0, 512))));
    assert.equal(expectGood(await run(fixture.target, inquiry(0, 0, 255), { edtl: 36 })).length, 36);
  });

  it("test_inquiry_evpd", async () => {
    expectSense(await run(fixture.target, inquiry(0, 1, 256)), "InvalidFieldInCdb");
    expectSense(await run(fixture.target, inquiry(1, 0x89, 256)), "InvalidFieldInCdb");
  });

  it("test_inquiry_supported_vpd / test_inquiry_mandatory_vpd_sbc", async () => {
    const data = expectGood(await run(fixture.target, inquiry(1, 0x00, 255)));
    const pages = [...data.subarray(4, 4 + data.readUInt16BE(2))];
    assert.deepEqual(pages, [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
    for (const page of pages) {
      const vpd = expectGood(await run(fixture.target, inquiry(1, page, 255)));
      assert.equal(vpd[1], page);
      assert.equal(vpd.readUInt16BE(2) + 4, vpd.length);
    }
  });

  it("test_inquiry_unit_serial_number / device_identification", async () => {
    const serial = expectGood(await run(fixture.target, inquiry(1, 0x80, 255)));
    assert.equal(serial.subarray(4).toString("ascii"), "ovs-disk0-serial");
    const identification = expectGood(await run(fixture.target, inquiry(1, 0x83, 255)));
    const designators: Array<{ association: number; type: number; value: Buffer }> = [];
    for (let at = 4; at < identification.length;) {
      const length = identification[at + 3];
      designators.push({ association: (identification[at + 1] >> 4) & 3, type: identification[at + 1] & 0x0f, value: identification.subarray(at + 4, at + 4 + length) });
      at += 4 + length;
    }
    const naa = designators.find((designator) => designator.type === 3)!;
    assert.equal(naa.value.length, 16);
    assert.equal(naa.value[0] >> 4, 6, "NAA IEEE Registered Extended");
    assert.equal(naa.value.subarray(8).toString("hex"), "0123456789abcdef");
    assert.ok(designators.some((designator) => designator.type === 1 && designator.value.toString("ascii").startsWith("OVS")));
    assert.ok(designators.some((designator) => designator.type === 8 && designator.association === 1 && designator.value.toString().startsWith(NEXUS_A.targetPort)));
    assert.ok(designators.some((designator) => designator.type === 4 && designator.association === 1 && designator.value.readUInt16BE(2) === 1));
  });

  it("test_inquiry_block_limits / logical_block_provisioning / block_device_characteristics", async () => {
    const limits = expectGood(await run(fixture.target, inquiry(1, 0xb0, 255)));
    assert.equal(limits.length, 64);
    assert.equal(limits[3], 0x3c);
    assert.equal(limits[5], 255, "MAXIMUM COMPARE AND WRITE LENGTH");
    assert.equal(limits.readUInt16BE(6), 8, "OPTIMAL TRANSFER LENGTH GRANULARITY");
    assert.ok(limits.readUInt32BE(20) >= 8 && limits.readUInt32BE(20) <= 1024 * 1024, "MAXIMUM UNMAP LBA COUNT");
    assert.ok(limits.readUInt32BE(24) > 0, "MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT");
    assert.ok(limits.readBigUInt64BE(36) > 0n, "MAXIMUM WRITE SAME LENGTH");
    const provisioning = expectGood(await run(fixture.target, inquiry(1, 0xb2, 255)));
    assert.equal(provisioning[5] & 0xe0, 0xe0, "LBPU, LBPWS, LBPWS10");
    assert.equal((provisioning[5] >> 2) & 0x07, 1, "LBPRZ");
    assert.equal(provisioning[5] & 0x02, 0, "ANC_SUP");
    assert.equal(provisioning[6] & 0x07, 2, "thin");
    const characteristics = expectGood(await run(fixture.target, inquiry(1, 0xb1, 255)));
    assert.equal(characteristics.readUInt16BE(4), 1, "non-rotating");
  });

  it("test_reportluns_simple and LUNs we do not serve", async () => {
    const cdb = Buffer.alloc(12);
    cdb[0] = OPCODE.REPORT_LUNS;
    cdb.writeUInt32BE(4096, 6);
    const data = expectGood(await run(fixture.target, cdb));
    assert.equal(data.readUInt32BE(0), 8);
    assert.deepEqual([...data.subarray(8, 16)], [0, 0, 0, 0, 0, 0, 0, 0]);
    // LUN 5 does not exist: INQUIRY answers with qualifier 011b, others LOGICAL UNIT NOT SUPPORTED.
    assert.equal(expectGood(await run(fixture.target, inquiry(0, 0, 96), { lun: 5 }))[0], 0x7f);
    expectGood(await run(fixture.target, cdb, { lun: 5 }));
    expectSense(await run(fixture.target, Buffer.from([0, 0, 0, 0, 0, 0]), { lun: 5 }), "LogicalUnitNotSupported");
  });

  it("test_request_sense_no_sense", async () => {
    const data = expectGood(await run(fixture.target, Buffer.from([OPCODE.REQUEST_SENSE, 0, 0, 0, 252, 0])));
    assert.equal(data[0], 0x70);
    assert.equal(data[2] & 0x0f, 0);
  });

  it("test_unsupported_opcode: INVALID COMMAND OPERATION CODE", async () => {
    expectSense(await run(fixture.target, Buffer.from([0xc0, 0, 0, 0, 0, 0])), "InvalidCommandOperationCode");
    expectSense(await run(fixture.target, Buffer.from([0x1b, 0, 0, 0, 1, 0])), "InvalidCommandOperationCode"); // START STOP UNIT
    const unknownServiceAction = Buffer.alloc(16);
    unknownServiceAction[0] = OPCODE.SERVICE_ACTION_IN_16;
    unknownServiceAction[1] = 0x05;
    expectSense(await run(fixture.target, unknownServiceAction), "InvalidFieldInCdb");
  });

  it("test_modesense6_all_pages / test_modesense6_residuals", async () => {
    const data = expectGood(await run(fixture.target, modeSense6(0x3f)));
    assert.equal(data[0], data.length - 1, "MODE DATA LENGTH");
    assert.equal(data[2] & 0x90, 0x10, "DPOFUA, not WP");
    assert.equal(data[3], 8, "block descriptor");
    assert.equal(data.readUInt32BE(4), CAPACITY_BLOCKS);
    assert.equal(data.readUIntBE(9, 3), BLOCK);
    const codes: number[] = [];
    for (let at = 12; at < data.length; at += 2 + data[at + 1]) codes.push(data[at] & 0x3f);
    assert.deepEqual(codes, [0x08, 0x0a, 0x1c]);
    assert.equal(data[12 + 2] & 0x04, 0x04, "WCE");
    assert.ok(expectGood(await run(fixture.target, modeSense6(0x3f, 4))).length <= 4);
    const noDescriptors = expectGood(await run(fixture.target, modeSense6(0x08, 255, 0x08)));
    assert.equal(noDescriptors[3], 0);
    expectSense(await run(fixture.target, modeSense6(0xc8)), "SavingParametersNotSupported");
    expectSense(await run(fixture.target, modeSense6(0x19)), "InvalidFieldInCdb");
  });

  it("test_modesense10_llbaa / changeable / default", async () => {
    const cdb = Buffer.from([OPCODE.MODE_SENSE_10, 0x10, 0x08, 0, 0, 0, 0, 1, 0, 0]);
    const data = expectGood(await run(fixture.target, cdb));
    assert.equal(data.readUInt16BE(0), data.length - 2);
    assert.equal(data[4] & 0x01, 1, "LONGLBA");
    assert.equal(data.readUInt16BE(6), 16);
    assert.equal(data.readBigUInt64BE(8), BigInt(CAPACITY_BLOCKS));
    const changeable = expectGood(await run(fixture.target, modeSense6(0x40 | 0x0a, 255, 0x08)));
    assert.equal(changeable[4 + 4], 0x08, "SWP changeable");
    const defaults = expectGood(await run(fixture.target, modeSense6(0x80 | 0x08, 255, 0x08)));
    assert.equal(defaults[4 + 2] & 0x04, 0x04);
  });

  async function modeSelectPage(page: Buffer, who = NEXUS_A) {
    const list = Buffer.concat([Buffer.alloc(4), page]);
    return run(fixture.target, Buffer.from([OPCODE.MODE_SELECT_6, 0x10, 0, 0, list.length, 0]), { dataOut: list, nexus: who });
  }

  async function currentPage(code: number): Promise<Buffer> {
    const data = expectGood(await run(fixture.target, modeSense6(code, 255, 0x08)));
    return Buffer.from(data.subarray(4));
  }

  it("test_modesense6_control_swp: SWP makes the LUN write protected", async () => {
    const control = await currentPage(0x0a);
    control[4] |= 0x08;
    expectGood(await modeSelectPage(control));
    assert.equal((await currentPage(0x0a))[4] & 0x08, 0x08);
    expectGood(await run(fixture.target, cdb10(OPCODE.READ_10, 0, 1)));
    expectSense(await run(fixture.target, cdb10(OPCODE.WRITE_10, 0, 1), { dataOut: pattern(1, 1) }), "SoftwareWriteProtected");
    // The other nexus learns MODE PARAMETERS CHANGED.
    expectSense(await run(fixture.target, Buffer.from([0, 0, 0, 0, 0, 0]), { nexus: NEXUS_B }), "UaModeParametersChanged");
    control[4] &= ~0x08;
    expectGood(await modeSelectPage(control));
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 0, 1), { dataOut: pattern(1, 1) }));
  });

  it("test_modeselect6_caching_wce: WCE 0 makes every write FUA; invalid changes are refused", async () => {
    const caching = await currentPage(0x08);
    caching[2] &= ~0x04;
    expectGood(await modeSelectPage(caching));
    assert.equal((await currentPage(0x08))[2] & 0x04, 0);
    const data = pattern(2, 8);
    expectGood(await run(fixture.target, cdb10(OPCODE.WRITE_10, 5, 2), { dataOut: data }));
    assert.deepEqual(expectGood(await run(fixture.target, cdb10(OPCODE.READ_10, 5, 2))), data);
    const bad = Buffer.from(caching);
    bad[3] = 0xff; // not changeable
    expectSense(await modeSelectPage(bad), "InvalidFieldInParameterList");
    expectSense(await run(fixture.target, Buffer.from([OPCODE.MODE_SELECT_6, 0x11, 0, 0, 4, 0]), { dataOut: Buffer.alloc(4) }), "InvalidFieldInCdb");
    expectSense(await run(fixture.target, Buffer.from([OPCODE.MODE_SELECT_6, 0x10, 0, 0, 8, 0]), { dataOut: Buffer.alloc(2) }), "ParameterListLengthError");
  });

  it("test_report_supported_opcodes_simple / one_command / servactv / rctd", async () => {
    const all = expectGood(await run(fixture.target, rsoc(0)));
    const count = all.readUInt32BE(0) / 8;
    assert.equal(count, COMMANDS.length);
    for (let index = 0; index < count; index++) {
      const at = 4 + 8 * index;
      const opcode = all[at];
      const serviceActionValid = (all[at + 5] & 0x01) !== 0;
      const serviceAction = all.readUInt16BE(at + 2);
      if (!serviceActionValid) assert.equal(serviceAction, 0);
      const one = await run(fixture.target, rsoc(serviceActionValid ? 2 : 1, opcode, serviceAction));
      const data = expectGood(one);
      assert.equal(data[1] & 0x07, 3, "supported");
      assert.ok(data.readUInt16BE(2) > 0);
      assert.equal(data[4], opcode, "CDB USAGE DATA starts with the opcode");
      expectSense(await run(fixture.target, rsoc(serviceActionValid ? 1 : 2, opcode, serviceAction)), "InvalidFieldInCdb");
    }
    const read10 = expectGood(await run(fixture.target, rsoc(1, OPCODE.READ_10)));
    assert.equal(read10[5] & 0x18, 0x18, "DPO and FUA are used");
    const timeouts = expectGood(await run(fixture.target, rsoc(0, 0, 0, true)));
    assert.equal(timeouts.readUInt32BE(0), COMMANDS.length * 20);
    assert.equal(timeouts[4 + 5] & 0x02, 0x02, "CTDP");
    assert.equal(timeouts.readUInt16BE(4 + 8), 0x0a);
    const unsupported = expectGood(await run(fixture.target, rsoc(1, 0xc0)));
    assert.equal(unsupported[1] & 0x07, 1);
  });

  it("test_report_supported_task_management_functions", async () => {
    const cdb = Buffer.alloc(12);
    cdb[0] = OPCODE.MAINTENANCE_IN;
    cdb[1] = 0x0d;
    cdb.writeUInt32BE(4, 6);
    const data = expectGood(await run(fixture.target, cdb));
    assert.equal(data[0] & 0xca, 0xca, "ABORT TASK, ABORT TASK SET, LU RESET, TARGET RESET");
  });

  const reserve6 = Buffer.from([OPCODE.RESERVE_6, 0, 0, 0, 0, 0]);
  const release6 = Buffer.from([OPCODE.RELEASE_6, 0, 0, 0, 0, 0]);

  it("test_reserve6_simple / test_reserve6_2initiators", async () => {
    expectGood(await run(fixture.target, reserve6));
    expectGood(await run(fixture.target, reserve6));
    expectConflict(await run(fixture.target, reserve6, { nexus: NEXUS_B }));
    expectGood(await run(fixture.target, release6, { nexus: NEXUS_B }), "a non-holder's RELEASE is GOOD and does nothing");
    expectGood(await run(fixture.target, modeSense6(0x3f)));
    expectConflict(await run(fixture.target, modeSense6(0x3f), { nexus: NEXUS_B }));
    expectConflict(await run(fixture.target, cdb10(OPCODE.READ_10, 0, 1), { nexus: NEXUS_B }));
    expectGood(await run(fixture.target, inquiry(0, 0, 96), { nexus: NEXUS_B }));
    expectGood(await run(fixture.target, release6));
    expectGood(await run(fixture.target, reserve6, { nexus: NEXUS_B }));
    expectGood(await run(fixture.target, release6, { nexus: NEXUS_B }));
  });

  it("test_reserve6_logout / test_reserve6_lun_reset / test_reserve6_target_warm_reset", async () => {
    expectGood(await run(fixture.target, reserve6));
    fixture.target.nexusLost(NEXUS_A);
    expectGood(await run(fixture.target, reserve6, { nexus: NEXUS_B }));
    assert.equal(await fixture.target.taskManagement(NEXUS_B, "lun-reset", 0), 0);
    await clearUnitAttentions(fixture.target, NEXUS_A);
    expectGood(await run(fixture.target, reserve6));
    assert.equal(await fixture.target.taskManagement(NEXUS_A, "target-warm-reset", 0), 0);
    expectSense(await run(fixture.target, reserve6, { nexus: NEXUS_B }), "UaPowerOnReset");
    expectGood(await run(fixture.target, reserve6, { nexus: NEXUS_B }));
    assert.equal(await fixture.target.taskManagement(NEXUS_A, "lun-reset", 9), 2, "LUN does not exist");
  });

  it("test_reserve10_simple", async () => {
    const reserve10 = Buffer.from([OPCODE.RESERVE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expectGood(await run(fixture.target, reserve10));
    expectConflict(await run(fixture.target, reserve10, { nexus: NEXUS_B }));
    expectGood(await run(fixture.target, Buffer.from([OPCODE.RELEASE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
    expectSense(await run(fixture.target, Buffer.from([OPCODE.RESERVE_10, 0x10, 0, 0, 0, 0, 0, 0, 0, 0])), "InvalidFieldInCdb");
  });

  it("never throws: a short CDB is INVALID FIELD IN CDB", async () => {
    const result = await fixture.target.execute({ nexus: NEXUS_A, lun: 0, cdb: Buffer.from([OPCODE.READ_16, 0, 0]), expectedDataTransferLengthBytes: 0, taskAttribute: "simple" });
    assert.equal(result.status, SCSI_STATUS.CHECK_CONDITION);
  });
});

// Goal: unit attentions follow SPC-5 §5.14 / SAM-5 §5.14: a new nexus sees POWER ON, RESET once;
// INQUIRY neither reports nor clears, REPORT LUNS clears only REPORTED LUNS DATA HAS CHANGED,
// REQUEST SENSE returns and clears; LUN add/remove, resets and nexus loss queue the right ones.
import assert from "node:assert/strict";
import { OPCODE } from "../../../../volumedriver/src/frontends/iscsi/scsi/cdb.ts";
import { UnitAttentions } from "../../../../volumedriver/src/frontends/iscsi/scsi/unit-attention.ts";
import {
  clearUnitAttentions, expectGood, expectSense, nexus, NEXUS_A, NEXUS_B, run, SCSI_TEST_DEVICE_SIZE_BYTES, type ScsiFixture, startScsiFixture, TempDirs,
} from "./scsi-fixture.ts";

const TUR = Buffer.from([0, 0, 0, 0, 0, 0]);
const INQUIRY = Buffer.from([OPCODE.INQUIRY, 0, 0, 0, 96, 0]);
const REQUEST_SENSE = Buffer.from([OPCODE.REQUEST_SENSE, 0, 0, 0, 252, 0]);
const REPORT_LUNS = Buffer.from([OPCODE.REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);

describe("SCSI unit attentions", function () {
  this.timeout(120_000);
  const tempDirs = new TempDirs("scsi-ua");
  let fixture: ScsiFixture;

  beforeEach(async () => {
    fixture = await startScsiFixture(tempDirs);
  });
  afterEach(async () => {
    await fixture.close();
  });
  after(async () => {
    await tempDirs.removeAll();
  });

  it("test_ua_power_on_reset: the first command of a new nexus reports it once", async () => {
    expectSense(await run(fixture.target, TUR), "UaPowerOnReset");
    expectGood(await run(fixture.target, TUR));
    expectSense(await run(fixture.target, TUR, { nexus: NEXUS_B }), "UaPowerOnReset");
  });

  it("test_ua_inquiry_neither_reports_nor_clears", async () => {
    expectGood(await run(fixture.target, INQUIRY));
    expectSense(await run(fixture.target, TUR), "UaPowerOnReset");
  });

  it("test_ua_request_sense_returns_and_clears", async () => {
    const sense = expectGood(await run(fixture.target, REQUEST_SENSE));
    assert.deepEqual([sense[2] & 0x0f, sense[12], sense[13]], [0x06, 0x29, 0x00]);
    expectGood(await run(fixture.target, TUR));
  });

  it("test_ua_reported_luns_data_has_changed on add and remove, cleared by REPORT LUNS", async () => {
    await clearUnitAttentions(fixture.target, NEXUS_A);
    await fixture.target.addLogicalUnit({ lun: 1, device: fixture.volume, serialNumber: "second", naaIdentifierHex: "00000000000000ff" });
    assert.deepEqual(fixture.target.luns(), [0, 1]);
    const data = expectGood(await run(fixture.target, REPORT_LUNS));
    assert.equal(data.readUInt32BE(0), 16);
    expectGood(await run(fixture.target, TUR), "REPORT LUNS cleared the condition");
    assert.ok(fixture.target.removeLogicalUnit(1));
    expectSense(await run(fixture.target, TUR), "UaReportedLunsDataHasChanged");
    expectGood(await run(fixture.target, TUR));
    expectSense(await run(fixture.target, TUR, { lun: 1 }), "LogicalUnitNotSupported");
    assert.equal(fixture.target.removeLogicalUnit(1), false);
    await assert.rejects(fixture.target.addLogicalUnit({ lun: 0, device: fixture.volume, serialNumber: "x", naaIdentifierHex: "0" }), /already exists/);
  });

  it("test_ua_lun_reset: every nexus, the issuer included, sees BUS DEVICE RESET FUNCTION OCCURRED", async () => {
    await clearUnitAttentions(fixture.target, NEXUS_A);
    await clearUnitAttentions(fixture.target, NEXUS_B);
    assert.equal(await fixture.target.taskManagement(NEXUS_A, "lun-reset", 0), 0);
    expectSense(await run(fixture.target, TUR), "UaBusDeviceResetFunctionOccurred");
    expectGood(await run(fixture.target, TUR));
    expectSense(await run(fixture.target, TUR, { nexus: NEXUS_B }), "UaBusDeviceResetFunctionOccurred");
    expectGood(await run(fixture.target, TUR, { nexus: NEXUS_B }));
  });

  it("test_ua_capacity_data_has_changed: a grown vDisk is reported to every nexus once, then READ CAPACITY shows the new size", async () => {
    await clearUnitAttentions(fixture.target, NEXUS_A);
    await clearUnitAttentions(fixture.target, NEXUS_B);
    const readCapacity16 = Buffer.from([OPCODE.SERVICE_ACTION_IN_16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
    const before = expectGood(await run(fixture.target, readCapacity16));
    assert.equal(Number(before.readBigUInt64BE(0)) + 1, SCSI_TEST_DEVICE_SIZE_BYTES / 512);
    await fixture.vpool.resizeVolume("disk0", 2 * SCSI_TEST_DEVICE_SIZE_BYTES);
    expectSense(await run(fixture.target, TUR), "UaCapacityDataHasChanged");
    const after = expectGood(await run(fixture.target, readCapacity16));
    assert.equal(Number(after.readBigUInt64BE(0)) + 1, 2 * SCSI_TEST_DEVICE_SIZE_BYTES / 512);
    expectSense(await run(fixture.target, TUR, { nexus: NEXUS_B }), "UaCapacityDataHasChanged");
    expectGood(await run(fixture.target, TUR, { nexus: NEXUS_B }));
    expectGood(await run(fixture.target, TUR), "reported once");
  });

  it("test_ua_nexus_loss: a new login with the same name starts with POWER ON, RESET", async () => {
    await clearUnitAttentions(fixture.target, NEXUS_A);
    fixture.target.nexusLost(NEXUS_A);
    expectSense(await run(fixture.target, TUR), "UaPowerOnReset");
    const otherSession = nexus("a", "23d000000002");
    expectSense(await run(fixture.target, TUR, { nexus: otherSession }), "UaPowerOnReset");
  });

  it("test_ua_queue_is_bounded_and_deduplicated", () => {
    const queues = new UnitAttentions(3);
    queues.noteNexus("n");
    queues.establish("n", "UaModeParametersChanged");
    queues.establish("n", "UaModeParametersChanged");
    queues.establish("n", "UaReservationsReleased");
    queues.establish("n", "UaCapacityDataHasChanged");
    assert.equal(queues.take("n"), "UaModeParametersChanged");
    assert.equal(queues.take("n"), "UaReservationsReleased");
    assert.equal(queues.take("n"), "UaCapacityDataHasChanged");
    assert.equal(queues.take("n"), undefined);
  });
});

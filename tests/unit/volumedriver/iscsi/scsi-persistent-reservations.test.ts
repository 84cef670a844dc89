// Goal: PERSISTENT RESERVE IN/OUT behave as SPC-5 §5.13 and iscsi-test-cu's PR families expect:
// register/reserve/release/clear/preempt/register-and-move, the access table per reservation type,
// PRgeneration, unit attentions, and APTPL state that survives a restart (atomic file).
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { OPCODE } from "../../../../volumedriver/src/frontends/iscsi/scsi/cdb.ts";
import { PR_IN, PR_OUT, PR_TYPE } from "../../../../volumedriver/src/frontends/iscsi/scsi/persistent-reservations.ts";
import { createScsiTarget } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-target.ts";
import type { ScsiNexus } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-types.ts";
import type { ScsiTargetImpl } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-target.ts";
import {
  cdb10, clearUnitAttentions, expectConflict, expectGood, expectSense, nexus, NEXUS_A, NEXUS_B, pattern, run,
  type ScsiFixture, startScsiFixture, TempDirs,
} from "./scsi-fixture.ts";

function prOut(serviceAction: number, type: number, key: bigint, serviceActionKey: bigint, flags = 0): { cdb: Buffer; dataOut: Buffer } {
  const cdb = Buffer.alloc(10);
  cdb[0] = OPCODE.PERSISTENT_RESERVE_OUT;
  cdb[1] = serviceAction;
  cdb[2] = type;
  cdb.writeUInt32BE(24, 5);
  const dataOut = Buffer.alloc(24);
  dataOut.writeBigUInt64BE(key, 0);
  dataOut.writeBigUInt64BE(serviceActionKey, 8);
  dataOut[20] = flags;
  return { cdb, dataOut };
}

function prIn(serviceAction: number, allocation = 8192): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = OPCODE.PERSISTENT_RESERVE_IN;
  cdb[1] = serviceAction;
  cdb.writeUInt16BE(allocation, 7);
  return cdb;
}

describe("SCSI persistent reservations", function () {
  this.timeout(120_000);
  const tempDirs = new TempDirs("scsi-pr");
  let fixture: ScsiFixture;
  let target: ScsiTargetImpl;

  const out = async (who: ScsiNexus, serviceAction: number, type: number, key: bigint, serviceActionKey: bigint, flags = 0) => {
    const { cdb, dataOut } = prOut(serviceAction, type, key, serviceActionKey, flags);
    return run(target, cdb, { nexus: who, dataOut });
  };
  const register = (who: ScsiNexus, key: bigint) => out(who, PR_OUT.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0n, key);
  const readKeys = async (who = NEXUS_A) => {
    const data = expectGood(await run(target, prIn(PR_IN.READ_KEYS), { nexus: who }));
    const keys = Array.from({ length: data.readUInt32BE(4) / 8 }, (_, index) => data.readBigUInt64BE(8 + 8 * index));
    return { generation: data.readUInt32BE(0), keys };
  };
  const readReservation = async () => {
    const data = expectGood(await run(target, prIn(PR_IN.READ_RESERVATION)));
    return data.readUInt32BE(4) === 0 ? undefined : { key: data.readBigUInt64BE(8), type: data[21] & 0x0f };
  };
  const canRead = async (who: ScsiNexus) => (await run(target, cdb10(OPCODE.READ_10, 0, 1), { nexus: who })).status === 0;
  const canWrite = async (who: ScsiNexus) => (await run(target, cdb10(OPCODE.WRITE_10, 0, 1), { nexus: who, dataOut: pattern(1, 1) })).status === 0;

  beforeEach(async () => {
    fixture = await startScsiFixture(tempDirs);
    target = fixture.target;
    await clearUnitAttentions(target, NEXUS_A);
    await clearUnitAttentions(target, NEXUS_B);
  });
  afterEach(async () => {
    await fixture.close();
  });
  after(async () => {
    await tempDirs.removeAll();
  });

  it("test_prout_register_simple / test_prin_read_keys_simple", async () => {
    expectGood(await out(NEXUS_A, PR_OUT.REGISTER, 0, 0n, 0xaan));
    let keys = await readKeys();
    assert.deepEqual(keys, { generation: 1, keys: [0xaan] });
    expectConflict(await out(NEXUS_A, PR_OUT.REGISTER, 0, 0x99n, 0xbbn)); // wrong current key
    expectGood(await out(NEXUS_A, PR_OUT.REGISTER, 0, 0xaan, 0xbbn));
    expectConflict(await out(NEXUS_B, PR_OUT.REGISTER, 0, 0x1n, 0xccn)); // unregistered with a key
    expectGood(await register(NEXUS_B, 0xccn));
    keys = await readKeys();
    assert.deepEqual(keys, { generation: 3, keys: [0xbbn, 0xccn] });
    expectGood(await out(NEXUS_A, PR_OUT.REGISTER, 0, 0xbbn, 0n)); // unregister
    assert.deepEqual((await readKeys()).keys, [0xccn]);
  });

  it("test_prin_read_keys_truncate / test_prin_serviceaction_range", async () => {
    expectGood(await register(NEXUS_A, 1n));
    expectGood(await register(NEXUS_B, 2n));
    assert.equal(expectGood(await run(target, prIn(PR_IN.READ_KEYS, 12))).length, 12);
    for (let serviceAction = 4; serviceAction < 0x20; serviceAction++) {
      expectSense(await run(target, prIn(serviceAction)), "InvalidFieldInCdb");
    }
  });

  it("test_prin_report_caps_simple", async () => {
    const data = expectGood(await run(target, prIn(PR_IN.REPORT_CAPABILITIES)));
    assert.equal(data.readUInt16BE(0), 8);
    assert.equal(data[2] & 0x08, 0, "SIP_C: SPEC_I_PT not supported");
    assert.equal(data[2] & 0x04, 0x04, "ATP_C");
    assert.ok(((data[3] >> 4) & 0x07) <= 5);
    assert.equal(data.readUInt16BE(4), 0xeA01, "all six types");
    expectGood(await register(NEXUS_A, 7n));
    for (const type of Object.values(PR_TYPE)) {
      expectGood(await out(NEXUS_A, PR_OUT.RESERVE, type, 7n, 0n));
      const reservation = await readReservation();
      assert.deepEqual(reservation, { key: type >= 7 ? 0n : 7n, type });
      expectGood(await out(NEXUS_A, PR_OUT.RELEASE, type, 7n, 0n));
      assert.equal(await readReservation(), undefined);
    }
  });

  const accessTable: Array<[string, number, [boolean, boolean, boolean, boolean]]> = [
    ["ea", PR_TYPE.EXCLUSIVE_ACCESS, [false, false, false, false]],
    ["we", PR_TYPE.WRITE_EXCLUSIVE, [true, false, true, false]],
    ["earo", PR_TYPE.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, [true, true, false, false]],
    ["wero", PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, [true, true, true, false]],
    ["eaar", PR_TYPE.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, [true, true, false, false]],
    ["wear", PR_TYPE.WRITE_EXCLUSIVE_ALL_REGISTRANTS, [true, true, true, false]],
  ];
  for (const [name, type, [registeredRead, registeredWrite, unregisteredRead, unregisteredWrite]] of accessTable) {
    it(`test_prout_reserve_access_${name}`, async () => {
      expectGood(await register(NEXUS_A, 0x1111n));
      expectGood(await register(NEXUS_B, 0x2222n));
      expectGood(await out(NEXUS_A, PR_OUT.RESERVE, type, 0x1111n, 0n));
      assert.ok(await canRead(NEXUS_A));
      assert.ok(await canWrite(NEXUS_A));
      assert.equal(await canRead(NEXUS_B), registeredRead, "registered read");
      assert.equal(await canWrite(NEXUS_B), registeredWrite, "registered write");
      expectGood(await out(NEXUS_B, PR_OUT.REGISTER, 0, 0x2222n, 0n));
      assert.equal(await canRead(NEXUS_B), unregisteredRead, "unregistered read");
      assert.equal(await canWrite(NEXUS_B), unregisteredWrite, "unregistered write");
      // INQUIRY, REPORT LUNS, PR IN and READ CAPACITY stay allowed; RESERVE(6) conflicts.
      expectGood(await run(target, Buffer.from([OPCODE.INQUIRY, 0, 0, 0, 96, 0]), { nexus: NEXUS_B }));
      expectGood(await run(target, prIn(PR_IN.READ_KEYS), { nexus: NEXUS_B }));
      expectConflict(await run(target, Buffer.from([OPCODE.RESERVE_6, 0, 0, 0, 0, 0]), { nexus: NEXUS_B }));
      expectGood(await out(NEXUS_A, PR_OUT.RELEASE, type, 0x1111n, 0n));
      expectGood(await out(NEXUS_A, PR_OUT.REGISTER, 0, 0x1111n, 0n));
      assert.ok(await canWrite(NEXUS_B));
    });
  }

  it("test_prout_reserve_ownership_*: unregistering the holder releases, all-registrants lives on", async () => {
    expectGood(await register(NEXUS_A, 1n));
    expectGood(await register(NEXUS_B, 2n));
    expectGood(await out(NEXUS_A, PR_OUT.RESERVE, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 1n, 0n));
    expectConflict(await out(NEXUS_B, PR_OUT.RESERVE, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 2n, 0n));
    expectGood(await out(NEXUS_A, PR_OUT.REGISTER, 0, 1n, 0n));
    assert.equal(await readReservation(), undefined);
    expectSense(await run(target, Buffer.from([0, 0, 0, 0, 0, 0]), { nexus: NEXUS_B }), "UaReservationsReleased");
    expectGood(await register(NEXUS_A, 1n));
    expectGood(await out(NEXUS_A, PR_OUT.RESERVE, PR_TYPE.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, 1n, 0n));
    expectGood(await out(NEXUS_A, PR_OUT.REGISTER, 0, 1n, 0n));
    assert.deepEqual(await readReservation(), { key: 0n, type: PR_TYPE.EXCLUSIVE_ACCESS_ALL_REGISTRANTS });
    assert.ok(await canWrite(NEXUS_B));
    assert.equal(await canWrite(NEXUS_A), false);
    expectGood(await out(NEXUS_B, PR_OUT.REGISTER, 0, 2n, 0n));
    assert.equal(await readReservation(), undefined);
  });

  it("test_prout_release: wrong type is INVALID RELEASE, non-holder release is GOOD", async () => {
    expectGood(await register(NEXUS_A, 1n));
    expectGood(await register(NEXUS_B, 2n));
    expectGood(await out(NEXUS_A, PR_OUT.RESERVE, PR_TYPE.WRITE_EXCLUSIVE, 1n, 0n));
    expectGood(await out(NEXUS_B, PR_OUT.RELEASE, PR_TYPE.WRITE_EXCLUSIVE, 2n, 0n));
    assert.ok(await readReservation());
    expectSense(await out(NEXUS_A, PR_OUT.RELEASE, PR_TYPE.EXCLUSIVE_ACCESS, 1n, 0n), "InvalidReleaseOfPersistentReservation");
    expectSense(await out(NEXUS_A, PR_OUT.RESERVE, 2, 1n, 0n), "InvalidFieldInCdb");
    expectConflict(await out(NEXUS_B, PR_OUT.RELEASE, PR_TYPE.WRITE_EXCLUSIVE, 9n, 0n));
  });

  it("test_prout_clear_simple", async () => {
    expectGood(await register(NEXUS_A, 1n));
    expectGood(await register(NEXUS_B, 2n));
    expectGood(await out(NEXUS_A, PR_OUT.RESERVE, PR_TYPE.EXCLUSIVE_ACCESS, 1n, 0n));
    const before = (await readKeys()).generation;
    expectGood(await out(NEXUS_A, PR_OUT.CLEAR, 0, 1n, 0n));
    const after = await readKeys();
    assert.deepEqual(after, { generation: before + 1, keys: [] });
    assert.equal(await readReservation(), undefined);
    expectSense(await run(target, Buffer.from([0, 0, 0, 0, 0, 0]), { nexus: NEXUS_B }), "UaReservationsPreempted");
  });

  it("test_prout_preempt_rm_reg", async () => {
    expectGood(await register(NEXUS_A, 1n));
    expectGood(await register(NEXUS_B, 2n));
    const before = (await readKeys()).generation;
    expectGood(await out(NEXUS_B, PR_OUT.PREEMPT, PR_TYPE.EXCLUSIVE_ACCESS, 2n, 1n));
    await clearUnitAttentions(target, NEXUS_A);
    assert.deepEqual(await readKeys(), { generation: before + 1, keys: [2n] });
    expectConflict(await out(NEXUS_B, PR_OUT.PREEMPT, PR_TYPE.EXCLUSIVE_ACCESS, 2n, 77n));
    expectSense(await out(NEXUS_B, PR_OUT.PREEMPT, PR_TYPE.EXCLUSIVE_ACCESS, 2n, 0n), "InvalidFieldInParameterList");
  });

  it("test_prout_preempt_holder: the preemptor takes the reservation", async () => {
    expectGood(await register(NEXUS_A, 1n));
    expectGood(await register(NEXUS_B, 2n));
    expectGood(await out(NEXUS_A, PR_OUT.RESERVE, PR_TYPE.WRITE_EXCLUSIVE, 1n, 0n));
    expectGood(await out(NEXUS_B, PR_OUT.PREEMPT_AND_ABORT, PR_TYPE.EXCLUSIVE_ACCESS, 2n, 1n));
    expectSense(await run(target, Buffer.from([0, 0, 0, 0, 0, 0]), { nexus: NEXUS_A }), "UaRegistrationsPreempted");
    assert.deepEqual(await readReservation(), { key: 2n, type: PR_TYPE.EXCLUSIVE_ACCESS });
    assert.equal(await canRead(NEXUS_A), false);
  });

  it("test_prout_register_and_move", async () => {
    expectGood(await register(NEXUS_A, 1n));
    expectGood(await out(NEXUS_A, PR_OUT.RESERVE, PR_TYPE.WRITE_EXCLUSIVE, 1n, 0n));
    const name = Buffer.from(`${NEXUS_B.initiatorPort}\0`);
    const padded = Math.ceil(name.length / 4) * 4;
    const transportId = Buffer.alloc(4 + padded);
    transportId[0] = 0x45;
    transportId.writeUInt16BE(padded, 2);
    name.copy(transportId, 4);
    const dataOut = Buffer.alloc(24 + transportId.length);
    dataOut.writeBigUInt64BE(1n, 0);
    dataOut.writeBigUInt64BE(5n, 8);
    dataOut[17] = 0x02; // UNREG
    dataOut.writeUInt16BE(1, 18);
    dataOut.writeUInt32BE(transportId.length, 20);
    transportId.copy(dataOut, 24);
    const cdb = Buffer.alloc(10);
    cdb[0] = OPCODE.PERSISTENT_RESERVE_OUT;
    cdb[1] = PR_OUT.REGISTER_AND_MOVE;
    cdb[2] = PR_TYPE.WRITE_EXCLUSIVE;
    cdb.writeUInt32BE(dataOut.length, 5);
    expectGood(await run(target, cdb, { dataOut }));
    assert.deepEqual((await readKeys()).keys, [5n]);
    assert.deepEqual(await readReservation(), { key: 5n, type: PR_TYPE.WRITE_EXCLUSIVE });
    assert.ok(await canWrite(NEXUS_B));
    assert.equal(await canWrite(NEXUS_A), false);
  });

  it("test_prin_read_full_status / all target ports", async () => {
    expectGood(await out(NEXUS_A, PR_OUT.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0n, 3n, 0x04));
    expectGood(await out(NEXUS_A, PR_OUT.RESERVE, PR_TYPE.WRITE_EXCLUSIVE, 3n, 0n));
    const data = expectGood(await run(target, prIn(PR_IN.READ_FULL_STATUS)));
    assert.equal(data.readBigUInt64BE(8), 3n);
    assert.equal(data[8 + 12], 0x03, "ALL_TG_PT and R_HOLDER");
    assert.equal(data[8 + 13], PR_TYPE.WRITE_EXCLUSIVE);
    const transportIdLength = data.readUInt32BE(8 + 20);
    const transportId = data.subarray(8 + 24, 8 + 24 + transportIdLength);
    assert.equal(transportId[0], 0x45);
    assert.ok(transportId.subarray(4).toString().startsWith(NEXUS_A.initiatorPort));
    // ALL_TG_PT: the same initiator port through another target port is registered too.
    const otherPort: ScsiNexus = { ...NEXUS_A, targetPort: "iqn.2026-11.org.openvstorage:test,t,0x0002", relativeTargetPortId: 2 };
    await clearUnitAttentions(target, otherPort);
    assert.ok(await canWrite(otherPort));
  });

  it("test_prout_spec_i_pt and parameter list length are refused", async () => {
    expectSense(await out(NEXUS_A, PR_OUT.REGISTER, 0, 0n, 1n, 0x08), "InvalidFieldInParameterList");
    const { cdb, dataOut } = prOut(PR_OUT.REGISTER, 0, 0n, 1n);
    cdb.writeUInt32BE(20, 5);
    expectSense(await run(target, cdb, { dataOut: dataOut.subarray(0, 20) }), "ParameterListLengthError");
    expectSense(await out(NEXUS_A, PR_OUT.REGISTER, 0, 0n, 1n, 0x01), "InvalidFieldInParameterList"); // APTPL without a state file
  });

  it("test_prout_aptpl: reservations survive a restart when APTPL is set", async () => {
    const statePath = join(fixture.directory, "lun0-pr.json");
    const persistent = createScsiTarget();
    await persistent.addLogicalUnit({ lun: 0, device: fixture.volume, serialNumber: "s", naaIdentifierHex: "0000000000000001", reservationStatePath: statePath });
    const who = nexus("aptpl");
    await clearUnitAttentions(persistent, who);
    const send = (serviceAction: number, type: number, key: bigint, serviceActionKey: bigint, flags = 0) => {
      const { cdb, dataOut } = prOut(serviceAction, type, key, serviceActionKey, flags);
      return run(persistent, cdb, { nexus: who, dataOut });
    };
    expectGood(await send(PR_OUT.REGISTER, 0, 0n, 0x42n, 0x01));
    expectGood(await send(PR_OUT.RESERVE, PR_TYPE.EXCLUSIVE_ACCESS, 0x42n, 0n));
    const file = JSON.parse(await readFile(statePath, "utf8")) as { format: string; version: number };
    assert.deepEqual([file.format, file.version], ["ovs-scsi-persistent-reservations", 1]);
    const restarted = createScsiTarget();
    await restarted.addLogicalUnit({ lun: 0, device: fixture.volume, serialNumber: "s", naaIdentifierHex: "0000000000000001", reservationStatePath: statePath });
    await clearUnitAttentions(restarted, NEXUS_B);
    expectConflict(await run(restarted, cdb10(OPCODE.READ_10, 0, 1), { nexus: NEXUS_B }));
    const caps = expectGood(await run(restarted, prIn(PR_IN.REPORT_CAPABILITIES), { nexus: NEXUS_B }));
    assert.equal(caps[3] & 0x01, 1, "PTPL_A");
    await clearUnitAttentions(restarted, who);
    expectGood(await run(restarted, cdb10(OPCODE.READ_10, 0, 1), { nexus: who }));
    // Registering again with APTPL 0 drops the file.
    const { cdb, dataOut } = prOut(PR_OUT.REGISTER, 0, 0x42n, 0x43n);
    expectGood(await run(restarted, cdb, { nexus: who, dataOut }));
    await assert.rejects(readFile(statePath, "utf8"), /ENOENT/);
  });
});

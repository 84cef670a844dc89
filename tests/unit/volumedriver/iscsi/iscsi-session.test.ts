// Goal: the full feature phase (RFC 7143 §4, §11) over a real socket with the test initiator against
// a memory ScsiTarget double: immediate data, unsolicited Data-Out and R2T sequences, Data-In split by
// MaxRecvDataSegmentLength and MaxBurstLength with phase-collapsed status, residuals and sense, the
// CmdSN window, NOP-In/Out, SendTargets, Logout, task management, digests, and several sessions.
import assert from "node:assert/strict";
import { encodePdu, RESERVED_TAG } from "../../../../volumedriver/src/frontends/iscsi/iscsi-pdu.ts";
import { SCSI_STATUS } from "../../../../volumedriver/src/frontends/iscsi/scsi/scsi-types.ts";
import { type IscsiFixture, startIscsiFixture, TARGET_NAME } from "./iscsi-fixture.ts";
import { BLOCK_BYTES } from "./iscsi-memory-target.ts";
import { CDB, type IscsiTestInitiator } from "./iscsi-test-initiator.ts";

function pattern(bytes: number, seed: number): Buffer {
  const data = Buffer.alloc(bytes);
  for (let index = 0; index < bytes; index++) data[index] = (index * 31 + seed) & 0xff;
  return data;
}

describe("iSCSI session (full feature phase)", function () {
  this.timeout(30_000);
  let fixture: IscsiFixture | undefined;

  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  async function loggedIn(keys: Record<string, string> = {}, settings = {}): Promise<IscsiTestInitiator> {
    fixture ??= await startIscsiFixture(settings);
    const initiator = await fixture.connect();
    await initiator.login({ targetName: TARGET_NAME, keys });
    return initiator;
  }

  it("test_session_inquiry_reports_underflow_residual", async () => {
    const initiator = await loggedIn();
    const outcome = await initiator.scsi(CDB.inquiry(255), { readLength: 255 });
    assert.equal(outcome.status, SCSI_STATUS.GOOD);
    assert.equal(outcome.dataIn.length, 36);
    assert.equal(outcome.underflow, true);
    assert.equal(outcome.residualCount, 255 - 36);
    assert.equal(outcome.final.kind, "data-in", "status collapsed into the last Data-In");
  });

  it("test_session_read_overflow_when_edtl_is_short", async () => {
    const initiator = await loggedIn();
    const outcome = await initiator.scsi(CDB.read10(0, 4), { readLength: 4 * BLOCK_BYTES, expectedDataTransferLength: 3 * BLOCK_BYTES });
    assert.equal(outcome.dataIn.length, 3 * BLOCK_BYTES);
    assert.equal(outcome.overflow, true);
    assert.equal(outcome.residualCount, BLOCK_BYTES);
  });

  it("test_session_immediate_data_write_reads_back", async () => {
    const initiator = await loggedIn();
    const data = pattern(8 * BLOCK_BYTES, 1);
    const write = await initiator.scsi(CDB.write10(16, 8), { dataOut: data });
    assert.equal(write.status, SCSI_STATUS.GOOD);
    assert.equal(write.r2ts.length, 0, "all of it went as immediate data");
    assert.deepEqual(fixture!.target.disks.get(0)!.subarray(16 * BLOCK_BYTES, 24 * BLOCK_BYTES), data);
    const read = await initiator.scsi(CDB.read10(16, 8), { readLength: data.length });
    assert.deepEqual(read.dataIn, data);
  });

  it("test_session_unsolicited_data_out_then_r2t_sequences", async () => {
    const initiator = await loggedIn({ FirstBurstLength: "16384", MaxBurstLength: "65536", MaxRecvDataSegmentLength: "8192" });
    const data = pattern(200 * 1024, 2);
    const write = await initiator.scsi(CDB.write10(0, data.length / BLOCK_BYTES), { dataOut: data, immediateBytes: 4096, dataOutSegmentBytes: 4096 });
    assert.equal(write.status, SCSI_STATUS.GOOD);
    // 16 KiB unsolicited (4 KiB immediate + 12 KiB Data-Out), then R2Ts of at most 64 KiB for the rest.
    assert.deepEqual(write.r2ts.map((r2t) => [r2t.r2tSN, r2t.bufferOffset, r2t.desiredDataTransferLength]),
      [[0, 16384, 65536], [1, 81920, 65536], [2, 147456, 57344]]);
    assert.deepEqual(fixture!.target.disks.get(0)!.subarray(0, data.length), data);
  });

  it("test_session_initial_r2t_yes_and_no_immediate_data_use_r2t_only_with_outstanding_r2ts", async () => {
    const initiator = await loggedIn({ InitialR2T: "Yes", ImmediateData: "No", MaxBurstLength: "16384", MaxOutstandingR2T: "3" });
    const data = pattern(64 * 1024, 3);
    const write = await initiator.scsi(CDB.write10(100, data.length / BLOCK_BYTES), { dataOut: data });
    assert.equal(write.status, SCSI_STATUS.GOOD);
    assert.deepEqual(write.r2ts.map((r2t) => r2t.bufferOffset), [0, 16384, 32768, 49152]);
    assert.ok(write.r2ts.every((r2t) => r2t.desiredDataTransferLength === 16384));
    assert.deepEqual(fixture!.target.disks.get(0)!.subarray(100 * BLOCK_BYTES, 100 * BLOCK_BYTES + data.length), data);
  });

  it("test_session_data_in_split_by_max_recv_data_segment_length_and_bursts", async () => {
    const initiator = await loggedIn({ MaxRecvDataSegmentLength: "4096", MaxBurstLength: "16384" });
    const data = pattern(64 * 1024, 4);
    fixture!.target.disks.get(0)!.set(data, 0);
    const read = await initiator.scsi(CDB.read10(0, 128), { readLength: data.length });
    assert.deepEqual(read.dataIn, data);
    assert.equal(read.dataInPdus.length, 16);
    assert.deepEqual(read.dataInPdus.map((pdu) => pdu.dataSN), [...Array(16).keys()]);
    assert.ok(read.dataInPdus.every((pdu) => (pdu.data?.length ?? 0) <= 4096));
    assert.deepEqual(read.dataInPdus.map((pdu, index) => pdu.final ? index : -1).filter((index) => index >= 0), [3, 7, 11, 15], "F ends each 16 KiB burst");
    assert.deepEqual(read.dataInPdus.map((pdu) => pdu.statusPresent), [...Array(15).fill(false), true]);
  });

  it("test_session_check_condition_carries_sense_in_scsi_response", async () => {
    const initiator = await loggedIn();
    const outcome = await initiator.scsi(CDB.read10(0x7fffffff, 1), { readLength: BLOCK_BYTES });
    assert.equal(outcome.status, SCSI_STATUS.CHECK_CONDITION);
    assert.equal(outcome.final.kind, "scsi-response");
    assert.equal(outcome.sense?.[2], 0x05);
    assert.equal(outcome.sense?.[12], 0x21);
  });

  it("test_session_transfer_too_long_and_bidirectional_are_refused_with_sense", async () => {
    const initiator = await loggedIn({}, { transferLengthBytesMax: 65536 });
    const big = await initiator.scsi(CDB.read10(0, 256), { readLength: 128 * 1024 });
    assert.equal(big.status, SCSI_STATUS.CHECK_CONDITION);
    assert.deepEqual([big.sense?.[2], big.sense?.[12]], [0x05, 0x24]);
    assert.equal(fixture!.target.executed.length, 0, "the SCSI layer never saw it");
  });

  it("test_session_data_out_budget_gives_task_set_full_while_others_hold_it", async () => {
    // 1 MiB of budget: a held 768 KiB write holds most of it, so a 512 KiB write waits its turn
    // (TASK SET FULL) while a 128 KiB one fits; once the held write finished the 512 KiB one goes.
    const initiator = await loggedIn({}, { dataOutBytesInFlightMax: 1024 * 1024 });
    const target = fixture!.target;
    target.holdOpcodes.add(0x2a);
    const held = initiator.scsi(CDB.write10(0, 1536), { dataOut: pattern(1536 * BLOCK_BYTES, 3) });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(target.heldCount, 1);
    target.holdOpcodes.clear();
    const refused = await initiator.scsi(CDB.write10(2048, 1024), { dataOut: pattern(1024 * BLOCK_BYTES, 4) });
    assert.equal(refused.status, SCSI_STATUS.TASK_SET_FULL);
    const small = await initiator.scsi(CDB.write10(4096, 256), { dataOut: pattern(256 * BLOCK_BYTES, 5) });
    assert.equal(small.status, SCSI_STATUS.GOOD, "a write that fits the rest of the budget goes ahead");
    target.releaseHeld();
    assert.equal((await held).status, SCSI_STATUS.GOOD);
    const retried = await initiator.scsi(CDB.write10(2048, 1024), { dataOut: pattern(1024 * BLOCK_BYTES, 4) });
    assert.equal(retried.status, SCSI_STATUS.GOOD);
  });

  it("test_session_cmdsn_window_closes_while_busy_and_ignores_commands_outside_it", async () => {
    const initiator = await loggedIn({}, { commandWindowSize: 4 });
    assert.equal((initiator.maxCmdSN - initiator.cmdSN + 1) >>> 0, 4, "MaxCmdSN = ExpCmdSN + window - 1");
    const target = fixture!.target;
    target.holdOpcodes.add(0x00);
    const held = [1, 2, 3, 4].map(() => initiator.scsi(CDB.testUnitReady()));
    // A command numbered beyond MaxCmdSN is silently ignored (RFC 7143 §4.2.2.1), the connection stays.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const beyond = initiator.scsi(CDB.inquiry(36), { readLength: 36, cmdSN: (initiator.maxCmdSN + 1) >>> 0, timeoutMs: 500 });
    await assert.rejects(beyond, /no matching PDU/);
    assert.equal(target.heldCount, 4);
    // A NOP ping shows the window closed: MaxCmdSN = ExpCmdSN - 1.
    const nop = await initiator.nop();
    assert.equal(nop.kind === "nop-in" && ((nop.maxCmdSN + 1) >>> 0) === nop.expCmdSN, true);
    target.holdOpcodes.clear();
    target.releaseHeld();
    for (const outcome of await Promise.all(held)) assert.equal(outcome.status, SCSI_STATUS.GOOD);
    // A duplicate of an already received CmdSN is ignored too; the next in-window command works.
    const duplicate = initiator.scsi(CDB.testUnitReady(), { cmdSN: (initiator.cmdSN - 1) >>> 0, timeoutMs: 300 });
    await assert.rejects(duplicate, /no matching PDU/);
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, SCSI_STATUS.GOOD);
  });

  it("test_session_nop_out_ping_is_echoed", async () => {
    const initiator = await loggedIn();
    const data = Buffer.from("ping-payload");
    const reply = await initiator.nop(data);
    assert.equal(reply.kind, "nop-in");
    assert.deepEqual(reply.data, data);
    assert.equal(reply.kind === "nop-in" && reply.targetTransferTag, RESERVED_TAG);
  });

  it("test_session_keepalive_nop_in_after_idle_answered_keeps_connection", async () => {
    const initiator = await loggedIn({}, { nopInIntervalMs: 100, nopInTimeoutMs: 400 });
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.ok(initiator.pingsReceived >= 2, `pings: ${initiator.pingsReceived}`);
    assert.equal(initiator.closedFlag, false);
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, SCSI_STATUS.GOOD);
  });

  it("test_session_keepalive_unanswered_drops_connection", async () => {
    const initiator = await loggedIn({}, { nopInIntervalMs: 100, nopInTimeoutMs: 300 });
    initiator.answerPings = false;
    await initiator.closed;
    assert.ok(initiator.pingsReceived >= 1);
  });

  it("test_session_send_targets_in_normal_session_and_continued_response", async () => {
    fixture = await startIscsiFixture();
    for (let index = 0; index < 40; index++) {
      fixture.registry.add({ name: `iqn.2026-11.org.openvstorage:extra-target-with-a-long-name-${index}`, scsiTarget: fixture.target });
    }
    const initiator = await loggedIn({ MaxRecvDataSegmentLength: "512" });
    const own = await initiator.text("SendTargets=\0");
    assert.deepEqual(own, [["TargetName", TARGET_NAME], ["TargetAddress", `127.0.0.1:${fixture.port},1`]]);
    const all = await initiator.text("SendTargets=All\0");
    assert.equal(all.filter(([key]) => key === "TargetName").length, 41, "a response over 512 bytes continued with the C bit");
    assert.deepEqual(await initiator.text("Unknown=1\0"), [["Unknown", "NotUnderstood"]]);
  });

  it("test_session_logout_closes_session_and_reports_nexus_loss", async () => {
    const initiator = await loggedIn();
    assert.equal(fixture!.server.sessionCount(), 1);
    const response = await initiator.logout();
    assert.equal(response.kind === "logout-response" && response.response, 0);
    await initiator.closed;
    assert.equal(fixture!.server.sessionCount(), 0);
    assert.equal(fixture!.target.lostNexuses.length, 1);
    assert.match(fixture!.target.lostNexuses[0]!.initiatorPort, /,i,0x801234560001$/);
    assert.equal(fixture!.target.lostNexuses[0]!.targetPort, `${TARGET_NAME},t,0x0001`);
  });

  it("test_session_logout_waits_for_commands_in_flight", async () => {
    const initiator = await loggedIn();
    fixture!.target.holdOpcodes.add(0x00);
    const pending = initiator.scsi(CDB.testUnitReady());
    await new Promise((resolve) => setTimeout(resolve, 50));
    const logout = initiator.logout();
    setTimeout(() => fixture!.target.releaseHeld(), 100);
    assert.equal((await pending).status, SCSI_STATUS.GOOD, "the command's response comes before the Logout Response");
    assert.equal((await logout).kind, "logout-response");
  });

  it("test_session_abort_task_aborts_through_signal_and_sends_no_status", async () => {
    const initiator = await loggedIn();
    const target = fixture!.target;
    target.holdOpcodes.add(0x00);
    const itt = initiator.allocateTag();
    const aborted = initiator.scsi(CDB.testUnitReady(), { initiatorTaskTag: itt, timeoutMs: 800 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const response = await initiator.taskManagement(1, 0, itt);
    assert.equal(response.kind === "task-management-response" && response.response, 0);
    assert.equal(target.executed[0]!.signal?.aborted, true);
    await assert.rejects(aborted, /no matching PDU/, "an aborted task gets no status");
    assert.deepEqual(target.taskManagementCalls, [{ fn: "abort-task", lun: 0, referencedTaskTag: itt }]);
    assert.equal((await initiator.scsi(CDB.inquiry(36), { readLength: 36 })).status, SCSI_STATUS.GOOD);
  });

  it("test_session_abort_task_for_finished_task_is_task_does_not_exist", async () => {
    const initiator = await loggedIn();
    const itt = initiator.allocateTag();
    await initiator.scsi(CDB.testUnitReady(), { initiatorTaskTag: itt });
    const response = await initiator.taskManagement(1, 0, itt, (initiator.cmdSN - 1) >>> 0);
    assert.equal(response.kind === "task-management-response" && response.response, 1);
  });

  it("test_session_abort_task_set_and_lun_reset_reach_every_session", async () => {
    const first = await loggedIn();
    const second = await fixture!.connect();
    await second.login({ targetName: TARGET_NAME, isid: Buffer.from([0x80, 0, 0, 0, 0, 2]) });
    const target = fixture!.target;
    target.holdOpcodes.add(0x00);
    const mine = first.scsi(CDB.testUnitReady(), { timeoutMs: 800 });
    const theirs = second.scsi(CDB.testUnitReady(), { timeoutMs: 800 });
    const otherLun = first.scsi(CDB.testUnitReady(), { lun: 1 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const reset = await first.taskManagement(5, 0);
    assert.equal(reset.kind === "task-management-response" && reset.response, 0);
    await assert.rejects(mine, /no matching PDU/);
    await assert.rejects(theirs, /no matching PDU/);
    target.holdOpcodes.clear();
    target.releaseHeld();
    assert.equal((await otherLun).status, SCSI_STATUS.GOOD, "a task on another LUN is not aborted");
    assert.equal(target.taskManagementCalls.at(-1)?.fn, "lun-reset");
    const warm = await second.taskManagement(6, 0);
    assert.equal(warm.kind === "task-management-response" && warm.response, 0);
    assert.equal((await second.scsi(CDB.testUnitReady())).status, SCSI_STATUS.GOOD);
  });

  it("test_session_unsupported_task_management_functions", async () => {
    const initiator = await loggedIn();
    const clearAca = await initiator.taskManagement(3, 0);
    assert.equal(clearAca.kind === "task-management-response" && clearAca.response, 5);
    const reassign = await initiator.taskManagement(8, 0);
    assert.equal(reassign.kind === "task-management-response" && reassign.response, 4);
    const unknown = await initiator.taskManagement(99, 0);
    assert.equal(unknown.kind === "task-management-response" && unknown.response, 255);
  });

  it("test_session_digests_on_write_and_read", async () => {
    const initiator = await loggedIn({ HeaderDigest: "CRC32C", DataDigest: "CRC32C", MaxRecvDataSegmentLength: "8192" });
    assert.deepEqual(initiator.digests, { header: true, data: true });
    const data = pattern(300 * 1024 + 7 * BLOCK_BYTES, 5);
    const write = await initiator.scsi(CDB.write10(0, data.length / BLOCK_BYTES), { dataOut: data, dataOutSegmentBytes: 8192 });
    assert.equal(write.status, SCSI_STATUS.GOOD);
    const read = await initiator.scsi(CDB.read10(0, data.length / BLOCK_BYTES), { readLength: data.length });
    assert.deepEqual(read.dataIn, data);
    assert.deepEqual(await initiator.text("SendTargets=\0"), [["TargetName", TARGET_NAME], ["TargetAddress", `127.0.0.1:${fixture!.port},1`]]);
  });

  it("test_session_data_digest_error_on_data_out_rejects_and_fails_the_task", async () => {
    const initiator = await loggedIn({ DataDigest: "CRC32C", InitialR2T: "Yes", ImmediateData: "No" });
    const itt = initiator.allocateTag();
    const data = pattern(4096, 6);
    // Corrupt the data of the Data-Out answering the R2T: flip bits after encoding.
    const originalSend = initiator.send.bind(initiator);
    initiator.send = (pdu) => {
      if (pdu.kind === "data-out") {
        pdu = { ...pdu, data: Buffer.from(pdu.data ?? Buffer.alloc(0)) };
        const encoded = Buffer.concat(encodePdu(pdu, initiator.digests));
        encoded[60] ^= 0x01;
        initiator.sendRaw(encoded);
        return;
      }
      originalSend(pdu);
    };
    const outcome = await initiator.scsi(CDB.write10(0, 8), { dataOut: data, initiatorTaskTag: itt });
    initiator.send = originalSend;
    assert.equal(outcome.status, SCSI_STATUS.CHECK_CONDITION);
    assert.deepEqual([outcome.sense?.[2], outcome.sense?.[12], outcome.sense?.[13]], [0x0b, 0x47, 0x05], "PROTOCOL SERVICE CRC ERROR");
    assert.equal(initiator.rejects[0]?.kind === "reject" && initiator.rejects[0].reason, 0x02);
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, SCSI_STATUS.GOOD, "the session goes on");
  });

  it("test_session_reinstatement_with_same_isid_replaces_the_old_session", async () => {
    const old = await loggedIn();
    const fresh = await fixture!.connect();
    await fresh.login({ targetName: TARGET_NAME });
    await old.closed;
    assert.equal(fixture!.server.sessionCount(), 1);
    assert.equal((await fresh.scsi(CDB.testUnitReady())).status, SCSI_STATUS.GOOD);
  });

  it("test_session_several_sessions_per_target_work_concurrently", async () => {
    fixture = await startIscsiFixture();
    const initiators = await Promise.all([1, 2, 3, 4].map(async (index) => {
      const initiator = await fixture!.connect();
      await initiator.login({ targetName: TARGET_NAME, isid: Buffer.from([0x80, 0, 0, 0, 1, index]) });
      return initiator;
    }));
    await Promise.all(initiators.map(async (initiator, index) => {
      const data = pattern(32 * BLOCK_BYTES, index);
      assert.equal((await initiator.scsi(CDB.write10(index * 64, 32), { dataOut: data })).status, 0);
      assert.deepEqual((await initiator.scsi(CDB.read10(index * 64, 32), { readLength: data.length })).dataIn, data);
    }));
    assert.equal(fixture.server.sessionCount(), 4);
  });

  it("test_session_connections_max_refuses_at_accept", async () => {
    fixture = await startIscsiFixture({ connectionsMax: 1 });
    const first = await fixture.connect();
    await first.login({ targetName: TARGET_NAME });
    const second = await fixture.connect();
    await second.closed;
    assert.equal((await first.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_session_scsi_command_in_discovery_session_is_rejected", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    await initiator.login({ sessionType: "Discovery" });
    await assert.rejects(initiator.scsi(CDB.testUnitReady(), { timeoutMs: 300 }));
    assert.equal(initiator.rejects[0]?.kind === "reject" && initiator.rejects[0].reason, 0x04);
    assert.equal((await initiator.text("SendTargets=All\0")).length, 2);
  });
});

// Goal: the login phase (RFC 7143 §6, §11.12-13, §12.1.3, §13) admits the right initiators and
// refuses the wrong ones with the right status class and detail: CHAP one-way and mutual, wrong
// secrets, ACLs, unknown targets, bad versions, missing keys; and negotiates the operational keys to
// the outcomes RFC 7143 §13 defines (min, max, AND, OR, declarative, NotUnderstood).
import assert from "node:assert/strict";
import { IscsiTargetMap, startIscsiServer, vpoolTargetName } from "../../../../volumedriver/src/frontends/iscsi/iscsi-server.ts";
import { startIscsiFixture, TARGET_NAME, type IscsiFixture, transportTestLogger } from "./iscsi-fixture.ts";
import { MemoryScsiTarget } from "./iscsi-memory-target.ts";
import { CDB, IscsiTestInitiator, LoginFailed, TEST_INITIATOR_NAME } from "./iscsi-test-initiator.ts";

const CHAP = {
  initiator: { username: "initiator-user", secret: "initiator-secret-1" },
  target: { username: "target-user", secret: "target-secret-22" },
};

async function expectLoginFailure(login: Promise<unknown>, statusClass: number, statusDetail: number): Promise<void> {
  await assert.rejects(login, (error: unknown) => {
    assert.ok(error instanceof LoginFailed, String(error));
    assert.deepEqual([error.statusClass, error.statusDetail], [statusClass, statusDetail]);
    return true;
  });
}

describe("iSCSI login", function () {
  this.timeout(20_000);
  let fixture: IscsiFixture | undefined;

  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  it("test_login_without_authentication_reaches_full_feature_phase", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    const keys = await initiator.login({ targetName: TARGET_NAME });
    assert.equal(keys.get("AuthMethod"), "None");
    assert.equal(keys.get("TargetPortalGroupTag"), "1");
    assert.equal(keys.get("TargetAlias"), "pool");
    assert.notEqual(initiator.tsih, 0);
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_login_chap_one_way", async () => {
    fixture = await startIscsiFixture({}, { chap: { initiator: CHAP.initiator } });
    const initiator = await fixture.connect();
    const keys = await initiator.login({ targetName: TARGET_NAME, chap: CHAP.initiator });
    assert.equal(keys.get("AuthMethod"), "CHAP");
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_login_chap_wrong_secret_is_authentication_failure_0201", async () => {
    fixture = await startIscsiFixture({}, { chap: { initiator: CHAP.initiator } });
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({ targetName: TARGET_NAME, chap: { ...CHAP.initiator, secret: "wrong-secret-00" } }), 2, 1);
    await initiator.closed;
  });

  it("test_login_chap_wrong_name_is_authentication_failure_0201", async () => {
    fixture = await startIscsiFixture({}, { chap: { initiator: CHAP.initiator } });
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({ targetName: TARGET_NAME, chap: { ...CHAP.initiator, username: "someone" } }), 2, 1);
  });

  it("test_login_chap_mutual", async () => {
    fixture = await startIscsiFixture({}, { chap: CHAP });
    const initiator = await fixture.connect();
    await initiator.login({ targetName: TARGET_NAME, chap: CHAP.initiator, mutualChap: CHAP.target });
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_login_chap_mutual_without_target_credentials_is_refused", async () => {
    fixture = await startIscsiFixture({}, { chap: { initiator: CHAP.initiator } });
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({ targetName: TARGET_NAME, chap: CHAP.initiator, mutualChap: CHAP.target }), 2, 1);
  });

  it("test_login_chap_mutual_required_refuses_one_way", async () => {
    fixture = await startIscsiFixture({}, { chap: { ...CHAP, mutualRequired: true } });
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({ targetName: TARGET_NAME, chap: CHAP.initiator }), 2, 1);
  });

  it("test_login_chap_required_refuses_auth_method_none", async () => {
    fixture = await startIscsiFixture({}, { chap: { initiator: CHAP.initiator } });
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({ targetName: TARGET_NAME }), 2, 1);
  });

  it("test_login_chap_required_refuses_skipping_security_stage", async () => {
    fixture = await startIscsiFixture({}, { chap: { initiator: CHAP.initiator } });
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({ targetName: TARGET_NAME, skipSecurity: true }), 2, 1);
  });

  it("test_login_initiator_outside_acl_is_authorization_failure_0202", async () => {
    fixture = await startIscsiFixture({}, { allowedInitiators: ["iqn.2026-11.org.example:allowed"] });
    const refused = await fixture.connect();
    await expectLoginFailure(refused.login({ targetName: TARGET_NAME }), 2, 2);
    const allowed = await fixture.connect();
    await allowed.login({ targetName: TARGET_NAME, initiatorName: "iqn.2026-11.org.example:allowed" });
  });

  it("test_login_unknown_target_is_not_found_0203", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({ targetName: vpoolTargetName("nope") }), 2, 3);
  });

  it("test_login_missing_target_name_is_missing_parameter_0207", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({}), 2, 7);
  });

  it("test_login_missing_initiator_name_is_missing_parameter_0207", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    await expectLoginFailure(initiator.login({ targetName: TARGET_NAME, initiatorName: "" }), 2, 7);
  });

  it("test_login_unsupported_version_is_0205", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    initiator.send({
      kind: "login-request", transit: true, continue: false, currentStage: 1, nextStage: 3, versionMax: 2, versionMin: 1, isid: initiator.isid,
      tsih: 0, initiatorTaskTag: 1, cid: 0, cmdSN: 1, expStatSN: 0, data: Buffer.from(`InitiatorName=${TEST_INITIATOR_NAME}\0TargetName=${TARGET_NAME}\0`),
    });
    const response = await initiator.waitFor((pdu) => pdu.kind === "login-response");
    assert.equal(response.kind === "login-response" && `${response.statusClass}/${response.statusDetail}`, "2/5");
    await initiator.closed;
  });

  it("test_login_unknown_tsih_is_session_does_not_exist_020a", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    initiator.tsih = 999;
    await expectLoginFailure(initiator.login({ targetName: TARGET_NAME }), 2, 0x0a);
  });

  it("test_login_second_connection_of_a_session_is_too_many_connections_0206", async () => {
    fixture = await startIscsiFixture();
    const first = await fixture.connect();
    await first.login({ targetName: TARGET_NAME });
    const second = await fixture.connect();
    second.tsih = first.tsih;
    second.isid = first.isid;
    await expectLoginFailure(second.login({ targetName: TARGET_NAME }), 2, 6);
  });

  it("test_login_sessions_max_is_out_of_resources_0302", async () => {
    fixture = await startIscsiFixture({ sessionsMax: 1 });
    const first = await fixture.connect();
    await first.login({ targetName: TARGET_NAME });
    const second = await fixture.connect();
    await expectLoginFailure(second.login({ targetName: TARGET_NAME, isid: Buffer.from([0x80, 0, 0, 0, 0, 9]) }), 3, 2);
  });

  it("test_login_duplicate_key_is_initiator_error_0200", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    initiator.send({
      kind: "login-request", transit: true, continue: false, currentStage: 1, nextStage: 3, versionMax: 0, versionMin: 0, isid: initiator.isid,
      tsih: 0, initiatorTaskTag: 1, cid: 0, cmdSN: 1, expStatSN: 0,
      data: Buffer.from(`InitiatorName=${TEST_INITIATOR_NAME}\0TargetName=${TARGET_NAME}\0MaxBurstLength=512\0MaxBurstLength=1024\0`),
    });
    const response = await initiator.waitFor((pdu) => pdu.kind === "login-response");
    assert.equal(response.kind === "login-response" && `${response.statusClass}/${response.statusDetail}`, "2/0");
  });

  it("test_login_negotiates_operational_keys_per_rfc_7143_section_13", async () => {
    fixture = await startIscsiFixture({ maxBurstLengthBytes: 131072, firstBurstLengthBytes: 32768, maxOutstandingR2T: 2, initialR2T: false, immediateData: true });
    const initiator = await fixture.connect();
    const keys = await initiator.login({
      targetName: TARGET_NAME, keys: {
        HeaderDigest: "CRC32C,None", DataDigest: "None,CRC32C", MaxBurstLength: "1048576", FirstBurstLength: "16384", MaxOutstandingR2T: "8",
        InitialR2T: "Yes", ImmediateData: "No", ErrorRecoveryLevel: "2", MaxConnections: "4", DefaultTime2Wait: "5", DefaultTime2Retain: "20",
        IFMarker: "Yes", OFMarkInt: "2048~8192", "X-com.example.private": "1", iSCSIProtocolLevel: "2", MaxRecvDataSegmentLength: "16384",
      },
    });
    assert.equal(keys.get("HeaderDigest"), "CRC32C", "the initiator's first choice we support");
    assert.equal(keys.get("DataDigest"), "None");
    assert.equal(keys.get("MaxBurstLength"), "131072", "min");
    assert.equal(keys.get("FirstBurstLength"), "16384", "min");
    assert.equal(keys.get("MaxOutstandingR2T"), "2", "min");
    assert.equal(keys.get("InitialR2T"), "Yes", "OR");
    assert.equal(keys.get("ImmediateData"), "No", "AND");
    assert.equal(keys.get("ErrorRecoveryLevel"), "0");
    assert.equal(keys.get("MaxConnections"), "1");
    assert.equal(keys.get("DefaultTime2Wait"), "5", "max");
    assert.equal(keys.get("DefaultTime2Retain"), "0", "min");
    assert.equal(keys.get("IFMarker"), "No");
    assert.equal(keys.get("OFMarkInt"), "Irrelevant");
    assert.equal(keys.get("X-com.example.private"), "NotUnderstood");
    assert.equal(keys.get("iSCSIProtocolLevel"), "1");
    assert.equal(keys.get("MaxRecvDataSegmentLength"), "262144", "ours, declared");
    // The session works with header digests on.
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_login_unsupported_digest_is_answered_reject", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    const keys = await initiator.login({ targetName: TARGET_NAME, keys: { DataDigest: "MD5" } });
    assert.equal(keys.get("DataDigest"), "Reject");
  });

  it("test_login_text_continued_with_c_bit", async () => {
    fixture = await startIscsiFixture();
    const initiator = await fixture.connect();
    const keys = await initiator.login({ targetName: TARGET_NAME, skipSecurity: true, continueText: true });
    assert.equal(keys.get("MaxBurstLength"), "262144");
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_login_discovery_session_with_discovery_chap", async () => {
    fixture = await startIscsiFixture({ discoveryChap: { initiator: CHAP.initiator } });
    const refused = await fixture.connect();
    await expectLoginFailure(refused.login({ sessionType: "Discovery" }), 2, 1);
    const initiator = await fixture.connect();
    await initiator.login({ sessionType: "Discovery", chap: CHAP.initiator });
    const answer = await initiator.text("SendTargets=All\0");
    assert.deepEqual(answer.map(([key]) => key), ["TargetName", "TargetAddress"]);
  });

  it("test_login_timeout_drops_a_silent_connection", async () => {
    fixture = await startIscsiFixture({ loginTimeoutMs: 200 });
    const initiator = await fixture.connect();
    const started = Date.now();
    await initiator.closed;
    assert.ok(Date.now() - started < 5_000);
  });

  it("test_login_target_added_later_is_found_and_removed_target_is_not", async () => {
    const registry = new IscsiTargetMap();
    const server = await startIscsiServer(registry, { host: "127.0.0.1", port: 0, logger: transportTestLogger() });
    try {
      const name = vpoolTargetName("later");
      const early = await IscsiTestInitiator.connect(server.port);
      await expectLoginFailure(early.login({ targetName: name }), 2, 3);
      early.close();
      registry.add({ name, scsiTarget: new MemoryScsiTarget() });
      const late = await IscsiTestInitiator.connect(server.port);
      await late.login({ targetName: name });
      late.close();
      registry.remove(name);
      const gone = await IscsiTestInitiator.connect(server.port);
      await expectLoginFailure(gone.login({ targetName: name }), 2, 3);
      gone.close();
    } finally {
      await server.close();
    }
  });

  it("test_login_registry_refuses_weak_or_reused_chap_secrets", () => {
    const registry = new IscsiTargetMap();
    assert.throws(() => registry.add({ name: "iqn.x:a", scsiTarget: new MemoryScsiTarget(), chap: { initiator: { username: "u", secret: "short" } } }), RangeError);
    assert.throws(() => registry.add({
      name: "iqn.x:b", scsiTarget: new MemoryScsiTarget(),
      chap: { initiator: { username: "u", secret: "same-secret-123" }, target: { username: "t", secret: "same-secret-123" } },
    }), RangeError);
  });
});

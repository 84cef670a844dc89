// Goal: real iSCSI initiators (libiscsi's iscsi-ls, iscsi-inq, iscsi-readcapacity16 and qemu-io's
// iscsi:// driver) work against our target serving a real engine volume through the SCSI layer:
// discovery, INQUIRY, READ CAPACITY(16), pattern writes and reads that land in the volume, CHAP
// (right and wrong secret, mutual) and an initiator ACL.
import assert from "node:assert/strict";
import pino from "pino";
import { MemoryObjectStore } from "../../volumedriver/src/backend/memory-store.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { MIB, type Volume, type VPool } from "../../volumedriver/src/engine/vpool-types.ts";
import { IscsiTargetMap, startIscsiServer, vpoolTargetName } from "../../volumedriver/src/frontends/iscsi/iscsi-server.ts";
import type { IscsiServer } from "../../volumedriver/src/frontends/iscsi/iscsi-types.ts";
import { createScsiTarget } from "../../volumedriver/src/frontends/iscsi/scsi/scsi-target.ts";
import { requireTool, runTool, runToolOk } from "../helpers/nbd-tools.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const VOLUME_SIZE_BYTES = 64 * MIB;
const TARGET = vpoolTargetName("iscsitest");
const CHAP_TARGET = vpoolTargetName("iscsichap");
const ACL_TARGET = vpoolTargetName("iscsiacl");
const CHAP = { initiator: { username: "chapuser", secret: "chap-secret-0001" }, target: { username: "chaptarget", secret: "target-secret-02" } };
const ALLOWED_INITIATOR = "iqn.2026-11.org.openvstorage:allowed-host";
const TOOL_TIMEOUT_MS = 60_000;

describe("iSCSI target with real initiators", function () {
  this.timeout(180_000);
  const tempDirs = new TempDirs("iscsi-tools");
  let backend: MemoryObjectStore | undefined;
  let vpool: VPool | undefined;
  const volumes: Volume[] = [];
  let server: IscsiServer | undefined;
  let url: (target: string, lun?: number, credentials?: string) => string;

  before(async function () {
    requireTool(this, "iscsi-ls", "iscsi-inq", "iscsi-readcapacity16", "qemu-io", "qemu-img", "qemu-block-iscsi");
    backend = new MemoryObjectStore();
    const directory = await tempDirs.make();
    vpool = await openVPool({ name: "iscsitest", directory, backend, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 60_000 });
    const registry = new IscsiTargetMap();
    for (const [index, name] of [TARGET, CHAP_TARGET, ACL_TARGET].entries()) {
      const volume = await vpool.createVolume(`disk${index}`, VOLUME_SIZE_BYTES);
      volumes.push(volume);
      const scsiTarget = createScsiTarget();
      await scsiTarget.addLogicalUnit({ lun: 0, device: volume, serialNumber: `disk${index}`, naaIdentifierHex: `00000000000000a${index}` });
      registry.add({
        name, alias: `disk${index}`, scsiTarget,
        ...(name === CHAP_TARGET ? { chap: CHAP } : {}),
        ...(name === ACL_TARGET ? { allowedInitiators: [ALLOWED_INITIATOR] } : {}),
      });
    }
    server = await startIscsiServer(registry, { host: "127.0.0.1", port: 0, logger: pino({ level: process.env.ISCSI_TEST_LOG ?? "silent" }) });
    const port = server.port;
    url = (target, lun, credentials) => `iscsi://${credentials === undefined ? "" : `${credentials}@`}127.0.0.1:${port}/${target}${lun === undefined ? "" : `/${lun}`}`;
  });

  after(async () => {
    await server?.close();
    await vpool?.close();
    await backend?.close();
    await tempDirs.removeAll();
  });

  it("test_tools_iscsi_ls_discovers_targets_and_luns", async () => {
    // Discovery is open; SendTargets lists the targets whose ACL admits iscsi-ls's initiator name.
    const discovery = await runToolOk("iscsi-ls", [`iscsi://127.0.0.1:${server!.port}`], { timeoutMs: TOOL_TIMEOUT_MS });
    assert.match(discovery.stdout, new RegExp(`Target:${TARGET} Portal:127\\.0\\.0\\.1:${server!.port},1`));
    assert.match(discovery.stdout, new RegExp(`Target:${CHAP_TARGET} `));
    assert.doesNotMatch(discovery.stdout, new RegExp(ACL_TARGET), "a target whose ACL excludes the initiator is not listed");
  });

  it("test_tools_iscsi_inq_standard_inquiry", async () => {
    const inquiry = await runToolOk("iscsi-inq", [url(TARGET, 0)], { timeoutMs: TOOL_TIMEOUT_MS });
    assert.match(inquiry.stdout, /Peripheral Device Type:DIRECT_ACCESS/);
    assert.match(inquiry.stdout, /Vendor:/);
  });

  it("test_tools_iscsi_readcapacity16_reports_the_volume_size", async () => {
    const capacity = await runToolOk("iscsi-readcapacity16", [url(TARGET, 0)], { timeoutMs: TOOL_TIMEOUT_MS });
    const blockLength = Number(/LOGICAL BLOCK LENGTH IN BYTES:(\d+)/.exec(capacity.stdout)?.[1]);
    const lastLba = Number(/RETURNED LOGICAL BLOCK ADDRESS:(\d+)/.exec(capacity.stdout)?.[1]);
    assert.equal(blockLength, 512, capacity.stdout);
    assert.equal((lastLba + 1) * blockLength, VOLUME_SIZE_BYTES, capacity.stdout);
    assert.match(capacity.stdout, new RegExp(`Total size:${VOLUME_SIZE_BYTES}`));
  });

  it("test_tools_qemu_io_pattern_writes_and_reads_land_in_the_volume", async () => {
    const result = await runToolOk("qemu-io", ["-f", "raw", url(TARGET, 0),
      "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 5M 4M", "-c", "write -P 0x11 63M 512",
      "-c", "read -P 0xab 0 1M", "-c", "read -P 0xcd 5M 4M", "-c", "read -P 0x11 63M 512", "-c", "read -P 0 1M 1M"], { timeoutMs: TOOL_TIMEOUT_MS });
    assert.doesNotMatch(result.stdout + result.stderr, /Pattern verification failed|error/i, result.stdout + result.stderr);
    const volume = volumes[0]!;
    assert.ok((await volume.read(0, MIB)).every((byte) => byte === 0xab));
    assert.ok((await volume.read(5 * MIB, 4 * MIB)).every((byte) => byte === 0xcd));
    assert.ok((await volume.read(63 * MIB, 512)).every((byte) => byte === 0x11));
  });

  it("test_tools_chap_right_secret_works_and_wrong_secret_is_refused", async () => {
    const good = await runToolOk("iscsi-inq", [url(CHAP_TARGET, 0, `${CHAP.initiator.username}%${CHAP.initiator.secret}`)], { timeoutMs: TOOL_TIMEOUT_MS });
    assert.match(good.stdout, /DIRECT_ACCESS/);
    const wrong = await runTool("iscsi-inq", [url(CHAP_TARGET, 0, `${CHAP.initiator.username}%not-the-secret-9`)], { timeoutMs: TOOL_TIMEOUT_MS });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr + wrong.stdout, /Authentication failure/i);
    const none = await runTool("iscsi-inq", [url(CHAP_TARGET, 0)], { timeoutMs: TOOL_TIMEOUT_MS });
    assert.notEqual(none.code, 0);
  });

  it("test_tools_mutual_chap_with_qemu_io", async () => {
    // libiscsi takes the target's credentials from LIBISCSI_CHAP_TARGET_USERNAME/PASSWORD (mutual CHAP).
    const result = await runToolOk("qemu-io", ["-f", "raw", url(CHAP_TARGET, 0, `${CHAP.initiator.username}%${CHAP.initiator.secret}`),
      "-c", "write -P 0x5a 0 64k", "-c", "read -P 0x5a 0 64k"], {
      timeoutMs: TOOL_TIMEOUT_MS,
      env: { LIBISCSI_CHAP_TARGET_USERNAME: CHAP.target.username, LIBISCSI_CHAP_TARGET_PASSWORD: CHAP.target.secret },
    });
    assert.doesNotMatch(result.stdout + result.stderr, /Pattern verification failed|error/i);
    assert.ok((await volumes[1]!.read(0, 65536)).every((byte) => byte === 0x5a));
    // The initiator checks the target's answer: a wrong target secret makes the login fail.
    const forged = await runTool("iscsi-inq", [url(CHAP_TARGET, 0)], {
      timeoutMs: TOOL_TIMEOUT_MS,
      env: {
        LIBISCSI_CHAP_USERNAME: CHAP.initiator.username, LIBISCSI_CHAP_PASSWORD: CHAP.initiator.secret,
        LIBISCSI_CHAP_TARGET_USERNAME: CHAP.target.username, LIBISCSI_CHAP_TARGET_PASSWORD: "not-the-target-secret",
      },
    });
    assert.notEqual(forged.code, 0, "mutual CHAP was not checked");
  });

  it("test_tools_acl_refuses_other_initiators_and_admits_the_listed_one", async () => {
    const refused = await runTool("iscsi-inq", [url(ACL_TARGET, 0)], { timeoutMs: TOOL_TIMEOUT_MS });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr + refused.stdout, /Authorization failure/i);
    const admitted = await runToolOk("iscsi-inq", ["-i", ALLOWED_INITIATOR, url(ACL_TARGET, 0)], { timeoutMs: TOOL_TIMEOUT_MS });
    assert.match(admitted.stdout, /DIRECT_ACCESS/);
  });
});

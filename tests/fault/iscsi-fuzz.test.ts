// Goal: the iSCSI target survives hostile initiators. Targeted cases check that each kind of bad PDU
// gets the answer RFC 7143 asks for (Reject with the right reason, silent discard, or a clean close);
// then many connections feed random and mutated PDUs (seeded: OVS_SEED replays them; the seed is
// printed on failure) for a bounded time while one good session keeps writing, reading back and
// verifying: the server never crashes, the good session never sees wrong data, and every hostile
// connection is eventually closed.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { digestOf, encodeLun, encodePdu, type InitiatorPdu, RESERVED_TAG } from "../../volumedriver/src/frontends/iscsi/iscsi-pdu.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { type IscsiFixture, startIscsiFixture, TARGET_NAME } from "../unit/volumedriver/iscsi/iscsi-fixture.ts";
import { BLOCK_BYTES, MemoryScsiTarget } from "../unit/volumedriver/iscsi/iscsi-memory-target.ts";
import { CDB, IscsiTestInitiator, TEST_INITIATOR_NAME } from "../unit/volumedriver/iscsi/iscsi-test-initiator.ts";

const FUZZ_DURATION_MS = Number(process.env.ISCSI_FUZZ_SECONDS ?? 8) * 1000;
const FUZZ_CONNECTIONS_AT_ONCE = 12;
const GOOD_REGION_BLOCKS = 2048;
const FUZZ_TARGET_NAME = "iqn.2026-11.org.openvstorage:fuzz";

function nopOut(initiator: IscsiTestInitiator, data: Buffer = Buffer.from("abcd")): InitiatorPdu {
  return { kind: "nop-out", immediate: true, lun: 0n, initiatorTaskTag: initiator.allocateTag(), targetTransferTag: RESERVED_TAG, cmdSN: initiator.cmdSN, expStatSN: initiator.expStatSN, data };
}

function wire(pdu: InitiatorPdu, initiator: IscsiTestInitiator): Buffer {
  return Buffer.concat(encodePdu(pdu, initiator.digests));
}

describe("iSCSI fuzz", function () {
  this.timeout(120_000);
  let fixture: IscsiFixture;
  const seed = seedFromEnvironment();
  let sessionsOpened = 0;

  beforeEach(async () => {
    fixture = await startIscsiFixture({ loginTimeoutMs: 2_000, connectionsMax: 64, sessionsMax: 64 });
    // Hostile sessions use their own target: their resets (LUN RESET, TARGET COLD RESET) may legitimately
    // abort tasks of every session of the target they address, and must not reach the good session's.
    fixture.registry.add({ name: FUZZ_TARGET_NAME, scsiTarget: new MemoryScsiTarget([0, 1]) });
  });

  afterEach(async function () {
    if (this.currentTest?.state === "failed") console.log(`      iSCSI fuzz seed: OVS_SEED=${seed}`);
    await fixture.close();
  });

  async function session(keys: Record<string, string> = { HeaderDigest: "CRC32C", DataDigest: "CRC32C" }): Promise<IscsiTestInitiator> {
    const initiator = await fixture.connect();
    // A distinct ISID per session: the same ISID would reinstate (and so end) the earlier session.
    await initiator.login({ targetName: TARGET_NAME, keys, isid: Buffer.from([0x80, 0, 0, 0, 7, ++sessionsOpened & 0xff]) });
    return initiator;
  }

  it("test_fuzz_unknown_opcode_gets_reject_command_not_supported_and_session_continues", async () => {
    const initiator = await session();
    // Opcode 0x1d is undefined; the header digest is recomputed so only the opcode is wrong.
    const fixed = Buffer.concat(encodePdu({ ...nopOut(initiator), data: Buffer.alloc(0) }, initiator.digests));
    fixed[0] = 0x1d;
    fixed.writeUInt32LE(digestOf([fixed.subarray(0, 48)]), 48);
    initiator.sendRaw(fixed);
    const reject = await initiator.waitFor((pdu) => pdu.kind === "reject");
    assert.equal(reject.kind === "reject" && reject.reason, 0x05);
    assert.equal(reject.data?.[0], 0x1d, "the Reject quotes the header");
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_fuzz_header_digest_error_closes_the_connection_without_reply", async () => {
    const initiator = await session();
    const bytes = wire(nopOut(initiator), initiator);
    bytes[30] ^= 0x40;
    initiator.sendRaw(bytes);
    await initiator.closed;
    assert.equal(initiator.rejects.length, 0);
  });

  it("test_fuzz_data_digest_error_gets_reject_data_digest_and_session_continues", async () => {
    const initiator = await session();
    const bytes = wire(nopOut(initiator), initiator);
    bytes[53] ^= 0x01;
    initiator.sendRaw(bytes);
    const reject = await initiator.waitFor((pdu) => pdu.kind === "reject");
    assert.equal(reject.kind === "reject" && reject.reason, 0x02);
    assert.equal((await initiator.nop()).kind, "nop-in");
  });

  it("test_fuzz_data_segment_longer_than_declared_gets_protocol_error_and_close", async () => {
    const initiator = await session({});
    const bytes = wire({ ...nopOut(initiator), data: Buffer.alloc(300 * 1024) }, initiator);
    initiator.sendRaw(bytes);
    const reject = await initiator.waitFor((pdu) => pdu.kind === "reject");
    assert.equal(reject.kind === "reject" && reject.reason, 0x04);
    await initiator.closed;
  });

  it("test_fuzz_out_of_window_cmdsn_is_ignored_and_session_continues", async () => {
    const initiator = await session();
    for (const cmdSN of [(initiator.maxCmdSN + 1) >>> 0, (initiator.maxCmdSN + 1000) >>> 0, (initiator.cmdSN - 5) >>> 0]) {
      await assert.rejects(initiator.scsi(CDB.testUnitReady(), { cmdSN, timeoutMs: 200 }), /no matching PDU/);
    }
    assert.equal(initiator.rejects.length, 0);
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_fuzz_data_out_for_unknown_task_gets_reject_invalid_pdu_field", async () => {
    const initiator = await session();
    initiator.send({ kind: "data-out", final: true, lun: 0n, initiatorTaskTag: 0xabcdef, targetTransferTag: 77, expStatSN: initiator.expStatSN, dataSN: 0, bufferOffset: 0, data: Buffer.alloc(512) });
    const reject = await initiator.waitFor((pdu) => pdu.kind === "reject");
    assert.equal(reject.kind === "reject" && reject.reason, 0x09);
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
  });

  it("test_fuzz_data_out_out_of_sequence_gets_protocol_error_and_fails_the_task", async () => {
    const initiator = await session({ InitialR2T: "Yes", ImmediateData: "No" });
    const itt = initiator.allocateTag();
    const padded = Buffer.alloc(16);
    CDB.write10(0, 8).copy(padded);
    initiator.send({ kind: "scsi-command", immediate: false, final: true, read: false, write: true, taskAttribute: 1, lun: 0n, initiatorTaskTag: itt, expectedDataTransferLength: 4096, cmdSN: initiator.cmdSN++, expStatSN: initiator.expStatSN, cdb: padded });
    const r2t = await initiator.waitFor((pdu) => pdu.kind === "r2t");
    if (r2t.kind !== "r2t") throw new Error("unreachable");
    // DataSN 27 instead of 0 (libiscsi's iSCSIDataSnInvalid case).
    initiator.send({ kind: "data-out", final: true, lun: 0n, initiatorTaskTag: itt, targetTransferTag: r2t.targetTransferTag, expStatSN: initiator.expStatSN, dataSN: 27, bufferOffset: 0, data: Buffer.alloc(4096) });
    const reject = await initiator.waitFor((pdu) => pdu.kind === "reject");
    assert.equal(reject.kind === "reject" && reject.reason, 0x04);
    const response = await initiator.waitFor((pdu) => pdu.kind === "scsi-response" && pdu.initiatorTaskTag === itt);
    assert.equal(response.kind === "scsi-response" && response.status, 0x02);
    assert.deepEqual([response.data?.[2 + 2], response.data?.[2 + 12]], [0x0b, 0x4b], "ABORTED COMMAND, DATA PHASE ERROR");
    // Later Data-Out for the failed task is dropped quietly; the session goes on.
    initiator.send({ kind: "data-out", final: true, lun: 0n, initiatorTaskTag: itt, targetTransferTag: r2t.targetTransferTag, expStatSN: initiator.expStatSN, dataSN: 0, bufferOffset: 0, data: Buffer.alloc(4096) });
    assert.equal((await initiator.scsi(CDB.testUnitReady())).status, 0);
    assert.equal(initiator.rejects.length, 1);
  });

  it("test_fuzz_garbage_during_login_closes_the_connection", async () => {
    const socket = await new Promise<Socket>((resolve) => {
      const opened = connect({ host: "127.0.0.1", port: fixture.port }, () => resolve(opened));
    });
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => undefined);
    const random = new SeededRandom(seed);
    socket.write(random.fill(Buffer.alloc(4096)) as Buffer);
    await closed;
  });

  it("test_fuzz_random_and_mutated_pdus_while_a_good_session_keeps_working", async () => {
    const random = new SeededRandom(seed);
    const good = await session();
    const shadow = Buffer.alloc(GOOD_REGION_BLOCKS * BLOCK_BYTES);
    const deadline = Date.now() + FUZZ_DURATION_MS;
    let goodOperations = 0;
    const goodLoop = (async () => {
      const local = new SeededRandom(seed ^ 0x5a5a5a5a);
      while (Date.now() < deadline) {
        const blocks = local.integer(1, 256);
        const lba = local.integer(0, GOOD_REGION_BLOCKS - blocks);
        if (local.chance(0.5)) {
          const data = local.fill(Buffer.alloc(blocks * BLOCK_BYTES)) as Buffer;
          assert.equal((await good.scsi(CDB.write10(lba, blocks), { lun: 1, dataOut: data })).status, 0);
          data.copy(shadow, lba * BLOCK_BYTES);
        } else {
          const read = await good.scsi(CDB.read10(lba, blocks), { lun: 1, readLength: blocks * BLOCK_BYTES });
          assert.equal(read.status, 0);
          assert.ok(read.dataIn.equals(shadow.subarray(lba * BLOCK_BYTES, (lba + blocks) * BLOCK_BYTES)), `good session read wrong data at LBA ${lba}`);
        }
        goodOperations++;
      }
    })();
    let hostile = 0;
    const hostileLoop = async (): Promise<void> => {
      while (Date.now() < deadline) {
        hostile++;
        await oneHostileConnection(new SeededRandom(random.nextUint32()));
      }
    };
    await Promise.all([goodLoop, ...Array.from({ length: FUZZ_CONNECTIONS_AT_ONCE }, hostileLoop)]);
    assert.ok(goodOperations > 20, `good operations: ${goodOperations}`);
    assert.ok(hostile > FUZZ_CONNECTIONS_AT_ONCE, `hostile connections: ${hostile}`);
    // Still serving: a fresh session logs in and works; only it and the good one remain.
    const fresh = await session();
    assert.equal((await fresh.scsi(CDB.testUnitReady())).status, 0);
    assert.equal((await good.nop()).kind, "nop-in");
    console.log(`      seed ${seed}: ${hostile} hostile connections, ${goodOperations} good operations`);
  });

  /** One connection doing something hostile; closes it itself after a bounded time if the server did not. */
  async function oneHostileConnection(random: SeededRandom): Promise<void> {
    let initiator: IscsiTestInitiator;
    try {
      initiator = await IscsiTestInitiator.connect(fixture.port);
    } catch {
      return;
    }
    initiator.answerPings = random.chance(0.5);
    try {
      if (random.chance(0.2)) {
        initiator.sendRaw(random.fill(Buffer.alloc(random.integer(1, 2000))) as Buffer);
      } else {
        await initiator.login({
          targetName: random.chance(0.9) ? FUZZ_TARGET_NAME : "iqn.bogus:x", initiatorName: `${TEST_INITIATOR_NAME}-fuzz`,
          isid: random.fill(Buffer.alloc(6)) as Buffer,
          keys: random.chance(0.5) ? { HeaderDigest: "CRC32C", DataDigest: "CRC32C", MaxRecvDataSegmentLength: "4096" } : { MaxRecvDataSegmentLength: "4096" },
        });
        for (let index = random.integer(1, 20); index > 0 && !initiator.closedFlag; index--) initiator.sendRaw(mutatedPdu(random, initiator));
      }
      await new Promise((resolve) => setTimeout(resolve, random.integer(10, 200)));
    } catch {
      // Login refusals and closes are expected outcomes.
    } finally {
      initiator.close();
      await initiator.closed;
    }
  }

  function mutatedPdu(random: SeededRandom, initiator: IscsiTestInitiator): Buffer {
    const itt = initiator.allocateTag();
    const cdb = Buffer.alloc(16);
    const cdbs: Buffer[] = [CDB.read10(random.integer(0, 10000), random.integer(0, 64)), CDB.write10(random.integer(0, 10000), random.integer(0, 64)),
      CDB.inquiry(random.integer(0, 255)), Buffer.from(random.fill(Buffer.alloc(16)))];
    random.pick(cdbs).copy(cdb);
    const candidates: InitiatorPdu[] = [
      nopOut(initiator, random.fill(Buffer.alloc(random.integer(0, 600))) as Buffer),
      { kind: "scsi-command", immediate: random.chance(0.2), final: random.chance(0.7), read: random.chance(0.5), write: random.chance(0.5), taskAttribute: random.integer(0, 7), lun: encodeLun(random.integer(0, 3)), initiatorTaskTag: itt, expectedDataTransferLength: random.pick([0, 512, 4096, 1 << 20, random.nextUint32()]), cmdSN: random.chance(0.7) ? initiator.cmdSN++ : random.nextUint32(), expStatSN: initiator.expStatSN, cdb, data: random.fill(Buffer.alloc(random.pick([0, 0, 512, random.integer(0, 4096)]))) as Buffer },
      { kind: "data-out", final: random.chance(0.5), lun: 0n, initiatorTaskTag: random.chance(0.5) ? itt - 1 : random.nextUint32(), targetTransferTag: random.chance(0.5) ? RESERVED_TAG : random.integer(0, 20), expStatSN: initiator.expStatSN, dataSN: random.integer(0, 3), bufferOffset: random.pick([0, 512, random.nextUint32()]), data: random.fill(Buffer.alloc(random.integer(0, 4096))) as Buffer },
      { kind: "task-management-request", immediate: true, function: random.integer(0, 10), lun: encodeLun(random.integer(0, 3)), initiatorTaskTag: itt, referencedTaskTag: random.chance(0.5) ? itt - 1 : random.nextUint32(), cmdSN: initiator.cmdSN, expStatSN: initiator.expStatSN, refCmdSN: random.nextUint32(), expDataSN: 0 },
      { kind: "text-request", immediate: false, final: random.chance(0.8), continue: random.chance(0.2), lun: 0n, initiatorTaskTag: itt, targetTransferTag: random.chance(0.8) ? RESERVED_TAG : random.nextUint32(), cmdSN: initiator.cmdSN++, expStatSN: initiator.expStatSN, data: random.chance(0.5) ? Buffer.from("SendTargets=All\0") : random.fill(Buffer.alloc(random.integer(0, 300))) as Buffer },
      { kind: "logout-request", immediate: true, reasonCode: random.integer(0, 5), initiatorTaskTag: itt, cid: random.integer(0, 2), cmdSN: initiator.cmdSN, expStatSN: initiator.expStatSN },
      { kind: "snack-request", type: random.integer(0, 3), lun: 0n, initiatorTaskTag: itt, targetTransferTag: 0, expStatSN: 0, begRun: 0, runLength: 0 },
      { kind: "login-request", transit: true, continue: false, currentStage: 1, nextStage: 3, versionMax: 0, versionMin: 0, isid: initiator.isid, tsih: 0, initiatorTaskTag: itt, cid: 0, cmdSN: 0, expStatSN: 0 },
    ];
    const bytes = Buffer.concat(encodePdu(random.pick(candidates), initiator.digests));
    switch (random.integer(0, 5)) {
      case 0: // flip a random bit anywhere (often a digest or length error)
        bytes[random.integer(0, bytes.length - 1)] ^= 1 << random.integer(0, 7);
        break;
      case 1: // random opcode
        bytes[0] = (bytes[0] & 0xc0) | random.integer(0, 0x3f);
        break;
      case 2: // truncated PDU
        return bytes.subarray(0, random.integer(1, bytes.length));
      default:
        break;
    }
    return bytes;
  }
});

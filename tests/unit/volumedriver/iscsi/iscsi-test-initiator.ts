// Goal: a small test-only iSCSI initiator over a raw socket (login with CHAP and key negotiation,
// SCSI commands with immediate data, unsolicited Data-Out and R2T answers, Data-In reassembly, NOP,
// Text, Logout, task management, digests) so the transport's tests can drive every PDU. Not part of
// the product. It shares the PDU codec with the server (iscsi-pdu.ts, whose byte layout the PDU tests
// pin against hand-built vectors); everything above the codec is written independently here.
import { createHash } from "node:crypto";
import { connect, type Socket } from "node:net";
import {
  type DataInPdu, decodePdu, DIGEST_BYTES, digestOf, encodeLun, encodePdu, type InitiatorPdu, type IscsiPdu, type LoginResponsePdu,
  NO_DIGESTS, paddingBytes, type DigestSettings, type R2tPdu, RESERVED_TAG, type ScsiResponsePdu, type TargetPdu,
} from "../../../../volumedriver/src/frontends/iscsi/iscsi-pdu.ts";

export const TEST_INITIATOR_NAME = "iqn.2026-11.org.openvstorage:test-initiator";

export interface ChapCredentials {
  username: string;
  secret: string;
}

export interface LoginOptions {
  initiatorName?: string;
  targetName?: string;
  sessionType?: "Normal" | "Discovery";
  isid?: Buffer;
  chap?: ChapCredentials;
  /** Ask the target to authenticate itself with these credentials (mutual CHAP). */
  mutualChap?: ChapCredentials;
  /** AuthMethod offered (default CHAP,None with chap, None without). */
  authMethod?: string;
  /** Operational keys to offer (merged over the defaults below). */
  keys?: Record<string, string>;
  /** Skip the security stage (CSG=1 first). */
  skipSecurity?: boolean;
  /** Split the operational keys over two Login Requests with the C bit. */
  continueText?: boolean;
}

export class LoginFailed extends Error {
  constructor(readonly statusClass: number, readonly statusDetail: number) {
    super(`login failed with status 0x${statusClass.toString(16).padStart(2, "0")}${statusDetail.toString(16).padStart(2, "0")}`);
  }
}

export interface ScsiOptions {
  lun?: number;
  dataOut?: Buffer;
  /** Expected Data Transfer Length (default: dataOut length, or readLength). */
  expectedDataTransferLength?: number;
  read?: boolean;
  readLength?: number;
  immediate?: boolean;
  /** Bytes to send as immediate data (default: as much as negotiated). */
  immediateBytes?: number;
  /** Send unsolicited Data-Out (when InitialR2T=No) up to this many bytes in total. */
  unsolicitedBytes?: number;
  /** Data-Out PDU size (default: the target's MaxRecvDataSegmentLength). */
  dataOutSegmentBytes?: number;
  initiatorTaskTag?: number;
  cmdSN?: number;
  timeoutMs?: number;
}

export interface ScsiOutcome {
  status: number;
  response: number;
  sense: Buffer | undefined;
  dataIn: Buffer;
  dataInPdus: DataInPdu[];
  r2ts: R2tPdu[];
  residualCount: number;
  underflow: boolean;
  overflow: boolean;
  final: ScsiResponsePdu | DataInPdu;
}

function md5(identifier: number, secret: string, challenge: Buffer): Buffer {
  return createHash("md5").update(Buffer.from([identifier])).update(secret).update(challenge).digest();
}

function encodeKeys(keys: Record<string, string>): Buffer {
  return Buffer.from(Object.entries(keys).map(([key, value]) => `${key}=${value}\0`).join(""));
}

export function decodeKeys(data: Buffer | undefined): Map<string, string> {
  const keys = new Map<string, string>();
  for (const entry of (data ?? Buffer.alloc(0)).toString("utf8").split("\0")) {
    if (entry === "") continue;
    const equals = entry.indexOf("=");
    keys.set(entry.slice(0, equals), entry.slice(equals + 1));
  }
  return keys;
}

interface Waiter {
  predicate: (pdu: TargetPdu) => boolean;
  resolve: (pdu: TargetPdu) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class IscsiTestInitiator {
  readonly socket: Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private readonly inbox: TargetPdu[] = [];
  private waiters: Waiter[] = [];
  digests: DigestSettings = NO_DIGESTS;
  cmdSN = 1;
  expStatSN = 0;
  expCmdSN = 1;
  maxCmdSN = 1;
  private nextTag = 1;
  isid: Buffer = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]);
  tsih = 0;
  /** Keys the target answered during login. */
  readonly negotiated = new Map<string, string>();
  /** Answer NOP-In pings automatically. */
  answerPings = true;
  pingsReceived = 0;
  readonly rejects: TargetPdu[] = [];
  readonly asyncMessages: TargetPdu[] = [];
  closedFlag = false;
  readonly closed: Promise<void>;
  private decodeError: Error | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) => socket.once("close", () => {
      this.closedFlag = true;
      for (const waiter of this.waiters.splice(0)) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error("connection closed"));
      }
      resolve();
    }));
  }

  static connect(port: number, host = "127.0.0.1"): Promise<IscsiTestInitiator> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port }, () => {
        socket.removeListener("error", reject);
        resolve(new IscsiTestInitiator(socket));
      });
      socket.once("error", reject);
    });
  }

  allocateTag(): number {
    return this.nextTag++;
  }

  // ---- wire ----

  send(pdu: InitiatorPdu): void {
    for (const part of encodePdu(pdu, this.digests)) this.socket.write(part);
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.buffer.length < 48) return;
      const ahsBytes = this.buffer[4] * 4;
      const dataBytes = this.buffer.readUIntBE(5, 3);
      const headerBytes = 48 + ahsBytes + (this.digests.header ? DIGEST_BYTES : 0);
      const dataWire = dataBytes === 0 ? 0 : dataBytes + paddingBytes(dataBytes) + (this.digests.data ? DIGEST_BYTES : 0);
      if (this.buffer.length < headerBytes + dataWire) return;
      const header = this.buffer.subarray(0, headerBytes);
      if (this.digests.header && header.readUInt32LE(48 + ahsBytes) !== digestOf([header.subarray(0, 48 + ahsBytes)])) {
        this.decodeError = new Error("bad header digest from the target");
      }
      const padded = this.buffer.subarray(headerBytes, headerBytes + dataBytes + paddingBytes(dataBytes));
      if (dataBytes > 0 && this.digests.data) {
        const digest = this.buffer.readUInt32LE(headerBytes + padded.length);
        if (digest !== digestOf([padded])) this.decodeError = new Error("bad data digest from the target");
      }
      const pdu = decodePdu(Buffer.from(header.subarray(0, 48)), Buffer.from(header.subarray(48, 48 + ahsBytes)),
        Buffer.from(padded.subarray(0, dataBytes))) as TargetPdu;
      this.buffer = this.buffer.subarray(headerBytes + dataWire);
      this.deliver(pdu);
    }
  }

  private track(pdu: IscsiPdu): void {
    if (!("expCmdSN" in pdu) || pdu.kind === "login-response") return;
    this.expCmdSN = pdu.expCmdSN;
    this.maxCmdSN = pdu.maxCmdSN;
    const carriesStatus = pdu.kind !== "r2t" && !(pdu.kind === "data-in" && !pdu.statusPresent)
      && !(pdu.kind === "nop-in" && pdu.initiatorTaskTag === RESERVED_TAG);
    if (carriesStatus) this.expStatSN = (pdu.statSN + 1) >>> 0;
  }

  private deliver(pdu: TargetPdu): void {
    this.track(pdu);
    if (pdu.kind === "nop-in" && pdu.initiatorTaskTag === RESERVED_TAG) {
      this.pingsReceived++;
      if (this.answerPings && pdu.targetTransferTag !== RESERVED_TAG) {
        this.send({
          kind: "nop-out", immediate: true, lun: pdu.lun, initiatorTaskTag: RESERVED_TAG, targetTransferTag: pdu.targetTransferTag,
          cmdSN: this.cmdSN, expStatSN: this.expStatSN,
        });
      }
      return;
    }
    if (pdu.kind === "reject") this.rejects.push(pdu);
    if (pdu.kind === "async-message") this.asyncMessages.push(pdu);
    const index = this.waiters.findIndex((waiter) => waiter.predicate(pdu));
    if (index >= 0) {
      const [waiter] = this.waiters.splice(index, 1);
      clearTimeout(waiter!.timer);
      waiter!.resolve(pdu);
      return;
    }
    this.inbox.push(pdu);
  }

  /** The next PDU matching `predicate` (already received or still to come). */
  waitFor(predicate: (pdu: TargetPdu) => boolean, timeoutMs = 10_000): Promise<TargetPdu> {
    if (this.decodeError !== undefined) return Promise.reject(this.decodeError);
    const index = this.inbox.findIndex(predicate);
    if (index >= 0) return Promise.resolve(this.inbox.splice(index, 1)[0]!);
    if (this.closedFlag) return Promise.reject(new Error("connection closed"));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate, resolve, reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((other) => other !== waiter);
          reject(new Error(`no matching PDU within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Resolves with the PDUs received in the next `ms` that nobody waited for (drains the inbox). */
  async quietFor(ms: number): Promise<TargetPdu[]> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.inbox.splice(0);
  }

  close(): void {
    this.socket.destroy();
  }

  // ---- login ----

  private async loginExchange(request: {
    transit: boolean; continue?: boolean; currentStage: number; nextStage: number; keys: Record<string, string>; tag: number;
  }): Promise<LoginResponsePdu> {
    this.send({
      kind: "login-request", transit: request.transit, continue: request.continue ?? false, currentStage: request.currentStage,
      nextStage: request.nextStage, versionMax: 0, versionMin: 0, isid: this.isid, tsih: this.tsih, initiatorTaskTag: request.tag, cid: 0,
      cmdSN: this.cmdSN, expStatSN: this.expStatSN, data: encodeKeys(request.keys),
    });
    const response = await this.waitFor((pdu) => pdu.kind === "login-response") as LoginResponsePdu;
    this.expStatSN = (response.statSN + 1) >>> 0;
    if (response.statusClass !== 0) throw new LoginFailed(response.statusClass, response.statusDetail);
    for (const [key, value] of decodeKeys(response.data)) this.negotiated.set(key, value);
    return response;
  }

  /** Logs in through the security stage (with CHAP when asked) and the operational stage. */
  async login(options: LoginOptions = {}): Promise<Map<string, string>> {
    const tag = this.allocateTag();
    const sessionType = options.sessionType ?? "Normal";
    if (options.isid !== undefined) this.isid = options.isid;
    const identity: Record<string, string> = { InitiatorName: options.initiatorName ?? TEST_INITIATOR_NAME, SessionType: sessionType };
    if (sessionType === "Normal" && options.targetName !== undefined) identity.TargetName = options.targetName;
    const operational: Record<string, string> = {
      HeaderDigest: "None", DataDigest: "None", MaxRecvDataSegmentLength: "65536", ...(sessionType === "Normal" ? {
        InitialR2T: "No", ImmediateData: "Yes", MaxBurstLength: "262144", FirstBurstLength: "65536", MaxOutstandingR2T: "1",
        DataPDUInOrder: "Yes", DataSequenceInOrder: "Yes", ErrorRecoveryLevel: "0", MaxConnections: "1", DefaultTime2Wait: "2",
        DefaultTime2Retain: "0",
      } : {}), ...options.keys,
    };
    if (options.skipSecurity === true) {
      await this.operationalStage({ ...identity, ...operational }, tag, options.continueText === true);
    } else {
      const authMethod = options.authMethod ?? (options.chap !== undefined ? "CHAP,None" : "None");
      let response = await this.loginExchange({ transit: options.chap === undefined, currentStage: 0, nextStage: 1, keys: { ...identity, AuthMethod: authMethod }, tag });
      if (options.chap !== undefined && this.negotiated.get("AuthMethod") === "CHAP") {
        response = await this.loginExchange({ transit: false, currentStage: 0, nextStage: 1, keys: { CHAP_A: "5" }, tag });
        const keys = decodeKeys(response.data);
        const identifier = Number(keys.get("CHAP_I"));
        const challenge = Buffer.from((keys.get("CHAP_C") ?? "0x").slice(2), "hex");
        const answer: Record<string, string> = { CHAP_N: options.chap.username, CHAP_R: `0x${md5(identifier, options.chap.secret, challenge).toString("hex")}` };
        const mutualIdentifier = 77;
        const mutualChallenge = Buffer.from("0123456789abcdef0123456789abcdef", "hex");
        if (options.mutualChap !== undefined) {
          answer.CHAP_I = String(mutualIdentifier);
          answer.CHAP_C = `0x${mutualChallenge.toString("hex")}`;
        }
        response = await this.loginExchange({ transit: true, currentStage: 0, nextStage: 1, keys: answer, tag });
        if (options.mutualChap !== undefined) {
          const targetKeys = decodeKeys(response.data);
          const expected = md5(mutualIdentifier, options.mutualChap.secret, mutualChallenge).toString("hex");
          if (targetKeys.get("CHAP_N") !== options.mutualChap.username || targetKeys.get("CHAP_R") !== `0x${expected}`) {
            throw new Error(`mutual CHAP: the target answered ${targetKeys.get("CHAP_N")} ${targetKeys.get("CHAP_R")}`);
          }
        }
      }
      // The target chose AuthMethod=None although we offered CHAP: leave the security stage now.
      if (!response.transit) response = await this.loginExchange({ transit: true, currentStage: 0, nextStage: 1, keys: {}, tag });
      if (!response.transit) throw new Error("the target did not leave the security stage");
      await this.operationalStage(operational, tag, options.continueText === true);
    }
    this.expCmdSN = this.cmdSN;
    return this.negotiated;
  }

  private async operationalStage(keys: Record<string, string>, tag: number, continueText: boolean): Promise<void> {
    let response: LoginResponsePdu;
    if (continueText) {
      const text = encodeKeys(keys);
      const half = Math.floor(text.length / 2);
      // A Login Request with C set, cut in the middle of a pair; then the rest (RFC 7143 §11.12.2).
      this.send({
        kind: "login-request", transit: false, continue: true, currentStage: 1, nextStage: 0, versionMax: 0, versionMin: 0, isid: this.isid,
        tsih: this.tsih, initiatorTaskTag: tag, cid: 0, cmdSN: this.cmdSN, expStatSN: this.expStatSN, data: text.subarray(0, half),
      });
      const partial = await this.waitFor((pdu) => pdu.kind === "login-response") as LoginResponsePdu;
      if (partial.statusClass !== 0) throw new LoginFailed(partial.statusClass, partial.statusDetail);
      this.expStatSN = (partial.statSN + 1) >>> 0;
      this.send({
        kind: "login-request", transit: true, continue: false, currentStage: 1, nextStage: 3, versionMax: 0, versionMin: 0, isid: this.isid,
        tsih: this.tsih, initiatorTaskTag: tag, cid: 0, cmdSN: this.cmdSN, expStatSN: this.expStatSN, data: text.subarray(half),
      });
      response = await this.waitFor((pdu) => pdu.kind === "login-response") as LoginResponsePdu;
      this.expStatSN = (response.statSN + 1) >>> 0;
      if (response.statusClass !== 0) throw new LoginFailed(response.statusClass, response.statusDetail);
      for (const [key, value] of decodeKeys(response.data)) this.negotiated.set(key, value);
    } else {
      response = await this.loginExchange({ transit: true, currentStage: 1, nextStage: 3, keys, tag });
    }
    if (!response.transit || response.nextStage !== 3) throw new Error("the target did not enter the full feature phase");
    this.tsih = response.tsih;
    this.maxCmdSN = response.maxCmdSN;
    this.digests = { header: this.negotiated.get("HeaderDigest") === "CRC32C", data: this.negotiated.get("DataDigest") === "CRC32C" };
  }

  private get targetMaxRecvDataSegmentLength(): number {
    return Number(this.negotiated.get("MaxRecvDataSegmentLength") ?? 8192);
  }

  // ---- full feature phase ----

  /** Runs one SCSI command to completion (data out as immediate/unsolicited/solicited, Data-In gathered). */
  async scsi(cdb: Buffer, options: ScsiOptions = {}): Promise<ScsiOutcome> {
    const itt = options.initiatorTaskTag ?? this.allocateTag();
    const lun = encodeLun(options.lun ?? 0);
    const dataOut = options.dataOut;
    const read = options.read ?? (options.readLength !== undefined);
    const edtl = options.expectedDataTransferLength ?? dataOut?.length ?? options.readLength ?? 0;
    const immediateData = this.negotiated.get("ImmediateData") === "Yes";
    const initialR2T = this.negotiated.get("InitialR2T") !== "No";
    const firstBurst = Number(this.negotiated.get("FirstBurstLength") ?? 65536);
    const segmentBytes = options.dataOutSegmentBytes ?? this.targetMaxRecvDataSegmentLength;
    let immediateBytes = 0;
    if (dataOut !== undefined && immediateData) {
      immediateBytes = Math.min(options.immediateBytes ?? dataOut.length, dataOut.length, firstBurst, this.targetMaxRecvDataSegmentLength);
    }
    const unsolicitedLimit = dataOut === undefined || initialR2T ? immediateBytes : Math.min(options.unsolicitedBytes ?? firstBurst, firstBurst, dataOut.length);
    const sendsUnsolicited = unsolicitedLimit > immediateBytes;
    const cmdSN = options.cmdSN ?? this.cmdSN;
    if (options.cmdSN === undefined && options.immediate !== true) this.cmdSN = (this.cmdSN + 1) >>> 0;
    const padded = Buffer.alloc(16);
    cdb.copy(padded, 0, 0, Math.min(16, cdb.length));
    const ahs = cdb.length > 16 ? [{ type: 1, data: cdb.subarray(16) }] : undefined;
    this.send({
      kind: "scsi-command", immediate: options.immediate === true, final: !sendsUnsolicited, read, write: dataOut !== undefined,
      taskAttribute: 1, lun, initiatorTaskTag: itt, expectedDataTransferLength: edtl, cmdSN, expStatSN: this.expStatSN, cdb: padded,
      ...(ahs === undefined ? {} : { ahs }), data: dataOut?.subarray(0, immediateBytes),
    });
    if (sendsUnsolicited && dataOut !== undefined) {
      this.sendDataOut(itt, lun, RESERVED_TAG, dataOut, immediateBytes, unsolicitedLimit - immediateBytes, segmentBytes);
    }
    const dataIn = Buffer.alloc(edtl);
    const dataInPdus: DataInPdu[] = [];
    const r2ts: R2tPdu[] = [];
    const timeoutMs = options.timeoutMs ?? 10_000;
    for (;;) {
      const pdu = await this.waitFor((candidate) => "initiatorTaskTag" in candidate && candidate.initiatorTaskTag === itt
        && (candidate.kind === "data-in" || candidate.kind === "scsi-response" || candidate.kind === "r2t"), timeoutMs);
      if (pdu.kind === "r2t") {
        r2ts.push(pdu);
        this.sendDataOut(itt, lun, pdu.targetTransferTag, dataOut ?? Buffer.alloc(0), pdu.bufferOffset, pdu.desiredDataTransferLength, segmentBytes);
        continue;
      }
      if (pdu.kind === "data-in") {
        dataInPdus.push(pdu);
        pdu.data?.copy(dataIn, pdu.bufferOffset);
        if (!pdu.statusPresent) continue;
        const received = dataInPdus.reduce((sum, each) => sum + (each.data?.length ?? 0), 0);
        return {
          status: pdu.status, response: 0, sense: undefined, dataIn: dataIn.subarray(0, received), dataInPdus, r2ts,
          residualCount: pdu.residualCount, underflow: pdu.underflow, overflow: pdu.overflow, final: pdu,
        };
      }
      if (pdu.kind === "scsi-response") {
        const data = pdu.data ?? Buffer.alloc(0);
        const sense = data.length >= 2 ? data.subarray(2, 2 + data.readUInt16BE(0)) : undefined;
        const received = dataInPdus.reduce((sum, each) => sum + (each.data?.length ?? 0), 0);
        return {
          status: pdu.status, response: pdu.response, sense, dataIn: dataIn.subarray(0, received), dataInPdus, r2ts,
          residualCount: pdu.residualCount, underflow: pdu.underflow, overflow: pdu.overflow, final: pdu,
        };
      }
    }
  }

  /** Data-Out PDUs for [offset, offset+length) of `data`, DataSN from 0, F on the last. */
  sendDataOut(itt: number, lun: bigint, ttt: number, data: Buffer, offset: number, length: number, segmentBytes: number): void {
    let dataSN = 0;
    for (let at = offset; at < offset + length; at += segmentBytes) {
      const end = Math.min(at + segmentBytes, offset + length);
      this.send({
        kind: "data-out", final: end === offset + length, lun, initiatorTaskTag: itt, targetTransferTag: ttt, expStatSN: this.expStatSN,
        dataSN: dataSN++, bufferOffset: at, data: data.subarray(at, end),
      });
    }
  }

  async nop(data: Buffer = Buffer.alloc(0)): Promise<TargetPdu> {
    const itt = this.allocateTag();
    this.send({ kind: "nop-out", immediate: true, lun: 0n, initiatorTaskTag: itt, targetTransferTag: RESERVED_TAG, cmdSN: this.cmdSN, expStatSN: this.expStatSN, data });
    return this.waitFor((pdu) => pdu.kind === "nop-in" && pdu.initiatorTaskTag === itt);
  }

  /** A Text Request; follows the target's continuations (C bit) and returns all answered keys, in order. */
  async text(keys: string, timeoutMs = 10_000): Promise<Array<[string, string]>> {
    const itt = this.allocateTag();
    let ttt = RESERVED_TAG;
    let data = Buffer.from(keys);
    const collected: Buffer[] = [];
    for (;;) {
      this.send({ kind: "text-request", immediate: false, final: true, continue: false, lun: 0n, initiatorTaskTag: itt, targetTransferTag: ttt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, data });
      this.cmdSN = (this.cmdSN + 1) >>> 0;
      const response = await this.waitFor((pdu) => pdu.kind === "text-response" && pdu.initiatorTaskTag === itt, timeoutMs);
      if (response.kind !== "text-response") throw new Error("unreachable");
      collected.push(response.data ?? Buffer.alloc(0));
      if (response.final) break;
      ttt = response.targetTransferTag;
      data = Buffer.alloc(0);
    }
    return Buffer.concat(collected).toString("utf8").split("\0").filter((entry) => entry !== "").map((entry) => {
      const equals = entry.indexOf("=");
      return [entry.slice(0, equals), entry.slice(equals + 1)] as [string, string];
    });
  }

  async logout(reasonCode = 0): Promise<TargetPdu> {
    const itt = this.allocateTag();
    this.send({ kind: "logout-request", immediate: true, reasonCode, initiatorTaskTag: itt, cid: 0, cmdSN: this.cmdSN, expStatSN: this.expStatSN });
    return this.waitFor((pdu) => pdu.kind === "logout-response" && pdu.initiatorTaskTag === itt);
  }

  /** A task management request (immediate); resolves with its response. */
  async taskManagement(fn: number, lun: number, referencedTaskTag = RESERVED_TAG, refCmdSN = 0): Promise<TargetPdu> {
    const itt = this.allocateTag();
    this.send({
      kind: "task-management-request", immediate: true, function: fn, lun: encodeLun(lun), initiatorTaskTag: itt, referencedTaskTag,
      cmdSN: this.cmdSN, expStatSN: this.expStatSN, refCmdSN, expDataSN: 0,
    });
    return this.waitFor((pdu) => pdu.kind === "task-management-response" && pdu.initiatorTaskTag === itt);
  }
}

// ---- CDB builders for the tests ----

export const CDB = {
  testUnitReady: (): Buffer => Buffer.alloc(6),
  inquiry: (allocationLength: number): Buffer => {
    const cdb = Buffer.alloc(6);
    cdb[0] = 0x12;
    cdb.writeUInt16BE(allocationLength, 3);
    return cdb;
  },
  read10: (lba: number, blocks: number): Buffer => {
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x28;
    cdb.writeUInt32BE(lba, 2);
    cdb.writeUInt16BE(blocks, 7);
    return cdb;
  },
  write10: (lba: number, blocks: number): Buffer => {
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x2a;
    cdb.writeUInt32BE(lba, 2);
    cdb.writeUInt16BE(blocks, 7);
    return cdb;
  },
};

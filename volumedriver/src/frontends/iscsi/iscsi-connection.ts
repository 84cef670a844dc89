// One TCP connection: owns the socket, the PDU reader and writer, the login deadline and the switch
// from the login phase to the full feature phase (where its session takes over), the NOP-In
// keepalive, and how the connection ends: a Logout, a protocol error that ERL 0 cannot repair, a
// header digest error, a timeout, the initiator going away, or server shutdown. A failure on one
// connection never reaches another.
import type { Socket } from "node:net";
import type { Logger } from "pino";
import { LoginError, loginStatusFor } from "./iscsi-errors.ts";
import { type LoginHost, LoginNegotiation, type LoginOutcome } from "./iscsi-login.ts";
import { decodePdu, type LoginRequestPdu, PduFormatError, type TargetPdu } from "./iscsi-pdu.ts";
import { type FramedPdu, PduReader } from "./iscsi-pdu-reader.ts";
import { PduWriter } from "./iscsi-pdu-writer.ts";
import type { IscsiSession } from "./iscsi-session.ts";
import {
  CLOSE_LINGER_MS, KEEPALIVE_INITIAL_DELAY_MS, LOGIN_DATA_SEGMENT_BYTES_MAX, LOGIN_PDUS_MAX, type ResolvedIscsiSettings,
  SESSION_DRAIN_TIMEOUT_MS,
} from "./iscsi-settings.ts";
import type { IscsiTargetRegistry } from "./iscsi-types.ts";

type Phase = "login" | "full-feature" | "closing" | "closed";

/** What a connection needs from the server. */
export interface ConnectionContext {
  registry: IscsiTargetRegistry;
  settings: ResolvedIscsiSettings;
  /** Creates (or reinstates) the session a login established; throws LoginError when it cannot. */
  admitSession(outcome: LoginOutcome, connection: IscsiConnection, nextStatSN: number): IscsiSession;
  sessionExists(tsih: number): boolean;
  /** Randomness for CHAP challenges (a parameter so tests can fix it). */
  randomBytes?: (count: number) => Buffer;
}

export class IscsiConnection {
  private readonly reader: PduReader;
  private readonly writer: PduWriter;
  private phase: Phase = "login";
  private readonly login: LoginNegotiation;
  private loginPdus = 0;
  /** StatSN of the next Login Response (RFC 7143 §11.13: the target chooses the first). */
  private loginStatSN = 1;
  private session: IscsiSession | undefined;
  private loginTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private lastReceivedMs = Date.now();
  private pendingPing: { targetTransferTag: number; sentAtMs: number } | undefined;
  private readingPaused = false;
  private processing = false;
  /** Resolves once the socket has closed. */
  readonly closed: Promise<void>;

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase === "closing" || this.phase === "closed") return;
    this.lastReceivedMs = Date.now();
    this.reader.push(chunk);
    this.process();
  };

  private readonly onDrain = (): void => {
    if (this.readingPaused && !this.writer.congested && this.phase === "full-feature") {
      this.readingPaused = false;
      this.socket.resume();
      this.process();
    }
  };

  constructor(
    private readonly socket: Socket,
    private readonly context: ConnectionContext,
    private readonly logger: Logger,
  ) {
    this.reader = new PduReader(LOGIN_DATA_SEGMENT_BYTES_MAX);
    this.writer = new PduWriter(socket);
    const loginHost: LoginHost = {
      registry: context.registry,
      settings: context.settings,
      admitSession: (outcome) => {
        this.session = context.admitSession(outcome, this, (this.loginStatSN + 1) >>> 0);
        return this.session.tsih;
      },
      sessionExists: (tsih) => context.sessionExists(tsih),
    };
    this.login = new LoginNegotiation(loginHost, context.randomBytes);
    this.closed = new Promise((resolve) => {
      socket.once("close", () => {
        this.phase = "closed";
        this.clearTimers();
        this.session?.end("connection closed");
        this.logger.debug("iSCSI connection closed");
        resolve();
      });
    });
  }

  get localHost(): string {
    return this.socket.localAddress ?? "127.0.0.1";
  }

  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  get fullFeature(): boolean {
    return this.phase === "full-feature";
  }

  start(): void {
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    this.socket.on("error", (error) => this.logger.debug({ err: error }, "iSCSI socket error"));
    this.socket.on("data", this.onData);
    this.socket.on("drain", this.onDrain);
    this.loginTimer = setTimeout(() => this.drop(`login not finished within ${this.context.settings.loginTimeoutMs} ms`),
      this.context.settings.loginTimeoutMs);
    this.loginTimer.unref();
  }

  // ---- SessionConnection ----

  /** Queues a PDU; onFlushed as in PduWriter.send (never called once the connection is closed). */
  send(pdu: TargetPdu, onFlushed?: () => void): void {
    if (this.phase === "closed") return;
    this.writer.send(pdu, onFlushed);
  }

  /** After the Logout Response: end our side; drop the socket if the initiator lingers. */
  endGracefully(): void {
    if (this.phase === "closing" || this.phase === "closed") return;
    this.phase = "closing";
    this.clearTimers();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS).unref();
  }

  /** Ends the connection: what was written (a Reject, a Login Response) still goes out, nothing more is read. */
  drop(reason: string): void {
    if (this.phase === "closing" || this.phase === "closed") return;
    this.logger.warn({ reason }, "iSCSI connection dropped");
    this.phase = "closing";
    this.clearTimers();
    this.reader.clear();
    this.session?.end(reason);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS).unref();
  }

  /** Server shutdown: commands in flight finish (bounded), then the connection closes. */
  async shutdown(): Promise<void> {
    if (this.phase === "full-feature" && this.session !== undefined) {
      this.socket.pause();
      this.readingPaused = true;
      await this.session.whenIdle(SESSION_DRAIN_TIMEOUT_MS);
      this.session.end("server shutdown");
    }
    if (this.phase !== "closed") {
      this.phase = "closing";
      this.clearTimers();
      this.socket.destroy();
    }
    await this.closed;
  }

  // ---- receiving ----

  private process(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.phase === "login" || this.phase === "full-feature") {
        if (this.phase === "full-feature" && this.writer.congested) {
          // The initiator reads slower than it asks: stop reading until the socket drains.
          this.readingPaused = true;
          this.socket.pause();
          return;
        }
        const outcome = this.reader.next();
        if (outcome.type === "incomplete") return;
        if (outcome.type === "header-digest-error") {
          // RFC 7143 §7.8: the lengths in a corrupt header cannot be trusted; the connection goes.
          this.drop("header digest error");
          return;
        }
        if (outcome.type === "data-segment-too-long") {
          if (this.session !== undefined && this.phase === "full-feature") {
            this.session.violation("DataSegmentTooLong", outcome.bhs, `${outcome.dataBytes} bytes`);
          }
          this.drop(`data segment of ${outcome.dataBytes} bytes exceeds ${this.reader.dataSegmentBytesMax}`);
          return;
        }
        if (this.phase === "login") this.receiveLogin(outcome.pdu);
        else (this.session as IscsiSession).receive(outcome.pdu);
      }
    } finally {
      this.processing = false;
    }
  }

  private receiveLogin(framed: FramedPdu): void {
    let request: LoginRequestPdu;
    try {
      const pdu = decodePdu(framed.bhs, framed.ahs, framed.data);
      if (pdu.kind !== "login-request") {
        // RFC 7143 §6.3: before the full feature phase only Login Requests are allowed.
        this.drop(`${pdu.kind} during login`);
        return;
      }
      request = pdu;
    } catch (error) {
      if (!(error instanceof PduFormatError)) throw error;
      this.drop(`undecodable PDU during login: ${error.message}`);
      return;
    }
    if (++this.loginPdus > LOGIN_PDUS_MAX) {
      this.failLogin(request, new LoginError("InitiatorError", `more than ${LOGIN_PDUS_MAX} Login Requests`));
      return;
    }
    let step;
    try {
      step = this.login.receive(request);
    } catch (error) {
      if (!(error instanceof LoginError)) throw error;
      this.failLogin(request, error);
      return;
    }
    const window = this.context.settings.commandWindowSize;
    this.writer.send({
      ...step.response, statSN: this.nextLoginStatSN(), expCmdSN: request.cmdSN, maxCmdSN: (request.cmdSN + window - 1) >>> 0,
    });
    if (step.outcome === undefined) return;
    this.enterFullFeaturePhase(step.outcome);
  }

  private nextLoginStatSN(): number {
    const statSN = this.loginStatSN;
    this.loginStatSN = (this.loginStatSN + 1) >>> 0;
    return statSN;
  }

  private failLogin(request: LoginRequestPdu, error: LoginError): void {
    const { statusClass, statusDetail } = loginStatusFor(error.failure);
    this.logger.warn({ failure: error.failure, reason: error.message, statusClass, statusDetail }, "iSCSI login failed");
    this.writer.send({
      ...LoginNegotiation.failureResponse(request, statusClass, statusDetail), statSN: this.nextLoginStatSN(), expCmdSN: request.cmdSN,
      maxCmdSN: request.cmdSN,
    });
    // RFC 7143 §6.? : after a failed login the target closes the connection.
    this.endGracefully();
  }

  private enterFullFeaturePhase(outcome: LoginOutcome): void {
    const session = this.session as IscsiSession;
    const parameters = outcome.parameters;
    this.phase = "full-feature";
    if (this.loginTimer !== undefined) clearTimeout(this.loginTimer);
    this.loginTimer = undefined;
    // RFC 7143 §13.1: digests start with the first PDU after the final Login Response.
    const digests = { header: parameters.headerDigest, data: parameters.dataDigest };
    this.reader.digests = digests;
    this.writer.digests = digests;
    this.reader.dataSegmentBytesMax = parameters.targetMaxRecvDataSegmentLengthBytes;
    session.pingAnswered = (targetTransferTag) => {
      if (this.pendingPing?.targetTransferTag === targetTransferTag) this.pendingPing = undefined;
    };
    this.logger.info({
      tsih: session.tsih, type: outcome.sessionType, initiator: outcome.initiatorName, target: outcome.target?.name,
      headerDigest: parameters.headerDigest, dataDigest: parameters.dataDigest,
    }, "iSCSI session in full feature phase");
    this.startKeepalive();
  }

  /** RFC 7143 §11.19: after nopInIntervalMs without a PDU, ping; an unanswered ping drops the connection. */
  private startKeepalive(): void {
    const { nopInIntervalMs, nopInTimeoutMs } = this.context.settings;
    if (nopInIntervalMs === 0) return;
    const periodMs = Math.max(10, Math.floor(Math.min(nopInIntervalMs, nopInTimeoutMs) / 4));
    this.keepaliveTimer = setInterval(() => {
      const session = this.session;
      if (this.phase !== "full-feature" || session === undefined) return;
      const now = Date.now();
      if (this.pendingPing !== undefined) {
        if (now - this.pendingPing.sentAtMs >= nopInTimeoutMs) this.drop(`NOP-In ping unanswered for ${nopInTimeoutMs} ms`);
        return;
      }
      if (now - this.lastReceivedMs >= nopInIntervalMs) {
        this.pendingPing = { targetTransferTag: session.ping(), sentAtMs: now };
      }
    }, periodMs);
    this.keepaliveTimer.unref();
  }

  private clearTimers(): void {
    if (this.loginTimer !== undefined) clearTimeout(this.loginTimer);
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    this.loginTimer = undefined;
    this.keepaliveTimer = undefined;
  }
}

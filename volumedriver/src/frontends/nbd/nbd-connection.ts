// One client connection: owns the socket (upgraded in place to TLS on NBD_OPT_STARTTLS), the receive
// queue, the handshake deadline and the switch from handshake to transmission (opening exports that
// are opened on demand, and releasing them once closed). It decides how a connection ends: soft
// (ABORT, DISC), hard (protocol violation, timeout, error) or by server shutdown. A failure on one
// connection never reaches another.
import type { Socket } from "node:net";
import { type SecureContext, TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { encodeGreeting, Handshake, type HandshakeHost, type NegotiatedExport } from "./nbd-handshake.ts";
import { ReceiveQueue } from "./nbd-receive-queue.ts";
import { ReplyWriter } from "./nbd-reply-writer.ts";
import { CLOSE_DRAIN_TIMEOUT_MS, KEEPALIVE_INITIAL_DELAY_MS, type ResolvedNbdSettings, SHUTDOWN_LINGER_MS } from "./nbd-settings.ts";
import { Transmission, type TransmissionHost } from "./nbd-transmission.ts";
import type { NbdExportLease, NbdExportRegistry } from "./nbd-types.ts";

/** "opening": the option that entered transmission was answered; the export's device is being opened. */
type Phase = "handshake" | "tls-upgrade" | "opening" | "transmission" | "closing" | "closed";

export interface ConnectionContext {
  registry: NbdExportRegistry;
  settings: ResolvedNbdSettings;
  /** Present when TLS mode is allow or require. */
  secureContext: SecureContext | undefined;
  logger: Logger;
}

export class NbdConnection implements HandshakeHost, TransmissionHost {
  private socket: Duplex;
  private readonly queue = new ReceiveQueue();
  private readonly handshake: Handshake;
  private transmission: Transmission | undefined;
  private phase: Phase = "handshake";
  private handshakeTimer: NodeJS.Timeout | undefined;
  private tlsSocket: TLSSocket | undefined;
  private shuttingDownNow = false;
  /** The opened export (see NbdExport.open), released once the socket has closed. */
  private lease: NbdExportLease | undefined;
  /** Resolves once the TCP socket is closed. */
  readonly closed: Promise<void>;

  private readonly onData = (chunk: Buffer): void => {
    this.queue.push(chunk);
    if (this.phase === "handshake") this.handshake.receive(this.queue);
    else if (this.phase === "transmission") (this.transmission as Transmission).receive();
  };

  private readonly onDrain = (): void => {
    this.transmission?.outputDrained();
  };

  constructor(
    private readonly rawSocket: Socket,
    private readonly context: ConnectionContext,
    private readonly logger: Logger,
  ) {
    this.socket = rawSocket;
    this.handshake = new Handshake(this, context.registry, context.settings, logger);
    this.closed = new Promise((resolve) => {
      rawSocket.once("close", () => {
        this.phase = "closed";
        this.clearHandshakeTimer();
        this.transmission?.stop();
        this.releaseLease();
        this.logger.debug("NBD connection closed");
        resolve();
      });
    });
  }

  /** Sends the greeting and starts the handshake deadline. */
  start(): void {
    // proto.md "Protocol phases": both ends SHOULD disable Nagle. Keepalive finds peers that vanished.
    this.rawSocket.setNoDelay(true);
    this.rawSocket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    this.rawSocket.on("error", (error) => this.logger.debug({ err: error }, "NBD socket error"));
    this.handshakeTimer = setTimeout(() => {
      this.violation(`handshake not finished within ${this.context.settings.handshakeTimeoutMs} ms`);
    }, this.context.settings.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.rawSocket.on("data", this.onData);
    this.write(encodeGreeting());
  }

  // ---- HandshakeHost ----

  get tlsActive(): boolean {
    return this.tlsSocket !== undefined;
  }

  get shuttingDown(): boolean {
    return this.shuttingDownNow;
  }

  write(data: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data);
  }

  /**
   * NBD_OPT_STARTTLS was acknowledged. Reading stops at once (the client must wait for the ACK before
   * its ClientHello, so nothing may be queued); once the ACK is on the wire the raw socket is wrapped
   * in a server-side TLSSocket, and the handshake resumes over TLS when the TLS session is up.
   */
  startTls(): void {
    this.phase = "tls-upgrade";
    this.rawSocket.removeListener("data", this.onData);
    this.rawSocket.pause();
    if (this.queue.length > 0) {
      this.violation("data sent after NBD_OPT_STARTTLS before its reply");
      return;
    }
    this.rawSocket.write(Buffer.alloc(0), () => this.wrapInTls());
  }

  private wrapInTls(): void {
    if (this.phase !== "tls-upgrade") return;
    if (this.rawSocket.readableLength > 0) {
      this.violation("data sent after NBD_OPT_STARTTLS before its reply");
      return;
    }
    const tlsSocket = new TLSSocket(this.rawSocket, { isServer: true, secureContext: this.context.secureContext });
    tlsSocket.on("error", (error) => {
      this.logger.warn({ err: error }, "NBD TLS error");
      this.destroy();
    });
    tlsSocket.once("secure", () => {
      if (this.phase !== "tls-upgrade") return;
      this.logger.debug({ protocol: tlsSocket.getProtocol(), cipher: tlsSocket.getCipher().name }, "NBD TLS session established");
      this.tlsSocket = tlsSocket;
      this.socket = tlsSocket;
      this.phase = "handshake";
      this.handshake.tlsStarted();
      tlsSocket.on("data", this.onData);
    });
  }

  enterTransmission(negotiated: NegotiatedExport): void {
    const exportEntry = negotiated.export;
    if (exportEntry.open === undefined) {
      this.startTransmission(negotiated);
      return;
    }
    // Requests the client sends meanwhile wait in the queue; the handshake deadline still runs, so a
    // device that never opens cannot hold the connection forever.
    this.phase = "opening";
    this.socket.pause();
    void this.openExport(negotiated, exportEntry.open.bind(exportEntry));
  }

  private async openExport(negotiated: NegotiatedExport, open: () => Promise<NbdExportLease>): Promise<void> {
    let lease: NbdExportLease;
    try {
      lease = await open();
    } catch (error) {
      if (this.phase === "opening") {
        this.logger.warn({ err: error, export: negotiated.export.name }, "NBD export could not be opened: disconnecting");
        this.destroy();
      }
      return;
    }
    this.lease = lease;
    if (this.phase !== "opening") {
      // The client went away (or the server is shutting down) while the export opened.
      this.releaseLease();
      return;
    }
    // Data events come on a later tick: the transmission exists by then (and may pause again).
    this.socket.resume();
    this.startTransmission({ ...negotiated, export: { ...negotiated.export, device: lease.device } });
  }

  private startTransmission(negotiated: NegotiatedExport): void {
    this.clearHandshakeTimer();
    this.phase = "transmission";
    const { settings } = this.context;
    this.logger.debug({
      export: negotiated.export.name, structuredReplies: negotiated.structuredReplies,
      baseAllocation: negotiated.baseAllocation, tls: this.tlsActive,
    }, "NBD transmission phase entered");
    const writer = new ReplyWriter(this.socket);
    this.transmission = new Transmission(this, this.queue, writer, negotiated, {
      requestSizeBytesMax: settings.requestSizeBytesMax, inFlightRequestsMax: settings.inFlightRequestsMax,
    }, this.logger);
    this.socket.on("drain", this.onDrain);
    // Requests may already be queued behind the option that entered transmission.
    this.transmission.receive();
  }

  /** Soft close: end the stream (TLS close_notify first) and drop the socket if the client lingers. */
  end(lingerMs = CLOSE_DRAIN_TIMEOUT_MS): void {
    if (this.phase === "closed" || this.phase === "closing") return;
    this.phase = "closing";
    this.clearHandshakeTimer();
    this.socket.end();
    setTimeout(() => this.destroy(), lingerMs).unref();
  }

  violation(reason: string): void {
    if (this.phase === "closed") return;
    this.logger.warn({ reason }, "NBD protocol violation: disconnecting");
    this.destroy();
  }

  // ---- TransmissionHost ----

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    if (this.phase === "transmission") this.socket.resume();
  }

  // ---- server side ----

  /** Hard disconnect at once. */
  destroy(): void {
    if (this.phase === "closed") return;
    this.phase = "closing";
    this.clearHandshakeTimer();
    this.transmission?.stop();
    this.socket.destroy();
    if (this.socket !== this.rawSocket) this.rawSocket.destroy();
  }

  /**
   * Server shutdown: a connection still negotiating is dropped; in transmission, requests still to
   * come get ESHUTDOWN while those in flight finish (bounded by CLOSE_DRAIN_TIMEOUT_MS), then the
   * connection closes.
   */
  async shutdown(): Promise<void> {
    this.shuttingDownNow = true;
    if (this.phase === "transmission" && this.transmission !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_DRAIN_TIMEOUT_MS);
      });
      await Promise.race([this.transmission.shutdown(), timeout]);
      clearTimeout(timer);
      this.transmission.stop();
      this.end(SHUTDOWN_LINGER_MS);
    } else {
      this.destroy();
    }
    await this.closed;
  }

  private releaseLease(): void {
    const lease = this.lease;
    this.lease = undefined;
    try {
      lease?.release();
    } catch (error) {
      this.logger.error({ err: error }, "releasing the NBD export failed");
    }
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
  }
}

// The transmission phase of one connection (proto.md "Transmission"): decode each request as soon as
// its header and payload are in, validate it at the edge, dispatch it to the BlockDevice without
// waiting for earlier ones, and reply as each completes (out of order is allowed). At most
// inFlightRequestsMax requests (and IN_FLIGHT_PAYLOAD_BYTES_MAX payload bytes) are in flight; beyond
// that the connection stops reading until one completes.
import type { Logger } from "pino";
import type { BlockDevice, BlockExtent, WriteOptions, WriteZeroesOptions } from "../../engine/block-device.ts";
import { errnoForDeviceError, errnoForRejection, isOperatingError, type NbdRejection } from "./nbd-errors.ts";
import { BASE_ALLOCATION_CONTEXT_ID, type NegotiatedExport } from "./nbd-handshake.ts";
import {
  commandName, NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES,
  NBD_REQUEST_MAGIC, REQUEST_HEADER_BYTES,
} from "./nbd-protocol.ts";
import type { ReceiveQueue } from "./nbd-receive-queue.ts";
import { payloadBufferPool } from "./payload-buffer-pool.ts";
import type { ReplyWriter } from "./nbd-reply-writer.ts";
import { decodeRequestHeader, type NbdRequest, type RequestContext, validateRequest } from "./nbd-request.ts";
import {
  BLOCK_STATUS_EXTENTS_MAX, HOLE_DETECTION_LENGTH_BYTES_MIN, IN_FLIGHT_PAYLOAD_BYTES_MAX, REJECTIONS_LOGGED_AT_WARN_MAX,
} from "./nbd-settings.ts";

const FUA: WriteOptions = { fua: true };
const ZEROES_MAY_TRIM: WriteZeroesOptions = {};
const ZEROES_MAY_TRIM_FUA: WriteZeroesOptions = { fua: true };
const ZEROES_NO_HOLE: WriteZeroesOptions = { noHole: true };
const ZEROES_NO_HOLE_FUA: WriteZeroesOptions = { noHole: true, fua: true };

/** The connection, as the transmission phase sees it. */
export interface TransmissionHost {
  pauseReading(): void;
  resumeReading(): void;
  /** Protocol violation: hard disconnect, logged at warn. */
  violation(reason: string): void;
  /** Soft disconnect after NBD_CMD_DISC: everything answered and flushed. */
  end(): void;
}

export interface TransmissionSettings {
  requestSizeBytesMax: number;
  inFlightRequestsMax: number;
}

export class Transmission {
  private readonly device: BlockDevice;
  private readonly context: RequestContext;
  private readonly structuredReplies: boolean;
  private inFlight = 0;
  private inFlightPayloadBytes = 0;
  /** Payload bytes of a refused, oversized WRITE still to be read and dropped. */
  private skipBytes = 0;
  private rejectionCount = 0;
  private readingPaused = false;
  /** NBD_CMD_DISC received: answer what is in flight, flush, close. */
  private disconnecting = false;
  private shuttingDown = false;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly host: TransmissionHost,
    private readonly queue: ReceiveQueue,
    private readonly writer: ReplyWriter,
    negotiated: NegotiatedExport,
    private readonly settings: TransmissionSettings,
    private readonly logger: Logger,
  ) {
    this.device = negotiated.export.device;
    this.structuredReplies = negotiated.structuredReplies;
    this.context = {
      sizeBytes: this.device.sizeBytes, readOnly: this.device.readOnly, structuredReplies: negotiated.structuredReplies,
      baseAllocation: negotiated.baseAllocation, requestSizeBytesMax: settings.requestSizeBytesMax,
    };
  }

  /** Decodes and dispatches every complete request in the queue, within the in-flight bounds. */
  receive(): void {
    const queue = this.queue;
    while (!this.stopped && !this.disconnecting) {
      if (this.skipBytes > 0) {
        this.skipBytes -= queue.skip(this.skipBytes);
        if (this.skipBytes > 0) return;
      }
      if (this.atCapacity()) {
        if (!this.readingPaused) {
          this.readingPaused = true;
          this.host.pauseReading();
        }
        return;
      }
      if (queue.length < REQUEST_HEADER_BYTES) return;
      queue.peek(REQUEST_HEADER_BYTES);
      const view = queue.view;
      const at = queue.viewOffset;
      if (view.readUInt32BE(at) !== NBD_REQUEST_MAGIC) {
        this.stop();
        this.host.violation(`bad request magic 0x${view.readUInt32BE(at).toString(16)}`);
        return;
      }
      const command = view.readUInt16BE(at + 6);
      const length = view.readUInt32BE(at + 24);
      let skipPayload = false;
      if (command === NBD_CMD_WRITE) {
        if (length > this.settings.requestSizeBytesMax) {
          // Like nbdkit: a payload up to twice the limit is read and dropped so the stream stays in
          // step; anything larger is not worth reading (proto.md "Size constraints": MAY disconnect).
          if (length > 2 * this.settings.requestSizeBytesMax) {
            this.stop();
            this.host.violation(`WRITE payload of ${length} bytes is too large to skip`);
            return;
          }
          skipPayload = true;
        } else if (queue.length < REQUEST_HEADER_BYTES + length) {
          return;
        }
      }
      const request = decodeRequestHeader(view, at);
      queue.skip(REQUEST_HEADER_BYTES);
      if (skipPayload) this.skipBytes = length;
      else if (command === NBD_CMD_WRITE) request.payload = queue.take(length);
      this.admit(request);
    }
  }

  /** The socket drained its queued replies: reading may resume. */
  outputDrained(): void {
    this.maybeResume();
  }

  /**
   * Server shutdown: later requests get ESHUTDOWN (proto.md "Terminating the transmission phase");
   * resolves once nothing is in flight.
   */
  shutdown(): Promise<void> {
    this.shuttingDown = true;
    return this.whenIdle();
  }

  /** The connection is gone: decode nothing more. In-flight requests finish; their replies are dropped. */
  stop(): void {
    this.stopped = true;
  }

  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private atCapacity(): boolean {
    return this.inFlight >= this.settings.inFlightRequestsMax || this.inFlightPayloadBytes >= IN_FLIGHT_PAYLOAD_BYTES_MAX
      || this.writer.congested;
  }

  private maybeResume(): void {
    if (!this.readingPaused || this.atCapacity() || this.stopped) return;
    this.readingPaused = false;
    this.host.resumeReading();
    this.receive();
  }

  private payloadBytesOf(request: NbdRequest): number {
    const command = request.command;
    if (command === NBD_CMD_READ || command === NBD_CMD_WRITE) return request.length;
    if (command === NBD_CMD_CACHE) return Math.min(request.length, this.settings.requestSizeBytesMax);
    return 0;
  }

  private admit(request: NbdRequest): void {
    if (request.command === NBD_CMD_DISC) {
      // No reply to DISC (proto.md NBD_CMD_DISC); its flags, offset and length are not checked.
      this.disconnect();
      return;
    }
    const rejection = this.shuttingDown ? "ShuttingDown" : validateRequest(request, this.context);
    if (rejection !== undefined) {
      this.reject(request, rejection);
      return;
    }
    this.inFlight++;
    this.inFlightPayloadBytes += this.payloadBytesOf(request);
    void this.execute(request);
  }

  private reject(request: NbdRequest, rejection: NbdRejection): void {
    const message = `${commandName(request.command)} refused: ${rejection}`;
    // A client looping on a bad request must not flood the log: the first few go out at warn.
    const level = ++this.rejectionCount <= REJECTIONS_LOGGED_AT_WARN_MAX ? "warn" : "debug";
    this.logger[level]({ command: commandName(request.command), flags: request.flags, offset: request.offset,
      lengthBytes: request.length, rejection }, "NBD request refused");
    this.replyError(request, errnoForRejection(rejection), message);
  }

  private replyError(request: NbdRequest, errno: number, message: string): void {
    // Structured replies: an error chunk carries a message, and READ must not get a simple reply.
    if (this.structuredReplies) this.writer.error(request, errno, message);
    else this.writer.simple(request, errno);
  }

  /** Runs one validated request on the device and replies. Never rejects. */
  private async execute(request: NbdRequest): Promise<void> {
    const device = this.device;
    const fua = (request.flags & NBD_CMD_FLAG_FUA) !== 0;
    try {
      switch (request.command) {
        case NBD_CMD_READ:
          await this.read(request);
          break;
        case NBD_CMD_WRITE:
          await device.write(request.offset, request.payload as Buffer, fua ? FUA : undefined);
          this.writer.simple(request, 0);
          break;
        case NBD_CMD_FLUSH:
          await device.flush();
          this.writer.simple(request, 0);
          break;
        case NBD_CMD_TRIM:
          await device.trim(request.offset, request.length);
          if (fua) await device.flush();
          this.writer.simple(request, 0);
          break;
        case NBD_CMD_WRITE_ZEROES:
          await device.writeZeroes(request.offset, request.length, this.zeroesOptions(request.flags, fua));
          this.writer.simple(request, 0);
          break;
        case NBD_CMD_CACHE:
          // A read whose data is dropped warms the engine's caches; bounded to one maximum payload.
          if (request.length > 0) await device.read(request.offset, Math.min(request.length, this.settings.requestSizeBytesMax));
          this.writer.simple(request, 0);
          break;
        case NBD_CMD_BLOCK_STATUS:
          await this.blockStatus(request);
          break;
        default:
          throw new Error(`validated request has unexpected command ${request.command}`);
      }
    } catch (error) {
      this.deviceFailed(request, error);
    } finally {
      // The device call has settled, so nothing holds the payload any more.
      if (request.payload !== undefined) {
        payloadBufferPool.release(request.payload);
        request.payload = undefined;
      }
      this.completed(request);
    }
  }

  private zeroesOptions(flags: number, fua: boolean): WriteZeroesOptions {
    if ((flags & NBD_CMD_FLAG_NO_HOLE) !== 0) return fua ? ZEROES_NO_HOLE_FUA : ZEROES_NO_HOLE;
    return fua ? ZEROES_MAY_TRIM_FUA : ZEROES_MAY_TRIM;
  }

  /**
   * Simple replies: header then data. Structured replies: small reads and DF reads are one data chunk;
   * larger ones consult the allocation map and send hole chunks for unallocated extents, reading the
   * device only when some of the range holds data (proto.md NBD_CMD_READ "Structured replies").
   */
  private async read(request: NbdRequest): Promise<void> {
    const { offset, length } = request;
    if (!this.structuredReplies) {
      this.writer.simpleRead(request, await this.device.read(offset, length));
      return;
    }
    if (length < HOLE_DETECTION_LENGTH_BYTES_MIN || (request.flags & NBD_CMD_FLAG_DF) !== 0) {
      this.writer.structuredRead(request, await this.device.read(offset, length));
      return;
    }
    const extents = await this.device.blockStatus(offset, length);
    if (extents.length === 1 && (extents[0] as BlockExtent).allocated) {
      this.writer.structuredRead(request, await this.device.read(offset, length));
      return;
    }
    const holdsData = extents.some((extent) => extent.allocated);
    const data = holdsData ? await this.device.read(offset, length) : undefined;
    this.writer.structuredReadExtents(request, extents, data);
  }

  /** base:allocation of the range; REQ_ONE keeps only the first extent (proto.md NBD_CMD_FLAG_REQ_ONE). */
  private async blockStatus(request: NbdRequest): Promise<void> {
    const extents = await this.device.blockStatus(request.offset, request.length);
    const extentsMax = (request.flags & NBD_CMD_FLAG_REQ_ONE) !== 0 ? 1 : BLOCK_STATUS_EXTENTS_MAX;
    this.writer.blockStatus(request, BASE_ALLOCATION_CONTEXT_ID, extents, extentsMax);
  }

  private deviceFailed(request: NbdRequest, error: unknown): void {
    const errno = errnoForDeviceError(error, request.command);
    const fields = { command: commandName(request.command), offset: request.offset, lengthBytes: request.length, errno, err: error };
    if (isOperatingError(error)) this.logger.warn(fields, "NBD request failed in the device");
    else this.logger.error(fields, "NBD request failed with an unexpected error");
    this.replyError(request, errno, error instanceof Error ? error.message : String(error));
  }

  private completed(request: NbdRequest): void {
    this.inFlight--;
    this.inFlightPayloadBytes -= this.payloadBytesOf(request);
    if (this.inFlight === 0) {
      for (const waiter of this.idleWaiters.splice(0)) waiter();
    }
    if (this.readingPaused) this.maybeResume();
  }

  /**
   * NBD_CMD_DISC: "The server MUST handle all outstanding requests ... and close the TCP session".
   * We also flush, so a client that disconnects without FLUSH still leaves its writes durable.
   */
  private disconnect(): void {
    this.disconnecting = true;
    this.logger.debug({ inFlight: this.inFlight }, "NBD_CMD_DISC received");
    void this.finishDisconnect();
  }

  private async finishDisconnect(): Promise<void> {
    await this.whenIdle();
    try {
      if (!this.device.readOnly) await this.device.flush();
    } catch (error) {
      this.logger.warn({ err: error }, "flush at NBD_CMD_DISC failed");
    }
    this.stop();
    this.host.end();
  }
}

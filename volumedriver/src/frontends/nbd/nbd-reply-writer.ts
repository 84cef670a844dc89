// Encodes transmission-phase replies (proto.md "Simple reply message", "Structured reply chunk
// message") and writes them to one connection's socket. Each reply is written in one synchronous
// run of socket.write() calls, so replies never interleave; the socket is corked from the first reply
// of a tick until process.nextTick, so every reply completed in one tick leaves in one writev.
import type { Duplex } from "node:stream";
import type { BlockExtent } from "../../engine/block-device.ts";
import {
  NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_TYPE_OFFSET_HOLE, NBD_SIMPLE_REPLY_MAGIC, NBD_STATE_HOLE, NBD_STATE_ZERO,
  NBD_STRUCTURED_REPLY_MAGIC, SIMPLE_REPLY_HEADER_BYTES, STRUCTURED_REPLY_HEADER_BYTES,
} from "./nbd-protocol.ts";
import { ERROR_MESSAGE_BYTES_MAX, OUTPUT_QUEUED_BYTES_MAX } from "./nbd-settings.ts";
import type { NbdRequest } from "./nbd-request.ts";

const TWO_TO_32 = 0x1_0000_0000;
/** OFFSET_DATA payload prefix: 64-bit offset. */
const OFFSET_BYTES = 8;
/** OFFSET_HOLE payload: 64-bit offset, 32-bit hole size. */
const HOLE_PAYLOAD_BYTES = 12;
/** ERROR payload prefix: 32-bit error, 16-bit message length. */
const ERROR_PREFIX_BYTES = 6;
/** BLOCK_STATUS payload: 32-bit context id, then 8 bytes per descriptor. */
const BLOCK_STATUS_PREFIX_BYTES = 4;
const BLOCK_STATUS_DESCRIPTOR_BYTES = 8;

function writeUInt64BE(buffer: Buffer, value: number, at: number): void {
  buffer.writeUInt32BE(Math.floor(value / TWO_TO_32), at);
  buffer.writeUInt32BE(value % TWO_TO_32, at + 4);
}

/** UTF-8 message clipped to ERROR_MESSAGE_BYTES_MAX bytes (possibly mid-character: it is for humans). */
function encodeMessage(message: string): Buffer {
  const encoded = Buffer.from(message, "utf8");
  return encoded.length <= ERROR_MESSAGE_BYTES_MAX ? encoded : encoded.subarray(0, ERROR_MESSAGE_BYTES_MAX);
}

export class ReplyWriter {
  private corked = false;
  private readonly uncorkNow = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Duplex) {}

  /** True when the client reads replies slower than we produce them: stop reading requests until 'drain'. */
  get congested(): boolean {
    return this.socket.writableLength > OUTPUT_QUEUED_BYTES_MAX;
  }

  private get usable(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }

  private begin(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.uncorkNow);
  }

  /** Simple reply without payload: any command's success or error (only when structured replies are off, or no payload). */
  simple(request: NbdRequest, error: number): void {
    if (!this.usable) return;
    const header = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES);
    header.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
    header.writeUInt32BE(error, 4);
    header.writeUInt32BE(request.cookieHigh, 8);
    header.writeUInt32BE(request.cookieLow, 12);
    this.begin();
    this.socket.write(header);
  }

  /** Simple reply to a successful READ: header, then exactly request.length bytes. */
  simpleRead(request: NbdRequest, data: Buffer): void {
    if (!this.usable) return;
    const header = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES);
    header.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
    header.writeUInt32BE(0, 4);
    header.writeUInt32BE(request.cookieHigh, 8);
    header.writeUInt32BE(request.cookieLow, 12);
    this.begin();
    this.socket.write(header);
    if (data.length > 0) this.socket.write(data);
  }

  private chunkHeader(request: NbdRequest, flags: number, type: number, payloadBytes: number, extraBytes: number): Buffer {
    const header = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_BYTES + extraBytes);
    header.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
    header.writeUInt16BE(flags, 4);
    header.writeUInt16BE(type, 6);
    header.writeUInt32BE(request.cookieHigh, 8);
    header.writeUInt32BE(request.cookieLow, 12);
    header.writeUInt32BE(payloadBytes, 16);
    return header;
  }

  /** NBD_REPLY_TYPE_NONE with DONE: success of a command without payload under structured replies. */
  done(request: NbdRequest): void {
    if (!this.usable) return;
    this.begin();
    this.socket.write(this.chunkHeader(request, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0, 0));
  }

  /** NBD_REPLY_TYPE_ERROR with DONE: the whole request failed (proto.md: MAY NOT assume partial success). */
  error(request: NbdRequest, error: number, message: string): void {
    if (!this.usable) return;
    const text = encodeMessage(message);
    const header = this.chunkHeader(request, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, ERROR_PREFIX_BYTES + text.length,
      ERROR_PREFIX_BYTES);
    header.writeUInt32BE(error, STRUCTURED_REPLY_HEADER_BYTES);
    header.writeUInt16BE(text.length, STRUCTURED_REPLY_HEADER_BYTES + 4);
    this.begin();
    this.socket.write(header);
    if (text.length > 0) this.socket.write(text);
  }

  /** One OFFSET_DATA chunk carrying `data` at `offset`, with DONE when `last`. data.length ≥ 1. */
  private dataChunk(request: NbdRequest, offset: number, data: Buffer, last: boolean): void {
    const header = this.chunkHeader(request, last ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA,
      OFFSET_BYTES + data.length, OFFSET_BYTES);
    writeUInt64BE(header, offset, STRUCTURED_REPLY_HEADER_BYTES);
    this.socket.write(header);
    this.socket.write(data);
  }

  private holeChunk(request: NbdRequest, offset: number, length: number, last: boolean): void {
    const header = this.chunkHeader(request, last ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_HOLE,
      HOLE_PAYLOAD_BYTES, HOLE_PAYLOAD_BYTES);
    writeUInt64BE(header, offset, STRUCTURED_REPLY_HEADER_BYTES);
    header.writeUInt32BE(length, STRUCTURED_REPLY_HEADER_BYTES + 8);
    this.socket.write(header);
  }

  /** Structured READ reply holding all of `data` (request.offset, request.length) as one data chunk. */
  structuredRead(request: NbdRequest, data: Buffer): void {
    if (!this.usable) return;
    this.begin();
    if (data.length === 0) this.socket.write(this.chunkHeader(request, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0, 0));
    else this.dataChunk(request, request.offset, data, true);
  }

  /**
   * Structured READ reply from the allocation map of the range: hole chunks for unallocated extents,
   * data chunks (views of `data`, which covers the whole range, or absent when all is hole) for the
   * rest. Written in order; the last chunk carries DONE (proto.md "Structured replies": content
   * chunks may be split, the DONE chunk goes last).
   */
  structuredReadExtents(request: NbdRequest, extents: readonly BlockExtent[], data: Buffer | undefined): void {
    if (!this.usable) return;
    this.begin();
    for (let index = 0; index < extents.length; index++) {
      const extent = extents[index] as BlockExtent;
      const last = index === extents.length - 1;
      if (!extent.allocated) {
        this.holeChunk(request, extent.offsetBytes, extent.lengthBytes, last);
      } else {
        const start = extent.offsetBytes - request.offset;
        this.dataChunk(request, extent.offsetBytes, (data as Buffer).subarray(start, start + extent.lengthBytes), last);
      }
    }
  }

  /**
   * One NBD_REPLY_TYPE_BLOCK_STATUS chunk for base:allocation (DONE: it is the only context): holes are
   * HOLE|ZERO (they read as zeros), data is 0. At most `extentsMax` descriptors.
   */
  blockStatus(request: NbdRequest, contextId: number, extents: readonly BlockExtent[], extentsMax: number): void {
    if (!this.usable) return;
    const count = Math.min(extents.length, extentsMax);
    const payloadBytes = BLOCK_STATUS_PREFIX_BYTES + count * BLOCK_STATUS_DESCRIPTOR_BYTES;
    const chunk = this.chunkHeader(request, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, payloadBytes, payloadBytes);
    let at = STRUCTURED_REPLY_HEADER_BYTES;
    chunk.writeUInt32BE(contextId, at);
    at += BLOCK_STATUS_PREFIX_BYTES;
    for (let index = 0; index < count; index++) {
      const extent = extents[index] as BlockExtent;
      chunk.writeUInt32BE(extent.lengthBytes, at);
      chunk.writeUInt32BE(extent.allocated ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO, at + 4);
      at += BLOCK_STATUS_DESCRIPTOR_BYTES;
    }
    this.begin();
    this.socket.write(chunk);
  }
}

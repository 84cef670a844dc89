// Cuts one connection's byte stream into PDUs (RFC 7143 §11.2): BHS, AHS, HeaderDigest, data
// segment, padding, DataDigest. The header digest is checked before any length in the header is
// believed; a data segment longer than the bound is refused before it is buffered. Data segments
// are views of the received chunks where possible (nbd-receive-queue.ts), so they are not copied.
import { ReceiveQueue } from "../nbd/nbd-receive-queue.ts";
import { BHS_BYTES, type DigestSettings, DIGEST_BYTES, digestOf, NO_DIGESTS, paddingBytes, readDigest } from "./iscsi-pdu.ts";

/** ReceiveQueue.peek() serves up to 64 bytes: a BHS with its HeaderDigest fits. */
const PEEK_BYTES_MAX = 64;

export interface FramedPdu {
  /** The 48-byte BHS (a copy: the Reject path quotes it). */
  bhs: Buffer;
  ahs: Buffer;
  /** The data segment without padding. */
  data: Buffer;
  /** False when DataDigest is on and the received digest does not match (RFC 7143 §7.8). */
  dataDigestOk: boolean;
}

export type ReadOutcome =
  | { type: "pdu"; pdu: FramedPdu }
  | { type: "incomplete" }
  /** RFC 7143 §7.8: a header digest error leaves the stream without framing: the connection must go. */
  | { type: "header-digest-error"; bhs: Buffer }
  /** DataSegmentLength above what we declared we receive: refused before buffering (RFC 7143 §13.12). */
  | { type: "data-segment-too-long"; bhs: Buffer; dataBytes: number };

export class PduReader {
  private readonly queue = new ReceiveQueue();
  /** Digests apply from the first PDU after the final Login Response (RFC 7143 §13.1). */
  digests: DigestSettings = NO_DIGESTS;
  /** Largest data segment accepted now (login and full feature phase differ). */
  dataSegmentBytesMax: number;

  constructor(dataSegmentBytesMax: number) {
    this.dataSegmentBytesMax = dataSegmentBytesMax;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  get bufferedBytes(): number {
    return this.queue.length;
  }

  /** The next complete PDU, or why there is none. */
  next(): ReadOutcome {
    const queue = this.queue;
    if (queue.length < BHS_BYTES) return { type: "incomplete" };
    queue.peek(BHS_BYTES);
    const view = queue.view;
    const at = queue.viewOffset;
    const ahsBytes = view[at + 4] * 4;
    const dataBytes = view.readUIntBE(at + 5, 3);
    const headerDigestBytes = this.digests.header ? DIGEST_BYTES : 0;
    const headerBytes = BHS_BYTES + ahsBytes + headerDigestBytes;
    if (dataBytes > this.dataSegmentBytesMax) {
      // With a header digest, an oversized length may just be corruption: check the digest first.
      if (queue.length < headerBytes) return { type: "incomplete" };
      const header = this.peekHeader(headerBytes);
      if (this.digests.header && !this.headerDigestOk(header, ahsBytes)) return { type: "header-digest-error", bhs: header.subarray(0, BHS_BYTES) };
      return { type: "data-segment-too-long", bhs: header.subarray(0, BHS_BYTES), dataBytes };
    }
    const padding = paddingBytes(dataBytes);
    const dataWireBytes = dataBytes === 0 ? 0 : dataBytes + padding + (this.digests.data ? DIGEST_BYTES : 0);
    if (queue.length < headerBytes) return { type: "incomplete" };
    if (this.digests.header) {
      const header = this.peekHeader(headerBytes);
      if (!this.headerDigestOk(header, ahsBytes)) return { type: "header-digest-error", bhs: header.subarray(0, BHS_BYTES) };
    }
    if (queue.length < headerBytes + dataWireBytes) return { type: "incomplete" };
    const header = Buffer.from(queue.take(headerBytes));
    const bhs = header.subarray(0, BHS_BYTES);
    const ahs = header.subarray(BHS_BYTES, BHS_BYTES + ahsBytes);
    let data: Buffer = Buffer.alloc(0);
    let dataDigestOk = true;
    if (dataBytes > 0) {
      const padded = queue.take(dataBytes + padding);
      data = padded.subarray(0, dataBytes);
      if (this.digests.data) {
        const digest = readDigest(Buffer.from(queue.take(DIGEST_BYTES)), 0);
        dataDigestOk = digest === digestOf([padded]);
      }
    }
    return { type: "pdu", pdu: { bhs, ahs, data, dataDigestOk } };
  }

  /** Drops everything buffered (the connection is closing). */
  clear(): void {
    this.queue.skip(this.queue.length);
  }

  /** A copy of the next `headerBytes` bytes, not consumed. */
  private peekHeader(headerBytes: number): Buffer {
    if (headerBytes <= PEEK_BYTES_MAX) {
      this.queue.peek(headerBytes);
      return Buffer.from(this.queue.view.subarray(this.queue.viewOffset, this.queue.viewOffset + headerBytes));
    }
    // Rare (an AHS of more than a few bytes): take the bytes and rebuild the queue with them in front.
    const header = Buffer.from(this.queue.take(headerBytes));
    const rest = Buffer.from(this.queue.takeAll());
    this.queue.push(header);
    this.queue.push(rest);
    return header;
  }

  private headerDigestOk(header: Buffer, ahsBytes: number): boolean {
    const covered = BHS_BYTES + ahsBytes;
    return readDigest(header, covered) === digestOf([header.subarray(0, covered)]);
  }
}

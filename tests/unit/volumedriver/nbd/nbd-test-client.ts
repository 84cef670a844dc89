// Goal: a small test-only NBD client (fixed newstyle, options, STARTTLS, GO/EXPORT_NAME, structured
// replies, pipelined requests matched by cookie) so the server's tests can drive every byte of the
// protocol over a real socket. Not part of the product; deliberately independent of the server's code
// (it has its own constants, taken from NetworkBlockDevice/nbd doc/proto.md).
import { connect as connectTcp, type Socket } from "node:net";
import { connect as connectTls } from "node:tls";
import type { Duplex } from "node:stream";

export const NBD = {
  INIT_MAGIC: 0x4e42444d41474943n,
  OPTION_MAGIC: 0x49484156454f5054n,
  OPTION_REPLY_MAGIC: 0x3e889045565a9n,
  REQUEST_MAGIC: 0x25609513,
  SIMPLE_REPLY_MAGIC: 0x67446698,
  STRUCTURED_REPLY_MAGIC: 0x668e33ef,
  FLAG_FIXED_NEWSTYLE: 1,
  FLAG_NO_ZEROES: 2,
  FLAG_C_FIXED_NEWSTYLE: 1,
  FLAG_C_NO_ZEROES: 2,
  FLAG_HAS_FLAGS: 1 << 0,
  FLAG_READ_ONLY: 1 << 1,
  FLAG_SEND_FLUSH: 1 << 2,
  FLAG_SEND_FUA: 1 << 3,
  FLAG_SEND_TRIM: 1 << 5,
  FLAG_SEND_WRITE_ZEROES: 1 << 6,
  FLAG_SEND_DF: 1 << 7,
  FLAG_CAN_MULTI_CONN: 1 << 8,
  FLAG_SEND_CACHE: 1 << 10,
  FLAG_SEND_FAST_ZERO: 1 << 11,
  OPT_EXPORT_NAME: 1,
  OPT_ABORT: 2,
  OPT_LIST: 3,
  OPT_STARTTLS: 5,
  OPT_INFO: 6,
  OPT_GO: 7,
  OPT_STRUCTURED_REPLY: 8,
  OPT_LIST_META_CONTEXT: 9,
  OPT_SET_META_CONTEXT: 10,
  REP_ACK: 1,
  REP_SERVER: 2,
  REP_INFO: 3,
  REP_META_CONTEXT: 4,
  REP_ERR_UNSUP: 0x8000_0001,
  REP_ERR_POLICY: 0x8000_0002,
  REP_ERR_INVALID: 0x8000_0003,
  REP_ERR_TLS_REQD: 0x8000_0005,
  REP_ERR_UNKNOWN: 0x8000_0006,
  REP_ERR_SHUTDOWN: 0x8000_0007,
  INFO_EXPORT: 0,
  INFO_NAME: 1,
  INFO_DESCRIPTION: 2,
  INFO_BLOCK_SIZE: 3,
  CMD_READ: 0,
  CMD_WRITE: 1,
  CMD_DISC: 2,
  CMD_FLUSH: 3,
  CMD_TRIM: 4,
  CMD_CACHE: 5,
  CMD_WRITE_ZEROES: 6,
  CMD_BLOCK_STATUS: 7,
  CMD_FLAG_FUA: 1 << 0,
  CMD_FLAG_NO_HOLE: 1 << 1,
  CMD_FLAG_DF: 1 << 2,
  CMD_FLAG_REQ_ONE: 1 << 3,
  CMD_FLAG_FAST_ZERO: 1 << 4,
  REPLY_FLAG_DONE: 1,
  REPLY_TYPE_NONE: 0,
  REPLY_TYPE_OFFSET_DATA: 1,
  REPLY_TYPE_OFFSET_HOLE: 2,
  REPLY_TYPE_BLOCK_STATUS: 5,
  REPLY_TYPE_ERROR: 0x8001,
  STATE_HOLE: 1,
  STATE_ZERO: 2,
  EPERM: 1,
  EIO: 5,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface ExportInfo {
  sizeBytes: number;
  transmissionFlags: number;
  name?: string;
  description?: string;
  blockSize?: { minimum: number; preferred: number; maximum: number };
}

export interface ReplyChunk {
  flags: number;
  type: number;
  /** OFFSET_DATA / OFFSET_HOLE: absolute offset; length of data or hole. */
  offset?: number;
  length?: number;
}

export interface BlockStatusExtent {
  length: number;
  flags: number;
}

export interface NbdReply {
  /** 0 on success. */
  error: number;
  errorMessage?: string;
  /** READ data, reassembled from chunks (holes as zeros). */
  data?: Buffer;
  structured: boolean;
  chunks: ReplyChunk[];
  contextId?: number;
  extents?: BlockStatusExtent[];
}

export interface RequestOptions {
  flags?: number;
  /** Override the cookie (tests of cookie echo). */
  cookie?: bigint;
}

interface PendingRequest {
  command: number;
  offset: number;
  length: number;
  reply: NbdReply;
  resolve: (reply: NbdReply) => void;
  reject: (error: Error) => void;
}

/** Byte reader over a socket: readExactly(n) resolves once n bytes have arrived. */
class SocketReader {
  private chunks: Buffer[] = [];
  private length = 0;
  private waiter: { count: number; resolve: (data: Buffer) => void; reject: (error: Error) => void } | undefined;
  private ended: Error | undefined;
  private socket: Duplex | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.length += chunk.length;
    this.serve();
  };
  private readonly onEnd = (): void => this.fail(new Error("connection closed by the server"));
  private readonly onError = (error: Error): void => this.fail(error);

  attach(socket: Duplex): void {
    this.socket = socket;
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
    socket.on("error", this.onError);
  }

  detach(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    socket.removeListener("data", this.onData);
    socket.removeListener("end", this.onEnd);
    socket.removeListener("close", this.onEnd);
    socket.removeListener("error", this.onError);
    this.socket = undefined;
  }

  get closedError(): Error | undefined {
    return this.ended;
  }

  readExactly(count: number): Promise<Buffer> {
    if (this.waiter !== undefined) throw new Error("one read at a time");
    return new Promise((resolve, reject) => {
      this.waiter = { count, resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    if (waiter.count === 0) {
      this.waiter = undefined;
      waiter.resolve(Buffer.alloc(0));
    } else if (this.length >= waiter.count) {
      let data: Buffer;
      const head = this.chunks[0] as Buffer;
      if (head.length >= waiter.count) {
        data = head.subarray(0, waiter.count);
        if (head.length === waiter.count) this.chunks.shift();
        else this.chunks[0] = head.subarray(waiter.count);
      } else {
        const all = Buffer.concat(this.chunks, this.length);
        data = all.subarray(0, waiter.count);
        const rest = all.subarray(waiter.count);
        this.chunks = rest.length > 0 ? [rest] : [];
      }
      this.length -= waiter.count;
      this.waiter = undefined;
      waiter.resolve(data);
    } else if (this.ended !== undefined) {
      this.waiter = undefined;
      waiter.reject(this.ended);
    }
  }

  private fail(error: Error): void {
    this.ended ??= error;
    this.serve();
  }
}

export interface ConnectOptions {
  host?: string;
  /** Client flags; default FIXED_NEWSTYLE | NO_ZEROES. */
  clientFlags?: number;
}

export class NbdTestClient {
  socket: Duplex;
  private readonly reader = new SocketReader();
  handshakeFlags = 0;
  structuredReplies = false;
  info: ExportInfo | undefined;
  private nextCookie = 1n;
  private readonly pending = new Map<bigint, PendingRequest>();
  /** Cookies in the order their replies completed. */
  readonly completionOrder: bigint[] = [];
  private replyLoop: Promise<void> | undefined;

  private constructor(socket: Duplex) {
    this.socket = socket;
    this.reader.attach(socket);
  }

  /** Connects and reads the greeting; sends client flags unless clientFlags is null. */
  static async connect(port: number, options: ConnectOptions & { sendClientFlags?: boolean } = {}): Promise<NbdTestClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const created = connectTcp({ host: options.host ?? "127.0.0.1", port, noDelay: true }, () => {
        created.removeListener("error", reject);
        resolve(created);
      });
      created.once("error", reject);
    });
    const client = new NbdTestClient(socket);
    const greeting = await client.reader.readExactly(18);
    if (greeting.readBigUInt64BE(0) !== NBD.INIT_MAGIC || greeting.readBigUInt64BE(8) !== NBD.OPTION_MAGIC) {
      throw new Error("bad server greeting");
    }
    client.handshakeFlags = greeting.readUInt16BE(16);
    if (options.sendClientFlags !== false) client.sendClientFlags(options.clientFlags ?? (NBD.FLAG_C_FIXED_NEWSTYLE | NBD.FLAG_C_NO_ZEROES));
    return client;
  }

  sendClientFlags(flags: number): void {
    const data = Buffer.allocUnsafe(4);
    data.writeUInt32BE(flags, 0);
    this.socket.write(data);
  }

  rawWrite(data: Buffer): void {
    this.socket.write(data);
  }

  readExactly(count: number): Promise<Buffer> {
    return this.reader.readExactly(count);
  }

  /** Resolves when the server has closed the connection (or rejects after timeoutMs). */
  waitForClose(timeoutMs = 5_000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed || this.reader.closedError !== undefined) {
        resolve();
        return;
      }
      const timer = setTimeout(() => reject(new Error("server did not close the connection")), timeoutMs);
      this.socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  // ---- handshake ----

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.allocUnsafe(16);
    header.writeBigUInt64BE(NBD.OPTION_MAGIC, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const header = await this.reader.readExactly(20);
    if (header.readBigUInt64BE(0) !== NBD.OPTION_REPLY_MAGIC) throw new Error("bad option reply magic");
    const length = header.readUInt32BE(16);
    const data = length > 0 ? Buffer.from(await this.reader.readExactly(length)) : Buffer.alloc(0);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data };
  }

  /** Sends an option and collects replies up to the final one (ACK or an error). */
  async option(option: number, data?: Buffer): Promise<{ replies: OptionReply[]; final: OptionReply }> {
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      if (reply.option !== option) throw new Error(`reply for option ${reply.option}, expected ${option}`);
      if (reply.type === NBD.REP_ACK || reply.type >= 0x8000_0000) return { replies, final: reply };
      replies.push(reply);
    }
  }

  async list(): Promise<Array<{ name: string; description: string }>> {
    const { replies, final } = await this.option(NBD.OPT_LIST);
    if (final.type !== NBD.REP_ACK) throw new Error(`LIST failed with 0x${final.type.toString(16)}`);
    return replies.map((reply) => {
      const nameLength = reply.data.readUInt32BE(0);
      return { name: reply.data.toString("utf8", 4, 4 + nameLength), description: reply.data.toString("utf8", 4 + nameLength) };
    });
  }

  async negotiateStructuredReplies(): Promise<number> {
    const { final } = await this.option(NBD.OPT_STRUCTURED_REPLY);
    if (final.type === NBD.REP_ACK) this.structuredReplies = true;
    return final.type;
  }

  static encodeExportQuery(name: string, infoTypes: number[]): Buffer {
    const nameBytes = Buffer.from(name, "utf8");
    const data = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infoTypes.length);
    data.writeUInt32BE(nameBytes.length, 0);
    nameBytes.copy(data, 4);
    data.writeUInt16BE(infoTypes.length, 4 + nameBytes.length);
    infoTypes.forEach((type, index) => data.writeUInt16BE(type, 4 + nameBytes.length + 2 + 2 * index));
    return data;
  }

  static encodeMetaContextQuery(name: string, queries: string[]): Buffer {
    const parts: Buffer[] = [];
    const nameBytes = Buffer.from(name, "utf8");
    const head = Buffer.alloc(4);
    head.writeUInt32BE(nameBytes.length, 0);
    parts.push(head, nameBytes);
    const count = Buffer.alloc(4);
    count.writeUInt32BE(queries.length, 0);
    parts.push(count);
    for (const query of queries) {
      const queryBytes = Buffer.from(query, "utf8");
      const length = Buffer.alloc(4);
      length.writeUInt32BE(queryBytes.length, 0);
      parts.push(length, queryBytes);
    }
    return Buffer.concat(parts);
  }

  static parseInfo(replies: OptionReply[]): ExportInfo {
    const info: ExportInfo = { sizeBytes: -1, transmissionFlags: 0 };
    for (const reply of replies) {
      if (reply.type !== NBD.REP_INFO) continue;
      const type = reply.data.readUInt16BE(0);
      if (type === NBD.INFO_EXPORT) {
        if (reply.data.length !== 12) throw new Error("NBD_INFO_EXPORT length must be 12");
        info.sizeBytes = Number(reply.data.readBigUInt64BE(2));
        info.transmissionFlags = reply.data.readUInt16BE(10);
      } else if (type === NBD.INFO_NAME) {
        info.name = reply.data.toString("utf8", 2);
      } else if (type === NBD.INFO_DESCRIPTION) {
        info.description = reply.data.toString("utf8", 2);
      } else if (type === NBD.INFO_BLOCK_SIZE) {
        if (reply.data.length !== 14) throw new Error("NBD_INFO_BLOCK_SIZE length must be 14");
        info.blockSize = { minimum: reply.data.readUInt32BE(2), preferred: reply.data.readUInt32BE(6), maximum: reply.data.readUInt32BE(10) };
      }
    }
    return info;
  }

  /** NBD_OPT_INFO or NBD_OPT_GO; on a successful GO the client is in transmission. */
  async infoOrGo(option: number, name: string, infoTypes: number[] = []): Promise<{ final: OptionReply; info: ExportInfo }> {
    const { replies, final } = await this.option(option, NbdTestClient.encodeExportQuery(name, infoTypes));
    const info = NbdTestClient.parseInfo(replies);
    if (option === NBD.OPT_GO && final.type === NBD.REP_ACK) this.enterTransmission(info);
    return { final, info };
  }

  /** SET/LIST_META_CONTEXT: the contexts returned (id, name) and the final reply type. */
  async metaContext(option: number, name: string, queries: string[]): Promise<{ contexts: Array<{ id: number; name: string }>; final: number }> {
    const { replies, final } = await this.option(option, NbdTestClient.encodeMetaContextQuery(name, queries));
    const contexts = replies.filter((reply) => reply.type === NBD.REP_META_CONTEXT)
      .map((reply) => ({ id: reply.data.readUInt32BE(0), name: reply.data.toString("utf8", 4) }));
    return { contexts, final: final.type };
  }

  /** NBD_OPT_EXPORT_NAME: reads size, flags and (unless NO_ZEROES was sent) 124 zero bytes. */
  async exportName(name: string, noZeroes: boolean): Promise<ExportInfo> {
    this.sendOption(NBD.OPT_EXPORT_NAME, Buffer.from(name, "utf8"));
    const reply = await this.reader.readExactly(10 + (noZeroes ? 0 : 124));
    if (!noZeroes && !reply.subarray(10).equals(Buffer.alloc(124))) throw new Error("EXPORT_NAME padding is not zero");
    const info = { sizeBytes: Number(reply.readBigUInt64BE(0)), transmissionFlags: reply.readUInt16BE(8) };
    this.enterTransmission(info);
    return info;
  }

  /** NBD_OPT_STARTTLS then a TLS client handshake over the same socket, trusting `ca`. */
  async startTls(ca: Buffer): Promise<number> {
    const { final } = await this.option(NBD.OPT_STARTTLS);
    if (final.type !== NBD.REP_ACK) return final.type;
    this.reader.detach();
    const raw = this.socket as Socket;
    const secure = await new Promise<Duplex>((resolve, reject) => {
      const tlsSocket = connectTls({ socket: raw, ca, servername: undefined, checkServerIdentity: () => undefined }, () => resolve(tlsSocket));
      tlsSocket.once("error", reject);
    });
    this.socket = secure;
    this.reader.attach(secure);
    return final.type;
  }

  /** Fixed-newstyle GO to `name`, with structured replies and base:allocation when asked. */
  async go(name: string, options: { structured?: boolean; baseAllocation?: boolean } = {}): Promise<ExportInfo> {
    if (options.structured === true) {
      const type = await this.negotiateStructuredReplies();
      if (type !== NBD.REP_ACK) throw new Error(`STRUCTURED_REPLY refused: 0x${type.toString(16)}`);
    }
    if (options.baseAllocation === true) {
      const { final } = await this.metaContext(NBD.OPT_SET_META_CONTEXT, name, ["base:allocation"]);
      if (final !== NBD.REP_ACK) throw new Error(`SET_META_CONTEXT refused: 0x${final.toString(16)}`);
    }
    const { final, info } = await this.infoOrGo(NBD.OPT_GO, name, [NBD.INFO_BLOCK_SIZE]);
    if (final.type !== NBD.REP_ACK) throw new Error(`GO refused: 0x${final.type.toString(16)} ${final.data.toString()}`);
    return info;
  }

  // ---- transmission ----

  private enterTransmission(info: ExportInfo): void {
    this.info = info;
    this.replyLoop = this.readReplies();
    // Rejections are delivered to the pending requests; the loop's own promise must not go unhandled.
    this.replyLoop.catch(() => undefined);
  }

  private failAll(error: Error): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }

  private async readReplies(): Promise<void> {
    try {
      for (;;) {
        const magicBytes = await this.reader.readExactly(4);
        const magic = magicBytes.readUInt32BE(0);
        if (magic === NBD.SIMPLE_REPLY_MAGIC) await this.readSimpleReply();
        else if (magic === NBD.STRUCTURED_REPLY_MAGIC) await this.readStructuredChunk();
        else throw new Error(`bad reply magic 0x${magic.toString(16)}`);
      }
    } catch (error) {
      this.failAll(error as Error);
    }
  }

  private takePending(cookie: bigint): PendingRequest {
    const pending = this.pending.get(cookie);
    if (pending === undefined) throw new Error(`reply for unknown cookie ${cookie}`);
    return pending;
  }

  private async readSimpleReply(): Promise<void> {
    const header = await this.reader.readExactly(12);
    const error = header.readUInt32BE(0);
    const cookie = header.readBigUInt64BE(4);
    const pending = this.takePending(cookie);
    if (pending.command === NBD.CMD_READ && this.structuredReplies) throw new Error("simple reply to READ under structured replies");
    pending.reply.error = error;
    if (pending.command === NBD.CMD_READ && error === 0) {
      pending.reply.data = pending.length > 0 ? Buffer.from(await this.reader.readExactly(pending.length)) : Buffer.alloc(0);
    }
    this.pending.delete(cookie);
    this.completionOrder.push(cookie);
    pending.resolve(pending.reply);
  }

  private async readStructuredChunk(): Promise<void> {
    if (!this.structuredReplies) throw new Error("structured reply without negotiation");
    const header = await this.reader.readExactly(16);
    const flags = header.readUInt16BE(0);
    const type = header.readUInt16BE(2);
    const cookie = header.readBigUInt64BE(4);
    const length = header.readUInt32BE(12);
    const payload = length > 0 ? Buffer.from(await this.reader.readExactly(length)) : Buffer.alloc(0);
    const pending = this.takePending(cookie);
    const reply = pending.reply;
    reply.structured = true;
    const chunk: ReplyChunk = { flags, type };
    if (type === NBD.REPLY_TYPE_OFFSET_DATA) {
      const offset = Number(payload.readBigUInt64BE(0));
      chunk.offset = offset;
      chunk.length = length - 8;
      if (offset < pending.offset || offset + chunk.length > pending.offset + pending.length) throw new Error("data chunk outside the request");
      reply.data ??= Buffer.alloc(pending.length);
      payload.copy(reply.data, offset - pending.offset, 8);
    } else if (type === NBD.REPLY_TYPE_OFFSET_HOLE) {
      if (length !== 12) throw new Error("hole chunk length must be 12");
      chunk.offset = Number(payload.readBigUInt64BE(0));
      chunk.length = payload.readUInt32BE(8);
      if (chunk.length === 0) throw new Error("hole chunk of size 0");
      reply.data ??= Buffer.alloc(pending.length);
    } else if (type === NBD.REPLY_TYPE_BLOCK_STATUS) {
      if (length < 12 || (length - 4) % 8 !== 0) throw new Error("bad block status chunk length");
      reply.contextId = payload.readUInt32BE(0);
      reply.extents = [];
      for (let at = 4; at < length; at += 8) reply.extents.push({ length: payload.readUInt32BE(at), flags: payload.readUInt32BE(at + 4) });
    } else if (type === NBD.REPLY_TYPE_ERROR) {
      reply.error = payload.readUInt32BE(0);
      const messageLength = payload.readUInt16BE(4);
      if (messageLength > length - 6) throw new Error("error message longer than the chunk");
      reply.errorMessage = payload.toString("utf8", 6, 6 + messageLength);
    } else if (type !== NBD.REPLY_TYPE_NONE) {
      throw new Error(`unexpected structured reply type ${type}`);
    }
    reply.chunks.push(chunk);
    if ((flags & NBD.REPLY_FLAG_DONE) !== 0) {
      if (pending.command === NBD.CMD_READ && reply.error === 0 && pending.length > 0) {
        const covered = reply.chunks.reduce((sum, each) => sum + (each.length ?? 0), 0);
        if (covered !== pending.length) throw new Error(`read chunks cover ${covered} of ${pending.length} bytes`);
      }
      if (pending.command === NBD.CMD_READ && reply.error === 0) reply.data ??= Buffer.alloc(0);
      this.pending.delete(cookie);
      this.completionOrder.push(cookie);
      pending.resolve(reply);
    }
  }

  /** Sends one request (header + payload in one write) and returns its reply's promise. */
  request(command: number, offset: number, length: number, payload?: Buffer, options: RequestOptions = {}): Promise<NbdReply> {
    const cookie = options.cookie ?? this.nextCookie++;
    const header = Buffer.allocUnsafe(28);
    header.writeUInt32BE(NBD.REQUEST_MAGIC, 0);
    header.writeUInt16BE(options.flags ?? 0, 4);
    header.writeUInt16BE(command, 6);
    header.writeBigUInt64BE(cookie, 8);
    header.writeBigUInt64BE(BigInt(offset), 16);
    header.writeUInt32BE(length, 24);
    const promise = new Promise<NbdReply>((resolve, reject) => {
      if (command !== NBD.CMD_DISC) {
        this.pending.set(cookie, { command, offset, length, reply: { error: 0, structured: false, chunks: [] }, resolve, reject });
      } else {
        resolve({ error: 0, structured: false, chunks: [] });
      }
    });
    this.socket.write(payload === undefined ? header : Buffer.concat([header, payload]));
    return promise;
  }

  read(offset: number, length: number, flags = 0): Promise<NbdReply> {
    return this.request(NBD.CMD_READ, offset, length, undefined, { flags });
  }

  write(offset: number, data: Buffer, flags = 0): Promise<NbdReply> {
    return this.request(NBD.CMD_WRITE, offset, data.length, data, { flags });
  }

  flush(): Promise<NbdReply> {
    return this.request(NBD.CMD_FLUSH, 0, 0);
  }

  trim(offset: number, length: number, flags = 0): Promise<NbdReply> {
    return this.request(NBD.CMD_TRIM, offset, length, undefined, { flags });
  }

  writeZeroes(offset: number, length: number, flags = 0): Promise<NbdReply> {
    return this.request(NBD.CMD_WRITE_ZEROES, offset, length, undefined, { flags });
  }

  blockStatus(offset: number, length: number, flags = 0): Promise<NbdReply> {
    return this.request(NBD.CMD_BLOCK_STATUS, offset, length, undefined, { flags });
  }

  cache(offset: number, length: number): Promise<NbdReply> {
    return this.request(NBD.CMD_CACHE, offset, length);
  }

  /** NBD_CMD_DISC, then wait for the server to close. */
  async disconnect(): Promise<void> {
    await this.request(NBD.CMD_DISC, 0, 0);
    await this.waitForClose();
  }

  get pendingCount(): number {
    return this.pending.size;
  }
}

/** Connects, negotiates and enters transmission on `name` in one call. */
export async function openNbdClient(port: number, name: string,
  options: { structured?: boolean; baseAllocation?: boolean } = {}): Promise<NbdTestClient> {
  const client = await NbdTestClient.connect(port);
  await client.go(name, options);
  return client;
}

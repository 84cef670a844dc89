// Byte layouts of the handshake's option payloads and option replies (proto.md "Fixed newstyle
// negotiation", "Option types", "Option reply types"). Decoders check every length against the option
// length and return an InvalidOption (→ NBD_REP_ERR_INVALID) instead of reading past it.
import {
  NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT, NBD_OPTION_REPLY_MAGIC, OPTION_REPLY_HEADER_BYTES, STRING_BYTES_MAX,
} from "./nbd-protocol.ts";

/** A syntactically invalid option payload, with the reason for the error reply's message. */
export class InvalidOption {
  constructor(readonly message: string) {}
}

/** NBD_OPT_INFO / NBD_OPT_GO data: export name and the NBD_INFO_* types the client asks for. */
export interface ExportQuery {
  exportName: string;
  infoTypes: number[];
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. */
export interface MetaContextQuery {
  exportName: string;
  queries: string[];
}

/**
 * proto.md NBD_OPT_INFO/GO: 32-bit name length (≤ option length - 6), name, 16-bit count n, n × 16-bit
 * information requests; nothing may follow.
 */
export function decodeExportQuery(data: Buffer): ExportQuery | InvalidOption {
  if (data.length < 6) return new InvalidOption("option data shorter than 6 bytes");
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) return new InvalidOption("export name length exceeds the option data");
  if (nameLength > STRING_BYTES_MAX) return new InvalidOption("export name longer than 4096 bytes");
  const exportName = data.toString("utf8", 4, 4 + nameLength);
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 4 + nameLength + 2 + 2 * count) return new InvalidOption("information request count does not match the option length");
  const infoTypes: number[] = [];
  for (let index = 0; index < count; index++) infoTypes.push(data.readUInt16BE(4 + nameLength + 2 + 2 * index));
  return { exportName, infoTypes };
}

/**
 * proto.md NBD_OPT_LIST_META_CONTEXT: 32-bit name length, name, 32-bit query count, then each query as
 * 32-bit length and string. "a query length that would require reading beyond the original length
 * given in the option header" MUST fail with NBD_REP_ERR_INVALID.
 */
export function decodeMetaContextQuery(data: Buffer): MetaContextQuery | InvalidOption {
  if (data.length < 8) return new InvalidOption("option data shorter than 8 bytes");
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 8) return new InvalidOption("export name length exceeds the option data");
  if (nameLength > STRING_BYTES_MAX) return new InvalidOption("export name longer than 4096 bytes");
  const exportName = data.toString("utf8", 4, 4 + nameLength);
  let at = 4 + nameLength;
  const count = data.readUInt32BE(at);
  at += 4;
  // Each query needs at least its 4-byte length: a count beyond that cannot be honest.
  if (count > (data.length - at) / 4) return new InvalidOption("query count exceeds the option data");
  const queries: string[] = [];
  for (let index = 0; index < count; index++) {
    if (data.length - at < 4) return new InvalidOption("query length field beyond the option data");
    const queryLength = data.readUInt32BE(at);
    at += 4;
    if (queryLength > data.length - at) return new InvalidOption("query length exceeds the option data");
    if (queryLength > STRING_BYTES_MAX) return new InvalidOption("query longer than 4096 bytes");
    queries.push(data.toString("utf8", at, at + queryLength));
    at += queryLength;
  }
  if (at !== data.length) return new InvalidOption("trailing bytes after the last query");
  return { exportName, queries };
}

/** One option reply: magic, option, reply type, length, payload (proto.md "Fixed newstyle negotiation"). */
export function encodeOptionReply(option: number, replyType: number, payload?: Buffer): Buffer {
  const payloadBytes = payload?.length ?? 0;
  const reply = Buffer.allocUnsafe(OPTION_REPLY_HEADER_BYTES + payloadBytes);
  reply.writeBigUInt64BE(NBD_OPTION_REPLY_MAGIC, 0);
  reply.writeUInt32BE(option, 8);
  reply.writeUInt32BE(replyType, 12);
  reply.writeUInt32BE(payloadBytes, 16);
  if (payload !== undefined) payload.copy(reply, OPTION_REPLY_HEADER_BYTES);
  return reply;
}

/** NBD_REP_SERVER payload: 32-bit name length, name, then the description for humans. */
export function encodeServerPayload(name: string, description: string): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  const descriptionBytes = Buffer.from(description, "utf8").subarray(0, STRING_BYTES_MAX);
  const payload = Buffer.allocUnsafe(4 + nameBytes.length + descriptionBytes.length);
  payload.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(payload, 4);
  descriptionBytes.copy(payload, 4 + nameBytes.length);
  return payload;
}

/** NBD_INFO_EXPORT: type, 64-bit size, 16-bit transmission flags (length 12). */
export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const payload = Buffer.allocUnsafe(12);
  payload.writeUInt16BE(NBD_INFO_EXPORT, 0);
  payload.writeBigUInt64BE(BigInt(sizeBytes), 2);
  payload.writeUInt16BE(transmissionFlags, 10);
  return payload;
}

/** NBD_INFO_NAME / NBD_INFO_DESCRIPTION: type, then the string. */
export function encodeInfoString(infoType: number, text: string): Buffer {
  const textBytes = Buffer.from(text, "utf8").subarray(0, STRING_BYTES_MAX);
  const payload = Buffer.allocUnsafe(2 + textBytes.length);
  payload.writeUInt16BE(infoType, 0);
  textBytes.copy(payload, 2);
  return payload;
}

/** NBD_INFO_BLOCK_SIZE: type, minimum, preferred, maximum payload (length 14). */
export function encodeInfoBlockSize(minimumBytes: number, preferredBytes: number, maximumBytes: number): Buffer {
  const payload = Buffer.allocUnsafe(14);
  payload.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  payload.writeUInt32BE(minimumBytes, 2);
  payload.writeUInt32BE(preferredBytes, 6);
  payload.writeUInt32BE(maximumBytes, 10);
  return payload;
}

/** NBD_REP_META_CONTEXT payload: 32-bit context id, then the context name. */
export function encodeMetaContextPayload(contextId: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  const payload = Buffer.allocUnsafe(4 + nameBytes.length);
  payload.writeUInt32BE(contextId, 0);
  nameBytes.copy(payload, 4);
  return payload;
}

/** NBD_OPT_EXPORT_NAME reply: 64-bit size, 16-bit flags, then 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, paddingBytes: number): Buffer {
  const reply = Buffer.alloc(10 + paddingBytes);
  reply.writeBigUInt64BE(BigInt(sizeBytes), 0);
  reply.writeUInt16BE(transmissionFlags, 8);
  return reply;
}

// iSCSI text: key=value pairs, each ended by a NUL, in the data segment of Login and Text PDUs
// (RFC 7143 §6, §13). A negotiation's text may be split over several PDUs with the C bit set, even
// in the middle of a pair, so TextAccumulator gathers bytes until a PDU without C arrives. Every
// length is bounded: key names, values and the text of one exchange.

/** RFC 7143 §6.1: key names are at most 63 bytes. */
export const TEXT_KEY_BYTES_MAX = 63;
/**
 * RFC 7143 §6.1: values are at most 255 bytes "unless specified otherwise"; binary CHAP values may be
 * 1024 bytes (§12.1.3), which is 2 + 2048 characters in hex. We allow the longer bound for every key.
 */
export const TEXT_VALUE_BYTES_MAX = 2 + 2 * 1024 + 2;
/** All text of one negotiation sequence (RFC 7143 §6.6 suggests bounding it; 64 KiB as in Linux). */
export const TEXT_EXCHANGE_BYTES_MAX = 64 * 1024;

export interface TextPair {
  key: string;
  value: string;
}

/** The text is malformed (RFC 7143 §6.1): the login fails or the Text Request is rejected. */
export class TextFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TextFormatError";
  }
}

/** RFC 7143 §6.1: key-name characters are letters, digits, '.', '-', '+', '@', '_'. */
const KEY_PATTERN = /^[A-Za-z0-9.\-+@_]+$/;

/** Decodes a complete text (data segment(s) joined); an empty buffer is no pairs. */
export function decodeText(text: Buffer): TextPair[] {
  if (text.length > TEXT_EXCHANGE_BYTES_MAX) throw new TextFormatError(`text of ${text.length} bytes exceeds ${TEXT_EXCHANGE_BYTES_MAX}`);
  const pairs: TextPair[] = [];
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf(0, start);
    // The last pair must end with a NUL; tolerate its absence (some initiators pad with zeros anyway).
    if (end < 0) end = text.length;
    if (end === start) {
      // Zero bytes after the last pair (padding some initiators include in the length).
      start++;
      continue;
    }
    const entry = text.subarray(start, end);
    const equals = entry.indexOf(0x3d);
    if (equals <= 0) throw new TextFormatError(`text entry without key=value: ${JSON.stringify(entry.toString("latin1").slice(0, 80))}`);
    if (equals > TEXT_KEY_BYTES_MAX) throw new TextFormatError(`key of ${equals} bytes exceeds ${TEXT_KEY_BYTES_MAX}`);
    const valueBytes = entry.length - equals - 1;
    if (valueBytes > TEXT_VALUE_BYTES_MAX) throw new TextFormatError(`value of ${valueBytes} bytes exceeds ${TEXT_VALUE_BYTES_MAX}`);
    const key = entry.toString("latin1", 0, equals);
    if (!KEY_PATTERN.test(key)) throw new TextFormatError(`invalid key name ${JSON.stringify(key)}`);
    pairs.push({ key, value: entry.toString("utf8", equals + 1) });
    start = end + 1;
  }
  return pairs;
}

/** Encodes pairs as key=value\0... */
export function encodeText(pairs: readonly TextPair[]): Buffer {
  return Buffer.from(pairs.map((pair) => `${pair.key}=${pair.value}\0`).join(""), "utf8");
}

/** Splits encoded text into data segments of at most `segmentBytesMax` bytes (the C bit marks all but the last). */
export function splitText(text: Buffer, segmentBytesMax: number): Buffer[] {
  if (text.length <= segmentBytesMax) return [text];
  const segments: Buffer[] = [];
  for (let at = 0; at < text.length; at += segmentBytesMax) segments.push(text.subarray(at, at + segmentBytesMax));
  return segments;
}

/**
 * Gathers the data segments of one text exchange: PDUs with C set are buffered; the first without
 * C completes the text, which is then decoded. Bounded by TEXT_EXCHANGE_BYTES_MAX.
 */
export class TextAccumulator {
  private parts: Buffer[] = [];
  private bytes = 0;

  /** True while a continued text is being gathered. */
  get pending(): boolean {
    return this.parts.length > 0;
  }

  /** Adds one PDU's data; returns the decoded pairs once `continued` is false, else undefined. */
  append(data: Buffer, continued: boolean): TextPair[] | undefined {
    this.bytes += data.length;
    if (this.bytes > TEXT_EXCHANGE_BYTES_MAX) {
      this.reset();
      throw new TextFormatError(`text exchange exceeds ${TEXT_EXCHANGE_BYTES_MAX} bytes`);
    }
    this.parts.push(Buffer.from(data));
    if (continued) return undefined;
    const text = Buffer.concat(this.parts);
    this.reset();
    return decodeText(text);
  }

  reset(): void {
    this.parts = [];
    this.bytes = 0;
  }
}

/** RFC 7143 §6.1 numerical values: decimal or 0x hexadecimal, as a safe integer; undefined if not one. */
export function parseNumber(value: string): number | undefined {
  let parsed: number;
  if (/^0[xX][0-9a-fA-F]{1,13}$/.test(value)) parsed = Number.parseInt(value.slice(2), 16);
  else if (/^[0-9]{1,15}$/.test(value)) parsed = Number.parseInt(value, 10);
  else return undefined;
  return Number.isSafeInteger(parsed) ? parsed : undefined;
}

/** RFC 7143 §6.1 binary values: 0x hex or 0b base64; undefined when malformed. */
export function parseBinary(value: string): Buffer | undefined {
  if (/^0[xX]([0-9a-fA-F]{2})+$/.test(value)) return Buffer.from(value.slice(2), "hex");
  if (/^0[xX][0-9a-fA-F]+$/.test(value)) return Buffer.from(`0${value.slice(2)}`, "hex");
  if (/^0[bB][A-Za-z0-9+/]+={0,2}$/.test(value)) {
    const decoded = Buffer.from(value.slice(2), "base64");
    return decoded.length > 0 ? decoded : undefined;
  }
  return undefined;
}

export function encodeBinary(data: Buffer): string {
  return `0x${data.toString("hex")}`;
}

/** Values of a list-valued key (RFC 7143 §6.1: comma separated). */
export function splitList(value: string): string[] {
  return value.split(",");
}

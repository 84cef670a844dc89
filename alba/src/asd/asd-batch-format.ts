// The binary encoding of one AsdBatch on the wire (the body of POST /v1/batch), documented byte by
// byte in alba/docs/asd-protocol.md. Versioned and checksummed (CRC-32C over header and payload).
// The decoder is strict: anything malformed is AsdError("Invalid"), and nothing it allocates is
// sized by a field of the input before that field is checked against the input's real length.
import { crc32c } from "../codec/crc32c.ts";
import { AsdError, ASD_KEY_SIZE_BYTES_MAX, type AsdAssert, type AsdBatch, type AsdUpdate } from "./asd-api.ts";

/** "ASDB" */
export const ASD_BATCH_MAGIC = 0x42445341;
export const ASD_BATCH_VERSION = 1;
export const ASD_BATCH_HEADER_SIZE_BYTES = 20;
export const ASD_BATCH_TRAILER_SIZE_BYTES = 4;
/** The largest encoded batch (header, payload and trailer) a server accepts or a client sends. */
export const ASD_REQUEST_SIZE_BYTES_MAX = 64 * 1024 * 1024;
/** The most asserts, and separately the most updates, in one batch. */
export const ASD_BATCH_ENTRIES_MAX = 4096;

const ASSERT_KIND_ABSENT = 1;
const ASSERT_KIND_PRESENT = 2;
const ASSERT_KIND_CHECKSUM = 3;
const UPDATE_KIND_SET = 1;
const UPDATE_KIND_DELETE = 2;
/** kind (1) + key length (2): the smallest entry, used to bound counts before allocating. */
const ENTRY_SIZE_BYTES_MIN = 3 + 1;

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

function invalid(message: string): AsdError {
  return new AsdError("Invalid", message);
}

/**
 * The UTF-8 bytes of a key, or AsdError("Invalid") when it breaks the key rules of asd-api.ts
 * (1-512 bytes, no NUL, no unpaired surrogate that UTF-8 cannot carry).
 */
export function asdKeyBytes(key: string): Buffer {
  if (typeof key !== "string" || key.length === 0) throw invalid("a key must be a non-empty string");
  if (key.length > ASD_KEY_SIZE_BYTES_MAX) throw invalid(`key longer than ${ASD_KEY_SIZE_BYTES_MAX} bytes`);
  const bytes = Buffer.from(key, "utf8");
  if (bytes.length > ASD_KEY_SIZE_BYTES_MAX) throw invalid(`key longer than ${ASD_KEY_SIZE_BYTES_MAX} bytes`);
  if (bytes.includes(0)) throw invalid("a key must not contain NUL");
  if (bytes.toString("utf8") !== key) throw invalid("a key must be valid Unicode (no unpaired surrogates)");
  return bytes;
}

/**
 * Checks the shape of a batch (kinds, keys, counts, value types, no key updated twice) and returns
 * the total value bytes it sets. Both the encoder and the store call it, so an in-process caller
 * gets the same answer as a remote one.
 */
export function validateAsdBatch(batch: AsdBatch): number {
  if (typeof batch !== "object" || batch === null || !Array.isArray(batch.asserts) || !Array.isArray(batch.updates)) {
    throw invalid("a batch has arrays asserts and updates");
  }
  if (batch.asserts.length > ASD_BATCH_ENTRIES_MAX || batch.updates.length > ASD_BATCH_ENTRIES_MAX) {
    throw invalid(`a batch holds at most ${ASD_BATCH_ENTRIES_MAX} asserts and ${ASD_BATCH_ENTRIES_MAX} updates`);
  }
  for (const check of batch.asserts) {
    asdKeyBytes(check.key);
    if (check.kind === "checksum") {
      if (!Number.isInteger(check.crc32c) || check.crc32c < 0 || check.crc32c > 0xffff_ffff) {
        throw invalid("a checksum assert needs an unsigned 32-bit crc32c");
      }
    } else if (check.kind !== "absent" && check.kind !== "present") {
      throw invalid("unknown assert kind");
    }
  }
  const updatedKeys = new Set<string>();
  let valueBytes = 0;
  for (const update of batch.updates) {
    asdKeyBytes(update.key);
    if (updatedKeys.has(update.key)) throw invalid(`key ${JSON.stringify(update.key)} is updated twice in one batch`);
    updatedKeys.add(update.key);
    if (update.kind === "set") {
      if (!(update.value instanceof Uint8Array)) throw invalid("a set needs a Uint8Array value");
      valueBytes += update.value.length;
    } else if (update.kind !== "delete") {
      throw invalid("unknown update kind");
    }
  }
  return valueBytes;
}

export interface EncodedAsdBatch {
  /** Write these in order; values are not copied (the caller must not change them until sent). */
  parts: Uint8Array[];
  sizeBytes: number;
}

/** Encodes a batch; AsdError("Invalid") if it breaks the rules or exceeds ASD_REQUEST_SIZE_BYTES_MAX. */
export function encodeAsdBatch(batch: AsdBatch): EncodedAsdBatch {
  validateAsdBatch(batch);
  const keys: Buffer[] = [];
  let metadataBytes = 0;
  let payloadBytes = 0;
  for (const check of batch.asserts) {
    const key = asdKeyBytes(check.key);
    keys.push(key);
    metadataBytes += 3 + key.length + (check.kind === "checksum" ? 4 : 0);
  }
  for (const update of batch.updates) {
    const key = asdKeyBytes(update.key);
    keys.push(key);
    metadataBytes += 3 + key.length + (update.kind === "set" ? 4 : 0);
    if (update.kind === "set") payloadBytes += update.value.length;
  }
  payloadBytes += metadataBytes;
  const sizeBytes = ASD_BATCH_HEADER_SIZE_BYTES + payloadBytes + ASD_BATCH_TRAILER_SIZE_BYTES;
  if (sizeBytes > ASD_REQUEST_SIZE_BYTES_MAX) {
    throw invalid(`the encoded batch (${sizeBytes} bytes) exceeds ${ASD_REQUEST_SIZE_BYTES_MAX} bytes`);
  }

  // Metadata goes into contiguous buffers; each set's value is its own part, so large values are
  // sent without a copy.
  const parts: Uint8Array[] = [];
  let current = Buffer.allocUnsafe(ASD_BATCH_HEADER_SIZE_BYTES + metadataBytes);
  let offset = 0;
  current.writeUInt32LE(ASD_BATCH_MAGIC, 0);
  current.writeUInt16LE(ASD_BATCH_VERSION, 4);
  current.writeUInt16LE(0, 6);
  current.writeUInt32LE(batch.asserts.length, 8);
  current.writeUInt32LE(batch.updates.length, 12);
  current.writeUInt32LE(payloadBytes, 16);
  offset = ASD_BATCH_HEADER_SIZE_BYTES;
  let keyIndex = 0;
  const writeKey = (kind: number): void => {
    const key = keys[keyIndex++]!;
    current.writeUInt8(kind, offset);
    current.writeUInt16LE(key.length, offset + 1);
    key.copy(current, offset + 3);
    offset += 3 + key.length;
  };
  for (const check of batch.asserts) {
    if (check.kind === "absent") writeKey(ASSERT_KIND_ABSENT);
    else if (check.kind === "present") writeKey(ASSERT_KIND_PRESENT);
    else {
      writeKey(ASSERT_KIND_CHECKSUM);
      current.writeUInt32LE(check.crc32c, offset);
      offset += 4;
    }
  }
  for (const update of batch.updates) {
    if (update.kind === "delete") {
      writeKey(UPDATE_KIND_DELETE);
      continue;
    }
    writeKey(UPDATE_KIND_SET);
    current.writeUInt32LE(update.value.length, offset);
    offset += 4;
    if (update.value.length > 0) {
      parts.push(current.subarray(0, offset));
      parts.push(update.value);
      current = current.subarray(offset);
      offset = 0;
    }
  }
  parts.push(current.subarray(0, offset));
  let crc = 0;
  for (const part of parts) crc = crc32c(part, crc);
  const trailer = Buffer.allocUnsafe(ASD_BATCH_TRAILER_SIZE_BYTES);
  trailer.writeUInt32LE(crc, 0);
  parts.push(trailer);
  return { parts, sizeBytes };
}

/**
 * Decodes one encoded batch. Values are views into `input` (no copy). Throws only
 * AsdError("Invalid"), whatever the bytes.
 */
export function decodeAsdBatch(input: Uint8Array, sizeBytesMax = ASD_REQUEST_SIZE_BYTES_MAX): AsdBatch {
  const data = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (data.length > sizeBytesMax) throw invalid(`batch of ${data.length} bytes exceeds ${sizeBytesMax}`);
  if (data.length < ASD_BATCH_HEADER_SIZE_BYTES + ASD_BATCH_TRAILER_SIZE_BYTES) throw invalid("batch shorter than its header");
  if (data.readUInt32LE(0) !== ASD_BATCH_MAGIC) throw invalid("not an ASD batch (bad magic)");
  const version = data.readUInt16LE(4);
  if (version !== ASD_BATCH_VERSION) throw invalid(`unsupported batch version ${version}`);
  if (data.readUInt16LE(6) !== 0) throw invalid("reserved flags must be 0");
  const assertCount = data.readUInt32LE(8);
  const updateCount = data.readUInt32LE(12);
  const payloadBytes = data.readUInt32LE(16);
  if (ASD_BATCH_HEADER_SIZE_BYTES + payloadBytes + ASD_BATCH_TRAILER_SIZE_BYTES !== data.length) {
    throw invalid("payload length does not match the batch size");
  }
  if (assertCount > ASD_BATCH_ENTRIES_MAX || updateCount > ASD_BATCH_ENTRIES_MAX) throw invalid("too many entries");
  if ((assertCount + updateCount) * ENTRY_SIZE_BYTES_MIN > payloadBytes) throw invalid("entry counts exceed the payload");
  const payloadEnd = ASD_BATCH_HEADER_SIZE_BYTES + payloadBytes;
  const expectedCrc = data.readUInt32LE(payloadEnd);
  if (crc32c(data.subarray(0, payloadEnd)) !== expectedCrc) throw invalid("batch checksum mismatch");

  let offset = ASD_BATCH_HEADER_SIZE_BYTES;
  const need = (bytes: number): void => {
    if (offset + bytes > payloadEnd) throw invalid("entry runs past the payload");
  };
  const readKey = (): string => {
    need(2);
    const length = data.readUInt16LE(offset);
    offset += 2;
    if (length === 0 || length > ASD_KEY_SIZE_BYTES_MAX) throw invalid("bad key length");
    need(length);
    const bytes = data.subarray(offset, offset + length);
    offset += length;
    if (bytes.includes(0)) throw invalid("a key must not contain NUL");
    try {
      return utf8Decoder.decode(bytes);
    } catch {
      throw invalid("a key must be valid UTF-8");
    }
  };
  const readKind = (): number => {
    need(1);
    return data.readUInt8(offset++);
  };

  const asserts: AsdAssert[] = [];
  for (let index = 0; index < assertCount; index++) {
    const kind = readKind();
    const key = readKey();
    if (kind === ASSERT_KIND_ABSENT) asserts.push({ kind: "absent", key });
    else if (kind === ASSERT_KIND_PRESENT) asserts.push({ kind: "present", key });
    else if (kind === ASSERT_KIND_CHECKSUM) {
      need(4);
      asserts.push({ kind: "checksum", key, crc32c: data.readUInt32LE(offset) });
      offset += 4;
    } else throw invalid(`unknown assert kind ${kind}`);
  }
  const updates: AsdUpdate[] = [];
  const updatedKeys = new Set<string>();
  for (let index = 0; index < updateCount; index++) {
    const kind = readKind();
    const key = readKey();
    if (updatedKeys.has(key)) throw invalid("a key is updated twice in one batch");
    updatedKeys.add(key);
    if (kind === UPDATE_KIND_DELETE) updates.push({ kind: "delete", key });
    else if (kind === UPDATE_KIND_SET) {
      need(4);
      const length = data.readUInt32LE(offset);
      offset += 4;
      need(length);
      updates.push({ kind: "set", key, value: data.subarray(offset, offset + length) });
      offset += length;
    } else throw invalid(`unknown update kind ${kind}`);
  }
  if (offset !== payloadEnd) throw invalid("bytes left over after the last entry");
  return { asserts, updates };
}

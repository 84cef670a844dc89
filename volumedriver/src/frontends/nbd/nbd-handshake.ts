// Fixed-newstyle option haggling for one connection (proto.md "Handshake", "Option types", "TLS
// support"): decode each option from the receive queue, apply the TLS policy, answer it, and tell the
// connection when to upgrade to TLS, enter transmission or hang up. Oldstyle and non-fixed newstyle
// clients are refused. Nothing here touches a device beyond reading its size and read-only flag.
import type { Logger } from "pino";
import {
  decodeExportQuery, decodeMetaContextQuery, encodeExportNameReply, encodeInfoBlockSize, encodeInfoExport, encodeInfoString,
  encodeMetaContextPayload, encodeOptionReply, encodeServerPayload, InvalidOption,
} from "./nbd-option-codec.ts";
import {
  BASE_ALLOCATION_CONTEXT, EXPORT_NAME_REPLY_PADDING_BYTES, NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_HAS_FLAGS, NBD_FLAG_NO_ZEROES, NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE, NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_INFO_DESCRIPTION, NBD_INFO_NAME, NBD_INIT_MAGIC, NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_OPTION_MAGIC, NBD_REP_ACK, NBD_REP_ERR_INVALID, NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_TLS_REQD, NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO,
  NBD_REP_META_CONTEXT, NBD_REP_SERVER, OPTION_HEADER_BYTES, optionName,
} from "./nbd-protocol.ts";
import type { ReceiveQueue } from "./nbd-receive-queue.ts";
import {
  ERROR_MESSAGE_BYTES_MAX, HANDSHAKE_OPTIONS_COUNT_MAX, MINIMUM_BLOCK_SIZE_BYTES, OPTION_LENGTH_BYTES_MAX,
  PREFERRED_BLOCK_SIZE_BYTES, type ResolvedNbdSettings,
} from "./nbd-settings.ts";
import type { NbdExport, NbdExportRegistry } from "./nbd-types.ts";

/** Metadata context id of base:allocation on every connection (the only context we offer). */
export const BASE_ALLOCATION_CONTEXT_ID = 1;
const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/** What the handshake settled on, handed to the transmission phase. */
export interface NegotiatedExport {
  export: NbdExport;
  transmissionFlags: number;
  structuredReplies: boolean;
  /** base:allocation selected for this export (NBD_CMD_BLOCK_STATUS allowed). */
  baseAllocation: boolean;
}

/** The connection, as the handshake sees it. */
export interface HandshakeHost {
  write(data: Buffer): void;
  /** NBD_REP_ACK to STARTTLS has been written: upgrade the socket, then call Handshake.tlsStarted(). */
  startTls(): void;
  enterTransmission(negotiated: NegotiatedExport): void;
  /** Soft disconnect (NBD_OPT_ABORT answered): close cleanly. */
  end(): void;
  /** The client broke a MUST of the protocol (or looks like a DoS): hard disconnect, logged at warn. */
  violation(reason: string): void;
  readonly tlsActive: boolean;
  readonly shuttingDown: boolean;
}

/**
 * Transmission flags (proto.md "Transmission flags"). CAN_MULTI_CONN is honest: the engine's flush
 * makes durable every write that completed before it, whichever connection sent it. Write-type
 * features are not advertised on read-only exports.
 */
export function transmissionFlagsFor(exportEntry: NbdExport, structuredReplies: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;
  if (exportEntry.device.readOnly) flags |= NBD_FLAG_READ_ONLY;
  else flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  // "MUST leave this flag clear if structured replies have not been negotiated."
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF;
  return flags;
}

/** Server greeting: NBDMAGIC, IHAVEOPT, handshake flags (proto.md "Newstyle negotiation"). */
export function encodeGreeting(): Buffer {
  const greeting = Buffer.allocUnsafe(18);
  greeting.writeBigUInt64BE(NBD_INIT_MAGIC, 0);
  greeting.writeBigUInt64BE(NBD_OPTION_MAGIC, 8);
  greeting.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return greeting;
}

export class Handshake {
  private clientFlagsReceived = false;
  private noZeroes = false;
  private structuredReplies = false;
  /** Export name base:allocation was last selected for, if any (SET_META_CONTEXT). */
  private metaContextExport: string | undefined;
  private optionCount = 0;
  /** Set once the handshake has handed the stream on (TLS upgrade, transmission, close). */
  private suspended = false;

  constructor(
    private readonly host: HandshakeHost,
    private readonly registry: NbdExportRegistry,
    private readonly settings: ResolvedNbdSettings,
    private readonly logger: Logger,
  ) {}

  /** Decodes and answers every complete message in the queue. */
  receive(queue: ReceiveQueue): void {
    while (!this.suspended) {
      if (!this.clientFlagsReceived) {
        if (queue.length < 4) return;
        queue.peek(4);
        const clientFlags = queue.view.readUInt32BE(queue.viewOffset);
        queue.skip(4);
        this.clientFlagsReceived = true;
        // "the server MUST drop the TCP connection if the client sets an unknown flag"; clients
        // without FIXED_NEWSTYLE would not understand option replies, so they are refused too.
        if ((clientFlags & ~KNOWN_CLIENT_FLAGS) !== 0) return this.refuse(`unknown client flags 0x${clientFlags.toString(16)}`);
        if ((clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) === 0) return this.refuse("client does not speak fixed newstyle");
        this.noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
        continue;
      }
      if (queue.length < OPTION_HEADER_BYTES) return;
      queue.peek(OPTION_HEADER_BYTES);
      const view = queue.view;
      const at = queue.viewOffset;
      if (view.readBigUInt64BE(at) !== NBD_OPTION_MAGIC) return this.refuse("bad option magic");
      const option = view.readUInt32BE(at + 8);
      const length = view.readUInt32BE(at + 12);
      if (length > OPTION_LENGTH_BYTES_MAX) return this.refuse(`option ${optionName(option)} of ${length} bytes exceeds ${OPTION_LENGTH_BYTES_MAX}`);
      if (queue.length < OPTION_HEADER_BYTES + length) return;
      queue.skip(OPTION_HEADER_BYTES);
      const data = queue.take(length);
      if (++this.optionCount > HANDSHAKE_OPTIONS_COUNT_MAX) return this.refuse(`more than ${HANDSHAKE_OPTIONS_COUNT_MAX} options`);
      this.handleOption(option, data);
    }
  }

  /** The TLS session is up: "the server MUST NOT preserve any negotiation state" from before it. */
  tlsStarted(): void {
    this.structuredReplies = false;
    this.metaContextExport = undefined;
    this.suspended = false;
  }

  private refuse(reason: string): void {
    this.suspended = true;
    this.host.violation(reason);
  }

  private reply(option: number, replyType: number, payload?: Buffer): void {
    this.host.write(encodeOptionReply(option, replyType, payload));
  }

  private replyError(option: number, replyType: number, message: string): void {
    this.logger.debug({ option: optionName(option), replyType: replyType.toString(16), message }, "NBD option refused");
    this.reply(option, replyType, Buffer.from(message, "utf8").subarray(0, ERROR_MESSAGE_BYTES_MAX));
  }

  private handleOption(option: number, data: Buffer): void {
    this.logger.debug({ option: optionName(option), lengthBytes: data.length }, "NBD option");
    if (option === NBD_OPT_ABORT) {
      // "The server MUST reply with NBD_REP_ACK" and SHOULD ignore any data sent with it.
      this.reply(option, NBD_REP_ACK);
      this.suspended = true;
      this.host.end();
      return;
    }
    if (this.host.shuttingDown) {
      if (option === NBD_OPT_EXPORT_NAME) return this.refuse("server shutting down");
      return this.replyError(option, NBD_REP_ERR_SHUTDOWN, "server is shutting down");
    }
    // FORCEDTLS (proto.md "TLS support"): every option but STARTTLS and ABORT, known or not, gets
    // NBD_REP_ERR_TLS_REQD; EXPORT_NAME cannot be answered with an error, so the session ends.
    if (this.settings.tls?.mode === "require" && !this.host.tlsActive && option !== NBD_OPT_STARTTLS) {
      if (option === NBD_OPT_EXPORT_NAME) return this.refuse("NBD_OPT_EXPORT_NAME before TLS in require mode");
      return this.replyError(option, NBD_REP_ERR_TLS_REQD, "TLS is required: send NBD_OPT_STARTTLS first");
    }
    switch (option) {
      case NBD_OPT_EXPORT_NAME: return this.exportName(data);
      case NBD_OPT_LIST: return this.list(data);
      case NBD_OPT_STARTTLS: return this.startTls(data);
      case NBD_OPT_INFO: return this.infoOrGo(option, data);
      case NBD_OPT_GO: return this.infoOrGo(option, data);
      case NBD_OPT_STRUCTURED_REPLY: return this.structuredReply(data);
      case NBD_OPT_LIST_META_CONTEXT: return this.metaContext(option, data);
      case NBD_OPT_SET_META_CONTEXT: return this.metaContext(option, data);
      default: return this.replyError(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private findExport(name: string): NbdExport | undefined {
    try {
      return this.registry.findExport(name);
    } catch (error) {
      this.logger.error({ err: error, exportName: name }, "NBD export registry failed");
      return undefined;
    }
  }

  private negotiated(exportEntry: NbdExport, name: string): NegotiatedExport {
    return {
      export: exportEntry,
      transmissionFlags: transmissionFlagsFor(exportEntry, this.structuredReplies),
      structuredReplies: this.structuredReplies,
      // Block status needs SET_META_CONTEXT for the same export name as the one entered.
      baseAllocation: this.structuredReplies && this.metaContextExport === name,
    };
  }

  /** NBD_OPT_EXPORT_NAME: no way to return an error, so an unknown export ends the session. */
  private exportName(data: Buffer): void {
    const name = data.toString("utf8");
    const exportEntry = this.findExport(name);
    if (exportEntry === undefined) return this.refuse(`NBD_OPT_EXPORT_NAME for unknown export ${JSON.stringify(name)}`);
    const negotiated = this.negotiated(exportEntry, name);
    this.host.write(encodeExportNameReply(exportEntry.device.sizeBytes, negotiated.transmissionFlags,
      this.noZeroes ? 0 : EXPORT_NAME_REPLY_PADDING_BYTES));
    this.suspended = true;
    this.host.enterTransmission(negotiated);
  }

  private list(data: Buffer): void {
    if (data.length !== 0) return this.replyError(NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
    let exports: NbdExport[];
    try {
      exports = this.registry.listExports();
    } catch (error) {
      this.logger.error({ err: error }, "NBD export registry failed");
      exports = [];
    }
    for (const entry of exports) this.reply(NBD_OPT_LIST, NBD_REP_SERVER, encodeServerPayload(entry.name, entry.description));
    this.reply(NBD_OPT_LIST, NBD_REP_ACK);
  }

  private startTls(data: Buffer): void {
    const mode = this.settings.tls?.mode ?? "off";
    // NOTLS mode: "MUST respond with NBD_REP_ERR_POLICY ... or NBD_REP_ERR_UNSUP".
    if (mode === "off") return this.replyError(NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY, "TLS is disabled on this server");
    if (this.host.tlsActive) return this.replyError(NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already active");
    if (data.length !== 0) return this.replyError(NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
    this.reply(NBD_OPT_STARTTLS, NBD_REP_ACK);
    this.suspended = true;
    this.host.startTls();
  }

  private structuredReply(data: Buffer): void {
    if (data.length !== 0) {
      return this.replyError(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
    }
    this.structuredReplies = true;
    this.reply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
  }

  /**
   * NBD_OPT_INFO / NBD_OPT_GO: NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE always, NAME and DESCRIPTION
   * when asked for, then ACK; GO then enters transmission. The default export ("") does not exist.
   */
  private infoOrGo(option: number, data: Buffer): void {
    const query = decodeExportQuery(data);
    if (query instanceof InvalidOption) return this.replyError(option, NBD_REP_ERR_INVALID, query.message);
    const exportEntry = this.findExport(query.exportName);
    if (exportEntry === undefined) {
      return this.replyError(option, NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(query.exportName)}`);
    }
    const negotiated = this.negotiated(exportEntry, query.exportName);
    this.reply(option, NBD_REP_INFO, encodeInfoExport(exportEntry.device.sizeBytes, negotiated.transmissionFlags));
    if (query.infoTypes.includes(NBD_INFO_NAME)) this.reply(option, NBD_REP_INFO, encodeInfoString(NBD_INFO_NAME, exportEntry.name));
    if (query.infoTypes.includes(NBD_INFO_DESCRIPTION)) {
      this.reply(option, NBD_REP_INFO, encodeInfoString(NBD_INFO_DESCRIPTION, exportEntry.description));
    }
    this.reply(option, NBD_REP_INFO, encodeInfoBlockSize(MINIMUM_BLOCK_SIZE_BYTES, PREFERRED_BLOCK_SIZE_BYTES,
      this.settings.requestSizeBytesMax));
    this.reply(option, NBD_REP_ACK);
    if (option === NBD_OPT_GO) {
      this.suspended = true;
      this.host.enterTransmission(negotiated);
    }
  }

  /**
   * LIST_META_CONTEXT / SET_META_CONTEXT for the base: namespace (proto.md "Metadata querying"). LIST
   * with no queries, "base:" or "base:allocation" lists base:allocation; SET selects it only for the
   * exact name. Unknown namespaces and leaf names are ignored, as the spec requires.
   */
  private metaContext(option: number, data: Buffer): void {
    const isSet = option === NBD_OPT_SET_META_CONTEXT;
    // "Issuing this command replaces all previously-set metadata contexts (including when this command fails)".
    if (isSet) this.metaContextExport = undefined;
    if (isSet && !this.structuredReplies) {
      return this.replyError(option, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY must be negotiated first");
    }
    const query = decodeMetaContextQuery(data);
    if (query instanceof InvalidOption) return this.replyError(option, NBD_REP_ERR_INVALID, query.message);
    if (this.findExport(query.exportName) === undefined) {
      return this.replyError(option, NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(query.exportName)}`);
    }
    const selects = isSet
      ? query.queries.includes(BASE_ALLOCATION_CONTEXT)
      : query.queries.length === 0 || query.queries.some((text) => text === "base:" || text === BASE_ALLOCATION_CONTEXT);
    if (selects) {
      // "The metadata context ID in these replies [LIST] is reserved and SHOULD be set to zero".
      this.reply(option, NBD_REP_META_CONTEXT, encodeMetaContextPayload(isSet ? BASE_ALLOCATION_CONTEXT_ID : 0, BASE_ALLOCATION_CONTEXT));
      if (isSet) this.metaContextExport = query.exportName;
    }
    this.reply(option, NBD_REP_ACK);
  }
}

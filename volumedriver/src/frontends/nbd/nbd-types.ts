// Public types of the NBD frontend (NetworkBlockDevice/nbd doc/proto.md). The server itself is
// startNbdServer() in nbd-server.ts; the StorageDriver gives it a registry of exports (one per vDisk).
import type { Logger } from "pino";
import type { BlockDevice } from "../../engine/block-device.ts";

export interface NbdExport {
  /** Export name: the vDisk name, or VDISK@SNAPSHOT for a read-only snapshot export. */
  name: string;
  description: string;
  /**
   * The device served. For an export with `open`, it only describes the export during the handshake
   * (size, read-only flag) and is never read or written: the connection serves the lease's device.
   */
  device: BlockDevice;
  /**
   * For exports opened on demand (snapshot views): called when a connection enters transmission,
   * before its first request is read. The connection serves the lease's device and releases the
   * lease once it has closed, so the registry can close the view after its last connection. A
   * rejection disconnects the client (the option that entered transmission was already answered).
   */
  open?(): Promise<NbdExportLease>;
}

export interface NbdExportLease {
  /** Same size and read-only flag as the export's `device`. */
  device: BlockDevice;
  /** Called exactly once, when the connection has closed. */
  release(): void;
}

/** Looked up on every handshake, so vDisks created or removed later are seen at once. */
export interface NbdExportRegistry {
  listExports(): NbdExport[];
  findExport(name: string): NbdExport | undefined;
}

export type NbdTlsMode = "off" | "allow" | "require";

export interface NbdTlsSettings {
  /** off: no STARTTLS; allow: STARTTLS offered, plain allowed; require: plain transmission refused. */
  mode: NbdTlsMode;
  certificateFile: string;
  keyFile: string;
}

export interface NbdServerSettings {
  /** Default 127.0.0.1. Anything beyond loopback is an explicit choice of the operator. */
  host: string;
  /** Default 10809; 0 picks a free port (see NbdServer.port). */
  port: number;
  tls?: NbdTlsSettings;
  /** Largest READ/WRITE payload accepted (and advertised as maximum block size). Default 32 MiB. */
  requestSizeBytesMax?: number;
  /** Requests in flight per connection before the server stops reading from it. Default 64. */
  inFlightRequestsMax?: number;
  /** Concurrent connections; more are refused at accept. Default 256. */
  connectionsMax?: number;
  /** Time a client gets to finish the handshake. Default 30 s. */
  handshakeTimeoutMs?: number;
  logger?: Logger;
}

export interface NbdServer {
  readonly host: string;
  readonly port: number;
  /** Open connections right now. */
  connectionCount(): number;
  /** Stops accepting, waits for in-flight requests (bounded), closes every connection. */
  close(): Promise<void>;
}

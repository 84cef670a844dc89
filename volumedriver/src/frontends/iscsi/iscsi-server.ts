// The iSCSI server: listens on host:port (127.0.0.1:3260 by default), refuses connections beyond
// connectionsMax at accept, and hands each socket to an IscsiConnection. It keeps the session table
// (TSIH allocation, sessionsMax, session reinstatement by ISID per RFC 7143 §6.3.5) that task
// management uses to reach every session of a target. close() stops accepting, lets in-flight
// commands finish (bounded) and closes every connection.
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import { type ConnectionContext, IscsiConnection } from "./iscsi-connection.ts";
import { LoginError } from "./iscsi-errors.ts";
import type { LoginOutcome } from "./iscsi-login.ts";
import { IscsiSession, type SessionDirectory } from "./iscsi-session.ts";
import { resolveIscsiSettings, type ResolvedIscsiSettings, validateChapSettings } from "./iscsi-settings.ts";
import type { IscsiServer, IscsiServerSettings, IscsiTargetEntry, IscsiTargetRegistry } from "./iscsi-types.ts";

/** RFC 7143 §4.2.7.4 iqn format: our naming authority, one target per vPool. */
export const TARGET_NAME_PREFIX = "iqn.2026-11.org.openvstorage:";

/** The target name of a vPool: iqn.2026-11.org.openvstorage:<vpool> (lower case, RFC 3722 stringprep). */
export function vpoolTargetName(vpool: string): string {
  if (!/^[a-z0-9][a-z0-9.-]*$/i.test(vpool)) throw new RangeError(`vPool name ${JSON.stringify(vpool)} cannot form an iSCSI name`);
  return `${TARGET_NAME_PREFIX}${vpool.toLowerCase()}`;
}

/**
 * A registry over a mutable map, as the StorageDriver keeps one: a target per vPool whose LUNs (one
 * per vDisk) are added to and removed from its ScsiTarget as vDisks come and go; targets themselves
 * change only when vPools do. Lookups happen at each login and SendTargets, so changes show at once.
 */
export class IscsiTargetMap implements IscsiTargetRegistry {
  private readonly targets = new Map<string, IscsiTargetEntry>();

  add(entry: IscsiTargetEntry): void {
    if (this.targets.has(entry.name)) throw new Error(`iSCSI target ${entry.name} already exists`);
    validateChapSettings(`target ${entry.name}`, entry.chap);
    this.targets.set(entry.name, entry);
  }

  /** Removes a target from discovery and login; sessions already logged in keep running until they end. */
  remove(name: string): boolean {
    return this.targets.delete(name);
  }

  listTargets(): IscsiTargetEntry[] {
    return [...this.targets.values()];
  }

  findTarget(name: string): IscsiTargetEntry | undefined {
    return this.targets.get(name);
  }
}

/** TSIH 0 is reserved for a new session (RFC 7143 §11.12.6). */
const TSIH_MAX = 0xffff;

class SessionTable implements SessionDirectory {
  private readonly sessions = new Map<number, IscsiSession>();
  private nextTsih = 1;

  constructor(readonly registry: IscsiTargetRegistry, readonly settings: ResolvedIscsiSettings, private readonly logger: Logger) {}

  get size(): number {
    return this.sessions.size;
  }

  has(tsih: number): boolean {
    return this.sessions.has(tsih);
  }

  all(): IscsiSession[] {
    return [...this.sessions.values()];
  }

  sessionsOfTarget(targetName: string): IscsiSession[] {
    return this.all().filter((session) => session.targetName === targetName);
  }

  sessionEnded(session: IscsiSession): void {
    if (this.sessions.get(session.tsih) === session) this.sessions.delete(session.tsih);
  }

  admit(outcome: LoginOutcome, connection: IscsiConnection, nextStatSN: number, connectionLogger: Logger): IscsiSession {
    // RFC 7143 §6.3.5 session reinstatement: a new leading login with the ISID of an existing session
    // of the same initiator and target replaces it; at ERL 0 its tasks end with it.
    for (const existing of this.sessions.values()) {
      if (existing.initiatorName === outcome.initiatorName && existing.isid.equals(outcome.isid) && existing.type === outcome.sessionType
        && existing.targetName === outcome.target?.name) {
        this.logger.info({ tsih: existing.tsih, initiator: outcome.initiatorName }, "iSCSI session reinstated");
        existing.terminate("reinstated by a new login with the same ISID");
      }
    }
    if (this.sessions.size >= this.settings.sessionsMax) {
      throw new LoginError("OutOfResources", `sessionsMax (${this.settings.sessionsMax}) reached`);
    }
    const tsih = this.allocateTsih();
    const session = new IscsiSession({
      tsih, type: outcome.sessionType, initiatorName: outcome.initiatorName, isid: outcome.isid, cid: outcome.cid, target: outcome.target,
      parameters: outcome.parameters, initialCmdSN: outcome.initialCmdSN, nextStatSN,
    }, connection, this, connectionLogger.child({ tsih }));
    this.sessions.set(tsih, session);
    return session;
  }

  private allocateTsih(): number {
    for (let attempt = 0; attempt < TSIH_MAX; attempt++) {
      const tsih = this.nextTsih;
      this.nextTsih = this.nextTsih >= TSIH_MAX ? 1 : this.nextTsih + 1;
      if (!this.sessions.has(tsih)) return tsih;
    }
    throw new LoginError("OutOfResources", "no free TSIH");
  }
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once("error", onError);
    server.listen({ host, port }, () => {
      server.removeListener("error", onError);
      resolve();
    });
  });
}

export interface IscsiServerOptions {
  /** Randomness for CHAP challenges; tests may fix it. */
  randomBytes?: (count: number) => Buffer;
}

/** Starts an iSCSI server serving the registry's targets; resolves once it listens. */
export async function startIscsiServer(registry: IscsiTargetRegistry, settings: IscsiServerSettings, options: IscsiServerOptions = {}): Promise<IscsiServer> {
  const resolved = resolveIscsiSettings(settings);
  const logger = resolved.logger.child({ component: "iscsi" });
  const sessions = new SessionTable(registry, resolved, logger);
  const connections = new Set<IscsiConnection>();
  let nextConnectionId = 1;
  let closing: Promise<void> | undefined;

  const onConnection = (socket: Socket): void => {
    const remote = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
    if (closing !== undefined || connections.size >= resolved.connectionsMax) {
      logger.warn({ remote, connections: connections.size, connectionsMax: resolved.connectionsMax },
        closing !== undefined ? "iSCSI connection refused: server closing" : "iSCSI connection refused: connectionsMax reached");
      socket.destroy();
      return;
    }
    const connectionLogger = logger.child({ connection: nextConnectionId++, remote });
    const context: ConnectionContext = {
      registry, settings: resolved, randomBytes: options.randomBytes,
      admitSession: (outcome, connection, nextStatSN) => sessions.admit(outcome, connection, nextStatSN, connectionLogger),
      sessionExists: (tsih) => sessions.has(tsih),
    };
    const connection = new IscsiConnection(socket, context, connectionLogger);
    connections.add(connection);
    void connection.closed.then(() => connections.delete(connection));
    connectionLogger.debug("iSCSI connection accepted");
    connection.start();
  };

  const server = createServer({ noDelay: true }, onConnection);
  await listen(server, resolved.host, resolved.port);
  server.on("error", (error) => logger.error({ err: error }, "iSCSI listener error"));
  const address = server.address() as AddressInfo;
  logger.info({ host: address.address, port: address.port }, "iSCSI server listening");

  const close = async (): Promise<void> => {
    const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...connections].map((connection) => connection.shutdown()));
    await listenerClosed;
    logger.info("iSCSI server closed");
  };

  return {
    host: address.address,
    port: address.port,
    connectionCount: () => connections.size,
    sessionCount: () => sessions.size,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}

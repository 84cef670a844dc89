// The NBD server: listens on host:port, refuses connections beyond connectionsMax at accept, loads
// the TLS certificate and key once at start, and hands each accepted socket to an NbdConnection.
// close() stops accepting, lets in-flight requests finish (bounded) and closes every connection.
import { readFile } from "node:fs/promises";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { createSecureContext, type SecureContext } from "node:tls";
import { NbdConnection } from "./nbd-connection.ts";
import { resolveNbdSettings, type ResolvedNbdSettings } from "./nbd-settings.ts";
import type { NbdExportRegistry, NbdServer, NbdServerSettings } from "./nbd-types.ts";

async function loadSecureContext(settings: ResolvedNbdSettings): Promise<SecureContext | undefined> {
  const tls = settings.tls;
  if (tls === undefined || tls.mode === "off") return undefined;
  const [cert, key] = await Promise.all([readFile(tls.certificateFile), readFile(tls.keyFile)]);
  // proto.md "TLS versions": MUST support TLS 1.2, SHOULD NOT offer older versions by default.
  return createSecureContext({ cert, key, minVersion: "TLSv1.2" });
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

/** Starts an NBD server serving the registry's exports; resolves once it listens. */
export async function startNbdServer(registry: NbdExportRegistry, settings: NbdServerSettings): Promise<NbdServer> {
  const resolved = resolveNbdSettings(settings);
  const logger = resolved.logger.child({ component: "nbd" });
  const secureContext = await loadSecureContext(resolved);
  const connections = new Set<NbdConnection>();
  let nextConnectionId = 1;
  let closing: Promise<void> | undefined;

  const onConnection = (socket: Socket): void => {
    const remote = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
    if (closing !== undefined || connections.size >= resolved.connectionsMax) {
      logger.warn({ remote, connections: connections.size, connectionsMax: resolved.connectionsMax },
        closing !== undefined ? "NBD connection refused: server closing" : "NBD connection refused: connectionsMax reached");
      socket.destroy();
      return;
    }
    const connectionLogger = logger.child({ connection: nextConnectionId++, remote });
    const connection = new NbdConnection(socket, { registry, settings: resolved, secureContext, logger: connectionLogger }, connectionLogger);
    connections.add(connection);
    void connection.closed.then(() => connections.delete(connection));
    connectionLogger.debug("NBD connection accepted");
    connection.start();
  };

  const server = createServer({ noDelay: true }, onConnection);
  await listen(server, resolved.host, resolved.port);
  server.on("error", (error) => logger.error({ err: error }, "NBD listener error"));
  const address = server.address() as AddressInfo;
  logger.info({ host: address.address, port: address.port, tls: resolved.tls?.mode ?? "off" }, "NBD server listening");

  const close = async (): Promise<void> => {
    const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...connections].map((connection) => connection.shutdown()));
    await listenerClosed;
    logger.info("NBD server closed");
  };

  return {
    host: address.address,
    port: address.port,
    connectionCount: () => connections.size,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}

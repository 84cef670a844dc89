// The Alba proxy daemon (`ovs alba proxy run`): opens the backend directory's metadata store,
// connects to its claimed ASDs (AsdClient), serves AlbaApi over HTTP, prints one ready line on
// stdout ("Alba proxy listening on http://HOST:PORT"), and on SIGINT/SIGTERM stops accepting,
// finishes requests in flight, waits briefly for background deletes, and exits 0. Logs (pino JSON)
// go to stderr. Encryption keys are never logged (presets are logged by name and codec only).
import { access } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import { AsdClient } from "../asd/asd-client.ts";
import { AlbaClient, metadataPathOf, type AlbaClientSettings } from "../client/alba-client.ts";
import type { AsdRecord } from "../metadata/metadata-store.ts";
import { BufferPool } from "../memory/buffer-pool.ts";
import { AlbaMaintenance } from "../maintenance/maintenance.ts";
import type { MaintenanceSettings } from "../maintenance/maintenance-settings.ts";
import { MaintenanceRuns, maintenanceProxyRoutes } from "../maintenance/maintenance-routes.ts";
import { startProxyServer, type ProxyExtraRoute } from "./proxy-server.ts";

/** The Unix socket in the backend directory that clients on this host use (alba/docs/proxy-protocol.md). */
export const PROXY_LOCAL_SOCKET_FILE_NAME = "proxy.sock";

/** Bodies and results at least this large come from the proxy's buffer pool. */
export const PROXY_POOLED_BUFFER_SIZE_BYTES_MIN = 1024 * 1024;
/** Free pooled buffers the proxy keeps, in bytes. */
export const PROXY_POOLED_BUFFERS_FREE_BYTES_MAX = 256 * 1024 * 1024;

/** The process exits by this time after a stop signal, whatever happens. */
export const PROXY_SHUTDOWN_DEADLINE_MS = 15_000;

export interface AlbaProxyOptions {
  backendDirectory: string;
  host: string;
  port: number;
  clientSettings?: Partial<AlbaClientSettings>;
  maintenanceSettings?: Partial<MaintenanceSettings>;
  extraRoutes?: readonly ProxyExtraRoute[];
}

export async function runAlbaProxy(options: AlbaProxyOptions): Promise<number> {
  const logger = pino({ name: "alba-proxy", level: process.env.OVS_LOG_LEVEL ?? "info", base: { pid: process.pid }, redact: ["*.encryptionKeyHex", "encryptionKeyHex"] },
    pino.destination({ dest: 2, sync: true }));
  process.title = "ovs-alba-proxy";
  let stopRequested: (signal: string) => void = () => undefined;
  const stopSignal = new Promise<string>((resolve) => { stopRequested = resolve; });
  const onSignal = (signal: NodeJS.Signals): void => stopRequested(signal);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    await access(metadataPathOf(options.backendDirectory));
  } catch {
    process.stderr.write(`ovs: no Alba backend in ${options.backendDirectory}: create one with \`ovs alba backend create --path ${options.backendDirectory}\`\n`);
    return 1;
  }
  // Object bodies and results (up to 64 MiB each for a vPool's SCOs) come from one pool, so the
  // proxy reuses its memory instead of mapping fresh pages for every object.
  const buffers = new BufferPool({ sizeBytesMin: PROXY_POOLED_BUFFER_SIZE_BYTES_MIN, freeBytesMax: PROXY_POOLED_BUFFERS_FREE_BYTES_MAX });
  const client = await AlbaClient.open(options.backendDirectory, {
    outputBuffers: buffers,
    connect: (record: AsdRecord) => new AsdClient(record.host, record.port),
    logger, ...(options.clientSettings === undefined ? {} : { settings: options.clientSettings }),
  });
  // Maintenance runs inside the proxy, the one process that owns the metadata and whose manifest
  // cache must see the fragments maintenance moves (alba/docs/maintenance.md).
  const maintenance = new AlbaMaintenance({
    metadata: client.metadata, pool: client.pool, logger,
    ...(options.maintenanceSettings === undefined ? {} : { settings: options.maintenanceSettings }),
  });
  const maintenanceRuns = new MaintenanceRuns(maintenance, { logger });
  const extraRoutes = [...maintenanceProxyRoutes(maintenanceRuns), ...(options.extraRoutes ?? [])];
  let server;
  try {
    server = await startProxyServer({
      api: client, host: options.host, port: options.port, logger, extraRoutes,
      localSocketPath: path.join(options.backendDirectory, PROXY_LOCAL_SOCKET_FILE_NAME), buffers,
    });
  } catch (error) {
    process.stderr.write(`ovs: the Alba proxy cannot listen on ${options.host}:${options.port}: ${error instanceof Error ? error.message : String(error)}\n`);
    await client.close();
    return 1;
  }
  const asds = client.pool.statuses();
  logger.info({ url: server.url, asds: asds.length, up: asds.filter((asd) => asd.health === "up").length }, "Alba proxy ready");
  process.stdout.write(`Alba proxy listening on ${server.url}\n`);

  const signal = await stopSignal;
  logger.info({ signal }, "Alba proxy stopping");
  setTimeout(() => {
    logger.fatal({ deadlineMs: PROXY_SHUTDOWN_DEADLINE_MS }, "shutdown deadline passed: exiting");
    process.exit(1);
  }, PROXY_SHUTDOWN_DEADLINE_MS).unref();
  await server.close();
  await maintenanceRuns.idle();
  await client.close();
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  logger.info("Alba proxy stopped");
  return 0;
}

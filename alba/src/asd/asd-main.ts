// The ASD daemon (`ovs alba asd run`): opens the store of one directory, serves it over HTTP, prints
// one ready line on stdout, and on SIGINT/SIGTERM stops accepting, finishes the batches in flight,
// closes SQLite and returns exit code 0. Logs (pino, JSON) go to stderr so stdout stays parseable.
import path from "node:path";
import pino from "pino";
import { AsdServer } from "./asd-server.ts";
import { ASD_CRASH_POINTS, AsdStore, type AsdCrashPoint } from "./asd-store.ts";

export interface AsdDaemonOptions {
  directory: string;
  host: string;
  port: number;
  nodeId: string;
  capacityBytes?: number;
}

/** The Unix socket in the ASD's directory that clients on this host use (alba/docs/asd-protocol.md). */
export const ASD_LOCAL_SOCKET_FILE_NAME = "asd.sock";

/** Environment variable for fault tests: SIGKILL the daemon at this point of a group commit. */
export const ASD_CRASH_AT_VARIABLE = "OVS_ASD_CRASH_AT";

export async function runAsdDaemon(options: AsdDaemonOptions): Promise<number> {
  const logger = pino({ name: "asd", level: process.env.OVS_LOG_LEVEL ?? "info", base: { pid: process.pid } },
    pino.destination({ dest: 2, sync: true }));
  const crashAtText = process.env[ASD_CRASH_AT_VARIABLE];
  let crashAt: AsdCrashPoint | undefined;
  if (crashAtText !== undefined && crashAtText !== "") {
    if (!(ASD_CRASH_POINTS as readonly string[]).includes(crashAtText)) {
      process.stderr.write(`ovs: ${ASD_CRASH_AT_VARIABLE} must be one of ${ASD_CRASH_POINTS.join(", ")}\n`);
      return 2;
    }
    crashAt = crashAtText as AsdCrashPoint;
  }

  // Signals that arrive while starting up are honoured once the daemon is up.
  let stopRequested: (signal: string) => void = () => undefined;
  const stopSignal = new Promise<string>((resolve) => { stopRequested = resolve; });
  const onSignal = (signal: NodeJS.Signals): void => stopRequested(signal);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  let store: AsdStore;
  try {
    store = await AsdStore.open({
      directory: options.directory, nodeId: options.nodeId, logger,
      ...(options.capacityBytes === undefined ? {} : { capacityBytes: options.capacityBytes }),
      ...(crashAt === undefined ? {} : { crashAt }),
    });
  } catch (error) {
    logger.error({ err: error, directory: options.directory }, "cannot open the ASD directory");
    process.stderr.write(`ovs: cannot open ASD directory ${options.directory}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  process.title = `ovs-asd ${store.asdId}`;

  const server = new AsdServer(store, { logger });
  let port: number;
  try {
    port = (await server.listen(options.host, options.port)).port;
  } catch (error) {
    logger.error({ err: error }, "cannot listen");
    process.stderr.write(`ovs: ASD cannot listen on ${options.host}:${options.port}: ${error instanceof Error ? error.message : String(error)}\n`);
    await store.close();
    return 1;
  }
  let localSocketPath: string | undefined = path.join(options.directory, ASD_LOCAL_SOCKET_FILE_NAME);
  try {
    if (!(await server.listenLocal(localSocketPath))) localSocketPath = undefined;
  } catch (error) {
    // TCP works; clients on this host just do not get the faster path.
    logger.warn({ err: error, localSocketPath }, "cannot listen on the local socket: serving TCP only");
    localSocketPath = undefined;
  }
  logger.info({ host: options.host, port, localSocketPath, nodeId: store.nodeId, capacityBytes: store.capacityBytes, crashAt }, "ASD ready");
  process.stdout.write(`ASD ${store.asdId} node ${store.nodeId} listening on ${options.host}:${port}\n`);

  const signal = await stopSignal;
  logger.info({ signal }, "ASD stopping: finishing requests in flight");
  await server.close();
  await store.close();
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  logger.info("ASD stopped");
  return 0;
}

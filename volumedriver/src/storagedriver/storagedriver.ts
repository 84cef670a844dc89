// The StorageDriver process: hosts the vDisks of one vPool, serves them over NBD (one export per
// running vDisk and one read-only export per snapshot) and iSCSI (the vPool's target, one LUN per
// running vDisk) and serves their management API on loopback.
// Lifecycle: open the backend stack, open the vPool (which discovers the vDisks already in the
// backend), start the NBD and iSCSI servers, listen, announce; on SIGINT, SIGTERM or loss of the
// parent's IPC channel, close the NBD and iSCSI servers first (no new writes; in-flight requests
// finish) and the snapshot views NBD had open, stop accepting management requests and tasks, close the vPool (flush, seal,
// upload; bounded) and exit; a scrub still running is abandoned with the process. A second signal
// while stopping is ignored: stopping is already under way and is bounded by SHUTDOWN_DEADLINE_MS.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { isIP } from "node:net";
import type { FastifyInstance } from "fastify";
import { pino, type Logger } from "pino";
import { openVPool } from "../engine/vpool.ts";
import type { VPool } from "../engine/vpool-types.ts";
import { IscsiTargetMap, startIscsiServer } from "../frontends/iscsi/iscsi-server.ts";
import type { IscsiServer } from "../frontends/iscsi/iscsi-types.ts";
import { startNbdServer } from "../frontends/nbd/nbd-server.ts";
import type { NbdServer } from "../frontends/nbd/nbd-types.ts";
import { openBackend, summarizeNamespaceStats, type OpenedBackend } from "./backend-opener.ts";
import { describeBackendSpec } from "./backend-spec.ts";
import type { IscsiFrontendConfig, NbdFrontendConfig, StorageDriverConfig } from "./config.ts";
import { VpoolIscsiTarget } from "./iscsi-luns.ts";
import { buildManagementApi, createTaskRegistry } from "./management-api.ts";
import { createStorageDriverMetrics } from "./metrics.ts";
import { vpoolExportRegistry, type VPoolExportRegistry } from "./nbd-exports.ts";
import type { TaskRegistry } from "./task-registry.ts";

/** How long the vPool may take to flush and upload on shutdown. */
export const VPOOL_CLOSE_TIMEOUT_MS = 25_000;
/** The process exits by this time after the stop request, whatever happens. */
export const SHUTDOWN_DEADLINE_MS = 29_000;
/** Time kept after the vPool's close for closing the backend and exiting before the deadline. */
const SHUTDOWN_MARGIN_MS = 2_000;

/** Messages to the parent process (`ovs up`) over the IPC channel, when there is one. */
export type StorageDriverMessage =
  | { type: "ready"; vpool: string; url: string; pid: number; vdiskCount: number; nbdUrl?: string; iscsiUrl?: string }
  | { type: "stopping"; vpool: string; reason: string };

export function createStorageDriverLogger(config: StorageDriverConfig): Logger {
  if (config.logFile !== undefined) {
    mkdirSync(path.dirname(config.logFile), { recursive: true });
  }
  const destination = pino.destination({ dest: config.logFile ?? 2, sync: true, mkdir: true });
  return pino({
    name: "storagedriver",
    level: config.logLevel,
    base: { pid: process.pid, vpool: config.vpool },
    // Backends that need credentials will carry them under these names; never let them reach a log.
    redact: ["req.headers.authorization", "*.secretAccessKey", "*.password", "*.token", "*.credentials", "*.secret"],
  }, destination);
}

function urlOf(host: string, port: number, scheme = "http"): string {
  return `${scheme}://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/** nbds:// when plain connections are refused (libnbd's URI scheme for TLS), nbd:// otherwise. */
export function nbdUrlOf(host: string, port: number, tlsMode: string | undefined): string {
  return urlOf(host, port, tlsMode === "require" ? "nbds" : "nbd");
}

/** iscsi://HOST:PORT/TARGET, libiscsi's URL of a target; append /LUN for one logical unit. */
export function iscsiUrlOf(host: string, port: number, targetName: string): string {
  return `${urlOf(host, port, "iscsi")}/${targetName}`;
}

const LOOPBACK_HOSTS = ["127.0.0.1", "::1", "localhost"];

function sendToParent(message: StorageDriverMessage): void {
  if (process.send !== undefined && process.connected) {
    process.send(message);
  }
}

/**
 * Runs the StorageDriver until it is told to stop; resolves with the exit code. Writes the
 * "management API on" line to stdout once it serves requests.
 */
export async function runStorageDriver(config: StorageDriverConfig): Promise<number> {
  const logger = createStorageDriverLogger(config);
  const backendDescription = describeBackendSpec(config.backend);
  let backend: OpenedBackend | undefined;
  let vpool: VPool | undefined;
  let app: FastifyInstance | undefined;
  let nbd: NbdServer | undefined;
  let exports: VPoolExportRegistry | undefined;
  let iscsi: IscsiServer | undefined;
  let iscsiTarget: VpoolIscsiTarget | undefined;
  const tasks = createTaskRegistry();
  let stopReason: string | undefined;
  let resolveStopRequested: () => void = () => {};
  const stopRequested = new Promise<void>((resolve) => { resolveStopRequested = resolve; });

  const requestStop = (reason: string): void => {
    if (stopReason !== undefined) {
      logger.warn({ reason }, "already stopping: the vPool is flushing and uploading; the process exits within the shutdown deadline");
      return;
    }
    stopReason = reason;
    logger.info({ reason }, "stopping");
    sendToParent({ type: "stopping", vpool: config.vpool, reason });
    // Whatever happens from here on, the process ends in bounded time.
    setTimeout(() => {
      logger.fatal({ deadlineMs: SHUTDOWN_DEADLINE_MS }, "shutdown deadline passed: exiting without a clean close; the write buffer is replayed on the next start");
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    resolveStopRequested();
  };
  const onSignal = (signal: NodeJS.Signals): void => requestStop(signal);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // Started by `ovs up` with an IPC channel: if that parent dies, nobody will stop us; stop now.
  process.on("disconnect", () => requestStop("parent process gone"));
  // A bug: crash loudly, but leave its trace in the log file first (stderr may be a file nobody reads).
  const crash = (error: unknown): void => {
    logger.fatal({ err: error }, "uncaught error: this is a bug; the write buffer is replayed on the next start");
    process.exit(1);
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);

  writePidFile(config.pidFile);
  try {
    if (!LOOPBACK_HOSTS.includes(config.managementApi.host)) {
      logger.warn({ host: config.managementApi.host }, "the management API has no authentication: serve it on loopback only");
    }
    logger.info({ directory: config.directory, backend: backendDescription, settings: config.settings }, "opening vPool");
    backend = openBackend(config.backend, config.codec);
    vpool = await openVPool({ ...config.settings, name: config.vpool, directory: config.directory, backend: backend.store, logger: logger.child({ component: "engine" }) });
    const vdiskCount = vpool.listVolumes().length;
    logger.info({ vdiskCount }, "vPool open");
    if (stopReason === undefined && config.nbd !== undefined) {
      exports = vpoolExportRegistry(vpool, logger.child({ component: "nbd-exports" }));
      nbd = await startNbd(config.nbd, exports, logger);
    }
    if (stopReason === undefined && config.iscsi !== undefined) {
      iscsiTarget = await VpoolIscsiTarget.open({
        vpool, directory: config.directory, logger: logger.child({ component: "iscsi-luns" }),
        ...(config.iscsi.chap === undefined ? {} : { chap: config.iscsi.chap }),
        ...(config.iscsi.allowedInitiators === undefined ? {} : { allowedInitiators: config.iscsi.allowedInitiators }),
      });
      iscsi = await startIscsi(config.iscsi, iscsiTarget, logger);
    }
    const iscsiUrl = iscsi === undefined || iscsiTarget === undefined ? undefined : iscsiUrlOf(iscsi.host, iscsi.port, iscsiTarget.name);
    if (stopReason === undefined) {
      const instrumented = backend.instrumented;
      const lunTarget = iscsiTarget;
      app = buildManagementApi({
        vpool, backendDescription, tasks, logger: logger.child({ component: "management-api" }),
        backendStats: (namespace) => summarizeNamespaceStats(instrumented, namespace),
        metrics: createStorageDriverMetrics({ vpool, instrumented }),
        ...(lunTarget === undefined || iscsiUrl === undefined ? {} : {
          afterChange: () => lunTarget.sync(),
          iscsiLunOf: (name: string) => {
            const lun = lunTarget.lunOf(name);
            return lun === undefined ? undefined : { target: lunTarget.name, lun, url: `${iscsiUrl}/${lun}` };
          },
        }),
      });
      await app.listen({ host: config.managementApi.host, port: config.managementApi.port });
      const address = app.server.address();
      const port = typeof address === "object" && address !== null ? address.port : config.managementApi.port;
      const url = urlOf(config.managementApi.host, port);
      process.stdout.write(`storagedriver ${config.vpool} management API on ${url} (${vdiskCount} vDisks, backend ${backendDescription})\n`);
      logger.info({ url }, "management API listening");
      const nbdUrl = nbd === undefined ? undefined : nbdUrlOf(nbd.host, nbd.port, config.nbd?.tls?.mode);
      if (nbdUrl !== undefined) {
        const names = vpool.listVolumes().filter((info) => info.state === "running").map((info) => info.name);
        process.stdout.write(`storagedriver ${config.vpool} NBD on ${nbdUrl} (exports: ${names.length === 0 ? "none yet; one per vDisk" : names.join(", ")})\n`);
      }
      if (iscsiUrl !== undefined && iscsiTarget !== undefined) {
        const luns = iscsiTarget.servedLuns().map((served) => `${served.vdisk} ${served.lun}${served.writeProtected ? " (write protected)" : ""}`);
        process.stdout.write(`storagedriver ${config.vpool} iSCSI on ${iscsiUrl} (LUNs: ${luns.length === 0 ? "none yet; one per vDisk" : luns.join(", ")})\n`);
      }
      sendToParent({
        type: "ready", vpool: config.vpool, url, pid: process.pid, vdiskCount,
        ...(nbdUrl === undefined ? {} : { nbdUrl }), ...(iscsiUrl === undefined ? {} : { iscsiUrl }),
      });
    }
  } catch (error) {
    const message = startupErrorMessage(error, config);
    logger.error({ err: error }, message);
    process.stderr.write(`storagedriver ${config.vpool}: ${message}\n`);
    await stop(logger, { nbd, exports, iscsi, iscsiTarget, app, tasks, vpool, backend }).catch(() => 1);
    removePidFile(config.pidFile);
    return 1;
  }
  await stopRequested;
  try {
    const exitCode = await stop(logger, { nbd, exports, iscsi, iscsiTarget, app, tasks, vpool, backend });
    if (exitCode === 0) {
      process.stdout.write(`storagedriver ${config.vpool} stopped cleanly\n`);
    }
    return exitCode;
  } finally {
    removePidFile(config.pidFile);
  }
}

/** Starts the NBD server over the vPool's running vDisks; a busy port or a bad address says so. */
async function startNbd(settings: NbdFrontendConfig, exports: VPoolExportRegistry, logger: Logger): Promise<NbdServer> {
  if (!LOOPBACK_HOSTS.includes(settings.host) && settings.tls?.mode !== "require") {
    logger.warn({ host: settings.host }, "NBD has no authentication: anyone who reaches this address can read and write every vDisk; use TLS (mode require) or keep it on loopback");
  }
  try {
    // The server logs under component "nbd" itself.
    return await startNbdServer(exports, { ...settings, logger });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    const where = `${settings.host}:${settings.port}`;
    const reason = code === "EADDRINUSE" ? `${where} is in use; stop the process using it or choose another NBD port`
      : code === "EADDRNOTAVAIL" ? `${settings.host} is not an address of this host`
        : `${error instanceof Error ? error.message : String(error)}`;
    throw new Error(`cannot serve NBD: ${reason}`, { cause: error });
  }
}

/** Starts the iSCSI server over the vPool's target; a busy port or a bad address says so. */
async function startIscsi(settings: IscsiFrontendConfig, target: VpoolIscsiTarget, logger: Logger): Promise<IscsiServer> {
  if (!LOOPBACK_HOSTS.includes(settings.host) && settings.chap === undefined && settings.allowedInitiators === undefined) {
    logger.warn({ host: settings.host }, "iSCSI without CHAP or an initiator ACL: anyone who reaches this address can read and write every vDisk; set iscsi.chap or keep it on loopback");
  }
  const registry = new IscsiTargetMap();
  registry.add(target.entry);
  const { chap: _chap, allowedInitiators: _allowedInitiators, ...serverSettings } = settings;
  try {
    // The server logs under component "iscsi" itself.
    return await startIscsiServer(registry, { ...serverSettings, logger });
  } catch (error) {
    await target.close();
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    const where = `${settings.host}:${settings.port}`;
    const reason = code === "EADDRINUSE" ? `${where} is in use; stop the process using it (another iSCSI target such as tgtd?) or choose another iSCSI port`
      : code === "EADDRNOTAVAIL" ? `${settings.host} is not an address of this host`
        : code === "EACCES" ? `${where} needs privileges this process lacks; choose a port above 1023`
          : `${error instanceof Error ? error.message : String(error)}`;
    throw new Error(`cannot serve iSCSI: ${reason}`, { cause: error });
  }
}

/** What runs, in the order it is stopped. */
interface Running {
  nbd: NbdServer | undefined;
  exports: VPoolExportRegistry | undefined;
  iscsi: IscsiServer | undefined;
  iscsiTarget: VpoolIscsiTarget | undefined;
  app: FastifyInstance | undefined;
  tasks: TaskRegistry;
  vpool: VPool | undefined;
  backend: OpenedBackend | undefined;
}

async function stop(logger: Logger, { nbd, exports, iscsi, iscsiTarget, app, tasks, vpool, backend }: Running): Promise<number> {
  const stopStartedMs = Date.now();
  let exitCode = 0;
  // The frontends first, together: their clients write; once they are closed no new write can reach
  // the vPool we flush next. Each drains its in-flight requests within its own bound (iSCSI:
  // SESSION_DRAIN_TIMEOUT_MS), well inside the deadline.
  const closeNbd = async (): Promise<void> => {
    try {
      await nbd?.close();
      // Its connections have released their snapshot views; close any the engine still has open.
      await exports?.close();
    } catch (error) {
      logger.warn({ err: error }, "closing the NBD server failed");
    }
  };
  const closeIscsi = async (): Promise<void> => {
    try {
      await iscsi?.close();
      await iscsiTarget?.close();
    } catch (error) {
      logger.warn({ err: error }, "closing the iSCSI server failed");
    }
  };
  await Promise.all([closeNbd(), closeIscsi()]);
  // Then stop accepting management requests (in flight ones finish, new ones get 503) and tasks
  // (waiting ones fail; a running scrub is abandoned when the process exits).
  await app?.close();
  tasks.close();
  if (vpool !== undefined) {
    try {
      // The frontends may have spent seconds draining their connections: the vPool gets what is left
      // before the deadline, so its close (and its log of what stays local) finishes in time.
      const leftMs = SHUTDOWN_DEADLINE_MS - SHUTDOWN_MARGIN_MS - (Date.now() - stopStartedMs);
      await vpool.close({ timeoutMs: Math.max(1_000, Math.min(VPOOL_CLOSE_TIMEOUT_MS, leftMs)) });
      logger.info("vPool closed cleanly: everything is on the backend");
    } catch (error) {
      exitCode = 1;
      logger.error({ err: error }, "vPool did not close cleanly: data not yet on the backend stays in the write buffer and is uploaded on the next start");
    }
  }
  try {
    await backend?.store.close();
  } catch (error) {
    logger.warn({ err: error }, "closing the backend failed");
  }
  return exitCode;
}

function startupErrorMessage(error: unknown, config: StorageDriverConfig): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const { host, port } = config.managementApi;
  if (code === "EADDRINUSE") {
    return `cannot serve the management API: ${host}:${port} is in use; stop the process using it or choose another port`;
  }
  if (code === "EADDRNOTAVAIL") {
    return `cannot serve the management API: ${host} is not an address of this host`;
  }
  if (error instanceof Error && (error.message.startsWith("cannot serve NBD") || error.message.startsWith("cannot serve iSCSI"))) {
    return error.message;
  }
  return `cannot start: ${error instanceof Error ? error.message : String(error)}`;
}

function writePidFile(pidFile: string | undefined): void {
  if (pidFile !== undefined) {
    mkdirSync(path.dirname(pidFile), { recursive: true });
    writeFileSync(pidFile, `${process.pid}\n`);
  }
}

function removePidFile(pidFile: string | undefined): void {
  if (pidFile !== undefined) {
    rmSync(pidFile, { force: true });
  }
}

// `ovs up`: a complete single-host cluster under one data directory, on loopback. It creates the
// layout on the first start, runs the managed Alba backend and the StorageDriver of each vPool
// (config.json's, then those created through the API) under supervisors, records the cluster in the
// model, serves the framework API, creates the demo vDisk once, and on SIGINT/SIGTERM stops
// everything in order (the StorageDrivers flush and upload) within 30 s. Layout of DIR:
//   config.json                  cluster config (paths relative to DIR)
//   ovs.pid                      lock: one `ovs up` per data directory
//   alba/                        the managed Alba backend (default): asd-1..3/, backend/ (metadata)
//   backend/                     the local object store (one namespace per vDisk), with --backend local
//   vpools/<vpool>/              the vPool's local data: write buffer, metadata
//   storagedrivers/<vpool>.json  the StorageDriver config, written on every start
//   storagedrivers/<vpool>.pid   the StorageDriver's PID while it runs
//   framework.db                 the model: inventory, tasks, schedule runs, users and API clients (scrypt hashes)
//   admin-credentials.json       the admin user's password, mode 0600, written on the first start
//   logs/                        framework.log, storagedriver-<vpool>.log, asd-N.log, alba-proxy.log
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { createServer, isIP } from "node:net";
import path from "node:path";
import { pino, type Logger } from "pino";
import { ProxyClient } from "../../../alba/src/proxy/proxy-client.ts";
import { formatSizeBytes, GIB } from "../../../volumedriver/src/storagedriver/size.ts";
import { buildFrameworkApi } from "../api/framework-api.ts";
import { createFrameworkMetrics } from "../api/framework-metrics.ts";
import { FrameworkTasks } from "../api/framework-tasks.ts";
import type { StorageDriverClient } from "../api/storagedriver-client.ts";
import { StorageDriverRouter } from "../api/storagedriver-router.ts";
import { AuthStore } from "../auth/auth-store.ts";
import { TokenIssuer } from "../auth/tokens.ts";
import { FrameworkModel } from "../model/framework-model.ts";
import { clusterJobs, parseVpoolJobName, vpoolJob, vpoolJobName } from "../scheduler/cluster-jobs.ts";
import { VPOOL_SCHEDULED_JOBS, type VPoolSchedules } from "../model/vpool-repository.ts";
import { Scheduler } from "../scheduler/scheduler.ts";
import { ManagedAlba } from "./alba-service.ts";
import { applyOverrides, loadOrCreateClusterConfig, saveClusterConfig, type ClusterConfig, type ClusterConfigOverrides, type ListenAddress } from "./cluster-config.ts";
import { type ListedVdisk, MANAGED_ALBA_BACKEND_NAME, modelOnlyVPools, reconcileVdisks, recordAlbaInventory, recordInventory, storageRouterName } from "./inventory.ts";
import { acquirePidFile } from "./pid-file.ts";
import { describeExit, type ChildExit } from "./process-supervisor.ts";
import { STORAGEDRIVER_STOP_TIMEOUT_MS, type Output } from "./storagedriver-service.ts";
import { freePortsOn, VPoolControl } from "./vpool-control.ts";
import { VPoolRuntimes, vpoolFiles, type VPoolLaunch } from "./vpool-runtimes.ts";

export const DEMO_VDISK_NAME = "demo";
export const ADMIN_USER_NAME = "admin";
/** DIR/admin-credentials.json: {"username", "password"} of the admin user, mode 0600, written on the first start. */
export const ADMIN_CREDENTIALS_FILE_NAME = "admin-credentials.json";
export const DEMO_VDISK_SIZE_BYTES = 10 * GIB;

export interface UpOptions extends ClusterConfigOverrides {
  dataDirectory: string;
}

function urlOf(address: ListenAddress): string {
  return `http://${isIP(address.host) === 6 ? `[${address.host}]` : address.host}:${address.port}`;
}

function isLoopback(host: string): boolean {
  return ["127.0.0.1", "::1", "localhost"].includes(host);
}

/** Runs the cluster until SIGINT/SIGTERM; resolves with the exit code. */
export async function runUp(options: UpOptions, output: Output): Promise<number> {
  const dataDirectory = path.resolve(options.dataDirectory);
  await mkdir(dataDirectory, { recursive: true });
  const releasePidFile = acquirePidFile(path.join(dataDirectory, "ovs.pid"), "another `ovs up`");
  // Stop requests may come at any point from here on; they are served once startup has settled.
  const stop: StopRequest = { signal: undefined, requested: Promise.resolve() };
  let wakeUp: () => void = () => {};
  stop.requested = new Promise<void>((resolve) => { wakeUp = resolve; });
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stop.signal !== undefined) {
      output.out(`ovs already stopping: waiting for the storagedriver to flush and upload (at most ${Math.round(STORAGEDRIVER_STOP_TIMEOUT_MS / 1000)} s)`);
      return;
    }
    stop.signal = signal;
    wakeUp();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await runCluster(dataDirectory, options, output, stop);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    releasePidFile();
  }
}

interface StopRequest {
  /** The signal that asked for the stop, once one did. */
  signal: NodeJS.Signals | undefined;
  requested: Promise<void>;
}

async function runCluster(dataDirectory: string, options: UpOptions, output: Output, stop: StopRequest): Promise<number> {
  const loaded = await loadOrCreateClusterConfig(dataDirectory, new Date().toISOString());
  let config = applyOverrides(loaded.config, options);
  if (loaded.created) config = await withFreeAlbaPorts(config);
  await saveClusterConfig(dataDirectory, config);
  const vpool = config.vpools[0];
  const frameworkLog = path.join(dataDirectory, "logs", "framework.log");
  await mkdir(path.dirname(frameworkLog), { recursive: true });
  if (vpool.backend.type === "local") await mkdir(path.resolve(dataDirectory, vpool.backend.path), { recursive: true });

  const logger = pino({ name: "framework", base: { pid: process.pid } }, pino.destination({ dest: frameworkLog, sync: true, mkdir: true }));
  logger.info({ dataDirectory, created: loaded.created }, "ovs up starting");
  output.out(`ovs data directory ${dataDirectory}${loaded.created ? " (new cluster)" : ""}`);
  // The cluster's inventory, users, API clients, tasks and schedule runs (SQLite, mode 0600).
  const model = FrameworkModel.open(path.join(dataDirectory, "framework.db"));
  try {
    return await runWithModel(dataDirectory, config, model, logger, output, stop);
  } finally {
    model.close();
  }
}

async function runWithModel(dataDirectory: string, initialConfig: ClusterConfig, model: FrameworkModel, logger: Logger, output: Output, stop: StopRequest): Promise<number> {
  const config = initialConfig;
  const vpool = config.vpools[0];
  const logDirectory = path.join(dataDirectory, "logs");
  const storageRouter = storageRouterName();
  const interrupted = new FrameworkTasks(model.tasks).failInterrupted();
  if (interrupted > 0) logger.warn({ interrupted }, "tasks left unfinished by the previous ovs up marked failed");

  // The managed Alba backend comes up before the StorageDrivers that store their vDisks on it.
  let alba: ManagedAlba | undefined;
  if (vpool.backend.type === "managed-alba") {
    alba = new ManagedAlba({ entry: vpool.backend, dataDirectory, logDirectory, output, logger: logger.child({ component: "alba" }) });
    try {
      await alba.start();
    } catch (error) {
      output.err(`ovs cannot start the Alba backend: ${(error as Error).message}; see ${logDirectory}/asd-*.log and alba-proxy.log`);
      return 1;
    }
  }
  const stopAlba = async (): Promise<void> => {
    await alba?.stop();
  };

  const runtimes = new VPoolRuntimes({ dataDirectory, output, logger });
  const primaryLog = vpoolFiles(dataDirectory, vpool.name).log;
  let started;
  try {
    started = await runtimes.start(primaryLaunch(config, dataDirectory), stop.requested);
  } catch (error) {
    await stopAlba();
    throw error;
  }
  if (started.outcome !== "ready") await stopAlba();
  if (started.outcome === "abandoned") {
    return 0;
  }
  if (started.outcome === "failed") {
    output.err(`storagedriver ${vpool.name} failed to start: ${started.reason}; the end of ${primaryLog}:`);
    for (const line of started.logLines) {
      output.err(`  ${line}`);
    }
    return 1;
  }
  const primary = runtimes.get(vpool.name);
  if (primary === undefined) throw new Error(`the StorageDriver of vPool ${vpool.name} started but is not listed (a bug)`);
  output.out(`storagedriver ${vpool.name} management API on ${started.message.url} (pid ${started.message.pid}, log ${primaryLog})`);

  const router = new StorageDriverRouter(primary.client);
  // The model mirrors the vDisks each StorageDriver lists (the API, the dashboard and the jobs list them).
  router.onVdisksListed = (name, vdisks) => {
    try {
      reconcileVdisks(model, name, vdisks as ListedVdisk[], logger);
    } catch (error) {
      logger.warn({ vpool: name, err: error }, "mirroring the vDisks in the model failed");
    }
  };
  const frameworkTasks = new FrameworkTasks(model.tasks);
  // config.json as last saved (the first start's steps mark it done).
  let storedConfig = config;
  const vpools = new VPoolControl({
    model, runtimes, router, tasks: frameworkTasks, config, storageRouter, stopRequested: stop.requested, logger: logger.child({ component: "vpools" }),
    saveConfig: () => saveClusterConfig(dataDirectory, storedConfig),
    onSchedulesChanged: (name, schedules) => syncVpoolJobs(name, schedules),
  });
  try {
    recordInventory({
      model, config, dataDirectory, storageRouter,
      ports: { management: vpool.storagedriver.port, nbd: config.frontends.nbd.port, iscsi: config.frontends.iscsi.port },
    });
    if (alba !== undefined) await recordManagedAlba(model, alba, logger);
  } catch (error) {
    // The cluster runs without it; the API shows what the model holds.
    output.err(`ovs could not record the cluster in ${path.join(dataDirectory, "framework.db")}: ${(error as Error).message}`);
    logger.error({ err: error }, "recording the inventory failed");
  }
  // vPools created through the API (kept in the model), each with its own ports.
  await Promise.all(modelOnlyVPools(model, config, storageRouter).map(async (name) => {
    try {
      await vpools.startRecorded(name);
      const running = runtimes.get(name);
      output.out(`storagedriver ${name} management API on ${running === undefined ? "?" : urlOf(running.launch.managementApi)} (vPool created through the API)`);
    } catch (error) {
      output.err(`storagedriver ${name} failed to start: ${(error as Error).message}`);
    }
  }));

  await router.listVdisks().catch((error: unknown) => logger.warn({ err: error }, "listing the vDisks at start failed"));

  const metrics = createFrameworkMetrics({ storagedrivers: () => runtimes.list().map((running) => running.service), ...(alba === undefined ? {} : { alba }) });
  // Periodic jobs: hourly snapshots with retention, nightly scrubs, Alba maintenance; runs recorded in the model.
  const scheduler = new Scheduler({
    history: model.scheduleRuns,
    onRunFinished: (record) => (record.outcome === "failed" ? logger.error({ run: record }, "scheduled job failed") : logger.info({ run: record }, "scheduled job finished")),
  });
  const vpoolSchedules = (name: string): VPoolSchedules => {
    try {
      return model.vpools.get(name).schedules;
    } catch {
      return {};
    }
  };
  for (const job of clusterJobs({ storagedriver: router, ...(alba === undefined ? {} : { albaProxyUrl: alba.proxyUrl }), stored: storedSchedules(model, config), vpoolSchedules })) {
    scheduler.add(job);
  }
  // A vPool's own jobs (snapshots@VPOOL, scrub@VPOOL) as its schedules in the model say.
  const syncVpoolJobs = (name: string, schedules: VPoolSchedules): void => {
    for (const job of VPOOL_SCHEDULED_JOBS) {
      const jobName = vpoolJobName(job, name);
      const spec = schedules[job];
      const exists = scheduler.list().some((known) => known.name === jobName);
      if (spec === undefined || spec === null) scheduler.remove(jobName);
      // Updated in place, so a run in progress is still known and the next cannot overlap it.
      else if (exists) scheduler.update(jobName, { schedule: spec, enabled: true });
      else scheduler.add(vpoolJob(job, name, spec, router));
    }
  };
  for (const recorded of model.vpools.list()) syncVpoolJobs(recorded.name, recorded.schedules);
  // Users, API clients and tokens. The first start makes the admin user and leaves its password in a
  // file only the owner can read.
  const authStore = AuthStore.over(model);
  const adminCredentialsFile = path.join(dataDirectory, ADMIN_CREDENTIALS_FILE_NAME);
  const adminPassword = await authStore.ensureAdmin(ADMIN_USER_NAME);
  if (adminPassword !== undefined) {
    await writeFile(adminCredentialsFile, `${JSON.stringify({ username: ADMIN_USER_NAME, password: adminPassword }, null, 2)}\n`, { mode: 0o600 });
    await chmod(adminCredentialsFile, 0o600);
  }
  const app = buildFrameworkApi({
    auth: { store: authStore, tokens: new TokenIssuer({ grants: model.tokenGrants }) },
    storagedriver: router, logger: logger.child({ component: "api" }), metrics, backendType: vpool.backend.type, ...(alba === undefined ? {} : { alba }),
    scheduler,
    onScheduleChange: async (job) => {
      const own = parseVpoolJobName(job.name);
      if (own !== undefined) {
        // A vPool's own job is kept with the vPool; disabled means off for it (null).
        const schedules = { ...vpoolSchedules(own.vpool), [own.job]: job.enabled ? job.schedule : null };
        model.vpools.update(own.vpool, { schedules });
        return;
      }
      model.transaction(() => {
        if (model.schedules.list().some((known) => known.job === job.name)) model.schedules.update(job.name, { spec: job.schedule, enabled: job.enabled });
        else model.schedules.create({ job: job.name, spec: job.schedule, enabled: job.enabled });
      });
    },
    model, vpools, frameworkTasks, ...(alba === undefined ? {} : { managedBackend: MANAGED_ALBA_BACKEND_NAME }),
  });
  const stopStorageDrivers = async (): Promise<ChildExit | undefined> => {
    await frameworkTasks.settle();
    const exits = await runtimes.stopAll();
    return exits.get(vpool.name);
  };
  try {
    await app.listen({ host: config.api.host, port: config.api.port });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "EADDRINUSE"
      ? `${config.api.host}:${config.api.port} is in use (another ovs up?): stop that process or pass --api-port`
      : (error as Error).message;
    output.err(`ovs cannot serve the framework API: ${reason}`);
    await stopStorageDrivers();
    await stopAlba();
    return 1;
  }
  const apiUrl = urlOf(config.api);
  output.out(`framework API on ${apiUrl}/api (vDisks: ${apiUrl}/api/vdisks)`);
  output.out(adminPassword !== undefined
    ? `admin credentials in ${adminCredentialsFile} (mode 0600): \`npx ovs login\` uses them`
    : `admin credentials in ${adminCredentialsFile} (when you keep them there): \`npx ovs login\``);
  output.out(`dashboard on ${apiUrl}/`);
  output.out(`Prometheus metrics on ${apiUrl}/metrics (framework) and ${started.message.url}/metrics (storagedriver ${vpool.name})`);
  if (!isLoopback(config.api.host)) {
    output.err(`warning: the framework API listens on ${config.api.host} over plain HTTP: bearer tokens and passwords cross the network in the clear; keep it on loopback or put TLS in front`);
  }
  const nbd = config.frontends.nbd;
  const nbdUrl = started.message.nbdUrl;
  output.out(nbdUrl === undefined
    ? "NBD not served (the storagedriver reported no NBD address)"
    : `NBD on ${nbdUrl}/<vdisk>${nbd.tls === undefined ? "" : ` (TLS ${nbd.tls.mode === "require" ? "required" : "offered"}, certificate ${nbd.tls.certificateFile})`}`);
  if (!isLoopback(nbd.host) && nbd.tls?.mode !== "require") {
    output.err(`warning: NBD listens on ${nbd.host} without required TLS: anyone who reaches it can read and write every vDisk; pass --nbd-tls require with a certificate, or --nbd-host 127.0.0.1`);
  }
  const iscsi = config.frontends.iscsi;
  const iscsiUrl = started.message.iscsiUrl;
  output.out(iscsiUrl === undefined
    ? "iSCSI not served (the storagedriver reported no iSCSI address)"
    : `iSCSI on ${iscsiUrl}/<lun> (one LUN per vDisk; \`ovs vdisk show NAME\` tells its LUN)${iscsi.chap === undefined ? "" : " (CHAP required)"}`);
  if (!isLoopback(iscsi.host) && iscsi.chap === undefined && iscsi.allowedInitiators === undefined) {
    output.err(`warning: iSCSI listens on ${iscsi.host} without CHAP or an initiator ACL: anyone who reaches it can read and write every vDisk; set frontends.iscsi.chap in ${path.join(dataDirectory, "config.json")}, or pass --iscsi-host 127.0.0.1`);
  }

  if (!config.firstStartCompleted) {
    try {
      await firstStartSteps(router, output);
      storedConfig = { ...storedConfig, firstStartCompleted: true };
      await saveClusterConfig(dataDirectory, storedConfig);
    } catch (error) {
      // Not fatal: the cluster runs; the step is tried again on the next start.
      output.err(`ovs could not finish the first-start steps (${(error as Error).message}); they are tried again on the next start`);
    }
  }
  scheduler.start();
  output.out(`scheduled: ${scheduler.list().map((job) => `${job.name}${job.enabled ? ` (next ${job.nextRunAt})` : " (disabled)"}`).join(", ")}`);
  const apiFlag = config.api.port === 8500 && config.api.host === "127.0.0.1" ? "" : ` --api ${apiUrl}`;
  output.out(`ovs ready: try \`npx ovs login${apiFlag} --credentials ${adminCredentialsFile} && npx ovs vdisk ls${apiFlag}\`; Ctrl-C stops the cluster`);

  const gaveUpExit = await Promise.race([stop.requested.then(() => undefined), primary.service.gaveUp]);
  output.out(gaveUpExit === undefined
    ? `ovs stopping (${stop.signal}): the storagedrivers flush and upload their vDisks`
    : `ovs stopping: the storagedriver of ${vpool.name} could not be kept running`);
  await app.close();
  await scheduler.stop();
  const exit = await stopStorageDrivers();
  // After the StorageDrivers: they flushed and uploaded their vDisks to Alba on the way out.
  await stopAlba();
  const clean = gaveUpExit === undefined && (exit === undefined || exit.code === 0);
  logger.info({ exit, clean }, "ovs up stopped");
  if (clean) {
    output.out("ovs stopped cleanly");
    return 0;
  }
  if (exit !== undefined && gaveUpExit === undefined) {
    output.err(`storagedriver ${vpool.name} did not stop cleanly (${describeExit(exit)}): unflushed data stays in ${primary.files.directory} and is replayed on the next start; see ${primary.files.log}`);
  }
  return 1;
}

/** The demo vDisk, only on a cluster that has no vDisks at all (not one rebuilt from an existing backend). */
async function firstStartSteps(storagedriver: StorageDriverClient, output: Output): Promise<void> {
  const listed = await storagedriver.listVdisks();
  const vdisks = (listed.body as { vdisks?: Array<{ name: string }> } | undefined)?.vdisks;
  if (listed.statusCode !== 200 || vdisks === undefined) {
    throw new Error(`listing the vDisks failed with HTTP ${listed.statusCode}`);
  }
  if (vdisks.length > 0) {
    output.out(`found ${vdisks.length} vDisks on the backend (${vdisks.map((vdisk) => vdisk.name).join(", ")}): not creating the ${DEMO_VDISK_NAME} vDisk`);
    return;
  }
  const created = await storagedriver.createVdisk(DEMO_VDISK_NAME, DEMO_VDISK_SIZE_BYTES);
  if (created.statusCode !== 201) {
    throw new Error(`creating the ${DEMO_VDISK_NAME} vDisk failed with HTTP ${created.statusCode}: ${JSON.stringify(created.body)}`);
  }
  output.out(`created vDisk ${DEMO_VDISK_NAME} (${formatSizeBytes(DEMO_VDISK_SIZE_BYTES)})`);
}

/** How config.json's vPool is started: its backend as the StorageDriver opens it (a local directory, the managed Alba's proxy, or the spec as configured). */
function primaryLaunch(config: ClusterConfig, dataDirectory: string): VPoolLaunch {
  const vpool = config.vpools[0];
  const backend = vpool.backend;
  return {
    name: vpool.name,
    directory: path.resolve(dataDirectory, vpool.directory),
    backend: backend.type === "local" ? { type: "local", path: path.resolve(dataDirectory, backend.path) }
      : backend.type === "managed-alba" ? { type: "alba", proxyUrl: `http://${backend.proxy.host}:${backend.proxy.port}` }
        : backend,
    managementApi: vpool.storagedriver,
    nbd: config.frontends.nbd,
    iscsi: config.frontends.iscsi,
    settings: vpool.settings,
  };
}

/**
 * The schedules changed through the API, kept in the model; an older cluster's edits in config.json
 * count for the jobs the model has none for (the next edit moves them into the model).
 */
function storedSchedules(model: FrameworkModel, config: ClusterConfig): NonNullable<ClusterConfig["schedules"]> {
  const stored = { ...config.schedules };
  for (const schedule of model.schedules.list()) stored[schedule.job] = { schedule: schedule.spec, enabled: schedule.enabled };
  return stored;
}

/** The managed Alba's ASDs and presets, as its proxy reports them, into the model. */
async function recordManagedAlba(model: FrameworkModel, alba: ManagedAlba, logger: Logger): Promise<void> {
  const proxy = new ProxyClient(alba.proxyUrl);
  try {
    recordAlbaInventory(model, MANAGED_ALBA_BACKEND_NAME, await alba.asdStatuses(), await proxy.listPresets(), logger);
  } finally {
    await proxy.close().catch(() => undefined);
  }
}

/**
 * A new cluster's managed Alba takes the default ports when they are free, else free ones (another
 * cluster or service on this host); they are stored in config.json and kept from then on.
 */
async function withFreeAlbaPorts(config: ClusterConfig): Promise<ClusterConfig> {
  const backend = config.vpools[0].backend;
  if (backend.type !== "managed-alba") return config;
  const wanted = [backend.proxy.port, ...backend.asds.map((asd) => asd.port)];
  const free = await Promise.all(wanted.map((port) => portIsFree(backend.proxy.host, port)));
  if (free.every(Boolean)) return config;
  const chosen = await freePortsOn(backend.proxy.host, wanted.length);
  const updated = structuredClone(config);
  updated.vpools[0].backend = { ...backend, proxy: { ...backend.proxy, port: chosen[0] }, asds: backend.asds.map((asd, index) => ({ ...asd, port: chosen[index + 1] })) };
  return updated;
}

function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

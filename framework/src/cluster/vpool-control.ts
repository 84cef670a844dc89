// Creating, listing and deleting vPools on this host while `ovs up` runs (GET/POST/DELETE
// /api/vpools). A vPool created through the API is recorded in the model (with its StorageDriver and
// three free loopback ports: management, NBD, iSCSI), then its StorageDriver is started as a task;
// if it cannot come up, the records and files are removed again and the task says why, with the end
// of its log. Deleting stops the StorageDriver (it flushes first) and forgets the vPool; a vPool that
// holds vDisks is refused, and so is config.json's vPool (the host's first, which `ovs up` needs).
import { createServer } from "node:net";
import type { Logger } from "pino";
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import type { FrameworkTasks, FrameworkTaskView } from "../api/framework-tasks.ts";
import { fromModel } from "../api/model-http.ts";
import type { StorageDriverRouter } from "../api/storagedriver-router.ts";
import type { FrameworkModel } from "../model/framework-model.ts";
import { isModelError } from "../model/model-error.ts";
import type { VPool, VPoolInput, VPoolSchedules } from "../model/vpool-repository.ts";
import { LOOPBACK_HOST, type ClusterConfig } from "./cluster-config.ts";
import { launchOf, reconcileVdisks } from "./inventory.ts";
import { urlOf, type VPoolRuntimes } from "./vpool-runtimes.ts";

export type VPoolStatus = "starting" | "running" | "stopping" | "failed";

export interface VPoolView extends Omit<VPool, "encryption"> {
  /** Where the key comes from ({keyFile} or {keyEnv}); null: not encrypted. */
  encryption: VPool["encryption"];
  /** config.json's vPool: started first, gets vDisks that name no vPool, cannot be deleted. */
  primary: boolean;
  storagedrivers: Array<{
    storageRouter: string; managementPort: number; nbdPort: number; iscsiPort: number; status: VPoolStatus;
    managementUrl?: string; nbdUrl?: string; iscsiUrl?: string; reason?: string;
  }>;
}

/** POST /api/vpools: the model's vPool fields (sizes in bytes). */
export type CreateVPoolRequest = VPoolInput;

export interface VPoolControlOptions {
  model: FrameworkModel;
  runtimes: VPoolRuntimes;
  router: StorageDriverRouter;
  tasks: FrameworkTasks;
  config: ClusterConfig;
  storageRouter: string;
  /** Resolves when `ovs up` is asked to stop: starts under way give up. */
  stopRequested: Promise<void>;
  logger: Logger;
  /** Saves config.json (after a change of the first vPool's settings, which it holds). */
  saveConfig: () => Promise<void>;
  /** The vPool's own schedules changed (also to {} when it is deleted): its jobs follow. */
  onSchedulesChanged?: (vpool: string, schedules: VPoolSchedules) => void;
}

/** PATCH /api/vpools/:name: the settings a vPool can change while it runs. */
export type UpdateVPoolRequest = Partial<Pick<VPool, "scoSizeBytes" | "writeBufferSizeBytes" | "readCacheSizeBytes" | "schedules">>;

export class VPoolControl {
  /** Status of the vPools other than running ones (starting, stopping, failed with why). */
  private readonly statuses = new Map<string, { status: VPoolStatus; reason?: string }>();

  constructor(private readonly options: VPoolControlOptions) {}

  get primaryName(): string {
    return this.options.config.vpools[0].name;
  }

  list(): VPoolView[] {
    return this.options.model.vpools.list().map((vpool) => this.view(vpool));
  }

  get(name: string): VPoolView {
    return this.view(fromModel(() => this.options.model.vpools.get(name)));
  }

  /** Starts the StorageDriver of a vPool the model holds (at `ovs up` start); resolves once it is up or has failed. */
  async startRecorded(name: string): Promise<void> {
    this.statuses.set(name, { status: "starting" });
    try {
      await this.startStorageDriver(name);
      this.statuses.delete(name);
    } catch (error) {
      this.statuses.set(name, { status: "failed", reason: (error as Error).message });
      throw error;
    }
  }

  /** Records the vPool and starts its StorageDriver as a task (202). */
  async create(input: CreateVPoolRequest): Promise<{ vpool: VPoolView; task: FrameworkTaskView }> {
    const { model, storageRouter, tasks } = this.options;
    const ports = await this.freePorts();
    fromModel(() => model.transaction(() => {
      model.vpools.create(input);
      model.storageDrivers.create({ vpool: input.name, storageRouter, managementPort: ports[0], nbdPort: ports[1], iscsiPort: ports[2] });
    }));
    this.statuses.set(input.name, { status: "starting" });
    const task = tasks.start("vpool-create", input.name, async (report) => {
      report("starting the StorageDriver", 0.1);
      try {
        const ready = await this.startStorageDriver(input.name);
        this.statuses.delete(input.name);
        this.options.onSchedulesChanged?.(input.name, this.get(input.name).schedules);
        return { vpool: input.name, managementUrl: ready.url, ...(ready.nbdUrl === undefined ? {} : { nbdUrl: ready.nbdUrl }), ...(ready.iscsiUrl === undefined ? {} : { iscsiUrl: ready.iscsiUrl }) };
      } catch (error) {
        // Nothing half-made stays behind: the vPool can be created again once the cause is fixed.
        this.statuses.delete(input.name);
        await this.forget(input.name);
        throw error;
      }
    });
    return { vpool: this.get(input.name), task };
  }

  /**
   * Changes settings of a vPool: checked by the model, then taken by the running StorageDriver at once
   * (no restart: its write buffer and read cache resize; a new SCO size is for new vDisks), then
   * recorded in its config file (a supervisor restart keeps them) and, for the first vPool, in
   * config.json. A refusal by the StorageDriver leaves the model as it was. New schedules (replacing
   * the vPool's whole) are stored in the model and its jobs follow (onSchedulesChanged).
   */
  async update(name: string, changes: UpdateVPoolRequest): Promise<VPoolView> {
    const { model, runtimes, config } = this.options;
    const before = this.get(name);
    const status = this.statuses.get(name)?.status;
    if (status === "starting" || status === "stopping") {
      throw new HttpError(409, "CONFLICT", `vPool ${name} is ${status}: wait until its task has finished`);
    }
    const settings: Record<string, number> = {};
    for (const key of ["scoSizeBytes", "writeBufferSizeBytes", "readCacheSizeBytes"] as const) {
      if (changes[key] !== undefined) settings[key] = changes[key];
    }
    fromModel(() => model.vpools.update(name, { ...settings, ...(changes.schedules === undefined ? {} : { schedules: changes.schedules }) }));
    const running = runtimes.get(name);
    if (running !== undefined && Object.keys(settings).length > 0) {
      const revert = (): void => {
        fromModel(() => model.vpools.update(name, {
          scoSizeBytes: before.scoSizeBytes, writeBufferSizeBytes: before.writeBufferSizeBytes, readCacheSizeBytes: before.readCacheSizeBytes, schedules: before.schedules,
        }));
      };
      let answer;
      try {
        answer = await running.client.updateSettings(settings);
      } catch (error) {
        revert();
        throw error;
      }
      if (answer.statusCode !== 200) {
        revert();
        const error = (answer.body as { error?: { code?: string; message?: string } } | undefined)?.error;
        throw new HttpError(answer.statusCode, error?.code ?? "STORAGEDRIVER_FAILED", error?.message ?? `the StorageDriver of vPool ${name} refused the settings (HTTP ${answer.statusCode})`);
      }
      await runtimes.updateSettings(name, settings);
    }
    if (changes.schedules !== undefined) this.options.onSchedulesChanged?.(name, model.vpools.get(name).schedules);
    if (name === this.primaryName && Object.keys(settings).length > 0) {
      Object.assign(config.vpools[0].settings, settings);
      await this.options.saveConfig();
    }
    this.options.logger.info({ vpool: name, settings, applied: running !== undefined }, "vPool settings changed");
    return this.get(name);
  }

  /** Checks the vPool can go (exists, not the first, no vDisks), then stops and forgets it as a task (202). */
  async delete(name: string): Promise<{ task: FrameworkTaskView }> {
    this.get(name);
    if (name === this.primaryName) {
      throw new HttpError(409, "CONFLICT", `vPool ${name} is the host's first vPool (config.json): ovs up runs it and cannot do without it; delete other vPools only`);
    }
    const status = this.statuses.get(name)?.status;
    if (status === "starting" || status === "stopping") {
      throw new HttpError(409, "CONFLICT", `vPool ${name} is ${status}: wait until its task has finished`);
    }
    const running = this.options.runtimes.get(name);
    if (running !== undefined) {
      const listed = await running.client.listVdisks();
      const vdisks = (listed.body as { vdisks?: Array<{ name: string }> } | undefined)?.vdisks;
      if (listed.statusCode !== 200 || vdisks === undefined) {
        throw new HttpError(503, "UNAVAILABLE", `the StorageDriver of vPool ${name} did not list its vDisks (HTTP ${listed.statusCode}): retry in a few seconds, see ${running.files.log}`);
      }
      if (vdisks.length > 0) {
        throw new HttpError(409, "CONFLICT", `vPool ${name} holds vDisks (${vdisks.map((vdisk) => vdisk.name).join(", ")}): delete them first`);
      }
    }
    this.statuses.set(name, { status: "stopping" });
    const task = this.options.tasks.start("vpool-delete", name, async (report) => {
      try {
        report("stopping the StorageDriver", 0.2);
        this.options.onSchedulesChanged?.(name, {});
        this.options.router.remove(name);
        await this.options.runtimes.stop(name);
        report("removing the vPool's records and local files", 0.8);
        // A vPool whose StorageDriver never came up keeps its local files: they may hold data not yet in the backend.
        if (running !== undefined) await this.options.runtimes.removeFiles(name);
        await this.forget(name);
        return { vpool: name, deleted: true };
      } finally {
        this.statuses.delete(name);
      }
    });
    return { task };
  }

  private async startStorageDriver(name: string): Promise<{ url: string; nbdUrl?: string; iscsiUrl?: string }> {
    const { model, config, storageRouter, runtimes, router, stopRequested, logger } = this.options;
    const launch = launchOf(model, config, name, storageRouter);
    const started = await runtimes.start(launch, stopRequested);
    if (started.outcome === "abandoned") throw new HttpError(503, "UNAVAILABLE", `ovs up is stopping: the StorageDriver of vPool ${name} was not started`);
    if (started.outcome === "failed") {
      throw new HttpError(502, "STORAGEDRIVER_FAILED", `the StorageDriver of vPool ${name} did not start: ${started.reason}; the end of its log: ${started.logLines.join(" | ")}`);
    }
    const running = runtimes.get(name);
    if (running !== undefined) {
      router.add(running.client);
      void running.service.gaveUp.then((exit) => {
        router.remove(name);
        this.statuses.set(name, { status: "failed", reason: `its StorageDriver keeps exiting (last: ${exit.signal ?? `exit code ${exit.code}`}); see ${running.files.log}` });
      });
    }
    logger.info({ vpool: name, url: started.message.url }, "vPool started");
    return started.message;
  }

  /** Removes the vPool and its StorageDriver from the model (if they are there). */
  private async forget(name: string): Promise<void> {
    const { model, logger } = this.options;
    try {
      reconcileVdisks(model, name, [], logger);
      model.vpools.delete(name);
    } catch (error) {
      if (!isModelError(error, "NotFound")) throw error;
    }
  }

  private view(vpool: VPool): VPoolView {
    const { model, runtimes } = this.options;
    const running = runtimes.get(vpool.name);
    const other = this.statuses.get(vpool.name);
    return {
      ...vpool,
      primary: vpool.name === this.primaryName,
      storagedrivers: model.storageDrivers.list({ vpool: vpool.name }).map((driver) => ({
        storageRouter: driver.storageRouter, managementPort: driver.managementPort, nbdPort: driver.nbdPort, iscsiPort: driver.iscsiPort,
        status: other?.status ?? (running !== undefined && running.service.up() ? "running" : running !== undefined ? "starting" : "failed"),
        ...(other?.reason === undefined ? {} : { reason: other.reason }),
        ...(running === undefined ? {} : {
          managementUrl: urlOf(running.launch.managementApi),
          ...(running.ready.nbdUrl === undefined ? {} : { nbdUrl: running.ready.nbdUrl }),
          ...(running.ready.iscsiUrl === undefined ? {} : { iscsiUrl: running.ready.iscsiUrl }),
        }),
      })),
    };
  }

  /** Three loopback ports free now and not given to another StorageDriver of this host. */
  private async freePorts(): Promise<number[]> {
    const taken = new Set(this.options.model.storageDrivers.list({ storageRouter: this.options.storageRouter })
      .flatMap((driver) => [driver.managementPort, driver.nbdPort, driver.iscsiPort]));
    for (let attempt = 0; attempt < 10; attempt++) {
      const ports = await freePortsOn(LOOPBACK_HOST, 3);
      if (ports.every((port) => !taken.has(port))) return ports;
    }
    throw new HttpError(503, "UNAVAILABLE", "no three free loopback ports were found for the StorageDriver: free some ports and retry");
  }
}

/** `count` distinct ports free on `host` a moment ago (all held open together, so none repeats). */
export async function freePortsOn(host: string, count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(servers.map((server) => new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, host, () => {
        const address = server.address();
        resolve(typeof address === "object" && address !== null ? address.port : 0);
      });
    })));
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()))));
  }
}

// A vPool on this host: opens every vDisk it owns, from the local directory or, when the local copy is
// missing (new host, lost disk), from the backend namespaces that carry its volume.json; creates and
// deletes vDisks; shares one write buffer and one read cache among them; seals SCOs by age.
import { randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { isStoreError, type ObjectStore } from "../backend/object-store.ts";
import { VolumeError } from "./block-device.ts";
import { decodeVolumeConfig, encodeVolumeConfig, VOLUME_CONFIG_FORMAT, VOLUME_CONFIG_KEY, VOLUME_CONFIG_VERSION, type VolumeConfig } from "./formats/volume-config.ts";
import { ReadCache } from "./read-cache.ts";
import { VolumeEngine } from "./volume.ts";
import { fetchVolumeConfig, recoverLocal, restoreFromBackend, writeLocalConfig } from "./volume-recovery.ts";
import { WriteBuffer } from "./write-buffer.ts";
import {
  CLUSTER_SIZE_BYTES, GIB, MIB, type Volume, type VolumeInfo, type VPool, type VPoolConfig, type VPoolSettings,
} from "./vpool-types.ts";

export const VOLUME_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const VPOOL_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,30}$/;
export const VOLUME_SIZE_BYTES_MAX = 64 * 1024 * GIB;
const NAMESPACE_PREFIX = "vd-";
const TICK_INTERVAL_MS = 250;
const CLOSE_TIMEOUT_MS_DEFAULT = 25_000;

export const DEFAULT_VPOOL_SETTINGS: VPoolSettings = {
  scoSizeBytes: 64 * MIB,
  scoMaxAgeMs: 10_000,
  tlogScoCountMax: 8,
  writeBufferSizeBytes: 1 * GIB,
  writeBufferTriggerGapBytes: GIB / 8,
  readCacheSizeBytes: 256 * MIB,
  metadataCacheSizeBytes: 64 * MIB,
  uploadConcurrency: 2,
  prefetchClusters: 256,
};

function resolveSettings(config: VPoolConfig): VPoolSettings {
  const settings: VPoolSettings = { ...DEFAULT_VPOOL_SETTINGS };
  for (const key of Object.keys(DEFAULT_VPOOL_SETTINGS) as Array<keyof VPoolSettings>) {
    const value = config[key];
    if (value !== undefined) settings[key] = value;
  }
  if (config.writeBufferTriggerGapBytes === undefined) settings.writeBufferTriggerGapBytes = Math.floor(settings.writeBufferSizeBytes / 8);
  const integer = (key: keyof VPoolSettings, min: number, max: number): void => {
    const value = settings[key];
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new VolumeError("Invalid", `vPool setting ${key} = ${value} must be an integer in [${min}, ${max}]`);
    }
  };
  integer("scoSizeBytes", 4 * MIB, 128 * MIB);
  if (settings.scoSizeBytes % CLUSTER_SIZE_BYTES !== 0) throw new VolumeError("Invalid", "scoSizeBytes must be a multiple of 4096");
  integer("scoMaxAgeMs", 10, 3_600_000);
  integer("tlogScoCountMax", 1, 1024);
  integer("writeBufferSizeBytes", 2 * settings.scoSizeBytes, Number.MAX_SAFE_INTEGER);
  integer("writeBufferTriggerGapBytes", 0, settings.writeBufferSizeBytes / 2);
  integer("readCacheSizeBytes", 0, Number.MAX_SAFE_INTEGER);
  integer("metadataCacheSizeBytes", MIB, Number.MAX_SAFE_INTEGER);
  integer("uploadConcurrency", 1, 64);
  integer("prefetchClusters", 0, 65536);
  return settings;
}

interface FailedVolume {
  config: VolumeConfig;
  error: string;
}

class VPoolHost implements VPool {
  readonly name: string;
  readonly settings: VPoolSettings;
  private readonly directory: string;
  private readonly store: ObjectStore;
  private readonly logger: Logger;
  private readonly nowMs: () => number;
  private readonly writeBuffer: WriteBuffer;
  private readonly readCache: ReadCache;
  private readonly volumes = new Map<string, VolumeEngine>();
  private readonly failed = new Map<string, FailedVolume>();
  /** Names being created or deleted, so two calls cannot race on one name. */
  private readonly busyNames = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(config: VPoolConfig, settings: VPoolSettings) {
    this.name = config.name;
    this.settings = settings;
    this.directory = config.directory;
    this.store = config.backend;
    this.logger = (config.logger ?? pino({ level: "silent" })).child({ vpool: config.name });
    this.nowMs = config.nowMs ?? Date.now;
    this.writeBuffer = new WriteBuffer({
      sizeBytes: settings.writeBufferSizeBytes, triggerGapBytes: settings.writeBufferTriggerGapBytes,
      directory: this.directory, logger: this.logger,
    });
    this.readCache = new ReadCache(settings.readCacheSizeBytes);
  }

  private volumeDirectory(name: string): string {
    return join(this.directory, "volumes", name);
  }

  private async openEngine(config: VolumeConfig): Promise<VolumeEngine> {
    const directory = this.volumeDirectory(config.name);
    const recovered = await recoverLocal(directory, this.store, config, this.settings.metadataCacheSizeBytes, this.logger);
    return new VolumeEngine({
      config, directory, settings: this.settings, store: this.store, writeBuffer: this.writeBuffer,
      readCache: this.readCache, logger: this.logger, nowMs: this.nowMs,
    }, recovered);
  }

  private recordFailure(config: VolumeConfig, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.logger.error({ volume: config.name, err: error }, "vDisk could not be opened");
    this.failed.set(config.name, { config, error: message });
  }

  /** Opens local vDisks, then restores those that exist only on the backend. */
  async discover(): Promise<void> {
    await mkdir(join(this.directory, "volumes"), { recursive: true });
    const localUuids = new Set<string>();
    for (const name of await readdir(join(this.directory, "volumes"))) {
      const directory = this.volumeDirectory(name);
      let config: VolumeConfig;
      try {
        config = decodeVolumeConfig(await readFile(join(directory, VOLUME_CONFIG_KEY)));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") {
          // Creation or restore never finished: the backend copy (if any) is restored below.
          await rm(directory, { recursive: true, force: true });
          continue;
        }
        this.logger.error({ volume: name, err: error }, "local volume.json is unreadable; restoring from the backend instead");
        await rm(directory, { recursive: true, force: true });
        continue;
      }
      localUuids.add(config.uuid);
      try {
        this.volumes.set(config.name, await this.openEngine(config));
      } catch (error) {
        this.recordFailure(config, error);
      }
    }
    for (const namespace of await this.store.listNamespaces()) {
      if (!namespace.startsWith(NAMESPACE_PREFIX)) continue;
      let config: VolumeConfig;
      try {
        config = await fetchVolumeConfig(this.store, namespace);
      } catch (error) {
        if (!isStoreError(error, "NotFound")) this.logger.warn({ namespace, err: error }, "skipping a namespace whose volume.json is unreadable");
        continue;
      }
      if (config.vpool !== this.name || localUuids.has(config.uuid) || this.volumes.has(config.name)) continue;
      const directory = this.volumeDirectory(config.name);
      try {
        await restoreFromBackend(directory, this.store, config, this.settings.metadataCacheSizeBytes, this.logger);
        await writeLocalConfig(directory, encodeVolumeConfig(config));
        this.volumes.set(config.name, await this.openEngine(config));
      } catch (error) {
        this.recordFailure(config, error);
      }
    }
    this.timer = setInterval(() => {
      for (const volume of this.volumes.values()) volume.tick();
    }, TICK_INTERVAL_MS);
    this.timer.unref();
  }

  private checkOpen(): void {
    if (this.closed) throw new VolumeError("Closed", `vPool ${this.name} is closed`);
  }

  async createVolume(name: string, sizeBytes: number): Promise<Volume> {
    this.checkOpen();
    if (typeof name !== "string" || !VOLUME_NAME_PATTERN.test(name)) {
      throw new VolumeError("Invalid", `invalid vDisk name ${JSON.stringify(name)}: use 1-63 of [a-z0-9_-], starting with a letter or digit`);
    }
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % CLUSTER_SIZE_BYTES !== 0 || sizeBytes > VOLUME_SIZE_BYTES_MAX) {
      throw new VolumeError("Invalid", `invalid vDisk size ${sizeBytes}: use a positive multiple of 4096 bytes up to 64 TiB`);
    }
    if (this.volumes.has(name) || this.failed.has(name) || this.busyNames.has(name)) {
      throw new VolumeError("Exists", `a vDisk named ${name} already exists in vPool ${this.name}`);
    }
    this.busyNames.add(name);
    try {
      const uuid = randomUUID();
      const config: VolumeConfig = {
        format: VOLUME_CONFIG_FORMAT, version: VOLUME_CONFIG_VERSION, name, uuid, vpool: this.name,
        namespace: `${NAMESPACE_PREFIX}${uuid}`, sizeBytes, clusterSizeBytes: CLUSTER_SIZE_BYTES,
        scoSizeBytes: this.settings.scoSizeBytes, createdAt: new Date(this.nowMs()).toISOString(),
      };
      const encoded = encodeVolumeConfig(config);
      // Backend first: once volume.json is there, any host can find the vDisk.
      await this.store.createNamespace(config.namespace);
      await this.store.put(config.namespace, VOLUME_CONFIG_KEY, encoded, { ifAbsent: true });
      const directory = this.volumeDirectory(name);
      await rm(directory, { recursive: true, force: true });
      await writeLocalConfig(directory, encoded);
      const volume = await this.openEngine(config);
      this.volumes.set(name, volume);
      this.logger.info({ volume: name, sizeBytes, namespace: config.namespace }, "created vDisk");
      return volume;
    } finally {
      this.busyNames.delete(name);
    }
  }

  getVolume(name: string): Volume | undefined {
    return this.volumes.get(name);
  }

  listVolumes(): VolumeInfo[] {
    const infos = [...this.volumes.values()].map((volume) => volume.info());
    for (const { config, error } of this.failed.values()) {
      infos.push({
        name: config.name, uuid: config.uuid, vpool: config.vpool, namespace: config.namespace, sizeBytes: config.sizeBytes,
        clusterSizeBytes: config.clusterSizeBytes, scoSizeBytes: config.scoSizeBytes, createdAt: config.createdAt, state: "failed", error,
      });
    }
    return infos.sort((left, right) => left.name.localeCompare(right.name));
  }

  async deleteVolume(name: string): Promise<void> {
    this.checkOpen();
    const volume = this.volumes.get(name);
    const failed = this.failed.get(name);
    if (volume === undefined && failed === undefined) throw new VolumeError("NotFound", `no vDisk named ${name} in vPool ${this.name}`);
    if (this.busyNames.has(name)) throw new VolumeError("Exists", `vDisk ${name} is being created or deleted`);
    this.busyNames.add(name);
    try {
      const namespace = volume?.info().namespace ?? (failed as FailedVolume).config.namespace;
      this.volumes.delete(name);
      this.failed.delete(name);
      if (volume !== undefined) await volume.destroy();
      else await rm(this.volumeDirectory(name), { recursive: true, force: true });
      try {
        await this.store.deleteNamespace(namespace);
      } catch (error) {
        if (!isStoreError(error, "NotFound")) throw error;
      }
      this.logger.info({ volume: name, namespace }, "deleted vDisk");
    } finally {
      this.busyNames.delete(name);
    }
  }

  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    const timeoutMs = options.timeoutMs ?? CLOSE_TIMEOUT_MS_DEFAULT;
    await Promise.all([...this.volumes.values()].map((volume) => volume.close(timeoutMs)));
    this.volumes.clear();
    this.writeBuffer.close();
  }

  async simulateCrash(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await Promise.all([...this.volumes.values()].map((volume) => volume.crash()));
    this.volumes.clear();
    this.writeBuffer.close();
  }
}

/** Opens (or creates) a vPool on this host and every vDisk it has locally or on the backend. */
export async function openVPool(config: VPoolConfig): Promise<VPool> {
  if (!VPOOL_NAME_PATTERN.test(config.name)) {
    throw new VolumeError("Invalid", `invalid vPool name ${JSON.stringify(config.name)}: use 1-31 of [a-z0-9-]`);
  }
  const host = new VPoolHost(config, resolveSettings(config));
  await host.discover();
  return host;
}

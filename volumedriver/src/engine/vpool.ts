// A vPool on this host: opens every vDisk it owns, from the local directory or, when the local copy is
// missing (new host, lost disk), from the backend namespaces that carry its volume.json; creates and
// deletes vDisks; shares one write buffer and one read cache among them; seals SCOs by age.
import { randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { isStoreError, type ObjectStore } from "../backend/object-store.ts";
import { VolumeError } from "./block-device.ts";
import { encodeManifest, SNAPSHOTS_MANIFEST_KEY, type SnapshotRecord, type SnapshotsManifest } from "./formats/snapshots-manifest.ts";
import { decodeTlog, ENTRY_WRITE, tlogObjectKey } from "./formats/tlog-format.ts";
import { scoObjectKey } from "./formats/sco-format.ts";
import {
  decodeVolumeConfig, encodeVolumeConfig, VOLUME_CONFIG_FORMAT, VOLUME_CONFIG_KEY, VOLUME_CONFIG_VERSION, VOLUME_OVERRIDE_KEYS,
  type VolumeConfig, type VolumeOverrideKey, type VolumeOverrides,
} from "./formats/volume-config.ts";
import { crashPoint } from "./crash-points.ts";
import { CLONE_DEPTH_MAX } from "./history.ts";
import { ReadCache } from "./read-cache.ts";
import { SnapshotView } from "./snapshot-view.ts";
import { VolumeEngine } from "./volume.ts";
import { fetchVolumeConfig, recoverLocal, restoreFromBackend, writeLocalConfig } from "./volume-recovery.ts";
import { WriteBuffer } from "./write-buffer.ts";
import {
  CLUSTER_SIZE_BYTES, GIB, MIB, SNAPSHOT_NAME_PATTERN, type ScrubProgress, type ScrubResult, type SnapshotDevice, type SnapshotInfo,
  type Volume, type VolumeInfo, type VPool, type VPoolConfig, type VPoolSettings,
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
  scrubLiveFractionKeep: 0.9,
  scrubGracePeriodMs: 60_000,
};

/** The vPool settings a running vPool can change (updateSettings); metadataCacheSizeBytes needs a restart. */
export const LIVE_VPOOL_SETTINGS = [
  "scoSizeBytes", "scoMaxAgeMs", "tlogScoCountMax", "writeBufferSizeBytes", "writeBufferTriggerGapBytes", "readCacheSizeBytes",
  "uploadConcurrency", "prefetchClusters", "scrubLiveFractionKeep", "scrubGracePeriodMs",
] as const satisfies ReadonlyArray<keyof VPoolSettings>;

/** Checks one setting against the others; throws Invalid saying what is wrong. `what` names the owner. */
function checkSetting(settings: VPoolSettings, key: keyof VPoolSettings, what: string): void {
  const value = settings[key];
  if (key === "scrubLiveFractionKeep") {
    if (!(typeof value === "number" && value >= 0 && value <= 1)) throw new VolumeError("Invalid", `${what} setting ${key} = ${value} must be in [0, 1]`);
    return;
  }
  const [min, max] = {
    scoSizeBytes: [4 * MIB, 128 * MIB],
    scoMaxAgeMs: [10, 3_600_000],
    tlogScoCountMax: [1, 1024],
    writeBufferSizeBytes: [2 * settings.scoSizeBytes, Number.MAX_SAFE_INTEGER],
    writeBufferTriggerGapBytes: [0, settings.writeBufferSizeBytes / 2],
    readCacheSizeBytes: [0, Number.MAX_SAFE_INTEGER],
    metadataCacheSizeBytes: [MIB, Number.MAX_SAFE_INTEGER],
    uploadConcurrency: [1, 64],
    prefetchClusters: [0, 65536],
    scrubGracePeriodMs: [0, 7 * 24 * 3_600_000],
  }[key];
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new VolumeError("Invalid", `${what} setting ${key} = ${value} must be an integer in [${min}, ${max}]`);
  }
}

function resolveSettings(config: VPoolConfig): VPoolSettings {
  const settings: VPoolSettings = { ...DEFAULT_VPOOL_SETTINGS };
  for (const key of Object.keys(DEFAULT_VPOOL_SETTINGS) as Array<keyof VPoolSettings>) {
    const value = config[key];
    if (value !== undefined) settings[key] = value;
  }
  if (config.writeBufferTriggerGapBytes === undefined) settings.writeBufferTriggerGapBytes = Math.floor(settings.writeBufferSizeBytes / 8);
  for (const key of Object.keys(DEFAULT_VPOOL_SETTINGS) as Array<keyof VPoolSettings>) checkSetting(settings, key, "vPool");
  if (settings.scoSizeBytes % CLUSTER_SIZE_BYTES !== 0) throw new VolumeError("Invalid", "scoSizeBytes must be a multiple of 4096");
  return settings;
}

/** A vDisk's settings: its vPool's with its overrides applied (checked; Invalid names the bad one). */
export function volumeSettings(vpoolSettings: VPoolSettings, overrides: VolumeOverrides | undefined, volume: string): VPoolSettings {
  const settings = { ...vpoolSettings };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (!(VOLUME_OVERRIDE_KEYS as readonly string[]).includes(key)) {
      throw new VolumeError("Invalid", `vDisk ${volume}: ${key} cannot be set per vDisk; these can: ${VOLUME_OVERRIDE_KEYS.join(", ")}`);
    }
    settings[key as VolumeOverrideKey] = value;
    checkSetting(settings, key as VolumeOverrideKey, `vDisk ${volume}`);
  }
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
  /** Open snapshot views, per vDisk name: closed when their snapshot or vDisk goes away. */
  private readonly views = new Map<string, Set<SnapshotView>>();
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
    await rm(join(directory, "views"), { recursive: true, force: true }); // scratch files of views open at a crash
    const recovered = await recoverLocal(directory, this.store, config, this.settings.metadataCacheSizeBytes, this.logger);
    return new VolumeEngine({
      config, directory, settings: volumeSettings(this.settings, config.overrides, config.name), store: this.store, writeBuffer: this.writeBuffer,
      readCache: this.readCache, logger: this.logger, nowMs: this.nowMs, ancestors: recovered.ancestors,
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

  private checkNewName(name: string): void {
    if (typeof name !== "string" || !VOLUME_NAME_PATTERN.test(name)) {
      throw new VolumeError("Invalid", `invalid vDisk name ${JSON.stringify(name)}: use 1-63 of [a-z0-9_-], starting with a letter or digit`);
    }
    if (this.volumes.has(name) || this.failed.has(name) || this.busyNames.has(name)) {
      throw new VolumeError("Exists", `a vDisk named ${name} already exists in vPool ${this.name}`);
    }
  }

  private newConfig(name: string, sizeBytes: number, parent?: VolumeConfig["parent"]): VolumeConfig {
    const uuid = randomUUID();
    return {
      format: VOLUME_CONFIG_FORMAT, version: VOLUME_CONFIG_VERSION, name, uuid, vpool: this.name,
      namespace: `${NAMESPACE_PREFIX}${uuid}`, sizeBytes, clusterSizeBytes: CLUSTER_SIZE_BYTES,
      scoSizeBytes: this.settings.scoSizeBytes, createdAt: new Date(this.nowMs()).toISOString(),
      ...(parent === undefined ? {} : { parent }),
    };
  }

  async createVolume(name: string, sizeBytes: number): Promise<Volume> {
    this.checkOpen();
    this.checkNewName(name);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % CLUSTER_SIZE_BYTES !== 0 || sizeBytes > VOLUME_SIZE_BYTES_MAX) {
      throw new VolumeError("Invalid", `invalid vDisk size ${sizeBytes}: use a positive multiple of 4096 bytes up to 64 TiB`);
    }
    this.busyNames.add(name);
    try {
      const config = this.newConfig(name, sizeBytes);
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
        template: false, snapshotCount: 0, scrubPending: false, overrides: { ...config.overrides },
        ...(config.parent === undefined ? {} : { parent: { volume: config.parent.volumeName, snapshot: config.parent.snapshotName } }),
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
    const uuid = volume?.config.uuid ?? (failed as FailedVolume).config.uuid;
    const clones = this.configs().filter((config) => config.parent?.volumeUuid === uuid).map((config) => config.name);
    if (clones.length > 0) {
      throw new VolumeError("Exists", `vDisk ${name} has clones (${clones.join(", ")}); delete them first`);
    }
    this.busyNames.add(name);
    try {
      await this.closeViews(name);
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

  // ---- snapshots, clones, templates, rollback ----

  /** The configs of every vDisk of the vPool, running or failed. */
  private configs(): VolumeConfig[] {
    return [...[...this.volumes.values()].map((volume) => volume.config), ...[...this.failed.values()].map((failed) => failed.config)];
  }

  private runningVolume(name: string): VolumeEngine {
    this.checkOpen();
    const volume = this.volumes.get(name);
    if (volume !== undefined) return volume;
    const failed = this.failed.get(name);
    if (failed !== undefined) throw new VolumeError("Invalid", `vDisk ${name} is failed (${failed.error}); it has no snapshots to work with`);
    if (this.busyNames.has(name)) throw new VolumeError("Exists", `vDisk ${name} is busy (being created, deleted or rolled back)`);
    throw new VolumeError("NotFound", `no vDisk named ${name} in vPool ${this.name}`);
  }

  /** Marks a vDisk busy for a change that replaces its Volume or its volume.json; Exists if it is already. */
  private claim(name: string): void {
    if (this.busyNames.has(name)) throw new VolumeError("Exists", `vDisk ${name} is busy (being created, deleted, rolled back, resized or reconfigured); retry when that is done`);
    this.busyNames.add(name);
  }

  /**
   * Stores a changed volume.json — backend first, so a restore elsewhere never gets less than the
   * local copy — then the local copy, then lets the running engine take it.
   */
  private async updateConfig(volume: VolumeEngine, next: VolumeConfig): Promise<void> {
    const settings = volumeSettings(this.settings, next.overrides, next.name);
    const encoded = encodeVolumeConfig(next);
    await this.store.put(next.namespace, VOLUME_CONFIG_KEY, encoded);
    crashPoint("config-stored-backend");
    await writeLocalConfig(this.volumeDirectory(next.name), encoded);
    crashPoint("config-stored-local");
    volume.applyConfig(next, settings);
  }

  async resizeVolume(volumeName: string, sizeBytes: number): Promise<VolumeInfo> {
    const volume = this.runningVolume(volumeName);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % CLUSTER_SIZE_BYTES !== 0 || sizeBytes > VOLUME_SIZE_BYTES_MAX) {
      throw new VolumeError("Invalid", `invalid vDisk size ${sizeBytes}: use a positive multiple of 4096 bytes up to 64 TiB`);
    }
    if (sizeBytes < volume.sizeBytes) {
      throw new VolumeError("Invalid", `vDisk ${volumeName} has ${volume.sizeBytes} bytes and can only grow: shrinking would cut off data; clone it to a smaller vDisk instead`);
    }
    if (volume.readOnly) throw new VolumeError("ReadOnly", `vDisk ${volumeName} is a template: templates keep their size; grow a clone instead`);
    if (sizeBytes === volume.sizeBytes) return volume.info();
    this.claim(volumeName);
    try {
      const before = volume.sizeBytes;
      await this.updateConfig(volume, { ...volume.config, sizeBytes });
      this.logger.info({ volume: volumeName, sizeBytesBefore: before, sizeBytes }, "grew vDisk");
      return volume.info();
    } finally {
      this.busyNames.delete(volumeName);
    }
  }

  async setVolumeOverrides(volumeName: string, overrides: VolumeOverrides): Promise<VolumeInfo> {
    const volume = this.runningVolume(volumeName);
    volumeSettings(this.settings, overrides, volumeName); // Invalid before anything changes
    const kept = Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined)) as VolumeOverrides;
    this.claim(volumeName);
    try {
      const { overrides: _previous, ...rest } = volume.config;
      await this.updateConfig(volume, Object.keys(kept).length === 0 ? rest : { ...rest, overrides: kept });
      this.logger.info({ volume: volumeName, overrides: kept }, "vDisk settings changed");
      return volume.info();
    } finally {
      this.busyNames.delete(volumeName);
    }
  }

  updateSettings(changes: Partial<VPoolSettings>): VPoolSettings {
    this.checkOpen();
    const next: VPoolSettings = { ...this.settings };
    for (const [key, value] of Object.entries(changes)) {
      if (!(key in DEFAULT_VPOOL_SETTINGS)) throw new VolumeError("Invalid", `vPool ${this.name} has no setting ${key}; these can change: ${LIVE_VPOOL_SETTINGS.join(", ")}`);
      if (!(LIVE_VPOOL_SETTINGS as readonly string[]).includes(key)) {
        throw new VolumeError("Invalid", `vPool setting ${key} is read when a vDisk opens: set it in the StorageDriver's config and restart it`);
      }
      if (value !== undefined) next[key as keyof VPoolSettings] = value;
    }
    // A new buffer size with no gap of its own keeps the default proportion.
    if (changes.writeBufferSizeBytes !== undefined && changes.writeBufferTriggerGapBytes === undefined) next.writeBufferTriggerGapBytes = Math.floor(next.writeBufferSizeBytes / 8);
    for (const key of Object.keys(DEFAULT_VPOOL_SETTINGS) as Array<keyof VPoolSettings>) checkSetting(next, key, "vPool");
    if (next.scoSizeBytes % CLUSTER_SIZE_BYTES !== 0) throw new VolumeError("Invalid", "scoSizeBytes must be a multiple of 4096");
    Object.assign(this.settings, next);
    this.writeBuffer.resize(next.writeBufferSizeBytes, next.writeBufferTriggerGapBytes);
    this.readCache.resize(next.readCacheSizeBytes);
    for (const volume of this.volumes.values()) volume.applyConfig(volume.config, volumeSettings(this.settings, volume.config.overrides, volume.name));
    this.logger.info({ settings: changes }, "vPool settings changed");
    return { ...this.settings };
  }

  /** The vDisk's effective settings (its vPool's with its overrides). */
  volumeSettings(volumeName: string): VPoolSettings {
    const volume = this.runningVolume(volumeName);
    return volumeSettings(this.settings, volume.config.overrides, volumeName);
  }

  private snapshotIndex(volume: VolumeEngine, snapshot: string): number {
    const index = volume.snapshotRecords().findIndex((record) => record.name === snapshot);
    if (index < 0) throw new VolumeError("NotFound", `vDisk ${volume.name} has no snapshot named ${snapshot}`);
    return index;
  }

  private clonesOf(snapshotUuid: string): string[] {
    return this.configs().filter((config) => config.parent?.snapshotUuid === snapshotUuid).map((config) => config.name).sort();
  }

  private snapshotInfo(volume: VolumeEngine, record: SnapshotRecord): SnapshotInfo {
    return {
      name: record.name, uuid: record.uuid, createdAt: record.createdAt, sizeBytes: record.sizeBytes,
      synced: volume.isSnapshotSynced(record), clones: this.clonesOf(record.uuid),
    };
  }

  async createSnapshot(volumeName: string, snapshot: string): Promise<SnapshotInfo> {
    const volume = this.runningVolume(volumeName);
    if (typeof snapshot !== "string" || !SNAPSHOT_NAME_PATTERN.test(snapshot)) {
      throw new VolumeError("Invalid", `invalid snapshot name ${JSON.stringify(snapshot)}: use 1-63 of [A-Za-z0-9._-], starting with a letter or digit`);
    }
    const record = await volume.createSnapshot(snapshot, randomUUID());
    return this.snapshotInfo(volume, record);
  }

  listSnapshots(volumeName: string): SnapshotInfo[] {
    const volume = this.runningVolume(volumeName);
    return volume.snapshotRecords().map((record) => this.snapshotInfo(volume, record));
  }

  async deleteSnapshot(volumeName: string, snapshot: string): Promise<void> {
    const volume = this.runningVolume(volumeName);
    const record = volume.snapshotRecords()[this.snapshotIndex(volume, snapshot)];
    const clones = this.clonesOf(record.uuid);
    if (clones.length > 0) {
      throw new VolumeError("Exists", `snapshot ${snapshot} of ${volumeName} has clones (${clones.join(", ")}); delete them first`);
    }
    await this.closeViews(volumeName, snapshot);
    await volume.deleteSnapshot(snapshot);
  }

  async setTemplate(volumeName: string): Promise<void> {
    const volume = this.runningVolume(volumeName);
    if (volume.readOnly) return;
    if (volume.snapshotRecords().length === 0 || volume.hasWritesSinceLastSnapshot()) {
      const taken = new Set(volume.snapshotRecords().map((record) => record.name));
      let name = "template";
      for (let suffix = 2; taken.has(name); suffix++) name = `template-${suffix}`;
      await volume.createSnapshot(name, randomUUID());
    }
    await volume.setTemplateFlag(true);
    await volume.drain(); // clones need the snapshot on the backend
    this.logger.info({ volume: volumeName }, "vDisk is now a template");
  }

  async cloneVolume(name: string, from: { volume: string; snapshot?: string }): Promise<Volume> {
    this.checkOpen();
    this.checkNewName(name);
    const parent = this.runningVolume(from.volume);
    const records = parent.snapshotRecords();
    let record: SnapshotRecord | undefined;
    if (from.snapshot !== undefined) {
      record = records[this.snapshotIndex(parent, from.snapshot)];
    } else {
      if (!parent.readOnly) throw new VolumeError("Invalid", `vDisk ${from.volume} is not a template: name the snapshot to clone (${from.volume}@SNAPSHOT)`);
      record = records[records.length - 1];
      if (record === undefined) throw new VolumeError("Invalid", `template ${from.volume} has no snapshot`);
    }
    if (parent.ancestors.length + 1 >= CLONE_DEPTH_MAX) {
      throw new VolumeError("Invalid", `cloning ${from.volume} would make a clone chain deeper than ${CLONE_DEPTH_MAX}`);
    }
    this.busyNames.add(name);
    try {
      if (!parent.isSnapshotSynced(record)) await parent.drain();
      if (!parent.isSnapshotSynced(record)) throw new VolumeError("Io", `snapshot ${record.name} of ${from.volume} could not be put on the backend; retry when it is reachable`);
      const config = this.newConfig(name, record.sizeBytes, {
        namespace: parent.config.namespace, volumeUuid: parent.config.uuid, volumeName: parent.name, snapshotUuid: record.uuid, snapshotName: record.name,
      });
      const encoded = encodeVolumeConfig(config);
      await this.store.createNamespace(config.namespace);
      await this.store.put(config.namespace, VOLUME_CONFIG_KEY, encoded, { ifAbsent: true });
      const directory = this.volumeDirectory(name);
      await restoreFromBackend(directory, this.store, config, this.settings.metadataCacheSizeBytes, this.logger);
      await writeLocalConfig(directory, encoded);
      const volume = await this.openEngine(config);
      this.volumes.set(name, volume);
      this.logger.info({ volume: name, parent: from.volume, snapshot: record.name, namespace: config.namespace }, "cloned vDisk");
      return volume;
    } finally {
      this.busyNames.delete(name);
    }
  }

  async rollbackVolume(volumeName: string, snapshot: string): Promise<Volume> {
    const volume = this.runningVolume(volumeName);
    const index = this.snapshotIndex(volume, snapshot);
    const later = volume.snapshotRecords().slice(index + 1);
    const cloned = later.filter((record) => this.clonesOf(record.uuid).length > 0).map((record) => record.name);
    if (cloned.length > 0) {
      throw new VolumeError("Exists", `rolling ${volumeName} back to ${snapshot} would delete snapshots with clones (${cloned.join(", ")}); delete the clones first`);
    }
    this.claim(volumeName);
    try {
      // Everything on the backend first: the rolled-back vDisk is rebuilt from there.
      await volume.drain();
      await this.closeViews(volumeName);
      this.volumes.delete(volumeName);
      await volume.close(CLOSE_TIMEOUT_MS_DEFAULT);
      const config = volume.config;
      const manifest = volume.currentManifest();
      if (volume.stats().notUploadedBytes > 0 || !volume.isManifestSynced()) {
        await this.reopen(config);
        throw new VolumeError("Io", `rollback of ${volumeName} needs everything on the backend first, and the backend did not take it; retry when it is reachable`);
      }
      const numbers = volume.nextNumbers();
      const headStartTlog = Math.max(numbers.tlogNumber, manifest.nextTlogNumber, manifest.headStartTlog);
      const dropped = [
        ...manifest.snapshots.slice(index + 1).flatMap((record) => record.tlogs), ...manifest.headTlogs,
        ...Array.from({ length: Math.max(0, numbers.tlogNumber - manifest.headStartTlog) }, (_, offset) => manifest.headStartTlog + offset),
      ];
      const next: SnapshotsManifest = {
        ...manifest, generation: manifest.generation + 1, snapshots: manifest.snapshots.slice(0, index + 1), headTlogs: [],
        headStartTlog, nextTlogNumber: headStartTlog, nextScoNumber: Math.max(numbers.scoNumber, manifest.nextScoNumber),
      };
      const directory = this.volumeDirectory(volumeName);
      // Without volume.json the local copy counts as unfinished: a crash from here on restores from the backend.
      await rm(join(directory, VOLUME_CONFIG_KEY), { force: true });
      await fsyncDirectory(directory);
      await this.store.put(config.namespace, SNAPSHOTS_MANIFEST_KEY, encodeManifest(next));
      const reopened = await this.reopen(config);
      this.logger.info({ volume: volumeName, snapshot, droppedTlogs: dropped.length }, "rolled back vDisk");
      await this.collectTlogs(config, dropped);
      return reopened;
    } finally {
      this.busyNames.delete(volumeName);
    }
  }

  /** Rebuilds a vDisk's local copy from the backend and opens it; on failure it is listed as failed. */
  private async reopen(config: VolumeConfig): Promise<VolumeEngine> {
    try {
      const directory = this.volumeDirectory(config.name);
      await restoreFromBackend(directory, this.store, config, this.settings.metadataCacheSizeBytes, this.logger);
      await writeLocalConfig(directory, encodeVolumeConfig(config));
      const volume = await this.openEngine(config);
      this.volumes.set(config.name, volume);
      return volume;
    } catch (error) {
      this.recordFailure(config, error);
      throw error;
    }
  }

  /**
   * Deletes TLogs that left the history and the SCOs they name (each SCO belongs to one TLog).
   * Best effort: what a failure leaves behind is garbage that a scrub collects later.
   */
  private async collectTlogs(config: VolumeConfig, tlogNumbers: number[]): Promise<void> {
    for (const tlogNumber of tlogNumbers) {
      try {
        const tlog = decodeTlog(await this.store.get(config.namespace, tlogObjectKey(tlogNumber)));
        const scoNumbers = new Set<number>();
        // Relocations name SCOs of scrubbed TLogs that stay in the history.
        for (const entry of tlog.entries) if (entry.type === ENTRY_WRITE && !entry.relocation) scoNumbers.add(entry.scoNumber);
        for (const scoNumber of scoNumbers) await this.store.delete(config.namespace, scoObjectKey(scoNumber));
        await this.store.delete(config.namespace, tlogObjectKey(tlogNumber));
      } catch (error) {
        this.logger.warn({ volume: config.name, tlogNumber, err: error }, "could not collect a dropped TLog; a scrub will");
      }
    }
  }

  async openSnapshot(volumeName: string, snapshot: string): Promise<SnapshotDevice> {
    const volume = this.runningVolume(volumeName);
    const index = this.snapshotIndex(volume, snapshot);
    const view = await SnapshotView.open(volume, this.store, volume.currentManifest(), index, (closed) => this.views.get(volumeName)?.delete(closed));
    let views = this.views.get(volumeName);
    if (views === undefined) {
      views = new Set();
      this.views.set(volumeName, views);
    }
    views.add(view);
    return view;
  }

  /** Closes the open views of a vDisk (of one snapshot when named). */
  private async closeViews(volumeName: string, snapshot?: string): Promise<void> {
    const views = this.views.get(volumeName);
    if (views === undefined) return;
    for (const view of [...views]) if (snapshot === undefined || view.snapshot === snapshot) await view.close();
    if (views.size === 0) this.views.delete(volumeName);
  }

  async scrubVolume(volumeName: string, options: { onProgress?: (progress: ScrubProgress) => void } = {}): Promise<ScrubResult> {
    const volume = this.runningVolume(volumeName);
    // Ranges up to the newest snapshot with clones get no SCO copied: the clones' metadata points into them.
    const records = volume.snapshotRecords();
    let protectedRanges = 0;
    records.forEach((record, index) => {
      if (this.clonesOf(record.uuid).length > 0) protectedRanges = index + 1;
    });
    return volume.scrub(protectedRanges, options.onProgress);
  }

  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    const timeoutMs = options.timeoutMs ?? CLOSE_TIMEOUT_MS_DEFAULT;
    for (const name of [...this.views.keys()]) await this.closeViews(name);
    await Promise.all([...this.volumes.values()].map((volume) => volume.close(timeoutMs)));
    this.volumes.clear();
    this.writeBuffer.close();
  }

  async simulateCrash(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const name of [...this.views.keys()]) await this.closeViews(name);
    await Promise.all([...this.volumes.values()].map((volume) => volume.crash()));
    this.volumes.clear();
    this.writeBuffer.close();
  }
}

async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
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

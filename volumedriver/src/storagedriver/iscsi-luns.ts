// The iSCSI target of a StorageDriver: one target per vPool (iqn.2026-11.org.openvstorage:VPOOL) with
// one logical unit per running vDisk. LUN numbers are stable per vDisk: the first time a vDisk runs it
// gets the next number, recorded in VPOOL_DIR/iscsi/luns.json before the LUN is offered, so a restart
// (or a vDisk that fails and comes back) keeps its number; a deleted vDisk's number is not handed out
// again until every higher number has been used. The serial number (VPD 0x80) is the vDisk's uuid and
// the NAA identifier (VPD 0x83) a hash of it, so an initiator recognises the disk whatever its LUN.
// Templates are served write protected (the SCSI layer reports WP and refuses writes with DATA PROTECT).
// Persistent reservations with APTPL live in VPOOL_DIR/iscsi/reservations/UUID.json.
//
// vDisks come and go through the management API (create, clone, delete, rollback) and by failing:
// sync() brings the target's LUNs in line with the vPool. The StorageDriver calls it after every
// management request that changes something (before the answer is sent, so a vDisk is a LUN by the
// time its creator hears about it) and on a timer for state changes nobody asked for.
import { createHash } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { type BlockDevice, type BlockExtent, VolumeError, type WriteOptions, type WriteZeroesOptions } from "../engine/block-device.ts";
import type { Volume, VolumeInfo, VPool } from "../engine/vpool-types.ts";
import { vpoolTargetName } from "../frontends/iscsi/iscsi-server.ts";
import type { IscsiChapSettings, IscsiTargetEntry } from "../frontends/iscsi/iscsi-types.ts";
import { LUN_MAX, ScsiTargetImpl } from "../frontends/iscsi/scsi/scsi-target.ts";

export const LUN_TABLE_FORMAT_VERSION = 1;
/** How often the target is brought in line with the vPool when no management request did it. */
export const LUN_SYNC_INTERVAL_MS = 2_000;

/** One recorded LUN: the vDisk (by uuid, its identity; the name for people) and its number. */
export interface LunAssignment {
  uuid: string;
  vdisk: string;
  lun: number;
}

/**
 * VPOOL_DIR/iscsi/luns.json, version 1:
 *   {"formatVersion": 1, "nextLun": N, "luns": [{"uuid", "vdisk", "lun"}...], "checksum": "<sha256 hex>"}
 * checksum is the SHA-256 of JSON.stringify({nextLun, luns}) exactly as stored. Written to a temp
 * file, fsynced, renamed.
 */
interface LunTableFile {
  formatVersion: number;
  nextLun: number;
  luns: LunAssignment[];
  checksum: string;
}

function checksumOf(nextLun: number, luns: LunAssignment[]): string {
  return createHash("sha256").update(JSON.stringify({ nextLun, luns })).digest("hex");
}

/** The VPD 0x83 NAA vendor-specific part: 16 hex digits derived from the vDisk's uuid. */
export function naaIdentifierHexOf(uuid: string): string {
  return createHash("sha256").update(`openvstorage-vdisk:${uuid}`).digest("hex").slice(0, 16);
}

/** The VPD 0x80 serial number: the vDisk's uuid without dashes (32 ASCII characters). */
export function serialNumberOf(uuid: string): string {
  return uuid.replaceAll("-", "");
}

/** The recorded LUN numbers of a vPool, loaded at start and saved on every change. */
export class LunTable {
  private readonly byUuid = new Map<string, LunAssignment>();
  private nextLun = 0;

  private constructor(readonly file: string) {}

  static async load(file: string): Promise<LunTable> {
    const table = new LunTable(file);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return table;
      throw error;
    }
    const unreadable = (why: string): Error => new Error(`the iSCSI LUN table ${file} ${why}: LUN numbers cannot be kept; `
      + "restore the file, or move it away to number the vDisks afresh (initiators must then rescan)");
    let parsed: LunTableFile;
    try {
      parsed = JSON.parse(text) as LunTableFile;
    } catch {
      throw unreadable("is not valid JSON");
    }
    if (parsed.formatVersion !== LUN_TABLE_FORMAT_VERSION) throw unreadable(`has formatVersion ${JSON.stringify(parsed.formatVersion)}, this release reads ${LUN_TABLE_FORMAT_VERSION}`);
    if (!Array.isArray(parsed.luns) || !Number.isInteger(parsed.nextLun) || parsed.checksum !== checksumOf(parsed.nextLun, parsed.luns)) {
      throw unreadable("fails its checksum");
    }
    for (const entry of parsed.luns) table.byUuid.set(entry.uuid, entry);
    table.nextLun = parsed.nextLun;
    return table;
  }

  lunOf(uuid: string): number | undefined {
    return this.byUuid.get(uuid)?.lun;
  }

  assignments(): LunAssignment[] {
    return [...this.byUuid.values()].sort((a, b) => a.lun - b.lun);
  }

  /** The vDisk's recorded LUN, or a new one (recorded on disk before it is returned). */
  async assign(uuid: string, vdisk: string): Promise<number> {
    const known = this.byUuid.get(uuid);
    if (known !== undefined) {
      if (known.vdisk === vdisk) return known.lun;
      known.vdisk = vdisk;
      await this.save();
      return known.lun;
    }
    const used = new Set([...this.byUuid.values()].map((entry) => entry.lun));
    let lun = this.nextLun;
    // Numbers go up so a deleted vDisk's LUN is not reused at once; past LUN_MAX, the lowest free one.
    if (lun > LUN_MAX || used.has(lun)) {
      lun = 0;
      while (used.has(lun)) lun++;
      if (lun > LUN_MAX) throw new Error(`every LUN 0-${LUN_MAX} is taken: this vPool serves no more vDisks over iSCSI`);
    }
    this.byUuid.set(uuid, { uuid, vdisk, lun });
    this.nextLun = lun + 1;
    await this.save();
    return lun;
  }

  /** Forgets deleted vDisks (saved when one was recorded). */
  async forget(uuids: readonly string[]): Promise<void> {
    let changed = false;
    for (const uuid of uuids) changed = this.byUuid.delete(uuid) || changed;
    if (changed) await this.save();
  }

  private async save(): Promise<void> {
    const luns = this.assignments();
    const content: LunTableFile = { formatVersion: LUN_TABLE_FORMAT_VERSION, nextLun: this.nextLun, luns, checksum: checksumOf(this.nextLun, luns) };
    await mkdir(path.dirname(this.file), { recursive: true });
    const temporary = `${this.file}.tmp`;
    const handle = await open(temporary, "w");
    try {
      await handle.writeFile(`${JSON.stringify(content, null, 1)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, this.file);
  }
}

/**
 * The block device behind a LUN: the vDisk by name, looked up again when the vPool replaced its
 * Volume (a rollback reopens it), and refused (Closed) once the name belongs to another vDisk or none.
 */
class VdiskLunDevice implements BlockDevice {
  private volume: Volume;

  constructor(private readonly vpool: VPool, readonly name: string, private readonly uuid: string, volume: Volume) {
    this.volume = volume;
  }

  get sizeBytes(): number {
    return this.refreshed()?.sizeBytes ?? this.volume.sizeBytes;
  }

  get readOnly(): boolean {
    return this.refreshed()?.readOnly ?? this.volume.readOnly;
  }

  private refreshed(): Volume | undefined {
    const now = this.vpool.getVolume(this.name);
    if (now === this.volume) return now;
    if (now === undefined || now.info().uuid !== this.uuid) return undefined;
    this.volume = now;
    return now;
  }

  private current(): Volume {
    const volume = this.refreshed();
    if (volume === undefined) throw new VolumeError("Closed", `vDisk ${this.name} is no longer served`);
    return volume;
  }

  read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    return this.current().read(offsetBytes, lengthBytes, into);
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.current().write(offsetBytes, data, options);
  }

  flush(): Promise<void> {
    return this.current().flush();
  }

  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.current().trim(offsetBytes, lengthBytes);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, options?: WriteZeroesOptions): Promise<void> {
    return this.current().writeZeroes(offsetBytes, lengthBytes, options);
  }

  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    return this.current().blockStatus(offsetBytes, lengthBytes);
  }
}

export interface VpoolIscsiTargetOptions {
  vpool: VPool;
  /** The vPool's local directory; the LUN table and reservation files go under DIRECTORY/iscsi. */
  directory: string;
  logger: Logger;
  chap?: IscsiChapSettings;
  allowedInitiators?: readonly string[];
  syncIntervalMs?: number;
}

/** A LUN as the management API and the startup line show it. */
export interface ServedLun {
  vdisk: string;
  lun: number;
  writeProtected: boolean;
}

interface Served {
  uuid: string;
  vdisk: string;
  lun: number;
}

export class VpoolIscsiTarget {
  readonly entry: IscsiTargetEntry;
  private readonly scsiTarget = new ScsiTargetImpl();
  private readonly served = new Map<string, Served>();
  private syncing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(private readonly options: VpoolIscsiTargetOptions, private readonly table: LunTable) {
    this.entry = {
      name: vpoolTargetName(options.vpool.name),
      alias: options.vpool.name,
      scsiTarget: this.scsiTarget,
      ...(options.chap === undefined ? {} : { chap: options.chap }),
      ...(options.allowedInitiators === undefined ? {} : { allowedInitiators: options.allowedInitiators }),
    };
  }

  /** Loads the LUN table, serves every running vDisk and starts the sync timer. */
  static async open(options: VpoolIscsiTargetOptions): Promise<VpoolIscsiTarget> {
    const directory = path.join(options.directory, "iscsi");
    await mkdir(path.join(directory, "reservations"), { recursive: true });
    const target = new VpoolIscsiTarget(options, await LunTable.load(path.join(directory, "luns.json")));
    await target.sync();
    target.timer = setInterval(() => void target.sync(), options.syncIntervalMs ?? LUN_SYNC_INTERVAL_MS);
    target.timer.unref();
    return target;
  }

  get name(): string {
    return this.entry.name;
  }

  /** The LUN of a vDisk served right now. */
  lunOf(vdisk: string): number | undefined {
    for (const served of this.served.values()) if (served.vdisk === vdisk) return served.lun;
    return undefined;
  }

  servedLuns(): ServedLun[] {
    return [...this.served.values()].sort((a, b) => a.lun - b.lun)
      .map(({ vdisk, lun }) => ({ vdisk, lun, writeProtected: this.scsiTarget.logicalUnit(lun)?.writeProtected ?? false }));
  }

  /** Brings the LUNs in line with the vPool's running vDisks; calls run one after another and never reject. */
  sync(): Promise<void> {
    this.syncing = this.syncing.then(() => this.syncOnce()).catch((error: unknown) => {
      this.options.logger.error({ err: error }, "bringing the iSCSI LUNs in line with the vDisks failed; retrying on the next change");
    });
    return this.syncing;
  }

  /** Stops the timer and waits for a sync under way; the server, closed first, has ended the sessions. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.syncing;
  }

  private reservationStatePath(uuid: string): string {
    return path.join(this.options.directory, "iscsi", "reservations", `${uuid}.json`);
  }

  private async syncOnce(): Promise<void> {
    if (this.closed) return;
    const { vpool, logger } = this.options;
    const listed = vpool.listVolumes();
    const running = new Map<string, { info: VolumeInfo; volume: Volume }>();
    for (const info of listed) {
      const volume = info.state === "running" ? vpool.getVolume(info.name) : undefined;
      if (volume !== undefined) running.set(info.uuid, { info, volume });
    }
    for (const [uuid, served] of [...this.served]) {
      if (running.has(uuid)) continue;
      this.scsiTarget.removeLogicalUnit(served.lun);
      this.served.delete(uuid);
      logger.info({ vdisk: served.vdisk, lun: served.lun }, "iSCSI LUN removed");
    }
    for (const [uuid, { info, volume }] of running) {
      if (this.served.has(uuid)) continue;
      const lun = await this.table.assign(uuid, info.name);
      await this.scsiTarget.addLogicalUnit({
        lun,
        device: new VdiskLunDevice(vpool, info.name, uuid, volume),
        serialNumber: serialNumberOf(uuid),
        naaIdentifierHex: naaIdentifierHexOf(uuid),
        reservationStatePath: this.reservationStatePath(uuid),
      });
      this.served.set(uuid, { uuid, vdisk: info.name, lun });
      logger.info({ vdisk: info.name, lun, writeProtected: volume.readOnly }, "iSCSI LUN added");
    }
    // A vDisk no longer listed at all was deleted: its number and its reservations go with it.
    const listedUuids = new Set(listed.map((info) => info.uuid));
    const deleted = this.table.assignments().filter((entry) => !listedUuids.has(entry.uuid)).map((entry) => entry.uuid);
    if (deleted.length > 0) {
      await this.table.forget(deleted);
      await Promise.all(deleted.map((uuid) => rm(this.reservationStatePath(uuid), { force: true })));
    }
  }
}

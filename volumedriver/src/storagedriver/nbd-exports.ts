// The NBD exports of a StorageDriver: one per running vDisk of its vPool, named after the vDisk, and
// one per snapshot of a running vDisk, named VDISK@SNAPSHOT and served read-only. The NBD server
// looks them up on every handshake, so a vDisk or snapshot created through the management API is
// served at once and a deleted or failed one is no longer offered. Connections already open keep
// their device; the engine answers Closed once the vDisk is gone.
//
// A snapshot export is a view the engine opens (vpool.openSnapshot): it is opened when the first
// connection enters transmission on it, shared by every later connection, and closed when the last
// one has closed, or by close() when the StorageDriver stops. The engine closes views itself when
// their snapshot is deleted or their vDisk rolled back or deleted; a view of a snapshot that has
// since been replaced (another uuid, or the vDisk reopened) is not shared further but left to its
// users. Invariant: a view in `views` has at least one user and is the only one of its export name
// that is shared; each view is closed once, by whoever sees its last user go.
import type { Logger } from "pino";
import { type BlockDevice, type BlockExtent, VolumeError } from "../engine/block-device.ts";
import type { SnapshotDevice, SnapshotInfo, Volume, VolumeInfo, VPool } from "../engine/vpool-types.ts";
import type { NbdExport, NbdExportLease, NbdExportRegistry } from "../frontends/nbd/nbd-types.ts";
import { formatSizeBytes } from "./size.ts";
import { SNAPSHOT_SEPARATOR } from "./vdisk-schemas.ts";

export function describeVdiskExport(info: VolumeInfo): string {
  return `vDisk ${info.name} (${formatSizeBytes(info.sizeBytes)}) in vPool ${info.vpool}`;
}

export function describeSnapshotExport(info: VolumeInfo, snapshot: SnapshotInfo): string {
  return `read-only snapshot ${snapshot.name} of vDisk ${info.name} (${formatSizeBytes(snapshot.sizeBytes)}, taken ${snapshot.createdAt}) in vPool ${info.vpool}`;
}

export function snapshotExportName(volume: string, snapshot: string): string {
  return `${volume}${SNAPSHOT_SEPARATOR}${snapshot}`;
}

/** The registry the NBD server uses, plus close() for the StorageDriver's stop. */
export interface VPoolExportRegistry extends NbdExportRegistry {
  /** Snapshot views open right now (for tests and statistics). */
  openSnapshotViewCount(): number;
  /** Refuses new snapshot views and closes the open ones. Call after the NBD server has closed. */
  close(): Promise<void>;
}

interface SnapshotView {
  users: number;
  opening: Promise<SnapshotDevice>;
  /** What it is a view of: a later snapshot of the same name, or a reopened vDisk, needs a new view. */
  snapshotUuid: string;
  volume: Volume | undefined;
  closeStarted: boolean;
}

/** Exports of the vPool's vDisks in state "running", each followed by its snapshots (oldest first). */
export function vpoolExportRegistry(vpool: VPool, logger?: Logger): VPoolExportRegistry {
  const views = new Map<string, SnapshotView>();
  /** Views being closed, by export name: a new view of the same name waits for the old one to close. */
  const closing = new Map<string, Promise<void>>();
  let closed = false;

  const runningVolumeInfo = (name: string): VolumeInfo | undefined => {
    const info = vpool.getVolume(name)?.info();
    return info?.state === "running" ? info : undefined;
  };

  const closeView = (name: string, view: SnapshotView, device: SnapshotDevice, reason: string): void => {
    if (view.closeStarted) return;
    view.closeStarted = true;
    logger?.info({ export: name, reason }, "closing snapshot view");
    const done = device.close()
      .catch((error: unknown) => logger?.warn({ err: error, export: name }, "closing a snapshot view failed"))
      .finally(() => {
        if (closing.get(name) === done) closing.delete(name);
      });
    closing.set(name, done);
  };

  const acquire = async (name: string, volume: string, snapshot: SnapshotInfo): Promise<NbdExportLease> => {
    let view = views.get(name);
    const volumeNow = vpool.getVolume(volume);
    if (view !== undefined && (view.snapshotUuid !== snapshot.uuid || view.volume !== volumeNow)) {
      // Replaced since it was opened: its users keep it (the engine has closed it under them).
      views.delete(name);
      view = undefined;
    }
    if (view === undefined) {
      if (closed) throw new VolumeError("Closed", "the StorageDriver is stopping: snapshot exports are no longer opened");
      const previous = closing.get(name);
      const opening = (async () => {
        await previous;
        return vpool.openSnapshot(volume, snapshot.name);
      })();
      view = { users: 0, opening, snapshotUuid: snapshot.uuid, volume: volumeNow, closeStarted: false };
      views.set(name, view);
      logger?.info({ export: name }, "opening snapshot view for NBD");
    }
    const current = view;
    current.users++;
    let device: SnapshotDevice;
    try {
      device = await current.opening;
    } catch (error) {
      current.users--;
      // The next connection tries again rather than inheriting this failure.
      if (views.get(name) === current) views.delete(name);
      throw error;
    }
    let released = false;
    return {
      device,
      release: () => {
        if (released) return;
        released = true;
        current.users--;
        if (current.users > 0) return;
        if (views.get(name) === current) views.delete(name);
        closeView(name, current, device, "its last NBD connection closed");
      },
    };
  };

  const snapshotExport = (info: VolumeInfo, snapshot: SnapshotInfo): NbdExport => {
    const name = snapshotExportName(info.name, snapshot.name);
    return {
      name,
      description: describeSnapshotExport(info, snapshot),
      device: new UnopenedSnapshotDevice(name, snapshot.sizeBytes),
      open: () => acquire(name, info.name, snapshot),
    };
  };

  const vdiskExport = (info: VolumeInfo): NbdExport[] => {
    const device = vpool.getVolume(info.name);
    return device === undefined ? [] : [{ name: info.name, description: describeVdiskExport(info), device }];
  };

  return {
    listExports(): NbdExport[] {
      return vpool.listVolumes()
        .filter((info) => info.state === "running")
        .flatMap((info) => [...vdiskExport(info), ...vpool.listSnapshots(info.name).map((snapshot) => snapshotExport(info, snapshot))]);
    },

    findExport(name: string): NbdExport | undefined {
      const separator = name.indexOf(SNAPSHOT_SEPARATOR);
      const info = runningVolumeInfo(separator < 0 ? name : name.slice(0, separator));
      if (info === undefined) return undefined;
      if (separator < 0) return vdiskExport(info)[0];
      const snapshotName = name.slice(separator + 1);
      const snapshot = vpool.listSnapshots(info.name).find((candidate) => candidate.name === snapshotName);
      return snapshot === undefined ? undefined : snapshotExport(info, snapshot);
    },

    openSnapshotViewCount: () => views.size,

    async close(): Promise<void> {
      closed = true;
      // Connections release their views as the NBD server closes them; any left are closed here.
      for (const [name, view] of [...views]) {
        views.delete(name);
        try {
          closeView(name, view, await view.opening, "the StorageDriver is stopping");
        } catch {
          // It never opened: nothing to close (the connection that waited for it logged why).
        }
      }
      await Promise.all([...closing.values()]);
    },
  };
}

/**
 * What a snapshot export looks like during the handshake, before its view is open: its size and
 * read-only flag. The NBD connection serves the opened view instead (NbdExport.open), so any I/O
 * here is a bug in the frontend.
 */
class UnopenedSnapshotDevice implements BlockDevice {
  readonly readOnly = true;
  constructor(readonly name: string, readonly sizeBytes: number) {}

  private unopened(): never {
    throw new Error(`bug: I/O on snapshot export ${this.name} before its view was opened`);
  }

  async read(): Promise<Buffer> {
    return this.unopened();
  }

  async write(): Promise<void> {
    return this.unopened();
  }

  async flush(): Promise<void> {
    return this.unopened();
  }

  async trim(): Promise<void> {
    return this.unopened();
  }

  async writeZeroes(): Promise<void> {
    return this.unopened();
  }

  async blockStatus(): Promise<BlockExtent[]> {
    return this.unopened();
  }
}

// A read-only view of one snapshot of a vDisk (served as the NBD export VDISK@SNAP): its own
// metadata, built by replaying the vDisk's history up to the snapshot (after its clone ancestors'),
// in a scratch SQLite file under the vDisk's directory; reads go through the vDisk's engine (local
// SCOs, read cache, backend) with that map. The view is removed when closed.
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ObjectStore } from "../backend/object-store.ts";
import { type BlockExtent, isVolumeError, VolumeError } from "./block-device.ts";
import { snapshotHistory, type SnapshotsManifest } from "./formats/snapshots-manifest.ts";
import { applyAncestors, applyTlogs, resolveAncestors } from "./history.ts";
import { MetadataStore } from "./metadata-store.ts";
import type { VolumeEngine } from "./volume.ts";
import type { SnapshotDevice } from "./vpool-types.ts";

/** Metadata cache of one view: views are for reading whole images, not hot random I/O. */
const VIEW_METADATA_CACHE_BYTES = 8 * 1024 * 1024;
const VIEW_BUILD_ATTEMPTS = 3;

export class SnapshotView implements SnapshotDevice {
  readonly name: string;
  readonly volume: string;
  readonly snapshot: string;
  readonly sizeBytes: number;
  readonly readOnly = true;
  private readonly engine: VolumeEngine;
  private readonly metadata: MetadataStore;
  private readonly path: string;
  private readonly onClose: (view: SnapshotView) => void;
  private closing: Promise<void> | undefined;

  private constructor(engine: VolumeEngine, snapshot: string, sizeBytes: number, metadata: MetadataStore, path: string,
    onClose: (view: SnapshotView) => void) {
    this.engine = engine;
    this.volume = engine.name;
    this.snapshot = snapshot;
    this.name = `${engine.name}@${snapshot}`;
    this.sizeBytes = sizeBytes;
    this.metadata = metadata;
    this.path = path;
    this.onClose = onClose;
  }

  /** Builds the view of snapshot `index` of the manifest. */
  static async open(engine: VolumeEngine, store: ObjectStore, manifest: SnapshotsManifest, index: number,
    onClose: (view: SnapshotView) => void): Promise<SnapshotView> {
    // Counted from the start: this vDisk's garbage must not go while the view is built from its TLogs.
    engine.openViews++;
    const record = manifest.snapshots[index];
    const directory = join(engine.localDirectory, "views");
    for (let attempt = 1; ; attempt++) {
      const path = join(directory, `${record.uuid}-${randomBytes(4).toString("hex")}.sqlite`);
      let metadata: MetadataStore | undefined;
      try {
        await mkdir(directory, { recursive: true });
        metadata = new MetadataStore(path, VIEW_METADATA_CACHE_BYTES);
        // The ancestors' TLog lists as the backend has them now: a scrub of an ancestor replaces them.
        await applyAncestors(store, await resolveAncestors(store, engine.config), metadata);
        const self = { name: engine.name, uuid: engine.config.uuid, namespace: engine.config.namespace };
        await applyTlogs(store, self, snapshotHistory(manifest, index), metadata, 0, { localTlogDirectory: join(engine.localDirectory, "tlog") });
        return new SnapshotView(engine, record.name, record.sizeBytes, metadata, path, onClose);
      } catch (error) {
        metadata?.close();
        await removeViewFiles(path);
        // An ancestor's scrub may have replaced the TLogs read a moment ago: read its history again.
        if (attempt < VIEW_BUILD_ATTEMPTS && isVolumeError(error, "Io") && engine.ancestors.length > 0) continue;
        engine.openViews--;
        throw error;
      }
    }
  }

  private checkRange(offsetBytes: number, lengthBytes: number, operation: string): void {
    if (this.closing !== undefined) throw new VolumeError("Closed", `snapshot view ${this.name} is closed`);
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0
      || offsetBytes + lengthBytes > this.sizeBytes) {
      throw new VolumeError("OutOfRange", `${operation} of ${lengthBytes} bytes at offset ${offsetBytes} is outside snapshot ${this.name} (${this.sizeBytes} bytes)`);
    }
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes, "read");
    return this.engine.readWithLookup((clusterAddress) => this.metadata.lookup(clusterAddress), offsetBytes, lengthBytes);
  }

  private readOnlyError(operation: string): VolumeError {
    return new VolumeError("ReadOnly", `${operation}: snapshot ${this.name} is read-only; clone it to write`);
  }

  async write(): Promise<void> {
    throw this.readOnlyError("write");
  }

  async trim(): Promise<void> {
    throw this.readOnlyError("trim");
  }

  async writeZeroes(): Promise<void> {
    throw this.readOnlyError("write zeroes");
  }

  /** Nothing is ever written, so there is nothing to make durable. */
  async flush(): Promise<void> {
    if (this.closing !== undefined) throw new VolumeError("Closed", `snapshot view ${this.name} is closed`);
  }

  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    this.checkRange(offsetBytes, lengthBytes, "block status");
    return this.metadata.extents(offsetBytes, lengthBytes);
  }

  /** Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.metadata.close();
      this.engine.openViews--;
      await removeViewFiles(this.path);
      this.onClose(this);
    })();
    return this.closing;
  }
}

async function removeViewFiles(path: string): Promise<void> {
  for (const suffix of ["", "-wal", "-shm"]) await rm(`${path}${suffix}`, { force: true });
}

// The NBD exports of a StorageDriver: one per running vDisk of its vPool, named after the vDisk.
// The NBD server looks them up on every handshake, so a vDisk created through the management API is
// served at once and a deleted or failed one is no longer offered. Connections already open keep
// their device; the engine answers Closed once the vDisk is gone.
import type { VolumeInfo, VPool } from "../engine/vpool-types.ts";
import type { NbdExport, NbdExportRegistry } from "../frontends/nbd/nbd-types.ts";
import { formatSizeBytes } from "./size.ts";

export function describeVdiskExport(info: VolumeInfo): string {
  return `vDisk ${info.name} (${formatSizeBytes(info.sizeBytes)}) in vPool ${info.vpool}`;
}

/** Exports of the vPool's vDisks in state "running", in name order. */
export function vpoolExportRegistry(vpool: VPool): NbdExportRegistry {
  return {
    listExports(): NbdExport[] {
      return vpool.listVolumes()
        .filter((info) => info.state === "running")
        .flatMap((info) => {
          const device = vpool.getVolume(info.name);
          return device === undefined ? [] : [{ name: info.name, description: describeVdiskExport(info), device }];
        });
    },
    findExport(name: string): NbdExport | undefined {
      const device = vpool.getVolume(name);
      if (device === undefined) {
        return undefined;
      }
      const info = device.info();
      return info.state === "running" ? { name, description: describeVdiskExport(info), device } : undefined;
    },
  };
}

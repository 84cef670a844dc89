// Goal: one place that brings up a real vPool (MemoryObjectStore backend, temp directory), real
// volumes and an NBD server on a free loopback port for the NBD tests, and takes them down again.
import pino from "pino";
import { MemoryObjectStore } from "../../../../volumedriver/src/backend/memory-store.ts";
import { type BlockDevice, type BlockExtent, VolumeError, type WriteOptions, type WriteZeroesOptions } from "../../../../volumedriver/src/engine/block-device.ts";
import { openVPool } from "../../../../volumedriver/src/engine/vpool.ts";
import { MIB, type Volume, type VPool, type VPoolConfig } from "../../../../volumedriver/src/engine/vpool-types.ts";
import { startNbdServer } from "../../../../volumedriver/src/frontends/nbd/nbd-server.ts";
import type { NbdExport, NbdExportRegistry, NbdServer, NbdServerSettings } from "../../../../volumedriver/src/frontends/nbd/nbd-types.ts";
import { TempDirs } from "../../../helpers/temp-dir.ts";

/** A read-only view of a device (the engine has no read-only volumes yet: snapshots will be). */
export class ReadOnlyDevice implements BlockDevice {
  readonly readOnly = true;
  constructor(private readonly inner: BlockDevice) {}
  get name(): string {
    return this.inner.name;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.inner.read(offsetBytes, lengthBytes);
  }
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    return this.inner.blockStatus(offsetBytes, lengthBytes);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  async write(): Promise<void> {
    throw new VolumeError("ReadOnly", "read-only device");
  }
  async trim(): Promise<void> {
    throw new VolumeError("ReadOnly", "read-only device");
  }
  async writeZeroes(): Promise<void> {
    throw new VolumeError("ReadOnly", "read-only device");
  }
}

/**
 * A device wrapper for tests that need control below the frontend: delays, injected failures, and
 * the highest number of operations it saw running at once.
 */
export class ControlledDevice implements BlockDevice {
  readonly readOnly = false;
  /** Delay before an operation starts, by its offset. */
  delayMs: (operation: string, offsetBytes: number) => number = () => 0;
  /** An error to throw instead of running the operation. */
  failure: (operation: string, offsetBytes: number) => Error | undefined = () => undefined;
  running = 0;
  runningMax = 0;
  constructor(private readonly inner: BlockDevice) {}
  get name(): string {
    return this.inner.name;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  private async run<T>(operation: string, offsetBytes: number, work: () => Promise<T>): Promise<T> {
    this.running++;
    this.runningMax = Math.max(this.runningMax, this.running);
    try {
      const delayMs = this.delayMs(operation, offsetBytes);
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      const failure = this.failure(operation, offsetBytes);
      if (failure !== undefined) throw failure;
      return await work();
    } finally {
      this.running--;
    }
  }
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.run("read", offsetBytes, () => this.inner.read(offsetBytes, lengthBytes));
  }
  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.run("write", offsetBytes, () => this.inner.write(offsetBytes, data, options));
  }
  flush(): Promise<void> {
    return this.run("flush", 0, () => this.inner.flush());
  }
  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.run("trim", offsetBytes, () => this.inner.trim(offsetBytes, lengthBytes));
  }
  writeZeroes(offsetBytes: number, lengthBytes: number, options?: WriteZeroesOptions): Promise<void> {
    return this.run("writeZeroes", offsetBytes, () => this.inner.writeZeroes(offsetBytes, lengthBytes, options));
  }
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    return this.run("blockStatus", offsetBytes, () => this.inner.blockStatus(offsetBytes, lengthBytes));
  }
}

/** A registry over a mutable map, as the StorageDriver's will be. */
export class MapRegistry implements NbdExportRegistry {
  readonly exports = new Map<string, NbdExport>();
  listExports(): NbdExport[] {
    return [...this.exports.values()];
  }
  findExport(name: string): NbdExport | undefined {
    return this.exports.get(name);
  }
  add(name: string, device: BlockDevice, description = `vDisk ${name}`): void {
    this.exports.set(name, { name, description, device });
  }
}

export const NBD_TEST_DEVICE_SIZE_BYTES = 16 * MIB;

export interface NbdFixture {
  vpool: VPool;
  backend: MemoryObjectStore;
  directory: string;
  registry: MapRegistry;
  server: NbdServer;
  port: number;
  vpoolConfig: VPoolConfig;
  volume: Volume;
  /** The export "disk0-controlled": disk0 behind a ControlledDevice. */
  controlled: ControlledDevice;
  /** Closes the server, the vPool (unless already crashed/closed) and the backend. */
  close(): Promise<void>;
}

export function testLogger(): pino.Logger {
  return pino({ level: process.env.NBD_TEST_LOG ?? "silent" });
}

/**
 * vPool "nbd" with vDisk "disk0" (16 MiB), a read-only export "disk0-ro" and a ControlledDevice
 * export "disk0-controlled" of the same volume, served on 127.0.0.1 with a free port.
 */
export async function startNbdFixture(tempDirs: TempDirs, settings: Partial<NbdServerSettings> = {}): Promise<NbdFixture> {
  const backend = new MemoryObjectStore();
  const directory = await tempDirs.make();
  const vpoolConfig: VPoolConfig = { name: "nbd", directory, backend, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 60_000 };
  const vpool = await openVPool(vpoolConfig);
  const volume = await vpool.createVolume("disk0", NBD_TEST_DEVICE_SIZE_BYTES);
  const registry = new MapRegistry();
  registry.add("disk0", volume, "the first test vDisk");
  registry.add("disk0-ro", new ReadOnlyDevice(volume), "read-only view of disk0");
  const controlled = new ControlledDevice(volume);
  registry.add("disk0-controlled", controlled, "disk0 with test hooks");
  const server = await startNbdServer(registry, { host: "127.0.0.1", port: 0, logger: testLogger(), ...settings });
  let closed = false;
  return {
    vpool, backend, directory, registry, server, port: server.port, vpoolConfig, volume, controlled,
    close: async () => {
      if (closed) return;
      closed = true;
      await server.close();
      await vpool.close();
      await backend.close();
    },
  };
}

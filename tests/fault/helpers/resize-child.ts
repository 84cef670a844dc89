// Child process of tests/fault/resize-crash.test.ts: opens the vPool, writes past the vDisk's current
// end once it has grown it (so the test can tell whether the write's range exists after the kill),
// and sets a per-vDisk override. The test sets OVS_CRASH_AT to kill it between the steps of storing
// the new volume.json (engine/vpool.ts updateConfig), or kills it at a random time; it never exits
// on its own.
import { LocalObjectStore } from "../../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";

export interface ResizeChildArguments {
  vpoolDirectory: string;
  backendDirectory: string;
  vpoolName: string;
  volumeName: string;
  scoSizeBytes: number;
  /** The size to grow to; the child then writes `fill` into its last MiB and flushes. */
  sizeBytes: number;
  fill: number;
}

const parsed = JSON.parse(process.argv[2]) as ResizeChildArguments;
const backend = await LocalObjectStore.open(parsed.backendDirectory);
const vpool = await openVPool({ name: parsed.vpoolName, directory: parsed.vpoolDirectory, backend, scoSizeBytes: parsed.scoSizeBytes });
process.stdout.write("ready\n");
await vpool.resizeVolume(parsed.volumeName, parsed.sizeBytes);
process.stdout.write("resized\n");
const volume = vpool.getVolume(parsed.volumeName)!;
await volume.write(parsed.sizeBytes - 1024 * 1024, Buffer.alloc(1024 * 1024, parsed.fill));
await volume.flush();
process.stdout.write("written\n");
await vpool.setVolumeOverrides(parsed.volumeName, { scoMaxAgeMs: 1000 + parsed.fill });
process.stdout.write("configured\n");
// Stays until killed, as runUntilKilled (crash-rounds.ts) expects of its children.
await new Promise(() => {});

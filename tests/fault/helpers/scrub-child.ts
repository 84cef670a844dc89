// Child process of tests/fault/scrub-crash.test.ts: opens the vPool and scrubs one vDisk. The test
// sets OVS_CRASH_AT to make it kill itself at a step of the scrub, or kills it at a random time.
import { LocalObjectStore } from "../../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../../volumedriver/src/engine/vpool.ts";

export interface ScrubChildArguments {
  vpoolDirectory: string;
  backendDirectory: string;
  vpoolName: string;
  volumeName: string;
  scoSizeBytes: number;
}

const parsed = JSON.parse(process.argv[2]) as ScrubChildArguments;
const backend = await LocalObjectStore.open(parsed.backendDirectory);
const vpool = await openVPool({
  name: parsed.vpoolName, directory: parsed.vpoolDirectory, backend, scoSizeBytes: parsed.scoSizeBytes, scrubGracePeriodMs: 0,
});
process.stdout.write("ready\n");
const result = await vpool.scrubVolume(parsed.volumeName);
process.stdout.write(`scrubbed ${JSON.stringify(result)}\n`);
await vpool.close();
await backend.close();

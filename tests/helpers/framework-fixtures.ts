// Pieces several framework tests share: a StorageDriver client that reaches nothing (port 1 on
// loopback, so a request that passes the framework's own checks fails with 503), and the cleanup of
// an `ovs up` a test started (SIGINT and wait, else SIGKILL; then its StorageDriver by PID file).
import { readdirSync } from "node:fs";
import path from "node:path";
import { StorageDriverClient } from "../../framework/src/api/storagedriver-client.ts";
import { readPidFile } from "../../framework/src/cluster/pid-file.ts";
import { type ChildHarness, killPid } from "./process-harness.ts";

export function unreachableStorageDriver(): StorageDriverClient {
  return new StorageDriverClient({ vpool: "vpool1", baseUrl: "http://127.0.0.1:1", logHint: "the storagedriver log", requestTimeoutMs: 5_000 });
}

/** Stops an `ovs up` started by a test, whatever state it is in, and its StorageDrivers (every vPool's) by PID. */
export async function stopOvsUp(cluster: ChildHarness | undefined, dataDirectory: string | undefined): Promise<void> {
  if (cluster?.running) {
    killPid(cluster.pid, "SIGINT");
    await cluster.waitForExit(30_000).catch(async () => cluster.killHard());
  }
  if (dataDirectory !== undefined) {
    const directory = path.join(dataDirectory, "storagedrivers");
    let names: string[] = [];
    try {
      names = readdirSync(directory).filter((name) => name.endsWith(".pid"));
    } catch {
      // No StorageDriver was ever started.
    }
    for (const name of names) {
      const pid = readPidFile(path.join(directory, name));
      if (pid !== undefined) killPid(pid, "SIGKILL");
    }
  }
}

// `ovs vdisk snapshot | snapshots | rm-snapshot | rollback | scrub`: the snapshot side of a vDisk,
// over the framework API. A scrub runs as a task of the StorageDriver: the command follows it
// (task-commands.ts) unless --no-wait.
import type { Command } from "commander";
import { formatSizeBytes } from "../../../volumedriver/src/storagedriver/size.ts";
import { apiClientOf, vdiskPath } from "./api-client.ts";
import { formatTable } from "./table.ts";
import { followTask, type TaskInfo } from "./task-commands.ts";
import type { Print, Run, VdiskInfo } from "./vdisk-commands.ts";

/** A snapshot as GET /api/vdisks/:name/snapshots lists it. */
interface SnapshotInfo {
  name: string;
  createdAt: string;
  sizeBytes: number;
  synced: boolean;
  clones: string[];
}

/** What a scrub task's result holds (volumedriver ScrubResult). */
interface ScrubResult {
  scosRewritten: number;
  objectsCollected: number;
  backendBytesBefore: number;
  backendBytesAfter: number;
}

function snapshotPath(vdisk: string, snapshot: string): string {
  return `${vdiskPath(vdisk)}/snapshots/${encodeURIComponent(snapshot)}`;
}

export function registerSnapshotCommands(vdisk: Command, run: Run, print: Print): void {
  vdisk.command("snapshot")
    .description("take a snapshot of a vDisk (instant; it reaches the backend with the data it covers)")
    .argument("<name>", "vDisk name")
    .argument("<snapshot>", "snapshot name: 1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    .action((name: string, snapshot: string, _options: unknown, command: Command) => run(async () => {
      const taken = await apiClientOf(command).request("POST", `${vdiskPath(name)}/snapshots`, { name: snapshot }) as SnapshotInfo;
      print(`took snapshot ${taken.name} of vDisk ${name} (${formatSizeBytes(taken.sizeBytes)}); over NBD it is the read-only export ${name}@${taken.name}`);
    }));

  vdisk.command("snapshots")
    .description("list the snapshots of a vDisk, oldest first")
    .argument("<name>", "vDisk name")
    .option("--json", "print the API's JSON instead of a table")
    .action((name: string, options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await apiClientOf(command).request("GET", `${vdiskPath(name)}/snapshots`) as { snapshots: SnapshotInfo[] };
      if (options.json === true) {
        print(JSON.stringify(listed.snapshots, null, 2));
        return;
      }
      if (listed.snapshots.length === 0) {
        print(`vDisk ${name} has no snapshots: take one with \`ovs vdisk snapshot ${name} SNAPSHOT\``);
        return;
      }
      const rows = listed.snapshots.map((snapshot) => [snapshot.name, snapshot.createdAt, formatSizeBytes(snapshot.sizeBytes),
        snapshot.synced ? "yes" : "no", snapshot.clones.length === 0 ? "-" : snapshot.clones.join(",")]);
      print(formatTable(["name", "created", "size", "synced", "clones"], rows));
    }));

  vdisk.command("rm-snapshot")
    .description("delete a snapshot (refused while vDisks are cloned from it); a scrub reclaims its space")
    .argument("<name>", "vDisk name")
    .argument("<snapshot>", "snapshot name")
    .action((name: string, snapshot: string, _options: unknown, command: Command) => run(async () => {
      await apiClientOf(command).request("DELETE", snapshotPath(name, snapshot));
      print(`removed snapshot ${snapshot} of vDisk ${name}: run \`ovs vdisk scrub ${name}\` to reclaim its space on the backend`);
    }));

  vdisk.command("rollback")
    .description("roll a vDisk back to a snapshot: later writes and later snapshots are gone (disconnect its NBD clients first)")
    .argument("<name>", "vDisk name")
    .argument("<snapshot>", "snapshot name")
    .action((name: string, snapshot: string, _options: unknown, command: Command) => run(async () => {
      const info = await apiClientOf(command).request("POST", `${vdiskPath(name)}/rollback`, { snapshot }) as VdiskInfo;
      print(`rolled vDisk ${info.name} back to snapshot ${snapshot} (${info.snapshotCount ?? 0} snapshots left)`);
    }));

  vdisk.command("scrub")
    .description("scrub a vDisk: rewrite its sparse SCOs and collect the garbage of deleted snapshots and overwrites")
    .argument("<name>", "vDisk name")
    .option("--no-wait", "print the task id and return at once (follow it with `ovs task show ID`)")
    .action((name: string, options: { wait: boolean }, command: Command) => run(async () => {
      const client = apiClientOf(command);
      const started = await client.request("POST", `${vdiskPath(name)}/scrub`, {}) as { task: TaskInfo };
      if (!options.wait) {
        print(started.task.id);
        return;
      }
      const finished = await followTask(client, started.task, `scrub ${name}`);
      print(scrubSummary(name, finished));
    }));
}

function scrubSummary(name: string, task: TaskInfo): string {
  const result = task.result as Partial<ScrubResult> | undefined;
  const seconds = task.startedAt !== undefined && task.finishedAt !== undefined
    ? ` in ${((Date.parse(task.finishedAt) - Date.parse(task.startedAt)) / 1000).toFixed(1)} s` : "";
  if (result?.backendBytesBefore === undefined || result.backendBytesAfter === undefined) {
    return `scrubbed vDisk ${name}${seconds} (task ${task.id})`;
  }
  return `scrubbed vDisk ${name}${seconds}: ${result.scosRewritten ?? 0} SCOs rewritten, ${result.objectsCollected ?? 0} backend objects collected, `
    + `backend ${formatSizeBytes(result.backendBytesBefore)} -> ${formatSizeBytes(result.backendBytesAfter)} (task ${task.id})`;
}

// `ovs vpool ...`: create, ls, show and rm vPools through the framework API. Creating and deleting
// are tasks (the StorageDriver starts or stops): the command follows them with a progress bar
// unless --no-wait.
import type { Command } from "commander";
import { formatSizeBytes, parseSizeBytes, SizeError } from "../../../volumedriver/src/storagedriver/size.ts";
import { apiClientOf, CliError, type FrameworkApiClient } from "./api-client.ts";
import { formatKeyValues, formatTable } from "./table.ts";
import { followTask, type TaskInfo } from "./task-commands.ts";
import type { Print, Run } from "./vdisk-commands.ts";

interface StorageDriverInfo {
  storageRouter: string; managementPort: number; nbdPort: number; iscsiPort: number; status: string;
  managementUrl?: string; nbdUrl?: string; iscsiUrl?: string; reason?: string;
}

interface VPoolInfo {
  name: string; backend: string; scoSizeBytes: number; writeBufferSizeBytes: number; readCacheSizeBytes: number;
  compression: string; encryption: { keyFile: string } | { keyEnv: string } | null; primary: boolean; createdAt: string; schedules?: Record<string, unknown>;
  storagedrivers: StorageDriverInfo[];
}

function vpoolPath(name: string): string {
  return `/vpools/${encodeURIComponent(name)}`;
}

function sizeOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseSizeBytes(value);
  } catch (error) {
    throw error instanceof SizeError ? new CliError(`--${name}: ${error.message}`) : error;
  }
}

function encryptionText(vpool: VPoolInfo): string {
  if (vpool.encryption === null) return "none";
  return "keyFile" in vpool.encryption ? `aes-256 (key file ${vpool.encryption.keyFile})` : `aes-256 (key in $${vpool.encryption.keyEnv})`;
}

async function followOrPrint(client: FrameworkApiClient, task: TaskInfo, label: string, wait: boolean, print: Print): Promise<TaskInfo | undefined> {
  if (!wait) {
    print(`${label}: task ${task.id} (\`ovs task show ${task.id}\`)`);
    return undefined;
  }
  return followTask(client, task, label);
}

export function registerVpoolCommands(program: Command, run: Run, print: Print): void {
  const vpool = program.command("vpool").description("manage vPools: sets of vDisks on one backend, each served by its own StorageDriver");

  vpool.command("create")
    .description("create a vPool on a backend (`ovs backend ls`) and start its StorageDriver")
    .argument("<name>", "1-63 characters of a-z, 0-9, '_' and '-'")
    .requiredOption("--backend <name>", "the backend its vDisks are stored on")
    .option("--sco-size <size>", "storage container object size (4M-128M, default 64M)")
    .option("--write-buffer <size>", "local write buffer (at least 2 SCOs, default 1G)")
    .option("--read-cache <size>", "read cache (default 256M)")
    .option("--compression <codec>", "none, lz4 or snappy (default none)")
    .option("--key-file <file>", "encrypt with AES-256: the file holding the key as 64 hex digits (absolute path)")
    .option("--key-env <variable>", "encrypt with AES-256: the environment variable of the StorageDriver holding the key")
    .option("--no-wait", "return once the task is started")
    .option("--json", "print the vPool as JSON")
    .action((name: string, options: { backend: string; scoSize?: string; writeBuffer?: string; readCache?: string; compression?: string; keyFile?: string; keyEnv?: string; wait: boolean; json?: boolean }, command: Command) => run(async () => {
      if (options.keyFile !== undefined && options.keyEnv !== undefined) throw new CliError("give --key-file or --key-env, not both");
      const scoSizeBytes = sizeOption("sco-size", options.scoSize);
      const writeBufferSizeBytes = sizeOption("write-buffer", options.writeBuffer);
      const readCacheSizeBytes = sizeOption("read-cache", options.readCache);
      const body = {
        name, backend: options.backend,
        ...(scoSizeBytes === undefined ? {} : { scoSizeBytes }),
        ...(writeBufferSizeBytes === undefined ? {} : { writeBufferSizeBytes }),
        ...(readCacheSizeBytes === undefined ? {} : { readCacheSizeBytes }),
        ...(options.compression === undefined ? {} : { compression: options.compression }),
        ...(options.keyFile === undefined ? {} : { encryption: { keyFile: options.keyFile } }),
        ...(options.keyEnv === undefined ? {} : { encryption: { keyEnv: options.keyEnv } }),
      };
      const client = apiClientOf(command);
      const created = await client.request("POST", "/vpools", body) as { vpool: VPoolInfo; task: TaskInfo };
      const finished = await followOrPrint(client, created.task, `create vPool ${name}`, options.wait, print);
      if (finished === undefined) return;
      const info = await client.request("GET", vpoolPath(name)) as VPoolInfo;
      if (options.json === true) return print(JSON.stringify(info, null, 2));
      const driver = info.storagedrivers[0];
      print(`created vPool ${name} on backend ${info.backend}: NBD ${driver?.nbdUrl ?? "-"}, iSCSI ${driver?.iscsiUrl ?? "-"}`);
    }));

  vpool.command("ls")
    .alias("list")
    .description("list the vPools")
    .option("--json", "print the API's JSON instead of a table")
    .action((options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await apiClientOf(command).request("GET", "/vpools") as { vpools: VPoolInfo[] };
      if (options.json === true) return print(JSON.stringify(listed.vpools, null, 2));
      print(formatTable(["name", "backend", "status", "nbd", "iscsi", "sco", "write buffer", "read cache"], listed.vpools.map((info) => {
        const driver = info.storagedrivers[0];
        return [
          `${info.name}${info.primary ? " (first)" : ""}`, info.backend, driver?.status ?? "-", driver?.nbdUrl ?? `port ${driver?.nbdPort ?? "-"}`,
          driver?.iscsiUrl ?? `port ${driver?.iscsiPort ?? "-"}`, formatSizeBytes(info.scoSizeBytes), formatSizeBytes(info.writeBufferSizeBytes), formatSizeBytes(info.readCacheSizeBytes),
        ];
      })));
    }));

  vpool.command("show")
    .description("show a vPool: settings, StorageDriver ports and addresses")
    .argument("<name>", "vPool name")
    .option("--json", "print the API's JSON")
    .action((name: string, options: { json?: boolean }, command: Command) => run(async () => {
      const info = await apiClientOf(command).request("GET", vpoolPath(name)) as VPoolInfo;
      if (options.json === true) return print(JSON.stringify(info, null, 2));
      const lines: Array<[string, string]> = [
        ["name", info.name], ["backend", info.backend], ["first vPool", info.primary ? "yes" : "no"],
        ["sco size", formatSizeBytes(info.scoSizeBytes)], ["write buffer", formatSizeBytes(info.writeBufferSizeBytes)], ["read cache", formatSizeBytes(info.readCacheSizeBytes)],
        ["compression", info.compression], ["encryption", encryptionText(info)], ["created", info.createdAt],
        ["schedules", Object.keys(info.schedules ?? {}).length === 0 ? "the cluster's" : JSON.stringify(info.schedules)],
      ];
      for (const driver of info.storagedrivers) {
        lines.push([`storagedriver ${driver.storageRouter}`, `${driver.status}${driver.reason === undefined ? "" : ` (${driver.reason})`}`]);
        lines.push(["  management", driver.managementUrl ?? `port ${driver.managementPort}`]);
        lines.push(["  nbd", driver.nbdUrl ?? `port ${driver.nbdPort}`]);
        lines.push(["  iscsi", driver.iscsiUrl ?? `port ${driver.iscsiPort}`]);
      }
      print(formatKeyValues(lines));
    }));

  vpool.command("set")
    .description("change a vPool's sizes; its StorageDriver takes them at once (no restart); a new SCO size is for new vDisks")
    .argument("<name>", "vPool name")
    .option("--sco-size <size>", "storage container object size of new vDisks (4M-128M)")
    .option("--write-buffer <size>", "local write buffer (at least 2 SCOs)")
    .option("--read-cache <size>", "read cache (0 for none)")
    .option("--schedules <json>", `the vPool's own schedules, whole: '{"snapshots": {"everyMinutes": 15}, "scrub": null}' (null: off for it; '{}': follow the cluster)`)
    .option("--json", "print the vPool as JSON")
    .action((name: string, options: { scoSize?: string; writeBuffer?: string; readCache?: string; schedules?: string; json?: boolean }, command: Command) => run(async () => {
      const scoSizeBytes = sizeOption("sco-size", options.scoSize);
      const writeBufferSizeBytes = sizeOption("write-buffer", options.writeBuffer);
      const readCacheSizeBytes = sizeOption("read-cache", options.readCache);
      let schedules: unknown;
      if (options.schedules !== undefined) {
        try {
          schedules = JSON.parse(options.schedules);
        } catch (error) {
          throw new CliError(`--schedules: not JSON (${(error as Error).message}); write it like '{"snapshots": {"hourlyAtMinute": 15}}'`);
        }
      }
      if (scoSizeBytes === undefined && writeBufferSizeBytes === undefined && readCacheSizeBytes === undefined && schedules === undefined) {
        throw new CliError("give what to change: --sco-size, --write-buffer, --read-cache and/or --schedules");
      }
      const info = await apiClientOf(command).request("PATCH", vpoolPath(name), {
        ...(scoSizeBytes === undefined ? {} : { scoSizeBytes }),
        ...(writeBufferSizeBytes === undefined ? {} : { writeBufferSizeBytes }),
        ...(readCacheSizeBytes === undefined ? {} : { readCacheSizeBytes }),
        ...(schedules === undefined ? {} : { schedules }),
      }) as VPoolInfo;
      if (options.json === true) return print(JSON.stringify(info, null, 2));
      print(`vPool ${name}: sco size ${formatSizeBytes(info.scoSizeBytes)}, write buffer ${formatSizeBytes(info.writeBufferSizeBytes)}, read cache ${formatSizeBytes(info.readCacheSizeBytes)}`);
    }));

  vpool.command("rm")
    .alias("delete")
    .description("stop a vPool's StorageDriver and forget the vPool (refused while it holds vDisks)")
    .argument("<name>", "vPool name")
    .option("--no-wait", "return once the task is started")
    .action((name: string, options: { wait: boolean }, command: Command) => run(async () => {
      const client = apiClientOf(command);
      const deleted = await client.request("DELETE", vpoolPath(name)) as { task: TaskInfo };
      if (await followOrPrint(client, deleted.task, `delete vPool ${name}`, options.wait, print) !== undefined) print(`deleted vPool ${name}`);
    }));
}

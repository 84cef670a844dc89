// `ovs vdisk ...`: create, ls, show and rm over the framework API.
import type { Command } from "commander";
import { formatSizeBytes, parseVdiskSizeBytes, SizeError } from "../../../volumedriver/src/storagedriver/size.ts";
import { CliError, FrameworkApiClient } from "./api-client.ts";
import { formatTable } from "./table.ts";

/** The fields of a vDisk the CLI shows; the API returns more (see GET /api/vdisks/:name). */
interface VdiskInfo {
  name: string;
  vpool: string;
  sizeBytes: number;
  state: string;
  createdAt: string;
  uuid?: string;
  namespace?: string;
  stats?: Record<string, number>;
}

type Print = (text: string) => void;

export function registerVdiskCommands(program: Command, run: (action: () => Promise<void>) => Promise<void>, print: Print): void {
  const clientOf = (command: Command): FrameworkApiClient => new FrameworkApiClient(command.optsWithGlobals<{ api: string }>().api);
  const vdisk = program.command("vdisk").description("manage vDisks through the framework API");

  vdisk.command("create")
    .description("create a thin vDisk")
    .argument("<name>", "1-63 characters of a-z, 0-9, '_' and '-'")
    .requiredOption("--size <size>", "size: bytes, or with a binary unit (10G, 512M; a multiple of 4 KiB)")
    .action((name: string, options: { size: string }, command: Command) => run(async () => {
      let sizeBytes: number;
      try {
        sizeBytes = parseVdiskSizeBytes(options.size);
      } catch (error) {
        throw error instanceof SizeError ? new CliError(`--size: ${error.message}`) : error;
      }
      const created = await clientOf(command).request("POST", "/vdisks", { name, size: sizeBytes }) as VdiskInfo;
      print(`created vDisk ${created.name} (${formatSizeBytes(created.sizeBytes)}) in vPool ${created.vpool}`);
    }));

  vdisk.command("ls")
    .alias("list")
    .description("list the vDisks")
    .option("--json", "print the API's JSON instead of a table")
    .action((options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await clientOf(command).request("GET", "/vdisks") as { vdisks: VdiskInfo[] };
      if (options.json === true) {
        print(JSON.stringify(listed.vdisks, null, 2));
        return;
      }
      if (listed.vdisks.length === 0) {
        print("no vDisks: create one with `ovs vdisk create NAME --size 10G`");
        return;
      }
      const rows = [...listed.vdisks]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((info) => [info.name, formatSizeBytes(info.sizeBytes), info.state, info.vpool, info.createdAt]);
      print(formatTable(["name", "size", "state", "vpool", "created"], rows));
    }));

  vdisk.command("show")
    .description("show a vDisk and its statistics")
    .argument("<name>", "vDisk name")
    .option("--json", "print the API's JSON")
    .action((name: string, options: { json?: boolean }, command: Command) => run(async () => {
      const info = await clientOf(command).request("GET", `/vdisks/${encodeURIComponent(name)}`) as VdiskInfo;
      if (options.json === true) {
        print(JSON.stringify(info, null, 2));
        return;
      }
      const lines: Array<[string, string]> = [
        ["name", info.name], ["vpool", info.vpool], ["size", `${formatSizeBytes(info.sizeBytes)} (${info.sizeBytes} bytes)`],
        ["state", info.state], ["created", info.createdAt],
      ];
      if (info.uuid !== undefined) lines.push(["uuid", info.uuid]);
      if (info.namespace !== undefined) lines.push(["namespace", info.namespace]);
      for (const [key, value] of Object.entries(info.stats ?? {})) {
        lines.push([`stats.${key}`, String(value)]);
      }
      const width = Math.max(...lines.map(([key]) => key.length));
      print(lines.map(([key, value]) => `${key.padEnd(width)}  ${value}`).join("\n"));
    }));

  vdisk.command("rm")
    .alias("remove")
    .description("delete a vDisk and its data on the backend")
    .argument("<name>", "vDisk name")
    .action((name: string, _options: unknown, command: Command) => run(async () => {
      await clientOf(command).request("DELETE", `/vdisks/${encodeURIComponent(name)}`);
      print(`removed vDisk ${name}`);
    }));
}

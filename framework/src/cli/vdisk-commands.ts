// `ovs vdisk ...`: create, clone, ls, show, rm, set-template over the framework API. Snapshots,
// rollback and scrub are in snapshot-commands.ts, resize and config in vdisk-config-commands.ts, on
// the same `vdisk` command.
import type { Command } from "commander";
import { formatSizeBytes, parseVdiskSizeBytes, SizeError } from "../../../volumedriver/src/storagedriver/size.ts";
import { apiClientOf, CliError, vdiskPath } from "./api-client.ts";
import { formatKeyValues, formatTable } from "./table.ts";

/** The fields of a vDisk the CLI shows; the API returns more (see GET /api/vdisks/:name). */
export interface VdiskInfo {
  name: string;
  vpool: string;
  sizeBytes: number;
  state: string;
  createdAt: string;
  uuid?: string;
  namespace?: string;
  error?: string;
  template?: boolean;
  parent?: { volume: string; snapshot: string };
  snapshotCount?: number;
  scrubPending?: boolean;
  stats?: Record<string, unknown>;
  /** Settings the vDisk sets itself (ovs vdisk config). */
  overrides?: Record<string, number>;
  /** Where the vDisk is served over iSCSI (details only). */
  iscsi?: { target: string; lun: number; url: string };
}

export type Print = (text: string) => void;
export type Run = (action: () => Promise<void>) => Promise<void>;

function parentText(info: VdiskInfo): string {
  return info.parent === undefined ? "-" : `${info.parent.volume}@${info.parent.snapshot}`;
}

function yesNo(value: boolean | undefined): string {
  return value === true ? "yes" : "no";
}

/** Registers `ovs vdisk` and its vDisk commands; returns it so other files can add theirs. */
export function registerVdiskCommands(program: Command, run: Run, print: Print): Command {
  const vdisk = program.command("vdisk").description("manage vDisks, their snapshots and clones through the framework API");

  vdisk.command("create")
    .description("create a thin vDisk")
    .argument("<name>", "1-63 characters of a-z, 0-9, '_' and '-'")
    .requiredOption("--size <size>", "size: bytes, or with a binary unit (10G, 512M; a multiple of 4 KiB)")
    .option("--vpool <vpool>", "the vPool to create it in (default: the first vPool; `ovs vpool ls` lists them)")
    .action((name: string, options: { size: string; vpool?: string }, command: Command) => run(async () => {
      let sizeBytes: number;
      try {
        sizeBytes = parseVdiskSizeBytes(options.size);
      } catch (error) {
        throw error instanceof SizeError ? new CliError(`--size: ${error.message}`) : error;
      }
      const query = options.vpool === undefined ? "" : `?vpool=${encodeURIComponent(options.vpool)}`;
      const created = await apiClientOf(command).request("POST", `/vdisks${query}`, { name, size: sizeBytes }) as VdiskInfo;
      print(`created vDisk ${created.name} (${formatSizeBytes(created.sizeBytes)}) in vPool ${created.vpool}`);
    }));

  vdisk.command("clone")
    .description("create a vDisk from a snapshot (zero copy: unwritten data is read from the snapshot)")
    .argument("<name>", "name of the new vDisk")
    .requiredOption("--from <parent>", "VDISK@SNAPSHOT, or VDISK for the latest snapshot of a template")
    .action((name: string, options: { from: string }, command: Command) => run(async () => {
      const created = await apiClientOf(command).request("POST", "/vdisks", { name, parent: options.from }) as VdiskInfo;
      print(`cloned vDisk ${created.name} (${formatSizeBytes(created.sizeBytes)}) from ${parentText(created)} in vPool ${created.vpool}`);
    }));

  vdisk.command("ls")
    .alias("list")
    .description("list the vDisks")
    .option("--json", "print the API's JSON instead of a table")
    .action((options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await apiClientOf(command).request("GET", "/vdisks") as { vdisks: VdiskInfo[] };
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
        .map((info) => [info.name, formatSizeBytes(info.sizeBytes), info.state, String(info.snapshotCount ?? 0), yesNo(info.template),
          parentText(info), info.vpool, info.createdAt]);
      print(formatTable(["name", "size", "state", "snapshots", "template", "parent", "vpool", "created"], rows));
    }));

  vdisk.command("show")
    .description("show a vDisk and its statistics")
    .argument("<name>", "vDisk name")
    .option("--json", "print the API's JSON")
    .action((name: string, options: { json?: boolean }, command: Command) => run(async () => {
      const info = await apiClientOf(command).request("GET", vdiskPath(name)) as VdiskInfo;
      if (options.json === true) {
        print(JSON.stringify(info, null, 2));
        return;
      }
      const lines: Array<[string, string]> = [
        ["name", info.name], ["vpool", info.vpool], ["size", `${formatSizeBytes(info.sizeBytes)} (${info.sizeBytes} bytes)`],
        ["state", info.state], ["created", info.createdAt],
        ["template", yesNo(info.template)], ["parent", parentText(info)], ["snapshots", String(info.snapshotCount ?? 0)],
        ["scrub pending", yesNo(info.scrubPending)],
      ];
      const overrides = Object.entries(info.overrides ?? {});
      if (overrides.length > 0) lines.push(["settings", `${overrides.map(([key, value]) => `${key}=${value}`).join(", ")} (\`ovs vdisk config ${info.name}\`)`]);
      if (info.error !== undefined) lines.push(["error", info.error]);
      if (info.uuid !== undefined) lines.push(["uuid", info.uuid]);
      if (info.namespace !== undefined) lines.push(["namespace", info.namespace]);
      if (info.iscsi !== undefined) lines.push(["iscsi", `LUN ${info.iscsi.lun} of ${info.iscsi.target} (${info.iscsi.url})`]);
      for (const [key, value] of Object.entries(info.stats ?? {})) {
        if (typeof value === "number") lines.push([`stats.${key}`, String(value)]); // latency histograms: --json
      }
      print(formatKeyValues(lines));
    }));

  vdisk.command("set-template")
    .description("make a vDisk a template: snapshot what it holds, then refuse writes; clone it with --from NAME")
    .argument("<name>", "vDisk name")
    .action((name: string, _options: unknown, command: Command) => run(async () => {
      await apiClientOf(command).request("POST", `${vdiskPath(name)}/template`, {});
      print(`vDisk ${name} is now a template (read-only): clone it with \`ovs vdisk clone NEW --from ${name}\``);
    }));

  vdisk.command("rm")
    .alias("remove")
    .description("delete a vDisk and its data on the backend (refused while it has clones)")
    .argument("<name>", "vDisk name")
    .action((name: string, _options: unknown, command: Command) => run(async () => {
      await apiClientOf(command).request("DELETE", vdiskPath(name));
      print(`removed vDisk ${name}`);
    }));

  return vdisk;
}

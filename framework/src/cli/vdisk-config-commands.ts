// `ovs vdisk resize` (grow) and `ovs vdisk config` (show or change the settings a vDisk overrides)
// over the framework API, on the `vdisk` command of vdisk-commands.ts.
import type { Command } from "commander";
import { VOLUME_OVERRIDE_KEYS } from "../../../volumedriver/src/engine/formats/volume-config.ts";
import { formatSizeBytes, parseVdiskSizeBytes, SizeError } from "../../../volumedriver/src/storagedriver/size.ts";
import { apiClientOf, CliError, vdiskPath } from "./api-client.ts";
import { formatTable } from "./table.ts";
import type { Print, Run, VdiskInfo } from "./vdisk-commands.ts";

interface VdiskConfig {
  overrides: Record<string, number>;
  settings: Record<string, number>;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** "KEY=VALUE" → [KEY, number]; the server checks the key and the range, this only the shape. */
function parseAssignment(text: string): [string, number] {
  const match = /^([A-Za-z]+)=(-?\d+(?:\.\d+)?)$/.exec(text);
  if (match === null) throw new CliError(`--set ${text}: write KEY=NUMBER, e.g. --set scoMaxAgeMs=2000 (keys: ${VOLUME_OVERRIDE_KEYS.join(", ")})`);
  return [match[1], Number(match[2])];
}

export function registerVdiskConfigCommands(vdisk: Command, run: Run, print: Print): void {
  vdisk.command("resize")
    .description("grow a vDisk (it only grows: to get a smaller one, clone it); iSCSI initiators are told, NBD clients see it on their next connection")
    .argument("<name>", "vDisk name")
    .argument("<size>", "the new size: bytes, or with a binary unit (20G, 512M; a multiple of 4 KiB)")
    .option("--json", "print the API's JSON")
    .action((name: string, size: string, options: { json?: boolean }, command: Command) => run(async () => {
      let sizeBytes: number;
      try {
        sizeBytes = parseVdiskSizeBytes(size);
      } catch (error) {
        throw error instanceof SizeError ? new CliError(`size: ${error.message}`) : error;
      }
      const info = await apiClientOf(command).request("POST", `${vdiskPath(name)}/resize`, { size: sizeBytes }) as VdiskInfo;
      print(options.json === true ? JSON.stringify(info, null, 2) : `vDisk ${info.name} is now ${formatSizeBytes(info.sizeBytes)} (${info.sizeBytes} bytes)`);
    }));

  vdisk.command("config")
    .description(`show the settings a vDisk runs with, or change what it overrides of its vPool's (${VOLUME_OVERRIDE_KEYS.join(", ")})`)
    .argument("<name>", "vDisk name")
    .option("--set <key=value>", "override a setting (repeatable)", collect, [])
    .option("--unset <key>", "follow the vPool again for a setting (repeatable)", collect, [])
    .option("--clear", "follow the vPool for every setting")
    .option("--json", "print the API's JSON")
    .action((name: string, options: { set: string[]; unset: string[]; clear?: boolean; json?: boolean }, command: Command) => run(async () => {
      const api = apiClientOf(command);
      const path = `${vdiskPath(name)}/config`;
      let config = await api.request("GET", path) as VdiskConfig;
      if (options.set.length > 0 || options.unset.length > 0 || options.clear === true) {
        const overrides: Record<string, number> = options.clear === true ? {} : { ...config.overrides };
        for (const key of options.unset) delete overrides[key];
        for (const [key, value] of options.set.map(parseAssignment)) overrides[key] = value;
        config = await api.request("PUT", path, overrides) as VdiskConfig;
      }
      if (options.json === true) {
        print(JSON.stringify(config, null, 2));
        return;
      }
      const rows = Object.entries(config.settings).map(([key, value]) => [key, String(value), key in config.overrides ? "vDisk" : "vPool"]);
      print(formatTable(["setting", "value", "from"], rows));
    }));
}

// `ovs alba ...`: run Alba's daemons (ASD, proxy) and manage a backend through its proxy. Heavy
// modules are imported by the command that needs them.
import { InvalidArgumentError, type Command } from "commander";
import { registerMaintenanceCommands } from "../maintenance/maintenance-commands.ts";
import { registerAlbaAdminCommands } from "./alba-admin-commands.ts";

export type RunAction = (action: () => Promise<void>) => Promise<void>;
export type Print = (text: string) => void;

export function parsePortOption(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new InvalidArgumentError("give a TCP port number 0-65535");
  return port;
}

export function parseByteCountOption(value: string): number {
  const match = /^(\d+)([KMGT]i?B?)?$/i.exec(value);
  if (match === null) throw new InvalidArgumentError("give a size in bytes, optionally with K/M/G/T (binary units), e.g. 10G");
  const units: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
  const unit = match[2] === undefined ? 1 : units[match[2][0]!.toUpperCase()]!;
  return Number(match[1]) * unit;
}

interface AsdRunOptions {
  path: string;
  host: string;
  port: number;
  nodeId: string;
  capacity?: number;
}

export function registerAlbaCommands(program: Command, run: RunAction, print: Print): Command {
  const alba = program.command("alba").description("Alba: the erasure-coded object store (ASDs, presets, proxy, maintenance)");
  const asd = alba.command("asd").description("Alba storage daemons (one per disk or directory)");
  asd.command("run")
    .description("run one ASD on a directory until SIGINT/SIGTERM")
    .requiredOption("--path <dir>", "directory that holds the ASD's data (created on first run)")
    .option("--host <host>", "address to listen on (anything but loopback exposes the fragments)", "127.0.0.1")
    .requiredOption("--port <port>", "TCP port (0 picks a free one; the chosen port is printed)", parsePortOption)
    .requiredOption("--node-id <id>", "fault domain (host) this ASD belongs to")
    .option("--capacity <bytes>", "refuse writes beyond this many stored bytes (default: the filesystem's free space)", parseByteCountOption)
    .action((options: AsdRunOptions) => run(async () => {
      const { runAsdDaemon } = await import("../asd/asd-main.ts");
      process.exit(await runAsdDaemon({
        directory: options.path, host: options.host, port: options.port, nodeId: options.nodeId,
        ...(options.capacity === undefined ? {} : { capacityBytes: options.capacity }),
      }));
    }));
  // backend create, proxy run, and the commands that go through the proxy.
  registerAlbaAdminCommands(alba, asd, run, print);
  registerMaintenanceCommands(alba, run, print);
  return alba;
}

// The `ovs` command: `ovs up` runs a single-host cluster, `ovs storagedriver run` one StorageDriver
// process, `ovs vdisk ...` manages vDisks and their snapshots, `ovs vpool ...` and `ovs backend ...`
// the vPools and backends, and `ovs task ...` follows background tasks, through the framework API. Heavy modules are imported by the command that needs them, so
// `ovs vdisk ls` starts fast. Exit codes: 0 success, 1 failure (the message on stderr says what to
// do), commander's own codes for usage errors.
import { readFileSync } from "node:fs";
import path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { registerAlbaCommands } from "../../../alba/src/cli/alba-commands.ts";
import { API_URL_DEFAULT } from "./api-client.ts";
import { registerSnapshotCommands } from "./snapshot-commands.ts";
import { registerClusterCommands, registerLoginCommands } from "./cluster-commands.ts";
import { registerTaskCommands } from "./task-commands.ts";
import { registerVdiskCommands } from "./vdisk-commands.ts";
import { registerVdiskConfigCommands } from "./vdisk-config-commands.ts";
import { registerBackendCommands } from "./backend-commands.ts";
import { registerVpoolCommands } from "./vpool-commands.ts";

const packageJson = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) {
    throw new InvalidArgumentError("give a TCP port number 0-65535");
  }
  return port;
}

/** Runs a command body; prints its failure as one line (the message says what to do) and sets exit code 1. */
async function run(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`ovs: ${message}\n`);
    process.exitCode = 1;
  }
}

const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

interface UpCommandOptions {
  data: string;
  apiHost?: string;
  apiPort?: number;
  storagedriverPort?: number;
  nbdHost?: string;
  nbdPort?: number;
  nbdTls?: "require" | "allow" | "off";
  nbdTlsCert?: string;
  nbdTlsKey?: string;
  iscsiHost?: string;
  iscsiPort?: number;
  backend?: string;
}

const program = new Command("ovs")
  .description("Open vStorage in TypeScript: block volumes (vDisks) over NBD/iSCSI on object storage")
  .version(packageJson.version)
  .addOption(new Option("--api <url>", "framework API to talk to").env("OVS_API").default(API_URL_DEFAULT))
  .showHelpAfterError();

program.command("up")
  .description("run a single-host cluster on loopback: an Alba backend (3 ASDs, a proxy), a StorageDriver serving the vDisks over NBD and iSCSI, the framework API, the dashboard and a demo vDisk")
  .option("--data <dir>", "data directory (created on first start)", "./data")
  .option("--api-host <host>", "framework API address (default 127.0.0.1, or the value in DIR/config.json)")
  .option("--api-port <port>", "framework API port (default 8500)", parsePort)
  .option("--storagedriver-port <port>", "StorageDriver management API port (default 8510)", parsePort)
  .option("--nbd-host <host>", "NBD address (default 127.0.0.1; anything else exposes every vDisk: use TLS)")
  .option("--nbd-port <port>", "NBD port (default 10809)", parsePort)
  .addOption(new Option("--nbd-tls <mode>", "NBD STARTTLS: require (plain refused), allow, or off (default: require once a certificate is given)").choices(["require", "allow", "off"]))
  .option("--nbd-tls-cert <file>", "NBD TLS certificate (PEM)")
  .option("--nbd-tls-key <file>", "NBD TLS private key (PEM)")
  .option("--iscsi-host <host>", "iSCSI address (default 127.0.0.1; anything else exposes every vDisk: set CHAP in DIR/config.json)")
  .option("--iscsi-port <port>", "iSCSI port (default 3260)", parsePort)
  .option("--backend <url>", "object store of the vPool: s3://HOST:PORT/BUCKET[?tls=1] (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), "
    + "swift://HOST:PORT/auth/v1.0 (ST_USER, ST_KEY; Keystone v3 when OS_AUTH_URL is set), alba://HOST:PORT[?preset=NAME] (an Alba proxy), "
    + "local (DIR/backend), or managed-alba (the default for a new cluster: 3 ASDs and a proxy under DIR/alba, run by ovs up)")
  .action((options: UpCommandOptions) => run(async () => {
    const { runUp } = await import("../cluster/up.ts");
    // Operators find the processes of a cluster with ps: each names its role.
    process.title = "ovs-framework";
    // Certificate paths are the operator's, relative to where they typed the command; store them absolute.
    const nbdTlsCert = options.nbdTlsCert === undefined ? undefined : path.resolve(options.nbdTlsCert);
    const nbdTlsKey = options.nbdTlsKey === undefined ? undefined : path.resolve(options.nbdTlsKey);
    const exitCode = await runUp({ ...options, nbdTlsCert, nbdTlsKey, dataDirectory: options.data }, {
      out: (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
    });
    process.exit(exitCode);
  }));

program.command("storagedriver")
  .description("StorageDriver process of one vPool")
  .command("run")
  .description("run the StorageDriver of a config file until SIGINT/SIGTERM")
  .requiredOption("--config <file>", "StorageDriver config (JSON): vpool, directory, backend, managementApi, settings")
  .action((options: { config: string }) => run(async () => {
    const { loadStorageDriverConfig } = await import("../../../volumedriver/src/storagedriver/config.ts");
    const { runStorageDriver } = await import("../../../volumedriver/src/storagedriver/storagedriver.ts");
    const config = await loadStorageDriverConfig(options.config);
    process.title = `ovs-storagedriver ${config.vpool}`;
    process.exit(await runStorageDriver(config));
  }));

const vdiskCommand = registerVdiskCommands(program, run, print);
registerSnapshotCommands(vdiskCommand, run, print);
registerVdiskConfigCommands(vdiskCommand, run, print);
registerVpoolCommands(program, run, print);
registerBackendCommands(program, run, print);
registerTaskCommands(program, run, print);
registerClusterCommands(program, run, print);
registerLoginCommands(program, run, print);
registerAlbaCommands(program, run, print);

await program.parseAsync(process.argv);

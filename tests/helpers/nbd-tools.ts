// Real NBD clients and peers for tests: find them (skip with a printed reason outside CI, fail under
// CI=true), run them with a deadline and kill them by PID when it passes, and start a StorageDriver
// process that serves NBD on free loopback ports. The clients are Debian's: libnbd-bin (nbdinfo,
// nbdcopy, nbdsh), python3-libnbd under /usr/bin/python3, qemu-utils, fio, nbdkit, openssl.
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { ChildHarness, freePort, killPid, OVS_BIN } from "./process-harness.ts";

/** Debian's python, the one python3-libnbd installs the `nbd` module for (not a pyenv or venv python). */
export const LIBNBD_PYTHON = "/usr/bin/python3";

/** Each tool a test may need, with the Debian package that provides it. */
const TOOL_PACKAGES = {
  nbdinfo: "libnbd-bin",
  nbdcopy: "libnbd-bin",
  nbdsh: "libnbd-bin",
  "python3-libnbd": "python3-libnbd",
  "qemu-io": "qemu-utils",
  "qemu-img": "qemu-utils",
  "qemu-nbd": "qemu-utils",
  fio: "fio",
  nbdkit: "nbdkit",
  openssl: "openssl",
  "iscsi-ls": "libiscsi-bin",
  "iscsi-inq": "libiscsi-bin",
  "iscsi-readcapacity16": "libiscsi-bin",
  "iscsi-test-cu": "libiscsi-bin",
  tgtd: "tgt",
  tgtadm: "tgt",
  chromium: "chromium",
  "qemu-block-iscsi": "qemu-block-extra",
} as const;

export type NbdTool = keyof typeof TOOL_PACKAGES;

/** True when an executable named `command` is in one of the PATH directories. */
export function onPath(command: string): boolean {
  for (const directory of (process.env.PATH ?? "").split(path.delimiter)) {
    if (directory === "") continue;
    try {
      accessSync(path.join(directory, command), constants.X_OK);
      return true;
    } catch {
      // Not in this directory.
    }
  }
  return false;
}

const missingReasons = new Map<NbdTool, string | undefined>();

/** Why the tool cannot be used here, or undefined when it can. Checked once per process. */
export function toolMissingReason(tool: NbdTool): string | undefined {
  if (!missingReasons.has(tool)) {
    missingReasons.set(tool, checkTool(tool));
  }
  return missingReasons.get(tool);
}

function checkTool(tool: NbdTool): string | undefined {
  const install = `apt-get install ${TOOL_PACKAGES[tool]}, or run deploy/install-test-deps.sh with CI=true`;
  if (tool === "python3-libnbd") {
    const probe = spawnSync(LIBNBD_PYTHON, ["-c", "import nbd"], { timeout: 10_000 });
    return probe.status === 0 ? undefined : `${LIBNBD_PYTHON} cannot import nbd (${install})`;
  }
  if (tool === "qemu-block-iscsi") {
    const driver = spawnSync("qemu-img", ["--help"], { encoding: "utf8", timeout: 10_000 });
    return /\biscsi\b/.test(driver.stdout ?? "") ? undefined : `qemu-img lists no iscsi block driver (${install})`;
  }
  if (!onPath(tool)) {
    return `${tool} is not on PATH (${install})`;
  }
  if (tool === "tgtd" && process.getuid?.() !== 0) {
    return "tgtd needs root (it creates /var/run/tgtd and its management socket)";
  }
  if (tool === "fio") {
    const engines = spawnSync("fio", ["--enghelp"], { encoding: "utf8", timeout: 10_000 });
    if (!/^\s*nbd\s*$/m.test(engines.stdout ?? "")) {
      return "this fio has no nbd ioengine (Debian's fio 3.33 has it)";
    }
  }
  return undefined;
}

/**
 * For before() hooks and tests: when a tool is missing, skip (outside CI, printing why) or fail
 * (CI=true: the CI machine must have every test peer; deploy/install-test-deps.sh installs them).
 */
export function requireTool(context: Mocha.Context, ...tools: NbdTool[]): void {
  requirePeers(context, tools.map(toolMissingReason));
}

/**
 * The rule for every external test peer (tool or server): with all of them present, go on; else
 * skip with the reasons printed, or under CI=true fail (the CI machine must have every test peer;
 * deploy/install-test-deps.sh installs them).
 */
export function requirePeers(context: Mocha.Context, missingReasons: ReadonlyArray<string | undefined>): void {
  const reasons = missingReasons.filter((reason): reason is string => reason !== undefined);
  if (reasons.length === 0) return;
  const message = `missing test peer: ${reasons.join("; ")}`;
  if (process.env.CI === "true") {
    throw new Error(`${message} (CI=true: every test peer must be installed)`);
  }
  console.log(`      skipped: ${message}`);
  context.skip();
}

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunToolOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * Runs a command to completion and returns its exit and output. On the deadline it is SIGKILLed
 * by PID and the promise rejects with what it printed so far.
 */
export function runTool(command: string, args: string[], options: RunToolOptions = {}): Promise<ToolResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => { stderr += chunk; });
    const timer = setTimeout(() => {
      if (child.pid !== undefined) killPid(child.pid, "SIGKILL");
      reject(new Error(`${command} ${args.join(" ")} did not finish within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Like runTool, but rejects unless the command exits 0. */
export async function runToolOk(command: string, args: string[], options: RunToolOptions = {}): Promise<ToolResult> {
  const result = await runTool(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.code ?? result.signal}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
  return result;
}

export function nbdUri(port: number, exportName: string, scheme: "nbd" | "nbds" = "nbd"): string {
  return `${scheme}://127.0.0.1:${port}/${exportName}`;
}

export interface NbdStorageDriverOptions {
  vpool?: string;
  tls?: { mode: "allow" | "require"; certificateFile: string; keyFile: string };
  /** vPool settings; default 4 MiB SCOs so tests fill and upload a few. */
  settings?: Record<string, number>;
  /** Node options for the process, e.g. ["--cpu-prof", "--cpu-prof-dir=DIR"]. */
  nodeOptions?: string[];
  logLevel?: string;
  /** Serve iSCSI too (the vPool's target on a free loopback port); extra fields go into the config's "iscsi". */
  iscsi?: boolean | Record<string, unknown>;
}

/**
 * A StorageDriver process (`ovs storagedriver run`) with a config in `directory`, serving NBD and its
 * management API on free loopback ports. restart() starts a new process on the same config, data and
 * ports, as after a crash. Stop it with stop() (SIGTERM, clean) or kill() (SIGKILL by PID).
 */
export class NbdStorageDriver {
  readonly directory: string;
  readonly vpool: string;
  readonly nbdPort: number;
  readonly apiPort: number;
  /** The iSCSI port when options.iscsi asked for it. */
  readonly iscsiPort: number | undefined;
  readonly configFile: string;
  private readonly options: NbdStorageDriverOptions;
  private current: ChildHarness | undefined;
  private readonly all: ChildHarness[] = [];

  private constructor(directory: string, nbdPort: number, apiPort: number, iscsiPort: number | undefined, options: NbdStorageDriverOptions) {
    this.directory = directory;
    this.vpool = options.vpool ?? "nbdtest";
    this.nbdPort = nbdPort;
    this.apiPort = apiPort;
    this.iscsiPort = iscsiPort;
    this.configFile = path.join(directory, "storagedriver.json");
    this.options = options;
  }

  static async start(directory: string, options: NbdStorageDriverOptions = {}): Promise<NbdStorageDriver> {
    const iscsiPort = options.iscsi === undefined || options.iscsi === false ? undefined : await freePort();
    const storagedriver = new NbdStorageDriver(directory, await freePort(), await freePort(), iscsiPort, options);
    const iscsiExtra = typeof options.iscsi === "object" ? options.iscsi : {};
    await mkdir(directory, { recursive: true });
    await writeFile(storagedriver.configFile, JSON.stringify({
      vpool: storagedriver.vpool,
      directory: "vpool",
      backend: { type: "local", path: "backend" },
      managementApi: { host: "127.0.0.1", port: storagedriver.apiPort },
      nbd: { host: "127.0.0.1", port: storagedriver.nbdPort, ...(options.tls === undefined ? {} : { tls: options.tls }) },
      ...(iscsiPort === undefined ? {} : { iscsi: { host: "127.0.0.1", port: iscsiPort, ...iscsiExtra } }),
      settings: options.settings ?? { scoSizeBytes: 4 * 1024 * 1024 },
      logFile: "storagedriver.log",
      logLevel: options.logLevel ?? "info",
      pidFile: "storagedriver.pid",
    }, null, 2));
    await storagedriver.restart();
    return storagedriver;
  }

  get harness(): ChildHarness {
    if (this.current === undefined) throw new Error("the StorageDriver was not started");
    return this.current;
  }

  get pid(): number {
    return this.harness.pid;
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.apiPort}`;
  }

  get logFile(): string {
    return path.join(this.directory, "storagedriver.log");
  }

  uri(exportName: string): string {
    return nbdUri(this.nbdPort, exportName, this.options.tls?.mode === "require" ? "nbds" : "nbd");
  }

  /** iscsi://127.0.0.1:PORT/iqn.2026-11.org.openvstorage:VPOOL[/LUN] (libiscsi's URL). */
  iscsiUrl(lun?: number): string {
    if (this.iscsiPort === undefined) throw new Error("this StorageDriver was started without iSCSI");
    return `iscsi://127.0.0.1:${this.iscsiPort}/iqn.2026-11.org.openvstorage:${this.vpool}${lun === undefined ? "" : `/${lun}`}`;
  }

  /** Starts a (new) process on the same config; resolves once it prints its NBD line (and its iSCSI line, when it serves iSCSI). */
  async restart(timeoutMs = 60_000): Promise<ChildHarness> {
    if (this.current?.running) throw new Error(`the StorageDriver (pid ${this.current.pid}) still runs`);
    const harness = this.options.nodeOptions === undefined
      ? ChildHarness.ovs(["storagedriver", "run", "--config", this.configFile])
      // Options such as --cpu-prof are refused in NODE_OPTIONS: give them to node itself.
      : ChildHarness.command(process.execPath, [...this.options.nodeOptions, OVS_BIN, "storagedriver", "run", "--config", this.configFile]);
    this.current = harness;
    this.all.push(harness);
    await harness.waitForOutput(new RegExp(`storagedriver ${this.vpool} NBD on nbds?://127\\.0\\.0\\.1:${this.nbdPort} `), timeoutMs);
    if (this.iscsiPort !== undefined) {
      await harness.waitForOutput(new RegExp(`storagedriver ${this.vpool} iSCSI on iscsi://127\\.0\\.0\\.1:${this.iscsiPort}/`), timeoutMs);
    }
    return harness;
  }

  async createVdisk(name: string, sizeBytes: number): Promise<void> {
    const response = await fetch(`${this.apiUrl}/vdisks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name, size: sizeBytes }),
      signal: AbortSignal.timeout(30_000),
    });
    if (response.status !== 201) {
      throw new Error(`creating vDisk ${name} failed with HTTP ${response.status}: ${await response.text()}`);
    }
  }

  async deleteVdisk(name: string): Promise<void> {
    const response = await fetch(`${this.apiUrl}/vdisks/${name}`, { method: "DELETE", signal: AbortSignal.timeout(30_000) });
    if (response.status !== 204) {
      throw new Error(`deleting vDisk ${name} failed with HTTP ${response.status}: ${await response.text()}`);
    }
  }

  /** SIGTERM and wait for the clean stop (flush, upload); resolves with the exit. */
  async stop(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const harness = this.harness;
    if (harness.running) killPid(harness.pid, "SIGTERM");
    return harness.waitForExit(timeoutMs);
  }

  /** SIGKILL by PID, as a crash; resolves once the process is gone. */
  async kill(): Promise<void> {
    const harness = this.harness;
    if (harness.running) killPid(harness.pid, "SIGKILL");
    await harness.waitForExit(10_000);
  }

  /** For after() hooks: SIGKILL every process this object started that still runs. */
  async killAll(): Promise<void> {
    for (const harness of this.all) await harness.killHard();
  }
}

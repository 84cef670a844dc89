// `ovs alba ...` commands beyond `asd run`: create a backend, run its proxy, and manage it through
// the proxy (--proxy URL, env OVS_ALBA_PROXY, default http://127.0.0.1:8600): claim and list ASDs,
// presets, namespaces, objects, status. Listing commands print a table, or JSON with --json.
// Failures are AlbaErrors whose message says what to do; `run` prints them as one line.
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { InvalidArgumentError, Option, type Command } from "commander";
import type { Policy } from "../preset/preset.ts";
import { formatBytes } from "./format.ts";
import { parseByteCountOption, parsePortOption, type Print, type RunAction } from "./alba-commands.ts";

const PROXY_URL_DEFAULT = "http://127.0.0.1:8600";

function proxyOption(): Option {
  return new Option("--proxy <url>", "Alba proxy to talk to").env("OVS_ALBA_PROXY").default(PROXY_URL_DEFAULT);
}

async function openProxy(url: string) {
  const { ProxyClient } = await import("../proxy/proxy-client.ts");
  return new ProxyClient(url);
}

/** Runs `action` with a ProxyClient, closing it afterwards. */
async function withProxy<T>(url: string, action: (client: Awaited<ReturnType<typeof openProxy>>) => Promise<T>): Promise<T> {
  const client = await openProxy(url);
  try {
    return await action(client);
  } finally {
    await client.close();
  }
}

/** "4,2,5,2;2,2,3,4" → policies. */
export function parsePoliciesOption(value: string): Policy[] {
  return value.split(";").map((text) => {
    const numbers = text.split(",").map((part) => part.trim());
    if (numbers.length !== 4 || numbers.some((part) => !/^\d+$/.test(part))) {
      throw new InvalidArgumentError(`give policies as k,m,c,x[;k,m,c,x...], e.g. 4,2,5,2;2,2,3,4 (got "${text}")`);
    }
    const [k, m, c, x] = numbers.map(Number) as [number, number, number, number];
    return { k, m, c, x };
  });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()).join("\n");
}

interface ProxyOptions { proxy: string; json?: boolean }

export function registerAlbaAdminCommands(alba: Command, asd: Command, run: RunAction, print: Print): void {
  alba.command("backend").description("Alba backends (a metadata directory)")
    .command("create")
    .description("create a backend directory with the default preset (idempotent)")
    .requiredOption("--path <dir>", "backend directory (holds metadata.sqlite)")
    .option("--preset-name <name>", "name of the default preset", "default")
    .action((options: { path: string; presetName: string }) => run(async () => {
      const { createAlbaBackend } = await import("../backend/backend-directory.ts");
      const info = await createAlbaBackend(path.resolve(options.path), { presetName: options.presetName });
      print(`${info.created ? "created" : "exists"}: Alba backend ${path.resolve(options.path)} (default preset ${info.defaultPresetName})`);
    }));

  alba.command("proxy").description("the Alba proxy (HTTP object API over a backend)")
    .command("run")
    .description("serve a backend's object API until SIGINT/SIGTERM")
    .requiredOption("--backend <dir>", "backend directory (made by `ovs alba backend create`)")
    .option("--host <host>", "address to listen on (the API has no authentication: keep it on loopback)", "127.0.0.1")
    .requiredOption("--port <port>", "TCP port (0 picks a free one; the chosen port is printed)", parsePortOption)
    .option("--partial-read-max <bytes>", "serve small ranged reads of uncompressed objects from ASD range reads, unverified (default 0: off)", parseByteCountOption)
    .option("--dead-asd-after <seconds>", "maintenance repairs the fragments of an ASD down this long (default 900)", parseSecondsOption)
    .action((options: { backend: string; host: string; port: number; partialReadMax?: number; deadAsdAfter?: number }) => run(async () => {
      const { runAlbaProxy } = await import("../proxy/proxy-main.ts");
      process.exit(await runAlbaProxy({
        backendDirectory: path.resolve(options.backend), host: options.host, port: options.port,
        ...(options.partialReadMax === undefined ? {} : { clientSettings: { partialReadSizeBytesMax: options.partialReadMax } }),
        ...(options.deadAsdAfter === undefined ? {} : { maintenanceSettings: { deadAsdAfterMs: options.deadAsdAfter * 1000 } }),
      }));
    }));

  asd.command("claim")
    .description("add a running ASD to the backend (its id and node id are read from it)")
    .requiredOption("--host <host>", "ASD address")
    .requiredOption("--port <port>", "ASD port", parsePortOption)
    .addOption(proxyOption())
    .action((options: ProxyOptions & { host: string; port: number }) => run(async () => {
      const record = await withProxy(options.proxy, (client) => client.claimAsd(options.host, options.port));
      print(`claimed ASD ${record.asdId} (node ${record.nodeId}) at ${record.host}:${record.port}`);
    }));

  asd.command("ls")
    .description("list the claimed ASDs with health and fill")
    .addOption(proxyOption())
    .option("--json", "print JSON")
    .action((options: ProxyOptions) => run(async () => {
      const asds = await withProxy(options.proxy, (client) => client.listAsds());
      if (options.json === true) return print(JSON.stringify(asds, null, 2));
      print(table([["ASD", "NODE", "ADDRESS", "HEALTH", "USED", "CAPACITY", "KEYS"], ...asds.map((status) => [
        status.record.asdId, status.record.nodeId, `${status.record.host}:${status.record.port}`,
        status.health === "down" ? `down since ${status.downSince ?? "?"}` : status.record.state === "claimed" ? "up" : status.record.state,
        status.statistics === undefined ? "-" : formatBytes(status.statistics.usedBytes),
        status.statistics === undefined ? "-" : formatBytes(status.statistics.capacityBytes),
        status.statistics === undefined ? "-" : String(status.statistics.keyCount),
      ])]));
    }));

  const preset = alba.command("preset").description("presets: how namespaces store their objects");
  preset.command("add")
    .description("add a preset")
    .requiredOption("--name <name>", "preset name")
    .requiredOption("--policies <k,m,c,x;...>", "policies in order of preference, e.g. 4,2,5,2;2,2,3,4", parsePoliciesOption)
    .option("--fragment-size <bytes>", "data fragment size (multiple of 4 KiB, up to 16M)", parseByteCountOption, 1024 * 1024)
    .addOption(new Option("--compression <codec>", "fragment compression").choices(["none", "lz4", "snappy"]).default("none"))
    .addOption(new Option("--encryption <cipher>", "fragment encryption").choices(["none", "aes-256-ctr"]).default("none"))
    .option("--key-file <file>", "file holding the AES-256 key as 64 hex digits (with --encryption aes-256-ctr)")
    .addOption(proxyOption())
    .action((options: ProxyOptions & { name: string; policies: Policy[]; fragmentSize: number; compression: string; encryption: string; keyFile?: string }) => run(async () => {
      let encryptionKeyHex: string | undefined;
      if (options.keyFile !== undefined) encryptionKeyHex = (await readFile(options.keyFile, "utf8")).trim();
      await withProxy(options.proxy, (client) => client.addPreset({
        name: options.name, policies: options.policies, fragmentSizeBytes: options.fragmentSize,
        compression: options.compression as "none", encryption: options.encryption as "none", checksum: "crc32c",
        ...(encryptionKeyHex === undefined ? {} : { encryptionKeyHex }),
      }));
      print(`added preset ${options.name}`);
    }));
  preset.command("update <name>")
    .description("replace a preset's policies (objects already written keep theirs) and/or make it the default; "
      + "fragment size, compression and encryption never change: add a new preset for those")
    .option("--policies <k,m,c,x;...>", "the new policies in order of preference, e.g. 4,2,5,2;2,2,3,4", parsePoliciesOption)
    .option("--default", "make it the preset new namespaces get when none is named")
    .addOption(proxyOption())
    .action((name: string, options: ProxyOptions & { policies?: Policy[]; default?: boolean }) => run(async () => {
      if (options.policies === undefined && options.default !== true) throw new InvalidArgumentError("nothing to change: give --policies, --default or both");
      const updated = await withProxy(options.proxy, (client) => client.updatePreset(name, {
        ...(options.policies === undefined ? {} : { policies: options.policies }),
        ...(options.default === true ? { default: true } : {}),
      }));
      const policies = updated.policies.map((policy) => `${policy.k},${policy.m},${policy.c},${policy.x}`).join(" ");
      print(`updated preset ${name}: policies ${policies}${options.default === true ? "; it is now the default preset" : ""}`);
    }));
  preset.command("rm <name>")
    .description("delete a preset that no namespace uses and that is not the default")
    .addOption(proxyOption())
    .action((name: string, options: ProxyOptions) => run(async () => {
      await withProxy(options.proxy, (client) => client.deletePreset(name));
      print(`deleted preset ${name}`);
    }));
  preset.command("ls")
    .description("list presets (encryption keys are never shown)")
    .addOption(proxyOption())
    .option("--json", "print JSON")
    .action((options: ProxyOptions) => run(async () => {
      const presets = await withProxy(options.proxy, (client) => client.listPresets());
      if (options.json === true) return print(JSON.stringify(presets, null, 2));
      print(table([["NAME", "POLICIES (k,m,c,x)", "FRAGMENT", "COMPRESSION", "ENCRYPTION"], ...presets.map((entry) => [
        entry.name, entry.policies.map((policy) => `${policy.k},${policy.m},${policy.c},${policy.x}`).join(" "),
        formatBytes(entry.fragmentSizeBytes), entry.compression, entry.encryption,
      ])]));
    }));

  const namespace = alba.command("namespace").description("namespaces (each stores its objects with one preset)");
  namespace.command("create <name>")
    .description("create a namespace")
    .option("--preset <name>", "preset (default: the backend's default preset)")
    .addOption(proxyOption())
    .action((name: string, options: ProxyOptions & { preset?: string }) => run(async () => {
      const record = await withProxy(options.proxy, (client) => client.createNamespace(name, options.preset === undefined ? {} : { presetName: options.preset }));
      print(`created namespace ${record.name} (preset ${record.presetName})`);
    }));
  namespace.command("ls")
    .description("list namespaces")
    .addOption(proxyOption())
    .option("--json", "print JSON")
    .action((options: ProxyOptions) => run(async () => {
      const namespaces = await withProxy(options.proxy, (client) => client.listNamespaces());
      if (options.json === true) return print(JSON.stringify(namespaces, null, 2));
      print(table([["NAMESPACE", "PRESET", "CREATED"], ...namespaces.map((record) => [record.name, record.presetName, record.createdAt])]));
    }));
  namespace.command("rm <name>")
    .description("delete a namespace and all its objects")
    .addOption(proxyOption())
    .action((name: string, options: ProxyOptions) => run(async () => {
      await withProxy(options.proxy, (client) => client.deleteNamespace(name));
      print(`deleted namespace ${name}`);
    }));

  const object = alba.command("object").description("objects in a namespace");
  object.command("put <namespace> <key> <file>")
    .description("store a file as an object")
    .addOption(proxyOption())
    .action((namespaceName: string, key: string, file: string, options: ProxyOptions) => run(async () => {
      const data = await readFile(file);
      const info = await withProxy(options.proxy, (client) => client.put(namespaceName, key, data));
      print(`stored ${namespaceName}/${info.key}: ${info.sizeBytes} bytes, etag ${info.etag}`);
    }));
  object.command("get <namespace> <key> [file]")
    .description("fetch an object into a file (or to stdout)")
    .addOption(proxyOption())
    .action((namespaceName: string, key: string, file: string | undefined, options: ProxyOptions) => run(async () => {
      const data = await withProxy(options.proxy, (client) => client.get(namespaceName, key));
      if (file === undefined) await pipeline(Readable.from([data]), process.stdout);
      else await pipeline(Readable.from([data]), createWriteStream(file));
    }));
  object.command("ls <namespace>")
    .description("list objects (all pages)")
    .option("--prefix <prefix>", "only keys starting with this")
    .addOption(proxyOption())
    .option("--json", "print JSON")
    .action((namespaceName: string, options: ProxyOptions & { prefix?: string }) => run(async () => {
      const objects = await withProxy(options.proxy, async (client) => {
        const all = [];
        for (let startAfter: string | undefined; ;) {
          const page = await client.list(namespaceName, { ...(options.prefix === undefined ? {} : { prefix: options.prefix }), ...(startAfter === undefined ? {} : { startAfter }) });
          all.push(...page.objects);
          if (page.nextStartAfter === undefined) return all;
          startAfter = page.nextStartAfter;
        }
      });
      if (options.json === true) return print(JSON.stringify(objects, null, 2));
      print(table([["KEY", "SIZE", "ETAG"], ...objects.map((info) => [info.key, String(info.sizeBytes), info.etag])]));
    }));
  object.command("rm <namespace> <key>")
    .description("delete an object")
    .addOption(proxyOption())
    .action((namespaceName: string, key: string, options: ProxyOptions) => run(async () => {
      await withProxy(options.proxy, (client) => client.delete(namespaceName, key));
      print(`deleted ${namespaceName}/${key}`);
    }));

  alba.command("status")
    .description("ASD health and fill, and disk safety per preset")
    .addOption(proxyOption())
    .option("--json", "print JSON")
    .action((options: ProxyOptions) => run(async () => {
      const [asds, safety] = await withProxy(options.proxy, (client) => Promise.all([client.listAsds(), client.diskSafety()]));
      if (options.json === true) return print(JSON.stringify({ asds, diskSafety: safety }, null, 2));
      const up = asds.filter((status) => status.health === "up").length;
      print(`ASDs: ${up} up, ${asds.length - up} down`);
      for (const status of asds) {
        const fill = status.statistics === undefined ? "fill unknown"
          : `${formatBytes(status.statistics.usedBytes)} of ${formatBytes(status.statistics.capacityBytes)} (${((100 * status.statistics.usedBytes) / Math.max(1, status.statistics.capacityBytes)).toFixed(1)}%)`;
        print(`  ${status.record.asdId} node ${status.record.nodeId} ${status.health}${status.downSince === undefined ? "" : ` since ${status.downSince}`}, ${fill}`);
      }
      print("Disk safety (chunks by how many more fragments they can lose):");
      for (const entry of safety) {
        const buckets = Object.entries(entry.chunksByRemainingRedundancy).sort(([left], [right]) => Number(left) - Number(right))
          .map(([remaining, count]) => `${remaining}: ${count}`).join(", ");
        print(`  preset ${entry.presetName}: ${entry.objectCount} objects${buckets === "" ? "" : `; ${buckets}`}`);
      }
    }));
}

function parseSecondsOption(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("give a whole number of seconds");
  return Number(value);
}

// `ovs backend ...`: the object stores vPools live on, through the framework API: add, ls, show,
// set, rm, and an Alba backend's presets (`ovs backend preset ls|add|set|rm`). Secrets are given in
// a JSON config (--config '{"secretAccessKey": ...}' or --config-file FILE) and never printed back.
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { parsePoliciesOption } from "../../../alba/src/cli/alba-admin-commands.ts";
import { parseSizeBytes } from "../../../volumedriver/src/storagedriver/size.ts";
import { apiClientOf, CliError } from "./api-client.ts";
import { formatKeyValues, formatTable } from "./table.ts";
import type { Print, Run } from "./vdisk-commands.ts";

interface BackendInfo {
  name: string; kind: string; config: Record<string, unknown>; secretsSet: string[]; createdAt: string; managed: boolean; vpools: string[];
  asds?: Array<{ asdId: string; nodeId: string; url: string; status: string }>;
}

interface PresetInfo {
  name: string; policies: Array<{ k: number; m: number; c: number; x: number }>; fragmentSizeBytes: number; compression: string; encryption: string;
}

function backendPath(name: string): string {
  return `/backends/${encodeURIComponent(name)}`;
}

function presetPath(backend: string, preset: string): string {
  return `${backendPath(backend)}/presets/${encodeURIComponent(preset)}`;
}

function policiesText(policies: PresetInfo["policies"]): string {
  return policies.map((policy) => `(${policy.k},${policy.m},${policy.c},${policy.x})`).join(" ");
}

/** The backend config from --config JSON or --config-file (a file keeps secrets out of the shell history). */
async function configFrom(options: { config?: string; configFile?: string }): Promise<Record<string, unknown>> {
  if ((options.config === undefined) === (options.configFile === undefined)) throw new CliError("give the backend config as --config JSON or --config-file FILE (one of them)");
  const text = options.config ?? await readFile(options.configFile as string, "utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CliError(`the backend config is not JSON (${(error as Error).message}): e.g. '{"path": "/srv/ovs-backend"}'`, { cause: error });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new CliError("the backend config must be a JSON object");
  return parsed as Record<string, unknown>;
}

function configText(config: Record<string, unknown>): string {
  return Object.entries(config).map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`).join(" ");
}

export function registerBackendCommands(program: Command, run: Run, print: Print): void {
  const backend = program.command("backend").description("manage the backends (object stores) vPools are created on");

  backend.command("add")
    .description("add a backend: local, s3, swift or alba (an Alba proxy)")
    .argument("<name>", "1-63 characters of a-z, 0-9, '_' and '-'")
    .requiredOption("--kind <kind>", "local, s3, swift or alba")
    .option("--config <json>", `e.g. local '{"path": "/srv/ovs-backend"}', s3 '{"endpoint": "http://10.0.0.5:9000", "bucket": "ovs", "accessKeyId": ..., "secretAccessKey": ...}', alba '{"proxyUrl": "http://10.0.0.7:8600"}'`)
    .option("--config-file <file>", "the same JSON in a file")
    .option("--json", "print the API's JSON")
    .action((name: string, options: { kind: string; config?: string; configFile?: string; json?: boolean }, command: Command) => run(async () => {
      const created = await apiClientOf(command).request("POST", "/backends", { name, kind: options.kind, config: await configFrom(options) }) as BackendInfo;
      if (options.json === true) return print(JSON.stringify(created, null, 2));
      print(`added ${created.kind} backend ${created.name}: ${configText(created.config)}${created.secretsSet.length === 0 ? "" : ` (secrets set: ${created.secretsSet.join(", ")})`}`);
    }));

  backend.command("ls")
    .alias("list")
    .description("list the backends (no secrets)")
    .option("--json", "print the API's JSON instead of a table")
    .action((options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await apiClientOf(command).request("GET", "/backends") as { backends: BackendInfo[] };
      if (options.json === true) return print(JSON.stringify(listed.backends, null, 2));
      print(formatTable(["name", "kind", "config", "vpools", "managed"], listed.backends.map((info) => [
        info.name, info.kind, configText(info.config), info.vpools.join(", ") || "-", info.managed ? "by ovs up" : "no",
      ])));
    }));

  backend.command("show")
    .description("show a backend (and an Alba backend's ASDs as last recorded)")
    .argument("<name>", "backend name")
    .option("--json", "print the API's JSON")
    .action((name: string, options: { json?: boolean }, command: Command) => run(async () => {
      const info = await apiClientOf(command).request("GET", backendPath(name)) as BackendInfo;
      if (options.json === true) return print(JSON.stringify(info, null, 2));
      const lines: Array<[string, string]> = [
        ["name", info.name], ["kind", info.kind], ["managed", info.managed ? "by ovs up" : "no"], ["vpools", info.vpools.join(", ") || "-"],
        ...Object.entries(info.config).map(([key, value]): [string, string] => [`config.${key}`, typeof value === "string" ? value : JSON.stringify(value)]),
        ["secrets set", info.secretsSet.join(", ") || "-"], ["created", info.createdAt],
      ];
      for (const asd of info.asds ?? []) lines.push([`asd ${asd.asdId}`, `${asd.nodeId} ${asd.url} ${asd.status}`]);
      print(formatKeyValues(lines));
    }));

  backend.command("set")
    .description("change a backend's config (secrets left out keep their values)")
    .argument("<name>", "backend name")
    .option("--config <json>", "the new config")
    .option("--config-file <file>", "the same JSON in a file")
    .action((name: string, options: { config?: string; configFile?: string }, command: Command) => run(async () => {
      const updated = await apiClientOf(command).request("PATCH", backendPath(name), { config: await configFrom(options) }) as BackendInfo;
      print(`changed backend ${updated.name}: ${configText(updated.config)}`);
    }));

  backend.command("rm")
    .alias("delete")
    .description("forget a backend no vPool uses (its data stays in the store)")
    .argument("<name>", "backend name")
    .action((name: string, _options: unknown, command: Command) => run(async () => {
      await apiClientOf(command).request("DELETE", backendPath(name));
      print(`removed backend ${name}`);
    }));

  const preset = backend.command("preset").description("presets of an Alba backend: how its namespaces store objects");
  preset.command("ls")
    .description("list an Alba backend's presets")
    .argument("<backend>", "backend name")
    .option("--json", "print the API's JSON")
    .action((name: string, options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await apiClientOf(command).request("GET", `${backendPath(name)}/presets`) as { presets: PresetInfo[] };
      if (options.json === true) return print(JSON.stringify(listed.presets, null, 2));
      print(formatTable(["name", "policies (k,m,c,x)", "fragment", "compression", "encryption"], listed.presets.map((info) => [
        info.name, policiesText(info.policies),
        String(info.fragmentSizeBytes), info.compression, info.encryption,
      ])));
    }));
  preset.command("add")
    .description("add a preset to an Alba backend")
    .argument("<backend>", "backend name")
    .argument("<preset>", "preset name")
    .requiredOption("--policies <k,m,c,x;...>", "policies in order of preference, e.g. 4,2,5,2;2,2,3,4", parsePoliciesOption)
    .option("--fragment-size <size>", "data fragment size (a multiple of 4 KiB up to 16M, default 1M)")
    .option("--compression <codec>", "none, lz4 or snappy (default none)")
    .option("--key-file <file>", "encrypt with aes-256-ctr: a file holding the key as 64 hex digits")
    .action((name: string, presetName: string, options: { policies: PresetInfo["policies"]; fragmentSize?: string; compression?: string; keyFile?: string }, command: Command) => run(async () => {
      const encryptionKeyHex = options.keyFile === undefined ? undefined : (await readFile(options.keyFile, "utf8")).trim();
      await apiClientOf(command).request("POST", `${backendPath(name)}/presets`, {
        name: presetName, policies: options.policies,
        ...(options.fragmentSize === undefined ? {} : { fragmentSizeBytes: parseSizeBytes(options.fragmentSize) }),
        ...(options.compression === undefined ? {} : { compression: options.compression }),
        ...(encryptionKeyHex === undefined ? {} : { encryption: "aes-256-ctr", encryptionKeyHex }),
      });
      print(`added preset ${presetName} to backend ${name}`);
    }));
  preset.command("set")
    .description("change a preset's policies (objects already stored keep theirs) and/or make it Alba's default; its fragment size and codecs never change: add a new preset for those")
    .argument("<backend>", "backend name")
    .argument("<preset>", "preset name")
    .option("--policies <k,m,c,x;...>", "the new policies in order of preference, e.g. 4,2,5,2;2,2,3,4", parsePoliciesOption)
    .option("--default", "make it the preset new namespaces get when none is named")
    .option("--json", "print the API's JSON")
    .action((name: string, presetName: string, options: { policies?: PresetInfo["policies"]; default?: boolean; json?: boolean }, command: Command) => run(async () => {
      if (options.policies === undefined && options.default !== true) throw new CliError("nothing to change: give --policies, --default or both");
      const updated = await apiClientOf(command).request("PATCH", presetPath(name, presetName), {
        ...(options.policies === undefined ? {} : { policies: options.policies }),
        ...(options.default === true ? { default: true } : {}),
      }) as PresetInfo;
      if (options.json === true) return print(JSON.stringify(updated, null, 2));
      print(`changed preset ${presetName} of backend ${name}: policies ${policiesText(updated.policies)}${options.default === true ? "; it is now the default preset" : ""}`);
    }));
  preset.command("rm")
    .alias("delete")
    .description("delete a preset that no namespace uses, that is not Alba's default and that the backend's config does not name")
    .argument("<backend>", "backend name")
    .argument("<preset>", "preset name")
    .action((name: string, presetName: string, _options: unknown, command: Command) => run(async () => {
      await apiClientOf(command).request("DELETE", presetPath(name, presetName));
      print(`deleted preset ${presetName} of backend ${name}`);
    }));
}

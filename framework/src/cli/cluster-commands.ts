// `ovs status` (the cluster at a glance: health, backend and ASDs, vDisks, schedules) and
// `ovs schedule ls | set | run | runs` (the periodic jobs of /api/schedules). --json prints the API's
// JSON for scripts.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { forgetToken, storeToken, tokenFile } from "./cli-tokens.ts";
import { apiClientOf, CliError } from "./api-client.ts";
import { formatKeyValues, formatTable } from "./table.ts";
import type { Print, Run } from "./vdisk-commands.ts";

interface JobInfo {
  name: string;
  schedule: { everyMinutes?: number; hourlyAtMinute?: number; dailyAt?: { hour: number; minute: number } };
  enabled: boolean;
  running: boolean;
  nextRunAt?: string;
  lastRun?: RunRecord;
}

interface RunRecord { job: string; dueAt: string; startedAt?: string; finishedAt?: string; outcome: string; summary?: unknown; error?: string }

interface Health {
  status: string;
  uptimeSeconds: number;
  storagedrivers: Array<{ vpool: string; status: string; health?: { backend?: string; pid?: number } }>;
  alba?: { status: string; proxyUrl: string; asdsUp?: number; asdsTotal?: number; error?: string };
}

interface BackendInfo { type: string; proxyUrl?: string; asds?: Array<{ asdId: string; nodeId: string; address: string; health: string; usedBytes?: number; capacityBytes?: number }> }

const pad2 = (value: number): string => String(value).padStart(2, "0");

export function scheduleText(schedule: JobInfo["schedule"]): string {
  if (schedule.everyMinutes !== undefined) return `every ${schedule.everyMinutes} min`;
  if (schedule.hourlyAtMinute !== undefined) return `hourly at :${pad2(schedule.hourlyAtMinute)}`;
  if (schedule.dailyAt !== undefined) return `daily at ${pad2(schedule.dailyAt.hour)}:${pad2(schedule.dailyAt.minute)} UTC`;
  return JSON.stringify(schedule);
}

function lastRunText(run: RunRecord | undefined): string {
  if (run === undefined) return "-";
  return `${run.outcome} ${run.finishedAt ?? run.dueAt}${run.error === undefined ? "" : ` (${run.error})`}`;
}

/** --every-minutes N, --hourly-at M or --daily-at HH:MM into a schedule; at most one of them. */
function scheduleFromOptions(options: { everyMinutes?: string; hourlyAt?: string; dailyAt?: string }): JobInfo["schedule"] | undefined {
  const given = [options.everyMinutes, options.hourlyAt, options.dailyAt].filter((value) => value !== undefined);
  if (given.length > 1) throw new CliError("give one of --every-minutes, --hourly-at and --daily-at");
  if (options.everyMinutes !== undefined) return { everyMinutes: Number(options.everyMinutes) };
  if (options.hourlyAt !== undefined) return { hourlyAtMinute: Number(options.hourlyAt) };
  if (options.dailyAt !== undefined) {
    const match = /^(\d{1,2}):(\d{2})$/.exec(options.dailyAt);
    if (match === null) throw new CliError(`--daily-at ${options.dailyAt}: give a UTC time as HH:MM, e.g. 03:00`);
    return { dailyAt: { hour: Number(match[1]), minute: Number(match[2]) } };
  }
  return undefined;
}

export function registerClusterCommands(program: Command, run: Run, print: Print): void {
  program.command("status")
    .description("the cluster at a glance: health, backend and ASDs, vDisks, scheduled jobs")
    .option("--json", "print the API's JSON")
    .action((options: { json?: boolean }, command: Command) => run(async () => {
      const api = apiClientOf(command);
      const health = await api.request("GET", "/health", undefined, [503]) as Health;
      const [backend, vdisks, schedules] = await Promise.all([
        api.request("GET", "/backend", undefined, [503]).catch(() => undefined) as Promise<BackendInfo | undefined>,
        api.request("GET", "/vdisks").catch(() => undefined) as Promise<{ vdisks: Array<{ name: string }> } | undefined>,
        api.request("GET", "/schedules").catch(() => undefined) as Promise<{ schedules: JobInfo[] } | undefined>,
      ]);
      if (options.json === true) {
        print(JSON.stringify({ health, backend, vdisks: vdisks?.vdisks, schedules: schedules?.schedules }, null, 2));
        return;
      }
      const storagedriver = health.storagedrivers[0];
      const lines: Array<[string, string]> = [
        ["status", health.status],
        ["uptime", `${health.uptimeSeconds} s`],
        // One line per vPool's StorageDriver.
        ...(health.storagedrivers.length === 0 ? [["storagedriver", "-"] as [string, string]] : health.storagedrivers.map((driver): [string, string] => [
          "storagedriver", `${driver.vpool}: ${driver.status}${driver.health?.pid === undefined ? "" : ` (pid ${driver.health.pid})`}`,
        ])),
        ["backend", backend === undefined ? (storagedriver?.health?.backend ?? "-") : `${backend.type}${backend.proxyUrl === undefined ? "" : ` (proxy ${backend.proxyUrl})`}`],
      ];
      if (health.alba !== undefined) {
        lines.push(["alba", health.alba.status === "unreachable" ? `proxy unreachable: ${health.alba.error ?? ""}` : `${health.alba.asdsUp}/${health.alba.asdsTotal} ASDs up`]);
      }
      lines.push(["vdisks", vdisks === undefined ? "-" : String(vdisks.vdisks.length)]);
      print(formatKeyValues(lines));
      if (backend?.asds !== undefined && backend.asds.length > 0) {
        print("");
        print(formatTable(["asd", "node", "address", "health", "used"], backend.asds.map((asd) => [
          asd.asdId.slice(0, 12), asd.nodeId, asd.address, asd.health,
          asd.usedBytes === undefined ? "-" : `${(asd.usedBytes / 1024 ** 2).toFixed(1)} MiB${asd.capacityBytes ? ` of ${(asd.capacityBytes / 1024 ** 3).toFixed(0)} GiB` : ""}`,
        ])));
      }
      if (schedules !== undefined) {
        print("");
        print(formatTable(["job", "schedule", "next run", "last run"], schedules.schedules.map((job) => [
          job.name, job.enabled ? scheduleText(job.schedule) : `${scheduleText(job.schedule)} (disabled)`, job.nextRunAt ?? "-", lastRunText(job.lastRun),
        ])));
      }
    }));

  const schedule = program.command("schedule").description("the cluster's periodic jobs: snapshots with retention, scrub, Alba maintenance");
  schedule.command("ls")
    .alias("list")
    .description("list the jobs with their schedules, next and last runs")
    .option("--json", "print the API's JSON instead of a table")
    .action((options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await apiClientOf(command).request("GET", "/schedules") as { schedules: JobInfo[] };
      if (options.json === true) {
        print(JSON.stringify(listed.schedules, null, 2));
        return;
      }
      print(formatTable(["job", "schedule", "enabled", "next run", "last run"], listed.schedules.map((job) => [
        job.name, scheduleText(job.schedule), job.enabled ? "yes" : "no", job.nextRunAt ?? "-", lastRunText(job.lastRun),
      ])));
    }));

  schedule.command("set")
    .description("change a job's schedule (UTC) or enable/disable it; kept across restarts")
    .argument("<job>", "snapshots, scrub or alba-maintenance")
    .option("--every-minutes <n>", "run every N minutes (1-10080)")
    .option("--hourly-at <minute>", "run every hour at this minute (0-59)")
    .option("--daily-at <HH:MM>", "run every day at this UTC time")
    .option("--enable", "enable the job")
    .option("--disable", "disable the job (no scheduled runs)")
    .action((job: string, options: { everyMinutes?: string; hourlyAt?: string; dailyAt?: string; enable?: boolean; disable?: boolean }, command: Command) => run(async () => {
      if (options.enable === true && options.disable === true) throw new CliError("give --enable or --disable, not both");
      const body: Record<string, unknown> = {};
      const spec = scheduleFromOptions(options);
      if (spec !== undefined) body.schedule = spec;
      if (options.enable === true) body.enabled = true;
      if (options.disable === true) body.enabled = false;
      if (Object.keys(body).length === 0) throw new CliError("nothing to change: give a schedule (--every-minutes, --hourly-at, --daily-at) or --enable/--disable");
      const updated = await apiClientOf(command).request("PUT", `/schedules/${encodeURIComponent(job)}`, body) as JobInfo;
      print(`${updated.name}: ${scheduleText(updated.schedule)}, ${updated.enabled ? `next run ${updated.nextRunAt}` : "disabled"}`);
    }));

  schedule.command("run")
    .description("run a job now and wait for it")
    .argument("<job>", "snapshots, scrub or alba-maintenance")
    .option("--json", "print the run's JSON")
    .action((job: string, options: { json?: boolean }, command: Command) => run(async () => {
      const record = await apiClientOf(command).request("POST", `/schedules/${encodeURIComponent(job)}/run`) as RunRecord;
      if (options.json === true) {
        print(JSON.stringify(record, null, 2));
        return;
      }
      if (record.outcome === "failed") throw new CliError(`${job} failed: ${record.error ?? "no reason given"}`);
      print(`${job} ${record.outcome}${record.summary === undefined ? "" : `: ${JSON.stringify(record.summary)}`}`);
    }));

  schedule.command("runs")
    .description("the last runs of a job, oldest first")
    .argument("<job>", "snapshots, scrub or alba-maintenance")
    .option("--json", "print the API's JSON instead of a table")
    .action((job: string, options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await apiClientOf(command).request("GET", `/schedules/${encodeURIComponent(job)}/runs`) as { runs: RunRecord[] };
      if (options.json === true) {
        print(JSON.stringify(listed.runs, null, 2));
        return;
      }
      if (listed.runs.length === 0) {
        print(`${job} has not run yet`);
        return;
      }
      print(formatTable(["due", "outcome", "finished", "summary or error"], listed.runs.map((record) => [
        record.dueAt, record.outcome, record.finishedAt ?? "-", record.error ?? (record.summary === undefined ? "" : JSON.stringify(record.summary)),
      ])));
    }));
}

/** `ovs login` / `ovs logout`: a bearer token for the API, kept in cli-tokens.ts's file. */
export function registerLoginCommands(program: Command, run: Run, print: Print): void {
  program.command("login")
    .description("get a bearer token for the API (password grant) and keep it for the next commands")
    .option("--credentials <file>", "a JSON file with username and password (ovs up writes DATA/admin-credentials.json)", "./data/admin-credentials.json")
    .option("--user <name>", "log in as this user; the password comes from OVS_PASSWORD")
    .action((options: { credentials: string; user?: string }, command: Command) => run(async () => {
      let username: string;
      let password: string;
      if (options.user !== undefined) {
        username = options.user;
        password = process.env.OVS_PASSWORD ?? "";
        if (password === "") throw new CliError("--user needs the password in OVS_PASSWORD (it is never taken as an argument)");
      } else {
        let text: string;
        try {
          text = readFileSync(options.credentials, "utf8");
        } catch (error) {
          throw new CliError(`cannot read ${options.credentials} (${(error as Error).message}): give --credentials DATA/admin-credentials.json, or --user NAME with OVS_PASSWORD`, { cause: error });
        }
        const parsed = JSON.parse(text) as { username?: string; password?: string };
        if (typeof parsed.username !== "string" || typeof parsed.password !== "string") throw new CliError(`${options.credentials} must hold {"username": ..., "password": ...}`);
        username = parsed.username;
        password = parsed.password;
      }
      const client = apiClientOf(command);
      const issued = await client.request("POST", "/oauth2/token", { grant_type: "password", username, password }) as { access_token: string; expires_in: number; scope: string };
      const expiresAt = new Date(Date.now() + issued.expires_in * 1000).toISOString();
      storeToken(client.baseUrl, { token: issued.access_token, expiresAt, subject: username });
      print(`logged in to ${client.baseUrl} as ${username} (${issued.scope}); the token is valid until ${expiresAt} (kept in ${tokenFile()})`);
    }));

  program.command("logout")
    .description("forget the token of the API")
    .action((_options: unknown, command: Command) => run(async () => {
      const client = apiClientOf(command);
      print(forgetToken(client.baseUrl) ? `logged out of ${client.baseUrl}` : `no token kept for ${client.baseUrl}`);
    }));
}

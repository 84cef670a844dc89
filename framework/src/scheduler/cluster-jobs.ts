// The periodic jobs of the cluster `ovs up` runs, over the StorageDriver's management API and the
// Alba proxy:
// - snapshots (hourly at :00): a snapshot "auto-YYYYMMDD-HHMM" of every running vDisk that is not a
//   template, then the retention rule (retention.ts) over that vDisk's scheduled snapshots. Snapshots
//   an operator made (any other name) are never deleted by it: they count as sticky.
// - scrub (daily at 03:00): a scrub of every vDisk that has garbage to collect (scrubPending), one
//   at a time, each followed to its end.
// A vPool can schedule snapshots or scrubs its own way (vPool.schedules): then the cluster job leaves
// its vDisks out and a job "snapshots@VPOOL" / "scrub@VPOOL" covers them, or nothing does (null: off).
// - alba-maintenance (hourly at :30, with the Alba backend ovs up runs): repair, verify, orphan
//   collection and rebalance through the proxy (runMaintenanceThroughProxy).
import type { JobDefinition, ScheduleSpec } from "./scheduler.ts";
import { snapshotsToDelete } from "./retention.ts";
import { runMaintenanceThroughProxy } from "../../../alba/src/maintenance/maintenance-commands.ts";
import { ProxyClient } from "../../../alba/src/proxy/proxy-client.ts";
import type { StorageDriverClient, StorageDriverResponse } from "../api/storagedriver-client.ts";
import { VPOOL_SCHEDULED_JOBS as VPOOL_JOBS, type VPoolSchedules } from "../model/vpool-repository.ts";

export const SCHEDULED_SNAPSHOT_PREFIX = "auto-";
export const DEFAULT_SCHEDULES: Readonly<Record<string, ScheduleSpec>> = {
  snapshots: { hourlyAtMinute: 0 },
  scrub: { dailyAt: { hour: 3, minute: 0 } },
  "alba-maintenance": { hourlyAtMinute: 30 },
};
const TASK_POLL_INTERVAL_MS = 2_000;

interface VdiskSummary { name: string; vpool?: string; state: string; template: boolean; scrubPending: boolean }

/** Which vDisks a run covers, by their vPool (undefined: all). */
export type VPoolFilter = (vpool: string | undefined) => boolean;
const ALL_VPOOLS: VPoolFilter = () => true;
interface SnapshotSummary { name: string; createdAt: string; clones: string[] }

function ok<T>(response: StorageDriverResponse, what: string, statuses = [200, 201, 202, 204]): T {
  if (!statuses.includes(response.statusCode)) {
    const message = (response.body as { error?: { message?: string } } | undefined)?.error?.message ?? `HTTP ${response.statusCode}`;
    throw new Error(`${what}: ${message}`);
  }
  return response.body as T;
}

/** The snapshot name for a run at `nowMs`: auto-20261122-1400 (UTC). */
export function scheduledSnapshotName(nowMs: number): string {
  const iso = new Date(nowMs).toISOString();
  return `${SCHEDULED_SNAPSHOT_PREFIX}${iso.slice(0, 10).replace(/-/g, "")}-${iso.slice(11, 13)}${iso.slice(14, 16)}`;
}

async function runningVdisks(storagedriver: StorageDriverClient, covers: VPoolFilter): Promise<VdiskSummary[]> {
  return ok<{ vdisks: VdiskSummary[] }>(await storagedriver.request("GET", "/vdisks"), "listing the vDisks").vdisks
    .filter((vdisk) => vdisk.state === "running" && covers(vdisk.vpool));
}

/** Snapshot every vDisk, then thin its scheduled snapshots. A vDisk that fails does not stop the others; the run fails at the end. */
export async function snapshotJob(storagedriver: StorageDriverClient, nowMs: () => number, covers: VPoolFilter = ALL_VPOOLS): Promise<{ created: number; deleted: number; vdisks: number }> {
  let created = 0;
  let deleted = 0;
  const failures: string[] = [];
  const vdisks = await runningVdisks(storagedriver, covers);
  for (const vdisk of vdisks) {
    if (vdisk.template) continue;
    const path = `/vdisks/${encodeURIComponent(vdisk.name)}/snapshots`;
    try {
      const name = scheduledSnapshotName(nowMs());
      const answer = await storagedriver.request("POST", path, { name });
      // 409: this hour's snapshot exists already (a run now after the scheduled one): not an error.
      if (answer.statusCode !== 409) ok(answer, `snapshot ${vdisk.name}@${name}`);
      if (answer.statusCode === 201) created++;
      const snapshots = ok<{ snapshots: SnapshotSummary[] }>(await storagedriver.request("GET", path), `listing the snapshots of ${vdisk.name}`).snapshots;
      const doomed = snapshotsToDelete(snapshots.filter((snapshot) => snapshot.name.startsWith(SCHEDULED_SNAPSHOT_PREFIX)).map((snapshot) => ({
        name: snapshot.name, createdAtMs: Date.parse(snapshot.createdAt), sticky: false, hasClones: snapshot.clones.length > 0,
      })), nowMs());
      for (const snapshot of doomed) {
        ok(await storagedriver.request("DELETE", `${path}/${encodeURIComponent(snapshot)}`), `deleting ${vdisk.name}@${snapshot}`);
        deleted++;
      }
    } catch (error) {
      failures.push(`${vdisk.name}: ${(error as Error).message}`);
    }
  }
  if (failures.length > 0) throw new Error(`snapshots failed for ${failures.join("; ")} (created ${created}, deleted ${deleted})`);
  return { created, deleted, vdisks: vdisks.length };
}

/** Scrubs the vDisks that need it, one after the other, each to its end. */
export async function scrubJob(storagedriver: StorageDriverClient, covers: VPoolFilter = ALL_VPOOLS,
  sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))): Promise<{ scrubbed: string[] }> {
  const scrubbed: string[] = [];
  for (const vdisk of await runningVdisks(storagedriver, covers)) {
    if (!vdisk.scrubPending) continue;
    const started = ok<{ task: { id: string } }>(await storagedriver.request("POST", `/vdisks/${encodeURIComponent(vdisk.name)}/scrub`, {}), `scrubbing ${vdisk.name}`);
    for (;;) {
      const task = ok<{ state: string; error?: { message?: string } }>(await storagedriver.request("GET", `/tasks/${encodeURIComponent(started.task.id)}`), `following the scrub of ${vdisk.name}`);
      if (task.state === "succeeded") break;
      if (task.state === "failed") throw new Error(`the scrub of ${vdisk.name} failed: ${task.error?.message ?? "no reason given"}`);
      await sleep(TASK_POLL_INTERVAL_MS);
    }
    scrubbed.push(vdisk.name);
  }
  return { scrubbed };
}

/** One maintenance run on the Alba proxy, to its end. */
export async function albaMaintenanceJob(proxyUrl: string): Promise<unknown> {
  const proxy = new ProxyClient(proxyUrl);
  try {
    const info = await runMaintenanceThroughProxy(proxy, {});
    if (info.state === "failed") throw new Error(`Alba maintenance failed: ${info.error?.message ?? "no reason given"}`);
    return { runId: info.runId, durationMs: info.report?.durationMs };
  } finally {
    await proxy.close();
  }
}

/** A job a vPool can schedule its own way (vPool.schedules in the model: a spec, or null for off). */
export type VPoolJob = (typeof VPOOL_JOBS)[number];

/** The name of a vPool's own run of a job: "snapshots@pool2". */
export function vpoolJobName(job: VPoolJob, vpool: string): string {
  return `${job}@${vpool}`;
}

/** "snapshots@pool2" → {job, vpool}; undefined for a cluster job. */
export function parseVpoolJobName(name: string): { job: VPoolJob; vpool: string } | undefined {
  const separator = name.indexOf("@");
  if (separator < 0) return undefined;
  const job = name.slice(0, separator);
  return (VPOOL_JOBS as readonly string[]).includes(job) ? { job: job as VPoolJob, vpool: name.slice(separator + 1) } : undefined;
}

function runVpoolJob(job: VPoolJob, storagedriver: StorageDriverClient, nowMs: () => number, covers: VPoolFilter): Promise<unknown> {
  return job === "snapshots" ? snapshotJob(storagedriver, nowMs, covers) : scrubJob(storagedriver, covers);
}

/** A vPool's own run of `job`, on its vDisks only. */
export function vpoolJob(job: VPoolJob, vpool: string, schedule: ScheduleSpec, storagedriver: StorageDriverClient, nowMs: () => number = Date.now): JobDefinition {
  return { name: vpoolJobName(job, vpool), schedule, enabled: true, run: () => runVpoolJob(job, storagedriver, nowMs, (name) => name === vpool) };
}

/**
 * The cluster's jobs with their schedules (defaults, overridden by the stored ones). The snapshots
 * and scrub jobs leave out the vPools that schedule the job their own way (`vpoolSchedules`, read at
 * each run); vpoolJob makes those vPools' own jobs.
 */
export function clusterJobs(options: {
  storagedriver: StorageDriverClient;
  albaProxyUrl?: string;
  stored?: Record<string, { schedule: ScheduleSpec; enabled: boolean }>;
  nowMs?: () => number;
  vpoolSchedules?: (vpool: string) => VPoolSchedules;
}): JobDefinition[] {
  const nowMs = options.nowMs ?? Date.now;
  const withStored = (name: string, run: () => Promise<unknown>): JobDefinition => ({
    name, run,
    schedule: options.stored?.[name]?.schedule ?? DEFAULT_SCHEDULES[name],
    enabled: options.stored?.[name]?.enabled ?? true,
  });
  const clusterCovers = (job: VPoolJob): VPoolFilter => (vpool) => vpool === undefined || options.vpoolSchedules?.(vpool)[job] === undefined;
  const jobs = VPOOL_JOBS.map((job) => withStored(job, () => runVpoolJob(job, options.storagedriver, nowMs, clusterCovers(job))));
  const proxyUrl = options.albaProxyUrl;
  if (proxyUrl !== undefined) jobs.push(withStored("alba-maintenance", () => albaMaintenanceJob(proxyUrl)));
  return jobs;
}

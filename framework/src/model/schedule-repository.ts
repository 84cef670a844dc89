// Schedules of the framework's periodic jobs (what the scheduler runs and when) and the history of
// their runs. ScheduleRuns is the scheduler's RunHistoryStore, so runs survive a restart of the
// framework; it keeps at most runsPerJobKeptMax runs per job, forgetting the oldest.
import assert from "node:assert/strict";
import { validateSchedule, type RunHistoryStore, type RunRecord, type ScheduleSpec } from "../scheduler/scheduler.ts";
import { requireBoolean, requireName, requireOnlyKeys, requireRecord, toJsonColumn } from "./field-checks.ts";
import { insertUnique, parseJsonColumn, type ModelContext } from "./model-context.ts";
import { invalid, notFound } from "./model-error.ts";
import { RUN_OUTCOMES } from "./model-schema.ts";

export interface Schedule {
  /** The job's name, e.g. "snapshots", "scrub", "alba-maintenance". */
  job: string;
  spec: ScheduleSpec;
  enabled: boolean;
  updatedAt: string;
}

export type ScheduleInput = Pick<Schedule, "job" | "spec"> & { enabled?: boolean };

/** As MemoryRunHistory: enough for weeks of hourly runs. */
export const RUNS_PER_JOB_KEPT_MAX = 1000;

const JOB_NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
const JOB_NAME_HINT = "1-63 characters of a-z, 0-9 and '-', starting with a letter";

interface ScheduleRow { job: string; spec_json: string; enabled: number; updated_at: string }
interface RunRow {
  job: string; due_at: string; started_at: string | null; finished_at: string | null; outcome: RunRecord["outcome"];
  error: string | null; summary_json: string | null;
}

function toSchedule(row: ScheduleRow): Schedule {
  return { job: row.job, spec: parseJsonColumn<ScheduleSpec>(row.spec_json), enabled: row.enabled === 1, updatedAt: row.updated_at };
}

function checkSpec(value: unknown): ScheduleSpec {
  try {
    return validateSchedule(value);
  } catch (error) {
    throw invalid((error as Error).message);
  }
}

export class Schedules {
  constructor(private readonly context: ModelContext) {}

  create(input: ScheduleInput): Schedule {
    const raw = requireRecord(input, "schedule");
    requireOnlyKeys(raw, ["job", "spec", "enabled"], "schedule");
    const job = requireName(raw.job, "schedule job", JOB_NAME_PATTERN, JOB_NAME_HINT);
    const spec = checkSpec(raw.spec);
    const enabled = requireBoolean(raw.enabled ?? true, "schedule enabled");
    insertUnique(
      () => this.context.database.prepare("INSERT INTO schedules (job, spec_json, enabled, updated_at) VALUES (?, ?, ?, ?)")
        .run(job, JSON.stringify(spec), enabled ? 1 : 0, this.context.nowIso()),
      `job ${job} has a schedule already: update it instead`,
    );
    return this.get(job);
  }

  get(job: string): Schedule {
    const row = this.context.database.prepare("SELECT * FROM schedules WHERE job = ?").get(job) as ScheduleRow | undefined;
    if (row === undefined) throw notFound(`no schedule for job ${job}: list the schedules to check the name`);
    return toSchedule(row);
  }

  list(): Schedule[] {
    return (this.context.database.prepare("SELECT * FROM schedules ORDER BY job").all() as ScheduleRow[]).map(toSchedule);
  }

  update(job: string, changes: { spec?: ScheduleSpec; enabled?: boolean }): Schedule {
    const current = this.get(job);
    requireOnlyKeys(requireRecord(changes, "schedule changes"), ["spec", "enabled"], "schedule changes");
    const spec = changes.spec === undefined ? current.spec : checkSpec(changes.spec);
    const enabled = requireBoolean(changes.enabled ?? current.enabled, "schedule enabled");
    this.context.database.prepare("UPDATE schedules SET spec_json = ?, enabled = ?, updated_at = ? WHERE job = ?")
      .run(JSON.stringify(spec), enabled ? 1 : 0, this.context.nowIso(), job);
    return this.get(job);
  }

  /** Deletes the schedule and the job's run history together. */
  delete(job: string): void {
    this.get(job);
    this.context.database.transaction(() => {
      this.context.database.prepare("DELETE FROM schedule_runs WHERE job = ?").run(job);
      this.context.database.prepare("DELETE FROM schedules WHERE job = ?").run(job);
    })();
  }
}

export class ScheduleRuns implements RunHistoryStore {
  constructor(private readonly context: ModelContext, private readonly runsPerJobKeptMax = RUNS_PER_JOB_KEPT_MAX) {
    assert.ok(Number.isSafeInteger(runsPerJobKeptMax) && runsPerJobKeptMax >= 1, "runsPerJobKeptMax is a positive count");
  }

  /** Records a run (the scheduler builds the record, so it is asserted-valid input: checked only for shape). */
  append(record: RunRecord): void {
    const job = requireName(record.job, "run job", JOB_NAME_PATTERN, JOB_NAME_HINT);
    if (!(RUN_OUTCOMES as readonly string[]).includes(record.outcome)) throw invalid(`run outcome must be one of ${RUN_OUTCOMES.join(", ")}`);
    this.context.database.transaction(() => {
      this.context.database.prepare(
        "INSERT INTO schedule_runs (job, due_at, started_at, finished_at, outcome, error, summary_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ).run(
        job, record.dueAt, record.startedAt ?? null, record.finishedAt ?? null, record.outcome, record.error ?? null,
        record.summary === undefined ? null : toJsonColumn(record.summary, "run summary"),
      );
      this.context.database.prepare(
        "DELETE FROM schedule_runs WHERE job = ? AND id IN (SELECT id FROM schedule_runs WHERE job = ? ORDER BY id DESC LIMIT -1 OFFSET ?)",
      ).run(job, job, this.runsPerJobKeptMax);
    })();
  }

  /** The newest `limit` runs of a job, oldest first (as RunHistoryStore says). */
  list(job: string, limit: number): RunRecord[] {
    const rows = this.context.database.prepare("SELECT * FROM (SELECT * FROM schedule_runs WHERE job = ? ORDER BY id DESC LIMIT ?) ORDER BY id")
      .all(job, Math.max(0, Math.min(limit, this.runsPerJobKeptMax))) as RunRow[];
    return rows.map((row) => ({
      job: row.job, dueAt: row.due_at, outcome: row.outcome,
      ...(row.started_at === null ? {} : { startedAt: row.started_at }),
      ...(row.finished_at === null ? {} : { finishedAt: row.finished_at }),
      ...(row.summary_json === null ? {} : { summary: parseJsonColumn<unknown>(row.summary_json) }),
      ...(row.error === null ? {} : { error: row.error }),
    }));
  }
}

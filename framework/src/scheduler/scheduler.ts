// Runs the framework's periodic jobs (hourly snapshots with retention, nightly scrubs, Alba
// maintenance) on a clock that tests replace. Each job has a schedule (JSON: every N minutes, hourly
// at a minute, daily at a time, UTC), can be enabled, disabled and rescheduled while running, and
// keeps a bounded history of its runs with their outcome. A run that comes due while the previous
// run of the same job still runs is not started: it is recorded as skipped, so runs never overlap.
// stop() cancels the timer and waits for the runs in progress.
// Time: one timer, for the earliest due job. Runs missed while the process slept or the clock jumped
// forward are not replayed: the job runs once, late, and then keeps its schedule. A failing job, a
// failing history store or a throwing hook never stops the scheduler nor rejects anything unhandled.
import assert from "node:assert/strict";

/** When a job runs (UTC). */
export type ScheduleSpec =
  | { everyMinutes: number }
  | { hourlyAtMinute: number }
  | { dailyAt: { hour: number; minute: number } };

export type RunOutcome = "succeeded" | "failed" | "skipped";

export interface RunRecord {
  job: string;
  /** When it was due (ISO); a skipped run has no end. */
  dueAt: string;
  startedAt?: string;
  finishedAt?: string;
  outcome: RunOutcome;
  /** What the job reported (succeeded), e.g. {"snapshots": 3, "deleted": 1}. */
  summary?: unknown;
  /** Why it failed, or why it was skipped. */
  error?: string;
}

/** Where runs are recorded; in memory here, in the framework's model later. */
export interface RunHistoryStore {
  append(record: RunRecord): void;
  /** The newest `limit` runs of a job, oldest first. */
  list(job: string, limit: number): RunRecord[];
}

/** Runs kept per job by default: six weeks of hourly runs. */
export const RUNS_PER_JOB_KEPT_MAX_DEFAULT = 1000;

/** The history in memory, for tests and until the model's store takes over; forgets the oldest runs. */
export class MemoryRunHistory implements RunHistoryStore {
  private readonly runs = new Map<string, RunRecord[]>();

  constructor(private readonly runsPerJobKeptMax = RUNS_PER_JOB_KEPT_MAX_DEFAULT) {
    assert.ok(Number.isSafeInteger(runsPerJobKeptMax) && runsPerJobKeptMax >= 1, "runsPerJobKeptMax is a positive count");
  }

  append(record: RunRecord): void {
    const list = this.runs.get(record.job) ?? [];
    list.push(record);
    if (list.length > this.runsPerJobKeptMax) list.splice(0, list.length - this.runsPerJobKeptMax);
    this.runs.set(record.job, list);
  }

  list(job: string, limit: number): RunRecord[] {
    // slice(-0) would be the whole list.
    return limit <= 0 ? [] : (this.runs.get(job) ?? []).slice(-limit);
  }
}

/** The time source and timer; tests use a fake that advances on demand. */
export interface SchedulerClock {
  nowMs(): number;
  setTimer(callback: () => void, delayMs: number): unknown;
  clearTimer(handle: unknown): void;
}

export const SYSTEM_CLOCK: SchedulerClock = {
  nowMs: () => Date.now(),
  setTimer: (callback, delayMs) => setTimeout(callback, delayMs).unref(),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** A job asked to run while a run of it is in progress (runs never overlap). */
export class JobBusyError extends Error {
  constructor(readonly job: string) {
    super(`job ${job} is running now: wait until it has finished (its last runs: GET /api/schedules/${job}/runs)`);
  }
}

export interface JobDefinition {
  name: string;
  schedule: ScheduleSpec;
  enabled?: boolean;
  /** Does the work; resolves with a summary for the history, rejects on failure. */
  run(): Promise<unknown>;
}

export interface JobInfo {
  name: string;
  schedule: ScheduleSpec;
  enabled: boolean;
  running: boolean;
  nextRunAt?: string;
  lastRun?: RunRecord;
}

/** The longest interval: a week (everyMinutes is aligned to the epoch, so weekly runs fall on Thursdays). */
export const EVERY_MINUTES_MAX = 10_080;
const SCHEDULE_FORMAT = `a schedule is {"everyMinutes": 1-${EVERY_MINUTES_MAX}}, {"hourlyAtMinute": 0-59} or {"dailyAt": {"hour": 0-23, "minute": 0-59}} (UTC)`;

/**
 * Checks a schedule from a request or a config file; throws Error saying what is wrong and what a
 * valid one looks like. Returns a fresh object holding only the schedule's own fields.
 */
export function validateSchedule(value: unknown): ScheduleSpec {
  const fail = (problem: string): never => {
    throw new Error(`invalid schedule ${JSON.stringify(value) ?? String(value)}: ${problem}; ${SCHEDULE_FORMAT}`);
  };
  const isRecord = (candidate: unknown): candidate is Record<string, unknown> =>
    typeof candidate === "object" && candidate !== null && !Array.isArray(candidate);
  const integerIn = (candidate: unknown, min: number, max: number): candidate is number =>
    Number.isInteger(candidate) && (candidate as number) >= min && (candidate as number) <= max;
  if (!isRecord(value)) return fail("not an object");
  const keys = Object.keys(value);
  if (keys.length !== 1) return fail(`it needs exactly one of everyMinutes, hourlyAtMinute, dailyAt; it has ${keys.length === 0 ? "none" : keys.join(", ")}`);
  if ("everyMinutes" in value) {
    return integerIn(value.everyMinutes, 1, EVERY_MINUTES_MAX) ? { everyMinutes: value.everyMinutes } : fail(`everyMinutes must be an integer from 1 to ${EVERY_MINUTES_MAX}`);
  }
  if ("hourlyAtMinute" in value) {
    return integerIn(value.hourlyAtMinute, 0, 59) ? { hourlyAtMinute: value.hourlyAtMinute } : fail("hourlyAtMinute must be an integer from 0 to 59");
  }
  if ("dailyAt" in value) {
    const time = value.dailyAt;
    if (!isRecord(time) || Object.keys(time).length !== 2 || !("hour" in time) || !("minute" in time)) return fail("dailyAt must be {\"hour\": h, \"minute\": m}");
    if (!integerIn(time.hour, 0, 23)) return fail("dailyAt.hour must be an integer from 0 to 23");
    if (!integerIn(time.minute, 0, 59)) return fail("dailyAt.minute must be an integer from 0 to 59");
    return { dailyAt: { hour: time.hour, minute: time.minute } };
  }
  return fail(`unknown kind ${keys[0]}`);
}

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** The first time strictly after `afterMs` the schedule is due. */
export function nextDueMs(spec: ScheduleSpec, afterMs: number): number {
  if ("everyMinutes" in spec) {
    const period = spec.everyMinutes * MINUTE_MS;
    return (Math.floor(afterMs / period) + 1) * period;
  }
  if ("hourlyAtMinute" in spec) {
    const candidate = Math.floor(afterMs / HOUR_MS) * HOUR_MS + spec.hourlyAtMinute * MINUTE_MS;
    return candidate > afterMs ? candidate : candidate + HOUR_MS;
  }
  const candidate = Math.floor(afterMs / DAY_MS) * DAY_MS + spec.dailyAt.hour * HOUR_MS + spec.dailyAt.minute * MINUTE_MS;
  return candidate > afterMs ? candidate : candidate + DAY_MS;
}

interface JobState {
  definition: JobDefinition;
  schedule: ScheduleSpec;
  enabled: boolean;
  nextDueMs: number;
  running: Promise<void> | undefined;
}

export interface SchedulerOptions {
  clock?: SchedulerClock;
  history?: RunHistoryStore;
  /** Told of every run recorded (succeeded, failed or skipped), e.g. to log it. */
  onRunFinished?: (record: RunRecord) => void;
  /**
   * Told when a run could not be recorded: the history store or onRunFinished threw. The run itself
   * is over either way. By default a process warning (printed on stderr).
   */
  onRecordFailed?: (record: RunRecord, error: Error) => void;
}

function warnRecordFailed(record: RunRecord, error: Error): void {
  process.emitWarning(`the ${record.outcome} run of job ${record.job} due at ${record.dueAt} was not recorded: ${error.message}`, "SchedulerWarning");
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class Scheduler {
  private readonly jobs = new Map<string, JobState>();
  private timer: unknown;
  private started = false;
  private stopped = false;

  private readonly clock: SchedulerClock;
  readonly history: RunHistoryStore;
  private readonly onRunFinished: ((record: RunRecord) => void) | undefined;
  private readonly onRecordFailed: (record: RunRecord, error: Error) => void;

  constructor(options: SchedulerOptions = {}) {
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.history = options.history ?? new MemoryRunHistory();
    this.onRunFinished = options.onRunFinished;
    this.onRecordFailed = options.onRecordFailed ?? warnRecordFailed;
  }

  /** Adds a job; throws Error for a duplicate name or an invalid schedule. */
  add(definition: JobDefinition): void {
    assert.ok(typeof definition.name === "string" && definition.name.length > 0, "a job has a name");
    if (this.jobs.has(definition.name)) throw new Error(`job ${definition.name} already exists`);
    const schedule = validateSchedule(definition.schedule);
    this.jobs.set(definition.name, {
      definition, schedule, enabled: definition.enabled ?? true, nextDueMs: nextDueMs(schedule, this.clock.nowMs()), running: undefined,
    });
    this.arm();
  }

  /** Removes a job (a run in progress finishes and is recorded); false when there was none. */
  remove(name: string): boolean {
    const removed = this.jobs.delete(name);
    if (removed) this.arm();
    return removed;
  }

  /**
   * Changes a job's schedule or enables/disables it; takes effect at once and leaves a run in
   * progress alone. A new schedule, or enabling a disabled job, counts from now: a job disabled past
   * its due time does not run the moment it is enabled again.
   */
  update(name: string, change: { schedule?: unknown; enabled?: boolean }): JobInfo {
    const job = this.jobs.get(name);
    if (job === undefined) throw new Error(`no job ${name}: the jobs are ${[...this.jobs.keys()].join(", ")}`);
    // Validate everything before changing anything.
    const schedule = change.schedule === undefined ? undefined : validateSchedule(change.schedule);
    const enabling = change.enabled === true && !job.enabled;
    if (schedule !== undefined) job.schedule = schedule;
    if (change.enabled !== undefined) job.enabled = change.enabled;
    if (schedule !== undefined || enabling) job.nextDueMs = nextDueMs(job.schedule, this.clock.nowMs());
    this.arm();
    return this.info(job);
  }

  /**
   * Runs a job now, outside its schedule (its next scheduled run stays); resolves with the run's
   * record. Throws JobBusyError while a run of it is in progress, Error for an unknown job or once
   * the scheduler is stopping (stop() could not wait for the run).
   */
  async runNow(name: string): Promise<RunRecord> {
    const job = this.jobs.get(name);
    if (job === undefined) throw new Error(`no job ${name}: the jobs are ${[...this.jobs.keys()].join(", ")}`);
    if (this.stopped) throw new Error(`the scheduler is stopping: job ${name} cannot run now`);
    if (job.running !== undefined) throw new JobBusyError(name);
    let record: RunRecord | undefined;
    const running = this.run(job, this.clock.nowMs(), (finished) => { record = finished; });
    job.running = running.finally(() => {
      job.running = undefined;
    });
    await job.running;
    return record as RunRecord;
  }

  list(): JobInfo[] {
    return [...this.jobs.values()].map((job) => this.info(job));
  }

  start(): void {
    this.started = true;
    this.arm();
  }

  /** No more runs; resolves once the runs in progress have finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    await Promise.all([...this.jobs.values()].map((job) => job.running));
  }

  private info(job: JobState): JobInfo {
    const lastRun = this.history.list(job.definition.name, 1)[0];
    return {
      name: job.definition.name, schedule: job.schedule, enabled: job.enabled, running: job.running !== undefined,
      ...(job.enabled ? { nextRunAt: new Date(job.nextDueMs).toISOString() } : {}),
      ...(lastRun === undefined ? {} : { lastRun }),
    };
  }

  /** One timer, for the earliest due job. */
  private arm(): void {
    if (!this.started || this.stopped) return;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    const enabled = [...this.jobs.values()].filter((job) => job.enabled);
    if (enabled.length === 0) return;
    const earliest = Math.min(...enabled.map((job) => job.nextDueMs));
    this.timer = this.clock.setTimer(() => this.fire(), Math.max(0, earliest - this.clock.nowMs()));
  }

  private fire(): void {
    this.timer = undefined;
    const nowMs = this.clock.nowMs();
    for (const job of this.jobs.values()) {
      if (!job.enabled || job.nextDueMs > nowMs) continue;
      const dueMs = job.nextDueMs;
      job.nextDueMs = nextDueMs(job.schedule, nowMs);
      if (job.running !== undefined) {
        this.record({ job: job.definition.name, dueAt: new Date(dueMs).toISOString(), outcome: "skipped", error: "the previous run was still running" });
        continue;
      }
      job.running = this.run(job, dueMs).finally(() => {
        job.running = undefined;
      });
    }
    this.arm();
  }

  /** Runs the job once and records the outcome; never rejects. */
  private async run(job: JobState, dueMs: number, onRecord?: (record: RunRecord) => void): Promise<void> {
    const startedAt = new Date(this.clock.nowMs()).toISOString();
    const base = { job: job.definition.name, dueAt: new Date(dueMs).toISOString(), startedAt };
    let record: RunRecord;
    try {
      const summary = await job.definition.run();
      record = { ...base, finishedAt: new Date(this.clock.nowMs()).toISOString(), outcome: "succeeded", ...(summary === undefined ? {} : { summary }) };
    } catch (error) {
      record = { ...base, finishedAt: new Date(this.clock.nowMs()).toISOString(), outcome: "failed", error: errorMessage(error) };
    }
    this.record(record, onRecord);
  }

  /** Stores a run and tells the hooks; a store or hook that throws is reported, never propagated. */
  private record(record: RunRecord, onRecord?: (record: RunRecord) => void): void {
    onRecord?.(record);
    try {
      this.history.append(record);
      this.onRunFinished?.(record);
    } catch (error) {
      try {
        this.onRecordFailed(record, error instanceof Error ? error : new Error(String(error)));
      } catch {
        // The last resort threw as well: nothing is left to tell, and the timer must go on.
      }
    }
  }
}

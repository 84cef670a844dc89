// Runs the framework's periodic jobs (hourly snapshots with retention, nightly scrubs, Alba
// maintenance) on a clock that tests replace. Each job has a schedule (JSON: every N minutes, hourly
// at a minute, daily at a time, UTC), can be enabled, disabled and rescheduled while running, and
// keeps a bounded history of its runs with their outcome. A run that comes due while the previous
// run of the same job still runs is not started: it is recorded as skipped, so runs never overlap.
// stop() cancels the timer and waits for the runs in progress.

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

export class MemoryRunHistory implements RunHistoryStore {
  private readonly runs = new Map<string, RunRecord[]>();

  constructor(private readonly perJobMax = 100) {}

  append(record: RunRecord): void {
    const list = this.runs.get(record.job) ?? [];
    list.push(record);
    if (list.length > this.perJobMax) list.splice(0, list.length - this.perJobMax);
    this.runs.set(record.job, list);
  }

  list(job: string, limit: number): RunRecord[] {
    return (this.runs.get(job) ?? []).slice(-limit);
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

/** Checks a schedule from a request or a config file; throws Error with what a valid one looks like. */
export function validateSchedule(value: unknown): ScheduleSpec {
  const spec = value as Record<string, unknown> | null;
  const fail = (): never => {
    throw new Error(`a schedule is {"everyMinutes": 1-10080}, {"hourlyAtMinute": 0-59} or {"dailyAt": {"hour": 0-23, "minute": 0-59}} (UTC); got ${JSON.stringify(value)}`);
  };
  if (typeof spec !== "object" || spec === null || Object.keys(spec).length !== 1) return fail();
  const integerIn = (candidate: unknown, min: number, max: number): candidate is number =>
    Number.isInteger(candidate) && (candidate as number) >= min && (candidate as number) <= max;
  if ("everyMinutes" in spec) return integerIn(spec.everyMinutes, 1, 10_080) ? { everyMinutes: spec.everyMinutes } : fail();
  if ("hourlyAtMinute" in spec) return integerIn(spec.hourlyAtMinute, 0, 59) ? { hourlyAtMinute: spec.hourlyAtMinute } : fail();
  if ("dailyAt" in spec) {
    const time = spec.dailyAt as Record<string, unknown> | null;
    if (typeof time === "object" && time !== null && Object.keys(time).length === 2 && integerIn(time.hour, 0, 23) && integerIn(time.minute, 0, 59)) {
      return { dailyAt: { hour: time.hour, minute: time.minute } };
    }
  }
  return fail();
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

export class Scheduler {
  private readonly jobs = new Map<string, JobState>();
  private timer: unknown;
  private started = false;
  private stopped = false;

  private readonly clock: SchedulerClock;
  readonly history: RunHistoryStore;
  private readonly onRunFinished: ((record: RunRecord) => void) | undefined;

  constructor(options: { clock?: SchedulerClock; history?: RunHistoryStore; onRunFinished?: (record: RunRecord) => void } = {}) {
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.history = options.history ?? new MemoryRunHistory();
    this.onRunFinished = options.onRunFinished;
  }

  add(definition: JobDefinition): void {
    if (this.jobs.has(definition.name)) throw new Error(`job ${definition.name} already exists`);
    const schedule = validateSchedule(definition.schedule);
    this.jobs.set(definition.name, {
      definition, schedule, enabled: definition.enabled ?? true, nextDueMs: nextDueMs(schedule, this.clock.nowMs()), running: undefined,
    });
    this.arm();
  }

  /** Changes a job's schedule or enables/disables it; takes effect at once. */
  update(name: string, change: { schedule?: unknown; enabled?: boolean }): JobInfo {
    const job = this.jobs.get(name);
    if (job === undefined) throw new Error(`no job ${name}: the jobs are ${[...this.jobs.keys()].join(", ")}`);
    if (change.schedule !== undefined) {
      job.schedule = validateSchedule(change.schedule);
      job.nextDueMs = nextDueMs(job.schedule, this.clock.nowMs());
    }
    if (change.enabled !== undefined) job.enabled = change.enabled;
    this.arm();
    return this.info(job);
  }

  /**
   * Runs a job now, outside its schedule (its next scheduled run stays); resolves with the run's
   * record. Throws JobBusyError while a run of it is in progress, Error for an unknown job.
   */
  async runNow(name: string): Promise<RunRecord> {
    const job = this.jobs.get(name);
    if (job === undefined) throw new Error(`no job ${name}: the jobs are ${[...this.jobs.keys()].join(", ")}`);
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

  private async run(job: JobState, dueMs: number, onRecord?: (record: RunRecord) => void): Promise<void> {
    const startedAt = new Date(this.clock.nowMs()).toISOString();
    const base = { job: job.definition.name, dueAt: new Date(dueMs).toISOString(), startedAt };
    try {
      const summary = await job.definition.run();
      this.record({ ...base, finishedAt: new Date(this.clock.nowMs()).toISOString(), outcome: "succeeded", ...(summary === undefined ? {} : { summary }) }, onRecord);
    } catch (error) {
      this.record({ ...base, finishedAt: new Date(this.clock.nowMs()).toISOString(), outcome: "failed", error: (error as Error).message }, onRecord);
    }
  }

  private record(record: RunRecord, onRecord?: (record: RunRecord) => void): void {
    onRecord?.(record);
    this.history.append(record);
    this.onRunFinished?.(record);
  }
}

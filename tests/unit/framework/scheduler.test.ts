// Goal: the scheduler runs each job when its schedule says (UTC), never two runs of one job at once
// (a due run meanwhile is recorded as skipped), records every run's outcome in a bounded history,
// takes schedule changes and disabling at once, refuses invalid schedules with a clear message,
// survives a failing history store, and stop() waits for the runs in progress. A fake clock advances
// time; no real timers.
import assert from "node:assert/strict";
import {
  JobBusyError, MemoryRunHistory, nextDueMs, Scheduler, type RunHistoryStore, type RunRecord, type SchedulerClock, validateSchedule,
} from "../../../framework/src/scheduler/scheduler.ts";

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

/** Timers fire in time order as advance() moves the clock; callbacks may set new timers. */
class FakeClock implements SchedulerClock {
  private timers: Array<{ at: number; callback: () => void; id: number }> = [];
  private nextId = 1;
  constructor(private now: number) {}
  nowMs(): number { return this.now; }
  setTimer(callback: () => void, delayMs: number): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.now + delayMs, callback, id });
    return id;
  }
  clearTimer(handle: unknown): void { this.timers = this.timers.filter((timer) => timer.id !== handle); }
  get pendingTimers(): number { return this.timers.length; }
  /** Moves the clock without firing anything, as when the host sleeps or its clock is set forward. */
  jump(ms: number): void { this.now += ms; }
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      this.timers.sort((left, right) => left.at - right.at);
      const next = this.timers[0];
      if (next === undefined || next.at > end) break;
      this.timers.shift();
      this.now = Math.max(this.now, next.at);
      next.callback();
      await settle(); // let the runs' promises settle
    }
    this.now = end;
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const start = Date.UTC(2026, 10, 22, 10, 17); // 10:17 UTC
const hhmm = (iso: string | undefined): string | undefined => iso?.slice(11, 16);

/** A job whose runs stay in progress until the test releases them, one by one. */
function heldJob(): { run: () => Promise<string>; started: () => number; release: (result?: string) => void } {
  const releases: Array<(result: string) => void> = [];
  let started = 0;
  return {
    run: () => new Promise<string>((resolve) => { started++; releases.push(resolve); }),
    started: () => started,
    release: (result = "done") => { const next = releases.shift(); assert.ok(next, "a run to release"); next(result); },
  };
}

describe("framework: scheduler", function () {
  it("computes the next due time of each schedule kind", function () {
    assert.equal(nextDueMs({ everyMinutes: 15 }, start), Date.UTC(2026, 10, 22, 10, 30));
    assert.equal(nextDueMs({ everyMinutes: 15 }, Date.UTC(2026, 10, 22, 10, 30)), Date.UTC(2026, 10, 22, 10, 45), "strictly after");
    assert.equal(nextDueMs({ hourlyAtMinute: 5 }, start), Date.UTC(2026, 10, 22, 11, 5));
    assert.equal(nextDueMs({ hourlyAtMinute: 17 }, start), Date.UTC(2026, 10, 22, 11, 17), "strictly after");
    assert.equal(nextDueMs({ hourlyAtMinute: 59 }, start), Date.UTC(2026, 10, 22, 10, 59));
    assert.equal(nextDueMs({ dailyAt: { hour: 3, minute: 0 } }, start), Date.UTC(2026, 10, 23, 3, 0));
    assert.equal(nextDueMs({ dailyAt: { hour: 23, minute: 59 } }, start), Date.UTC(2026, 10, 22, 23, 59));
    assert.equal(nextDueMs({ dailyAt: { hour: 0, minute: 0 } }, Date.UTC(2026, 11, 31, 23, 59)), Date.UTC(2027, 0, 1), "across a year");
  });

  it("refuses invalid schedules saying what is wrong and what a valid one looks like", function () {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /needs exactly one of everyMinutes, hourlyAtMinute, dailyAt; it has none/],
      [{ everyMinutes: 5, hourlyAtMinute: 1 }, /it has everyMinutes, hourlyAtMinute/],
      [{ everyMinutes: 0 }, /everyMinutes must be an integer from 1 to 10080/],
      [{ everyMinutes: 2.5 }, /everyMinutes must be an integer/],
      [{ hourlyAtMinute: 60 }, /hourlyAtMinute must be an integer from 0 to 59/],
      [{ dailyAt: { hour: 24, minute: 0 } }, /dailyAt.hour must be an integer from 0 to 23/],
      [{ dailyAt: { hour: 1, minute: -1 } }, /dailyAt.minute must be an integer from 0 to 59/],
      [{ dailyAt: "03:00" }, /dailyAt must be \{"hour": h, "minute": m\}/],
      [{ weekly: 1 }, /unknown kind weekly/],
      ["hourly", /not an object/], [null, /not an object/], [[1], /not an object/], [undefined, /invalid schedule undefined: not an object/],
    ];
    for (const [bad, reason] of cases) {
      assert.throws(() => validateSchedule(bad), reason, JSON.stringify(bad));
      assert.throws(() => validateSchedule(bad), /a schedule is \{"everyMinutes": 1-10080\}/);
    }
    // A valid one comes back as a fresh object with only its own fields.
    const spec = { dailyAt: { hour: 3, minute: 0 } };
    const checked = validateSchedule(spec);
    assert.deepEqual(checked, spec);
    assert.notEqual(checked, spec);
  });

  it("runs jobs when due and records their outcomes, start and end", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock });
    let hourly = 0;
    scheduler.add({ name: "snapshots", schedule: { hourlyAtMinute: 0 }, run: async () => ({ count: ++hourly }) });
    scheduler.add({ name: "broken", schedule: { everyMinutes: 30 }, run: async () => { throw new Error("backend unreachable"); } });
    scheduler.add({ name: "odd", schedule: { dailyAt: { hour: 12, minute: 0 } }, run: () => Promise.reject("a string, not an Error")});
    scheduler.start();
    await clock.advance(3 * HOUR_MS);
    assert.equal(hourly, 3, "11:00, 12:00, 13:00");
    const runs = scheduler.history.list("snapshots", 10);
    assert.deepEqual(runs.map((run) => [hhmm(run.dueAt), hhmm(run.startedAt), hhmm(run.finishedAt), run.outcome, (run.summary as { count: number }).count]),
      [["11:00", "11:00", "11:00", "succeeded", 1], ["12:00", "12:00", "12:00", "succeeded", 2], ["13:00", "13:00", "13:00", "succeeded", 3]]);
    const broken = scheduler.history.list("broken", 10);
    assert.deepEqual(broken.map((run) => hhmm(run.dueAt)), ["10:30", "11:00", "11:30", "12:00", "12:30", "13:00"]);
    assert.ok(broken.every((run) => run.outcome === "failed" && run.error === "backend unreachable" && run.summary === undefined));
    assert.deepEqual(scheduler.history.list("odd", 10).map((run) => [run.outcome, run.error]), [["failed", "a string, not an Error"]]);
    const info = scheduler.list().find((job) => job.name === "snapshots")!;
    assert.equal(info.nextRunAt, new Date(Date.UTC(2026, 10, 22, 14, 0)).toISOString());
    assert.equal(info.lastRun?.outcome, "succeeded");
    assert.equal(info.running, false);
    await scheduler.stop();
    assert.equal(clock.pendingTimers, 0, "stop() leaves no timer behind");
  });

  it("never overlaps runs of one job: a run due meanwhile is skipped, runNow is refused", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock });
    const scrub = heldJob();
    scheduler.add({ name: "scrub", schedule: { everyMinutes: 10 }, run: scrub.run });
    scheduler.start();
    await clock.advance(35 * MINUTE_MS); // due 10:20, 10:30, 10:40, 10:50: the first runs, three are skipped
    assert.equal(scrub.started(), 1);
    assert.equal(scheduler.list()[0].running, true);
    const skipped = scheduler.history.list("scrub", 10);
    assert.deepEqual(skipped.map((run) => [hhmm(run.dueAt), run.outcome, run.startedAt]),
      [["10:30", "skipped", undefined], ["10:40", "skipped", undefined], ["10:50", "skipped", undefined]]);
    assert.match(skipped[0].error ?? "", /previous run was still running/);
    await assert.rejects(scheduler.runNow("scrub"), (error: unknown) => error instanceof JobBusyError && /job scrub is running now/.test(error.message));
    scrub.release();
    await settle(); // the run finishes
    assert.deepEqual(scheduler.history.list("scrub", 1).map((run) => [hhmm(run.dueAt), hhmm(run.finishedAt), run.outcome, run.summary]),
      [["10:20", "10:52", "succeeded", "done"]]);
    await clock.advance(10 * MINUTE_MS);
    assert.equal(scrub.started(), 2, "the next due run (11:00) starts once the first has finished");
    // stop() waits for the run in progress, and nothing new starts meanwhile.
    let stopped = false;
    const stopping = scheduler.stop().then(() => { stopped = true; });
    await settle();
    assert.equal(stopped, false);
    await assert.rejects(scheduler.runNow("scrub"), /the scheduler is stopping/);
    await clock.advance(HOUR_MS);
    assert.equal(scrub.started(), 2);
    scrub.release();
    await stopping;
    assert.equal(stopped, true);
  });

  it("runNow runs a job outside its schedule and keeps the scheduled time", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock });
    let runs = 0;
    scheduler.add({ name: "scrub", schedule: { dailyAt: { hour: 3, minute: 0 } }, run: async () => ({ runs: ++runs }) });
    scheduler.start();
    const record = await scheduler.runNow("scrub");
    assert.deepEqual([hhmm(record.dueAt), record.outcome, record.summary], ["10:17", "succeeded", { runs: 1 }]);
    assert.equal(scheduler.list()[0].nextRunAt, new Date(Date.UTC(2026, 10, 23, 3, 0)).toISOString());
    await assert.rejects(scheduler.runNow("nope"), /no job nope: the jobs are scrub/);
    await scheduler.stop();
  });

  it("a removed job runs no more and is not listed; its name can be added again", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock });
    let runs = 0;
    scheduler.add({ name: "snapshots@pool2", schedule: { everyMinutes: 5 }, run: async () => ++runs });
    scheduler.start();
    await clock.advance(5 * MINUTE_MS);
    assert.equal(runs, 1);
    assert.equal(scheduler.remove("snapshots@pool2"), true);
    assert.equal(scheduler.remove("snapshots@pool2"), false);
    await clock.advance(HOUR_MS);
    assert.equal(runs, 1, "no run after the removal");
    assert.deepEqual(scheduler.list(), []);
    scheduler.add({ name: "snapshots@pool2", schedule: { everyMinutes: 5 }, run: async () => ++runs });
    await clock.advance(5 * MINUTE_MS);
    assert.equal(runs, 2);
    await scheduler.stop();
  });

  it("takes a new schedule and disabling at once; enabling again counts from then", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock, history: new MemoryRunHistory(2) });
    let runs = 0;
    scheduler.add({ name: "maintenance", schedule: { dailyAt: { hour: 3, minute: 0 } }, run: async () => { runs++; } });
    scheduler.start();
    scheduler.update("maintenance", { schedule: { everyMinutes: 5 } });
    await clock.advance(20 * MINUTE_MS); // 10:20, 10:25, 10:30, 10:35
    assert.equal(runs, 4);
    assert.deepEqual(scheduler.history.list("maintenance", 10).map((run) => hhmm(run.dueAt)), ["10:30", "10:35"], "the history is bounded");
    assert.deepEqual(scheduler.history.list("maintenance", 0), []);
    scheduler.update("maintenance", { enabled: false });
    await clock.advance(HOUR_MS);
    assert.equal(runs, 4, "disabled: no runs");
    assert.equal(scheduler.list()[0].nextRunAt, undefined);
    // 11:37 now: its 10:40 run is long past, but enabling does not run it at once.
    const info = scheduler.update("maintenance", { enabled: true });
    assert.equal(hhmm(info.nextRunAt), "11:40");
    await clock.advance(MINUTE_MS);
    assert.equal(runs, 4);
    await clock.advance(2 * MINUTE_MS);
    assert.equal(runs, 5);
    assert.throws(() => scheduler.update("nope", { enabled: true }), /no job nope: the jobs are maintenance/);
    // An invalid change changes nothing, not even its valid part.
    assert.throws(() => scheduler.update("maintenance", { schedule: { everyMinutes: -1 }, enabled: false }), /everyMinutes must be/);
    assert.deepEqual([scheduler.list()[0].enabled, scheduler.list()[0].schedule], [true, { everyMinutes: 5 }]);
    assert.throws(() => scheduler.add({ name: "maintenance", schedule: { everyMinutes: 5 }, run: async () => undefined }), /job maintenance already exists/);
    await scheduler.stop();
  });

  it("after the host slept past several due times, a job runs once and then keeps its schedule", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock });
    let runs = 0;
    scheduler.add({ name: "snapshots", schedule: { hourlyAtMinute: 0 }, run: async () => { runs++; } });
    scheduler.start();
    clock.jump(5 * HOUR_MS); // 15:17; the 11:00 timer has not fired
    await clock.advance(0);
    assert.equal(runs, 1);
    assert.deepEqual(scheduler.history.list("snapshots", 10).map((run) => [hhmm(run.dueAt), hhmm(run.startedAt)]), [["11:00", "15:17"]]);
    await clock.advance(HOUR_MS);
    assert.equal(runs, 2, "16:00");
    await scheduler.stop();
  });

  it("a failing history store or hook is reported and stops nothing", async function () {
    const clock = new FakeClock(start);
    const failingStore: RunHistoryStore = {
      append: () => { throw new Error("database is locked"); },
      list: () => [],
    };
    const notRecorded: Array<[string, string]> = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason); };
    process.on("unhandledRejection", onUnhandled);
    try {
      const scheduler = new Scheduler({ clock, history: failingStore, onRecordFailed: (record, error) => notRecorded.push([record.outcome, error.message]) });
      const held = heldJob();
      scheduler.add({ name: "scrub", schedule: { everyMinutes: 10 }, run: held.run });
      scheduler.start();
      await clock.advance(15 * MINUTE_MS); // 10:20 starts, 10:30 is skipped and cannot be recorded
      held.release();
      await settle();
      assert.deepEqual(notRecorded, [["skipped", "database is locked"], ["succeeded", "database is locked"]]);
      const record = await Promise.all([scheduler.runNow("scrub"), settle().then(() => held.release("by hand"))]).then(([run]) => run);
      assert.deepEqual([record.outcome, record.summary], ["succeeded", "by hand"], "runNow still answers with the record");
      await scheduler.stop();

      // onRunFinished throwing is reported the same way; the default report is a process warning.
      const warnings: string[] = [];
      const onWarning = (warning: Error): void => { warnings.push(warning.message); };
      process.on("warning", onWarning);
      const logging = new Scheduler({ clock, onRunFinished: () => { throw new Error("logger closed"); } });
      logging.add({ name: "scrub", schedule: { everyMinutes: 10 }, run: async () => undefined });
      const logged: RunRecord = await logging.runNow("scrub");
      await settle();
      process.off("warning", onWarning);
      assert.equal(logged.outcome, "succeeded");
      assert.deepEqual(logging.history.list("scrub", 5).map((run) => run.outcome), ["succeeded"], "stored before the hook threw");
      assert.ok(warnings.some((warning) => /succeeded run of job scrub due at .* was not recorded: logger closed/.test(warning)), warnings.join("\n"));
      await logging.stop();
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
    assert.deepEqual(unhandled, []);
  });
});

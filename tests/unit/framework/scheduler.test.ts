// Goal: the scheduler runs each job when its schedule says (UTC), never two runs of one job at once
// (a due run meanwhile is recorded as skipped), records every run's outcome in a bounded history,
// takes schedule changes and disabling at once, refuses invalid schedules with a clear message, and
// stop() waits for the runs in progress. A fake clock advances time; no real timers.
import assert from "node:assert/strict";
import { MemoryRunHistory, nextDueMs, Scheduler, type SchedulerClock, validateSchedule } from "../../../framework/src/scheduler/scheduler.ts";

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
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      this.timers.sort((left, right) => left.at - right.at);
      const next = this.timers[0];
      if (next === undefined || next.at > end) break;
      this.timers.shift();
      this.now = Math.max(this.now, next.at);
      next.callback();
      await new Promise((resolve) => setImmediate(resolve)); // let the runs' promises settle
    }
    this.now = end;
  }
}

const start = Date.UTC(2026, 10, 22, 10, 17); // 10:17 UTC

describe("framework: scheduler", function () {
  it("computes the next due time of each schedule kind", function () {
    assert.equal(nextDueMs({ everyMinutes: 15 }, start), Date.UTC(2026, 10, 22, 10, 30));
    assert.equal(nextDueMs({ hourlyAtMinute: 5 }, start), Date.UTC(2026, 10, 22, 11, 5));
    assert.equal(nextDueMs({ hourlyAtMinute: 17 }, start), Date.UTC(2026, 10, 22, 11, 17), "strictly after");
    assert.equal(nextDueMs({ dailyAt: { hour: 3, minute: 0 } }, start), Date.UTC(2026, 10, 23, 3, 0));
    assert.equal(nextDueMs({ dailyAt: { hour: 23, minute: 59 } }, start), Date.UTC(2026, 10, 22, 23, 59));
  });

  it("refuses invalid schedules with what a valid one looks like", function () {
    for (const bad of [{}, { everyMinutes: 0 }, { hourlyAtMinute: 60 }, { dailyAt: { hour: 24, minute: 0 } }, { everyMinutes: 5, hourlyAtMinute: 1 }, "hourly", null]) {
      assert.throws(() => validateSchedule(bad), /a schedule is \{"everyMinutes": 1-10080\}/);
    }
  });

  it("runs jobs when due and records their outcomes", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock });
    let hourly = 0;
    scheduler.add({ name: "snapshots", schedule: { hourlyAtMinute: 0 }, run: async () => ({ count: ++hourly }) });
    scheduler.add({ name: "broken", schedule: { everyMinutes: 30 }, run: async () => { throw new Error("backend unreachable"); } });
    scheduler.start();
    await clock.advance(3 * HOUR_MS);
    assert.equal(hourly, 3, "11:00, 12:00, 13:00");
    const runs = scheduler.history.list("snapshots", 10);
    assert.deepEqual(runs.map((run) => [run.dueAt.slice(11, 16), run.outcome, (run.summary as { count: number }).count]),
      [["11:00", "succeeded", 1], ["12:00", "succeeded", 2], ["13:00", "succeeded", 3]]);
    const broken = scheduler.history.list("broken", 10);
    assert.equal(broken.length, 6, "10:30 to 13:00 every 30 minutes");
    assert.ok(broken.every((run) => run.outcome === "failed" && run.error === "backend unreachable"));
    const info = scheduler.list().find((job) => job.name === "snapshots")!;
    assert.equal(info.nextRunAt, new Date(Date.UTC(2026, 10, 22, 14, 0)).toISOString());
    assert.equal(info.lastRun?.outcome, "succeeded");
    await scheduler.stop();
  });

  it("never overlaps runs of one job: a run due meanwhile is skipped", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock });
    const releases: Array<() => void> = [];
    let started = 0;
    scheduler.add({ name: "scrub", schedule: { everyMinutes: 10 }, run: () => new Promise<void>((resolve) => { started++; releases.push(resolve); }) });
    scheduler.start();
    await clock.advance(35 * MINUTE_MS); // due 10:20, 10:30, 10:40, 10:50: the first runs, three are skipped
    assert.equal(started, 1);
    const skipped = scheduler.history.list("scrub", 10);
    assert.deepEqual(skipped.map((run) => run.outcome), ["skipped", "skipped", "skipped"]);
    assert.match(skipped[0].error ?? "", /previous run was still running/);
    releases.shift()!();
    await new Promise((resolve) => setImmediate(resolve)); // the run finishes
    await clock.advance(10 * MINUTE_MS);
    assert.equal(started, 2, "the next due run starts once the first has finished");
    // stop() waits for the run in progress.
    let stopped = false;
    const stopping = scheduler.stop().then(() => { stopped = true; });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(stopped, false);
    releases.shift()!();
    await stopping;
    assert.equal(stopped, true);
  });

  it("takes a new schedule and disabling at once", async function () {
    const clock = new FakeClock(start);
    const scheduler = new Scheduler({ clock, history: new MemoryRunHistory(2) });
    let runs = 0;
    scheduler.add({ name: "maintenance", schedule: { dailyAt: { hour: 3, minute: 0 } }, run: async () => { runs++; } });
    scheduler.start();
    scheduler.update("maintenance", { schedule: { everyMinutes: 5 } });
    await clock.advance(20 * MINUTE_MS); // 10:20, 10:25, 10:30, 10:35
    assert.equal(runs, 4);
    assert.equal(scheduler.history.list("maintenance", 10).length, 2, "the history is bounded");
    scheduler.update("maintenance", { enabled: false });
    await clock.advance(HOUR_MS);
    assert.equal(runs, 4, "disabled: no runs");
    assert.equal(scheduler.list()[0].nextRunAt, undefined);
    assert.throws(() => scheduler.update("nope", { enabled: true }), /no job nope: the jobs are maintenance/);
    assert.throws(() => scheduler.update("maintenance", { schedule: { everyMinutes: -1 } }), /a schedule is/);
    await scheduler.stop();
  });
});

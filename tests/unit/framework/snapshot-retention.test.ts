// Goal: the snapshot thinning rule keeps exactly what Open vStorage keeps. A fake clock takes an
// hourly snapshot for 60 days and applies the rule after each one, as the scheduler does; the
// survivors are checked against a list written out by hand (not computed by the code under test).
// Boundaries (exactly 24 h, 7 and 30 days), protection (sticky, clone parents) and, with
// fast-check, idempotence and "never deletes a protected or young snapshot" on random histories.
import assert from "node:assert/strict";
import fc from "fast-check";
import { DAY_MS, HOUR_MS, snapshotsToDelete, type RetentionCandidate } from "../../../framework/src/scheduler/retention.ts";

const at = (month: number, day: number, hour: number, minute = 30): number => Date.UTC(2026, month - 1, day, hour, minute);
const label = (ms: number): string => new Date(ms).toISOString().slice(5, 16).replace("T", " ");

describe("snapshot retention (keep 24 h, a day per week, a week per month)", function () {
  it("60 days of hourly snapshots thinned after each one: exactly the expected survivors", function () {
    // Weeks count from the epoch (a Thursday), as do 2026's: Jan 1 2026 is a Thursday.
    assert.equal(new Date(at(1, 1, 0, 0)).getUTCDay(), 4);
    assert.equal(at(1, 1, 0, 0) % (7 * DAY_MS), 0);
    let snapshots: RetentionCandidate[] = [];
    const sticky = at(1, 10, 5);
    const parent = at(1, 20, 7);
    for (let time = at(1, 1, 0); time <= at(3, 1, 23); time += HOUR_MS) {
      snapshots.push({ name: label(time), createdAtMs: time, sticky: time === sticky, hasClones: time === parent });
      const doomed = new Set(snapshotsToDelete(snapshots, time));
      snapshots = snapshots.filter((snapshot) => !doomed.has(snapshot.name));
    }
    const expected = [
      // Protected, whatever their age.
      "01-10 05:30", "01-20 07:30",
      // One per week from 7 to 30 days: the oldest of the weeks starting Thursday Feb 5, 12 and 19.
      // (The week of Jan 29 has none left: its keeper, Jan 29, expired; the rest went while it was kept.)
      "02-05 00:30", "02-12 00:30", "02-19 00:30",
      // One per day from 24 h to 7 days: Feb 23 to 28, each day's first.
      "02-23 00:30", "02-24 00:30", "02-25 00:30", "02-26 00:30", "02-27 00:30", "02-28 00:30",
      // Everything of the last 24 hours (Feb 28 23:30 is exactly 24 h old: daily, and not its day's first).
      ...Array.from({ length: 24 }, (_, hour) => `03-01 ${String(hour).padStart(2, "0")}:30`),
    ];
    assert.deepEqual(snapshots.map((snapshot) => snapshot.name), expected);
  });

  it("boundaries: under 24 h kept, exactly 24 h daily, exactly 7 days weekly, exactly 30 days gone", function () {
    const now = at(6, 15, 12, 0);
    const snapshot = (name: string, ageMs: number): RetentionCandidate => ({ name, createdAtMs: now - ageMs, sticky: false, hasClones: false });
    // Alone in their buckets, each survives except the expired one.
    assert.deepEqual(snapshotsToDelete([snapshot("young", DAY_MS - 1), snapshot("day", DAY_MS), snapshot("week", 7 * DAY_MS), snapshot("old", 30 * DAY_MS)], now), ["old"]);
    // Two in one day (older than 24 h): the older is kept. Ties are decided by name.
    assert.deepEqual(snapshotsToDelete([snapshot("b", 2 * DAY_MS), snapshot("a", 2 * DAY_MS), snapshot("c", 2 * DAY_MS - HOUR_MS)], at(6, 15, 23, 0)), ["b", "c"]);
    // Protected ones survive expiry and do not stand in for their bucket.
    const protectedOld = { ...snapshot("sticky", 40 * DAY_MS), sticky: true };
    const parent = { ...snapshot("parent", 3 * DAY_MS + HOUR_MS), hasClones: true };
    assert.deepEqual(snapshotsToDelete([protectedOld, parent, snapshot("same-day", 3 * DAY_MS)], now), []);
  });

  it("property: applying the rule twice deletes nothing more; protected and young snapshots always stay", function () {
    const now = at(6, 1, 0, 0);
    const history = fc.uniqueArray(fc.record({
      name: fc.string({ minLength: 1, maxLength: 8 }),
      ageMs: fc.integer({ min: 0, max: 45 * DAY_MS }),
      sticky: fc.boolean(),
      hasClones: fc.boolean(),
    }), { selector: (entry) => entry.name, maxLength: 80 });
    fc.assert(fc.property(history, (entries) => {
      const snapshots = entries.map((entry) => ({ name: entry.name, createdAtMs: now - entry.ageMs, sticky: entry.sticky, hasClones: entry.hasClones }));
      const doomed = new Set(snapshotsToDelete(snapshots, now));
      for (const snapshot of snapshots) {
        if (snapshot.sticky || snapshot.hasClones || now - snapshot.createdAtMs < DAY_MS) assert.ok(!doomed.has(snapshot.name), snapshot.name);
      }
      const left = snapshots.filter((snapshot) => !doomed.has(snapshot.name));
      assert.deepEqual(snapshotsToDelete(left, now), []);
    }), { numRuns: 300 });
  });
});

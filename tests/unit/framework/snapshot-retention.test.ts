// Goal: the snapshot thinning rule keeps exactly what Open vStorage keeps. A fake clock takes an
// hourly snapshot for 60 days and applies the rule after each one, as the snapshot job does; the
// survivors at three moments are checked against lists written out by hand (not computed by the code
// under test). Boundaries (exactly 24 h, 7 and 30 days, UTC midnight, the Thursday a week starts),
// protection (sticky, clone parents, hand-made snapshots) and, with fast-check, idempotence, order
// independence, "never deletes a protected or young snapshot" and "one survivor per bucket".
import assert from "node:assert/strict";
import fc from "fast-check";
import { DAY_MS, HOUR_MS, snapshotsToDelete, type RetentionCandidate, type RetentionOptions } from "../../../framework/src/scheduler/retention.ts";

const at = (month: number, day: number, hour: number, minute = 30): number => Date.UTC(2026, month - 1, day, hour, minute);
const label = (ms: number): string => new Date(ms).toISOString().slice(5, 16).replace("T", " ");
/** The labels "MM-DD HH:30" of one day from one hour to another, inclusive: the expected lists' shorthand. */
const halfPasts = (month: number, day: number, fromHour: number, toHour: number): string[] =>
  Array.from({ length: toHour - fromHour + 1 }, (_, index) => label(at(month, day, fromHour + index)));
const firstOfDays = (month: number, fromDay: number, toDay: number): string[] =>
  Array.from({ length: toDay - fromDay + 1 }, (_, index) => label(at(month, fromDay + index, 0)));

const scheduled = (name: string, createdAtMs: number): RetentionCandidate => ({ name, createdAtMs, sticky: false, hasClones: false, origin: "scheduled" });

describe("snapshot retention (keep 24 h, a day per week, a week per month)", function () {
  it("60 days of hourly snapshots thinned after each one: exactly the expected survivors", function () {
    // Weeks count from the epoch (a Thursday), as do 2026's: Jan 1 2026 is a Thursday.
    assert.equal(new Date(at(1, 1, 0, 0)).getUTCDay(), 4);
    assert.equal(at(1, 1, 0, 0) % (7 * DAY_MS), 0);
    let snapshots: RetentionCandidate[] = [];
    const survivorsAt = new Map<number, string[]>();
    const checkpoints = [at(1, 20, 23), at(2, 3, 12), at(3, 1, 23)];
    for (let time = at(1, 1, 0); time <= at(3, 1, 23); time += HOUR_MS) {
      snapshots.push({ ...scheduled(label(time), time), sticky: time === at(1, 10, 5), hasClones: time === at(1, 20, 7) });
      // An operator's own snapshot, taken at 09:45 between two scheduled ones.
      if (time === at(1, 12, 10)) snapshots.push({ ...scheduled(label(at(1, 12, 9, 45)), at(1, 12, 9, 45)), origin: "user" });
      const doomed = new Set(snapshotsToDelete(snapshots, time));
      snapshots = snapshots.filter((snapshot) => !doomed.has(snapshot.name));
      if (checkpoints.includes(time)) survivorsAt.set(time, snapshots.map((snapshot) => snapshot.name));
    }
    const protectedOnes = { sticky: "01-10 05:30", user: "01-12 09:45", parent: "01-20 07:30" };

    // Jan 20 23:30: nothing has reached 30 days yet.
    assert.deepEqual(survivorsAt.get(at(1, 20, 23)), [
      // Weekly (7 to 30 days): the first of the weeks starting Thursday Jan 1 and Jan 8.
      "01-01 00:30", "01-08 00:30",
      protectedOnes.sticky, protectedOnes.user,
      // Daily (24 h to 7 days): Jan 14 to 19, each day's first. Jan 13 23:30 is exactly 7 days old: weekly.
      ...firstOfDays(1, 14, 19),
      // The last 24 h, the clone parent among them. Jan 19 23:30 is exactly 24 h old: daily, and not its day's first.
      ...halfPasts(1, 20, 0, 23),
    ]);

    // Feb 3 12:30: the 30-day line (Jan 4 12:30) cuts the week of Jan 1, whose keeper (Jan 1) has
    // expired; its younger members went while Jan 1 was kept, so that week has none left.
    assert.deepEqual(survivorsAt.get(at(2, 3, 12)), [
      "01-08 00:30", protectedOnes.sticky, protectedOnes.user, "01-15 00:30", protectedOnes.parent,
      // The week of Jan 22 is partly weekly (Jan 22 to 27 00:30) and partly daily (from Jan 27 12:30): its first is kept.
      "01-22 00:30",
      // Jan 27's afternoon is daily, but went while Jan 27 00:30 was that day's keeper.
      ...firstOfDays(1, 28, 31), ...firstOfDays(2, 1, 2),
      ...halfPasts(2, 2, 13, 23), ...halfPasts(2, 3, 0, 12),
    ]);

    // Mar 1 23:30, the end.
    assert.deepEqual(survivorsAt.get(at(3, 1, 23)), [
      // Protected, whatever their age.
      protectedOnes.sticky, protectedOnes.user, protectedOnes.parent,
      // One per week from 7 to 30 days: the first of the weeks starting Thursday Feb 5, 12 and 19.
      // (The week of Jan 29 has none left: its keeper, Jan 29, expired; the rest went while it was kept.)
      "02-05 00:30", "02-12 00:30", "02-19 00:30",
      // One per day from 24 h to 7 days: Feb 23 to 28, each day's first.
      ...firstOfDays(2, 23, 28),
      // Everything of the last 24 hours (Feb 28 23:30 is exactly 24 h old: daily, and not its day's first).
      ...halfPasts(3, 1, 0, 23),
    ]);
  });

  it("boundaries: under 24 h kept, exactly 24 h daily, exactly 7 days weekly, exactly 30 days gone", function () {
    const now = at(6, 15, 12, 0);
    const aged = (name: string, ageMs: number): RetentionCandidate => scheduled(name, now - ageMs);
    // Alone in their buckets, each survives except the expired one.
    assert.deepEqual(snapshotsToDelete([aged("young", DAY_MS - 1), aged("day", DAY_MS), aged("week", 7 * DAY_MS), aged("old", 30 * DAY_MS)], now), ["old"]);
    assert.deepEqual(snapshotsToDelete([aged("almost-old", 30 * DAY_MS - 1), aged("future", -HOUR_MS)], now), [], "a future date counts as young");
    // Two in one day (older than 24 h): the older is kept. Ties are decided by name.
    assert.deepEqual(snapshotsToDelete([aged("b", 2 * DAY_MS), aged("a", 2 * DAY_MS), aged("c", 2 * DAY_MS - HOUR_MS)], at(6, 15, 23, 0)), ["b", "c"]);
  });

  it("boundaries: days end at UTC midnight", function () {
    const now = at(6, 15, 12, 0);
    const lastOfJune12 = Date.UTC(2026, 5, 12, 23, 59, 59, 999);
    const firstOfJune13 = Date.UTC(2026, 5, 13);
    assert.deepEqual(snapshotsToDelete([
      scheduled("june-12-last", lastOfJune12), scheduled("june-13-first", firstOfJune13), scheduled("june-13-second", firstOfJune13 + 1),
    ], now), ["june-13-second"]);
  });

  it("boundaries: weeks start on Thursday 00:00 UTC, and a day cut by the 7-day line splits between the tiers", function () {
    assert.equal(new Date(Date.UTC(2026, 5, 4)).getUTCDay(), 4, "June 4 2026 is a Thursday");
    const now = at(6, 20, 12, 0);
    assert.deepEqual(snapshotsToDelete([
      // Week of Thursday May 28: its last instant, and its Tuesday.
      scheduled("june-3-last", Date.UTC(2026, 5, 3, 23, 59, 59, 999)), scheduled("june-2", Date.UTC(2026, 5, 2, 12)),
      // Week of Thursday June 4: its first instant and a later one.
      scheduled("june-4-first", Date.UTC(2026, 5, 4)), scheduled("june-5", Date.UTC(2026, 5, 5, 12)),
    ], now), ["june-3-last", "june-5"]);
    // June 13 at 12:00 is exactly 7 days old: what is older on June 13 belongs to the week of June 11,
    // what is younger to the day June 13. Each part keeps its oldest.
    assert.deepEqual(snapshotsToDelete([
      scheduled("june-13-06h", Date.UTC(2026, 5, 13, 6)), scheduled("june-13-12h", Date.UTC(2026, 5, 13, 12)),
      scheduled("june-13-12h-plus-1ms", Date.UTC(2026, 5, 13, 12) + 1), scheduled("june-13-18h", Date.UTC(2026, 5, 13, 18)),
    ], now), ["june-13-12h", "june-13-18h"]);
  });

  it("sticky snapshots and clone parents are never deleted and do not take their bucket's slot", function () {
    const now = at(6, 15, 12, 0);
    const day = (hour: number): number => Date.UTC(2026, 5, 12, hour); // three days old: daily
    assert.deepEqual(snapshotsToDelete([
      { ...scheduled("parent-01h", day(1)), hasClones: true },
      { ...scheduled("sticky-02h", day(2)), sticky: true },
      scheduled("03h", day(3)), scheduled("04h", day(4)),
      { ...scheduled("sticky-old", now - 90 * DAY_MS), sticky: true },
      { ...scheduled("parent-old", now - 45 * DAY_MS), hasClones: true },
    ], now), ["04h"], "03h keeps the day although the protected ones are older");
  });

  it("hand-made snapshots are kept by default, thinned like the others with userSnapshots: thin", function () {
    const now = at(6, 15, 12, 0);
    const snapshots = [
      { ...scheduled("user-01h", Date.UTC(2026, 5, 12, 1)), origin: "user" as const },
      scheduled("auto-02h", Date.UTC(2026, 5, 12, 2)),
      { ...scheduled("user-old", now - 40 * DAY_MS), origin: "user" as const },
    ];
    assert.deepEqual(snapshotsToDelete(snapshots, now), []);
    assert.deepEqual(snapshotsToDelete(snapshots, now, { userSnapshots: "thin" }), ["user-old", "auto-02h"]);
    // A candidate without an origin is a scheduled one.
    const { origin: _origin, ...withoutOrigin } = scheduled("no-origin", now - 40 * DAY_MS);
    assert.deepEqual(snapshotsToDelete([withoutOrigin], now), ["no-origin"]);
  });

  it("refuses a list that cannot come from a vDisk (a bug in the caller)", function () {
    const now = at(6, 15, 12, 0);
    assert.throws(() => snapshotsToDelete([scheduled("twice", now), scheduled("twice", now - DAY_MS)], now), /names must be unique; twice/);
    assert.throws(() => snapshotsToDelete([scheduled("nan", Number.NaN)], now), /createdAtMs must be an integer/);
    assert.throws(() => snapshotsToDelete([], 1.5), /nowMs must be an integer/);
  });

  it("property: idempotent, order-independent, protected and young snapshots stay, one survivor per bucket", function () {
    const now = at(6, 1, 0, 0);
    const history = fc.uniqueArray(fc.record({
      name: fc.string({ minLength: 1, maxLength: 8 }),
      ageMs: fc.integer({ min: -HOUR_MS, max: 45 * DAY_MS }),
      sticky: fc.boolean(),
      hasClones: fc.boolean(),
      origin: fc.constantFrom("scheduled" as const, "user" as const),
    }), { selector: (entry) => entry.name, maxLength: 80 });
    const options = fc.constantFrom<RetentionOptions>({}, { userSnapshots: "thin" });
    fc.assert(fc.property(history, options, (entries, retention) => {
      const snapshots: RetentionCandidate[] = entries.map((entry) => ({
        name: entry.name, createdAtMs: now - entry.ageMs, sticky: entry.sticky, hasClones: entry.hasClones, origin: entry.origin,
      }));
      const isProtected = (snapshot: RetentionCandidate): boolean =>
        snapshot.sticky || snapshot.hasClones || (snapshot.origin === "user" && retention.userSnapshots !== "thin");
      const doomed = snapshotsToDelete(snapshots, now, retention);
      assert.deepEqual(snapshotsToDelete([...snapshots].reverse(), now, retention), doomed, "the input order does not matter");
      for (const snapshot of snapshots) {
        if (isProtected(snapshot) || now - snapshot.createdAtMs < DAY_MS) assert.ok(!doomed.includes(snapshot.name), snapshot.name);
      }
      const left = snapshots.filter((snapshot) => !doomed.includes(snapshot.name));
      assert.deepEqual(snapshotsToDelete(left, now, retention), [], "a second pass deletes nothing");
      // Buckets, computed here from the rule's text: every bucket that had an unprotected snapshot
      // keeps exactly one, and nothing unprotected of 30 days or more survives.
      const bucketOf = (snapshot: RetentionCandidate): string | undefined => {
        const ageMs = now - snapshot.createdAtMs;
        if (ageMs < DAY_MS) return undefined;
        if (ageMs < 7 * DAY_MS) return `day ${Math.floor(snapshot.createdAtMs / DAY_MS)}`;
        if (ageMs < 30 * DAY_MS) return `week ${Math.floor(snapshot.createdAtMs / (7 * DAY_MS))}`;
        return "expired";
      };
      const count = (list: RetentionCandidate[]): Map<string, number> => {
        const counts = new Map<string, number>();
        for (const snapshot of list.filter((candidate) => !isProtected(candidate))) {
          const bucket = bucketOf(snapshot);
          if (bucket !== undefined) counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
        }
        return counts;
      };
      const before = count(snapshots);
      const after = count(left);
      for (const bucket of before.keys()) assert.equal(after.get(bucket) ?? 0, bucket === "expired" ? 0 : 1, bucket);
    }), { numRuns: 300 });
  });
});

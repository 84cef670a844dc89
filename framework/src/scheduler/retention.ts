// Which snapshots of one vDisk to delete: Open vStorage's thinning rule, as a pure function of the
// snapshot list and "now". Invariants: deterministic (the answer does not depend on input order),
// idempotent (applied again at the same instant it deletes nothing more), and it never deletes a
// protected snapshot or one younger than 24 hours.
//
// The rule, by age = now - createdAt (a snapshot dated in the future counts as age 0):
//   age < 24 h         kept, every one;
//   24 h <= age < 7 d  one per calendar day (UTC, [00:00, 24:00));
//   7 d <= age < 30 d  one per week (7-day weeks counted from the Unix epoch, so they start on a
//                      Thursday 00:00 UTC);
//   age >= 30 d        deleted.
// An age exactly on a boundary belongs to the older tier (exactly 24 h old is "daily").
// Within a day or week the OLDEST snapshot is the one kept (Open vStorage's "oldest of bucket";
// equal times are decided by the smaller name). Buckets are fixed in time and a bucket's oldest
// member stays its oldest as younger snapshots age into it, so an hourly run only deletes what just
// crossed a boundary.
// A day nests inside one week, so a day's survivor is the first candidate for its week's slot.
// With hourly snapshots thinned every hour this leaves: all of the last 24 h, each day's first back
// to 7 days, then each week's first; the oldest survivor is 23 to 30 days old (the first snapshot of
// the oldest week that began less than 30 days ago). What survives can depend on how often the rule
// ran: a week straddling the 30-day line loses its keeper when that expires, and if its younger
// members were thinned away meanwhile the week has none left, whereas applied once at the end the
// rule would have kept the week's oldest unexpired one. Either way it never keeps more than one per
// bucket and never deletes a protected snapshot.
//
// Protected snapshots are never deleted, whatever their age:
// - sticky ones (kept on purpose by an operator);
// - clone parents (snapshots that clones depend on: deleting one would break the clone);
// - snapshots an operator made by hand (origin "user"), unless options.userSnapshots is "thin".
//   Open vStorage thins them like scheduled ones and relies on the sticky flag to keep one; our
//   snapshot API has no sticky flag yet, so deleting a hand-made snapshot (say, taken before an
//   upgrade) behind the operator's back would be the worse surprise. "thin" gives Open vStorage's
//   behaviour.
// Protected snapshots do not take their bucket's slot either: the bucket keeps its own oldest
// unprotected snapshot as well. Protection is not permanent (clones get deleted, then their parent
// by hand): had the protected snapshot held the slot, its day or week would be left with none.
import assert from "node:assert/strict";

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
export const WEEK_MS = 7 * DAY_MS;
/** All snapshots younger than this are kept. */
export const KEEP_ALL_MS = DAY_MS;
/** Up to this age one snapshot per day is kept. */
export const DAILY_UNTIL_MS = 7 * DAY_MS;
/** Up to this age one snapshot per week is kept; from this age on none (except protected ones). */
export const WEEKLY_UNTIL_MS = 30 * DAY_MS;

/** Who made a snapshot: the snapshot job, or an operator (API, CLI, dashboard). */
export type SnapshotOrigin = "scheduled" | "user";

export interface RetentionCandidate {
  /** Unique within the vDisk. */
  name: string;
  /** Creation time, milliseconds since the epoch. */
  createdAtMs: number;
  /** Kept on purpose: never deleted by the rule. */
  sticky: boolean;
  /** Clones depend on it: never deleted by the rule. */
  hasClones: boolean;
  /** Absent means "scheduled" (callers that only pass the scheduler's own snapshots). */
  origin?: SnapshotOrigin;
}

export interface RetentionOptions {
  /** "keep" (default): hand-made snapshots are protected. "thin": Open vStorage's behaviour. */
  userSnapshots?: "keep" | "thin";
}

type Bucket = { kind: "keep-all" } | { kind: "day" | "week"; index: number } | { kind: "expired" };

function bucketOf(createdAtMs: number, nowMs: number): Bucket {
  const ageMs = nowMs - createdAtMs;
  if (ageMs < KEEP_ALL_MS) return { kind: "keep-all" };
  if (ageMs < DAILY_UNTIL_MS) return { kind: "day", index: Math.floor(createdAtMs / DAY_MS) };
  if (ageMs < WEEKLY_UNTIL_MS) return { kind: "week", index: Math.floor(createdAtMs / WEEK_MS) };
  return { kind: "expired" };
}

/** True when the rule must never delete the snapshot. */
export function isProtected(snapshot: RetentionCandidate, options: RetentionOptions = {}): boolean {
  const thinUser = options.userSnapshots === "thin";
  return snapshot.sticky || snapshot.hasClones || (snapshot.origin === "user" && !thinUser);
}

/** Older first; equal times by name, so every order of the input gives the same answer. */
function olderFirst(left: RetentionCandidate, right: RetentionCandidate): number {
  if (left.createdAtMs !== right.createdAtMs) return left.createdAtMs - right.createdAtMs;
  return left.name < right.name ? -1 : left.name > right.name ? 1 : 0;
}

/** The names of the snapshots the rule deletes at `nowMs`, oldest first. */
export function snapshotsToDelete(snapshots: readonly RetentionCandidate[], nowMs: number, options: RetentionOptions = {}): string[] {
  // The caller builds the list from the vDisk's snapshot list: bad input here is a bug.
  assert.ok(Number.isSafeInteger(nowMs), `nowMs must be an integer time in ms, got ${nowMs}`);
  const names = new Set<string>();
  for (const snapshot of snapshots) {
    assert.ok(Number.isSafeInteger(snapshot.createdAtMs), `snapshot ${snapshot.name}: createdAtMs must be an integer time in ms`);
    assert.ok(!names.has(snapshot.name), `snapshot names must be unique; ${snapshot.name} appears twice`);
    names.add(snapshot.name);
  }

  const keeperOf = new Map<string, RetentionCandidate>();
  const candidates: RetentionCandidate[] = [];
  for (const snapshot of [...snapshots].sort(olderFirst)) {
    if (isProtected(snapshot, options)) continue;
    const bucket = bucketOf(snapshot.createdAtMs, nowMs);
    if (bucket.kind === "keep-all") continue;
    candidates.push(snapshot);
    if (bucket.kind === "expired") continue;
    // Sorted oldest first, so the first snapshot seen in a bucket is its keeper.
    const key = `${bucket.kind}:${bucket.index}`;
    if (!keeperOf.has(key)) keeperOf.set(key, snapshot);
  }
  const kept = new Set(keeperOf.values());
  return candidates.filter((snapshot) => !kept.has(snapshot)).map((snapshot) => snapshot.name);
}

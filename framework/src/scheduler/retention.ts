// Which scheduled snapshots to delete: Open vStorage's thinning rule. Every snapshot younger than
// 24 hours is kept; from 24 hours to 7 days one per calendar day (UTC) is kept; from 7 to 30 days one
// per week (weeks of 7 days counted from the Unix epoch, so a week never changes its members); older
// ones are deleted. Within a day or week the oldest snapshot is the one kept: buckets are fixed in
// time and their oldest member never changes, so applying the rule again deletes nothing more
// (idempotent) and an hourly run only ever deletes what just crossed a boundary.
// Never deleted, whatever their age: sticky snapshots (kept on purpose by an operator) and
// snapshots that clones depend on. They do not stand in for their bucket either: the bucket keeps
// its own oldest unprotected snapshot, so what is deleted never depends on what happens to be
// protected.

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
/** All snapshots younger than this are kept. */
export const KEEP_ALL_MS = DAY_MS;
/** Up to this age one snapshot per day is kept. */
export const DAILY_UNTIL_MS = 7 * DAY_MS;
/** Up to this age one snapshot per week is kept; beyond it none (except protected ones). */
export const WEEKLY_UNTIL_MS = 30 * DAY_MS;

export interface RetentionCandidate {
  name: string;
  /** Creation time, milliseconds since the epoch. */
  createdAtMs: number;
  /** Kept on purpose: never deleted by the rule. */
  sticky: boolean;
  /** Clones depend on it: it cannot be deleted. */
  hasClones: boolean;
}

type Bucket = { kind: "keep" } | { kind: "day" | "week"; index: number } | { kind: "expired" };

function bucketOf(createdAtMs: number, nowMs: number): Bucket {
  const ageMs = nowMs - createdAtMs;
  if (ageMs < KEEP_ALL_MS) return { kind: "keep" };
  if (ageMs < DAILY_UNTIL_MS) return { kind: "day", index: Math.floor(createdAtMs / DAY_MS) };
  if (ageMs < WEEKLY_UNTIL_MS) return { kind: "week", index: Math.floor(createdAtMs / (7 * DAY_MS)) };
  return { kind: "expired" };
}

/** The names of the snapshots the rule deletes at `nowMs`, oldest first. */
export function snapshotsToDelete(snapshots: readonly RetentionCandidate[], nowMs: number): string[] {
  const keeperOf = new Map<string, RetentionCandidate>();
  const deletable: Array<{ snapshot: RetentionCandidate; bucket: Bucket }> = [];
  for (const snapshot of snapshots) {
    if (snapshot.sticky || snapshot.hasClones) continue;
    const bucket = bucketOf(snapshot.createdAtMs, nowMs);
    if (bucket.kind === "keep") continue;
    deletable.push({ snapshot, bucket });
    if (bucket.kind === "expired") continue;
    const key = `${bucket.kind}:${bucket.index}`;
    const keeper = keeperOf.get(key);
    // The oldest is kept; equal times are decided by name, so the choice never depends on order.
    if (keeper === undefined || snapshot.createdAtMs < keeper.createdAtMs
      || (snapshot.createdAtMs === keeper.createdAtMs && snapshot.name < keeper.name)) {
      keeperOf.set(key, snapshot);
    }
  }
  const kept = new Set(keeperOf.values());
  return deletable.filter(({ snapshot }) => !kept.has(snapshot))
    .sort((left, right) => left.snapshot.createdAtMs - right.snapshot.createdAtMs || (left.snapshot.name < right.snapshot.name ? -1 : 1))
    .map(({ snapshot }) => snapshot.name);
}

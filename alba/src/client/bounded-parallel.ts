// Runs async work over a list with at most `inFlightMax` items at once. On the first failure no
// new items start, the ones in flight finish (so callers know everything that was done, e.g. which
// fragments were written and need cleanup), and then the first error is thrown.
import assert from "node:assert/strict";

export async function forEachBounded<T>(items: readonly T[], inFlightMax: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  assert.ok(Number.isInteger(inFlightMax) && inFlightMax >= 1, `inFlightMax ${inFlightMax}`);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const index = next++;
      try {
        await work(items[index]!, index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlightMax, items.length) }, () => worker()));
  if (failure !== undefined) throw failure.error;
}

// Goal: maintenance's token bucket bounds the bytes it lets through per second (burst + rate × time), also for concurrent and oversized takes, on an injected clock.
import assert from "node:assert/strict";
import { TokenBucket, type MaintenanceClock } from "../../../alba/src/maintenance/maintenance-settings.ts";

/** A clock that only moves when something sleeps on it: time is the sum of the waits. */
class FakeClock implements MaintenanceClock {
  nowValueMs = 1_000_000;
  readonly sleeps: number[] = [];
  nowMs(): number {
    return this.nowValueMs;
  }
  async sleepMs(durationMs: number): Promise<void> {
    this.sleeps.push(durationMs);
    // Sleepers wake in the order of their wake-up times (concurrent sleeps overlap, they do not add).
    const wakeAt = this.nowValueMs + durationMs;
    await Promise.resolve();
    this.nowValueMs = Math.max(this.nowValueMs, wakeAt);
  }
}

const MIB = 2 ** 20;

describe("alba maintenance throttle", function () {
  it("burst_passes_without_waiting", async function () {
    // Goal: takes within the burst do not wait at all.
    const clock = new FakeClock();
    const bucket = new TokenBucket(10 * MIB, 4 * MIB, clock);
    for (let index = 0; index < 4; index++) await bucket.take(MIB);
    assert.deepEqual(clock.sleeps, []);
    await bucket.take(MIB);
    assert.equal(clock.sleeps.length, 1);
    assert.equal(clock.sleeps[0], 100);
  });

  it("sequential_takes_never_exceed_rate_plus_burst", async function () {
    // Goal: after every take, the bytes granted so far are at most burst + rate × elapsed, and the bucket does not under-deliver by more than one take.
    const clock = new FakeClock();
    const rateBytesPerSecond = 8 * MIB;
    const burstBytes = 2 * MIB;
    const bucket = new TokenBucket(rateBytesPerSecond, burstBytes, clock);
    const startMs = clock.nowMs();
    let grantedBytes = 0;
    const sizes = [64 * 1024, MIB, 3 * MIB, 17, 512 * 1024, 5 * MIB, 4096];
    for (let round = 0; round < 40; round++) {
      const size = sizes[round % sizes.length]!;
      await bucket.take(size);
      grantedBytes += size;
      const elapsedSeconds = (clock.nowMs() - startMs) / 1000;
      assert.ok(grantedBytes <= burstBytes + rateBytesPerSecond * elapsedSeconds + 1, `round ${round}: ${grantedBytes} bytes in ${elapsedSeconds} s`);
    }
    const elapsedSeconds = (clock.nowMs() - startMs) / 1000;
    // Not slower than needed either: the time spent is what the rate demands, within one ms per take.
    assert.ok(elapsedSeconds * rateBytesPerSecond <= grantedBytes - burstBytes + rateBytesPerSecond * 0.04 + 1, `${grantedBytes} bytes took ${elapsedSeconds} s`);
  });

  it("concurrent_takes_share_the_rate", async function () {
    // Goal: 8 concurrent takers of 1 MiB each at 4 MiB/s with a 1 MiB burst finish no earlier than 1.75 s.
    const clock = new FakeClock();
    const bucket = new TokenBucket(4 * MIB, MIB, clock);
    const startMs = clock.nowMs();
    await Promise.all(Array.from({ length: 8 }, () => bucket.take(MIB)));
    const elapsedMs = clock.nowMs() - startMs;
    assert.ok(elapsedMs >= 1750, `8 MiB passed in ${elapsedMs} ms`);
    assert.ok(elapsedMs <= 1760, `8 MiB took ${elapsedMs} ms, more than the rate needs`);
  });

  it("idle_time_refills_only_up_to_the_burst", async function () {
    // Goal: a long idle spell does not bank more than the burst.
    const clock = new FakeClock();
    const bucket = new TokenBucket(MIB, MIB, clock);
    clock.nowValueMs += 3_600_000;
    await bucket.take(MIB);
    assert.deepEqual(clock.sleeps, []);
    await bucket.take(MIB);
    assert.equal(clock.sleeps.at(-1), 1000);
  });

  it("rejects_bad_takes", async function () {
    // Goal: a negative take is a programmer error and is refused.
    const bucket = new TokenBucket(MIB, MIB, new FakeClock());
    await assert.rejects(bucket.take(-1));
  });
});

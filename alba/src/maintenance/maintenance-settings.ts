// Maintenance's settings (each bound named with its unit), its clock, and the token bucket that
// throttles every byte it reads or writes so foreground I/O keeps most of the ASDs' throughput.
import assert from "node:assert/strict";
export interface MaintenanceSettings {
  /** An ASD down (per the pool's health) for longer than this is dead: its fragments count as lost. */
  deadAsdAfterMs: number;
  /**
   * Fragments of an upload that started less than this long ago are never collected. Must exceed
   * the longest put (a slow upload whose fragments were collected would commit a broken object).
   */
  orphanGracePeriodMs: number;
  /** Rebalance when the fill (used / capacity) of the fullest and emptiest live ASDs differs by more than this (0..1). */
  rebalanceFillSpreadMax: number;
  /** The most fragment bytes one rebalance run moves. */
  rebalanceBytesPerRunMax: number;
  /** Bytes per second maintenance reads plus writes, over all ASDs (the token bucket's rate). */
  maintenanceBytesPerSecondMax: number;
  /** Bytes the token bucket lets through at once after an idle spell. */
  maintenanceBurstBytesMax: number;
  /** Objects worked on at once (each reads and writes its chunks one at a time). */
  concurrencyMax: number;
  /** Manifests per metadata scan page. */
  scanPageManifestsMax: number;
  /** Keys per ASD list request. */
  listPageKeysMax: number;
  /** Keys per ASD delete batch. */
  deleteBatchKeysMax: number;
  /** ASDs tried, one after another, for one rebuilt fragment when writes fail (full, down). */
  placementAttemptsMax: number;
  /** Unrecoverable chunks and corrupt fragments listed by name in a report (the counts are complete). */
  reportListedItemsMax: number;
}

export const MAINTENANCE_SETTINGS_DEFAULT: MaintenanceSettings = {
  deadAsdAfterMs: 15 * 60_000,
  orphanGracePeriodMs: 60 * 60_000,
  rebalanceFillSpreadMax: 0.1,
  rebalanceBytesPerRunMax: 64 * 2 ** 30,
  maintenanceBytesPerSecondMax: 100 * 2 ** 20,
  maintenanceBurstBytesMax: 16 * 2 ** 20,
  concurrencyMax: 4,
  scanPageManifestsMax: 200,
  listPageKeysMax: 1000,
  deleteBatchKeysMax: 256,
  placementAttemptsMax: 3,
  reportListedItemsMax: 100,
};

/** Checks settings that come from outside (a config file, an API call). */
export function validateMaintenanceSettings(settings: MaintenanceSettings): MaintenanceSettings {
  const nonNegative: Array<keyof MaintenanceSettings> = ["deadAsdAfterMs", "orphanGracePeriodMs", "rebalanceBytesPerRunMax"];
  const positive: Array<keyof MaintenanceSettings> = [
    "maintenanceBytesPerSecondMax", "maintenanceBurstBytesMax", "concurrencyMax", "scanPageManifestsMax",
    "listPageKeysMax", "deleteBatchKeysMax", "placementAttemptsMax", "reportListedItemsMax",
  ];
  for (const name of nonNegative) {
    if (!(Number.isFinite(settings[name]) && settings[name] >= 0)) throw new RangeError(`maintenance setting ${name} must be a number >= 0, got ${settings[name]}`);
  }
  for (const name of positive) {
    if (!(settings[name] > 0)) throw new RangeError(`maintenance setting ${name} must be > 0, got ${settings[name]}`);
  }
  if (!(settings.rebalanceFillSpreadMax >= 0 && settings.rebalanceFillSpreadMax <= 1)) {
    throw new RangeError(`maintenance setting rebalanceFillSpreadMax must be within 0..1, got ${settings.rebalanceFillSpreadMax}`);
  }
  return settings;
}

/** Time as maintenance sees it; tests pass a fake one to drive the throttle. */
export interface MaintenanceClock {
  /** Epoch milliseconds. */
  nowMs(): number;
  sleepMs(durationMs: number): Promise<void>;
}

export const SYSTEM_CLOCK: MaintenanceClock = {
  nowMs: () => Date.now(),
  sleepMs: (durationMs) => new Promise((resolve) => setTimeout(resolve, durationMs)),
};

/**
 * A token bucket over bytes: `take(n)` returns once n bytes fit the rate. A take larger than the
 * burst is allowed and puts the bucket in debt, which later takes wait out; concurrent takes queue
 * behind each other's debt. So over any interval T, the bytes granted are at most
 * burstBytesMax + rate × T (plus the last take's size).
 */
export class TokenBucket {
  private tokens: number;
  private lastRefillMs: number;

  constructor(private readonly bytesPerSecondMax: number, private readonly burstBytesMax: number, private readonly clock: MaintenanceClock) {
    assert.ok(bytesPerSecondMax > 0 && burstBytesMax > 0, `token bucket rate ${bytesPerSecondMax} and burst ${burstBytesMax} must be positive`);
    this.tokens = burstBytesMax;
    this.lastRefillMs = clock.nowMs();
  }

  private refill(): void {
    const nowMs = this.clock.nowMs();
    const elapsedMs = Math.max(0, nowMs - this.lastRefillMs);
    this.lastRefillMs = nowMs;
    this.tokens = Math.min(this.burstBytesMax, this.tokens + (elapsedMs * this.bytesPerSecondMax) / 1000);
  }

  async take(bytes: number): Promise<void> {
    assert.ok(Number.isFinite(bytes) && bytes >= 0, `take of ${bytes} bytes`);
    if (bytes === 0 || this.bytesPerSecondMax === Number.POSITIVE_INFINITY) return;
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return;
    // Wait until the refill would have paid this take's share of the debt.
    await this.clock.sleepMs(Math.ceil((-this.tokens * 1000) / this.bytesPerSecondMax));
  }
}

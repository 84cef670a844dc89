// One connection per claimed ASD, and what the client believes about each ASD's health and fill.
// The client (alba-client.ts) and maintenance share it: they ask `liveAsds()` where fragments may
// go, `isUp()` before reading from an ASD, and report failures with `reportError()`, which marks an
// ASD down on Unavailable/Closed so later requests skip it instead of each waiting for a timeout.
// A down ASD is re-probed (statistics()) with exponential backoff, from probeIntervalMs up to
// probeBackoffMsMax; the first answer marks it up again. Statistics of up ASDs are refreshed every
// statisticsMaxAgeMs, so placement sees fill levels that are at most that old.
//
// The ASD list comes from the metadata store: `refresh()` (called by probeAll and when an unknown
// ASD id is asked for) opens connections to newly claimed ASDs, reconnects ASDs whose address
// changed, and closes connections to ASDs no longer listed. Connections come from a factory, so
// tests inject in-memory ASDs and the proxy uses AsdClient.
import type { Logger } from "pino";
import { pino } from "pino";
import { isAsdError, type AsdApi, type AsdStatistics } from "../asd/asd-api.ts";
import type { AlbaMetadataStore, AsdRecord } from "../metadata/metadata-store.ts";

export type AsdConnectionFactory = (record: AsdRecord) => AsdApi;

export interface AsdPoolSettings {
  /** First re-probe of a down ASD comes this long after it went down; the wait doubles per failed probe. */
  probeIntervalMs: number;
  /** The longest wait between probes of a down ASD. */
  probeBackoffMsMax: number;
  /** A probe that takes longer than this counts as failed. */
  probeTimeoutMs: number;
  /** Statistics of up ASDs older than this are refreshed by the background tick. */
  statisticsMaxAgeMs: number;
  /** How often the background timer looks for probes and refreshes that are due. */
  tickIntervalMs: number;
}

export const ASD_POOL_SETTINGS_DEFAULT: AsdPoolSettings = {
  probeIntervalMs: 500,
  probeBackoffMsMax: 30_000,
  probeTimeoutMs: 5_000,
  statisticsMaxAgeMs: 10_000,
  tickIntervalMs: 250,
};

/** What the pool knows about one ASD. */
export interface AsdHealth {
  record: AsdRecord;
  health: "up" | "down";
  /** ISO time the ASD was first seen down in the current outage. */
  downSince?: string;
  /** Last statistics answered (possibly stale: see statisticsAt). */
  statistics?: AsdStatistics;
  /** Epoch ms of `statistics`. */
  statisticsAt?: number;
  /**
   * Bytes the ASD can still take: min(capacity - used, disk free) from the last statistics, 0 after
   * the ASD refused a write as Full (until the next statistics say otherwise), undefined if unknown.
   */
  freeBytes?: number;
}

interface PoolEntry extends AsdHealth {
  connection: AsdApi;
  /** Epoch ms of the next probe while down. */
  nextProbeAt: number;
  probeBackoffMs: number;
  probing: boolean;
}

export interface AsdPoolOptions {
  metadata: AlbaMetadataStore;
  connect: AsdConnectionFactory;
  settings?: Partial<AsdPoolSettings>;
  logger?: Logger;
  /** Clock in epoch ms (tests drive it). */
  now?: () => number;
  /** Start the background timer (default true; tests that drive probes by hand pass false). */
  background?: boolean;
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function freeBytesOf(statistics: AsdStatistics): number {
  return Math.max(0, Math.min(statistics.capacityBytes - statistics.usedBytes, statistics.diskFreeBytes));
}

export class AsdPool {
  readonly settings: AsdPoolSettings;
  private readonly metadata: AlbaMetadataStore;
  /** The connection factory (also used to probe an ASD before it is claimed). */
  readonly connect: AsdConnectionFactory;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly entries = new Map<string, PoolEntry>();
  private readonly timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: AsdPoolOptions) {
    this.metadata = options.metadata;
    this.connect = options.connect;
    this.settings = { ...ASD_POOL_SETTINGS_DEFAULT, ...options.settings };
    this.logger = (options.logger ?? pino({ level: "silent" })).child({ component: "asd-pool" });
    this.now = options.now ?? Date.now;
    this.refresh();
    if (options.background !== false) {
      this.timer = setInterval(() => this.tick(), this.settings.tickIntervalMs);
      this.timer.unref();
    }
  }

  /** Brings the connection set in line with the metadata store's ASD list. */
  refresh(): void {
    if (this.closed) return;
    const records = this.metadata.listAsds();
    const listed = new Set(records.map((record) => record.asdId));
    for (const record of records) {
      const entry = this.entries.get(record.asdId);
      if (entry !== undefined && entry.record.host === record.host && entry.record.port === record.port) {
        entry.record = record;
        continue;
      }
      if (entry !== undefined) this.closeConnection(entry);
      // New or moved: assume up until a request or probe says otherwise; probeAll checks at once.
      this.entries.set(record.asdId, {
        record, health: "up", connection: this.connect(record), nextProbeAt: 0, probeBackoffMs: this.settings.probeIntervalMs, probing: false,
      });
    }
    for (const [asdId, entry] of this.entries) {
      if (!listed.has(asdId)) {
        this.closeConnection(entry);
        this.entries.delete(asdId);
      }
    }
  }

  private closeConnection(entry: PoolEntry): void {
    entry.connection.close().catch((error: unknown) => this.logger.debug({ err: error, asdId: entry.record.asdId }, "closing ASD connection failed"));
  }

  private entry(asdId: string): PoolEntry | undefined {
    let entry = this.entries.get(asdId);
    if (entry === undefined) {
      this.refresh();
      entry = this.entries.get(asdId);
    }
    return entry;
  }

  /** The connection to a claimed ASD (up or down), or undefined if it is not claimed. */
  connection(asdId: string): AsdApi | undefined {
    return this.entry(asdId)?.connection;
  }

  /** Whether the ASD is claimed and answered its last request or probe. */
  isUp(asdId: string): boolean {
    return this.entries.get(asdId)?.health === "up";
  }

  nodeOf(asdId: string): string | undefined {
    return this.entry(asdId)?.record.nodeId;
  }

  /** Every claimed ASD with its health, in ASD id order (copies). */
  statuses(): AsdHealth[] {
    return [...this.entries.values()]
      .sort((left, right) => (left.record.asdId < right.record.asdId ? -1 : 1))
      .map((entry) => ({
        record: { ...entry.record }, health: entry.health,
        ...(entry.downSince === undefined ? {} : { downSince: entry.downSince }),
        ...(entry.statistics === undefined ? {} : { statistics: entry.statistics, statisticsAt: entry.statisticsAt }),
        ...(entry.freeBytes === undefined ? {} : { freeBytes: entry.freeBytes }),
      }));
  }

  /** Up ASDs in state claimed (not decommissioned): where new fragments may go. */
  liveAsds(): AsdHealth[] {
    return this.statuses().filter((status) => status.health === "up" && status.record.state === "claimed");
  }

  /**
   * What a request to `asdId` failing with `error` says about the ASD: Unavailable or Closed
   * marks it down (until a probe answers), Full zeroes its free space (until fresh statistics).
   */
  reportError(asdId: string, error: unknown): void {
    const entry = this.entries.get(asdId);
    if (entry === undefined) return;
    if (isAsdError(error, "Full")) {
      entry.freeBytes = 0;
      return;
    }
    if (isAsdError(error, "Unavailable") || isAsdError(error, "Closed")) this.markDown(entry, error);
  }

  private markDown(entry: PoolEntry, error: unknown): void {
    if (entry.health === "down") return;
    entry.health = "down";
    entry.downSince = new Date(this.now()).toISOString();
    entry.probeBackoffMs = this.settings.probeIntervalMs;
    entry.nextProbeAt = this.now() + entry.probeBackoffMs;
    this.logger.warn({ asdId: entry.record.asdId, address: entry.connection.address, err: error }, "ASD down");
  }

  private markUp(entry: PoolEntry, statistics: AsdStatistics): void {
    if (entry.health === "down") {
      this.logger.info({ asdId: entry.record.asdId, downSince: entry.downSince }, "ASD up again");
    }
    entry.health = "up";
    delete entry.downSince;
    entry.statistics = statistics;
    entry.statisticsAt = this.now();
    entry.freeBytes = freeBytesOf(statistics);
  }

  /** Asks one ASD for its statistics; updates its health. Resolves true when it answered. */
  async probe(asdId: string): Promise<boolean> {
    const entry = this.entry(asdId);
    if (entry === undefined || this.closed) return false;
    return this.probeEntry(entry);
  }

  private async probeEntry(entry: PoolEntry): Promise<boolean> {
    entry.probing = true;
    try {
      const statistics = await withTimeout(entry.connection.statistics(), this.settings.probeTimeoutMs, `statistics of ASD ${entry.record.asdId}`);
      if (statistics.asdId !== entry.record.asdId) {
        // Another ASD now listens at this address: not the one we claimed; treat as down.
        throw new Error(`ASD at ${entry.connection.address} is ${statistics.asdId}, expected ${entry.record.asdId}`);
      }
      this.markUp(entry, statistics);
      return true;
    } catch (error) {
      if (entry.health === "down") {
        entry.probeBackoffMs = Math.min(entry.probeBackoffMs * 2, this.settings.probeBackoffMsMax);
        entry.nextProbeAt = this.now() + entry.probeBackoffMs;
      } else {
        this.markDown(entry, error);
      }
      return false;
    } finally {
      entry.probing = false;
    }
  }

  /** Re-reads the ASD list and probes every ASD now (at startup, after a claim, for status). */
  async probeAll(): Promise<void> {
    this.refresh();
    await Promise.all([...this.entries.values()].map((entry) => this.probeEntry(entry)));
  }

  /** The background tick: probes down ASDs whose backoff expired, refreshes stale statistics. */
  private tick(): void {
    if (this.closed) return;
    const now = this.now();
    for (const entry of this.entries.values()) {
      if (entry.probing) continue;
      const due = entry.health === "down"
        ? now >= entry.nextProbeAt
        : entry.statisticsAt === undefined || now - entry.statisticsAt >= this.settings.statisticsMaxAgeMs;
      if (due) void this.probeEntry(entry);
    }
  }

  /** Stops the timer and closes every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    const entries = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(entries.map((entry) => entry.connection.close().catch(() => undefined)));
  }
}

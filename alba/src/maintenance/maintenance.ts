// Alba maintenance: keeps every object at full redundancy and the ASDs tidy and evenly filled.
// Jobs (each callable alone, each returning counts): dead-ASD detection, repair of lost fragments,
// verification of every fragment's checksum, collection of orphan fragments, and rebalancing.
// See alba/docs/maintenance.md. Settings and the throttle: maintenance-settings.ts; what the jobs
// report: maintenance-report.ts.
//
// Invariants, whatever job runs:
// - A fragment is rebuilt only from k fragments that passed their CRC-32C; fewer than k good
//   fragments leaves the chunk alone (reported as unrecoverable), never half-repaired.
// - The metadata names a new fragment only after the ASD acknowledged its batch (which is fsynced).
// - An old copy is deleted only after the metadata no longer names it, so the last good copy of a
//   fragment is never deleted; if updateFragments says the object changed meanwhile, what this run
//   wrote is deleted instead (its keys carry the dead version's object id).
// - Every byte maintenance reads or writes passes one token bucket, and at most concurrencyMax
//   objects are worked on at once, so foreground I/O keeps most of the ASDs' throughput.
// - Only one maintenance runs per backend at a time (the proxy enforces it): moves are not
//   guarded against a second mover.
import type { Logger } from "pino";
import { pino } from "pino";
import { isAsdError, type AsdKeyInfo } from "../asd/asd-api.ts";
import { forEachBounded } from "../client/bounded-parallel.ts";
import { fragmentKey, objectFragmentPrefix, parseFragmentKey } from "../client/fragment-key.ts";
import { crc32c } from "../codec/crc32c.ts";
import { reconstructFragments } from "../encoding/erasure-coder.ts";
import { decodeFragment, encodeFragment, FragmentCorruptError, type FragmentCodecPreset } from "../encoding/fragment-codec.ts";
import type { AlbaMetadataStore, AsdRecord, FragmentChange, FragmentManifest, ObjectManifest } from "../metadata/metadata-store.ts";
import { placeMissingFragments, type PlacementCandidate } from "../preset/policy-selection.ts";
import type {
  DeadAsdReport, JobOptions, MaintenanceAsdPool, MaintenanceJob, MaintenanceProgress, MaintenanceRunOptions, MaintenanceRunReport,
  OrphanReport, ProgressCallback, RebalanceReport, RepairReport, VerifyReport,
} from "./maintenance-report.ts";
import {
  MAINTENANCE_SETTINGS_DEFAULT, SYSTEM_CLOCK, TokenBucket, validateMaintenanceSettings, type MaintenanceClock, type MaintenanceSettings,
} from "./maintenance-settings.ts";

// ---------------------------------------------------------------------------------------------
// Per-job view of the ASDs

interface AsdView {
  record: AsdRecord;
  /** Answered its last probe and no request failed during this job. */
  up: boolean;
  /** Down longer than deadAsdAfterMs, or decommissioned: its fragments are lost. */
  dead: boolean;
  /** New fragments may go here (claimed, up, not dead). */
  placeable: boolean;
  downSince?: string;
  capacityBytes?: number;
  usedBytes?: number;
  /** Room left, from the statistics, lowered by what this job wrote; undefined if unknown. */
  freeBytes?: number;
}

interface JobContext {
  asds: Map<string, AsdView>;
  progress: MaintenanceProgress;
  onProgress?: ProgressCallback;
  asdErrors: number;
  bytesRead: number;
  bytesWritten: number;
}

type FragmentRead =
  | { status: "good"; plain: Buffer }
  /** Not stored (null in the manifest, key absent, or on a dead ASD). */
  | { status: "missing" }
  | { status: "corrupt" }
  /** The ASD is down (not dead) or failed the request: neither good nor bad. */
  | { status: "unavailable" };

interface ChunkRepairOutcome {
  rebuilt: number;
  unplaced: number;
  unrecoverable: boolean;
  changedMeanwhile: boolean;
}

function emptyRepairReport(): RepairReport {
  return {
    objectsScanned: 0, chunksScanned: 0, chunksDegraded: 0, chunksRepaired: 0, fragmentsRebuilt: 0, fragmentsUnplaced: 0,
    unrecoverableChunkCount: 0, unrecoverableChunks: [], objectsChangedMeanwhile: 0, asdErrors: 0, bytesRead: 0, bytesWritten: 0,
  };
}

function fillOf(view: AsdView): number {
  return view.capacityBytes === undefined || view.capacityBytes <= 0 || view.usedBytes === undefined ? 0 : view.usedBytes / view.capacityBytes;
}

// ---------------------------------------------------------------------------------------------

export interface AlbaMaintenanceOptions {
  metadata: AlbaMetadataStore;
  pool: MaintenanceAsdPool;
  settings?: Partial<MaintenanceSettings>;
  logger?: Logger;
  clock?: MaintenanceClock;
}

export class AlbaMaintenance {
  readonly settings: MaintenanceSettings;
  private readonly metadata: AlbaMetadataStore;
  private readonly pool: MaintenanceAsdPool;
  private readonly logger: Logger;
  private readonly clock: MaintenanceClock;
  private readonly throttle: TokenBucket;

  constructor(options: AlbaMaintenanceOptions) {
    this.metadata = options.metadata;
    this.pool = options.pool;
    this.settings = validateMaintenanceSettings({ ...MAINTENANCE_SETTINGS_DEFAULT, ...options.settings });
    this.logger = (options.logger ?? pino({ level: "silent" })).child({ component: "alba-maintenance" });
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.throttle = new TokenBucket(this.settings.maintenanceBytesPerSecondMax, this.settings.maintenanceBurstBytesMax, this.clock);
  }

  /** Runs the chosen jobs (all when none is chosen) in the order repair, verify, collectOrphans, rebalance. */
  async runOnce(options: MaintenanceRunOptions = {}): Promise<MaintenanceRunReport> {
    const chosen = [options.repair, options.verify, options.collectOrphans, options.rebalance].some((flag) => flag === true);
    const want = (flag: boolean | undefined): boolean => !chosen || flag === true;
    const startedMs = this.clock.nowMs();
    const jobOptions: JobOptions = options.onProgress === undefined ? {} : { onProgress: options.onProgress };
    const report: Omit<MaintenanceRunReport, "finishedAt" | "durationMs"> = {
      startedAt: new Date(startedMs).toISOString(),
      deadAsds: await this.detectDeadAsds(jobOptions),
    };
    // Repair first: lost redundancy is the urgent risk. Verify next (it also repairs what it finds).
    // Orphan collection before rebalance, so the fills rebalance sees do not count garbage.
    if (want(options.repair)) report.repair = await this.repair(jobOptions);
    if (want(options.verify)) report.verify = await this.verify(jobOptions);
    if (want(options.collectOrphans)) report.collectOrphans = await this.collectOrphans(jobOptions);
    if (want(options.rebalance)) report.rebalance = await this.rebalance(jobOptions);
    const finishedMs = this.clock.nowMs();
    return { ...report, finishedAt: new Date(finishedMs).toISOString(), durationMs: finishedMs - startedMs };
  }

  // -------------------------------------------------------------------------------------------
  // Job context: which ASDs are up, dead, placeable

  private async jobContext(job: MaintenanceJob, options: JobOptions): Promise<JobContext> {
    await this.pool.probeAll();
    const nowMs = this.clock.nowMs();
    const asds = new Map<string, AsdView>();
    for (const status of this.pool.statuses()) {
      const up = status.health === "up";
      const downForMs = status.downSince === undefined ? 0 : nowMs - Date.parse(status.downSince);
      const dead = status.record.state === "decommissioned" || (!up && downForMs > this.settings.deadAsdAfterMs);
      const view: AsdView = { record: status.record, up, dead, placeable: up && !dead && status.record.state === "claimed" };
      if (status.downSince !== undefined) view.downSince = status.downSince;
      if (status.statistics !== undefined) {
        view.capacityBytes = status.statistics.capacityBytes;
        view.usedBytes = status.statistics.usedBytes;
      }
      if (status.freeBytes !== undefined) view.freeBytes = status.freeBytes;
      asds.set(status.record.asdId, view);
    }
    const context: JobContext = {
      asds, progress: { job, itemsDone: 0, fragmentsWritten: 0, bytesTransferred: 0 }, asdErrors: 0, bytesRead: 0, bytesWritten: 0,
    };
    if (options.onProgress !== undefined) context.onProgress = options.onProgress;
    this.report(context);
    return context;
  }

  private report(context: JobContext): void {
    context.progress.bytesTransferred = context.bytesRead + context.bytesWritten;
    context.onProgress?.({ ...context.progress });
  }

  /** An ASD's fragments count as lost when it is dead or no longer claimed at all. */
  private isLost(context: JobContext, asdId: string): boolean {
    return context.asds.get(asdId)?.dead ?? true;
  }

  private failed(context: JobContext, asdId: string, error: unknown, what: string): void {
    if (!isAsdError(error)) throw error;
    this.pool.reportError(asdId, error);
    context.asdErrors++;
    const view = context.asds.get(asdId);
    if (view !== undefined) {
      if (isAsdError(error, "Full")) view.freeBytes = 0;
      if (isAsdError(error, "Unavailable") || isAsdError(error, "Closed")) {
        view.up = false;
        view.placeable = false;
      }
    }
    this.logger.warn({ asdId, err: error }, `${what} failed`);
  }

  /** Dead: down (per the pool's health) longer than deadAsdAfterMs, or decommissioned. */
  async detectDeadAsds(options: JobOptions = {}): Promise<DeadAsdReport> {
    const context = await this.jobContext("detectDeadAsds", options);
    const report: DeadAsdReport = { dead: [], down: [] };
    for (const view of context.asds.values()) {
      const downSince = view.downSince === undefined ? {} : { downSince: view.downSince };
      if (view.dead) {
        report.dead.push({ asdId: view.record.asdId, nodeId: view.record.nodeId, reason: view.record.state === "decommissioned" ? "decommissioned" : "down", ...downSince });
      } else if (!view.up) {
        report.down.push({ asdId: view.record.asdId, nodeId: view.record.nodeId, ...downSince });
      }
    }
    if (report.dead.length > 0) this.logger.warn({ dead: report.dead }, "dead ASDs: their fragments count as lost");
    return report;
  }

  // -------------------------------------------------------------------------------------------
  // Sweeping manifests

  /** Calls `work` for every manifest (paged, at most concurrencyMax at once). */
  private async forEachManifest(context: JobContext, work: (manifest: ObjectManifest) => Promise<void>): Promise<void> {
    let afterObjectId: string | undefined;
    for (;;) {
      const page = this.metadata.scanManifests({ limit: this.settings.scanPageManifestsMax, ...(afterObjectId === undefined ? {} : { afterObjectId }) });
      if (page.length === 0) return;
      await forEachBounded(page, this.settings.concurrencyMax, async (manifest) => {
        await work(manifest);
        context.progress.itemsDone++;
        this.report(context);
      });
      afterObjectId = page[page.length - 1]!.objectId;
    }
  }

  /** The codec settings of the manifest's preset (its key lives in the preset), or undefined if the preset is gone. */
  private codecOf(manifest: ObjectManifest): FragmentCodecPreset | undefined {
    const preset = this.metadata.getPreset(manifest.presetName);
    if (preset === undefined) return undefined;
    return {
      compression: manifest.compression, encryption: manifest.encryption,
      ...(preset.encryptionKeyHex === undefined ? {} : { encryptionKeyHex: preset.encryptionKeyHex }),
    };
  }

  /** The keys of one object on one ASD, or undefined when the ASD did not answer. */
  private async listObjectKeys(context: JobContext, asdId: string, objectId: string): Promise<Map<string, AsdKeyInfo> | undefined> {
    const connection = this.pool.connection(asdId);
    if (connection === undefined) return undefined;
    const keys = new Map<string, AsdKeyInfo>();
    let startAfter: string | undefined;
    try {
      for (;;) {
        const page = await connection.list({ prefix: objectFragmentPrefix(objectId), limitKeys: this.settings.listPageKeysMax, ...(startAfter === undefined ? {} : { startAfter }) });
        for (const info of page.keys) keys.set(info.key, info);
        if (page.nextStartAfter === undefined) return keys;
        startAfter = page.nextStartAfter;
      }
    } catch (error) {
      this.failed(context, asdId, error, "listing an object's fragments");
      return undefined;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Repair

  /**
   * Rebuilds every fragment that is null in its manifest, on a dead ASD, or absent (or of the wrong
   * size or checksum, per the ASD's listing) on a live ASD. Fragments on ASDs that are down but not
   * yet dead are waited for.
   */
  async repair(options: JobOptions = {}): Promise<RepairReport> {
    const context = await this.jobContext("repair", options);
    const report = emptyRepairReport();
    await this.forEachManifest(context, async (manifest) => {
      report.objectsScanned++;
      const listings = new Map<string, Map<string, AsdKeyInfo> | undefined>();
      const named = new Set<string>();
      for (const chunk of manifest.chunks) for (const fragment of chunk.fragments) if (fragment.asdId !== null) named.add(fragment.asdId);
      await Promise.all([...named].map(async (asdId) => {
        const view = context.asds.get(asdId);
        if (view !== undefined && view.up && !view.dead) listings.set(asdId, await this.listObjectKeys(context, asdId, manifest.objectId));
      }));
      for (const [chunkIndex, chunk] of manifest.chunks.entries()) {
        report.chunksScanned++;
        const bad = new Set<number>();
        for (const [fragmentIndex, fragment] of chunk.fragments.entries()) {
          if (fragment.asdId === null || this.isLost(context, fragment.asdId)) {
            bad.add(fragmentIndex);
            continue;
          }
          const listing = listings.get(fragment.asdId);
          if (listing === undefined) continue; // down, not dead: wait for it
          const info = listing.get(fragmentKey({ objectId: manifest.objectId, chunkIndex, fragmentIndex }));
          if (info === undefined || info.sizeBytes !== fragment.storedSizeBytes || info.crc32c >>> 0 !== fragment.crc32c >>> 0) bad.add(fragmentIndex);
        }
        if (bad.size === 0) continue;
        report.chunksDegraded++;
        const outcome = await this.repairChunk(context, manifest, chunkIndex, bad, new Map());
        this.addOutcome(report, manifest, chunkIndex, outcome);
        if (outcome.changedMeanwhile) break;
      }
    });
    return this.finishRepairReport(context, report);
  }

  private addOutcome(report: RepairReport, manifest: ObjectManifest, chunkIndex: number, outcome: ChunkRepairOutcome): void {
    report.fragmentsRebuilt += outcome.rebuilt;
    report.fragmentsUnplaced += outcome.unplaced;
    if (outcome.changedMeanwhile) report.objectsChangedMeanwhile++;
    if (outcome.unrecoverable) {
      report.unrecoverableChunkCount++;
      if (report.unrecoverableChunks.length < this.settings.reportListedItemsMax) {
        report.unrecoverableChunks.push({ namespace: manifest.namespace, key: manifest.key, objectId: manifest.objectId, chunkIndex });
      }
      this.logger.error({ namespace: manifest.namespace, key: manifest.key, objectId: manifest.objectId, chunkIndex }, "chunk has fewer than k good fragments: unrecoverable");
    } else if (!outcome.changedMeanwhile && outcome.unplaced === 0) {
      report.chunksRepaired++;
    }
  }

  private finishRepairReport<T extends RepairReport>(context: JobContext, report: T): T {
    report.asdErrors = context.asdErrors;
    report.bytesRead = context.bytesRead;
    report.bytesWritten = context.bytesWritten;
    return report;
  }

  /** Reads and checks one fragment (throttled). */
  private async readFragment(context: JobContext, manifest: ObjectManifest, codec: FragmentCodecPreset, chunkIndex: number, fragmentIndex: number): Promise<FragmentRead> {
    const chunk = manifest.chunks[chunkIndex]!;
    const fragment = chunk.fragments[fragmentIndex]!;
    if (fragment.asdId === null || this.isLost(context, fragment.asdId)) return { status: "missing" };
    const view = context.asds.get(fragment.asdId)!;
    const connection = this.pool.connection(fragment.asdId);
    if (!view.up || connection === undefined) return { status: "unavailable" };
    const address = { objectId: manifest.objectId, chunkIndex, fragmentIndex };
    await this.throttle.take(fragment.storedSizeBytes);
    let stored: Buffer | undefined;
    try {
      stored = await connection.get(fragmentKey(address));
    } catch (error) {
      this.failed(context, fragment.asdId, error, "reading a fragment");
      return { status: "unavailable" };
    }
    if (stored === undefined) return { status: "missing" };
    context.bytesRead += stored.length;
    try {
      return { status: "good", plain: await decodeFragment(stored, fragment, codec, address, chunk.fragmentSizeBytes) };
    } catch (error) {
      if (!(error instanceof FragmentCorruptError)) throw error;
      this.logger.warn({ asdId: fragment.asdId, err: error }, "corrupt fragment");
      return { status: "corrupt" };
    }
  }

  /** Writes one fragment (throttled; overwrites). Resolves false when the ASD refused or failed. */
  private async writeFragment(context: JobContext, asdId: string, key: string, stored: Buffer): Promise<boolean> {
    const connection = this.pool.connection(asdId);
    if (connection === undefined) return false;
    await this.throttle.take(stored.length);
    try {
      await connection.applyBatch({ asserts: [], updates: [{ kind: "set", key, value: stored }] });
    } catch (error) {
      this.failed(context, asdId, error, "writing a fragment");
      return false;
    }
    context.bytesWritten += stored.length;
    context.progress.fragmentsWritten++;
    const view = context.asds.get(asdId);
    if (view !== undefined) {
      if (view.freeBytes !== undefined) view.freeBytes = Math.max(0, view.freeBytes - stored.length);
      if (view.usedBytes !== undefined) view.usedBytes += stored.length;
    }
    return true;
  }

  /** Deletes keys on one ASD, best effort (what fails is left for orphan collection). Resolves whether it worked. */
  private async deleteKeys(context: JobContext, asdId: string, keys: readonly string[]): Promise<boolean> {
    const connection = this.pool.connection(asdId);
    if (connection === undefined || keys.length === 0) return keys.length === 0;
    try {
      for (let start = 0; start < keys.length; start += this.settings.deleteBatchKeysMax) {
        const batch = keys.slice(start, start + this.settings.deleteBatchKeysMax);
        await connection.applyBatch({ asserts: [], updates: batch.map((key) => ({ kind: "delete" as const, key })) });
      }
      return true;
    } catch (error) {
      this.failed(context, asdId, error, "deleting fragments");
      return false;
    }
  }

  private placementCandidates(context: JobContext, sizeBytes: number, excluded: ReadonlySet<string>): PlacementCandidate[] {
    const candidates: PlacementCandidate[] = [];
    for (const view of context.asds.values()) {
      if (!view.placeable || excluded.has(view.record.asdId)) continue;
      if (view.freeBytes !== undefined && view.freeBytes < sizeBytes) continue;
      candidates.push({ asdId: view.record.asdId, nodeId: view.record.nodeId, ...(view.freeBytes === undefined ? {} : { freeBytes: view.freeBytes }) });
    }
    return candidates;
  }

  private nodeOf(context: JobContext): (asdId: string) => string | undefined {
    return (asdId) => context.asds.get(asdId)?.record.nodeId;
  }

  /**
   * Rebuilds the `bad` fragments of one chunk from k good ones (`plain` holds fragments already
   * read and verified; more are read as needed, and those found missing or corrupt join `bad`),
   * writes them (in place when their ASD is healthy and has room, else where placeMissingFragments
   * says), then records them with updateFragments.
   */
  private async repairChunk(
    context: JobContext, manifest: ObjectManifest, chunkIndex: number, bad: Set<number>, plain: Map<number, Buffer>,
  ): Promise<ChunkRepairOutcome> {
    const outcome: ChunkRepairOutcome = { rebuilt: 0, unplaced: 0, unrecoverable: false, changedMeanwhile: false };
    const { k, m } = manifest.policy;
    const chunk = manifest.chunks[chunkIndex]!;
    const codec = this.codecOf(manifest);
    if (codec === undefined) {
      this.logger.error({ objectId: manifest.objectId, presetName: manifest.presetName }, "preset of object is gone: cannot decode it");
      outcome.unrecoverable = true;
      return outcome;
    }
    const sources: Array<Buffer | undefined> = new Array<Buffer | undefined>(k + m).fill(undefined);
    for (const [index, bytes] of plain) if (!bad.has(index)) sources[index] = bytes;
    // Data fragments first: with all k of them the reconstruction is a copy plus parity encoding.
    for (let index = 0; index < k + m && sources.filter((source) => source !== undefined).length < k; index++) {
      if (bad.has(index) || sources[index] !== undefined) continue;
      const read = await this.readFragment(context, manifest, codec, chunkIndex, index);
      if (read.status === "good") sources[index] = read.plain;
      else if (read.status === "missing" || read.status === "corrupt") bad.add(index);
    }
    if (sources.filter((source) => source !== undefined).length < k) {
      outcome.unrecoverable = true;
      return outcome;
    }
    const wanted = [...bad].sort((left, right) => left - right);
    const rebuiltPlain = await reconstructFragments(sources, k, m, chunk.fragmentSizeBytes, wanted);
    const encoded = new Map<number, { stored: Buffer; compressed: boolean; crc32c: number }>();
    for (const [position, index] of wanted.entries()) {
      const result = await encodeFragment(rebuiltPlain[position]!, codec, { objectId: manifest.objectId, chunkIndex, fragmentIndex: index });
      const expected = chunk.fragments[index]!;
      if (result.crc32c !== expected.crc32c >>> 0 || result.stored.length !== expected.storedSizeBytes) {
        // The codec is deterministic per fragment address, so this means the manifest or a
        // compressor changed; the manifest gets the new values below.
        this.logger.warn({ objectId: manifest.objectId, chunkIndex, fragmentIndex: index }, "rebuilt fragment differs from the manifest's checksum");
      }
      encoded.set(index, result);
    }
    const maxStoredBytes = Math.max(...[...encoded.values()].map((result) => result.stored.length));
    // Target placement: good fragments stay; a bad one is rewritten in place when its ASD is
    // healthy and has room (it already counts toward x there), else placed anew.
    const target: Array<string | null> = chunk.fragments.map((fragment, index) => {
      if (!bad.has(index)) return fragment.asdId;
      const view = fragment.asdId === null ? undefined : context.asds.get(fragment.asdId);
      const fits = view !== undefined && (view.freeBytes === undefined || view.freeBytes >= encoded.get(index)!.stored.length);
      return view !== undefined && view.placeable && fits ? fragment.asdId : null;
    });
    const unwritten = new Set(wanted);
    const written = new Map<number, string>();
    const excluded = new Set<string>();
    for (let attempt = 0; attempt < this.settings.placementAttemptsMax && unwritten.size > 0; attempt++) {
      const placed = placeMissingFragments(manifest.policy, target, this.placementCandidates(context, maxStoredBytes, excluded), this.nodeOf(context));
      const tries = [...unwritten].filter((index) => placed[index] !== null);
      if (tries.length === 0) break;
      for (const index of tries) target[index] = placed[index]!;
      await Promise.all(tries.map(async (index) => {
        const asdId = placed[index]!;
        const key = fragmentKey({ objectId: manifest.objectId, chunkIndex, fragmentIndex: index });
        if (await this.writeFragment(context, asdId, key, encoded.get(index)!.stored)) {
          written.set(index, asdId);
          unwritten.delete(index);
        } else {
          excluded.add(asdId);
          target[index] = null;
        }
      }));
    }
    outcome.unplaced = unwritten.size;
    if (written.size === 0) return outcome;
    const changes: FragmentChange[] = [...written].map(([fragmentIndex, asdId]) => {
      const result = encoded.get(fragmentIndex)!;
      return { chunkIndex, fragmentIndex, fragment: { asdId, storedSizeBytes: result.stored.length, crc32c: result.crc32c, compressed: result.compressed } };
    });
    if (!this.metadata.updateFragments(manifest.objectId, changes)) {
      // Overwritten or deleted meanwhile: what we wrote belongs to no object (its keys carry this
      // dead version's id), so it goes.
      outcome.changedMeanwhile = true;
      for (const [fragmentIndex, asdId] of written) {
        await this.deleteKeys(context, asdId, [fragmentKey({ objectId: manifest.objectId, chunkIndex, fragmentIndex })]);
      }
      return outcome;
    }
    outcome.rebuilt = written.size;
    // The metadata no longer names the old copies that moved: delete those on ASDs still reachable
    // (a corrupt copy whose ASD was full, a copy on a decommissioned ASD).
    for (const [fragmentIndex, asdId] of written) {
      const old = chunk.fragments[fragmentIndex]!.asdId;
      if (old !== null && old !== asdId && context.asds.get(old)?.up === true) {
        await this.deleteKeys(context, old, [fragmentKey({ objectId: manifest.objectId, chunkIndex, fragmentIndex })]);
      }
    }
    return outcome;
  }

  // -------------------------------------------------------------------------------------------
  // Verify

  /** Reads every fragment of every object, checks it against the manifest, and rewrites the bad ones. */
  async verify(options: JobOptions = {}): Promise<VerifyReport> {
    const context = await this.jobContext("verify", options);
    const report: VerifyReport = { ...emptyRepairReport(), fragmentsChecked: 0, corruptFragmentCount: 0, corruptFragments: [], missingFragmentCount: 0 };
    await this.forEachManifest(context, async (manifest) => {
      report.objectsScanned++;
      const codec = this.codecOf(manifest);
      for (const [chunkIndex, chunk] of manifest.chunks.entries()) {
        report.chunksScanned++;
        if (codec === undefined) {
          this.addOutcome(report, manifest, chunkIndex, { rebuilt: 0, unplaced: 0, unrecoverable: true, changedMeanwhile: false });
          continue;
        }
        const bad = new Set<number>();
        const plain = new Map<number, Buffer>();
        // All of a chunk's fragments at once: they are on distinct ASDs, and the throttle bounds the bytes.
        const reads = await Promise.all(chunk.fragments.map((_fragment, fragmentIndex) => this.readFragment(context, manifest, codec, chunkIndex, fragmentIndex)));
        for (const [fragmentIndex, fragment] of chunk.fragments.entries()) {
          const read = reads[fragmentIndex]!;
          if (read.status === "unavailable") continue;
          report.fragmentsChecked++;
          if (read.status === "good") {
            plain.set(fragmentIndex, read.plain);
            continue;
          }
          bad.add(fragmentIndex);
          if (read.status === "missing") {
            report.missingFragmentCount++;
            continue;
          }
          report.corruptFragmentCount++;
          if (report.corruptFragments.length < this.settings.reportListedItemsMax) {
            report.corruptFragments.push({ namespace: manifest.namespace, key: manifest.key, objectId: manifest.objectId, chunkIndex, fragmentIndex, asdId: fragment.asdId });
          }
        }
        if (bad.size === 0) continue;
        report.chunksDegraded++;
        const outcome = await this.repairChunk(context, manifest, chunkIndex, bad, plain);
        this.addOutcome(report, manifest, chunkIndex, outcome);
        if (outcome.changedMeanwhile) break;
      }
    });
    return this.finishRepairReport(context, report);
  }

  // -------------------------------------------------------------------------------------------
  // Orphan collection

  /**
   * Lists every reachable ASD's fragment keys and deletes those of object ids with neither a
   * manifest nor a pending upload younger than orphanGracePeriodMs, and those of current objects
   * on ASDs their manifest does not place them on. Then forgets the pending uploads older than the
   * grace period.
   */
  async collectOrphans(options: JobOptions = {}): Promise<OrphanReport> {
    const context = await this.jobContext("collectOrphans", options);
    const report: OrphanReport = {
      asdsScanned: 0, keysScanned: 0, orphanFragmentsDeleted: 0, leftoverFragmentsDeleted: 0, bytesFreed: 0, pendingUploadsRemoved: 0, asdErrors: 0,
    };
    const cutoff = new Date(this.clock.nowMs() - this.settings.orphanGracePeriodMs).toISOString();
    const staleUploads = new Set(this.metadata.listPendingUploads({ startedBefore: cutoff }).map((upload) => upload.objectId));
    let everyAsdSwept = true;
    for (const view of context.asds.values()) {
      // Decommissioned ASDs that still answer are swept too: that drains their leftovers.
      if (!view.up) {
        everyAsdSwept = false;
        continue;
      }
      const swept = await this.collectOrphansOn(context, view.record.asdId, staleUploads, report);
      if (swept) report.asdsScanned++;
      else everyAsdSwept = false;
    }
    // An upload's record goes only after its fragments did, so a failed sweep leaves it for next time.
    if (everyAsdSwept) {
      for (const objectId of staleUploads) {
        if (this.metadata.getManifestByObjectId(objectId) !== undefined) continue; // committed meanwhile
        this.metadata.removePendingUpload(objectId);
        report.pendingUploadsRemoved++;
      }
    }
    report.asdErrors = context.asdErrors;
    return report;
  }

  /** Sweeps one ASD; resolves false when it failed part way. */
  private async collectOrphansOn(context: JobContext, asdId: string, staleUploads: ReadonlySet<string>, report: OrphanReport): Promise<boolean> {
    const connection = this.pool.connection(asdId);
    if (connection === undefined) return false;
    let startAfter: string | undefined;
    for (;;) {
      let page;
      try {
        page = await connection.list({ prefix: "f/", limitKeys: this.settings.listPageKeysMax, ...(startAfter === undefined ? {} : { startAfter }) });
      } catch (error) {
        this.failed(context, asdId, error, "listing an ASD's keys");
        return false;
      }
      const orphans: AsdKeyInfo[] = [];
      const leftovers: AsdKeyInfo[] = [];
      const verdicts = new Map<string, { pending: boolean; manifest: ObjectManifest | undefined }>();
      for (const info of page.keys) {
        const address = parseFragmentKey(info.key);
        if (address === undefined) continue;
        report.keysScanned++;
        context.progress.itemsDone++;
        let verdict = verdicts.get(address.objectId);
        if (verdict === undefined) {
          // Pending before manifest: a commit moves an upload from pending to committed in one
          // transaction, so reading in this order can never see it as neither.
          const pending = this.metadata.isPendingUpload(address.objectId);
          verdict = { pending, manifest: this.metadata.getManifestByObjectId(address.objectId) };
          verdicts.set(address.objectId, verdict);
        }
        if (verdict.manifest === undefined) {
          if (verdict.pending && !staleUploads.has(address.objectId)) continue; // an upload in progress
          orphans.push(info);
          continue;
        }
        const placedOn = verdict.manifest.chunks[address.chunkIndex]?.fragments[address.fragmentIndex]?.asdId ?? null;
        if (placedOn === asdId) continue;
        // A copy the manifest does not name: delete it only while the named copy is on a reachable
        // ASD, so that a copy that might still be the only one is kept until repair has run.
        if (placedOn !== null && context.asds.get(placedOn)?.up === true && !this.isLost(context, placedOn)) leftovers.push(info);
      }
      if (!(await this.deleteKeys(context, asdId, orphans.map((info) => info.key)))) return false;
      if (!(await this.deleteKeys(context, asdId, leftovers.map((info) => info.key)))) return false;
      report.orphanFragmentsDeleted += orphans.length;
      report.leftoverFragmentsDeleted += leftovers.length;
      for (const info of [...orphans, ...leftovers]) report.bytesFreed += info.sizeBytes;
      this.report(context);
      if (page.nextStartAfter === undefined) return true;
      startAfter = page.nextStartAfter;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Rebalance

  /** Fill spread of the live, claimed ASDs with known statistics. */
  private fillSpread(context: JobContext): { spread: number; fullest?: AsdView; emptiest?: AsdView } {
    const views = [...context.asds.values()].filter((view) => view.placeable && view.capacityBytes !== undefined && view.capacityBytes > 0);
    if (views.length < 2) return { spread: 0 };
    views.sort((left, right) => fillOf(left) - fillOf(right));
    const emptiest = views[0]!;
    const fullest = views[views.length - 1]!;
    return { spread: fillOf(fullest) - fillOf(emptiest), fullest, emptiest };
  }

  /**
   * While the fullest and emptiest live ASDs differ in fill by more than rebalanceFillSpreadMax,
   * moves fragments from the fullest to emptier ASDs (copy, verify, updateFragments, delete the
   * old copy), never putting two fragments of a chunk on one ASD or more than x on one node id.
   */
  async rebalance(options: JobOptions = {}): Promise<RebalanceReport> {
    const context = await this.jobContext("rebalance", options);
    const report: RebalanceReport = {
      fillSpreadBefore: this.fillSpread(context).spread, fillSpreadAfter: 0, fragmentsMoved: 0, bytesMoved: 0,
      budgetExhausted: false, corruptFragmentsSkipped: 0, asdErrors: 0,
    };
    // Sources whose every fragment was considered; they are not chosen again this run.
    const exhausted = new Set<string>();
    const cursors = new Map<string, string>();
    for (;;) {
      const { spread } = this.fillSpread(context);
      if (spread <= this.settings.rebalanceFillSpreadMax) break;
      if (report.bytesMoved >= this.settings.rebalanceBytesPerRunMax) {
        report.budgetExhausted = true;
        break;
      }
      const sources = [...context.asds.values()]
        .filter((view) => view.placeable && view.capacityBytes !== undefined && !exhausted.has(view.record.asdId))
        .sort((left, right) => fillOf(right) - fillOf(left));
      const source = sources[0];
      if (source === undefined) break;
      const afterObjectId = cursors.get(source.record.asdId);
      const page = this.metadata.manifestsOnAsd(source.record.asdId, { limit: this.settings.scanPageManifestsMax, ...(afterObjectId === undefined ? {} : { afterObjectId }) });
      if (page.length === 0) {
        exhausted.add(source.record.asdId);
        continue;
      }
      let keepGoing = true;
      for (const manifest of page) {
        keepGoing = await this.rebalanceObject(context, manifest, source, exhausted, report);
        context.progress.itemsDone++;
        this.report(context);
        if (!keepGoing) break;
        cursors.set(source.record.asdId, manifest.objectId);
      }
      // A whole page without being told to stop: the cursor moved past it. Told to stop: the
      // object in hand is looked at again (its moved fragments no longer name this source).
      if (keepGoing && page.length < this.settings.scanPageManifestsMax) exhausted.add(source.record.asdId);
    }
    report.fillSpreadAfter = this.fillSpread(context).spread;
    report.asdErrors = context.asdErrors;
    return report;
  }

  /** Moves fragments of one object off `source`; resolves false once `source` should stop giving. */
  private async rebalanceObject(
    context: JobContext, manifest: ObjectManifest, source: AsdView, exhausted: ReadonlySet<string>, report: RebalanceReport,
  ): Promise<boolean> {
    const sourceId = source.record.asdId;
    for (const [chunkIndex, chunk] of manifest.chunks.entries()) {
      for (const [fragmentIndex, fragment] of chunk.fragments.entries()) {
        if (fragment.asdId !== sourceId) continue;
        if (!this.shouldGive(context, source, exhausted, report)) return false;
        const targetId = this.rebalanceTarget(context, manifest, chunkIndex, fragmentIndex, source);
        if (targetId === undefined) continue;
        const moved = await this.moveFragment(context, manifest, chunkIndex, fragmentIndex, fragment, targetId, report);
        if (moved === "object changed") return true;
        // The manifest object is our copy; keep it in step so later chunks see the move.
        if (moved === "moved") chunk.fragments[fragmentIndex] = { ...fragment, asdId: targetId };
      }
    }
    return true;
  }

  /**
   * Whether `source` should give another fragment: the budget allows it, the spread is still too
   * wide, and `source` is (as full as) the fullest ASD that still has fragments to give.
   */
  private shouldGive(context: JobContext, source: AsdView, exhausted: ReadonlySet<string>, report: RebalanceReport): boolean {
    if (!source.up || report.bytesMoved >= this.settings.rebalanceBytesPerRunMax) return false;
    const { spread } = this.fillSpread(context);
    if (spread <= this.settings.rebalanceFillSpreadMax) return false;
    for (const view of context.asds.values()) {
      if (view.placeable && view.capacityBytes !== undefined && !exhausted.has(view.record.asdId) && fillOf(view) > fillOf(source)) return false;
    }
    return true;
  }

  /** The emptiest ASD that may take this fragment (distinct ASD, x per node) and ends up less full than `source`. */
  private rebalanceTarget(context: JobContext, manifest: ObjectManifest, chunkIndex: number, fragmentIndex: number, source: AsdView): string | undefined {
    const fragment = manifest.chunks[chunkIndex]!.fragments[fragmentIndex]!;
    const current = manifest.chunks[chunkIndex]!.fragments.map((entry, index) => (index === fragmentIndex ? null : entry.asdId));
    const sizeBytes = fragment.storedSizeBytes;
    const sourceFillAfter = source.capacityBytes === undefined ? 0 : ((source.usedBytes ?? 0) - sizeBytes) / source.capacityBytes;
    const targets = this.placementCandidates(context, sizeBytes, new Set([source.record.asdId]))
      .map((candidate) => context.asds.get(candidate.asdId)!)
      .filter((view) => view.capacityBytes !== undefined && view.capacityBytes > 0)
      .filter((view) => ((view.usedBytes ?? 0) + sizeBytes) / view.capacityBytes! < sourceFillAfter)
      .sort((left, right) => fillOf(left) - fillOf(right));
    for (const view of targets) {
      // One candidate at a time: placeMissingFragments decides whether it respects the chunk's
      // distinct-ASD and x-per-node rules; the order (emptiest first) is ours.
      const placed = placeMissingFragments(manifest.policy, current, [{ asdId: view.record.asdId, nodeId: view.record.nodeId }], this.nodeOf(context));
      if (placed[fragmentIndex] === view.record.asdId) return view.record.asdId;
    }
    return undefined;
  }

  private async moveFragment(
    context: JobContext, manifest: ObjectManifest, chunkIndex: number, fragmentIndex: number, fragment: FragmentManifest, targetId: string, report: RebalanceReport,
  ): Promise<"moved" | "skipped" | "object changed"> {
    const sourceId = fragment.asdId!;
    const key = fragmentKey({ objectId: manifest.objectId, chunkIndex, fragmentIndex });
    const connection = this.pool.connection(sourceId);
    if (connection === undefined) return "skipped";
    await this.throttle.take(fragment.storedSizeBytes);
    let stored: Buffer | undefined;
    try {
      stored = await connection.get(key);
    } catch (error) {
      this.failed(context, sourceId, error, "reading a fragment to move");
      return "skipped";
    }
    if (stored === undefined) return "skipped"; // repair's business
    context.bytesRead += stored.length;
    if (stored.length !== fragment.storedSizeBytes || crc32c(stored) !== fragment.crc32c >>> 0) {
      // Never copy bad bytes: leave it to verify, which rebuilds it from the other fragments.
      report.corruptFragmentsSkipped++;
      return "skipped";
    }
    if (!(await this.writeFragment(context, targetId, key, stored))) return "skipped";
    if (!this.metadata.updateFragments(manifest.objectId, [{ chunkIndex, fragmentIndex, fragment: { ...fragment, asdId: targetId } }])) {
      await this.deleteKeys(context, targetId, [key]);
      return "object changed";
    }
    // Only now that the metadata names the new copy does the old one go.
    if (await this.deleteKeys(context, sourceId, [key])) {
      const source = context.asds.get(sourceId);
      if (source?.usedBytes !== undefined) source.usedBytes = Math.max(0, source.usedBytes - stored.length);
      if (source?.freeBytes !== undefined) source.freeBytes += stored.length;
    }
    report.fragmentsMoved++;
    report.bytesMoved += stored.length;
    return "moved";
  }
}

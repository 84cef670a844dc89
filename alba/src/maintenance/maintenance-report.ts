// What maintenance reports (per job and per run) and what it needs from the ASD pool.
import type { AsdApi } from "../asd/asd-api.ts";
import type { AsdHealth } from "../client/asd-pool.ts";
/** What maintenance needs from the ASD pool (alba/src/client/asd-pool.ts's AsdPool satisfies it). */
export interface MaintenanceAsdPool {
  /** Re-reads the claimed ASDs and probes each now. */
  probeAll(): Promise<void>;
  /** Every claimed ASD with its health and last statistics. */
  statuses(): AsdHealth[];
  connection(asdId: string): AsdApi | undefined;
  reportError(asdId: string, error: unknown): void;
}

export type MaintenanceJob = "detectDeadAsds" | "repair" | "verify" | "collectOrphans" | "rebalance";

export interface MaintenanceProgress {
  job: MaintenanceJob;
  /** Objects (repair, verify, rebalance) or keys (collectOrphans) looked at so far in this job. */
  itemsDone: number;
  /** Fragments written (rebuilt, rewritten or moved) so far in this job. */
  fragmentsWritten: number;
  /** Bytes read plus written so far in this job. */
  bytesTransferred: number;
}

export type ProgressCallback = (progress: MaintenanceProgress) => void;

export interface JobOptions {
  onProgress?: ProgressCallback;
}

export interface ChunkReference {
  namespace: string;
  key: string;
  objectId: string;
  chunkIndex: number;
}

export interface FragmentReference extends ChunkReference {
  fragmentIndex: number;
  asdId: string | null;
}

export interface DeadAsdReport {
  /** Down longer than deadAsdAfterMs, or decommissioned. */
  dead: Array<{ asdId: string; nodeId: string; reason: "down" | "decommissioned"; downSince?: string }>;
  /** Down, but not for long enough to be dead: their fragments are waited for, not rebuilt. */
  down: Array<{ asdId: string; nodeId: string; downSince?: string }>;
}

export interface RepairReport {
  objectsScanned: number;
  chunksScanned: number;
  /** Chunks that had at least one fragment missing, lost or corrupt. */
  chunksDegraded: number;
  /** Degraded chunks whose every bad fragment was rewritten. */
  chunksRepaired: number;
  fragmentsRebuilt: number;
  /** Fragments that could not be rebuilt onto any ASD (no ASD left that respects x, all full or down). */
  fragmentsUnplaced: number;
  /** Chunks with fewer than k good fragments: count, and the first reportListedItemsMax of them. */
  unrecoverableChunkCount: number;
  unrecoverableChunks: ChunkReference[];
  /** Objects overwritten or deleted while they were being repaired (what was written got deleted). */
  objectsChangedMeanwhile: number;
  /** ASD requests that failed (the ASD is then skipped for the rest of the job). */
  asdErrors: number;
  bytesRead: number;
  bytesWritten: number;
}

export interface VerifyReport extends RepairReport {
  fragmentsChecked: number;
  /** Fragments that failed their checksum (or size or decompression): count and the first ones. */
  corruptFragmentCount: number;
  corruptFragments: FragmentReference[];
  /** Fragments not stored where the manifest says (null, key absent, or on a dead ASD). */
  missingFragmentCount: number;
}

export interface OrphanReport {
  asdsScanned: number;
  keysScanned: number;
  /** Fragments of object ids with no manifest (failed or abandoned uploads, deleted objects). */
  orphanFragmentsDeleted: number;
  /** Fragments of a current object on an ASD its manifest does not place them on (left by a move). */
  leftoverFragmentsDeleted: number;
  bytesFreed: number;
  /** Pending uploads older than the grace period, removed after their fragments were deleted. */
  pendingUploadsRemoved: number;
  asdErrors: number;
}

export interface RebalanceReport {
  /** Fill of the fullest minus fill of the emptiest live ASD, before and after. */
  fillSpreadBefore: number;
  fillSpreadAfter: number;
  fragmentsMoved: number;
  bytesMoved: number;
  /** The run stopped because rebalanceBytesPerRunMax was spent. */
  budgetExhausted: boolean;
  /** Fragments left in place because their copy failed its checksum (verify repairs them). */
  corruptFragmentsSkipped: number;
  asdErrors: number;
}

export interface MaintenanceRunOptions extends JobOptions {
  repair?: boolean;
  verify?: boolean;
  collectOrphans?: boolean;
  rebalance?: boolean;
}

export interface MaintenanceRunReport {
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  deadAsds: DeadAsdReport;
  repair?: RepairReport;
  verify?: VerifyReport;
  collectOrphans?: OrphanReport;
  rebalance?: RebalanceReport;
}

// One logical unit: a vDisk (BlockDevice) with the per-LU state SPC-5 and SBC-4 keep — mode
// parameters, the RESERVE(6) holder, persistent reservations, unit attention queues — and the range
// lock that makes COMPARE AND WRITE atomic against other writes. Also the limits we report in the
// Block Limits VPD page, each a named setting with its unit.
import type { BlockDevice } from "../../../engine/block-device.ts";
import { PersistentReservations } from "./persistent-reservations.ts";
import type { ScsiCommand, ScsiLogicalUnitConfig } from "./scsi-types.ts";
import { UnitAttentions } from "./unit-attention.ts";

/** We present 512-byte logical blocks (what every initiator accepts) over 4 KiB clusters. */
export const LOGICAL_BLOCK_SIZE_BYTES = 512;
/**
 * READ CAPACITY(16) LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-4 §5.21.2): 0, one logical
 * block per physical block, as tgt and LIO's file backstores report. Writes of single 512-byte
 * blocks are exact on our engine (it merges them into its 4 KiB clusters), and a physical block
 * larger than the logical one breaks libiscsi's GetLBAStatus.UnmapSingle, which asks about LBA
 * i + 1 and expects the descriptor to start at i + blocks-per-physical-block. The 4 KiB cluster
 * still reaches initiators as a hint: the Block Limits VPD page's OPTIMAL TRANSFER LENGTH
 * GRANULARITY and OPTIMAL UNMAP GRANULARITY (Linux's minimum_io_size and discard_granularity).
 */
export const LOGICAL_BLOCKS_PER_PHYSICAL_BLOCK_EXPONENT = 0;
/** Logical blocks per engine cluster (4 KiB): the granularity hints of the Block Limits VPD page. */
export const LOGICAL_BLOCKS_PER_CLUSTER = 8;

/** Limits reported in the Block Limits VPD page (SBC-4 §6.6.4) and enforced by the handlers. */
export interface ScsiBlockLimits {
  /** Longest READ/WRITE/VERIFY; also bounds the memory one command may hold. */
  maxTransferLengthBlocks: number;
  optimalTransferLengthBlocks: number;
  maxUnmapLbaCountBlocks: number;
  maxUnmapBlockDescriptorCount: number;
  maxWriteSameLengthBlocks: number;
  maxCompareAndWriteLengthBlocks: number;
  /** Bytes written per device call when WRITE SAME expands a pattern. */
  writeSameChunkBytes: number;
  /** Most (LBA range) extents GET LBA STATUS examines in one command. */
  getLbaStatusWindowBlocks: number;
  /** Most blocks one PRE-FETCH reads ahead (into the read cache). */
  prefetchMaxBlocks: number;
}

export const DEFAULT_SCSI_BLOCK_LIMITS: ScsiBlockLimits = {
  maxTransferLengthBlocks: 65_536, // 32 MiB, as NBD's maximum block size
  optimalTransferLengthBlocks: 2_048, // 1 MiB
  maxUnmapLbaCountBlocks: 1_048_576, // 512 MiB
  maxUnmapBlockDescriptorCount: 256,
  maxWriteSameLengthBlocks: 1_048_576, // 512 MiB
  maxCompareAndWriteLengthBlocks: 255, // the largest a one-byte NUMBER OF LOGICAL BLOCKS can ask
  writeSameChunkBytes: 1024 * 1024,
  getLbaStatusWindowBlocks: 131_072, // 64 MiB
  prefetchMaxBlocks: 131_072, // 64 MiB
};

/** Current mode parameters (SPC-5 §7.5, SBC-4 §6.5) we let initiators change. */
export interface ModeParameters {
  /** Caching page WCE: writes are acknowledged from the write buffer; 0 makes every write FUA. */
  writeCacheEnabled: boolean;
  /** Control page SWP: software write protect. */
  softwareWriteProtect: boolean;
}

export const DEFAULT_MODE_PARAMETERS: ModeParameters = { writeCacheEnabled: true, softwareWriteProtect: false };

interface LockedRange {
  startBlock: number;
  endBlock: number;
  exclusive: boolean;
}

interface RangeWaiter extends LockedRange {
  grant: () => void;
}

/**
 * Block range lock: writes take shared ranges, COMPARE AND WRITE an exclusive one, so no write to
 * the range can slip between its read and its write (SBC-4 §5.3 "atomic"). Waiters are granted in
 * arrival order among overlapping requests, so COMPARE AND WRITE is not starved.
 */
export class RangeLock {
  private readonly held = new Set<LockedRange>();
  private readonly waiting: RangeWaiter[] = [];
  /** Exclusive ranges held or waiting: while 0, a shared request conflicts with nothing. */
  private exclusiveCount = 0;

  private static conflicts(a: LockedRange, b: LockedRange): boolean {
    return (a.exclusive || b.exclusive) && a.startBlock < b.endBlock && b.startBlock < a.endBlock;
  }

  private grantable(request: LockedRange, waitersBefore: readonly LockedRange[]): boolean {
    if (!request.exclusive && this.exclusiveCount === 0) return true;
    for (const range of this.held) if (RangeLock.conflicts(range, request)) return false;
    return !waitersBefore.some((range) => RangeLock.conflicts(range, request));
  }

  /**
   * The release function when the range can be held at once (always, for a shared range while no
   * COMPARE AND WRITE holds or waits), else undefined: then use acquire().
   */
  tryAcquire(startBlock: number, blocks: number, exclusive: boolean): (() => void) | undefined {
    const request: LockedRange = { startBlock, endBlock: startBlock + Math.max(blocks, 1), exclusive };
    if (!this.grantable(request, this.waiting)) return undefined;
    this.hold(request);
    return () => this.release(request);
  }

  /** Resolves with a release function once the range is held. */
  acquire(startBlock: number, blocks: number, exclusive: boolean): Promise<() => void> {
    const now = this.tryAcquire(startBlock, blocks, exclusive);
    if (now !== undefined) return Promise.resolve(now);
    const request: LockedRange = { startBlock, endBlock: startBlock + Math.max(blocks, 1), exclusive };
    if (exclusive) this.exclusiveCount++;
    return new Promise((resolve) => {
      this.waiting.push({ ...request, grant: () => {
        if (exclusive) this.exclusiveCount--; // hold() counts it again
        this.hold(request);
        resolve(() => this.release(request));
      } });
    });
  }

  private hold(request: LockedRange): void {
    this.held.add(request);
    if (request.exclusive) this.exclusiveCount++;
  }

  private release(request: LockedRange): void {
    if (!this.held.delete(request)) return;
    if (request.exclusive) this.exclusiveCount--;
    this.wake();
  }

  private wake(): void {
    for (let index = 0; index < this.waiting.length;) {
      const waiter = this.waiting[index];
      if (this.grantable(waiter, this.waiting.slice(0, index))) {
        this.waiting.splice(index, 1);
        waiter.grant();
      } else {
        index++;
      }
    }
  }

  get heldCount(): number {
    return this.held.size;
  }
}

export class LogicalUnit {
  readonly lun: number;
  readonly device: BlockDevice;
  readonly config: ScsiLogicalUnitConfig;
  readonly limits: ScsiBlockLimits;
  readonly mode: ModeParameters = { ...DEFAULT_MODE_PARAMETERS };
  readonly unitAttentions = new UnitAttentions();
  readonly reservations: PersistentReservations;
  readonly rangeLock = new RangeLock();
  /** The I_T nexus holding a RESERVE(6)/RESERVE(10) reservation (SPC-2 §5.5.1), if any. */
  legacyReservationHolder: string | undefined;

  constructor(config: ScsiLogicalUnitConfig, limits: ScsiBlockLimits = DEFAULT_SCSI_BLOCK_LIMITS) {
    this.lun = config.lun;
    this.device = config.device;
    this.config = config;
    this.limits = limits;
    this.reservations = new PersistentReservations(this.unitAttentions, config.reservationStatePath);
    this.reportedCapacityBlocks = this.capacityBlocks;
  }

  private reportedCapacityBlocks: number;

  /**
   * Called before every command: when the device grew (or changed size) since the last look, every
   * I_T nexus gets CAPACITY DATA HAS CHANGED (SPC-5 §5.14; SBC-4 §4.6), so initiators read the
   * capacity again.
   */
  noticeCapacityChange(): void {
    const blocks = this.capacityBlocks;
    if (blocks === this.reportedCapacityBlocks) return;
    this.reportedCapacityBlocks = blocks;
    this.unitAttentions.establishForAll("UaCapacityDataHasChanged");
  }

  /** Capacity in logical blocks (the device size rounded down to whole blocks). */
  get capacityBlocks(): number {
    return Math.floor(this.device.sizeBytes / LOGICAL_BLOCK_SIZE_BYTES);
  }

  /** Write protected: a read-only vDisk (snapshot, template) or SWP set in the control page. */
  get writeProtected(): boolean {
    return this.device.readOnly || this.mode.softwareWriteProtect;
  }

  /** Loads persisted reservations (APTPL). */
  async open(): Promise<void> {
    await this.reservations.load();
  }
}

/** What the target offers a handler besides its logical unit. */
export interface TargetView {
  luns(): number[];
}

export interface CommandContext {
  command: ScsiCommand;
  lu: LogicalUnit;
  nexusKey: string;
  target: TargetView;
}

/** A command handler returns Data-In (already within the allocation length) or nothing. */
export type CommandHandler = (context: CommandContext) => Promise<Buffer | undefined>;

/** Cuts parameter data to the ALLOCATION LENGTH (SPC-5 §4.2.5.6: truncation is not an error). */
export function fitAllocation(data: Buffer, allocationLengthBytes: number): Buffer {
  return data.length <= allocationLengthBytes ? data : data.subarray(0, allocationLengthBytes);
}

// Unit attention conditions (SAM-5 §5.14, SPC-5 §5.14): one bounded queue per I_T nexus per
// logical unit. The first command a new nexus sends to a logical unit finds POWER ON, RESET; resets,
// LUN inventory changes, mode page changes and persistent reservation events queue more. Which
// commands report, ignore or clear a pending condition is decided here (SPC-5 §5.14 and §6.39).
import { OPCODE } from "./cdb.ts";
import type { SenseReason } from "./sense-table.ts";

/** The most unit attentions kept per nexus; older ones are dropped first (they describe older events). */
export const UNIT_ATTENTION_QUEUE_DEPTH_MAX = 16;

const nexusKeys = new WeakMap<object, string>();

/** The key of an I_T nexus: reservations and unit attentions are per nexus (SAM-5 §4.7). */
export function nexusKeyOf(nexus: { initiatorPort: string; targetPort: string }): string {
  // Every command asks: remember the key per nexus object (a session passes the same one each time).
  let key = nexusKeys.get(nexus);
  if (key === undefined) {
    key = `${nexus.initiatorPort}|${nexus.targetPort}`;
    nexusKeys.set(nexus, key);
  }
  return key;
}

/** How a command meets a pending unit attention (SPC-5 §5.14 / SAM-5 §5.14). */
export type UnitAttentionPolicy =
  /** INQUIRY: executes normally; the condition stays pending. */
  | "ignore"
  /** REPORT LUNS: executes normally and clears REPORTED LUNS DATA HAS CHANGED only. */
  | "report-luns"
  /** REQUEST SENSE: returns the condition as its sense data and clears it. */
  | "request-sense"
  /** Any other command: CHECK CONDITION with the condition, which is then cleared. */
  | "report";

export function unitAttentionPolicy(opcode: number): UnitAttentionPolicy {
  switch (opcode) {
    case OPCODE.INQUIRY: return "ignore";
    case OPCODE.REPORT_LUNS: return "report-luns";
    case OPCODE.REQUEST_SENSE: return "request-sense";
    default: return "report";
  }
}

/** The unit attention queues of one logical unit. */
export class UnitAttentions {
  private readonly queues = new Map<string, SenseReason[]>();

  constructor(private readonly depthMax = UNIT_ATTENTION_QUEUE_DEPTH_MAX) {}

  /** Nexuses that have sent this logical unit a command (and not been lost since). */
  knownNexuses(): string[] {
    return [...this.queues.keys()];
  }

  /** Called for every command: a nexus seen for the first time starts with POWER ON, RESET. */
  noteNexus(nexusKey: string): void {
    if (!this.queues.has(nexusKey)) this.queues.set(nexusKey, ["UaPowerOnReset"]);
  }

  /** Queues a condition for one nexus (no duplicates; bounded). */
  establish(nexusKey: string, reason: SenseReason): void {
    const queue = this.queues.get(nexusKey);
    if (queue === undefined) return; // a nexus that never came gets POWER ON, RESET anyway
    if (queue.includes(reason)) return;
    queue.push(reason);
    if (queue.length > this.depthMax) queue.shift();
  }

  /** Queues a condition for every known nexus except one (usually the one that caused it). */
  establishForAll(reason: SenseReason, exceptNexusKey?: string): void {
    for (const key of this.queues.keys()) if (key !== exceptNexusKey) this.establish(key, reason);
  }

  /** The condition that would be reported next, without clearing it. */
  peek(nexusKey: string): SenseReason | undefined {
    return this.queues.get(nexusKey)?.[0];
  }

  /** Reports and clears the oldest pending condition. */
  take(nexusKey: string): SenseReason | undefined {
    return this.queues.get(nexusKey)?.shift();
  }

  /** Clears one kind of condition (REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED). */
  clear(nexusKey: string, reason: SenseReason): void {
    const queue = this.queues.get(nexusKey);
    if (queue === undefined) return;
    const index = queue.indexOf(reason);
    if (index >= 0) queue.splice(index, 1);
  }

  /**
   * A reset (LUN RESET, TARGET RESET): every nexus's queue, the one that asked for the reset
   * included, is replaced by the reset's condition (SAM-5 §6.3.3: a logical unit reset establishes
   * a unit attention for every I_T nexus and clears older conditions).
   */
  reset(reason: SenseReason): void {
    for (const key of this.queues.keys()) this.queues.set(key, [reason]);
  }

  /** The nexus is gone (logout, connection loss): a new one with the same name starts fresh. */
  forget(nexusKey: string): void {
    this.queues.delete(nexusKey);
  }

  /**
   * Decides what a command does with the pending conditions of its nexus. Returns the condition
   * to report as CHECK CONDITION, or undefined when the command runs.
   */
  check(nexusKey: string, opcode: number): SenseReason | undefined {
    switch (unitAttentionPolicy(opcode)) {
      case "ignore":
      case "request-sense": // REQUEST SENSE takes the condition itself (spc.ts)
        return undefined;
      case "report-luns":
        this.clear(nexusKey, "UaReportedLunsDataHasChanged");
        return undefined;
      case "report":
        return this.take(nexusKey);
    }
  }
}

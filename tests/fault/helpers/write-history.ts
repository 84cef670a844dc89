// The write history a tagged-sector writer child prints (tests/fault/helpers/crash-writer.ts and
// snapshot-writer.ts), and the crash prefix check over it: after a SIGKILL the device must equal the
// result of a downward-closed set of the issued writes that holds everything acknowledged before the
// last durable point (a completed flush, an acknowledged FUA write, or one the caller adds).
// Protocol lines: "w <seq> <sector> <count> <fua>", "a <seq>", "F <id>", "f <id>", "e <message>";
// other lines go to the caller's callback.
import assert from "node:assert/strict";
import { CLUSTER_SIZE_BYTES } from "../../../volumedriver/src/engine/vpool-types.ts";
import { SECTOR_BYTES } from "../../helpers/sector-pattern.ts";

const SECTORS_PER_CLUSTER = CLUSTER_SIZE_BYTES / SECTOR_BYTES;

/** One write the child reported, with the stdout line numbers of its issue and acknowledgement. */
export interface IssuedWrite {
  seq: number;
  firstSector: number;
  countSectors: number;
  fua: boolean;
  issueLine: number;
  ackLine: number; // Infinity if never acknowledged
}

/** What the child reported in one round, with the stdout line number of each event. */
export interface RoundLog {
  writes: Map<number, IssuedWrite>;
  /**
   * Line of the "F" of the last flush whose "f" was seen (-1: none). A caller that knows of another
   * durable point (an acknowledged snapshot) raises it to the line where that point began.
   */
  lastCompletedFlushStartLine: number;
  ready: boolean;
  errors: string[];
  lineCount: number;
}

/** Parses the child's stdout; lines of other kinds go to onOtherLine with their fields and line number. */
export function parseRoundLog(output: string, onOtherLine?: (fields: string[], lineNumber: number) => void): RoundLog {
  const lines = output.split("\n");
  // A line cut by the kill has no newline after it: drop it.
  lines.pop();
  const log: RoundLog = { writes: new Map(), lastCompletedFlushStartLine: -1, ready: false, errors: [], lineCount: lines.length };
  const flushStartLines = new Map<number, number>();
  lines.forEach((line, lineNumber) => {
    const fields = line.split(" ");
    switch (fields[0]) {
      case "ready":
        log.ready = true;
        break;
      case "w": {
        const seq = Number(fields[1]);
        log.writes.set(seq, {
          seq,
          firstSector: Number(fields[2]),
          countSectors: Number(fields[3]),
          fua: fields[4] === "1",
          issueLine: lineNumber,
          ackLine: Infinity,
        });
        break;
      }
      case "a": {
        const write = log.writes.get(Number(fields[1]));
        assert.ok(write, `ack of a write never issued: ${line}`);
        write.ackLine = lineNumber;
        break;
      }
      case "F":
        flushStartLines.set(Number(fields[1]), lineNumber);
        break;
      case "f": {
        const startLine = flushStartLines.get(Number(fields[1]));
        assert.ok(startLine !== undefined, `completion of a flush never issued: ${line}`);
        log.lastCompletedFlushStartLine = Math.max(log.lastCompletedFlushStartLine, startLine);
        break;
      }
      case "e":
        log.errors.push(line);
        break;
      default:
        // Anything else (a caller's own event, a stray log line) goes to the caller; the protocol lines are unambiguous.
        onOtherLine?.(fields, lineNumber);
        break;
    }
  });
  return log;
}

/** One unit that lands all-or-nothing: a whole write (strict) or one cluster's piece of it (per-cluster atomicity). */
interface Unit {
  write: IssuedWrite;
  firstSector: number;
  endSector: number;
}

function unitsOf(write: IssuedWrite, granularity: "write" | "cluster"): Unit[] {
  const endSector = write.firstSector + write.countSectors;
  if (granularity === "write") return [{ write, firstSector: write.firstSector, endSector }];
  const units: Unit[] = [];
  for (let first = write.firstSector; first < endSector; ) {
    const end = Math.min(endSector, (Math.floor(first / SECTORS_PER_CLUSTER) + 1) * SECTORS_PER_CLUSTER);
    units.push({ write, firstSector: first, endSector: end });
    first = end;
  }
  return units;
}

/**
 * Checks the prefix property for one round. `tags[s]` is the seq whose data sector s holds (0: zeros),
 * `baseline[s]` the same before the round. Returns the violations (empty: the device is a valid prefix).
 *
 * The minimal set M of units that must have landed is: every unit acknowledged before P, plus every
 * unit seen on the device, plus every acknowledged FUA write, where P is the latest of (the start of
 * the last completed flush, the issue of any write seen on the device, the issue of any acknowledged
 * FUA write). M is downward closed under "acknowledged before issued". The device is a valid prefix
 * iff applying M in issue order gives it, i.e. iff every sector of every unit in M holds that unit's
 * write or a later one; the check is monotone, so checking the minimal M is exact.
 */
export function checkPrefix(log: RoundLog, tags: Uint32Array, baseline: Uint32Array, seqBase: number, granularity: "write" | "cluster"): string[] {
  const violations: string[] = [];
  const deviceSectors = tags.length;
  const seenSeqs = new Set<number>();
  for (let sector = 0; sector < deviceSectors; sector++) {
    const tag = tags[sector]!;
    if (tag >= seqBase) {
      const write = log.writes.get(tag);
      if (write === undefined) {
        violations.push(`sector ${sector} holds seq ${tag}, which this round never issued`);
        continue;
      }
      if (sector < write.firstSector || sector >= write.firstSector + write.countSectors) {
        violations.push(`sector ${sector} holds seq ${tag}, which wrote sectors ${write.firstSector}+${write.countSectors} (misplaced data)`);
      }
      seenSeqs.add(tag);
    } else if (tag !== baseline[sector]) {
      violations.push(`sector ${sector} holds seq ${tag} but held seq ${baseline[sector]} before this round (stale or lost data)`);
    }
  }
  let horizonLine = log.lastCompletedFlushStartLine;
  for (const seq of seenSeqs) horizonLine = Math.max(horizonLine, log.writes.get(seq)!.issueLine);
  for (const write of log.writes.values()) if (write.fua && write.ackLine !== Infinity) horizonLine = Math.max(horizonLine, write.issueLine);

  for (const write of log.writes.values()) {
    const mustHaveLanded = write.ackLine < horizonLine || (write.fua && write.ackLine !== Infinity);
    for (const unit of unitsOf(write, granularity)) {
      let landed = mustHaveLanded;
      if (!landed) {
        // A unit seen anywhere on the device has landed (whole unit).
        for (let sector = unit.firstSector; sector < unit.endSector && !landed; sector++) landed = tags[sector] === write.seq;
      }
      if (!landed) continue;
      for (let sector = unit.firstSector; sector < unit.endSector; sector++) {
        const tag = tags[sector]!;
        if (tag < write.seq) {
          const why = write.ackLine < log.lastCompletedFlushStartLine ? "acknowledged before the last durable point (a completed flush or snapshot)" : write.fua && write.ackLine !== Infinity ? "an acknowledged FUA write" : mustHaveLanded ? "acknowledged before a write that landed was issued" : "partly landed";
          const acknowledged = write.ackLine === Infinity ? "never acknowledged" : `acknowledged at line ${write.ackLine}`;
          violations.push(`seq ${write.seq} (sectors ${write.firstSector}+${write.countSectors}, issued at line ${write.issueLine}, ${acknowledged}, ${why}) is missing at sector ${sector}, which holds seq ${tag}`);
          break;
        }
      }
    }
  }
  return violations;
}

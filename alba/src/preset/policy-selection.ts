// Which policy of a preset a write uses, and on which ASDs its fragments go. A policy (k, m, c, x)
// is satisfiable when at least c fragments can go to distinct ASDs with at most x per node id;
// the first satisfiable policy wins. Fragments are dealt round-robin over node ids (so a node's
// loss costs as few fragments as possible) and, within a node, to the emptiest ASDs first. A
// rotation (e.g. a counter or a hash of the object id) varies which equally good ASDs are chosen,
// so equal-sized backends fill evenly; with the same input and rotation the result is the same.
import assert from "node:assert/strict";
import type { Policy, Preset } from "./preset.ts";

export interface PlacementCandidate {
  asdId: string;
  nodeId: string;
  /** Free space; emptier ASDs are preferred. Unknown counts as less free than any known value. */
  freeBytes?: number;
}

export interface PlacementOptions {
  /** Rotates the order of nodes and of equally free ASDs; any integer. Default 0. */
  rotation?: number;
}

function rotated<T>(items: readonly T[], rotation: number): T[] {
  if (items.length === 0) return [];
  const shift = ((rotation % items.length) + items.length) % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** Candidates grouped by node id (nodes and ASDs in rotated input order), each node's ASDs emptiest first. */
function candidatesByNode(candidates: readonly PlacementCandidate[], rotation: number): PlacementCandidate[][] {
  const seen = new Set<string>();
  const byNode = new Map<string, PlacementCandidate[]>();
  for (const candidate of rotated(candidates, rotation)) {
    assert.ok(!seen.has(candidate.asdId), `ASD ${candidate.asdId} is a candidate twice`);
    seen.add(candidate.asdId);
    const list = byNode.get(candidate.nodeId);
    if (list === undefined) byNode.set(candidate.nodeId, [candidate]);
    else list.push(candidate);
  }
  const free = (candidate: PlacementCandidate): number => candidate.freeBytes ?? -1;
  // Array.prototype.sort is stable, so equally free ASDs (and nodes) keep their rotated order.
  // Nodes whose emptiest ASD has the most room come first, so a policy with fewer fragments than
  // nodes skips the fullest nodes.
  const nodes = [...byNode.values()].map((list) => list.sort((left, right) => free(right) - free(left)));
  return nodes.sort((left, right) => free(right[0]!) - free(left[0]!));
}

function assertPolicy(policy: Policy): void {
  assert.ok(policy.k >= 1 && policy.m >= 0 && policy.c >= policy.k && policy.c <= policy.k + policy.m && policy.x >= 1, `bad policy ${JSON.stringify(policy)}`);
}

/**
 * The first policy of `preset` whose c can be met on `candidates` (live ASDs with room), and the
 * ASD of each of its k + m fragments: placement[i] is an ASD id, or null for a fragment that cannot
 * be placed (only parity, and only while at least c are placed). undefined when no policy fits.
 */
export function selectPolicy(
  preset: Preset, candidates: readonly PlacementCandidate[], options: PlacementOptions = {},
): { policy: Policy; placement: (string | null)[] } | undefined {
  const nodes = candidatesByNode(candidates, options.rotation ?? 0);
  for (const policy of preset.policies) {
    assertPolicy(policy);
    const fragmentCount = policy.k + policy.m;
    const placeable = nodes.reduce((sum, list) => sum + Math.min(policy.x, list.length), 0);
    if (placeable < policy.c) continue;
    // Deal fragments round-robin over the nodes: one per node per round, so node counts differ by
    // at most one until nodes run out of ASDs or reach x.
    const placement: (string | null)[] = [];
    for (let round = 0; round < policy.x && placement.length < fragmentCount; round++) {
      for (const list of nodes) {
        if (placement.length === fragmentCount) break;
        const candidate = list[round];
        if (candidate !== undefined) placement.push(candidate.asdId);
      }
    }
    assert.ok(placement.length >= policy.c);
    while (placement.length < fragmentCount) placement.push(null);
    return { policy, placement };
  }
  return undefined;
}

/**
 * New ASDs for the null slots of a chunk's placement (repair, rebalance): never an ASD that
 * already holds a fragment of this chunk, at most policy.x per node id counting the fragments
 * already placed, the least-loaded node first. Slots with no possible ASD stay null; the others
 * are returned unchanged.
 */
export function placeMissingFragments(
  policy: Policy,
  current: ReadonlyArray<string | null>,
  candidates: readonly PlacementCandidate[],
  nodeOf: (asdId: string) => string | undefined,
  options: PlacementOptions = {},
): (string | null)[] {
  assertPolicy(policy);
  assert.equal(current.length, policy.k + policy.m, `placement has ${current.length} slots, the policy ${policy.k + policy.m}`);
  const used = new Set<string>();
  const perNode = new Map<string, number>();
  for (const asdId of current) {
    if (asdId === null) continue;
    used.add(asdId);
    // An ASD whose node is unknown (no longer claimed) counts as a node of its own.
    const nodeId = nodeOf(asdId) ?? `unknown asd ${asdId}`;
    perNode.set(nodeId, (perNode.get(nodeId) ?? 0) + 1);
  }
  const nodes = candidatesByNode(candidates.filter((candidate) => !used.has(candidate.asdId)), options.rotation ?? 0);
  const result = [...current];
  for (let slot = 0; slot < result.length; slot++) {
    if (result[slot] !== null) continue;
    let best: PlacementCandidate[] | undefined;
    for (const list of nodes) {
      if (list.length === 0) continue;
      const count = perNode.get(list[0]!.nodeId) ?? 0;
      if (count >= policy.x) continue;
      if (best === undefined || count < (perNode.get(best[0]!.nodeId) ?? 0)) best = list;
    }
    if (best === undefined) break;
    const chosen = best.shift()!;
    result[slot] = chosen.asdId;
    perNode.set(chosen.nodeId, (perNode.get(chosen.nodeId) ?? 0) + 1);
  }
  return result;
}

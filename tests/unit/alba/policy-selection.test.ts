// Goal: the first satisfiable policy is chosen, fragments spread over node ids with at most x per node, and repair placement never reuses an ASD of the chunk.
import assert from "node:assert/strict";
import fc from "fast-check";
import { placeMissingFragments, selectPolicy } from "../../../alba/src/preset/policy-selection.ts";
import type { PlacementCandidate } from "../../../alba/src/preset/policy-selection.ts";
import type { Policy, Preset } from "../../../alba/src/preset/preset.ts";

function preset(policies: Policy[]): Preset {
  return { name: "p", policies, fragmentSizeBytes: 4096, compression: "none", encryption: "none", checksum: "crc32c" };
}

/** `perNode` ASDs on each of `nodes` node ids: asd-<node>-<i> on node-<node>. */
function cluster(nodes: number, perNode: number): PlacementCandidate[] {
  const candidates: PlacementCandidate[] = [];
  for (let node = 0; node < nodes; node++) for (let index = 0; index < perNode; index++) candidates.push({ asdId: `asd-${node}-${index}`, nodeId: `node-${node}` });
  return candidates;
}

function nodeCounts(placement: ReadonlyArray<string | null>, nodeOf: (asdId: string) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const asdId of placement) if (asdId !== null) counts.set(nodeOf(asdId), (counts.get(nodeOf(asdId)) ?? 0) + 1);
  return counts;
}

const nodeOfId = (asdId: string): string => `node-${asdId.split("-")[1]}`;
const ISSUE_PRESET = preset([{ k: 4, m: 2, c: 5, x: 2 }, { k: 2, m: 1, c: 2, x: 2 }]);

describe("alba policy selection", function () {
  it("issue_4_2_5_2_on_6_asds_3_nodes_places_2_per_node", function () {
    // Goal: (4, 2, 5, 2) on 6 ASDs over 3 node ids uses all 6 ASDs, 2 per node, data fragments on 3 different nodes first.
    const selection = selectPolicy(ISSUE_PRESET, cluster(3, 2))!;
    assert.deepEqual(selection.policy, { k: 4, m: 2, c: 5, x: 2 });
    assert.equal(new Set(selection.placement).size, 6);
    assert.ok(selection.placement.every((asdId) => asdId !== null));
    assert.deepEqual([...nodeCounts(selection.placement, nodeOfId).values()], [2, 2, 2]);
    assert.equal(new Set(selection.placement.slice(0, 3).map((asdId) => nodeOfId(asdId!))).size, 3);
  });

  it("two_asds_gone_falls_back_or_fails", function () {
    // Goal: with 2 ASDs of one node gone, (4, 2, 5, 2) can place only 4 (x = 2 on 2 nodes) so the next policy is used; with no fallback, undefined.
    const candidates = cluster(3, 2).filter((candidate) => candidate.nodeId !== "node-2");
    const selection = selectPolicy(ISSUE_PRESET, candidates)!;
    assert.deepEqual(selection.policy, { k: 2, m: 1, c: 2, x: 2 });
    assert.equal(selection.placement.length, 3);
    assert.equal(selection.placement.filter((asdId) => asdId !== null).length, 3);
    assert.equal(selectPolicy(preset([{ k: 4, m: 2, c: 5, x: 2 }]), candidates), undefined);
    assert.equal(selectPolicy(ISSUE_PRESET, []), undefined);
  });

  it("two_asds_of_different_nodes_gone_places_5_with_parity_null", function () {
    // Goal: 5 ASDs left place 5 fragments (the unplaced one a parity slot); 4 left are too few for c = 5.
    const five = cluster(3, 2).filter((candidate) => candidate.asdId !== "asd-2-1");
    const selection = selectPolicy(preset([{ k: 4, m: 2, c: 5, x: 2 }]), five)!;
    assert.equal(selection.placement.filter((asdId) => asdId !== null).length, 5);
    assert.equal(selection.placement[5], null, "the unplaced fragment is parity");
    const four = five.filter((candidate) => candidate.asdId !== "asd-1-1");
    assert.equal(selectPolicy(preset([{ k: 4, m: 2, c: 5, x: 2 }]), four), undefined);
  });

  it("x_respected_and_distinct_asds_property", function () {
    // Goal: for random clusters and policies, a selection uses distinct candidate ASDs, at most x per node, at least c placed, and only if the policy is satisfiable.
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 4 }), fc.nat(), fc.integer(),
      (asdsPerNode, k, m, x, cSeed, rotation) => {
        const candidates = asdsPerNode.flatMap((count, node) => Array.from({ length: count }, (_, index) => ({ asdId: `asd-${node}-${index}`, nodeId: `node-${node}`, freeBytes: (node * 7 + index * 3) % 5 })));
        const c = k + (cSeed % (m + 1));
        const policy = { k, m, c, x };
        const placeable = asdsPerNode.reduce((sum, count) => sum + Math.min(count, x), 0);
        const selection = selectPolicy(preset([policy]), candidates, { rotation });
        if (placeable < c) {
          assert.equal(selection, undefined);
          return;
        }
        assert.ok(selection !== undefined);
        const placed = selection.placement.filter((asdId): asdId is string => asdId !== null);
        assert.equal(placed.length, Math.min(k + m, placeable));
        assert.equal(new Set(placed).size, placed.length);
        for (const count of nodeCounts(placed, nodeOfId).values()) assert.ok(count <= x);
        const counts = [...nodeCounts(placed, nodeOfId).values()];
        // Even spread: a node below another's count by 2 or more must be out of ASDs or at x.
        for (const [node, count] of nodeCounts(placed, nodeOfId)) {
          const capacity = Math.min(x, asdsPerNode[Number(node.split("-")[1])]!);
          if (count < capacity) assert.ok(Math.max(...counts) - count <= 1, `node ${node} underused`);
        }
      },
    ), { numRuns: 500, seed: 12 });
  });

  it("prefers_emptier_asds_and_rotation_varies_choice", function () {
    // Goal: within a node the ASD with most free bytes is taken first; different rotations pick different ASDs among equals.
    const candidates: PlacementCandidate[] = [
      { asdId: "full", nodeId: "n1", freeBytes: 10 }, { asdId: "empty", nodeId: "n1", freeBytes: 1000 },
    ];
    assert.deepEqual(selectPolicy(preset([{ k: 1, m: 0, c: 1, x: 1 }]), candidates)!.placement, ["empty"]);
    const equals = cluster(1, 6);
    const chosen = new Set<string>();
    for (let rotation = 0; rotation < 6; rotation++) chosen.add(selectPolicy(preset([{ k: 1, m: 0, c: 1, x: 1 }]), equals, { rotation })!.placement[0]!);
    assert.equal(chosen.size, 6);
    assert.deepEqual(selectPolicy(ISSUE_PRESET, cluster(3, 2), { rotation: 4 }), selectPolicy(ISSUE_PRESET, cluster(3, 2), { rotation: 4 }), "deterministic");
  });

  it("place_missing_fragments_respects_existing_and_x", function () {
    // Goal: after losing asd-2-0 and asd-2-1, replacements on node-2 (and never an ASD already used) refill the chunk, at most 2 per node.
    const policy = { k: 4, m: 2, c: 5, x: 2 };
    const current = ["asd-0-0", "asd-1-0", null, "asd-0-1", "asd-1-1", null];
    const candidates = [...cluster(3, 2).filter((candidate) => candidate.nodeId !== "node-2"), { asdId: "asd-2-7", nodeId: "node-2" }, { asdId: "asd-2-8", nodeId: "node-2" }];
    const placed = placeMissingFragments(policy, current, candidates, nodeOfId);
    assert.deepEqual(placed.filter((_, index) => current[index] !== null), current.filter((asdId) => asdId !== null), "existing slots unchanged");
    assert.deepEqual([placed[2], placed[5]].sort(), ["asd-2-7", "asd-2-8"]);
    // Only node-0/1 candidates: they are at x already, so nothing can be placed.
    assert.deepEqual(placeMissingFragments(policy, current, cluster(2, 4), nodeOfId), current);
    // One node-2 candidate: one slot filled, one stays null.
    const partial = placeMissingFragments(policy, current, [{ asdId: "asd-2-9", nodeId: "node-2" }], nodeOfId);
    assert.equal(partial.filter((asdId) => asdId === null).length, 1);
    assert.ok(partial.includes("asd-2-9"));
  });

  it("place_missing_fragments_property", function () {
    // Goal: for random placements with holes, the result keeps existing ASDs, adds only unused candidates, and keeps every node at or below x (or where it already was).
    fc.assert(fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.nat(), fc.integer(), (nodes, perNode, x, holesSeed, rotation) => {
      const all = cluster(nodes, perNode);
      const policy = { k: 3, m: 2, c: 3, x };
      const current: (string | null)[] = Array.from({ length: 5 }, (_, index) => ((holesSeed >> index) & 1 ? null : all[index % all.length]!.asdId));
      // Distinct existing entries only (a real chunk never has one ASD twice).
      const seen = new Set<string>();
      for (let index = 0; index < current.length; index++) {
        if (current[index] !== null && seen.has(current[index]!)) current[index] = null;
        if (current[index] !== null) seen.add(current[index]!);
      }
      const before = nodeCounts(current, nodeOfId);
      const placed = placeMissingFragments(policy, current, all, nodeOfId, { rotation });
      const used = placed.filter((asdId): asdId is string => asdId !== null);
      assert.equal(new Set(used).size, used.length, "distinct ASDs");
      for (const [index, asdId] of current.entries()) if (asdId !== null) assert.equal(placed[index], asdId);
      for (const [node, count] of nodeCounts(placed, nodeOfId)) assert.ok(count <= Math.max(x, before.get(node) ?? 0));
    }), { numRuns: 300, seed: 13 });
  });
});

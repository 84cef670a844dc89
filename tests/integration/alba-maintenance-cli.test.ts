// Goal: an operator repairs an Alba backend with the CLI alone, all real processes: 6 ASDs on 3
// node ids with preset (4,2,5,2), two ASDs (node ids n1 and n2) die, two replacements are started
// on those node ids and claimed with `ovs alba asd claim`, and `ovs alba maintenance --repair`
// through the proxy process rebuilds every chunk to 6 fragments on 6 distinct live ASDs with at
// most 2 per node id (counted from the manifests and from the keys on the ASDs); then both ASDs of
// n3 die as well and every object still reads back, which only a real repair makes possible.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { listAsdKeys, startAlbaCluster, type AlbaCluster } from "../helpers/alba-cluster.ts";
import { startAsd, type RunningAsd } from "../helpers/alba-processes.ts";
import { runOvs } from "../helpers/process-harness.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

describe("integration: Alba repair with the CLI (ovs alba asd claim, ovs alba maintenance)", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("alba-maintenance-cli");
  let cluster: AlbaCluster | undefined;
  const replacements: RunningAsd[] = [];

  after(async function () {
    await Promise.all(replacements.map((asd) => asd.stop()));
    await cluster?.stop();
    await tempDirs.removeAll();
  });

  it("rebuilds every chunk onto the replacement ASDs, x respected, and survives two more ASD deaths", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    cluster = await startAlbaCluster({
      directory: await tempDirs.make("cluster"),
      asdNodeIds: ["n1", "n1", "n2", "n2", "n3", "n3"],
      preset: { name: "ec42", policies: [{ k: 4, m: 2, c: 5, x: 2 }], fragmentSizeBytes: 64 * 1024, compression: "lz4", encryption: "none", checksum: "crc32c" },
      proxyArguments: ["--dead-asd-after", "0"],
    });
    const client = cluster.client;
    await client.createNamespace("objects");
    const hashes = new Map<string, string>();
    for (let index = 0; index < 12; index++) {
      const data = random.bytes(random.pick([1, 1000, 70_000, 300_000, 1_500_000]));
      await client.put("objects", `object-${index}`, data);
      hashes.set(`object-${index}`, sha256(data));
    }

    const [dead1, dead2] = [cluster.asds[0]!, cluster.asds[2]!];
    await dead1.kill();
    await dead2.kill();
    for (const nodeId of ["n1", "n2"]) {
      const asd = await startAsd({ directory: await tempDirs.make(`replacement-${nodeId}`), nodeId });
      replacements.push(asd);
      const claimed = await runOvs(["alba", "asd", "claim", "--proxy", cluster.proxyUrl, "--host", asd.host, "--port", String(asd.port)]);
      assert.equal(claimed.code, 0, `asd claim: ${claimed.stderr}`);
    }

    const repaired = await runOvs(["alba", "maintenance", "--proxy", cluster.proxyUrl, "--repair", "--json"], 240_000);
    assert.equal(repaired.code, 0, `maintenance: ${repaired.stderr}`);
    const run = JSON.parse(repaired.stdout) as { state: string; report: { deadAsds: { dead: Array<{ asdId: string }> }; repair: { fragmentsRebuilt: number; unrecoverableChunkCount: number } } };
    assert.equal(run.state, "done");
    assert.deepEqual(run.report.deadAsds.dead.map((asd) => asd.asdId).sort(), [dead1.asdId, dead2.asdId].sort());
    assert.ok(run.report.repair.fragmentsRebuilt > 0, "fragments were rebuilt");
    assert.equal(run.report.repair.unrecoverableChunkCount, 0);

    // Count: from the manifests, and from the keys actually stored on the live ASDs.
    const live = [...cluster.asds.filter((asd) => asd !== dead1 && asd !== dead2), ...replacements];
    const nodeOf = new Map(live.map((asd) => [asd.asdId, asd.nodeId]));
    const storedKeys = new Set<string>();
    for (const asd of live) for (const info of await listAsdKeys(asd)) storedKeys.add(`${asd.asdId}/${info.key}`);
    let chunks = 0;
    for (const key of hashes.keys()) {
      const manifest = await client.getManifest("objects", key);
      assert.ok(manifest !== undefined, `${key} has a manifest`);
      manifest.chunks.forEach((chunk, chunkIndex) => {
        chunks++;
        const asdIds = chunk.fragments.map((fragment) => fragment.asdId);
        assert.equal(asdIds.length, 6);
        assert.ok(asdIds.every((asdId) => asdId !== null && nodeOf.has(asdId)), `${key} chunk ${chunkIndex}: every fragment on a live ASD: ${asdIds.join(",")}`);
        assert.equal(new Set(asdIds).size, 6, `${key} chunk ${chunkIndex}: 6 distinct ASDs`);
        const perNode = new Map<string, number>();
        for (const asdId of asdIds) perNode.set(nodeOf.get(asdId!)!, (perNode.get(nodeOf.get(asdId!)!) ?? 0) + 1);
        assert.ok([...perNode.values()].every((count) => count <= 2), `${key} chunk ${chunkIndex}: at most 2 per node id`);
        chunk.fragments.forEach((fragment, fragmentIndex) => {
          assert.ok(storedKeys.has(`${fragment.asdId}/f/${manifest.objectId}/${chunkIndex}/${fragmentIndex}`), `${key} chunk ${chunkIndex} fragment ${fragmentIndex} is stored where the manifest says`);
        });
      });
    }
    assert.ok(chunks >= 12, `${chunks} chunks counted`);

    // Both ASDs of n3 die: 4 fragments of every chunk are left, enough only after the repair.
    await cluster.asds[4]!.kill();
    await cluster.asds[5]!.kill();
    for (const [key, hash] of hashes) {
      assert.equal(sha256(await client.get("objects", key)), hash, `seed ${seed}: ${key} reads back after the repair and two more deaths`);
    }
  });
});

// Goal: with 6 real ASDs on 3 node ids and preset (4,2,5,2), killing 2 ASDs loses no object, and after 2 replacements are claimed maintenance brings every chunk back to 6 fragments on 6 distinct live ASDs, at most 2 per node id, counted by listing every ASD.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { AlbaClient } from "../../alba/src/client/alba-client.ts";
import { parseFragmentKey } from "../../alba/src/client/fragment-key.ts";
import { AlbaMaintenance } from "../../alba/src/maintenance/maintenance.ts";
import type { AlbaMetadataStore, ObjectManifest } from "../../alba/src/metadata/metadata-store.ts";
import { startAsd, stopAll, type RunningAsd } from "../helpers/alba-processes.ts";
import { sleep } from "../helpers/process-harness.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { sha256 } from "../helpers/device-hash.ts";
import { listAsdKeys, openTestAlbaClient } from "../helpers/alba-cluster.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const FRAGMENT_SIZE_BYTES = 64 * 1024;
const NAMESPACE = "repair";
const DEAD_ASD_AFTER_MS = 300;

function allManifests(metadata: AlbaMetadataStore): ObjectManifest[] {
  const manifests: ObjectManifest[] = [];
  for (let afterObjectId: string | undefined; ;) {
    const page = metadata.scanManifests({ limit: 100, ...(afterObjectId === undefined ? {} : { afterObjectId }) });
    if (page.length === 0) return manifests;
    manifests.push(...page);
    afterObjectId = page[page.length - 1]!.objectId;
  }
}

/** Every fragment key on every given ASD: "objectId/chunk" → fragment index → ASD ids holding it (with size and CRC). */
interface StoredCopy {
  asdId: string;
  sizeBytes: number;
  crc32c: number;
}

async function fragmentsOnAsds(asds: readonly RunningAsd[]): Promise<Map<string, Map<number, StoredCopy[]>>> {
  const chunks = new Map<string, Map<number, StoredCopy[]>>();
  for (const asd of asds) {
    for (const info of await listAsdKeys(asd)) {
      const address = parseFragmentKey(info.key);
      assert.ok(address !== undefined, `ASD ${asd.asdId} holds a key that is not a fragment: ${info.key}`);
      const chunkId = `${address.objectId}/${address.chunkIndex}`;
      let fragments = chunks.get(chunkId);
      if (fragments === undefined) chunks.set(chunkId, (fragments = new Map()));
      let holders = fragments.get(address.fragmentIndex);
      if (holders === undefined) fragments.set(address.fragmentIndex, (holders = []));
      holders.push({ asdId: asd.asdId, sizeBytes: info.sizeBytes, crc32c: info.crc32c });
    }
  }
  return chunks;
}

describe("alba repair (real ASDs)", function () {
  this.timeout(170_000);
  const dirs = new TempDirs("alba-repair");
  const asds: RunningAsd[] = [];
  const clients: AlbaClient[] = [];
  let root: string;
  let metadataFile: string;

  after(async function () {
    for (const client of clients) await client.close().catch(() => undefined);
    await stopAll(asds);
    await dirs.removeAll();
  });

  it("kill_2_asds_replace_them_repair_back_to_6_fragments_on_6_asds", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    root = await dirs.make();
    metadataFile = path.join(root, "metadata.sqlite");
    const nodeIds = ["node-a", "node-a", "node-b", "node-b", "node-c", "node-c"];
    asds.push(...await Promise.all(nodeIds.map((nodeId, index) => startAsd({ directory: path.join(root, `asd-${index}`), nodeId }))));
    const client = openTestAlbaClient(metadataFile);
    clients.push(client);
    for (const asd of asds) await client.claimAsd(asd.host, asd.port);
    // lz4 + AES: a rebuilt fragment must come out bit for bit as the lost one (deterministic IV).
    await client.addPreset({
      name: "issue", policies: [{ k: 4, m: 2, c: 5, x: 2 }], fragmentSizeBytes: FRAGMENT_SIZE_BYTES,
      compression: "lz4", encryption: "aes-256-ctr", encryptionKeyHex: randomBytes(32).toString("hex"), checksum: "crc32c",
    });
    await client.createNamespace(NAMESPACE, { presetName: "issue" });

    // ~20 objects from 1 byte to 8 MiB, some compressible (zeros) and some not.
    const sizes = [1, 100, 4095, 65_536, 65_537, 262_144, 262_145, 1_000_000, 8 * 2 ** 20];
    while (sizes.length < 20) sizes.push(random.integer(1, 1_500_000));
    const hashes = new Map<string, string>();
    for (const [index, sizeBytes] of sizes.entries()) {
      const data = index % 4 === 3 ? Buffer.alloc(sizeBytes, index) : random.bytes(sizeBytes);
      const key = `object-${index}`;
      await client.put(NAMESPACE, key, data);
      hashes.set(key, sha256(data));
    }

    // Kill one ASD of node-a and one of node-b.
    const killed = [asds[0]!, asds[2]!];
    for (const asd of killed) await asd.kill();
    for (const [key, hash] of hashes) assert.equal(sha256(await client.get(NAMESPACE, key)), hash, `${key} after 2 ASDs died (seed ${seed})`);

    // Replacements on the node ids that lost theirs.
    const replacements = await Promise.all(["node-a", "node-b"].map((nodeId, index) => startAsd({ directory: path.join(root, `asd-new-${index}`), nodeId })));
    asds.push(...replacements);
    for (const asd of replacements) await client.claimAsd(asd.host, asd.port);
    await sleep(DEAD_ASD_AFTER_MS + 100);

    const maintenance = new AlbaMaintenance({
      metadata: client.metadata, pool: client.pool,
      settings: { deadAsdAfterMs: DEAD_ASD_AFTER_MS, orphanGracePeriodMs: 60_000, maintenanceBytesPerSecondMax: 1024 * 2 ** 20 },
    });
    const progressJobs = new Set<string>();
    const report = await maintenance.runOnce({ onProgress: (progress) => progressJobs.add(progress.job) });
    assert.deepEqual(report.deadAsds.dead.map((dead) => dead.asdId).sort(), killed.map((asd) => asd.asdId).sort());
    assert.equal(report.repair!.unrecoverableChunkCount, 0);
    assert.equal(report.repair!.fragmentsUnplaced, 0);
    assert.ok(report.repair!.fragmentsRebuilt > 0);
    assert.equal(report.repair!.chunksRepaired, report.repair!.chunksDegraded);
    // Verify after repair finds everything in order: the rebuilt fragments match their manifests.
    assert.equal(report.verify!.corruptFragmentCount, 0);
    assert.equal(report.verify!.missingFragmentCount, 0);
    assert.deepEqual([...progressJobs].sort(), ["collectOrphans", "detectDeadAsds", "rebalance", "repair", "verify"]);

    // Count by listing every live ASD: each chunk has its 6 fragments once, on 6 distinct live
    // ASDs, at most 2 per node id, exactly where its manifest says, with the manifest's size and CRC.
    const live = asds.filter((asd) => !killed.includes(asd));
    const nodeOf = new Map(live.map((asd) => [asd.asdId, asd.nodeId]));
    const onAsds = await fragmentsOnAsds(live);
    const manifests = allManifests(client.metadata);
    assert.equal(manifests.length, sizes.length);
    let chunkCount = 0;
    for (const manifest of manifests) {
      for (const [chunkIndex, chunk] of manifest.chunks.entries()) {
        chunkCount++;
        const chunkId = `${manifest.objectId}/${chunkIndex}`;
        const stored = onAsds.get(chunkId);
        assert.ok(stored !== undefined, `chunk ${chunkId} has no fragments on the live ASDs`);
        assert.equal(stored.size, 6, `chunk ${chunkId} has fragments ${[...stored.keys()].join(",")}`);
        const holders = new Set<string>();
        const perNode = new Map<string, number>();
        for (const [fragmentIndex, fragment] of chunk.fragments.entries()) {
          const copies: StoredCopy[] = stored.get(fragmentIndex) ?? [];
          assert.equal(copies.length, 1, `fragment ${chunkId}/${fragmentIndex} has ${copies.length} copies`);
          const copy: StoredCopy | undefined = copies[0];
          assert.equal(copy!.asdId, fragment.asdId, `fragment ${chunkId}/${fragmentIndex}: the manifest and the ASDs disagree`);
          assert.equal(copy!.sizeBytes, fragment.storedSizeBytes);
          assert.equal(copy!.crc32c, fragment.crc32c >>> 0);
          holders.add(copy!.asdId);
          const nodeId = nodeOf.get(copy!.asdId)!;
          perNode.set(nodeId, (perNode.get(nodeId) ?? 0) + 1);
        }
        assert.equal(holders.size, 6, `chunk ${chunkId} is on ${holders.size} distinct ASDs`);
        assert.ok([...perNode.values()].every((count) => count <= 2), `chunk ${chunkId} per node: ${JSON.stringify([...perNode])}`);
      }
    }
    // No fragment on any live ASD that no manifest accounts for.
    const manifestChunks = new Set(manifests.flatMap((manifest) => manifest.chunks.map((_chunk, chunkIndex) => `${manifest.objectId}/${chunkIndex}`)));
    assert.deepEqual([...onAsds.keys()].filter((chunkId) => !manifestChunks.has(chunkId)), []);
    assert.ok(chunkCount >= 40);

    // Every object reads correctly with the dead ones still down, through a fresh client (no cached
    // manifests or fragments) ...
    const fresh = openTestAlbaClient(metadataFile);
    clients.push(fresh);
    await fresh.pool.probeAll();
    for (const [key, hash] of hashes) assert.equal(sha256(await fresh.get(NAMESPACE, key)), hash, `${key} after repair (seed ${seed})`);
    // ... and still after losing both ASDs of node-c too, which only a real repair survives: without
    // it, chunks would be down to 2 of the k = 4 fragments they need.
    await Promise.all([asds[4]!.kill(), asds[5]!.kill()]);
    const degraded = openTestAlbaClient(metadataFile);
    clients.push(degraded);
    await degraded.pool.probeAll();
    for (const [key, hash] of hashes) assert.equal(sha256(await degraded.get(NAMESPACE, key)), hash, `${key} with 4 ASDs down after repair (seed ${seed})`);
  });
});

// Goal: with 4 filled ASDs and 2 empty ones added, rebalance moves fragments onto the new ones until the fill spread is within rebalanceFillSpreadMax (or the per-run byte budget is spent), keeps every chunk on distinct ASDs with at most x per node id, and every object still reads correctly; the full run goes through the proxy's maintenance routes (one run at a time, throttled) as `ovs alba maintenance --rebalance` drives them.
import assert from "node:assert/strict";
import path from "node:path";
import { AsdClient } from "../../alba/src/asd/asd-client.ts";
import { AlbaClient } from "../../alba/src/client/alba-client.ts";
import { parseFragmentKey } from "../../alba/src/client/fragment-key.ts";
import { isAlbaError } from "../../alba/src/client/alba-client-api.ts";
import { AlbaMaintenance } from "../../alba/src/maintenance/maintenance.ts";
import { runMaintenanceThroughProxy } from "../../alba/src/maintenance/maintenance-commands.ts";
import { MaintenanceRuns, maintenanceProxyRoutes } from "../../alba/src/maintenance/maintenance-routes.ts";
import { ProxyClient } from "../../alba/src/proxy/proxy-client.ts";
import { startProxyServer, type RunningProxyServer } from "../../alba/src/proxy/proxy-server.ts";
import type { ObjectManifest } from "../../alba/src/metadata/metadata-store.ts";
import { startAsd, stopAll, type RunningAsd } from "../helpers/alba-processes.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { sha256 } from "../helpers/device-hash.ts";
import { listAsdKeys, openTestAlbaClient } from "../helpers/alba-cluster.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const NAMESPACE = "rebalance";
const CAPACITY_BYTES = 16 * 2 ** 20;
const FRAGMENT_SIZE_BYTES = 64 * 1024;
const FILL_SPREAD_MAX = 0.1;
const X = 2;

/** Fill (used / capacity) of each ASD as the ASD itself reports it. */
async function fills(asds: readonly RunningAsd[]): Promise<Map<string, number>> {
  const result = new Map<string, number>();
  for (const asd of asds) {
    const connection = new AsdClient(asd.host, asd.port);
    const statistics = await connection.statistics();
    await connection.close();
    result.set(asd.asdId, statistics.usedBytes / statistics.capacityBytes);
  }
  return result;
}

function spreadOf(fillByAsd: Map<string, number>): number {
  return Math.max(...fillByAsd.values()) - Math.min(...fillByAsd.values());
}

/** "objectId/chunk/fragment" → ASD ids holding that key. */
async function fragmentHolders(asds: readonly RunningAsd[]): Promise<Map<string, string[]>> {
  const holders = new Map<string, string[]>();
  for (const asd of asds) {
    for (const info of await listAsdKeys(asd)) {
      const address = parseFragmentKey(info.key);
      assert.ok(address !== undefined);
      const id = `${address.objectId}/${address.chunkIndex}/${address.fragmentIndex}`;
      holders.set(id, [...(holders.get(id) ?? []), asd.asdId]);
    }
  }
  return holders;
}

describe("alba rebalance (real ASDs)", function () {
  this.timeout(170_000);
  const dirs = new TempDirs("alba-rebalance");
  const asds: RunningAsd[] = [];
  const clients: AlbaClient[] = [];
  let proxy: RunningProxyServer | undefined;
  let proxyClient: ProxyClient | undefined;

  after(async function () {
    await proxyClient?.close();
    await proxy?.close();
    for (const client of clients) await client.close().catch(() => undefined);
    await stopAll(asds);
    await dirs.removeAll();
  });

  it("two_empty_asds_receive_fragments_until_the_fill_spread_is_within_bounds", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const root = await dirs.make();
    const metadataFile = path.join(root, "metadata.sqlite");
    const startOn = (nodeId: string, name: string): Promise<RunningAsd> => startAsd({ directory: path.join(root, name), nodeId, capacityBytes: CAPACITY_BYTES });
    asds.push(...await Promise.all([startOn("node-a", "a0"), startOn("node-a", "a1"), startOn("node-b", "b0"), startOn("node-b", "b1")]));
    const client = openTestAlbaClient(metadataFile);
    clients.push(client);
    for (const asd of asds) await client.claimAsd(asd.host, asd.port);
    // (2, 2, 3, 2): 4 fragments per chunk, so on 4 ASDs every ASD holds one fragment of every chunk.
    await client.addPreset({ name: "p", policies: [{ k: 2, m: 2, c: 3, x: X }], fragmentSizeBytes: FRAGMENT_SIZE_BYTES, compression: "none", encryption: "none", checksum: "crc32c" });
    await client.createNamespace(NAMESPACE, { presetName: "p" });
    const objects = new Map<string, Buffer>();
    let totalBytes = 0;
    for (let index = 0; totalBytes < 9 * 2 ** 20; index++) {
      const data = random.bytes(random.integer(1, 1_200_000));
      await client.put(NAMESPACE, `object-${index}`, data);
      objects.set(`object-${index}`, data);
      totalBytes += data.length;
    }

    const added = await Promise.all([startOn("node-c", "c0"), startOn("node-c", "c1")]);
    asds.push(...added);
    for (const asd of added) await client.claimAsd(asd.host, asd.port);
    const fillsBefore = await fills(asds);
    assert.ok(spreadOf(fillsBefore) > 0.25, `fill spread before: ${spreadOf(fillsBefore)}`);

    // A run with a small byte budget stops once it is spent.
    const budgetBytes = 2 ** 20;
    const limited = new AlbaMaintenance({ metadata: client.metadata, pool: client.pool, settings: { rebalanceFillSpreadMax: FILL_SPREAD_MAX, rebalanceBytesPerRunMax: budgetBytes } });
    const partial = await limited.rebalance();
    assert.equal(partial.budgetExhausted, true);
    assert.ok(partial.bytesMoved >= budgetBytes && partial.bytesMoved < budgetBytes + FRAGMENT_SIZE_BYTES + 1, `moved ${partial.bytesMoved} bytes on a ${budgetBytes}-byte budget`);
    assert.ok(partial.fillSpreadAfter < partial.fillSpreadBefore);

    // A full run gets the spread within bounds: started through the proxy, polled as the CLI does,
    // throttled to 16 MiB/s so it is still running when a second run is asked for.
    const bytesPerSecondMax = 16 * 2 ** 20;
    const burstBytesMax = 2 ** 20;
    const maintenance = new AlbaMaintenance({
      metadata: client.metadata, pool: client.pool,
      settings: { rebalanceFillSpreadMax: FILL_SPREAD_MAX, maintenanceBytesPerSecondMax: bytesPerSecondMax, maintenanceBurstBytesMax: burstBytesMax },
    });
    const runs = new MaintenanceRuns(maintenance);
    proxy = await startProxyServer({ api: client, host: "127.0.0.1", port: 0, extraRoutes: maintenanceProxyRoutes(runs) });
    proxyClient = new ProxyClient(proxy.url);
    const updates: string[] = [];
    const runPromise = runMaintenanceThroughProxy(proxyClient, { rebalance: true }, (info) => updates.push(info.state), 50);
    // One run at a time: a second start while the first runs is refused with 409.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await assert.rejects(proxyClient.extension("POST", "/v1/maintenance/run", { verify: true }), (error: unknown) => isAlbaError(error, "Conflict"));
    await assert.rejects(proxyClient.extension("POST", "/v1/maintenance/run", { verify: "yes" }), (error: unknown) => isAlbaError(error, "Invalid"));
    const info = await runPromise;
    assert.equal(info.state, "done", JSON.stringify(info.error));
    assert.equal(updates.at(-1), "done");
    assert.ok(updates.includes("running"));
    assert.deepEqual(info.options, { rebalance: true });
    assert.equal(info.report!.repair, undefined);
    const report = info.report!.rebalance!;
    assert.equal(report.budgetExhausted, false);
    assert.ok(report.fragmentsMoved > 0);
    assert.ok(report.fillSpreadAfter <= FILL_SPREAD_MAX, `spread after: ${report.fillSpreadAfter}`);
    assert.equal(report.corruptFragmentsSkipped, 0);
    // The throttle held: moving (reading and writing) 2 × bytesMoved took at least what the rate allows.
    const minimumMs = ((2 * report.bytesMoved - burstBytesMax) / bytesPerSecondMax) * 1000;
    assert.ok(info.report!.durationMs >= minimumMs * 0.95, `moved ${report.bytesMoved} bytes in ${info.report!.durationMs} ms, the throttle allows no less than ${minimumMs} ms`);
    await runs.idle();
    // The ASDs agree: their own statistics show the spread shrunk into bounds, the new ones filled.
    const fillsAfter = await fills(asds);
    assert.ok(spreadOf(fillsAfter) <= FILL_SPREAD_MAX + 1e-9, `ASD fills after: ${JSON.stringify([...fillsAfter])}`);
    for (const asd of added) assert.ok(fillsAfter.get(asd.asdId)! > 0.1, `new ASD ${asd.asdId} fill ${fillsAfter.get(asd.asdId)}`);

    // Every fragment is stored once, where its manifest says; chunks on distinct ASDs, at most x per node.
    const nodeOf = new Map(asds.map((asd) => [asd.asdId, asd.nodeId]));
    const holders = await fragmentHolders(asds);
    const manifests: ObjectManifest[] = [...objects.keys()].map((key) => client.metadata.getManifest(NAMESPACE, key)!);
    let fragmentCount = 0;
    for (const manifest of manifests) {
      for (const [chunkIndex, chunk] of manifest.chunks.entries()) {
        const perNode = new Map<string, number>();
        const used = new Set<string>();
        for (const [fragmentIndex, fragment] of chunk.fragments.entries()) {
          fragmentCount++;
          const id = `${manifest.objectId}/${chunkIndex}/${fragmentIndex}`;
          assert.deepEqual(holders.get(id), [fragment.asdId], `fragment ${id}`);
          used.add(fragment.asdId!);
          const nodeId = nodeOf.get(fragment.asdId!)!;
          perNode.set(nodeId, (perNode.get(nodeId) ?? 0) + 1);
        }
        assert.equal(used.size, 4, `chunk ${manifest.objectId}/${chunkIndex} shares an ASD`);
        assert.ok([...perNode.values()].every((count) => count <= X), `chunk ${manifest.objectId}/${chunkIndex}: ${JSON.stringify([...perNode])}`);
      }
    }
    assert.equal(holders.size, fragmentCount, "fragments on the ASDs that no manifest names");

    // Reads: through the client that cached the old manifests, and through a fresh one.
    for (const [key, data] of objects) assert.equal(sha256(await client.get(NAMESPACE, key)), sha256(data), `${key} via the old client (seed ${seed})`);
    const fresh = openTestAlbaClient(metadataFile);
    clients.push(fresh);
    await fresh.pool.probeAll();
    for (const [key, data] of objects) assert.equal(sha256(await fresh.get(NAMESPACE, key)), sha256(data), `${key} via a fresh client (seed ${seed})`);

    // Within bounds now: another run moves nothing.
    const idle = await maintenance.rebalance();
    assert.equal(idle.fragmentsMoved, 0);
  });
});

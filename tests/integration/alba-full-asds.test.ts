// Goal: full ASDs (real processes with a capacity limit) make Alba fall back to the next policy of
// the preset, then refuse writes with a clear "no satisfiable policy" error, while every object
// already stored keeps reading back and deletes still work (which makes room again). 6 ASDs on 3
// node ids: the first ASD of each node id is small, so once those three are full only one ASD per
// node id has room: (4,2,5,2) cannot be met, (2,1,3,1) can, until the other three fill up too.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { isAlbaError } from "../../alba/src/client/alba-client-api.ts";
import { startAlbaCluster, type AlbaCluster } from "../helpers/alba-cluster.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const OBJECT_SIZE_BYTES = 256 * KIB;
const PUTS_MAX = 400;
const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

describe("integration: Alba with full ASDs", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("alba-full");
  let cluster: AlbaCluster | undefined;

  after(async function () {
    await cluster?.stop();
    await tempDirs.removeAll();
  });

  it("falls back to the next policy, then fails with 'no satisfiable policy'; reads and deletes keep working", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const directory = await tempDirs.make("cluster");
    cluster = await startAlbaCluster({
      directory,
      asdNodeIds: [],
      preset: {
        name: "fallback", policies: [{ k: 4, m: 2, c: 5, x: 2 }, { k: 2, m: 1, c: 3, x: 1 }], fragmentSizeBytes: 64 * KIB,
        compression: "none", encryption: "none", checksum: "crc32c",
      },
    });
    // Small ASDs first on each node id, then the larger ones.
    for (const nodeId of ["n1", "n2", "n3"]) await cluster.addAsd(nodeId, 2 * MIB);
    for (const nodeId of ["n1", "n2", "n3"]) await cluster.addAsd(nodeId, 5 * MIB);
    const client = cluster.client;
    await client.createNamespace("objects");

    const stored = new Map<string, string>();
    const policyCounts = new Map<string, number>();
    let refusal: unknown;
    for (let index = 0; index < PUTS_MAX && refusal === undefined; index++) {
      const data = random.bytes(OBJECT_SIZE_BYTES);
      try {
        await client.put("objects", `object-${index}`, data);
      } catch (error) {
        refusal = error;
        break;
      }
      stored.set(`object-${index}`, sha256(data));
      const policy = (await client.getManifest("objects", `object-${index}`))!.policy;
      const name = `(${policy.k},${policy.m},${policy.c},${policy.x})`;
      policyCounts.set(name, (policyCounts.get(name) ?? 0) + 1);
    }
    console.log(`      ${stored.size} objects stored by policy: ${JSON.stringify(Object.fromEntries(policyCounts))}`);
    assert.ok((policyCounts.get("(4,2,5,2)") ?? 0) > 0, "the first policy was used while every ASD had room");
    assert.ok((policyCounts.get("(2,1,3,1)") ?? 0) > 0, "the second policy took over once the small ASDs were full");
    assert.ok(isAlbaError(refusal, "NoSatisfiablePolicy"), `seed ${seed}: the last put failed with ${String(refusal)}`);
    assert.match((refusal as Error).message, /^no satisfiable policy/);

    // Full ASDs still serve reads: every object comes back.
    for (const [key, hash] of stored) assert.equal(sha256(await client.get("objects", key)), hash, `seed ${seed}: ${key} reads back`);

    // Deletes work on full ASDs and make room: a put succeeds again (the pool learns the new free
    // space from the ASDs' statistics, so allow it a few seconds).
    const keys = [...stored.keys()];
    for (const key of keys.slice(0, Math.ceil(keys.length / 2))) {
      await client.delete("objects", key);
      stored.delete(key);
    }
    const deadlineMs = Date.now() + 30_000;
    for (;;) {
      try {
        await client.put("objects", "after-deletes", random.bytes(OBJECT_SIZE_BYTES));
        break;
      } catch (error) {
        if (!isAlbaError(error, "NoSatisfiablePolicy") || Date.now() > deadlineMs) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    for (const [key, hash] of stored) assert.equal(sha256(await client.get("objects", key)), hash, `seed ${seed}: ${key} reads back after the deletes`);
  });
});

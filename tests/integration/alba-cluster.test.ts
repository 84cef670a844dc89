// Goal: an Alba cluster of real processes works end to end: 6 ASDs on 3 node ids, the proxy as
// `ovs alba proxy run`, set up with the CLI (backend create, asd claim, preset add (4,2,5,2),
// namespace create, object put/get/ls/rm); random objects of 1 byte to 64 MiB put, got and
// range-read back identical (SHA-256); after SIGKILL of 2 ASDs on different node ids every object
// still reads back identical, `ovs alba status` reports them down, and a new put fails with
// "no satisfiable policy". Seeded: set OVS_SEED to replay a failure (the seed is in its message).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { ProxyClient } from "../../alba/src/proxy/proxy-client.ts";
import { isAlbaError } from "../../alba/src/client/alba-client-api.ts";
import { startAsd, stopAll, type RunningAsd } from "../helpers/alba-processes.ts";
import { ChildHarness, runOvs } from "../helpers/process-harness.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const MIB = 1024 * 1024;
const NAMESPACE = "bulk";

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

describe("Alba cluster (6 ASD processes, proxy process, CLI)", function () {
  this.timeout(170_000);
  const temp = new TempDirs("alba-cluster");
  const seed = seedFromEnvironment();
  const random = new SeededRandom(seed);
  let asds: RunningAsd[] = [];
  let proxy: ChildHarness | undefined;
  let proxyUrl = "";
  let client: ProxyClient;
  let workDirectory = "";
  const objects = new Map<string, Buffer>();

  /** Runs `ovs alba ...ARGS --proxy URL` and expects exit 0; returns stdout. */
  async function albaCli(args: string[]): Promise<string> {
    const result = await runOvs(["alba", ...args], 60_000, { OVS_ALBA_PROXY: proxyUrl });
    assert.equal(result.code, 0, `ovs alba ${args.join(" ")} failed (seed ${seed}):\n${result.stderr}`);
    return result.stdout;
  }

  before(async function () {
    this.timeout(120_000);
    workDirectory = await temp.make("work");
    const directories = await Promise.all(Array.from({ length: 6 }, (_, index) => temp.make(`asd-${index}`)));
    asds = await Promise.all(directories.map((directory, index) => startAsd({ directory, nodeId: `node-${index % 3}` })));
    const backend = await temp.make("backend");
    assert.match(await albaCli(["backend", "create", "--path", backend]), /created: Alba backend/);
    assert.match(await albaCli(["backend", "create", "--path", backend]), /exists: Alba backend/, "backend create is idempotent");
    proxy = ChildHarness.ovs(["alba", "proxy", "run", "--backend", backend, "--port", "0"], { OVS_LOG_LEVEL: "warn" });
    proxyUrl = (await proxy.waitForOutput(/Alba proxy listening on (http:\/\/\S+)/, 30_000))[1]!;
    client = new ProxyClient(proxyUrl);
  });

  after(async function () {
    this.timeout(60_000);
    await client?.close();
    await proxy?.killHard();
    await stopAll(asds);
    await temp.removeAll();
  });

  it("cli_setup_and_object_commands", async function () {
    // Goal: the CLI claims the 6 ASDs, adds preset (4,2,5,2), creates namespaces and puts/gets/lists/removes an object byte for byte.
    await Promise.all(asds.map(async (asd) => {
      assert.match(await albaCli(["asd", "claim", "--host", asd.host, "--port", String(asd.port)]), new RegExp(`claimed ASD ${asd.asdId} \\(node ${asd.nodeId}\\)`));
    }));
    const duplicate = await runOvs(["alba", "asd", "claim", "--host", asds[0]!.host, "--port", String(asds[0]!.port)], 60_000, { OVS_ALBA_PROXY: proxyUrl });
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /already claimed/);
    const listed = JSON.parse(await albaCli(["asd", "ls", "--json"])) as Array<{ record: { asdId: string }; health: string }>;
    assert.deepEqual(listed.map((status) => status.record.asdId).sort(), asds.map((asd) => asd.asdId).sort());
    assert.ok(listed.every((status) => status.health === "up"));

    await albaCli(["preset", "add", "--name", "p4252", "--policies", "4,2,5,2", "--fragment-size", "1M"]);
    const presets = JSON.parse(await albaCli(["preset", "ls", "--json"])) as Array<{ name: string; policies: unknown }>;
    assert.deepEqual(presets.find((preset) => preset.name === "p4252")?.policies, [{ k: 4, m: 2, c: 5, x: 2 }]);
    await albaCli(["namespace", "create", NAMESPACE, "--preset", "p4252"]);
    await albaCli(["namespace", "create", "cli"]);
    const namespaces = JSON.parse(await albaCli(["namespace", "ls", "--json"])) as Array<{ name: string; presetName: string }>;
    assert.deepEqual(namespaces.map((record) => [record.name, record.presetName]), [[NAMESPACE, "p4252"], ["cli", "default"]]);

    const data = Buffer.from(random.fill(new Uint8Array(300_001)));
    const source = path.join(workDirectory, "source.bin");
    const target = path.join(workDirectory, "target.bin");
    await writeFile(source, data);
    assert.match(await albaCli(["object", "put", "cli", "dir/file.bin", source]), /stored cli\/dir\/file.bin: 300001 bytes/);
    await albaCli(["object", "get", "cli", "dir/file.bin", target]);
    assert.equal(sha256(await readFile(target)), sha256(data), `seed ${seed}`);
    const objectList = JSON.parse(await albaCli(["object", "ls", "cli", "--json"])) as Array<{ key: string; sizeBytes: number }>;
    assert.deepEqual(objectList.map((info) => [info.key, info.sizeBytes]), [["dir/file.bin", 300_001]]);
    await albaCli(["object", "rm", "cli", "dir/file.bin"]);
    const missing = await runOvs(["alba", "object", "get", "cli", "dir/file.bin", target], 60_000, { OVS_ALBA_PROXY: proxyUrl });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist/);
  });

  it("random_objects_put_get_ranged_get", async function () {
    // Goal (seeded): objects of 1 byte to 64 MiB, including chunk and fragment boundaries, come back identical whole and in random ranges.
    const sizes = [1, 7, 4095, 4096, 65_537, MIB, 4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 64 * MIB];
    for (let index = 0; index < 4; index++) sizes.push(random.integer(1, 12 * MIB));
    for (const [index, sizeBytes] of sizes.entries()) {
      const data = Buffer.from(random.fill(new Uint8Array(sizeBytes)));
      const key = `object-${index}-${sizeBytes}`;
      const info = await client.put(NAMESPACE, key, data);
      assert.equal(info.sizeBytes, sizeBytes);
      objects.set(key, data);
    }
    for (const [key, data] of objects) {
      assert.equal(sha256(await client.get(NAMESPACE, key)), sha256(data), `${key} (seed ${seed})`);
      const ranges = Array.from({ length: 8 }, () => {
        const offsetBytes = random.integer(0, data.length);
        return { offsetBytes, lengthBytes: random.integer(0, Math.min(3 * MIB, data.length - offsetBytes + 10)) };
      });
      const parts = await client.getRanges(NAMESPACE, key, ranges);
      for (const [index, range] of ranges.entries()) {
        assert.ok(parts[index]!.equals(data.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes)), `${key} range ${JSON.stringify(range)} (seed ${seed})`);
      }
    }
    const manifest = (await client.getManifest(NAMESPACE, `object-9-${64 * MIB}`))!;
    assert.equal(manifest.chunks.length, 16, "64 MiB in 4 MiB chunks");
    for (const chunk of manifest.chunks) assert.equal(new Set(chunk.fragments.map((fragment) => fragment.asdId)).size, 6, "6 fragments on 6 ASDs");
  });

  it("two_asds_killed_every_object_reads", async function () {
    // Goal: with 2 ASDs on different node ids SIGKILLed, every object still reads back identical (whole and ranged), status shows them down, and a new put fails "no satisfiable policy".
    assert.ok(objects.size > 0, "the previous test stored objects");
    const victims = [asds[0]!, asds[1]!];
    assert.notEqual(victims[0]!.nodeId, victims[1]!.nodeId);
    await Promise.all(victims.map((asd) => asd.kill()));
    for (const [key, data] of objects) {
      assert.equal(sha256(await client.get(NAMESPACE, key)), sha256(data), `${key} after 2 ASDs died (seed ${seed})`);
      const offsetBytes = random.integer(0, data.length);
      const [part] = await client.getRanges(NAMESPACE, key, [{ offsetBytes, lengthBytes: 100_000 }]);
      assert.ok(part!.equals(data.subarray(offsetBytes, offsetBytes + 100_000)), `${key} ranged after 2 ASDs died (seed ${seed})`);
    }
    const status = JSON.parse(await albaCli(["status", "--json"])) as {
      asds: Array<{ record: { asdId: string }; health: string }>; diskSafety: Array<{ presetName: string; chunksByRemainingRedundancy: Record<string, number> }>;
    };
    const down = status.asds.filter((entry) => entry.health === "down").map((entry) => entry.record.asdId).sort();
    assert.deepEqual(down, victims.map((asd) => asd.asdId).sort());
    const safety = status.diskSafety.find((entry) => entry.presetName === "p4252")!;
    assert.ok(Object.keys(safety.chunksByRemainingRedundancy).every((remaining) => Number(remaining) >= 0), "no chunk lost more than m fragments");
    assert.ok((safety.chunksByRemainingRedundancy["0"] ?? 0) > 0, "chunks with a fragment on both dead ASDs have no redundancy left");
    await assert.rejects(client.put(NAMESPACE, "after-failure", Buffer.alloc(1000)), (error: unknown) => {
      assert.ok(isAlbaError(error, "NoSatisfiablePolicy"), String(error));
      assert.match((error as Error).message, /^no satisfiable policy/);
      return true;
    });
  });
});

// Goal: an ASD killed (SIGKILL) in the middle of a batch leaves no partial state: a batch killed after its value files were written is entirely absent after restart and its files are removed; a batch killed after its commit is entirely present; and under random-time SIGKILLs during a stream of concurrent batches every acknowledged batch is present in full, no batch is partly visible, and no orphan file survives a restart.
//
// Replay: OVS_SEED=<seed> npx mocha --no-config --node-option import=tsx --timeout 300000 --exit tests/fault/asd-crash.test.ts
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { isAsdError, type AsdKeyInfo } from "../../alba/src/asd/asd-api.ts";
import { AsdClient } from "../../alba/src/asd/asd-client.ts";
import { ASD_FILES_DIRECTORY, ASD_STORE_DEFAULT_SETTINGS } from "../../alba/src/asd/asd-store.ts";
import { startAsd, stopAll, type RunningAsd } from "../helpers/alba-processes.ts";
import { sleep } from "../helpers/process-harness.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const temp = new TempDirs("asd-crash");
const ROUNDS = Number(process.env.OVS_ASD_CRASH_ROUNDS ?? 3);
const WRITERS = 4;
const KEYS_PER_BATCH = 4;
const INLINE_MAX_BYTES = ASD_STORE_DEFAULT_SETTINGS.inlineValueSizeBytesMax;

/** The value of key `index` of batch `batchId`: its size and bytes follow from the names alone. */
function batchValue(batchId: string, index: number): Buffer {
  let seed = 0;
  for (const character of `${batchId}/${index}`) seed = (Math.imul(seed, 31) + character.charCodeAt(0)) | 0;
  const random = new SeededRandom(seed);
  const size = random.chance(0.4) ? random.integer(INLINE_MAX_BYTES + 1, 3 * INLINE_MAX_BYTES) : random.integer(0, 2000);
  const value = Buffer.allocUnsafe(size);
  for (let offset = 0; offset < size; offset += 4) {
    const word = random.nextUint32();
    for (let byte = 0; byte < 4 && offset + byte < size; byte++) value[offset + byte] = (word >>> (8 * byte)) & 0xff;
  }
  return value;
}

async function listAll(client: AsdClient, prefix: string): Promise<AsdKeyInfo[]> {
  const keys: AsdKeyInfo[] = [];
  let startAfter: string | undefined;
  do {
    const page = await client.list({ prefix, ...(startAfter === undefined ? {} : { startAfter }) });
    keys.push(...page.keys);
    startAfter = page.nextStartAfter;
  } while (startAfter !== undefined);
  return keys;
}

async function valueFileCount(directory: string): Promise<number> {
  return (await readdir(path.join(directory, ASD_FILES_DIRECTORY))).length;
}

/** After a restart: exactly the keys stored in files have a file (no orphans, none missing). */
async function assertNoOrphans(client: AsdClient, directory: string): Promise<void> {
  const keys = await listAll(client, "");
  const inFiles = keys.filter((info) => info.sizeBytes > INLINE_MAX_BYTES).length;
  assert.equal(await valueFileCount(directory), inFiles, "value files on disk must be exactly those of stored keys");
}

describe("ASD crash consistency (SIGKILL)", function () {
  this.timeout(180_000);
  const running: RunningAsd[] = [];
  const clients: AsdClient[] = [];

  async function start(directory: string, env: NodeJS.ProcessEnv = {}): Promise<{ asd: RunningAsd; client: AsdClient }> {
    const asd = await startAsd({ directory, nodeId: "node-crash", env });
    running.push(asd);
    const client = new AsdClient(asd.host, asd.port, { requestTimeoutMs: 10_000 });
    clients.push(client);
    return { asd, client };
  }

  async function stop(asd: RunningAsd): Promise<void> {
    await asd.stop();
    running.splice(running.indexOf(asd), 1);
  }

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    await stopAll(running.splice(0));
  });
  after(() => temp.removeAll());

  it("a batch killed after its files are written (before the commit) is absent after restart, and its files are gone", async () => {
    const directory = await temp.make();
    const before = batchValue("before", 0);
    const first = await start(directory);
    await first.client.applyBatch({ asserts: [], updates: [{ kind: "set", key: "before", value: before }] });
    await stop(first.asd);

    const crashing = await start(directory, { OVS_ASD_CRASH_AT: "files-written" });
    const filesBefore = await valueFileCount(directory);
    await assert.rejects(crashing.client.applyBatch({ asserts: [], updates: [
      { kind: "set", key: "c/0", value: Buffer.alloc(200_000, 2) }, { kind: "set", key: "c/1", value: Buffer.alloc(100_000, 3) }, { kind: "set", key: "c/2", value: Buffer.from("small") },
      { kind: "delete", key: "before" },
    ] }), (error: unknown) => isAsdError(error, "Unavailable"));
    assert.deepEqual(await crashing.asd.harness.exited, { code: null, signal: "SIGKILL" });
    running.splice(running.indexOf(crashing.asd), 1);
    assert.equal(await valueFileCount(directory), filesBefore + 2, "the crash point is after both value files were written");

    const restarted = await start(directory);
    for (const key of ["c/0", "c/1", "c/2"]) assert.equal(await restarted.client.get(key), undefined, key);
    assert.deepEqual(await restarted.client.get("before"), before, "the delete of the killed batch did not apply either");
    assert.equal(await valueFileCount(directory), filesBefore, "the killed batch's files were removed at open");
    await assertNoOrphans(restarted.client, directory);
  });

  it("a batch killed after its commit (before the reply) is present in full after restart", async () => {
    const directory = await temp.make();
    const crashing = await start(directory, { OVS_ASD_CRASH_AT: "committed-before-reply" });
    const values = [0, 1, 2].map((index) => batchValue("committed", index));
    await assert.rejects(crashing.client.applyBatch({ asserts: [], updates: values.map((value, index) => ({ kind: "set" as const, key: `c/${index}`, value })) }),
      (error: unknown) => isAsdError(error, "Unavailable"));
    assert.deepEqual(await crashing.asd.harness.exited, { code: null, signal: "SIGKILL" });
    running.splice(running.indexOf(crashing.asd), 1);
    const restarted = await start(directory);
    for (const [index, value] of values.entries()) assert.deepEqual(await restarted.client.get(`c/${index}`), value);
    await assertNoOrphans(restarted.client, directory);
  });

  it("random-time SIGKILLs during concurrent batches: acknowledged batches are complete, none is partial", async () => {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const directory = await temp.make();
    const acknowledged = new Set<string>();
    /** Per round and writer: the highest acknowledged and the highest sent sequence number. */
    const progress = new Map<string, { acknowledged: number; sent: number }>();
    const context = (): string => `seed ${seed}`;

    for (let round = 0; round < ROUNDS; round++) {
      const { asd, client } = await start(directory);
      if (round > 0) await verify(client);
      let stopping = false;
      const writer = async (writerIndex: number): Promise<void> => {
        const name = `${round}-${writerIndex}`;
        const state = { acknowledged: -1, sent: -1 };
        progress.set(name, state);
        for (let sequence = 0; !stopping; sequence++) {
          const batchId = `${name}-${sequence}`;
          state.sent = sequence;
          const updates = Array.from({ length: KEYS_PER_BATCH }, (_unused, index) => ({ kind: "set" as const, key: `b/${batchId}/${index}`, value: batchValue(batchId, index) }));
          updates.push({ kind: "set", key: `w/${name}`, value: Buffer.from(batchId) });
          try {
            await client.applyBatch({ asserts: [{ kind: "absent", key: `b/${batchId}/0` }], updates });
          } catch (error) {
            assert.ok(isAsdError(error, "Unavailable"), `${context()}: ${String(error)}`);
            return;
          }
          acknowledged.add(batchId);
          state.acknowledged = sequence;
        }
      };
      const writers = Array.from({ length: WRITERS }, (_unused, index) => writer(index));
      await sleep(random.integer(200, 1200));
      await asd.kill();
      running.splice(running.indexOf(asd), 1);
      stopping = true;
      await Promise.all(writers);
    }
    const { client } = await start(directory);
    await verify(client);
    console.log(`      seed ${seed}: ${acknowledged.size} batches acknowledged over ${ROUNDS} SIGKILLs`);
    assert.ok(acknowledged.size >= ROUNDS, `${context()}: too few batches were acknowledged (${acknowledged.size}) for the test to mean anything`);

    async function verify(verifier: AsdClient): Promise<void> {
      const batchKeys = new Map<string, AsdKeyInfo[]>();
      for (const info of await listAll(verifier, "b/")) {
        const batchId = info.key.split("/")[1]!;
        batchKeys.set(batchId, [...(batchKeys.get(batchId) ?? []), info]);
      }
      for (const batchId of acknowledged) assert.ok(batchKeys.has(batchId), `${context()}: acknowledged batch ${batchId} is missing`);
      for (const [batchId, keys] of batchKeys) {
        assert.equal(keys.length, KEYS_PER_BATCH, `${context()}: batch ${batchId} is partly visible (${keys.length} keys)`);
        for (const info of keys) {
          const expected = batchValue(batchId, Number(info.key.split("/")[2]));
          assert.deepEqual(await verifier.get(info.key), expected, `${context()}: ${info.key} has wrong content`);
        }
      }
      // The per-writer key is overwritten by every batch: it names a complete batch at least as new as the last acknowledged one.
      for (const [name, state] of progress) {
        const last = await verifier.get(`w/${name}`);
        if (state.acknowledged >= 0) assert.ok(last !== undefined, `${context()}: w/${name} missing`);
        if (last === undefined) continue;
        const sequence = Number(last.toString().split("-")[2]);
        assert.ok(sequence >= state.acknowledged && sequence <= state.sent, `${context()}: w/${name} = ${last.toString()} (acknowledged ${state.acknowledged}, sent ${state.sent})`);
        assert.ok(batchKeys.has(last.toString()), `${context()}: w/${name} names batch ${last.toString()}, which is not stored`);
      }
      await assertNoOrphans(verifier, directory);
    }
  });
});

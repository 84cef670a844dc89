// Goal: an upload that fails halfway (too few fragments land, and its cleanup fails as if the proxy died) leaves no visible object but fragments on the ASDs; maintenance's orphan collection deletes exactly those once the grace period is over, plus fragments of deleted objects and leftover copies, and never a fragment of a committed object, even one being uploaded meanwhile.
import assert from "node:assert/strict";
import path from "node:path";
import { AsdError, type AsdApi, type AsdBatch, type AsdListOptions, type ByteRange } from "../../alba/src/asd/asd-api.ts";
import { AsdClient } from "../../alba/src/asd/asd-client.ts";
import { isAlbaError } from "../../alba/src/client/alba-client-api.ts";
import { AlbaClient } from "../../alba/src/client/alba-client.ts";
import { AsdPool } from "../../alba/src/client/asd-pool.ts";
import { fragmentKey, parseFragmentKey } from "../../alba/src/client/fragment-key.ts";
import { AlbaMaintenance } from "../../alba/src/maintenance/maintenance.ts";
import type { AsdRecord } from "../../alba/src/metadata/metadata-store.ts";
import { SqliteMetadataStore } from "../../alba/src/metadata/sqlite-metadata-store.ts";
import { startAsd, stopAll, type RunningAsd } from "../helpers/alba-processes.ts";
import { sleep } from "../helpers/process-harness.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { sha256 } from "../helpers/device-hash.ts";
import { listAsdKeys } from "../helpers/alba-cluster.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const NAMESPACE = "orphans";
/** Long enough that the first collection surely runs inside it, short enough to wait out. */
const ORPHAN_GRACE_PERIOD_MS = 6_000;

/** Faults switched on by the test: writes to some ASDs fail, deletes fail everywhere (a proxy that died mid-put). */
interface Faults {
  failWritesOn: Set<string>;
  failDeletes: boolean;
}

/** An ASD connection that fails on command, as a network partition or a crashed proxy would look. */
class FaultyAsd implements AsdApi {
  readonly address: string;
  constructor(private readonly inner: AsdApi, private readonly asdId: string, private readonly faults: Faults) {
    this.address = inner.address;
  }
  async applyBatch(batch: AsdBatch): Promise<void> {
    if (this.faults.failWritesOn.has(this.asdId) && batch.updates.some((update) => update.kind === "set")) throw new AsdError("Unavailable", "injected: write lost");
    if (this.faults.failDeletes && batch.updates.some((update) => update.kind === "delete")) throw new AsdError("Unavailable", "injected: delete lost");
    await this.inner.applyBatch(batch);
  }
  get(key: string): Promise<Buffer | undefined> {
    return this.inner.get(key);
  }
  getRanges(key: string, ranges: readonly ByteRange[]): Promise<Buffer[] | undefined> {
    return this.inner.getRanges(key, ranges);
  }
  list(options?: AsdListOptions) {
    return this.inner.list(options);
  }
  statistics() {
    return this.inner.statistics();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Every key on every ASD as "asdId key". */
async function keysOnAsds(asds: readonly RunningAsd[]): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const asd of asds) for (const info of await listAsdKeys(asd)) keys.add(`${asd.asdId} ${info.key}`);
  return keys;
}

function objectIdOf(entry: string): string {
  const address = parseFragmentKey(entry.split(" ")[1]!);
  assert.ok(address !== undefined, `not a fragment key: ${entry}`);
  return address.objectId;
}

describe("alba orphan collection (real ASDs)", function () {
  this.timeout(170_000);
  const dirs = new TempDirs("alba-orphans");
  const asds: RunningAsd[] = [];
  let client: AlbaClient | undefined;

  after(async function () {
    await client?.close().catch(() => undefined);
    await stopAll(asds);
    await dirs.removeAll();
  });

  it("failed_upload_orphans_are_collected_after_the_grace_period_and_nothing_else", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const root = await dirs.make();
    const nodeIds = ["node-a", "node-a", "node-b", "node-b", "node-c", "node-c"];
    asds.push(...await Promise.all(nodeIds.map((nodeId, index) => startAsd({ directory: path.join(root, `asd-${index}`), nodeId }))));
    const faults: Faults = { failWritesOn: new Set(), failDeletes: false };
    const metadata = SqliteMetadataStore.open(path.join(root, "metadata.sqlite"));
    const pool = new AsdPool({
      metadata, background: false,
      connect: (record: AsdRecord) => new FaultyAsd(new AsdClient(record.host, record.port, { requestTimeoutMs: 5_000 }), record.asdId, faults),
    });
    client = new AlbaClient({ metadata, pool });
    for (const asd of asds) await client.claimAsd(asd.host, asd.port);
    await client.addPreset({ name: "plain", policies: [{ k: 4, m: 2, c: 5, x: 2 }], fragmentSizeBytes: 64 * 1024, compression: "none", encryption: "none", checksum: "crc32c" });
    await client.createNamespace(NAMESPACE, { presetName: "plain" });

    const committed = new Map<string, Buffer>();
    for (let index = 0; index < 5; index++) {
      const data = random.bytes(random.integer(1, 900_000));
      await client.put(NAMESPACE, `kept-${index}`, data);
      committed.set(`kept-${index}`, data);
    }
    const doomed = random.bytes(400_000);
    await client.put(NAMESPACE, "deleted", doomed);
    const deletedObjectId = client.metadata.getManifest(NAMESPACE, "deleted")!.objectId;

    // The failing upload: writes to one ASD of node-a and one of node-b are lost (4 of 6 fragments
    // land, c = 5), and the client's cleanup deletes are lost too.
    faults.failWritesOn = new Set([asds[0]!.asdId, asds[2]!.asdId]);
    faults.failDeletes = true;
    await assert.rejects(client.put(NAMESPACE, "failed", random.bytes(1_000_000)), (error: unknown) => isAlbaError(error));
    faults.failWritesOn.clear();
    // A delete whose background fragment deletes are lost: orphans with no pending upload at all.
    await client.delete(NAMESPACE, "deleted");
    await client.backgroundIdle(10_000);
    faults.failDeletes = false;
    await client.pool.probeAll();

    // Nothing visible of the failed upload.
    await assert.rejects(client.get(NAMESPACE, "failed"), (error: unknown) => isAlbaError(error, "NotFound"));
    const listed = await client.list(NAMESPACE);
    assert.deepEqual(listed.objects.map((object) => object.key).sort(), [...committed.keys()].sort());
    const pending = client.metadata.listPendingUploads();
    assert.ok(pending.length >= 1, "the failed upload should have left a pending record");
    const failedIds = new Set(pending.map((upload) => upload.objectId));

    // A leftover copy of a committed object's fragment on an ASD its manifest does not name it on.
    const keptManifest = client.metadata.getManifest(NAMESPACE, "kept-0")!;
    const leftoverSource = keptManifest.chunks[0]!.fragments[0]!.asdId!;
    const leftoverTarget = keptManifest.chunks[0]!.fragments[1]!.asdId!;
    const leftoverKey = fragmentKey({ objectId: keptManifest.objectId, chunkIndex: 0, fragmentIndex: 0 });
    const leftoverBytes = await client.pool.connection(leftoverSource)!.get(leftoverKey);
    await client.pool.connection(leftoverTarget)!.applyBatch({ asserts: [], updates: [{ kind: "set", key: leftoverKey, value: leftoverBytes! }] });

    const before = await keysOnAsds(asds);
    const failedKeys = [...before].filter((entry) => failedIds.has(objectIdOf(entry)));
    const deletedKeys = [...before].filter((entry) => objectIdOf(entry) === deletedObjectId);
    assert.ok(failedKeys.length >= 4 * 4, `the failed upload left ${failedKeys.length} fragments`);
    assert.ok(deletedKeys.length > 0, "the deleted object's fragments should still be there");

    const maintenance = new AlbaMaintenance({ metadata: client.metadata, pool: client.pool, settings: { orphanGracePeriodMs: ORPHAN_GRACE_PERIOD_MS } });
    // Within the grace period: the deleted object's fragments and the leftover go; the failed upload's stay.
    const first = await maintenance.collectOrphans();
    const oldestStartMs = Math.min(...pending.map((upload) => Date.parse(upload.startedAt)));
    assert.ok(Date.now() < oldestStartMs + ORPHAN_GRACE_PERIOD_MS, "the first collection ran after the grace period: the machine is too slow for this test");
    assert.equal(first.orphanFragmentsDeleted, deletedKeys.length);
    assert.equal(first.leftoverFragmentsDeleted, 1);
    assert.equal(first.pendingUploadsRemoved, 0);
    const afterFirst = await keysOnAsds(asds);
    const expectedAfterFirst = new Set([...before].filter((entry) => !deletedKeys.includes(entry) && entry !== `${leftoverTarget} ${leftoverKey}`));
    assert.deepEqual([...afterFirst].sort(), [...expectedAfterFirst].sort());

    // After the grace period, with an upload going on at the same time: exactly the failed
    // upload's fragments go, and its pending record after them.
    await sleep(Math.max(0, oldestStartMs + ORPHAN_GRACE_PERIOD_MS + 200 - Date.now()));
    const concurrentData = random.bytes(2_000_000);
    const [second] = await Promise.all([maintenance.collectOrphans(), client.put(NAMESPACE, "concurrent", concurrentData)]);
    committed.set("concurrent", concurrentData);
    assert.equal(second.orphanFragmentsDeleted, failedKeys.length);
    assert.equal(second.leftoverFragmentsDeleted, 0);
    assert.equal(second.pendingUploadsRemoved, pending.length);
    assert.deepEqual(client.metadata.listPendingUploads(), []);
    const afterSecond = await keysOnAsds(asds);
    const concurrentId = client.metadata.getManifest(NAMESPACE, "concurrent")!.objectId;
    const expectedAfterSecond = [...expectedAfterFirst].filter((entry) => !failedKeys.includes(entry));
    assert.deepEqual([...afterSecond].filter((entry) => objectIdOf(entry) !== concurrentId).sort(), expectedAfterSecond.sort());
    assert.equal([...afterSecond].filter((entry) => objectIdOf(entry) === concurrentId).length, client.metadata.getManifest(NAMESPACE, "concurrent")!.chunks.length * 6);

    // A third run finds nothing, and every committed object reads back intact.
    const third = await maintenance.collectOrphans();
    assert.equal(third.orphanFragmentsDeleted + third.leftoverFragmentsDeleted, 0);
    for (const [key, data] of committed) assert.equal(sha256(await client.get(NAMESPACE, key)), sha256(data), `${key} (seed ${seed})`);
  });
});

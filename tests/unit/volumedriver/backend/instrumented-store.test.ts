// The instrumented store keeps the contract and counts requests, errors, bytes and latency per
// operation and per namespace, as plain JSON.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { InstrumentedObjectStore, LATENCY_BUCKET_UPPER_BOUNDS_MS } from "../../../../volumedriver/src/backend/instrumented-store.ts";
import { MemoryObjectStore } from "../../../../volumedriver/src/backend/memory-store.ts";
import { expectStoreError, runObjectStoreContract } from "./object-store-contract.ts";

runObjectStoreContract("instrumented(memory)", async () => ({
  store: new InstrumentedObjectStore(new MemoryObjectStore()),
  cleanup: async () => undefined,
}));

/** A clock that moves `stepMs` forward each time it is read, so every call takes exactly stepMs. */
function steppingClock(stepMs: () => number): () => number {
  let nowMs = 0;
  return () => (nowMs += stepMs());
}

describe("InstrumentedObjectStore", function () {
  it("instrumented_counts_requests_bytes_errors", async function () {
    // Goal: requests, bytes in and out and errors by kind are counted per operation and per namespace.
    const store = new InstrumentedObjectStore(new MemoryObjectStore());
    await store.createNamespace("one");
    await store.createNamespace("two");
    await store.put("one", "a", Buffer.alloc(1000));
    await store.put("one", "b", Buffer.alloc(24));
    await store.put("two", "a", Buffer.alloc(5));
    await store.get("one", "a");
    await store.get("one", "a", { offsetBytes: 900, lengthBytes: 500 });
    await expectStoreError(store.get("one", "missing"), "NotFound");
    await expectStoreError(store.put("one", "a", Buffer.alloc(7), { ifAbsent: true }), "PreconditionFailed");
    await expectStoreError(store.get("Bad Name", "a"), "Invalid");
    await store.listNamespaces();
    const snapshot = store.snapshot();
    assert.equal(snapshot.operations.put?.requests, 4);
    assert.equal(snapshot.operations.put?.bytesIn, 1036);
    assert.deepEqual(snapshot.operations.put?.errors, { PreconditionFailed: 1 });
    assert.equal(snapshot.operations.get?.requests, 4);
    assert.equal(snapshot.operations.get?.bytesOut, 1100);
    assert.deepEqual(snapshot.operations.get?.errors, { NotFound: 1, Invalid: 1 });
    assert.equal(snapshot.operations.listNamespaces?.requests, 1);
    assert.deepEqual(Object.keys(snapshot.namespaces).sort(), ["one", "two"]);
    assert.equal(snapshot.namespaces.one.put?.requests, 3);
    assert.equal(snapshot.namespaces.one.put?.bytesIn, 1031);
    assert.equal(snapshot.namespaces.two.put?.bytesIn, 5);
    assert.equal(snapshot.namespaces.one.get?.requests, 3);
    assert.equal(snapshot.namespaces.two.get, undefined);
  });

  it("instrumented_put_file_counts_as_put", async function () {
    // Goal: putFile counts as a put whose bytes in are the file's size, failures included.
    const sourceDirectory = await mkdtemp(path.join(os.tmpdir(), "ovs-instrumented-"));
    try {
      const store = new InstrumentedObjectStore(new MemoryObjectStore());
      await store.createNamespace("ns");
      const source = path.join(sourceDirectory, "sco");
      await writeFile(source, Buffer.alloc(1500));
      await store.putFile("ns", "a", source);
      await expectStoreError(store.putFile("ns", "a", source, { ifAbsent: true }), "PreconditionFailed");
      await expectStoreError(store.putFile("ns", "b", path.join(sourceDirectory, "missing")), "Invalid");
      const put = store.snapshot().namespaces.ns.put;
      assert.equal(put?.requests, 3);
      assert.equal(put?.bytesIn, 3000);
      assert.deepEqual(put?.errors, { PreconditionFailed: 1, Invalid: 1 });
      assert.equal(Object.keys(store.snapshot().operations).includes("putFile"), false);
    } finally {
      await rm(sourceDirectory, { recursive: true, force: true });
    }
  });

  it("instrumented_latency_sum_max_histogram", async function () {
    // Goal: latency sum, max and histogram buckets follow the injected clock.
    const stepsMs = [3, 3, 40, 40, 7000, 7000];
    const store = new InstrumentedObjectStore(new MemoryObjectStore(), { nowMs: steppingClock(() => stepsMs.shift() ?? 0) });
    await store.listNamespaces(); // 3 ms
    await store.listNamespaces(); // 40 ms
    await store.listNamespaces(); // 7000 ms
    const stats = store.snapshot().operations.listNamespaces;
    assert.equal(stats?.latencyMsSum, 3 + 40 + 7000);
    assert.equal(stats?.latencyMsMax, 7000);
    const expectedHistogram = new Array<number>(LATENCY_BUCKET_UPPER_BOUNDS_MS.length + 1).fill(0);
    expectedHistogram[LATENCY_BUCKET_UPPER_BOUNDS_MS.indexOf(5)] += 1;
    expectedHistogram[LATENCY_BUCKET_UPPER_BOUNDS_MS.indexOf(50)] += 1;
    expectedHistogram[LATENCY_BUCKET_UPPER_BOUNDS_MS.length] += 1;
    assert.deepEqual(stats?.latencyHistogram, expectedHistogram);
  });

  it("instrumented_snapshot_plain_json_and_reset", async function () {
    // Goal: a snapshot is a detached plain-JSON copy, and reset zeroes everything.
    const store = new InstrumentedObjectStore(new MemoryObjectStore());
    await store.createNamespace("ns");
    await store.put("ns", "k", Buffer.alloc(10));
    const snapshot = store.snapshot();
    assert.deepEqual(JSON.parse(JSON.stringify(snapshot)), snapshot);
    await store.put("ns", "k", Buffer.alloc(10));
    assert.equal(snapshot.operations.put?.requests, 1, "a snapshot does not change afterwards");
    store.reset();
    assert.deepEqual(store.snapshot(), { latencyBucketUpperBoundsMs: [...LATENCY_BUCKET_UPPER_BOUNDS_MS], operations: {}, namespaces: {} });
  });
});

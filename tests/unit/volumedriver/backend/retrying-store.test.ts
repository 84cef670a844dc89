// The retrying store keeps the contract over a flaky store, retries only Transient errors, gives
// up after attemptsMax with the last error, bounds its backoff, and resolves retried conditional puts.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FailingObjectStore } from "../../../../volumedriver/src/backend/failing-store.ts";
import { InstrumentedObjectStore } from "../../../../volumedriver/src/backend/instrumented-store.ts";
import { MemoryObjectStore } from "../../../../volumedriver/src/backend/memory-store.ts";
import { StoreError } from "../../../../volumedriver/src/backend/object-store.ts";
import type { NamespaceName, ObjectRange } from "../../../../volumedriver/src/backend/object-store.ts";
import { RetryingObjectStore } from "../../../../volumedriver/src/backend/retrying-store.ts";
import { expectStoreError, runObjectStoreContract } from "./object-store-contract.ts";

const FLAKY_SEED = 20240611;

runObjectStoreContract(`retrying(failing(memory, seed ${FLAKY_SEED}, 20% errors, 5% lost replies))`, async () => {
  const flaky = new FailingObjectStore(new MemoryObjectStore(), { seed: FLAKY_SEED, errorProbability: 0.2, replyLossProbability: 0.05 });
  return {
    store: new RetryingObjectStore(flaky, { attemptsMax: 20, sleep: async () => undefined }),
    cleanup: async () => undefined,
  };
});

/** A store whose get fails with the errors given, one per call, then succeeds. */
class ScriptedGetStore extends MemoryObjectStore {
  readonly thrown: StoreError[] = [];
  constructor(private readonly script: StoreError[]) {
    super();
  }
  override async get(namespace: NamespaceName, key: string, range?: ObjectRange): Promise<Buffer> {
    const error = this.script.shift();
    if (error !== undefined) {
      this.thrown.push(error);
      throw error;
    }
    return super.get(namespace, key, range);
  }
}

function recordingSleep(): { sleep: (durationMs: number) => Promise<void>; durationsMs: number[] } {
  const durationsMs: number[] = [];
  return { durationsMs, sleep: async (durationMs) => void durationsMs.push(durationMs) };
}

describe("RetryingObjectStore", function () {
  it("retry_transient_until_success", async function () {
    // Goal: Transient failures are retried, with one backoff between attempts, until the call succeeds.
    const failing = new FailingObjectStore(new MemoryObjectStore(), { seed: 1 });
    const counted = new InstrumentedObjectStore(failing);
    const { sleep, durationsMs } = recordingSleep();
    const store = new RetryingObjectStore(counted, { sleep });
    await store.createNamespace("ns");
    failing.failNext(3);
    await store.put("ns", "k", Buffer.from("x"));
    assert.equal(counted.snapshot().operations.put?.requests, 4);
    assert.equal(durationsMs.length, 3);
    assert.deepEqual(await store.get("ns", "k"), Buffer.from("x"));
  });

  it("retry_not_for_invalid_or_not_found", async function () {
    // Goal: Invalid, NotFound, PreconditionFailed, Corrupt and Closed pass through after one attempt.
    const failing = new FailingObjectStore(new MemoryObjectStore(), { seed: 1 });
    const counted = new InstrumentedObjectStore(failing);
    const { sleep, durationsMs } = recordingSleep();
    const store = new RetryingObjectStore(counted, { sleep });
    await store.createNamespace("ns");
    await expectStoreError(store.get("ns", "missing"), "NotFound");
    await expectStoreError(store.get("ns", "/bad"), "Invalid");
    for (const kind of ["Invalid", "NotFound", "PreconditionFailed", "Corrupt", "Closed", "Internal"] as const) {
      failing.failNext(1, kind);
      await expectStoreError(store.head("ns", "k"), kind);
    }
    assert.equal(counted.snapshot().operations.get?.requests, 2);
    assert.equal(counted.snapshot().operations.head?.requests, 6);
    assert.deepEqual(durationsMs, []);
  });

  it("retry_gives_up_with_last_error", async function () {
    // Goal: after attemptsMax Transient failures the call fails with the last error, unchanged.
    const script = Array.from({ length: 10 }, (_, index) => new StoreError("Transient", `failure ${index + 1}`));
    const inner = new ScriptedGetStore(script);
    const { sleep, durationsMs } = recordingSleep();
    const store = new RetryingObjectStore(inner, { attemptsMax: 4, sleep });
    await assert.rejects(store.get("ns", "k"), (error: unknown) => error === inner.thrown[3]);
    assert.equal(inner.thrown.length, 4);
    assert.equal(durationsMs.length, 3, "no backoff after the last attempt");
  });

  it("retry_backoff_bounded_exponential_with_jitter", async function () {
    // Goal: backoff doubles from backoffInitialMs, never exceeds backoffMaxMs, and jitter keeps it in [base/2, base].
    const inner = new ScriptedGetStore(Array.from({ length: 20 }, () => new StoreError("Transient", "down")));
    for (const [random, expectedMs] of [
      [() => 0, [25, 50, 100, 200, 200, 200, 200, 200, 200]],
      [() => 0.999999, [50, 100, 200, 400, 400, 400, 400, 400, 400]],
    ] as const) {
      const { sleep, durationsMs } = recordingSleep();
      const store = new RetryingObjectStore(inner, { attemptsMax: 10, backoffInitialMs: 50, backoffMaxMs: 400, sleep, random });
      inner.thrown.length = 0;
      await expectStoreError(store.get("ns", "k"), "Transient");
      assert.deepEqual(durationsMs.map(Math.round), expectedMs);
    }
    const store = new RetryingObjectStore(inner, { backoffInitialMs: 50, backoffMaxMs: 2000 });
    for (let failedAttempts = 1; failedAttempts <= 40; failedAttempts++) {
      const backoffMs = store.backoffMs(failedAttempts);
      assert.ok(backoffMs > 0 && backoffMs <= 2000, `backoff ${backoffMs} ms after ${failedAttempts} failures`);
    }
  });

  it("retry_if_absent_after_lost_reply_succeeds", async function () {
    // Goal: an ifAbsent put whose first reply was lost (it landed) succeeds on retry instead of failing PreconditionFailed.
    const failing = new FailingObjectStore(new MemoryObjectStore(), { seed: 1 });
    const store = new RetryingObjectStore(failing, { sleep: async () => undefined });
    await store.createNamespace("ns");
    failing.failNext(1, "Transient", "after");
    const info = await store.put("ns", "k", Buffer.from("mine"), { ifAbsent: true });
    assert.deepEqual(await store.head("ns", "k"), info);
    const first = await store.put("ns", "m", Buffer.from("v1"));
    failing.failNext(1, "Transient", "after");
    const second = await store.put("ns", "m", Buffer.from("v2"), { ifMatch: first.etag });
    assert.deepEqual(await store.head("ns", "m"), second);
  });

  it("retry_put_file_if_absent_after_lost_reply_succeeds", async function () {
    // Goal: a conditional putFile whose first reply was lost succeeds on retry (the check reads the file), and loses to other bytes.
    const sourceDirectory = await mkdtemp(path.join(os.tmpdir(), "ovs-retrying-"));
    try {
      const failing = new FailingObjectStore(new MemoryObjectStore(), { seed: 1 });
      const store = new RetryingObjectStore(failing, { sleep: async () => undefined });
      await store.createNamespace("ns");
      const mine = path.join(sourceDirectory, "mine");
      await writeFile(mine, "mine");
      failing.failNext(1, "Transient", "after");
      const info = await store.putFile("ns", "k", mine, { ifAbsent: true });
      assert.deepEqual(await store.head("ns", "k"), info);
      const other = path.join(sourceDirectory, "other");
      await writeFile(other, "else");
      failing.failNext(1, "Transient");
      await expectStoreError(store.putFile("ns", "k", other, { ifAbsent: true }), "PreconditionFailed");
    } finally {
      await rm(sourceDirectory, { recursive: true, force: true });
    }
  });

  it("retry_if_absent_lost_to_other_writer_fails", async function () {
    // Goal: after an ambiguous attempt, PreconditionFailed still passes through when the object holds other bytes.
    const failing = new FailingObjectStore(new MemoryObjectStore(), { seed: 1 });
    const store = new RetryingObjectStore(failing, { sleep: async () => undefined });
    await store.createNamespace("ns");
    await store.put("ns", "k", Buffer.from("theirs"));
    failing.failNext(1, "Transient");
    await expectStoreError(store.put("ns", "k", Buffer.from("minexx"), { ifAbsent: true }), "PreconditionFailed");
    failing.failNext(1, "Transient");
    await expectStoreError(store.put("ns", "k", Buffer.from("mine"), { ifAbsent: true }), "PreconditionFailed");
    assert.deepEqual(await store.get("ns", "k"), Buffer.from("theirs"));
  });

  it("retry_stops_on_close", async function () {
    // Goal: closing the store ends a call waiting in backoff with Closed instead of retrying on.
    const failing = new FailingObjectStore(new MemoryObjectStore(), { seed: 1 });
    const store = new RetryingObjectStore(failing, { attemptsMax: 100, backoffInitialMs: 60_000, backoffMaxMs: 60_000 });
    await store.createNamespace("ns");
    failing.failNext(100);
    const pending = store.list("ns");
    await new Promise((resolve) => setImmediate(resolve));
    await store.close();
    await expectStoreError(pending, "Closed");
  });

  it("retry_settings_checked", async function () {
    // Goal: impossible settings are refused when the store is built.
    const inner = new MemoryObjectStore();
    assert.throws(() => new RetryingObjectStore(inner, { attemptsMax: 0 }), RangeError);
    assert.throws(() => new RetryingObjectStore(inner, { backoffInitialMs: 100, backoffMaxMs: 10 }), RangeError);
  });
});

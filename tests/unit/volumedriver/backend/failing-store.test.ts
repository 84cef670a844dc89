// The failing store injects seeded, reproducible faults (errors, lost replies, timeouts,
// outages, planned failures) and otherwise keeps the contract.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FailingObjectStore } from "../../../../volumedriver/src/backend/failing-store.ts";
import type { FailingObjectStoreOptions } from "../../../../volumedriver/src/backend/failing-store.ts";
import { MemoryObjectStore } from "../../../../volumedriver/src/backend/memory-store.ts";
import { isStoreError } from "../../../../volumedriver/src/backend/object-store.ts";
import { expectStoreError, runObjectStoreContract } from "./object-store-contract.ts";

runObjectStoreContract("failing(memory, probabilities 0)", async () => ({
  store: new FailingObjectStore(new MemoryObjectStore(), { seed: 1 }),
  cleanup: async () => undefined,
}));

/** Which of `count` heads fail, as a string of '.' (success) and 'x' (Transient). */
async function faultPattern(options: FailingObjectStoreOptions, count: number): Promise<string> {
  const memory = new MemoryObjectStore();
  await memory.createNamespace("ns");
  const store = new FailingObjectStore(memory, options);
  let pattern = "";
  for (let index = 0; index < count; index++) {
    try {
      await store.head("ns", "k");
      pattern += ".";
    } catch (error) {
      assert.ok(isStoreError(error, "Transient"), String(error));
      pattern += "x";
    }
  }
  return pattern;
}

describe("FailingObjectStore", function () {
  it("failing_same_seed_same_faults", async function () {
    // Goal: the same seed gives the same fault sequence; another seed gives another; the rate is near the probability.
    const first = await faultPattern({ seed: 42, errorProbability: 0.3 }, 400);
    const again = await faultPattern({ seed: 42, errorProbability: 0.3 }, 400);
    const other = await faultPattern({ seed: 43, errorProbability: 0.3 }, 400);
    assert.equal(again, first);
    assert.notEqual(other, first);
    const faults = [...first].filter((mark) => mark === "x").length;
    assert.ok(faults > 80 && faults < 160, `${faults} faults of 400 at p=0.3`);
  });

  it("failing_messages_name_seed_and_call", async function () {
    // Goal: an injected fault says it is injected and prints the seed and call number to replay it.
    const store = new FailingObjectStore(new MemoryObjectStore(), { seed: 1234, errorProbability: 1 });
    await assert.rejects(store.listNamespaces(), (error: unknown) => {
      assert.ok(isStoreError(error, "Transient"));
      assert.match(error.message, /injected fault \(seed 1234, call 1\): listNamespaces/);
      return true;
    });
    assert.equal(store.faultsInjected, 1);
  });

  it("failing_outage_fails_everything_then_recovers", async function () {
    // Goal: during an outage every call fails Transient; when it times out or is ended, calls succeed again.
    let nowMs = 0;
    const store = new FailingObjectStore(new MemoryObjectStore(), { seed: 1, operations: ["put"], nowMs: () => nowMs });
    await store.createNamespace("ns");
    store.startOutage(1000);
    for (const call of [() => store.listNamespaces(), () => store.get("ns", "k"), () => store.createNamespace("other")]) {
      await assert.rejects(call(), (error: unknown) => isStoreError(error, "Transient") && /injected outage/.test(error.message));
    }
    nowMs = 999;
    await expectStoreError(store.head("ns", "k"), "Transient");
    nowMs = 1000;
    assert.equal(await store.head("ns", "k"), undefined);
    store.startOutage();
    nowMs = 1e9;
    await expectStoreError(store.head("ns", "k"), "Transient");
    store.endOutage();
    assert.equal(await store.head("ns", "k"), undefined);
  });

  it("failing_timeout_waits_then_fails", async function () {
    // Goal: a timeout fault waits timeoutMs on the injected sleep, fails Transient and never reaches the store below.
    const sleptMs: number[] = [];
    const memory = new MemoryObjectStore();
    await memory.createNamespace("ns");
    const store = new FailingObjectStore(memory, { seed: 5, timeoutProbability: 1, timeoutMs: 250, sleep: async (ms) => void sleptMs.push(ms) });
    await assert.rejects(store.put("ns", "k", Buffer.from("x")), (error: unknown) => isStoreError(error, "Transient") && /timeout after 250 ms/.test(error.message));
    assert.deepEqual(sleptMs, [250]);
    assert.equal(await memory.head("ns", "k"), undefined);
  });

  it("failing_reply_loss_reaches_inner", async function () {
    // Goal: a lost reply fails Transient although the store below carried the call out.
    const memory = new MemoryObjectStore();
    await memory.createNamespace("ns");
    const store = new FailingObjectStore(memory, { seed: 5, replyLossProbability: 1 });
    await expectStoreError(store.put("ns", "k", Buffer.from("x")), "Transient");
    assert.deepEqual(await memory.get("ns", "k"), Buffer.from("x"));
  });

  it("failing_fail_next_and_operation_filter", async function () {
    // Goal: failNext fails exactly the next n faultable calls with the kind given; other operations are never faulted.
    const store = new FailingObjectStore(new MemoryObjectStore(), { seed: 9, errorProbability: 1, operations: ["put", "get"] });
    await store.createNamespace("ns");
    assert.deepEqual(await store.list("ns"), { objects: [] });
    store.failNext(2, "NotFound");
    await expectStoreError(store.get("ns", "k"), "NotFound");
    await expectStoreError(store.put("ns", "k", Buffer.from("x")), "NotFound");
    await assert.rejects(store.put("ns", "k", Buffer.from("x")), (error: unknown) => isStoreError(error, "Transient") && /injected fault/.test(error.message));
    assert.equal(await store.head("ns", "k"), undefined);
  });

  it("failing_put_file_faulted_as_put", async function () {
    // Goal: putFile is faulted as a put: the operation "put" selects it, and a lost reply still stores the file.
    const sourceDirectory = await mkdtemp(path.join(os.tmpdir(), "ovs-failing-"));
    try {
      const memory = new MemoryObjectStore();
      await memory.createNamespace("ns");
      const store = new FailingObjectStore(memory, { seed: 3, operations: ["put"] });
      const source = path.join(sourceDirectory, "sco");
      await writeFile(source, "x");
      store.failNext(1, "Transient", "after");
      await assert.rejects(store.putFile("ns", "k", source), (error: unknown) => isStoreError(error, "Transient") && /: put ns\/k$/.test(error.message));
      assert.deepEqual(await memory.get("ns", "k"), Buffer.from("x"));
      assert.equal(store.faultsInjected, 1);
    } finally {
      await rm(sourceDirectory, { recursive: true, force: true });
    }
  });

  it("failing_settings_checked", async function () {
    // Goal: probabilities outside [0, 1] or summing above 1 are refused.
    const inner = new MemoryObjectStore();
    assert.throws(() => new FailingObjectStore(inner, { seed: 1, errorProbability: -0.1 }), RangeError);
    assert.throws(() => new FailingObjectStore(inner, { seed: 1, errorProbability: 0.6, timeoutProbability: 0.6 }), RangeError);
  });
});

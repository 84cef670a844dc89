// Goal: a preset's whole life after add: update (new policies for new objects only, default) and
// delete (refused while a namespace uses it or it is the default), in the metadata store and over
// the proxy's HTTP API (PATCH and DELETE /v1/presets/NAME: 200/204, 400, 404, 409 with messages
// that say what to do). The proxy runs in-process on loopback over in-memory ASDs, as in
// proxy-server.test.ts.
import assert from "node:assert/strict";
import path from "node:path";
import type { AsdApi } from "../../../alba/src/asd/asd-api.ts";
import { AlbaClient } from "../../../alba/src/client/alba-client.ts";
import { isAlbaError } from "../../../alba/src/client/alba-client-api.ts";
import { AsdPool } from "../../../alba/src/client/asd-pool.ts";
import { MetadataError, type AsdRecord, type MetadataErrorKind } from "../../../alba/src/metadata/metadata-store.ts";
import { SqliteMetadataStore } from "../../../alba/src/metadata/sqlite-metadata-store.ts";
import { defaultPreset, validatePreset } from "../../../alba/src/preset/preset-validation.ts";
import type { Policy, Preset } from "../../../alba/src/preset/preset.ts";
import { ProxyClient } from "../../../alba/src/proxy/proxy-client.ts";
import { startProxyServer, type RunningProxyServer } from "../../../alba/src/proxy/proxy-server.ts";
import { MemoryAsd } from "../../helpers/memory-asd.ts";
import { SeededRandom, seedFromEnvironment } from "../../helpers/seeded-random.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

const POLICY_2_1: Policy = { k: 2, m: 1, c: 3, x: 1 };
const POLICY_4_2: Policy = { k: 4, m: 2, c: 5, x: 2 };

function preset(name: string, policies: Policy[] = [POLICY_2_1], extra: Partial<Preset> = {}): Preset {
  return validatePreset({ name, policies, fragmentSizeBytes: 4096, compression: "none", encryption: "none", ...extra });
}

/** Asserts that `action` throws a MetadataError of `kind` whose message matches `message`; returns the message. */
function expectMetadataError(kind: MetadataErrorKind, message: RegExp, action: () => unknown): string {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof MetadataError, `expected MetadataError(${kind}), got ${String(caught)}`);
  assert.equal(caught.kind, kind, caught.message);
  assert.match(caught.message, message);
  return caught.message;
}

describe("Alba preset lifecycle: metadata store", function () {
  const temp = new TempDirs("alba-preset-lifecycle");
  let store: SqliteMetadataStore;
  let filePath: string;

  beforeEach(async function () {
    filePath = path.join(await temp.make(), "metadata.sqlite");
    store = SqliteMetadataStore.open(filePath);
    store.addPreset(defaultPreset());
    store.setDefaultPreset("default");
    store.addPreset(preset("p"));
  });

  afterEach(function () {
    store.close();
  });

  after(async function () {
    await temp.removeAll();
  });

  it("delete_refused_while_namespaces_use_it_naming_a_few_and_counting_all", function () {
    // Goal: a preset in use cannot be deleted; the refusal names up to 5 namespaces and counts the rest; once none uses it, it goes, and its name can be reused.
    for (let index = 1; index <= 7; index++) store.createNamespace(`ns-${index}`, "p");
    expectMetadataError("InUse", /^preset p cannot be deleted: 7 namespaces use it \(ns-1, ns-2, ns-3, ns-4, ns-5, and 2 more\): delete them first$/,
      () => store.deletePreset("p"));
    for (let index = 1; index <= 6; index++) store.deleteNamespace(`ns-${index}`);
    expectMetadataError("InUse", /^preset p cannot be deleted: 1 namespace uses it \(ns-7\): delete them first$/, () => store.deletePreset("p"));
    assert.deepEqual(store.getPreset("p"), preset("p"), "a refused delete leaves the preset as it was");
    store.deleteNamespace("ns-7");
    store.deletePreset("p");
    assert.equal(store.getPreset("p"), undefined);
    assert.deepEqual(store.listPresets().map((each) => each.name), ["default"]);
    store.addPreset(preset("p", [POLICY_4_2], { fragmentSizeBytes: 8192 }));
    assert.equal(store.getPreset("p")?.fragmentSizeBytes, 8192, "a deleted preset's name can be added again with other settings");
  });

  it("delete_refused_while_default_until_another_preset_is_the_default", function () {
    // Goal: the default preset cannot be deleted (new namespaces would have none); update(default: true) of another preset makes it deletable; a preset both in use and default gives both reasons.
    store.setDefaultPreset("p");
    expectMetadataError("InUse", /^preset p cannot be deleted: it is the default preset \(new namespaces get it\): make another preset the default first$/,
      () => store.deletePreset("p"));
    store.createNamespace("ns", "p");
    expectMetadataError("InUse", /1 namespace uses it \(ns\): delete them first; it is the default preset/, () => store.deletePreset("p"));
    store.deleteNamespace("ns");
    store.updatePreset("default", { default: true });
    assert.equal(store.defaultPresetName(), "default");
    store.deletePreset("p");
    assert.equal(store.getPreset("p"), undefined);
    expectMetadataError("InUse", /it is the default preset/, () => store.deletePreset("default"));
  });

  it("delete_and_update_of_a_missing_preset_are_not_found", function () {
    // Goal: both name the missing preset, and change nothing.
    expectMetadataError("NotFound", /^preset nope does not exist$/, () => store.deletePreset("nope"));
    expectMetadataError("NotFound", /^preset nope does not exist$/, () => store.updatePreset("nope", { policies: [POLICY_2_1] }));
    assert.deepEqual(store.listPresets().map((each) => each.name), ["default", "p"]);
  });

  it("update_replaces_policies_checked_exactly_as_on_add_and_survives_reopen", function () {
    // Goal: new policies are stored (other fields untouched) and read back after reopening; bad policies are refused with the same problems an add reports, and change nothing.
    const updated = store.updatePreset("p", { policies: [POLICY_4_2, POLICY_2_1] });
    assert.deepEqual(updated, { ...preset("p"), policies: [POLICY_4_2, POLICY_2_1] });
    store.close();
    store = SqliteMetadataStore.open(filePath);
    assert.deepEqual(store.getPreset("p"), updated, "the update is stored");
    assert.equal(store.defaultPresetName(), "default", "a policies update does not touch the default");

    const bad = [{ k: 2, m: 1, c: 1, x: 1 }, { k: 30, m: 1, c: 30, x: 1 }];
    const addMessage = expectMetadataError("Invalid", /^invalid preset "q": /, () => store.addPreset({ ...preset("q"), policies: bad }));
    const updateMessage = expectMetadataError("Invalid", /^invalid change of preset "p": policies\[0\]: c must be between k and k \+ m/,
      () => store.updatePreset("p", { policies: bad }));
    assert.equal(updateMessage.replace(/^invalid change of preset "p": /, ""), addMessage.replace(/^invalid preset "q": /, ""),
      "an update lists exactly the problems an add of the same policies lists");
    expectMetadataError("Invalid", /policies must be a list of 1\.\.16 policies/, () => store.updatePreset("p", { policies: [] }));
    assert.deepEqual(store.getPreset("p"), updated, "refused updates change nothing");
  });

  it("update_refuses_other_fields_unless_unchanged", function () {
    // Goal: fragment size, codecs and name cannot change (the message says to add a new preset); sent with their current values they are accepted; empty, default:false and unknown fields are refused.
    expectMetadataError("Invalid", /fragmentSizeBytes cannot change once a preset exists \(its objects are read with them\): add a new preset instead/,
      () => store.updatePreset("p", { policies: [POLICY_4_2], fragmentSizeBytes: 8192 } as never));
    expectMetadataError("Invalid", /compression, encryption cannot change .*add a new preset instead/,
      () => store.updatePreset("p", { compression: "lz4", encryption: "aes-256-ctr" } as never));
    expectMetadataError("Invalid", /name cannot change/, () => store.updatePreset("p", { name: "q", policies: [POLICY_4_2] } as never));
    expectMetadataError("Invalid", /nothing to change: give policies, default: true, or both/, () => store.updatePreset("p", {}));
    expectMetadataError("Invalid", /default can only be true .*make another preset the default/, () => store.updatePreset("p", { default: false }));
    expectMetadataError("Invalid", /unknown field "colour"/, () => store.updatePreset("p", { colour: "red", policies: [POLICY_4_2] } as never));
    assert.deepEqual(store.getPreset("p"), preset("p"), "refused updates change nothing");
    const whole = store.updatePreset("p", { ...preset("p"), policies: [POLICY_4_2] });
    assert.deepEqual(whole.policies, [POLICY_4_2], "a whole preset sent back with new policies is accepted");
    store.updatePreset("p", { default: true });
    assert.equal(store.defaultPresetName(), "p");
    assert.deepEqual(store.getPreset("p")?.policies, [POLICY_4_2], "default: true alone keeps the policies");
  });
});

describe("Alba preset lifecycle: proxy HTTP API", function () {
  const temp = new TempDirs("alba-preset-proxy");
  const seed = seedFromEnvironment();
  let directory: string;
  let asds: MemoryAsd[];
  let albaClient: AlbaClient;
  let server: RunningProxyServer;
  let proxy: ProxyClient;

  /** An AlbaClient over the metadata file in `directory` and the shared in-memory ASDs. */
  function openClient(): AlbaClient {
    const metadata = SqliteMetadataStore.open(path.join(directory, "metadata.sqlite"));
    const pool = new AsdPool({ metadata, connect: (record: AsdRecord): AsdApi => asds[record.port - 7000]!, background: false });
    return new AlbaClient({ metadata, pool });
  }

  async function call(method: string, url: string, body?: unknown): Promise<{ status: number; json: { code?: string; message?: string } & Record<string, unknown> }> {
    const response = await fetch(`${server.url}${url}`, {
      method, ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, json: text === "" ? {} : JSON.parse(text) as { code?: string; message?: string } };
  }

  async function expectError(status: number, code: string, message: RegExp, method: string, url: string, body?: unknown): Promise<void> {
    const answer = await call(method, url, body);
    assert.equal(answer.status, status, `${method} ${url}: ${JSON.stringify(answer.json)}`);
    assert.equal(answer.json.code, code);
    assert.match(answer.json.message ?? "", message);
  }

  beforeEach(async function () {
    directory = await temp.make();
    // 6 ASDs on 3 node ids: room for (2,1,3,1) and for (4,2,5,2).
    asds = Array.from({ length: 6 }, (_, index) => new MemoryAsd(`asd-${index}`, `node-${index % 3}`));
    albaClient = openClient();
    for (const [index] of asds.entries()) await albaClient.claimAsd("memory", 7000 + index);
    albaClient.metadata.addPreset(defaultPreset());
    albaClient.metadata.setDefaultPreset("default");
    await albaClient.addPreset(preset("p"));
    await albaClient.addPreset(preset("secret", [POLICY_2_1], { encryption: "aes-256-ctr", encryptionKeyHex: "ab".repeat(32) }));
    await albaClient.createNamespace("ns", { presetName: "p" });
    server = await startProxyServer({ api: albaClient, host: "127.0.0.1", port: 0 });
    proxy = new ProxyClient(server.url, { useLocalSocket: false });
  });

  afterEach(async function () {
    await proxy.close();
    await server.close();
    await albaClient.close();
  });

  after(async function () {
    await temp.removeAll();
  });

  it("new_objects_get_the_new_policies_old_objects_keep_theirs_and_read_back", async function () {
    // Goal: after PATCH policies, a new object's manifest records the new policy while an object written before keeps its manifest and reads back byte-identical, also through a fresh client with no caches (reads follow the manifest's policy, not the preset's).
    const random = new SeededRandom(seed);
    const oldData = Buffer.from(random.fill(new Uint8Array(50_000)));
    const newData = Buffer.from(random.fill(new Uint8Array(70_000)));
    await proxy.put("ns", "old", oldData);
    const oldManifest = await proxy.getManifest("ns", "old");
    assert.deepEqual(oldManifest?.policy, POLICY_2_1, `seed ${seed}`);

    const updated = await proxy.updatePreset("p", { policies: [POLICY_4_2] });
    assert.deepEqual(updated.policies, [POLICY_4_2]);
    await proxy.put("ns", "new", newData);
    const newManifest = await proxy.getManifest("ns", "new");
    assert.deepEqual(newManifest?.policy, POLICY_4_2, "a new object is written with the new policy");
    assert.equal(newManifest?.chunkSizeBytes, 4 * 4096);
    assert.equal(newManifest?.chunks[0]?.fragments.length, 6);
    assert.deepEqual(await proxy.getManifest("ns", "old"), oldManifest, "the old object's manifest is untouched");
    assert.deepEqual(await proxy.get("ns", "old"), oldData, `old object reads back (seed ${seed})`);
    assert.deepEqual(await proxy.get("ns", "new"), newData, `new object reads back (seed ${seed})`);

    // A second proxy on the same metadata and ASDs has no manifest, fragment or preset cache.
    const freshClient = openClient();
    const freshServer = await startProxyServer({ api: freshClient, host: "127.0.0.1", port: 0 });
    const freshProxy = new ProxyClient(freshServer.url, { useLocalSocket: false });
    try {
      assert.deepEqual(await freshProxy.get("ns", "old"), oldData, `old object reads back without caches (seed ${seed})`);
      assert.deepEqual(await freshProxy.getRanges("ns", "old", [{ offsetBytes: 12_345, lengthBytes: 20_000 }]), [oldData.subarray(12_345, 32_345)]);
      assert.deepEqual(await freshProxy.get("ns", "new"), newData);
      assert.deepEqual((await freshProxy.listPresets()).find((each) => each.name === "p")?.policies, [POLICY_4_2], "the change is stored");
    } finally {
      await freshProxy.close();
      await freshServer.close();
      await freshClient.close();
    }
  });

  it("delete_is_409_while_used_or_default_then_204_then_404", async function () {
    // Goal: DELETE /v1/presets/NAME refuses a preset in use or the default (409 Conflict, saying what to do), deletes an unused one (204, gone from GET), and 404s a missing one; ProxyClient maps the same.
    await expectError(409, "Conflict", /^preset p cannot be deleted: 1 namespace uses it \(ns\): delete them first$/, "DELETE", "/v1/presets/p");
    await assert.rejects(proxy.deletePreset("p"), (error: unknown) => isAlbaError(error, "Conflict") && /1 namespace uses it/.test(error.message));
    await proxy.deleteNamespace("ns");
    assert.equal((await call("PATCH", "/v1/presets/p", { default: true })).status, 200);
    await expectError(409, "Conflict", /it is the default preset \(new namespaces get it\): make another preset the default first/, "DELETE", "/v1/presets/p");
    assert.equal(albaClient.metadata.defaultPresetName(), "p");
    await proxy.updatePreset("default", { default: true });
    assert.equal(albaClient.metadata.defaultPresetName(), "default");
    const deleted = await call("DELETE", "/v1/presets/p");
    assert.equal(deleted.status, 204);
    assert.deepEqual((await proxy.listPresets()).map((each) => each.name), ["default", "secret"]);
    await expectError(404, "NotFound", /^preset p does not exist$/, "DELETE", "/v1/presets/p");
    await assert.rejects(proxy.deletePreset("p"), (error: unknown) => isAlbaError(error, "NotFound"));
    await assert.rejects(proxy.createNamespace("ns2", { presetName: "p" }), (error: unknown) => isAlbaError(error, "NotFound"), "a deleted preset cannot be used");
    await expectError(404, "Invalid", /no such route PUT/, "PUT", "/v1/presets/secret", {});
  });

  it("update_is_200_without_secrets_400_when_invalid_404_when_missing", async function () {
    // Goal: PATCH /v1/presets/NAME answers the preset without its key; invalid policies, fixed fields, an empty change and bad JSON are 400 with the problem named; a missing preset is 404; refused changes change nothing.
    const answer = await call("PATCH", "/v1/presets/secret", { policies: [POLICY_4_2] });
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.deepEqual(answer.json.policies, [POLICY_4_2]);
    assert.equal(answer.json.encrypted, true);
    assert.equal(answer.json.encryptionKeyHex, undefined, "the key never leaves the proxy");
    assert.ok(!JSON.stringify(answer.json).includes("ab".repeat(32)));
    assert.equal(albaClient.metadata.getPreset("secret")?.encryptionKeyHex, "ab".repeat(32), "the key is kept");

    await expectError(400, "Invalid", /^invalid change of preset "p": policies\[0\]: c must be between k and k \+ m \(2\.\.3\), got 1/,
      "PATCH", "/v1/presets/p", { policies: [{ k: 2, m: 1, c: 1, x: 1 }] });
    await expectError(400, "Invalid", /fragmentSizeBytes cannot change .*: add a new preset instead/, "PATCH", "/v1/presets/p", { fragmentSizeBytes: 8192 });
    await expectError(400, "Invalid", /encryptionKeyHex cannot change/, "PATCH", "/v1/presets/secret", { encryptionKeyHex: "cd".repeat(32), policies: [POLICY_2_1] });
    await expectError(400, "Invalid", /nothing to change/, "PATCH", "/v1/presets/p", {});
    await expectError(400, "Invalid", /not valid JSON/, "PATCH", "/v1/presets/p", "{policies");
    await expectError(404, "NotFound", /^preset nope does not exist$/, "PATCH", "/v1/presets/nope", { policies: [POLICY_2_1] });
    await assert.rejects(proxy.updatePreset("p", { policies: [] }), (error: unknown) => isAlbaError(error, "Invalid") && /policies must be a list/.test(error.message));
    await assert.rejects(proxy.updatePreset("nope", { default: true }), (error: unknown) => isAlbaError(error, "NotFound"));
    const presets = await proxy.listPresets();
    assert.deepEqual(presets.find((each) => each.name === "p")?.policies, [POLICY_2_1], "refused changes change nothing");
    assert.deepEqual(presets.find((each) => each.name === "secret")?.policies, [POLICY_4_2]);
    assert.equal(albaClient.metadata.getPreset("secret")?.encryptionKeyHex, "ab".repeat(32));
    assert.equal(albaClient.metadata.defaultPresetName(), "default");
  });
});

// Goal: the SQLite metadata store keeps ASDs, presets, namespaces, manifests and pending uploads exactly as the AlbaMetadataStore interface says, across reopen.
import assert from "node:assert/strict";
import path from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { MetadataError } from "../../../alba/src/metadata/metadata-store.ts";
import type { MetadataErrorKind, ObjectManifest } from "../../../alba/src/metadata/metadata-store.ts";
import { METADATA_SCHEMA_VERSION, SqliteMetadataStore } from "../../../alba/src/metadata/sqlite-metadata-store.ts";
import { defaultPreset } from "../../../alba/src/preset/preset-validation.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

const temps = new TempDirs("alba-metadata");
let objectCounter = 0;

function objectId(): string {
  objectCounter++;
  return objectCounter.toString(16).padStart(32, "0");
}

/** A one-chunk (2, 1) manifest with its fragments on `asds` (null = missing). */
function manifest(namespace: string, key: string, asds: Array<string | null> = ["a1", "a2", "a3"], id = objectId()): ObjectManifest {
  return {
    namespace, key, objectId: id, sizeBytes: 10, createdAt: new Date().toISOString(), presetName: "default",
    policy: { k: 2, m: 1, c: 2, x: 2 }, compression: "none", encryption: "none", chunkSizeBytes: 8192,
    chunks: [{ sizeBytes: 10, fragmentSizeBytes: 8, fragments: asds.map((asdId) => ({ asdId, storedSizeBytes: 8, crc32c: 0xdeadbeef, compressed: false })) }],
  };
}

function isMetadataError(kind: MetadataErrorKind) {
  return (error: unknown): boolean => error instanceof MetadataError && error.kind === kind;
}

async function openFresh(): Promise<{ store: SqliteMetadataStore; filePath: string }> {
  const filePath = path.join(await temps.make(), "metadata.sqlite");
  const store = SqliteMetadataStore.open(filePath);
  store.addPreset(defaultPreset());
  return { store, filePath };
}

describe("alba sqlite metadata store", function () {
  const open: SqliteMetadataStore[] = [];
  after(async function () {
    for (const store of open) store.close();
    await temps.removeAll();
  });
  async function fresh(): Promise<{ store: SqliteMetadataStore; filePath: string }> {
    const result = await openFresh();
    open.push(result.store);
    return result;
  }

  it("schema_is_versioned_and_wal", async function () {
    // Goal: a new file gets the current user_version in WAL mode; a file from a newer schema is refused; reopening keeps data.
    const { store, filePath } = await fresh();
    store.close();
    const raw = new Database(filePath);
    assert.equal(raw.pragma("user_version", { simple: true }), METADATA_SCHEMA_VERSION);
    assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
    raw.close();
    const reopened = SqliteMetadataStore.open(filePath);
    assert.deepEqual(reopened.getPreset("default"), defaultPreset());
    reopened.close();
    const newer = new Database(filePath);
    newer.pragma(`user_version = ${METADATA_SCHEMA_VERSION + 1}`);
    newer.close();
    assert.throws(() => SqliteMetadataStore.open(filePath), /newer than this program/);
  });

  it("asds_add_update_list", async function () {
    // Goal: ASDs are added once, updated in place (host, port, state), listed, and unknown ones are NotFound.
    const { store } = await fresh();
    const record = { asdId: "asd-1", nodeId: "n1", host: "127.0.0.1", port: 9001, state: "claimed" as const, claimedAt: "2024-01-01T00:00:00.000Z" };
    store.addAsd(record);
    assert.throws(() => store.addAsd(record), isMetadataError("Conflict"));
    store.addAsd({ ...record, asdId: "asd-0", nodeId: "n2" });
    store.updateAsd("asd-1", { port: 9005, state: "decommissioned" });
    assert.deepEqual(store.getAsd("asd-1"), { ...record, port: 9005, state: "decommissioned" });
    assert.deepEqual(store.listAsds().map((asd) => asd.asdId), ["asd-0", "asd-1"]);
    assert.throws(() => store.updateAsd("nope", { port: 1 }), isMetadataError("NotFound"));
    assert.equal(store.getAsd("nope"), undefined);
  });

  it("presets_and_default", async function () {
    // Goal: presets are validated, unique, listed by name; the default preset must exist.
    const { store } = await fresh();
    assert.throws(() => store.addPreset(defaultPreset()), isMetadataError("Conflict"));
    assert.throws(() => store.addPreset({ ...defaultPreset("bad"), fragmentSizeBytes: 5 }), isMetadataError("Invalid"));
    store.addPreset(defaultPreset("another"));
    assert.deepEqual(store.listPresets().map((preset) => preset.name), ["another", "default"]);
    assert.equal(store.defaultPresetName(), undefined);
    assert.throws(() => store.setDefaultPreset("missing"), isMetadataError("NotFound"));
    store.setDefaultPreset("another");
    store.setDefaultPreset("default");
    assert.equal(store.defaultPresetName(), "default");
  });

  it("namespaces_create_list_delete", async function () {
    // Goal: namespaces need a valid name and an existing preset, are unique, and deleting one returns and removes its manifests.
    const { store } = await fresh();
    assert.throws(() => store.createNamespace("Bad/Name", "default"), isMetadataError("Invalid"));
    assert.throws(() => store.createNamespace("ns", "missing"), isMetadataError("NotFound"));
    const created = store.createNamespace("ns", "default");
    assert.deepEqual(store.getNamespace("ns"), created);
    assert.throws(() => store.createNamespace("ns", "default"), isMetadataError("Conflict"));
    store.createNamespace("other", "default");
    assert.deepEqual(store.listNamespaces().map((namespace) => namespace.name), ["ns", "other"]);
    const first = manifest("ns", "a");
    const second = manifest("ns", "b");
    const kept = manifest("other", "a");
    for (const item of [first, second, kept]) store.commitManifest(item);
    assert.deepEqual(store.deleteNamespace("ns"), [first, second]);
    assert.equal(store.getNamespace("ns"), undefined);
    assert.equal(store.getManifestByObjectId(first.objectId), undefined);
    assert.deepEqual(store.manifestsOnAsd("a1", { limit: 10 }), [kept], "the fragment index forgets the deleted manifests");
    assert.throws(() => store.deleteNamespace("ns"), isMetadataError("NotFound"));
    assert.throws(() => store.commitManifest(manifest("ns", "c")), isMetadataError("NotFound"));
  });

  it("commit_preconditions_and_replacement", async function () {
    // Goal: commit stores the current version, returns the replaced one, honours ifAbsent/ifMatch with Conflict, ends the pending upload, and never commits an object id twice.
    const { store } = await fresh();
    store.createNamespace("ns", "default");
    const first = manifest("ns", "k");
    store.addPendingUpload({ objectId: first.objectId, namespace: "ns", key: "k", startedAt: new Date().toISOString() });
    assert.equal(store.isPendingUpload(first.objectId), true);
    assert.equal(store.commitManifest(first, { ifAbsent: true }), undefined);
    assert.equal(store.isPendingUpload(first.objectId), false);
    assert.deepEqual(store.getManifest("ns", "k"), first);
    assert.deepEqual(store.getManifestByObjectId(first.objectId), first);
    const second = manifest("ns", "k");
    assert.throws(() => store.commitManifest(second, { ifAbsent: true }), isMetadataError("Conflict"));
    assert.throws(() => store.commitManifest(second, { ifMatch: "f".repeat(32) }), isMetadataError("Conflict"));
    assert.deepEqual(store.commitManifest(second, { ifMatch: first.objectId }), first);
    assert.equal(store.getManifestByObjectId(first.objectId), undefined);
    assert.deepEqual(store.getManifest("ns", "k"), second);
    assert.throws(() => store.commitManifest(second), isMetadataError("Conflict"), "re-committing the current version");
    assert.throws(() => store.commitManifest(manifest("ns", "absent"), { ifMatch: first.objectId }), isMetadataError("Conflict"));
    const third = manifest("ns", "k");
    assert.deepEqual(store.commitManifest(third), second, "unconditional overwrite");
  });

  it("delete_manifest_with_if_match", async function () {
    // Goal: delete returns the removed version, undefined when absent, and Conflict when ifMatch does not match (leaving it in place).
    const { store } = await fresh();
    store.createNamespace("ns", "default");
    const item = manifest("ns", "k");
    store.commitManifest(item);
    assert.throws(() => store.deleteManifest("ns", "k", { ifMatch: "0".repeat(32) }), isMetadataError("Conflict"));
    assert.deepEqual(store.getManifest("ns", "k"), item);
    assert.deepEqual(store.deleteManifest("ns", "k", { ifMatch: item.objectId }), item);
    assert.equal(store.getManifest("ns", "k"), undefined);
    assert.equal(store.deleteManifest("ns", "k"), undefined);
    assert.deepEqual(store.manifestsOnAsd("a1", { limit: 10 }), []);
  });

  it("list_is_byte_ordered_with_prefix_and_pages_model_check", async function () {
    // Goal: against a sorted-by-UTF-8-bytes model, listing with any prefix, startAfter and page size returns the same keys, paged without gaps or repeats.
    const { store } = await fresh();
    store.createNamespace("ns", "default");
    store.createNamespace("zz", "default");
    const keys = ["a", "a/b", "a/c", "ab", "b", "B", "é", "e", "z", "a\u{1F600}", "a\uffff", "", "a/", "\u0000x"];
    for (const key of keys) store.commitManifest(manifest("ns", key));
    store.commitManifest(manifest("zz", "a"));
    const sorted = [...keys].sort((left, right) => Buffer.compare(Buffer.from(left), Buffer.from(right)));
    assert.throws(() => store.listManifests("missing"), isMetadataError("NotFound"));
    assert.throws(() => store.listManifests("ns", { limitKeys: 0 }), isMetadataError("Invalid"));
    fc.assert(fc.property(fc.constantFrom("", "a", "a/", "b", "é", "x", "a\u{1F600}"), fc.option(fc.constantFrom(...keys, "a0", "zzz")), fc.integer({ min: 1, max: 5 }), (prefix, startAfter, limitKeys) => {
      const expected = sorted.filter((key) => key.startsWith(prefix) && (startAfter === null || Buffer.compare(Buffer.from(key), Buffer.from(startAfter)) > 0));
      const listed: string[] = [];
      let cursor = startAfter ?? undefined;
      for (let pages = 0; pages < 20; pages++) {
        const page = store.listManifests("ns", { prefix, startAfter: cursor, limitKeys });
        assert.ok(page.manifests.length <= limitKeys);
        listed.push(...page.manifests.map((item) => item.key));
        if (page.nextStartAfter === undefined) break;
        assert.equal(page.nextStartAfter, page.manifests.at(-1)!.key);
        cursor = page.nextStartAfter;
      }
      assert.deepEqual(listed, expected);
    }), { numRuns: 200, seed: 5 });
  });

  it("scan_and_manifests_on_asd_page_by_object_id", async function () {
    // Goal: scans return every current manifest once in object-id order; manifestsOnAsd only those with a fragment on that ASD.
    const { store } = await fresh();
    store.createNamespace("ns", "default");
    const items: ObjectManifest[] = [];
    for (let index = 0; index < 25; index++) {
      const asds = index % 3 === 0 ? ["a1", "a1", "a9"] : ["a2", null, "a3"];
      items.push(manifest("ns", `key-${index}`, asds));
      store.commitManifest(items.at(-1)!);
    }
    const scanAll = (next: (after: string | undefined) => ObjectManifest[]): ObjectManifest[] => {
      const all: ObjectManifest[] = [];
      for (let after: string | undefined; ;) {
        const page = next(after);
        if (page.length === 0) return all;
        all.push(...page);
        after = page.at(-1)!.objectId;
      }
    };
    const byId = [...items].sort((left, right) => left.objectId.localeCompare(right.objectId));
    assert.deepEqual(scanAll((after) => store.scanManifests({ afterObjectId: after, limit: 4 })), byId);
    assert.deepEqual(scanAll((after) => store.manifestsOnAsd("a1", { afterObjectId: after, limit: 3 })), byId.filter((_, index) => index % 3 === 0));
    assert.deepEqual(scanAll((after) => store.manifestsOnAsd("a3", { afterObjectId: after, limit: 5 })), byId.filter((_, index) => index % 3 !== 0));
    assert.deepEqual(store.manifestsOnAsd("a7", { limit: 5 }), []);
  });

  it("update_fragments_only_on_current_version", async function () {
    // Goal: maintenance's fragment moves apply to the current version (and move it in the ASD index) and are refused once it was overwritten.
    const { store } = await fresh();
    store.createNamespace("ns", "default");
    const item = manifest("ns", "k", ["a1", null, "a3"]);
    store.commitManifest(item);
    const moved = { asdId: "a5", storedSizeBytes: 8, crc32c: 1, compressed: false };
    assert.equal(store.updateFragments(item.objectId, [{ chunkIndex: 0, fragmentIndex: 1, fragment: moved }, { chunkIndex: 0, fragmentIndex: 0, fragment: { ...moved, asdId: "a6" } }]), true);
    const updated = store.getManifest("ns", "k")!;
    assert.deepEqual(updated.chunks[0]!.fragments.map((fragment) => fragment.asdId), ["a6", "a5", "a3"]);
    assert.deepEqual(updated.chunks[0]!.fragments[1], moved);
    assert.deepEqual(store.manifestsOnAsd("a1", { limit: 10 }), []);
    assert.deepEqual(store.manifestsOnAsd("a5", { limit: 10 }), [updated]);
    store.commitManifest(manifest("ns", "k"));
    assert.equal(store.updateFragments(item.objectId, [{ chunkIndex: 0, fragmentIndex: 0, fragment: moved }]), false);
    assert.equal(store.updateFragments("9".repeat(32), []), false);
  });

  it("pending_uploads", async function () {
    // Goal: pending uploads are added once, listed oldest first (optionally only those started before a time), and removed.
    const { store } = await fresh();
    const older = { objectId: objectId(), namespace: "ns", key: "k\u00e9", startedAt: "2024-01-01T00:00:00.000Z" };
    const newer = { objectId: objectId(), namespace: "ns", key: "k2", startedAt: "2024-01-02T00:00:00.000Z" };
    store.addPendingUpload(newer);
    store.addPendingUpload(older);
    assert.throws(() => store.addPendingUpload(older), isMetadataError("Conflict"));
    assert.deepEqual(store.listPendingUploads(), [older, newer]);
    assert.deepEqual(store.listPendingUploads({ startedBefore: "2024-01-01T12:00:00.000Z" }), [older]);
    store.removePendingUpload(older.objectId);
    store.removePendingUpload(older.objectId);
    assert.equal(store.isPendingUpload(older.objectId), false);
    assert.deepEqual(store.listPendingUploads(), [newer]);
  });

  it("everything_survives_reopen", async function () {
    // Goal: every kind of record written before close reads back identically after reopening the file.
    const { store, filePath } = await fresh();
    store.addAsd({ asdId: "asd-1", nodeId: "n1", host: "127.0.0.1", port: 9001, state: "claimed", claimedAt: "2024-01-01T00:00:00.000Z" });
    store.setDefaultPreset("default");
    store.createNamespace("ns", "default");
    const item = manifest("ns", "k");
    store.commitManifest(item);
    const pending = { objectId: objectId(), namespace: "ns", key: "p", startedAt: "2024-01-01T00:00:00.000Z" };
    store.addPendingUpload(pending);
    const before = { asds: store.listAsds(), presets: store.listPresets(), namespaces: store.listNamespaces(), page: store.listManifests("ns") };
    store.close();
    const reopened = SqliteMetadataStore.open(filePath);
    open.push(reopened);
    assert.deepEqual({ asds: reopened.listAsds(), presets: reopened.listPresets(), namespaces: reopened.listNamespaces(), page: reopened.listManifests("ns") }, before);
    assert.equal(reopened.defaultPresetName(), "default");
    assert.deepEqual(reopened.getManifestByObjectId(item.objectId), item);
    assert.deepEqual(reopened.listPendingUploads(), [pending]);
    assert.deepEqual(reopened.manifestsOnAsd("a2", { limit: 5 }), [item]);
  });
});

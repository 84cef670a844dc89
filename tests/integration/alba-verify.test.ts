// Goal: a fragment whose bytes rot on an ASD's disk (a value file, and an inline SQLite value) still reads correctly, maintenance's verify finds exactly the bad fragments and rewrites them in place, and a second verify finds nothing.
import assert from "node:assert/strict";
import { open } from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import { AsdClient } from "../../alba/src/asd/asd-client.ts";
import { AlbaClient } from "../../alba/src/client/alba-client.ts";
import { fragmentKey } from "../../alba/src/client/fragment-key.ts";
import { crc32c } from "../../alba/src/codec/crc32c.ts";
import { AlbaMaintenance } from "../../alba/src/maintenance/maintenance.ts";
import type { ObjectManifest } from "../../alba/src/metadata/metadata-store.ts";
import { startAsd, stopAll, type RunningAsd } from "../helpers/alba-processes.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { sha256 } from "../helpers/device-hash.ts";
import { openTestAlbaClient } from "../helpers/alba-cluster.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

/** Above the ASD's 64 KiB inline limit, so full fragments are value files (alba/docs/asd-format.md). */
const FRAGMENT_SIZE_BYTES = 128 * 1024;
const NAMESPACE = "verify";
/** The ASD's own files (alba/src/asd/asd-store.ts): keys in SQLite, large values under files/. */
const ASD_DATABASE_FILE = "keys.sqlite";
const ASD_FILES_DIRECTORY = "files";

interface FragmentLocation {
  objectId: string;
  chunkIndex: number;
  fragmentIndex: number;
  asdId: string;
}

function locate(manifest: ObjectManifest, chunkIndex: number, fragmentIndex: number): FragmentLocation {
  const asdId = manifest.chunks[chunkIndex]!.fragments[fragmentIndex]!.asdId;
  assert.ok(asdId !== null, "the fragment to corrupt was not written");
  return { objectId: manifest.objectId, chunkIndex, fragmentIndex, asdId };
}

function keyOf(location: FragmentLocation): Buffer {
  return Buffer.from(fragmentKey(location), "utf8");
}

describe("alba verify (real ASDs, corrupted on disk)", function () {
  this.timeout(170_000);
  const dirs = new TempDirs("alba-verify");
  const asds: RunningAsd[] = [];
  const clients: AlbaClient[] = [];

  after(async function () {
    for (const client of clients) await client.close().catch(() => undefined);
    await stopAll(asds);
    await dirs.removeAll();
  });

  it("rotten_fragments_read_correctly_and_verify_rewrites_them", async function () {
    const seed = seedFromEnvironment();
    const random = new SeededRandom(seed);
    const root = await dirs.make();
    const metadataFile = path.join(root, "metadata.sqlite");
    const nodeIds = ["node-a", "node-a", "node-b", "node-b", "node-c", "node-c"];
    asds.push(...await Promise.all(nodeIds.map((nodeId, index) => startAsd({ directory: path.join(root, `asd-${index}`), nodeId }))));
    const client = openTestAlbaClient(metadataFile);
    clients.push(client);
    for (const asd of asds) await client.claimAsd(asd.host, asd.port);
    await client.addPreset({ name: "plain", policies: [{ k: 4, m: 2, c: 5, x: 2 }], fragmentSizeBytes: FRAGMENT_SIZE_BYTES, compression: "none", encryption: "none", checksum: "crc32c" });
    await client.createNamespace(NAMESPACE, { presetName: "plain" });
    const objects = new Map<string, Buffer>([
      ["big", random.bytes(3 * 4 * FRAGMENT_SIZE_BYTES - 1000)],
      ["small", random.bytes(10_000)],
      ["gone", random.bytes(700_000)],
      ["untouched", random.bytes(300_000)],
    ]);
    for (const [key, data] of objects) await client.put(NAMESPACE, key, data);
    const asdById = (asdId: string): RunningAsd => asds.find((asd) => asd.asdId === asdId)!;
    const manifestOf = (key: string): ObjectManifest => client.metadata.getManifest(NAMESPACE, key)!;

    // 1. Bit rot in a value file: data fragment 0 of chunk 1 of "big" (the ASD keeps running).
    const rotFile = locate(manifestOf("big"), 1, 0);
    const fileAsd = asdById(rotFile.asdId);
    const keysDatabase = new Database(path.join(fileAsd.directory, ASD_DATABASE_FILE), { readonly: true });
    const fileRow = keysDatabase.prepare("SELECT file_name FROM keys WHERE key = ?").get(keyOf(rotFile)) as { file_name: string | null } | undefined;
    keysDatabase.close();
    assert.ok(fileRow?.file_name !== null && fileRow?.file_name !== undefined, "a 128 KiB fragment should be a value file");
    const handle = await open(path.join(fileAsd.directory, ASD_FILES_DIRECTORY, fileRow.file_name), "r+");
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 5000);
    byte[0] = byte[0]! ^ 0x40;
    await handle.write(byte, 0, 1, 5000);
    await handle.close();

    // 2. Bit rot in an inline value: data fragment 1 of "small", edited in SQLite while its ASD is stopped.
    const rotInline = locate(manifestOf("small"), 0, 1);
    const inlineAsd = asdById(rotInline.asdId);
    await inlineAsd.stop();
    const writable = new Database(path.join(inlineAsd.directory, ASD_DATABASE_FILE));
    const inlineRow = writable.prepare("SELECT inline_value FROM keys WHERE key = ?").get(keyOf(rotInline)) as { inline_value: Buffer | null };
    assert.ok(inlineRow.inline_value !== null, "a 2.5 KB fragment should be inline");
    const rotten = Buffer.from(inlineRow.inline_value);
    rotten[17] = rotten[17]! ^ 0x01;
    writable.prepare("UPDATE keys SET inline_value = ? WHERE key = ?").run(rotten, keyOf(rotInline));
    writable.close();
    const restarted = await startAsd({ directory: inlineAsd.directory, nodeId: inlineAsd.nodeId });
    assert.equal(restarted.asdId, inlineAsd.asdId);
    asds[asds.indexOf(inlineAsd)] = restarted;
    client.metadata.updateAsd(restarted.asdId, { host: restarted.host, port: restarted.port });

    // 3. A fragment that vanished from a live ASD: parity fragment 5 of chunk 0 of "gone".
    const vanished = locate(manifestOf("gone"), 0, 5);
    const vanishedConnection = new AsdClient(asdById(vanished.asdId).host, asdById(vanished.asdId).port);
    await vanishedConnection.applyBatch({ asserts: [], updates: [{ kind: "delete", key: fragmentKey(vanished) }] });
    await vanishedConnection.close();

    // Reads stay correct (decoded from the other fragments), through a client with no caches.
    const reader = openTestAlbaClient(metadataFile);
    clients.push(reader);
    await reader.pool.probeAll();
    for (const [key, data] of objects) assert.equal(sha256(await reader.get(NAMESPACE, key)), sha256(data), `${key} with rotten fragments (seed ${seed})`);

    const manifestsBefore = new Map([...objects.keys()].map((key) => [key, manifestOf(key)]));
    await client.pool.probeAll();
    const maintenance = new AlbaMaintenance({ metadata: client.metadata, pool: client.pool, settings: { maintenanceBytesPerSecondMax: 1024 * 2 ** 20 } });
    const first = await maintenance.verify();
    const named = first.corruptFragments.map((fragment) => `${fragment.objectId}/${fragment.chunkIndex}/${fragment.fragmentIndex}@${fragment.asdId}`).sort();
    const expected = [rotFile, rotInline].map((location) => `${location.objectId}/${location.chunkIndex}/${location.fragmentIndex}@${location.asdId}`).sort();
    assert.deepEqual(named, expected);
    assert.equal(first.corruptFragmentCount, 2);
    assert.equal(first.missingFragmentCount, 1);
    assert.equal(first.fragmentsRebuilt, 3);
    assert.equal(first.chunksDegraded, 3);
    assert.equal(first.chunksRepaired, 3);
    assert.equal(first.unrecoverableChunkCount, 0);
    const totalFragments = [...manifestsBefore.values()].reduce((sum, manifest) => sum + manifest.chunks.length * 6, 0);
    assert.equal(first.fragmentsChecked, totalFragments);

    // Rewritten in place, bit for bit: the manifests are unchanged and each ASD holds the bytes they name.
    for (const [key, before] of manifestsBefore) assert.deepEqual(manifestOf(key), before, `${key}'s manifest changed`);
    for (const location of [rotFile, rotInline, vanished]) {
      const asd = asdById(location.asdId);
      const connection = new AsdClient(asd.host, asd.port);
      const stored = await connection.get(fragmentKey(location));
      await connection.close();
      const fragment = manifestsBefore.get([...objects.keys()].find((key) => manifestsBefore.get(key)!.objectId === location.objectId)!)!
        .chunks[location.chunkIndex]!.fragments[location.fragmentIndex]!;
      assert.ok(stored !== undefined);
      assert.equal(stored.length, fragment.storedSizeBytes);
      assert.equal(crc32c(stored), fragment.crc32c >>> 0);
    }

    const second = await maintenance.verify();
    assert.equal(second.corruptFragmentCount, 0);
    assert.equal(second.missingFragmentCount, 0);
    assert.equal(second.fragmentsRebuilt, 0);
    assert.equal(second.chunksDegraded, 0);
    assert.equal(second.fragmentsChecked, totalFragments);

    const fresh = openTestAlbaClient(metadataFile);
    clients.push(fresh);
    await fresh.pool.probeAll();
    for (const [key, data] of objects) assert.equal(sha256(await fresh.get(NAMESPACE, key)), sha256(data), `${key} after verify (seed ${seed})`);
  });
});

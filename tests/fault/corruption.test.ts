// Goal: corrupt objects and files get a clear error and never wrong data, and the process stays up:
// a corrupted SCO on the backend (once no local copy is left) makes reads of exactly the damaged
// clusters fail with VolumeError(Io) while other reads work; a corrupted or truncated TLog on the
// backend makes restart from backend fail with an error naming the TLog (or leaves a volume whose
// reads fail with Io) instead of serving stale data; a local TLog whose tail is torn mid-entry is
// cut at the last whole entry and the local restart shows that prefix.
import assert from "node:assert/strict";
import { readdir, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import { MemoryObjectStore } from "../../volumedriver/src/backend/memory-store.ts";
import { isVolumeError } from "../../volumedriver/src/engine/block-device.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { CLUSTER_SIZE_BYTES, MIB, type Volume, type VPool, type VPoolConfig } from "../../volumedriver/src/engine/vpool-types.ts";
import { firstDifference, readWholeDevice } from "../helpers/device-hash.ts";
import { decodeSector, fillSectors, SECTOR_BYTES } from "../helpers/sector-pattern.ts";
import { SeededRandom } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { expectVolumeError } from "../helpers/volume-assertions.ts";

const CLUSTER = CLUSTER_SIZE_BYTES;
const DEVICE_SIZE_BYTES = 32 * MIB;
const SCO_HEADER_BYTES = 4096; // volumedriver/docs/formats.md: a SCO is a 4 KiB header, then clusters
const TLOG_HEADER_BYTES = 64; // a TLog is a 64-byte header, then 32-byte entries
const TLOG_ENTRY_BYTES = 32;
const SCO_KEY = /^sco\/[0-9a-f]{16}$/;
const TLOG_KEY = /^tlog\/([0-9a-f]{16})$/;

describe("fault: corrupted SCOs and TLogs", function () {
  this.timeout(120_000);
  const tempDirs = new TempDirs("corruption");
  const openPools = new Set<VPool>();
  let backend: MemoryObjectStore;

  beforeEach(function () {
    backend = new MemoryObjectStore();
  });

  afterEach(async function () {
    for (const vpool of openPools) await vpool.close({ timeoutMs: 5_000 }).catch(() => undefined);
    openPools.clear();
    await backend.close();
    await tempDirs.removeAll();
  });

  function config(directory: string, overrides: Partial<VPoolConfig>): VPoolConfig {
    return { name: "corrupt", directory, backend, scoSizeBytes: 4 * MIB, scoMaxAgeMs: 1_000, tlogScoCountMax: 1, logger: pino({ level: "silent" }), ...overrides };
  }

  async function open(directory: string, overrides: Partial<VPoolConfig> = {}): Promise<VPool> {
    const vpool = await openVPool(config(directory, overrides));
    openPools.add(vpool);
    return vpool;
  }

  async function close(vpool: VPool): Promise<void> {
    await vpool.close();
    openPools.delete(vpool);
  }

  async function listKeys(namespace: string): Promise<string[]> {
    const keys: string[] = [];
    let startAfter: string | undefined;
    do {
      const page = await backend.list(namespace, { startAfter, limitKeys: 1000 });
      keys.push(...page.objects.map((object) => object.key));
      startAfter = page.nextStartAfter;
    } while (startAfter !== undefined);
    return keys;
  }

  /** Writes `lengthBytes` at `offset` as self-identifying sectors of write `seq`, into the volume and the model. */
  async function writeTagged(volume: Volume, model: Buffer, offset: number, lengthBytes: number, seq: number): Promise<void> {
    const data = Buffer.alloc(lengthBytes);
    fillSectors(data, 1, seq, offset / SECTOR_BYTES);
    await volume.write(offset, data);
    data.copy(model, offset);
  }

  it("a corrupted SCO on the backend gives Io errors for exactly the damaged clusters", async function () {
    // Goal: with no local copy left, a flipped byte in a SCO object is an Io error, never wrong data.
    const model = Buffer.alloc(DEVICE_SIZE_BYTES);
    const first = await open(await tempDirs.make("host-a"));
    const volume = await first.createVolume("scodisk", DEVICE_SIZE_BYTES);
    // 12 MiB in 4 MiB SCOs: three or more SCOs on the backend.
    for (let offset = 0; offset < 12 * MIB; offset += MIB) await writeTagged(volume, model, offset, MIB, 1 + offset / MIB);
    await volume.drain();
    const namespace = volume.info().namespace;
    await close(first);

    const scoKeys = (await listKeys(namespace)).filter((key) => SCO_KEY.test(key));
    assert.ok(scoKeys.length >= 3, `12 MiB of writes in 4 MiB SCOs made at least 3 SCOs: ${scoKeys.join(", ")}`);
    // Corrupt cluster 10 of the second SCO; its own tags say which device cluster it holds.
    const scoKey = scoKeys[1]!;
    const sco = await backend.get(namespace, scoKey);
    const scoClusterIndex = 10;
    const clusterOffsetInSco = SCO_HEADER_BYTES + scoClusterIndex * CLUSTER;
    assert.ok(sco.length >= clusterOffsetInSco + CLUSTER, `${scoKey} holds at least 11 clusters (${sco.length} bytes)`);
    const sectorTag = decodeSector(sco, clusterOffsetInSco, sectorOfTag(sco, clusterOffsetInSco));
    assert.equal(sectorTag.kind, "written", `cluster ${scoClusterIndex} of ${scoKey} holds tagged data`);
    const damagedCluster = sectorOfTag(sco, clusterOffsetInSco) / (CLUSTER / SECTOR_BYTES);
    assert.ok(Number.isInteger(damagedCluster), "SCO clusters hold whole device clusters");
    sco[clusterOffsetInSco + 1234] ^= 0x40;
    await backend.put(namespace, scoKey, sco);

    // Host B: a fresh directory, so every read of that SCO goes to the backend.
    const second = await open(await tempDirs.make("host-b"));
    const restored = second.getVolume("scodisk");
    assert.ok(restored, "the volume is restored from the backend");
    const damagedOffset = damagedCluster * CLUSTER;
    await expectVolumeError(restored.read(damagedOffset, CLUSTER), "Io", "read of the damaged cluster: ");
    await expectVolumeError(restored.read(damagedOffset + 100, 10), "Io", "unaligned read inside the damaged cluster: ");
    await expectVolumeError(restored.read(Math.max(0, damagedOffset - 8 * CLUSTER), 32 * CLUSTER), "Io", "a large read spanning the damaged cluster: ");
    // A failed read must not have cached anything: it fails again.
    await expectVolumeError(restored.read(damagedOffset, CLUSTER), "Io", "second read of the damaged cluster: ");
    // Its neighbours in the same SCO, and everything else, still read correctly.
    for (const neighbour of [damagedCluster - 1, damagedCluster + 1]) {
      const data = await restored.read(neighbour * CLUSTER, CLUSTER);
      assert.ok(data.equals(model.subarray(neighbour * CLUSTER, (neighbour + 1) * CLUSTER)), `cluster ${neighbour}, next to the damaged one, reads correctly`);
    }
    for (let offset = 0; offset < DEVICE_SIZE_BYTES; offset += MIB) {
      if (damagedOffset >= offset && damagedOffset < offset + MIB) continue;
      const data: Buffer = await restored.read(offset, MIB);
      assert.equal(firstDifference(data, model.subarray(offset, offset + MIB)), -1, `MiB at ${offset} reads correctly`);
    }
    // Overwriting the damaged cluster heals it; the process and the volume are fine.
    await writeTagged(restored, model, damagedOffset, CLUSTER, 99);
    assert.ok((await restored.read(damagedOffset, CLUSTER)).equals(model.subarray(damagedOffset, damagedOffset + CLUSTER)));
    await restored.flush();
  });

  for (const damage of ["flip a byte in a middle TLog", "flip a byte in the last TLog", "truncate the last TLog mid-entry"] as const) {
    it(`restart from backend refuses to serve stale data when we ${damage}`, async function () {
      // Goal: a damaged TLog on the backend gives a clear error naming it, or Io errors, never wrong data.
      const model = Buffer.alloc(DEVICE_SIZE_BYTES);
      const first = await open(await tempDirs.make("host-a"));
      const volume = await first.createVolume("tlogdisk", DEVICE_SIZE_BYTES);
      // Generations of 4 MiB that half overlap the one before, each drained: every TLog holds data
      // that is still visible at the end, so skipping or stopping at any TLog shows stale data.
      for (let generation = 1; generation <= 4; generation++) {
        const start = (generation - 1) * 2 * MIB;
        for (let offset = start; offset < start + 4 * MIB; offset += MIB) await writeTagged(volume, model, offset, MIB, generation * 100 + offset / MIB);
        await volume.drain();
      }
      const namespace = volume.info().namespace;
      await close(first);

      // TLogs with entries (a TLog holding only its header and END entry changes nothing).
      const tlogKeys: string[] = [];
      for (const key of (await listKeys(namespace)).filter((candidate) => TLOG_KEY.test(candidate))) {
        const info = await backend.head(namespace, key);
        if (info !== undefined && info.sizeBytes >= TLOG_HEADER_BYTES + 3 * TLOG_ENTRY_BYTES) tlogKeys.push(key);
      }
      assert.ok(tlogKeys.length >= 3, `several TLogs with entries on the backend: ${tlogKeys.join(", ")}`);
      const victim = damage === "flip a byte in a middle TLog" ? tlogKeys[Math.floor(tlogKeys.length / 2)]! : tlogKeys.at(-1)!;
      const tlog = await backend.get(namespace, victim);
      const entryCount = Math.floor((tlog.length - TLOG_HEADER_BYTES) / TLOG_ENTRY_BYTES);
      assert.ok(entryCount >= 2, `${victim} has entries`);
      const damaged =
        damage === "truncate the last TLog mid-entry"
          ? tlog.subarray(0, TLOG_HEADER_BYTES + Math.floor(entryCount / 2) * TLOG_ENTRY_BYTES + 13)
          : Buffer.from(tlog);
      if (damage !== "truncate the last TLog mid-entry") damaged[TLOG_HEADER_BYTES + Math.floor(entryCount / 2) * TLOG_ENTRY_BYTES + 9] ^= 0x01;
      await backend.put(namespace, victim, damaged);

      let second: VPool;
      try {
        second = await open(await tempDirs.make("host-b"));
      } catch (error) {
        // A refusal must say which TLog is bad.
        assertNamesTlog(error instanceof Error ? `${error.message} ${String((error as { cause?: unknown }).cause ?? "")}` : String(error), victim);
        console.log(`      corruption: ${damage}: openVPool refused: ${String(error)}`);
        return;
      }
      // The vPool came up: the volume is either marked failed with an error naming the TLog, or
      // served with every read right or an Io error.
      const restored = second.getVolume("tlogdisk");
      if (restored === undefined) {
        const info = second.listVolumes().find((candidate) => candidate.name === "tlogdisk");
        assert.ok(info, `${damage}: the volume vanished without a trace (listVolumes: ${JSON.stringify(second.listVolumes())})`);
        assert.equal(info.state, "failed", `${damage}: a volume that is not served is listed as failed`);
        assertNamesTlog(info.error ?? "", victim);
        console.log(`      corruption: ${damage}: the vDisk is listed as failed: ${info.error}`);
      } else {
        let ioErrors = 0;
        for (let offset = 0; offset < DEVICE_SIZE_BYTES; offset += MIB) {
          try {
            const data = await restored.read(offset, MIB);
            const difference = firstDifference(data, model.subarray(offset, offset + MIB));
            assert.equal(difference, -1, `${damage}: read at ${offset} returned wrong (stale) data, first difference at byte ${offset + difference}`);
          } catch (error) {
            if (!isVolumeError(error, "Io")) throw error;
            ioErrors++;
          }
        }
        assert.ok(ioErrors > 0, `${damage}: the damaged TLog must show somewhere (all reads succeeded with the right data?)`);
        console.log(`      corruption: ${damage}: the vDisk is served; ${ioErrors} of ${DEVICE_SIZE_BYTES / MIB} MiB reads failed with Io, the rest were right`);
      }
      // The process and the vPool are still usable.
      const other = await second.createVolume("healthy", MIB);
      await other.write(0, Buffer.alloc(CLUSTER, 7));
      assert.ok((await other.read(0, CLUSTER)).equals(Buffer.alloc(CLUSTER, 7)));
    });
  }

  it("a local TLog torn mid-entry is cut at the last whole entry on restart", async function () {
    // Goal: a torn local TLog tail (host crash mid-append) recovers the prefix of whole entries.
    const directory = await tempDirs.make("local");
    // No age-based seal during the test: the 20 entries must stay at the tail of one open TLog.
    const vpool = await open(directory, { scoMaxAgeMs: 600_000 });
    const volume = await vpool.createVolume("torndisk", DEVICE_SIZE_BYTES);
    const random = new SeededRandom(1234);
    const base = random.bytes(2 * MIB);
    await volume.write(0, base);
    await volume.flush();
    // Then single-cluster writes to distinct clusters: one TLog entry each, in order.
    const writes: Array<{ offset: number; data: Buffer }> = [];
    for (let index = 0; index < 20; index++) {
      const offset = (1024 + index * 3) * CLUSTER;
      const data = random.bytes(CLUSTER);
      await volume.write(offset, data);
      writes.push({ offset, data });
    }
    await volume.flush();
    await vpool.simulateCrash();
    openPools.delete(vpool);

    const tlogFile = await newestLocalTlog(directory);
    assert.ok(tlogFile, `a local TLog file exists under ${directory}`);
    const sizeBytes = (await stat(tlogFile)).size;
    assert.ok(sizeBytes >= TLOG_HEADER_BYTES + writes.length * TLOG_ENTRY_BYTES, `${tlogFile} holds the ${writes.length} entries (${sizeBytes} bytes)`);
    // Cut the last entry in half: the last write is lost, all before it stay.
    await truncate(tlogFile, sizeBytes - TLOG_ENTRY_BYTES / 2);

    const reopened = await open(directory, { scoMaxAgeMs: 600_000 });
    const recovered = reopened.getVolume("torndisk");
    assert.ok(recovered, "the volume comes back after a torn TLog tail");
    const device = await readWholeDevice(recovered);
    const expectedFor = (landed: number): Buffer => {
      const expected = Buffer.alloc(DEVICE_SIZE_BYTES);
      base.copy(expected, 0);
      for (const write of writes.slice(0, landed)) write.data.copy(expected, write.offset);
      return expected;
    };
    let matched = -1;
    for (let landed = writes.length; landed >= 0 && matched < 0; landed--) if (device.equals(expectedFor(landed))) matched = landed;
    assert.equal(matched, writes.length - 1, `the device shows the first ${writes.length - 1} writes after the base (it shows ${matched < 0 ? "no prefix" : `${matched}`})`);
    // And the recovered volume works on.
    const late = random.bytes(CLUSTER);
    await recovered.write(5000 * CLUSTER, late);
    await recovered.flush();
    assert.ok((await recovered.read(5000 * CLUSTER, CLUSTER)).equals(late));
  });
});

/** Asserts that an error message names the TLog object `key` (by key, or as "TLog" plus its number). */
function assertNamesTlog(message: string, key: string): void {
  const hexNumber = TLOG_KEY.exec(key)![1]!;
  const names = message.includes(key) || (/tlog/i.test(message) && (message.includes(hexNumber) || new RegExp(`\\b${Number.parseInt(hexNumber, 16)}\\b`).test(message)));
  assert.ok(names, `the error names the TLog ${key}: ${JSON.stringify(message)}`);
}

/** The sector number a tagged sector at `offset` claims to be (tags carry their sector index). */
function sectorOfTag(buffer: Buffer, offset: number): number {
  return buffer.readUInt32LE(offset + 12);
}

/** The local TLog file with the highest number anywhere under `directory` (any tlog/<16 hex> path). */
async function newestLocalTlog(directory: string): Promise<string | undefined> {
  let best: { number: number; path: string } | undefined;
  const entries = await readdir(directory, { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const parent = entry.parentPath;
    if (!parent.endsWith("tlog") || !/^[0-9a-f]{16}$/.test(entry.name)) continue;
    const number = Number.parseInt(entry.name, 16);
    if (best === undefined || number > best.number) best = { number, path: join(parent, entry.name) };
  }
  return best?.path;
}

// Goal: real NBD clients use our server's fast paths and get correct data: nbdinfo (--list, --map),
// qemu-io pattern I/O at aligned and unaligned offsets, qemu-img convert and compare, nbdcopy round
// trips, fio random writes with crc32c verify over 256 MiB, and the libnbd edge-case script, all
// against a real StorageDriver process (`ovs storagedriver run`) serving its vDisks on loopback.
//
// Replay the random images: OVS_SEED=<seed> npx mocha --no-config --node-option import=tsx \
//   --timeout 300000 --exit tests/interop/nbd-clients.test.ts
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { sha256 } from "../helpers/device-hash.ts";
import { LIBNBD_PYTHON, NbdStorageDriver, requireTool, runTool, runToolOk } from "../helpers/nbd-tools.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const MIB = 1024 * 1024;
const EDGE_CASES_SCRIPT = fileURLToPath(new URL("nbd-edge-cases.py", import.meta.url));

interface MapExtent { offset: number; length: number; type: number; description: string }

/** Adjacent extents of the same type as one (clients split the map at their own request sizes). */
function mergeExtents(extents: MapExtent[]): Array<[number, number, string]> {
  const merged: Array<[number, number, string]> = [];
  for (const extent of extents) {
    const last = merged.at(-1);
    if (last !== undefined && last[2] === extent.description && last[0] + last[1] === extent.offset) {
      last[1] += extent.length;
    } else {
      merged.push([extent.offset, extent.length, extent.description]);
    }
  }
  return merged;
}

/** A raw image of random data with a zero run in the middle (so clients' zero detection is exercised). */
function randomImage(random: SeededRandom, sizeBytes: number): Buffer {
  const image = random.bytes(sizeBytes);
  image.fill(0, sizeBytes / 4, sizeBytes / 4 + sizeBytes / 8);
  return image;
}

describe("NBD interop: real clients against the StorageDriver", function () {
  this.timeout(300_000);
  const tempDirs = new TempDirs("nbd-clients");
  const seed = seedFromEnvironment();
  let directory: string;
  let storagedriver: NbdStorageDriver | undefined;

  function server(): NbdStorageDriver {
    if (storagedriver === undefined) throw new Error("the StorageDriver did not start");
    return storagedriver;
  }

  async function mapOf(exportName: string): Promise<Array<[number, number, string]>> {
    const mapped = await runToolOk("nbdinfo", ["--map", "--json", server().uri(exportName)]);
    return mergeExtents(JSON.parse(mapped.stdout) as MapExtent[]);
  }

  async function qemuIo(exportName: string, commands: string[]): Promise<string> {
    const result = await runToolOk("qemu-io", ["-f", "raw", server().uri(exportName), ...commands.flatMap((command) => ["-c", command])]);
    assert.doesNotMatch(result.stdout, /Pattern verification failed|error|failed/i, result.stdout);
    return result.stdout;
  }

  before(async function () {
    console.log(`      seed ${seed} (replay with OVS_SEED=${seed})`);
    directory = await tempDirs.make();
    storagedriver = await NbdStorageDriver.start(directory);
  });

  after(async function () {
    await storagedriver?.killAll();
    await tempDirs.removeAll();
  });

  it("nbdinfo --list shows each running vDisk with its description, size and block sizes", async function () {
    requireTool(this, "nbdinfo");
    await server().createVdisk("list-a", 64 * MIB);
    await server().createVdisk("list-b", 1024 * MIB);
    const listed = await runToolOk("nbdinfo", ["--list", "--json", `nbd://127.0.0.1:${server().nbdPort}`]);
    const exports = (JSON.parse(listed.stdout) as { exports: Array<Record<string, unknown>> }).exports;
    const byName = new Map(exports.map((entry) => [entry["export-name"], entry]));
    for (const [name, size, sizeText] of [["list-a", 64 * MIB, "64 MiB"], ["list-b", 1024 * MIB, "1 GiB"]] as const) {
      const entry = byName.get(name);
      assert.ok(entry !== undefined, `${name} not listed: ${listed.stdout}`);
      assert.equal(entry.description, `vDisk ${name} (${sizeText}) in vPool ${server().vpool}`);
      assert.equal(entry["export-size"], size);
      assert.equal(entry.block_size_minimum, 1);
      assert.equal(entry.block_size_preferred, 4096);
      assert.equal(entry.block_size_maximum, 32 * MIB);
      for (const flag of ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_df", "can_multi_conn", "can_cache"]) {
        assert.equal(entry[flag], true, `${name}: ${flag}`);
      }
      assert.equal(entry.is_read_only, false);
      assert.deepEqual(entry.contexts, ["base:allocation"]);
    }
  });

  it("nbdinfo --map: a fresh vDisk is one hole, written ranges become data", async function () {
    requireTool(this, "nbdinfo", "qemu-io");
    await server().createVdisk("map", 64 * MIB);
    assert.deepEqual(await mapOf("map"), [[0, 64 * MIB, "hole,zero"]]);
    // 64 KiB aligned at 1 MiB; 4 KiB at 5 MiB + 512 touches two 4 KiB clusters.
    await qemuIo("map", ["write -P 0x5a 1M 64k", `write -P 0x5b ${5 * MIB + 512} 4k`]);
    assert.deepEqual(await mapOf("map"), [
      [0, MIB, "hole,zero"],
      [MIB, 64 * 1024, "data"],
      [MIB + 64 * 1024, 4 * MIB - 64 * 1024, "hole,zero"],
      [5 * MIB, 8192, "data"],
      [5 * MIB + 8192, 59 * MIB - 8192, "hole,zero"],
    ]);
  });

  it("qemu-io: pattern writes and reads at aligned and unaligned offsets, seen by a new connection", async function () {
    requireTool(this, "qemu-io");
    await server().createVdisk("qemuio", 64 * MIB);
    const writes: Array<[pattern: number, offset: number, length: number]> = [
      [0xab, 0, 4096],
      [0xcd, 4096 + 512, 4096], // unaligned, across a cluster boundary
      [0xef, MIB - 3, 7], // odd offset and length
      [0x11, 2 * MIB + 4095, 2], // the last byte of one cluster and the first of the next
      [0x22, 3 * MIB, 3 * MIB + 12345], // larger than a qemu request chunk, odd length
    ];
    await qemuIo("qemuio", [
      ...writes.map(([pattern, offset, length]) => `write -P 0x${pattern.toString(16)} ${offset} ${length}`),
      ...writes.map(([pattern, offset, length]) => `read -P 0x${pattern.toString(16)} ${offset} ${length}`),
      "read -P 0xab 0 4096",
      "read -P 0 8704 8192", // after the unaligned write: zeros
      "aio_write -P 0x33 8M 64k",
      "aio_flush",
      "write -z 8M 32k",
      "read -P 0 8M 32k",
      "read -P 0x33 8224k 32k",
      "discard 8224k 4k",
      "read -P 0 8224k 4k",
      "flush",
    ]);
    // A second process, a second connection: everything reads back.
    await qemuIo("qemuio", [
      ...writes.map(([pattern, offset, length]) => `read -P 0x${pattern.toString(16)} ${offset} ${length}`),
      "read -P 0 8M 36k",
      "read -P 0x33 8228k 28k",
      "read -P 0 60M 4M",
    ]);
  });

  it("qemu-img convert of a 64 MiB random image into a vDisk, and qemu-img compare back", async function () {
    requireTool(this, "qemu-img", "qemu-io");
    const image = path.join(directory, "random.img");
    await writeFile(image, randomImage(new SeededRandom(seed), 64 * MIB));
    await server().createVdisk("convert", 64 * MIB);
    // Fill the target first, so the zero run of the image must really be zeroed over NBD.
    await qemuIo("convert", ["write -P 0x5a 0 64M"]);
    await runToolOk("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", image, server().uri("convert")], { timeoutMs: 120_000 });
    const compared = await runTool("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, server().uri("convert")], { timeoutMs: 120_000 });
    assert.equal(compared.code, 0, `${compared.stdout}${compared.stderr}`);
    assert.match(compared.stdout, /Images are identical/);
    // And a changed byte is seen as a difference (the comparison really reads the export).
    await qemuIo("convert", ["write -P 0x01 40M 1"]);
    const differs = await runTool("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, server().uri("convert")], { timeoutMs: 120_000 });
    assert.equal(differs.code, 1, `${differs.stdout}${differs.stderr}`);
    assert.match(differs.stdout, /Content mismatch at offset 41943040/);
  });

  it("nbdcopy: file → vDisk → vDisk → file is byte-identical", async function () {
    requireTool(this, "nbdcopy");
    const source = path.join(directory, "nbdcopy-source.img");
    const target = path.join(directory, "nbdcopy-target.img");
    const image = randomImage(new SeededRandom(seed + 1), 32 * MIB);
    await writeFile(source, image);
    await writeFile(target, "");
    await server().createVdisk("copy-a", 32 * MIB);
    await server().createVdisk("copy-b", 32 * MIB);
    await runToolOk("nbdcopy", ["--flush", source, server().uri("copy-a")], { timeoutMs: 120_000 });
    await runToolOk("nbdcopy", ["--flush", server().uri("copy-a"), server().uri("copy-b")], { timeoutMs: 120_000 });
    await runToolOk("nbdcopy", [server().uri("copy-b"), target], { timeoutMs: 120_000 });
    const copied = await readFile(target);
    assert.equal(copied.byteLength, image.byteLength);
    assert.equal(sha256(copied), sha256(image));
  });

  it("fio --ioengine=nbd: random writes over 256 MiB verify with crc32c", async function () {
    requireTool(this, "fio");
    await server().createVdisk("fio", 256 * MIB);
    const report = path.join(directory, "fio-verify.json");
    const result = await runTool("fio", [
      "--name=nbd-verify", "--ioengine=nbd", `--uri=${server().uri("fio")}`,
      "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=256M",
      "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0",
      // fio's nbd engine prints "connected to NBD server" on stdout: the report goes to a file.
      "--output-format=json", `--output=${report}`,
    ], { timeoutMs: 240_000, cwd: directory });
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const job = (JSON.parse(await readFile(report, "utf8")) as { jobs: Array<{ error: number; write: { io_bytes: number }; read: { io_bytes: number } }> }).jobs[0];
    assert.equal(job.error, 0);
    assert.equal(job.write.io_bytes, 256 * MIB, "every block written");
    assert.equal(job.read.io_bytes, 256 * MIB, "every block read back and verified");
    assert.doesNotMatch(result.stderr, /verify|bad magic|crc32c/i);
  });

  it("nbdsh (libnbd python): edge cases of the protocol", async function () {
    requireTool(this, "python3-libnbd");
    await server().createVdisk("edge", 64 * MIB);
    const result = await runTool(LIBNBD_PYTHON, [EDGE_CASES_SCRIPT, server().uri("edge")], { timeoutMs: 120_000 });
    console.log(result.stdout.trimEnd().split("\n").map((line) => `        ${line}`).join("\n"));
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /all edge cases passed/);
  });
});

// Benchmark of Alba against the disk it writes to and against Swift, in one run on one machine:
// 64 MiB objects put and got through the Alba proxy (6 ASD processes on 3 node ids, preset (4,2,5,2),
// 1 MiB fragments, no compression or encryption, the proxy as its own process, the client the
// volumedriver's `alba` ObjectStore), then got again with 2 ASDs (on different node ids) killed, so
// every chunk decodes from parity. Compared with (a) the disk ceiling: the same encoded bytes (the
// 6 fragments of every chunk, made by the same coder) written as plain files into 6 directories,
// each fdatasynced, 6 writers at once, and read back; (b) PUT/GET of the same objects to a Swift
// all-in-one (one replica on the same filesystem) with our Swift client. Each side moves
// OVS_BENCH_OBJECTS objects (default 8) with OVS_BENCH_IN_FLIGHT requests at once (default 2). CPU per
// GiB counts every process of a side (the bench process included: it is the client).
// Run by hand (not part of npm test):
//   npx tsx tests/bench/alba/alba-bench.ts
// Environment: OVS_BENCH_OBJECTS, OVS_BENCH_IN_FLIGHT, OVS_BENCH_ROUNDS (default 3), OVS_BENCH_NO_DOCS=1
// (do not touch the docs).
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile } from "node:fs/promises";
import path from "node:path";
import { encodeChunk } from "../../../alba/src/encoding/erasure-coder.ts";
import { AsdClient } from "../../../alba/src/asd/asd-client.ts";
import { AlbaClient } from "../../../alba/src/client/alba-client.ts";
import { AlbaObjectStore } from "../../../volumedriver/src/backend/alba-store.ts";
import type { ObjectStore } from "../../../volumedriver/src/backend/object-store.ts";
import { SwiftObjectStore } from "../../../volumedriver/src/backend/swift-store.ts";
import { startAlbaCluster, type AlbaCluster } from "../../helpers/alba-cluster.ts";
import { objectServerMissingReason, startSwift, type SwiftServer } from "../../helpers/object-servers.ts";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dir.ts";
import { writeBenchmarkSection } from "../bench-docs.ts";
import { machineDescription } from "../bench-machine.ts";

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const OBJECT_SIZE_BYTES = 64 * MIB;
const OBJECT_COUNT = Number(process.env.OVS_BENCH_OBJECTS ?? 8);
const IN_FLIGHT = Number(process.env.OVS_BENCH_IN_FLIGHT ?? 2);
/** Rounds of puts and gets on every side, the order rotated each round; the table shows medians. */
const ROUNDS = Number(process.env.OVS_BENCH_ROUNDS ?? 3);
const K = 4;
const M = 2;
const FRAGMENT_SIZE_BYTES = MIB;
const ASD_NODE_IDS = ["n1", "n1", "n2", "n2", "n3", "n3"];
const DOCS_SECTION_TITLE = "## Alba (64 MiB objects, preset (4,2,5,2), 6 ASDs)";
const DOCS_GENERATED_END = "<!-- end of the part written by tests/bench/alba/alba-bench.ts; the notes below are kept -->";

interface Measurement {
  seconds: number;
  bytes: number;
  cpuSeconds: number;
}

/** utime + stime of a process (all its threads), in seconds; 0 for a process that is gone. */
async function cpuSecondsOf(pid: number): Promise<number> {
  try {
    const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

async function cpuSecondsOfAll(pids: readonly number[]): Promise<number> {
  const values = await Promise.all(pids.map(cpuSecondsOf));
  return values.reduce((sum, value) => sum + value, 0);
}

/** Runs `work(index)` for every object with `IN_FLIGHT` at once; CPU of `pids` (and this process) counted. */
async function measure(pids: () => readonly number[], bytes: number, work: (index: number) => Promise<void>): Promise<Measurement> {
  const cpuBefore = (await cpuSecondsOfAll(pids())) + process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6;
  const startedNs = process.hrtime.bigint();
  let next = 0;
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < OBJECT_COUNT) await work(next++);
  }));
  const seconds = Number(process.hrtime.bigint() - startedNs) / 1e9;
  const cpuAfter = (await cpuSecondsOfAll(pids())) + process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6;
  return { seconds, bytes, cpuSeconds: cpuAfter - cpuBefore };
}

function throughput(measurement: Measurement): string {
  return `${Math.round(measurement.bytes / MIB / measurement.seconds)} MiB/s`;
}

function cpuPerGib(measurement: Measurement): string {
  return `${(measurement.cpuSeconds / (measurement.bytes / GIB)).toFixed(1)} s`;
}

function ratio(ours: Measurement, peer: Measurement): string {
  return `${(peer.seconds / ours.seconds * (ours.bytes / peer.bytes)).toFixed(2)}×`;
}

/** Every fragment of every chunk of every object, as Alba stores them (no compression, no encryption). */
async function encodeAll(objects: readonly Buffer[]): Promise<Buffer[][]> {
  const fragmentsByObject: Buffer[][] = [];
  for (const object of objects) {
    const fragments: Buffer[] = [];
    for (let offset = 0; offset < object.length; offset += K * FRAGMENT_SIZE_BYTES) {
      fragments.push(...(await encodeChunk(object.subarray(offset, offset + K * FRAGMENT_SIZE_BYTES), K, M, FRAGMENT_SIZE_BYTES)));
    }
    fragmentsByObject.push(fragments);
  }
  return fragmentsByObject;
}

async function writeFileSynced(filePath: string, data: Buffer): Promise<void> {
  const handle = await open(filePath, "w");
  try {
    await handle.write(data, 0, data.length, 0);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

async function main(): Promise<void> {
  const swiftMissing = objectServerMissingReason("swift");
  if (swiftMissing !== undefined) throw new Error(`cannot run the Alba benchmark: ${swiftMissing}`);
  const workDirectory = await makeTempDir("alba-bench");
  let cluster: AlbaCluster | undefined;
  const swiftServers: SwiftServer[] = [];
  let roundsNote = "";
  const stores: ObjectStore[] = [];
  try {
    console.log(`Alba benchmark: ${OBJECT_COUNT} objects of ${OBJECT_SIZE_BYTES / MIB} MiB, ${IN_FLIGHT} in flight, data under ${workDirectory}`);
    const objects = Array.from({ length: OBJECT_COUNT }, () => randomBytes(OBJECT_SIZE_BYTES));
    const totalBytes = OBJECT_COUNT * OBJECT_SIZE_BYTES;
    const results = new Map<string, Measurement>();

    // The disk ceiling: the encoded bytes written as files, 6 directories (one per ASD), fdatasync each.
    const fragmentsByObject = await encodeAll(objects);
    const ceilingDirectories = ASD_NODE_IDS.map((_, index) => path.join(workDirectory, "ceiling", `disk-${index}`));
    for (const directory of ceilingDirectories) await mkdir(directory, { recursive: true });
    const fragmentPath = (object: number, fragment: number): string =>
      path.join(ceilingDirectories[fragment % (K + M)]!, `o${object}-f${fragment}`);
    results.set("ceiling put", await measure(() => [], totalBytes, async (index) => {
      const fragments = fragmentsByObject[index]!;
      // One writer per directory, as each ASD writes its own fragments.
      await Promise.all(ceilingDirectories.map(async (_, directoryIndex) => {
        for (let fragment = directoryIndex; fragment < fragments.length; fragment += K + M) {
          await writeFileSynced(fragmentPath(index, fragment), fragments[fragment]!);
        }
      }));
    }));
    results.set("ceiling get", await measure(() => [], totalBytes, async (index) => {
      const fragments = fragmentsByObject[index]!;
      // The data fragments only, as a healthy Alba get reads them.
      await Promise.all(fragments.map(async (_, fragment) => {
        if (fragment % (K + M) < K) await readFile(fragmentPath(index, fragment));
      }));
    }));
    fragmentsByObject.length = 0;

    // Alba (6 ASD processes and the proxy process) and two Swift all-in-ones (1 and 3 object
    // replicas: the latter, like (4,2), survives two lost devices) run side by side. Each round puts
    // and gets the objects on every side under fresh keys, the order of the sides rotated from
    // round to round: in this VM whoever first touches fresh memory pays for it, so a fixed order
    // would favour the later sides. The table shows each side's median round.
    cluster = await startAlbaCluster({
      directory: path.join(workDirectory, "alba"),
      asdNodeIds: ASD_NODE_IDS,
      preset: {
        name: "bench", policies: [{ k: K, m: M, c: K + 1, x: 2 }], fragmentSizeBytes: FRAGMENT_SIZE_BYTES,
        compression: "none", encryption: "none", checksum: "crc32c",
      },
    });
    const albaCluster = cluster;
    const viaProxy = new AlbaObjectStore({ proxyUrl: cluster.proxyUrl });
    stores.push(viaProxy);
    await viaProxy.createNamespace("bench");
    const library = await AlbaClient.open(cluster.backendDirectory, { connect: (record) => new AsdClient(record.host, record.port) });
    const albaPids = (): number[] => [albaCluster.proxy.pid, ...albaCluster.asds.filter((asd) => asd.harness.running).map((asd) => asd.pid)];
    interface Side { name: string; pids: () => readonly number[]; put: (key: string, data: Buffer) => Promise<unknown>; get: (key: string) => Promise<Buffer> }
    const sides: Side[] = [
      { name: "alba proxy", pids: albaPids, put: (key, data) => viaProxy.put("bench", key, data), get: (key) => viaProxy.get("bench", key) },
      { name: "alba library", pids: albaPids, put: (key, data) => library.put("bench", `library-${key}`, data), get: (key) => library.get("bench", `library-${key}`) },
    ];
    for (const replicas of [1, 3]) {
      const server = await startSwift(path.join(workDirectory, `swift-${replicas}`), { objectReplicas: replicas });
      swiftServers.push(server);
      const swiftStore = new SwiftObjectStore({ credentials: { kind: "tempauth", ...server.swift }, containerPrefix: "bench-" });
      stores.push(swiftStore);
      await swiftStore.createNamespace("bench");
      sides.push({
        name: `swift ${replicas}`, pids: () => server.pids,
        put: (key, data) => swiftStore.put("bench", key, data), get: (key) => swiftStore.get("bench", key),
      });
    }
    const rounds = new Map<string, Measurement[]>();
    const record = (name: string, measurement: Measurement): void => {
      rounds.set(name, [...(rounds.get(name) ?? []), measurement]);
    };
    for (let round = 0; round < ROUNDS; round++) {
      const order = [...sides.slice(round % sides.length), ...sides.slice(0, round % sides.length)];
      for (const side of order) {
        record(`${side.name} put`, await measure(side.pids, totalBytes, async (index) => {
          await side.put(`round-${round}-object-${index}`, objects[index]!);
        }));
        record(`${side.name} get`, await measure(side.pids, totalBytes, async (index) => {
          const data = await side.get(`round-${round}-object-${index}`);
          if (!data.equals(objects[index]!)) throw new Error(`${side.name} get of object ${index} returned other bytes`);
        }));
        console.log(`round ${round + 1} ${side.name}: put ${throughput(rounds.get(`${side.name} put`)!.at(-1)!)}, get ${throughput(rounds.get(`${side.name} get`)!.at(-1)!)}`);
      }
    }
    // Degraded: two ASDs (node ids n1 and n3) killed, every chunk decoded from parity.
    await cluster.asds[1]!.kill();
    await cluster.asds[4]!.kill();
    for (let round = 0; round < ROUNDS; round++) {
      for (const side of round % 2 === 0 ? sides.slice(0, 2) : sides.slice(0, 2).reverse()) {
        record(`${side.name} degraded get`, await measure(side.pids, totalBytes, async (index) => {
          const data = await side.get(`round-${round}-object-${index}`);
          if (!data.equals(objects[index]!)) throw new Error(`degraded ${side.name} get of object ${index} returned other bytes`);
        }));
      }
    }
    for (const [name, list] of rounds) {
      const sorted = [...list].sort((left, right) => left.seconds - right.seconds);
      results.set(name, sorted[Math.floor(sorted.length / 2)]!);
    }
    roundsNote = [...rounds].map(([name, list]) => `${name} ${list.map(throughput).join(", ")}`).join("; ");
    await library.close();
    await viaProxy.close();
    await cluster.stop();
    cluster = undefined;
    for (const server of swiftServers.splice(0)) await server.stop();

    const cell = (name: string): string => {
      const result = results.get(name);
      return result === undefined ? "—" : `${throughput(result)} (CPU ${cpuPerGib(result)}/GiB)`;
    };
    const ratioCell = (ours: string, peer: string): string => ratio(results.get(ours)!, results.get(peer)!);
    const table = [
      "| side | put | get | get, 2 ASDs down (decode from parity) |",
      "|---|---|---|---|",
      `| Alba through the proxy (the vPool's path) | ${cell("alba proxy put")} | ${cell("alba proxy get")} | ${cell("alba proxy degraded get")} |`,
      `| Alba client library in process | ${cell("alba library put")} | ${cell("alba library get")} | ${cell("alba library degraded get")} |`,
      `| Swift all-in-one, 1 replica | ${cell("swift 1 put")} | ${cell("swift 1 get")} | — |`,
      `| Swift all-in-one, 3 replicas | ${cell("swift 3 put")} | ${cell("swift 3 get")} | — |`,
      `| disk ceiling (encoded bytes as files) | ${cell("ceiling put")} | ${cell("ceiling get")} | — |`,
      "",
      "| ratio | put | get | degraded get |",
      "|---|---|---|---|",
      ...["alba proxy", "alba library"].flatMap((side) => [1, 3].map((replicas) =>
        `| ${side === "alba proxy" ? "Alba proxy" : "Alba library"} / Swift ${replicas} replica${replicas === 1 ? "" : "s"} | ` +
        `${ratioCell(`${side} put`, `swift ${replicas} put`)} | ${ratioCell(`${side} get`, `swift ${replicas} get`)} | ${ratioCell(`${side} degraded get`, `swift ${replicas} get`)} |`)),
      ...["alba proxy", "alba library"].map((side) =>
        `| ${side === "alba proxy" ? "Alba proxy" : "Alba library"} / disk ceiling | ${ratioCell(`${side} put`, "ceiling put")} | ${ratioCell(`${side} get`, "ceiling get")} | ${ratioCell(`${side} degraded get`, "ceiling get")} |`),
    ].join("\n");
    console.log(`\n${table}`);
    console.log(`rounds: ${roundsNote}`);
    if (process.env.OVS_BENCH_NO_DOCS !== "1") await updateDocs(table, roundsNote);
  } finally {
    for (const store of stores) await store.close().catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
    for (const server of swiftServers) await server.stop().catch(() => undefined);
    await removeTempDir(workDirectory);
  }
}

async function updateDocs(table: string, roundsNote: string): Promise<void> {
  const section = [
    DOCS_SECTION_TITLE,
    "",
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC on ${machineDescription()}.`,
    "",
    `Command: \`npx tsx tests/bench/alba/alba-bench.ts\` (OVS_BENCH_OBJECTS=${OBJECT_COUNT}, OVS_BENCH_IN_FLIGHT=${IN_FLIGHT}, OVS_BENCH_ROUNDS=${ROUNDS}).`,
    `${OBJECT_COUNT} random objects of 64 MiB, ${IN_FLIGHT} requests in flight, every side on the same filesystem (os.tmpdir()).`,
    "Alba: 6 `ovs alba asd run` processes on node ids n1,n1,n2,n2,n3,n3, the `ovs alba proxy run` process, the client the",
    "volumedriver's `alba` ObjectStore (HTTP to the proxy); preset (4,2,5,2), 1 MiB fragments, no compression or encryption, CRC-32C",
    "per fragment. Degraded: 2 ASDs (node ids n1 and n3) killed with SIGKILL, every chunk decoded from 2 data + 2 parity fragments.",
    "Disk ceiling: the same encoded bytes (all 6 fragments of every chunk, from the same coder) written as plain files",
    "into 6 directories, one writer per directory, each file fdatasynced (ASDs fsync each batch), and the data fragments read back.",
    "Alba client library: AlbaClient in the benchmark process on the same backend and ASDs (no proxy hop).",
    "ASDs on loopback are reached over their Unix sockets (alba/docs/asd-protocol.md).",
    "Swift: the all-in-one of deploy/swift (proxy, account, container, object servers), native API, our Swift client; with 1 object replica",
    "(as the tests run it) and with 3 (SWIFT_OBJECT_REPLICAS=3, 3 devices: like (4,2), it survives 2 lost devices), each a fresh server.",
    "CPU per GiB counts every process of the side, the benchmark process (the client) included.",
    `${ROUNDS} rounds, each putting and getting the objects on every side under fresh keys with the order of the sides rotated`,
    "(in this VM whoever touches fresh memory first pays for it); the table shows each side's median round.",
    "",
    table,
    "",
    `Every round (in run order): ${roundsNote}.`,
    "",
    DOCS_GENERATED_END,
  ].join("\n");
  await writeBenchmarkSection(DOCS_SECTION_TITLE, section, DOCS_GENERATED_END);
}

await main();

// Goal: measure the NBD frontend's own ceiling and its cost on top of the engine, without external
// tools: a pipelined NBD client in a child process (simple replies, fixed queue depth, random or
// sequential offsets) against startNbdServer() serving (a) an in-memory BlockDevice, where only the
// frontend costs anything, and (b) a real vDisk on the local backend. Compare with fio against
// qemu-nbd / nbdkit for the end-to-end figures (tests/bench/nbd, docs/BENCHMARKS.md).
//
//   npx tsx tests/bench/nbd-frontend-bench.ts            (OVS_BENCH_SECONDS=5 per phase by default)
import { connect } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { BlockDevice, BlockExtent } from "../../volumedriver/src/engine/block-device.ts";

interface Job {
  port: number;
  exportName: string;
  sizeBytes: number;
  write: boolean;
  random: boolean;
  blockBytes: number;
  queueDepth: number;
  seconds: number;
}

interface Result {
  operations: number;
  bytes: number;
  seconds: number;
}

const MIB = 1024 * 1024;
const WORKING_SET_BYTES = 256 * MIB;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;

/** The worker side: handshake with GO, then keep queueDepth requests in flight for `seconds`. */
async function runClient(job: Job): Promise<Result> {
  const socket = connect({ host: "127.0.0.1", port: job.port, noDelay: true });
  let buffer: Buffer = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  socket.on("data", (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    wake?.();
  });
  const need = async (count: number): Promise<Buffer> => {
    while (buffer.length < count) await new Promise<void>((resolve) => { wake = resolve; });
    const taken = buffer.subarray(0, count);
    buffer = buffer.subarray(count);
    return taken;
  };
  await need(18);
  const name = Buffer.from(job.exportName);
  const go = Buffer.alloc(4 + 16 + 4 + name.length + 2);
  go.writeUInt32BE(3, 0); // FIXED_NEWSTYLE | NO_ZEROES
  go.writeBigUInt64BE(0x49484156454f5054n, 4);
  go.writeUInt32BE(7, 12); // NBD_OPT_GO
  go.writeUInt32BE(4 + name.length + 2, 16);
  go.writeUInt32BE(name.length, 20);
  name.copy(go, 24);
  socket.write(go);
  for (;;) {
    const header = await need(20);
    const type = header.readUInt32BE(12);
    await need(header.readUInt32BE(16));
    if (type === 1) break;
    if (type >= 0x8000_0000) throw new Error(`GO refused: 0x${type.toString(16)}`);
  }

  const payload = Buffer.alloc(job.blockBytes, 0xa5);
  const blocks = Math.floor(job.sizeBytes / job.blockBytes);
  let sequential = 0;
  let seed = 12345;
  const nextOffset = (): number => {
    if (!job.random) return (sequential++ % blocks) * job.blockBytes;
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed % blocks) * job.blockBytes;
  };
  const send = (slot: number): void => {
    const header = Buffer.allocUnsafe(28);
    header.writeUInt32BE(REQUEST_MAGIC, 0);
    header.writeUInt16BE(0, 4);
    header.writeUInt16BE(job.write ? 1 : 0, 6);
    header.writeUInt32BE(0, 8);
    header.writeUInt32BE(slot, 12);
    header.writeBigUInt64BE(BigInt(nextOffset()), 16);
    header.writeUInt32BE(job.blockBytes, 24);
    socket.cork();
    socket.write(header);
    if (job.write) socket.write(payload);
    process.nextTick(() => socket.uncork());
  };
  // Replies are parsed synchronously in the data handler: no promise per reply.
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(job.seconds * 1e9);
  const replyBytes = 16 + (job.write ? 0 : job.blockBytes);
  let operations = 0;
  let inFlight = 0;
  const done = new Promise<void>((resolve, reject) => {
    const onReplies = (): void => {
      let at = 0;
      while (buffer.length - at >= replyBytes) {
        if (buffer.readUInt32BE(at) !== SIMPLE_REPLY_MAGIC || buffer.readUInt32BE(at + 4) !== 0) {
          reject(new Error("bad reply"));
          return;
        }
        const slot = buffer.readUInt32BE(at + 12);
        at += replyBytes;
        operations++;
        inFlight--;
        if (process.hrtime.bigint() < deadline) {
          send(slot);
          inFlight++;
        }
      }
      buffer = buffer.subarray(at);
      if (inFlight === 0) resolve();
    };
    wake = onReplies;
  });
  for (let slot = 0; slot < job.queueDepth; slot++) {
    send(slot);
    inFlight++;
  }
  await done;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  socket.destroy();
  return { operations, bytes: operations * job.blockBytes, seconds };
}

/** The frontend alone: a BlockDevice that is one Buffer. */
class MemoryBlockDevice implements BlockDevice {
  readonly name = "memory";
  readonly readOnly = false;
  private readonly data: Buffer;
  constructor(readonly sizeBytes: number) {
    this.data = Buffer.alloc(sizeBytes);
  }
  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return Buffer.from(this.data.subarray(offsetBytes, offsetBytes + lengthBytes));
  }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    this.data.set(data, offsetBytes);
  }
  async flush(): Promise<void> {}
  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.data.fill(0, offsetBytes, offsetBytes + lengthBytes);
  }
  async writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.data.fill(0, offsetBytes, offsetBytes + lengthBytes);
  }
  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    return [{ offsetBytes, lengthBytes, allocated: true }];
  }
}

async function main(): Promise<void> {
  const { LocalObjectStore } = await import("../../volumedriver/src/backend/local-store.ts");
  const { openVPool } = await import("../../volumedriver/src/engine/vpool.ts");
  const { startNbdServer } = await import("../../volumedriver/src/frontends/nbd/nbd-server.ts");
  const seconds = Number(process.env.OVS_BENCH_SECONDS ?? 5);
  const sizeBytes = 1024 * MIB;
  const directory = await mkdtemp(join(tmpdir(), "ovs-nbd-bench-"));
  const backend = new LocalObjectStore(join(directory, "backend"));
  const vpool = await openVPool({ name: "bench", directory: join(directory, "vpool"), backend });
  const volume = await vpool.createVolume("disk0", sizeBytes);
  const memory = new MemoryBlockDevice(sizeBytes);
  const exports = new Map([["memory", memory], ["disk0", volume]] as Array<[string, BlockDevice]>);
  const server = await startNbdServer({
    listExports: () => [...exports].map(([name, device]) => ({ name, description: name, device })),
    findExport: (name) => {
      const device = exports.get(name);
      return device === undefined ? undefined : { name, description: name, device };
    },
  }, { host: "127.0.0.1", port: 0 });

  const phases: Array<Omit<Job, "port" | "exportName" | "sizeBytes" | "seconds"> & { label: string }> = [
    { label: "4 KiB random write, QD32", write: true, random: true, blockBytes: 4096, queueDepth: 32 },
    { label: "4 KiB random read, QD32", write: false, random: true, blockBytes: 4096, queueDepth: 32 },
    { label: "1 MiB sequential write, QD8", write: true, random: false, blockBytes: MIB, queueDepth: 8 },
  ];
  console.log(`NBD frontend bench: ${seconds} s per phase, simple replies, client in a child process`);
  console.log("| test | in-memory device | vDisk (engine, local backend) |");
  console.log("|---|---|---|");
  try {
    for (const phase of phases) {
      const cells: string[] = [];
      for (const exportName of ["memory", "disk0"]) {
        // A 256 MiB working set, as fio --size=256m: the memory device's pages are touched once, not throughout.
        const job: Job = { ...phase, port: server.port, exportName, sizeBytes: WORKING_SET_BYTES, seconds };
        const child = fork(fileURLToPath(import.meta.url), ["client"], { execArgv: ["--import", "tsx"] });
        child.send(job);
        const result = await new Promise<Result>((resolve, reject) => {
          child.once("message", (message) => resolve(message as Result));
          child.once("error", reject);
          child.once("exit", (code) => reject(new Error(`bench client exited with ${code}`)));
        });
        child.kill();
        const iops = result.operations / result.seconds;
        cells.push(phase.blockBytes >= MIB ? `${(result.bytes / result.seconds / 1e6).toFixed(0)} MB/s` : `${iops.toFixed(0)} IOPS`);
      }
      console.log(`| ${phase.label} | ${cells.join(" | ")} |`);
    }
  } finally {
    await server.close();
    await vpool.close();
    await backend.close();
    await rm(directory, { recursive: true, force: true });
  }
}

if (process.argv[2] === "client") {
  process.once("message", (job) => {
    void runClient(job as Job).then((result) => process.send?.(result, () => process.exit(0)));
  });
} else {
  await main();
}

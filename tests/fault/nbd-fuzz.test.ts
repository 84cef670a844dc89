// Goal: the NBD server survives hostile clients. Many connections feed it random and mutated
// handshake and request bytes (seeded: OVS_SEED replays the byte streams; the seed is printed on
// failure) for a bounded time, while one well-behaved client keeps writing, reading back and verifying
// its own vDisk: the server never crashes, the good client never sees wrong data or a stall, and every
// hostile connection is eventually closed.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { MIB } from "../../volumedriver/src/engine/vpool-types.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { waitFor } from "../helpers/volume-assertions.ts";
import { type NbdFixture, ReadOnlyDevice, startNbdFixture } from "../unit/volumedriver/nbd/nbd-fixture.ts";
import { NBD, NbdTestClient, openNbdClient } from "../unit/volumedriver/nbd/nbd-test-client.ts";

const FUZZ_DURATION_MS = Number(process.env.NBD_FUZZ_SECONDS ?? 12) * 1000;
const FUZZ_CONNECTIONS = 24;
const GOOD_REGION_BYTES = 4 * MIB;
const GOOD_QUEUE_DEPTH = 8;
/** Slowest acceptable reply to the good client while the server is under fuzz. */
const GOOD_REPLY_MS_MAX = 5_000;

function optionBytes(option: number, data: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(NBD.OPTION_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(data.length, 12);
  return Buffer.concat([header, data]);
}

function clientFlags(flags: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(flags, 0);
  return bytes;
}

/** A plausible-looking option: known or unknown type, valid or mangled data. */
function randomOption(random: SeededRandom): Buffer {
  const option = random.pick([1, 2, 3, 5, 6, 7, 8, 9, 10, 11, random.integer(0, 0xffff), random.nextUint32()]);
  let data: Buffer;
  switch (random.integer(0, 4)) {
    case 0: data = NbdTestClient.encodeExportQuery(random.pick(["fuzz-target", "fuzz-ro", "nope", ""]), [0, 1, 2, 3].slice(0, random.integer(0, 4))); break;
    case 1: data = NbdTestClient.encodeMetaContextQuery("fuzz-target", random.pick([[], ["base:allocation"], ["base:"], ["x"], ["qemu:dirty-bitmap:a"]])); break;
    case 2: data = random.bytes(random.integer(0, 64)); break;
    case 3: data = Buffer.alloc(0); break;
    default: data = random.bytes(random.integer(0, 600)); break;
  }
  if (option === 1 && random.chance(0.5)) return Buffer.alloc(0); // do not end the handshake too often
  return optionBytes(option, data);
}

/** A request header (and payload for writes), mostly well-formed, sometimes out of range or oversized. */
function randomRequest(random: SeededRandom, sizeBytes: number): Buffer {
  const command = random.chance(0.9) ? random.integer(0, 7) : random.integer(8, 0xffff);
  const validFlags = [NBD.CMD_FLAG_DF, 0, NBD.CMD_FLAG_FUA, 0, NBD.CMD_FLAG_FUA | NBD.CMD_FLAG_NO_HOLE | NBD.CMD_FLAG_FAST_ZERO, NBD.CMD_FLAG_REQ_ONE][command] ?? 0;
  const flags = random.chance(0.7) ? validFlags & random.integer(0, 31) : random.chance(0.7) ? random.integer(0, 31) : random.integer(0, 0xffff);
  const length = random.pick([0, 1, 512, 4096, 65536, random.integer(0, 300_000), random.nextUint32()]);
  const offset = random.chance(0.85) ? random.integer(0, sizeBytes) : random.pick([sizeBytes - 1, 2 ** 40, 2 ** 60]);
  const header = Buffer.alloc(28);
  header.writeUInt32BE(NBD.REQUEST_MAGIC, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(command, 6);
  header.writeUInt32BE(random.nextUint32(), 8);
  header.writeUInt32BE(random.nextUint32(), 12);
  header.writeBigUInt64BE(BigInt(offset), 16);
  header.writeUInt32BE(length, 24);
  if (command === NBD.CMD_DISC) return random.chance(0.3) ? header : Buffer.alloc(0);
  if (command !== NBD.CMD_WRITE) return header;
  // Usually the whole payload; sometimes a truncated one (the stream then goes out of step).
  const payloadBytes = length <= 300_000 && random.chance(0.9) ? length : random.integer(0, 4096);
  return Buffer.concat([header, random.bytes(payloadBytes)]);
}

/** Flips, overwrites, inserts or deletes a few bytes. */
function mutate(random: SeededRandom, data: Buffer): Buffer {
  if (data.length === 0 || random.chance(0.6)) return data;
  const copy = Buffer.from(data);
  const mutations = random.integer(1, 4);
  let result = copy;
  for (let index = 0; index < mutations && result.length > 0; index++) {
    const at = random.integer(0, result.length - 1);
    switch (random.integer(0, 3)) {
      case 0: result[at] = (result[at] as number) ^ (1 << random.integer(0, 7)); break;
      case 1: result[at] = random.integer(0, 255); break;
      case 2: result = Buffer.concat([result.subarray(0, at), random.bytes(random.integer(1, 8)), result.subarray(at)]); break;
      default: result = Buffer.concat([result.subarray(0, at), result.subarray(at + random.integer(1, 8))]); break;
    }
  }
  return result;
}

/** The bytes one hostile connection sends, in a few writes. */
function hostileStream(random: SeededRandom, sizeBytes: number): Buffer[] {
  const parts: Buffer[] = [];
  const style = random.integer(0, 3);
  if (style === 0) {
    // Pure garbage.
    for (let index = random.integer(1, 5); index > 0; index--) parts.push(random.bytes(random.integer(1, 2048)));
    return parts;
  }
  if (style === 1) {
    // Mutated handshakes: flags and options, mangled.
    parts.push(mutate(random, clientFlags(random.chance(0.9) ? NBD.FLAG_C_FIXED_NEWSTYLE | (random.chance(0.5) ? NBD.FLAG_C_NO_ZEROES : 0) : random.nextUint32())));
    for (let index = random.integer(0, 6); index > 0; index--) parts.push(mutate(random, randomOption(random)));
    return parts;
  }
  // A valid handshake with a few well-formed but random options, then transmission.
  parts.push(clientFlags(NBD.FLAG_C_FIXED_NEWSTYLE | (random.chance(0.5) ? NBD.FLAG_C_NO_ZEROES : 0)));
  for (let index = random.integer(0, 3); index > 0; index--) {
    const option = randomOption(random);
    // An EXPORT_NAME here would end the handshake early on an export the stream does not expect.
    if (option.length >= 16 && option.readUInt32BE(8) !== NBD.OPT_EXPORT_NAME && option.readUInt32BE(8) !== NBD.OPT_ABORT
      && option.readUInt32BE(8) !== NBD.OPT_GO && option.readUInt32BE(8) !== NBD.OPT_STARTTLS) parts.push(option);
  }
  // Enter transmission on the fuzz target (structured replies and base:allocation sometimes), then requests.
  if (random.chance(0.5)) parts.push(optionBytes(NBD.OPT_STRUCTURED_REPLY, Buffer.alloc(0)));
  if (random.chance(0.5)) parts.push(optionBytes(NBD.OPT_SET_META_CONTEXT, NbdTestClient.encodeMetaContextQuery("fuzz-target", ["base:allocation"])));
  const name = random.chance(0.8) ? "fuzz-target" : "fuzz-ro";
  parts.push(random.chance(0.8) ? optionBytes(NBD.OPT_GO, NbdTestClient.encodeExportQuery(name, [3])) : optionBytes(NBD.OPT_EXPORT_NAME, Buffer.from(name)));
  for (let index = random.integer(1, 60); index > 0; index--) {
    const request = randomRequest(random, sizeBytes);
    parts.push(style === 3 ? mutate(random, request) : request);
  }
  return parts;
}

/** Runs one hostile connection: send the stream in pieces, read or ignore replies, hang up at a random moment. */
async function runHostileConnection(port: number, random: SeededRandom, sizeBytes: number): Promise<void> {
  const socket: Socket = connect({ host: "127.0.0.1", port });
  socket.on("error", () => undefined);
  const readsReplies = random.chance(0.8);
  if (readsReplies) socket.on("data", () => undefined);
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  await new Promise<void>((resolve) => {
    socket.once("connect", () => resolve());
    socket.once("close", () => resolve());
  });
  for (const part of hostileStream(random, sizeBytes)) {
    if (socket.destroyed) break;
    socket.write(part);
    if (random.chance(0.3)) await new Promise((resolve) => setTimeout(resolve, random.integer(0, 15)));
  }
  const lifetime = new Promise((resolve) => setTimeout(resolve, random.integer(0, 300)));
  await Promise.race([closed, lifetime]);
  if (random.chance(0.5)) socket.end();
  socket.destroy();
  await closed;
}

describe("fault: NBD server under fuzzed handshake and request bytes", function () {
  this.timeout(FUZZ_DURATION_MS + 60_000);
  const tempDirs = new TempDirs("nbd-fuzz");
  let fixture: NbdFixture | undefined;

  after(async function () {
    if (fixture !== undefined) await fixture.close();
    await tempDirs.removeAll();
  });

  it("never crashes and keeps serving a concurrent good client correctly", async function () {
    const seed = seedFromEnvironment();
    try {
      fixture = await startNbdFixture(tempDirs, { handshakeTimeoutMs: 1_000, requestSizeBytesMax: 1 * MIB, inFlightRequestsMax: 16 });
      const target = await fixture.vpool.createVolume("disk1", 8 * MIB);
      fixture.registry.exports.clear();
      fixture.registry.add("disk0", fixture.volume, "the good client's vDisk");
      fixture.registry.add("fuzz-target", target);
      fixture.registry.add("fuzz-ro", new ReadOnlyDevice(target));
      const port = fixture.port;
      const deadline = Date.now() + FUZZ_DURATION_MS;

      let hostileConnections = 0;
      const hostile = Array.from({ length: FUZZ_CONNECTIONS }, async (_, index) => {
        const random = new SeededRandom((seed ^ Math.imul(index + 1, 0x9e3779b1)) | 0);
        while (Date.now() < deadline) {
          await runHostileConnection(port, random, target.sizeBytes);
          hostileConnections++;
        }
      });

      const good = await openNbdClient(port, "disk0", { structured: true, baseAllocation: true });
      const model = Buffer.alloc(GOOD_REGION_BYTES);
      const random = new SeededRandom(seed);
      let goodOperations = 0;
      const worker = async (lane: number): Promise<void> => {
        // Each lane owns a slice of the region, so concurrent lanes never race on the same bytes.
        const laneBytes = GOOD_REGION_BYTES / GOOD_QUEUE_DEPTH;
        const laneStart = lane * laneBytes;
        while (Date.now() < deadline) {
          const length = random.pick([512, 4096, 4096, 65536, 1000]);
          const offset = laneStart + random.integer(0, (laneBytes - length) / 512) * 512;
          const started = Date.now();
          if (random.chance(0.5)) {
            const data = random.bytes(length);
            const reply = await good.write(offset, data, random.chance(0.1) ? NBD.CMD_FLAG_FUA : 0);
            assert.equal(reply.error, 0, `good write failed: ${reply.errorMessage ?? reply.error}`);
            data.copy(model, offset);
          } else if (random.chance(0.9)) {
            const reply = await good.read(offset, length);
            assert.equal(reply.error, 0, `good read failed: ${reply.errorMessage ?? reply.error}`);
            assert.ok(reply.data?.equals(model.subarray(offset, offset + length)), `good read at ${offset}+${length} returned wrong data`);
          } else {
            assert.equal((await good.flush()).error, 0);
          }
          assert.ok(Date.now() - started < GOOD_REPLY_MS_MAX, "the good client stalled");
          goodOperations++;
        }
      };
      await Promise.all([...Array.from({ length: GOOD_QUEUE_DEPTH }, (_, lane) => worker(lane)), ...hostile]);

      for (let offset = 0; offset < GOOD_REGION_BYTES; offset += 1 * MIB) {
        const piece = await good.read(offset, 1 * MIB);
        assert.equal(piece.error, 0, `final read at ${offset}: ${piece.errorMessage ?? piece.error}`);
        assert.ok(piece.data?.equals(model.subarray(offset, offset + 1 * MIB)), `the good client's region matches its model at ${offset}`);
      }
      assert.ok(goodOperations > 100, `the good client made progress (${goodOperations} operations)`);
      assert.ok(hostileConnections > FUZZ_CONNECTIONS, `hostile connections ran (${hostileConnections})`);
      const server = fixture.server;
      assert.ok(await waitFor(() => server.connectionCount() === 1, 5_000),
        `every hostile connection was closed (${server.connectionCount()} open, 1 expected)`);
      const fresh = await openNbdClient(port, "disk0");
      assert.ok((await fresh.read(0, 4096)).data?.equals(model.subarray(0, 4096)), "a new client is served after the fuzz");
      fresh.close();
      await good.disconnect();
      console.log(`      nbd fuzz: seed ${seed}, ${hostileConnections} hostile connections, ${goodOperations} good operations`);
    } catch (error) {
      console.log(`      nbd fuzz failed: replay with OVS_SEED=${seed}`);
      throw error;
    }
  });
});

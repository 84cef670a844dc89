// Goal: a real `ovs alba asd run` process serves batches, whole and ranged reads, listings, statistics and health over HTTP to AsdClient, keeps its data across a restart, exits 0 on SIGTERM, and maps refusals (assert, full, invalid, down) to the right AsdError kinds.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { isAsdError, type AsdErrorKind } from "../../alba/src/asd/asd-api.ts";
import path from "node:path";
import { AsdClient } from "../../alba/src/asd/asd-client.ts";
import { ASD_LOCAL_SOCKET_FILE_NAME } from "../../alba/src/asd/asd-main.ts";
import { crc32c } from "../../alba/src/codec/crc32c.ts";
import { startAsd, stopAll, type RunningAsd } from "../helpers/alba-processes.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const temp = new TempDirs("alba-asd");

async function rejectsWith(promise: Promise<unknown>, kind: AsdErrorKind): Promise<void> {
  await assert.rejects(promise, (error: unknown) => isAsdError(error, kind));
}

/** A raw HTTP request, for what AsdClient never sends. */
function rawRequest(port: number, method: string, path: string, body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = request({ host: "127.0.0.1", port, method, path, headers: body === undefined ? {} : { "content-length": body.length } }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}

describe("ASD daemon (real process)", function () {
  this.timeout(120_000);
  const running: RunningAsd[] = [];
  const clients: AsdClient[] = [];
  let directory: string;

  function clientOf(asd: RunningAsd): AsdClient {
    const client = new AsdClient(asd.host, asd.port);
    clients.push(client);
    return client;
  }

  before(async () => {
    directory = await temp.make();
  });
  after(async () => {
    for (const client of clients) await client.close();
    await stopAll(running);
    await temp.removeAll();
  });

  const large = randomBytes(3 * 1024 * 1024 + 17);
  const small = Buffer.from("a small fragment");
  const oddKey = "f/../dir with space/ünïcode?&=#%";
  let asdId: string;

  it("serves batches, gets, ranges, listings, statistics and health", async () => {
    const asd = await startAsd({ directory, nodeId: "node-1" });
    running.push(asd);
    asdId = asd.asdId;
    const client = clientOf(asd);
    assert.deepEqual(await client.health(), { status: "ok", asdId, nodeId: "node-1", localSocketPath: path.join(directory, ASD_LOCAL_SOCKET_FILE_NAME) });
    await client.applyBatch({ asserts: [{ kind: "absent", key: "large" }], updates: [
      { kind: "set", key: "large", value: large }, { kind: "set", key: oddKey, value: small }, { kind: "set", key: ".", value: small },
    ] });
    assert.deepEqual(await client.get("large"), large);
    assert.deepEqual(await client.get(oddKey), small);
    assert.deepEqual(await client.get("."), small);
    assert.equal(await client.get("missing"), undefined);
    assert.equal(await client.getRanges("missing", [{ offsetBytes: 0, lengthBytes: 1 }]), undefined);

    // 300 ranges: more than one HTTP request carries (256), so the client splits them.
    const ranges = Array.from({ length: 300 }, (_unused, index) => ({ offsetBytes: index * 10_007, lengthBytes: 1 + index }));
    ranges.push({ offsetBytes: large.length - 5, lengthBytes: 100 });
    const parts = await client.getRanges("large", ranges);
    assert.ok(parts !== undefined);
    assert.equal(parts.length, ranges.length);
    ranges.forEach((range, index) => assert.deepEqual(parts[index], large.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes)));
    await rejectsWith(client.getRanges("large", [{ offsetBytes: large.length + 1, lengthBytes: 1 }]), "Invalid");

    await rejectsWith(client.applyBatch({ asserts: [{ kind: "checksum", key: "large", crc32c: (crc32c(large) ^ 1) >>> 0 }], updates: [{ kind: "delete", key: "large" }] }), "AssertFailed");
    await client.applyBatch({ asserts: [{ kind: "checksum", key: "large", crc32c: crc32c(large) }], updates: [{ kind: "set", key: "extra", value: small }] });

    const page = await client.list({ limitKeys: 2 });
    assert.deepEqual(page.keys.map((info) => info.key), [".", "extra"]);
    assert.equal(page.nextStartAfter, "extra");
    const rest = await client.list({ startAfter: page.nextStartAfter! });
    assert.deepEqual(rest.keys, [{ key: oddKey, sizeBytes: small.length, crc32c: crc32c(small) }, { key: "large", sizeBytes: large.length, crc32c: crc32c(large) }]
      .sort((left, right) => Buffer.compare(Buffer.from(left.key), Buffer.from(right.key))));
    assert.equal(rest.nextStartAfter, undefined);
    assert.deepEqual((await client.list({ prefix: "f/" })).keys.map((info) => info.key), [oddKey]);

    const statistics = await client.statistics();
    assert.equal(statistics.asdId, asdId);
    assert.equal(statistics.nodeId, "node-1");
    assert.equal(statistics.keyCount, 4);
    assert.equal(statistics.usedBytes, large.length + 3 * small.length);
    assert.equal(statistics.batchCount, 2);
    assert.ok(statistics.fsyncCount >= 2 && statistics.diskFreeBytes > 0 && statistics.capacityBytes > statistics.usedBytes);
  });

  it("shares commits among concurrent batches over HTTP (fewer fsyncs than batches)", async () => {
    const client = clientOf(running[0]!);
    const before = await client.statistics();
    const count = 48;
    await Promise.all(Array.from({ length: count }, (_unused, index) =>
      client.applyBatch({ asserts: [], updates: [{ kind: "set", key: `concurrent/${index}`, value: Buffer.from(String(index)) }] })));
    const after = await client.statistics();
    assert.equal(after.batchCount - before.batchCount, count);
    assert.ok(after.fsyncCount - before.fsyncCount < count, `${after.fsyncCount - before.fsyncCount} fsyncs for ${count} batches`);
    for (let index = 0; index < count; index++) assert.deepEqual(await client.get(`concurrent/${index}`), Buffer.from(String(index)));
    await client.applyBatch({ asserts: [], updates: Array.from({ length: count }, (_unused, index) => ({ kind: "delete" as const, key: `concurrent/${index}` })) });
    assert.equal((await client.list({ prefix: "concurrent/" })).keys.length, 0);
  });

  it("answers malformed requests with 400 JSON errors and keeps serving", async () => {
    const asd = running[0]!;
    const garbage = await rawRequest(asd.port, "POST", "/v1/batch", randomBytes(100));
    assert.equal(garbage.status, 400);
    assert.equal(JSON.parse(garbage.body).code, "Invalid");
    assert.equal((await rawRequest(asd.port, "GET", "/v1/keys/%E0%A4%A")).status, 400);
    assert.equal((await rawRequest(asd.port, "GET", "/v1/keys/large?ranges=1:2:3")).status, 400);
    assert.equal((await rawRequest(asd.port, "DELETE", "/v1/keys/large")).status, 405);
    assert.equal((await rawRequest(asd.port, "GET", "/v1/nothing")).status, 404);
    assert.deepEqual(await clientOf(asd).get("large"), large);
  });

  it("keeps its data and identity across a SIGTERM (exit 0) and restart", async () => {
    const exit = await running.pop()!.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    await rejectsWith(clients[0]!.get("large"), "Unavailable");
    const asd = await startAsd({ directory, nodeId: "node-1" });
    running.push(asd);
    assert.equal(asd.asdId, asdId);
    const client = clientOf(asd);
    assert.deepEqual(await client.get("large"), large);
    assert.deepEqual(await client.get(oddKey), small);
    assert.equal((await client.statistics()).keyCount, 4);
  });

  it("a client on this host moves to the ASD's Unix socket (same data, same ASD), falls back to TCP when the socket goes, and finds it again after a restart", async () => {
    const asd = running[running.length - 1]!;
    const local = clientOf(asd);
    const tcpOnly = new AsdClient(asd.host, asd.port, { useLocalSocket: false });
    clients.push(tcpOnly);
    const value = randomBytes(300_000);
    await local.applyBatch({ asserts: [], updates: [{ kind: "set", key: "over-socket", value }] });
    assert.equal(local.usesLocalSocket, true, "a loopback ASD is reached over its Unix socket");
    assert.deepEqual(await tcpOnly.get("over-socket"), value, "written over the socket, read over TCP");
    assert.equal(tcpOnly.usesLocalSocket, false);
    const exit = await running.pop()!.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    await rejectsWith(local.get("over-socket"), "Unavailable");
    assert.equal(local.usesLocalSocket, false, "a socket nobody listens on sends the client back to TCP");
    const restarted = await startAsd({ directory, nodeId: "node-1" });
    running.push(restarted);
    const again = new AsdClient(restarted.host, restarted.port);
    clients.push(again);
    assert.deepEqual(await again.get("over-socket"), value);
    assert.equal(again.usesLocalSocket, true, "the restarted ASD's socket is found again");
  });

  it("refuses batches beyond --capacity with Full while reads and deletes work", async () => {
    const asd = await startAsd({ directory: await temp.make(), nodeId: "node-2", capacityBytes: 1024 * 1024 });
    running.push(asd);
    const client = clientOf(asd);
    const value = randomBytes(700_000);
    await client.applyBatch({ asserts: [], updates: [{ kind: "set", key: "a", value }] });
    await rejectsWith(client.applyBatch({ asserts: [], updates: [{ kind: "set", key: "b", value }] }), "Full");
    assert.deepEqual(await client.get("a"), value);
    await client.applyBatch({ asserts: [], updates: [{ kind: "delete", key: "a" }] });
    await client.applyBatch({ asserts: [], updates: [{ kind: "set", key: "b", value }] });
    assert.deepEqual(await client.get("b"), value);
    await client.close();
    await rejectsWith(client.get("b"), "Closed");
    const exit = await running.pop()!.stop();
    assert.equal(exit.code, 0);
    const stopped = new AsdClient(asd.host, asd.port, { requestTimeoutMs: 2000 });
    clients.push(stopped);
    await rejectsWith(stopped.statistics(), "Unavailable");
  });
});

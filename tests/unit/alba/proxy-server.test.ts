// Goal: the proxy's HTTP mapping, beyond what the ObjectStore contract exercises through
// AlbaObjectStore: Range headers (206, Content-Range), HEAD of missing objects and namespaces, error
// codes and statuses (412, 507 NoSatisfiablePolicy, 404 routes), presets listed without keys,
// multi-range reads, and extension routes. Server in-process on loopback over in-memory ASDs.
import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";
import type { AsdApi } from "../../../alba/src/asd/asd-api.ts";
import { AlbaClient } from "../../../alba/src/client/alba-client.ts";
import { AlbaError, isAlbaError } from "../../../alba/src/client/alba-client-api.ts";
import { AsdPool } from "../../../alba/src/client/asd-pool.ts";
import type { AsdRecord } from "../../../alba/src/metadata/metadata-store.ts";
import { SqliteMetadataStore } from "../../../alba/src/metadata/sqlite-metadata-store.ts";
import { validatePreset } from "../../../alba/src/preset/preset-validation.ts";
import { ProxyClient } from "../../../alba/src/proxy/proxy-client.ts";
import { startProxyServer, type RunningProxyServer } from "../../../alba/src/proxy/proxy-server.ts";
import { MemoryAsd } from "../../helpers/memory-asd.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

/** An AlbaClient on 3 in-memory ASDs (one per node id) with namespace "ns" on preset (2,1,3,1), 4 KiB fragments. */
async function smallBackend(directory: string): Promise<AlbaClient> {
  const metadata = SqliteMetadataStore.open(path.join(directory, "metadata.sqlite"));
  const asds = Array.from({ length: 3 }, (_, index) => new MemoryAsd(`asd-${index}`, `node-${index}`));
  const pool = new AsdPool({ metadata, connect: (record: AsdRecord): AsdApi => asds[record.port - 7000]!, background: false });
  const albaClient = new AlbaClient({ metadata, pool });
  for (const [index] of asds.entries()) await albaClient.claimAsd("memory", 7000 + index);
  await albaClient.addPreset(validatePreset({ name: "p", policies: [{ k: 2, m: 1, c: 3, x: 1 }], fragmentSizeBytes: 4096, compression: "none", encryption: "none" }));
  await albaClient.createNamespace("ns", { presetName: "p" });
  return albaClient;
}

describe("Alba proxy server (HTTP mapping)", function () {
  const temp = new TempDirs("alba-proxy");
  let asds: MemoryAsd[];
  let albaClient: AlbaClient;
  let server: RunningProxyServer;
  let proxy: ProxyClient;

  beforeEach(async function () {
    const metadata = SqliteMetadataStore.open(path.join(await temp.make(), "metadata.sqlite"));
    asds = Array.from({ length: 6 }, (_, index) => new MemoryAsd(`asd-${index}`, `node-${index % 3}`));
    const pool = new AsdPool({ metadata, connect: (record: AsdRecord): AsdApi => asds[record.port - 7000]!, background: false });
    albaClient = new AlbaClient({ metadata, pool });
    for (const [index] of asds.entries()) await albaClient.claimAsd("memory", 7000 + index);
    await albaClient.addPreset(validatePreset({
      name: "secret", policies: [{ k: 4, m: 2, c: 5, x: 2 }], fragmentSizeBytes: 4096, compression: "none", encryption: "aes-256-ctr",
      encryptionKeyHex: "cd".repeat(32),
    }));
    await albaClient.createNamespace("ns", { presetName: "secret" });
    server = await startProxyServer({
      api: albaClient, host: "127.0.0.1", port: 0,
      extraRoutes: [{ method: "POST", path: "/v1/maintenance/run", handler: async (body) => ({ status: 202, body: { accepted: body } }) }],
    });
    proxy = new ProxyClient(server.url);
  });

  afterEach(async function () {
    await proxy.close();
    await server.close();
    await albaClient.close();
  });

  after(async function () {
    await temp.removeAll();
  });

  it("range_header_and_head", async function () {
    // Goal: GET with Range answers 206 with the exact bytes and Content-Range; HEAD tells a missing object (404, no code) from a missing namespace (404, code NotFound).
    const data = Buffer.from(Array.from({ length: 40_000 }, (_, index) => index % 251));
    const info = await proxy.put("ns", "a/b c", data);
    const ranged = await fetch(`${server.url}/v1/namespaces/ns/objects/${encodeURIComponent("a/b c")}`, { headers: { range: "bytes=100-199" } });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get("content-range"), "bytes 100-199/40000");
    assert.equal(ranged.headers.get("etag"), `"${info.etag}"`);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(100, 200)));
    const tail = await fetch(`${server.url}/v1/namespaces/ns/objects/${encodeURIComponent("a/b c")}`, { headers: { range: "bytes=39990-" } });
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(39_990)));
    assert.deepEqual(await proxy.head("ns", "a/b c"), info);
    assert.equal(await proxy.head("ns", "missing"), undefined);
    await assert.rejects(proxy.head("nons", "k"), (error: unknown) => isAlbaError(error, "NotFound"));
    const parts = await proxy.getRanges("ns", "a/b c", [{ offsetBytes: 0, lengthBytes: 3 }, { offsetBytes: 39_999, lengthBytes: 50 }, { offsetBytes: 40_000, lengthBytes: 1 }]);
    assert.deepEqual(parts.map((part) => [...part]), [[0, 1, 2], [data[39_999]], []]);
  });

  it("error_statuses_and_codes", async function () {
    // Goal: precondition failures are 412, unplaceable writes 507 with "no satisfiable policy", unknown routes 404, all with a JSON {code, message}.
    const info = await proxy.put("ns", "k", Buffer.from("v1"));
    const stale = await fetch(`${server.url}/v1/namespaces/ns/objects/k`, { method: "PUT", headers: { "if-match": "\"0123\"" }, body: "v2" });
    assert.equal(stale.status, 412);
    assert.equal(((await stale.json()) as { code: string }).code, "PreconditionFailed");
    await proxy.put("ns", "k", Buffer.from("v2"), { ifMatch: info.etag });
    for (const asd of asds.slice(0, 2)) asd.capacityBytes = 0;
    await albaClient.pool.probeAll();
    const full = await fetch(`${server.url}/v1/namespaces/ns/objects/k2`, { method: "PUT", body: "data" });
    assert.equal(full.status, 507);
    const body = (await full.json()) as { code: string; message: string };
    assert.equal(body.code, "NoSatisfiablePolicy");
    assert.match(body.message, /^no satisfiable policy/);
    const unknown = await fetch(`${server.url}/v2/whatever`);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await proxy.get("ns", "k"), Buffer.from("v2"));
  });

  it("presets_without_keys_and_extension_route", async function () {
    // Goal: listed presets never carry the encryption key; an extension route answers through ProxyClient.extension.
    const presets = await proxy.listPresets();
    const secret = presets.find((preset) => preset.name === "secret") as unknown as Record<string, unknown>;
    assert.equal(secret.encryptionKeyHex, undefined);
    assert.equal(secret.encrypted, true);
    assert.deepEqual(await proxy.extension("POST", "/v1/maintenance/run", { kind: "repair" }), { accepted: { kind: "repair" } });
  });
});

describe("Alba proxy server (streamed puts)", function () {
  const temp = new TempDirs("alba-proxy-stream");

  after(async function () {
    await temp.removeAll();
  });

  it("streamed_put_and_get_read_back_and_a_cut_body_leaves_no_object", async function () {
    // Goal: a put whose body arrives slowly in pieces is coded as it arrives and reads back whole through a GET sent in parts; reads pinned to a version refuse another; a body cut short leaves no visible object, and the proxy keeps serving.
    const directory = await temp.make();
    const albaClient = await smallBackend(directory);
    // Small stream parts, so a whole-object GET goes out in many parts, each read ahead of the last.
    const server = await startProxyServer({ api: albaClient, host: "127.0.0.1", port: 0, settings: { streamPartSizeBytes: 7_000 } });
    const proxy = new ProxyClient(server.url, { useLocalSocket: false });
    const data = Buffer.from(Array.from({ length: 100_000 }, (_, index) => (index * 7) % 251));
    const send = (bytes: Buffer, declaredBytes: number, cut: boolean): Promise<number> => new Promise((resolve, reject) => {
      const request = http.request(`${server.url}/v1/namespaces/ns/objects/k${cut ? "-cut" : ""}`, { method: "PUT", headers: { "content-length": declaredBytes } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on("error", (error) => (cut ? resolve(-1) : reject(error)));
      // Pieces with pauses, so the proxy codes early chunks before the last bytes arrive.
      let offset = 0;
      const next = (): void => {
        if (offset >= bytes.length) {
          if (cut) request.destroy();
          else request.end();
          return;
        }
        request.write(bytes.subarray(offset, offset + 20_000));
        offset += 20_000;
        setTimeout(next, 10);
      };
      next();
    });
    try {
      assert.equal(await send(data, data.length, false), 200);
      assert.deepEqual(await proxy.get("ns", "k"), data, "a streamed put reads back, through a streamed get");
      const etag = (await proxy.head("ns", "k"))!.etag;
      assert.deepEqual((await proxy.getRanges("ns", "k", [{ offsetBytes: 5, lengthBytes: 10 }], { ifMatch: etag }))[0], data.subarray(5, 15));
      await assert.rejects(proxy.getRanges("ns", "k", [{ offsetBytes: 0, lengthBytes: 1 }], { ifMatch: "0".repeat(32) }),
        (error: unknown) => isAlbaError(error, "PreconditionFailed"), "a read pinned to another version is refused");
      await send(data.subarray(0, 60_000), data.length, true);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(await proxy.head("ns", "k-cut"), undefined, "a cut body commits nothing");
      assert.deepEqual((await proxy.list("ns")).objects.map((object) => object.key), ["k"]);
      assert.deepEqual(await proxy.get("ns", "k"), data, "the proxy keeps serving");
    } finally {
      await proxy.close();
      await server.close();
      await albaClient.close();
    }
  });
});

describe("Alba proxy server (a streamed GET that fails midway)", function () {
  const temp = new TempDirs("alba-proxy-cut");

  after(async function () {
    await temp.removeAll();
  });

  it("streamed_get_failing_after_its_headers_is_an_error_never_a_short_object", async function () {
    // Goal: when a later part of a streamed GET cannot be read, the proxy cuts the response and the client reports Unavailable instead of returning a short or mixed object.
    const directory = await temp.make();
    const albaClient = await smallBackend(directory);
    const data = Buffer.alloc(50_000, 7);
    await albaClient.put("ns", "k", data);
    // The second and later parts fail, as when too many ASDs die mid-read.
    const failing = Object.create(albaClient) as AlbaClient;
    failing.getRanges = async (namespace, key, ranges, options) => {
      if (ranges[0]!.offsetBytes > 0) throw new AlbaError("Unavailable", "injected: too few fragments");
      return albaClient.getRanges(namespace, key, ranges, options);
    };
    const server = await startProxyServer({ api: failing, host: "127.0.0.1", port: 0, settings: { streamPartSizeBytes: 10_000 } });
    const proxy = new ProxyClient(server.url, { useLocalSocket: false });
    try {
      await assert.rejects(proxy.get("ns", "k"), (error: unknown) => isAlbaError(error, "Unavailable"));
    } finally {
      await proxy.close();
      await server.close();
      await albaClient.close();
    }
  });
});

describe("Alba proxy server (local Unix socket)", function () {
  const temp = new TempDirs("alba-proxy-socket");

  after(async function () {
    await temp.removeAll();
  });

  it("proxy_client_moves_to_the_local_socket_and_back_to_tcp", async function () {
    // Goal: a client of a loopback proxy finds its Unix socket through /v1/health and uses it (same data as over TCP); when the proxy goes away the client falls back to TCP and reports Unavailable.
    const directory = await temp.make();
    const albaClient = await smallBackend(directory);
    const server = await startProxyServer({ api: albaClient, host: "127.0.0.1", port: 0, localSocketPath: path.join(directory, "proxy.sock") });
    const local = new ProxyClient(server.url);
    const tcpOnly = new ProxyClient(server.url, { useLocalSocket: false });
    try {
      const data = Buffer.from(Array.from({ length: 50_000 }, (_, index) => index % 253));
      await local.put("ns", "k", data);
      assert.equal(local.usesLocalSocket, true);
      assert.deepEqual(await tcpOnly.get("ns", "k"), data, "written over the socket, read over TCP");
      assert.equal(tcpOnly.usesLocalSocket, false);
      await server.close();
      await assert.rejects(local.get("ns", "k"), (error: unknown) => isAlbaError(error, "Unavailable"));
      assert.equal(local.usesLocalSocket, false, "a socket nobody listens on sends the client back to TCP");
    } finally {
      await local.close();
      await tcpOnly.close();
      await server.close().catch(() => undefined);
      await albaClient.close();
    }
  });
});

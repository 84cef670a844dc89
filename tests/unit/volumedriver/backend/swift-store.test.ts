// Goal: the Swift store's pure parts (Keystone catalog, status table) and its handling of a server
// that misbehaves on purpose: 401 then success (one re-login), 401 for good (Internal, no secrets in
// the message), 503 (Transient, retried by RetryingObjectStore), silence (timeout), no server, a
// damaged ETag. The fake is a small node:http server in this file; the contract itself is proved
// against a real Swift in tests/interop/swift-contract.test.ts.
import assert from "node:assert/strict";
import { mkdtemp, open, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { isStoreError } from "../../../../volumedriver/src/backend/object-store.ts";
import { RetryingObjectStore } from "../../../../volumedriver/src/backend/retrying-store.ts";
import { findObjectStoreEndpoint } from "../../../../volumedriver/src/backend/swift-auth.ts";
import { storeErrorKindForStatus } from "../../../../volumedriver/src/backend/swift-errors.ts";
import { SWIFT_OBJECT_SIZE_BYTES_MAX, SwiftObjectStore } from "../../../../volumedriver/src/backend/swift-store.ts";
import { expectStoreError } from "./object-store-contract.ts";

const KEY = "s3cr3t-key";
const PASSWORD = "s3cr3t-password";

/** What the fake saw, and what it should do with the next object requests. */
interface FakeSwift {
  url: string;
  logins: number;
  requests: string[];
  /** Answers object/container requests; undefined = the default (200 for HEAD of "k", 404 otherwise). */
  handler?: (request: http.IncomingMessage, response: http.ServerResponse, token: string) => void;
  keystoneBodies: unknown[];
  close(): Promise<void>;
}

async function startFakeSwift(): Promise<FakeSwift> {
  const fake: FakeSwift = { url: "", logins: 0, requests: [], keystoneBodies: [], close: async () => undefined };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      fake.requests.push(`${request.method} ${request.url}`);
      if (request.url === "/auth/v1.0") {
        fake.logins += 1;
        if (request.headers["x-auth-key"] !== KEY) return void response.writeHead(401).end("Unauthorized");
        return void response.writeHead(200, { "x-storage-url": `${fake.url}/v1/AUTH_test`, "x-auth-token": `tk-${fake.logins}` }).end();
      }
      if (request.url === "/v3/auth/tokens" && request.method === "POST") {
        fake.logins += 1;
        fake.keystoneBodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        const catalog = [
          { type: "identity", endpoints: [{ interface: "public", region_id: "r1", url: `${fake.url}/v3` }] },
          { type: "object-store", endpoints: [{ interface: "public", region_id: "r1", url: `${fake.url}/v1/AUTH_project` }] },
        ];
        return void response.writeHead(201, { "x-subject-token": `ks-${fake.logins}`, "content-type": "application/json" }).end(JSON.stringify({ token: { catalog } }));
      }
      const token = String(request.headers["x-auth-token"] ?? "");
      if (fake.handler !== undefined) return fake.handler(request, response, token);
      if (request.method === "HEAD" && request.url?.endsWith("/k")) return void response.writeHead(200, { etag: "0cc175b9c0f1b6a831c399e269772661", "content-length": "1" }).end();
      response.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = () => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
  return fake;
}

describe("SwiftObjectStore", function () {
  describe("Keystone catalog", function () {
    const body = {
      token: {
        catalog: [
          { type: "identity", endpoints: [{ interface: "public", region_id: "r1", url: "http://k/v3" }] },
          {
            type: "object-store",
            endpoints: [
              { interface: "internal", region_id: "r1", url: "http://internal-r1/v1/AUTH_p" },
              { interface: "public", region_id: "r1", region: "r1", url: "http://public-r1/v1/AUTH_p" },
              { interface: "public", region_id: "r2", url: "http://public-r2/v1/AUTH_p" },
            ],
          },
        ],
      },
    };

    it("swift_keystone_catalog_picks_interface_and_region", function () {
      // Goal: the object-store endpoint of the interface asked for is chosen, in the region asked for, or the first one without a region.
      assert.equal(findObjectStoreEndpoint(body, "public", undefined), "http://public-r1/v1/AUTH_p");
      assert.equal(findObjectStoreEndpoint(body, "public", "r2"), "http://public-r2/v1/AUTH_p");
      assert.equal(findObjectStoreEndpoint(body, "internal", "r1"), "http://internal-r1/v1/AUTH_p");
    });

    it("swift_keystone_catalog_missing_endpoint_says_what", function () {
      // Goal: a catalog without a matching endpoint, without object-store, or without a catalog names what is missing.
      assert.match((findObjectStoreEndpoint(body, "admin", undefined) as { problem: string }).problem, /interface admin/);
      assert.match((findObjectStoreEndpoint(body, "public", "r9") as { problem: string }).problem, /region r9/);
      assert.match((findObjectStoreEndpoint({ token: { catalog: [] } }, "public", undefined) as { problem: string }).problem, /no object-store service/);
      assert.match((findObjectStoreEndpoint({ token: {} }, "public", undefined) as { problem: string }).problem, /no catalog/);
      assert.match((findObjectStoreEndpoint(null, "public", undefined) as { problem: string }).problem, /no catalog/);
    });
  });

  it("swift_status_table_maps_kinds", function () {
    // Goal: every status class maps to the kind that tells the caller what to do.
    const expected: Array<[number, string]> = [
      [400, "Invalid"], [401, "Internal"], [403, "Internal"], [404, "NotFound"], [408, "Transient"], [409, "Transient"],
      [412, "PreconditionFailed"], [413, "Invalid"], [416, "Invalid"], [422, "Transient"], [429, "Transient"], [498, "Transient"],
      [500, "Transient"], [502, "Transient"], [503, "Transient"], [504, "Transient"], [507, "Transient"], [302, "Internal"], [418, "Internal"],
    ];
    for (const [status, kind] of expected) assert.equal(storeErrorKindForStatus(status).kind, kind, `HTTP ${status}`);
  });

  describe("against a misbehaving fake", function () {
    let fake: FakeSwift;
    const stores: SwiftObjectStore[] = [];

    function makeStore(extra: Partial<ConstructorParameters<typeof SwiftObjectStore>[0]> = {}): SwiftObjectStore {
      const store = new SwiftObjectStore({ credentials: { kind: "tempauth", authUrl: `${fake.url}/auth/v1.0`, user: "test:tester", key: KEY }, ...extra });
      stores.push(store);
      return store;
    }

    beforeEach(async function () {
      fake = await startFakeSwift();
    });

    afterEach(async function () {
      await Promise.all(stores.splice(0).map((store) => store.close()));
      await fake.close();
    });

    it("swift_401_then_success_logs_in_once_more", async function () {
      // Goal: a 401 on the first token makes concurrent calls share one new login and retry; the calls succeed.
      fake.handler = (request, response, token) => {
        if (token === "tk-1") return void response.writeHead(401).end();
        response.writeHead(200, { etag: "0cc175b9c0f1b6a831c399e269772661", "content-length": "1" }).end();
      };
      const store = makeStore();
      const infos = await Promise.all([store.head("ns", "k"), store.head("ns", "k"), store.head("ns", "k")]);
      for (const info of infos) assert.deepEqual(info, { key: "k", sizeBytes: 1, etag: "0cc175b9c0f1b6a831c399e269772661" });
      assert.equal(fake.logins, 2);
    });

    it("swift_401_after_relogin_internal_without_secrets", async function () {
      // Goal: a token refused again after a new login fails Internal, names the credentials to check, and shows neither key nor token.
      fake.handler = (_request, response) => void response.writeHead(401).end("token tk-2 is bad");
      const store = makeStore();
      await assert.rejects(store.head("ns", "k"), (error: unknown) => {
        assert.ok(isStoreError(error, "Internal"), String(error));
        assert.match(error.message, /check the Swift credentials/);
        assert.doesNotMatch(error.message, new RegExp(`${KEY}|tk-`));
        return true;
      });
      assert.equal(fake.logins, 2);
    });

    it("swift_tempauth_refused_internal_without_key", async function () {
      // Goal: a login refused by tempauth fails Internal, names the user and what to check, not the key; the next call tries again.
      const store = new SwiftObjectStore({ credentials: { kind: "tempauth", authUrl: `${fake.url}/auth/v1.0`, user: "test:tester", key: "wrong-key" } });
      stores.push(store);
      for (let attempt = 1; attempt <= 2; attempt++) {
        await assert.rejects(store.namespaceExists("ns"), (error: unknown) => {
          assert.ok(isStoreError(error, "Internal"), String(error));
          assert.match(error.message, /test:tester.*check the Swift credentials/);
          assert.doesNotMatch(error.message, /wrong-key/);
          return true;
        });
      }
      assert.equal(fake.logins, 2);
    });

    it("swift_keystone_login_uses_catalog_endpoint", async function () {
      // Goal: Keystone v3 password auth sends user, domains and project, and requests go to the catalog's object-store URL with X-Subject-Token.
      const seen: string[] = [];
      fake.handler = (request, response, token) => {
        seen.push(`${request.method} ${request.url} ${token}`);
        response.writeHead(204).end();
      };
      const store = new SwiftObjectStore({
        credentials: { kind: "keystone", authUrl: `${fake.url}/v3/`, userName: "alice", password: PASSWORD, userDomainName: "ud", projectName: "vols", projectDomainName: "pd" },
      });
      stores.push(store);
      assert.equal(await store.namespaceExists("ns"), true);
      assert.deepEqual(seen, ["HEAD /v1/AUTH_project/ns ks-1"]);
      assert.deepEqual(fake.keystoneBodies[0], {
        auth: {
          identity: { methods: ["password"], password: { user: { name: "alice", domain: { name: "ud" }, password: PASSWORD } } },
          scope: { project: { name: "vols", domain: { name: "pd" } } },
        },
      });
    });

    it("swift_503_transient_then_retried", async function () {
      // Goal: a 503 fails Transient, and RetryingObjectStore on top turns one 503 into a success.
      let failures = 1;
      fake.handler = (_request, response) => {
        if (failures-- > 0) return void response.writeHead(503).end("Service Unavailable");
        response.writeHead(204).end();
      };
      const store = makeStore();
      failures = 1;
      await expectStoreError(store.createNamespace("ns"), "Transient");
      failures = 1;
      const retrying = new RetryingObjectStore(makeStore(), { sleep: async () => undefined });
      assert.equal(await retrying.namespaceExists("ns"), true);
    });

    it("swift_silent_server_times_out_transient", async function () {
      // Goal: a server that never answers fails Transient after requestTimeoutMs, naming the setting.
      fake.handler = () => undefined;
      const store = makeStore({ requestTimeoutMs: 200 });
      const startedMs = Date.now();
      await assert.rejects(store.namespaceExists("ns"), (error: unknown) => {
        assert.ok(isStoreError(error, "Transient"), String(error));
        assert.match(error.message, /requestTimeoutMs/);
        return true;
      });
      assert.ok(Date.now() - startedMs < 5000);
    });

    it("swift_no_server_transient", async function () {
      // Goal: a connection refused fails Transient.
      const url = fake.url;
      await fake.close();
      const store = new SwiftObjectStore({ credentials: { kind: "tempauth", authUrl: `${url}/auth/v1.0`, user: "test:tester", key: KEY } });
      stores.push(store);
      await expectStoreError(store.listNamespaces(), "Transient");
    });

    it("swift_put_reply_etag_mismatch_transient", async function () {
      // Goal: a PUT whose reply ETag differs from the MD5 of the bytes sent fails Transient (put and putFile alike).
      fake.handler = (_request, response) => void response.writeHead(201, { etag: "00000000000000000000000000000000" }).end();
      const store = makeStore();
      await expectStoreError(store.put("ns", "k", Buffer.from("abc")), "Transient");
      const directory = await mkdtemp(path.join(os.tmpdir(), "ovs-swift-unit-"));
      try {
        const file = path.join(directory, "source");
        const handle = await open(file, "w");
        await handle.write(Buffer.from("abc"));
        await handle.close();
        await expectStoreError(store.putFile("ns", "k", file), "Transient");
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    });

    it("swift_put_file_over_5_gib_invalid", async function () {
      // Goal: a file larger than Swift's 5 GiB object limit fails Invalid before any upload (a sparse file costs no disk).
      const store = makeStore();
      const directory = await mkdtemp(path.join(os.tmpdir(), "ovs-swift-unit-"));
      try {
        const file = path.join(directory, "huge");
        const handle = await open(file, "w");
        await handle.truncate(SWIFT_OBJECT_SIZE_BYTES_MAX + 1);
        await handle.close();
        await expectStoreError(store.putFile("ns", "k", file), "Invalid");
        assert.deepEqual(fake.requests.filter((request) => request.startsWith("PUT")), []);
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    });

    it("swift_if_absent_sends_if_none_match_and_maps_412", async function () {
      // Goal: ifAbsent sends If-None-Match: * and a 412 fails PreconditionFailed.
      const seen: Array<string | undefined> = [];
      fake.handler = (request, response) => {
        seen.push(request.headers["if-none-match"] as string | undefined);
        response.writeHead(412).end();
      };
      await expectStoreError(makeStore().put("ns", "k", Buffer.from("x"), { ifAbsent: true }), "PreconditionFailed");
      assert.deepEqual(seen, ["*"]);
    });

    it("swift_closed_after_close", async function () {
      // Goal: calls after close fail Closed without a request.
      const store = makeStore();
      await store.close();
      await expectStoreError(store.head("ns", "k"), "Closed");
      assert.deepEqual(fake.requests, []);
    });
  });
});

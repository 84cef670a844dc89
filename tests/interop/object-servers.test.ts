// Goal: the loopback object servers that backend tests run against start, serve, and stop cleanly:
// Swift stores and returns an object through its native API (tempauth) and answers S3 requests signed
// with its tempauth credentials; Ceph RGW answers S3 requests signed with its user's keys; stop()
// leaves none of their processes running. Startup times are printed, to keep the CI budget honest.
// (Full S3 round trips are the S3 backend's own tests; here an S3 request with a wrong signature is
// enough to prove that the S3 API is served: SignatureDoesNotMatch. RGW answers InvalidAccessKeyId
// for a key it does not know; Swift's s3api does not tell the two apart, tempauth just refuses.)
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  isRunning, requireServer, startCephRgw, startSwift,
  type CephRgwServer, type ObjectServer, type SwiftServer,
} from "../helpers/object-servers.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const REQUEST_TIMEOUT_MS = 10_000;

/** An S3 GET of a bucket listing with a well-formed SigV4 header whose signature is wrong. */
async function s3ErrorCode(server: ObjectServer, accessKeyId: string): Promise<{ status: number; code: string }> {
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const scope = `${amzDate.slice(0, 8)}/${server.s3.region}/s3/aws4_request`;
  const response = await fetch(`${server.endpoint}/ovs-probe-bucket`, {
    headers: {
      "x-amz-date": amzDate,
      "x-amz-content-sha256": createHash("sha256").update("").digest("hex"),
      authorization: `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${"0".repeat(64)}`,
    },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const body = await response.text();
  return { status: response.status, code: /<Code>([^<]+)<\/Code>/.exec(body)?.[1] ?? `no <Code> in: ${body.slice(0, 200)}` };
}

async function assertServesS3(server: ObjectServer, unknownKeyCode: string): Promise<void> {
  assert.deepEqual(await s3ErrorCode(server, server.s3.accessKeyId), { status: 403, code: "SignatureDoesNotMatch" });
  assert.deepEqual(await s3ErrorCode(server, "ovs-no-such-access-key"), { status: 403, code: unknownKeyCode });
}

async function assertStopped(server: ObjectServer): Promise<void> {
  await server.stop();
  assert.deepEqual(server.pids.filter(isRunning), []);
}

describe("object servers on loopback (deploy/swift, deploy/ceph)", function () {
  const temps = new TempDirs("object-servers");

  after(async function () {
    await temps.removeAll();
  });

  describe("Swift all-in-one with s3api and tempauth", function () {
    let server: SwiftServer | undefined;

    before(async function () {
      this.timeout(180_000);
      requireServer(this, "swift");
      const startMs = Date.now();
      server = await startSwift(await temps.make("swift"));
      console.log(`      Swift started in ${Date.now() - startMs} ms at ${server.endpoint} (pids ${server.pids.join(" ")})`);
    });

    after(async function () {
      this.timeout(60_000);
      await server?.stop();
    });

    it("stores and reads back an object through the native API", async function () {
      const swift = server!.swift;
      const auth = await fetch(swift.authUrl, {
        headers: { "x-auth-user": swift.user, "x-auth-key": swift.key },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      assert.equal(auth.status, 200);
      const token = auth.headers.get("x-auth-token")!;
      const storageUrl = auth.headers.get("x-storage-url")!;
      const headers = { "x-auth-token": token };

      const container = await fetch(`${storageUrl}/ovs-smoke`, { method: "PUT", headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      assert.ok(container.status === 201 || container.status === 202, `container PUT: HTTP ${container.status}`);
      const body = Buffer.from("object bytes through the native Swift API\n");
      const put = await fetch(`${storageUrl}/ovs-smoke/dir/object`, { method: "PUT", headers, body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      assert.equal(put.status, 201);
      assert.equal(put.headers.get("etag"), createHash("md5").update(body).digest("hex"));

      const get = await fetch(`${storageUrl}/ovs-smoke/dir/object`, { headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      assert.equal(get.status, 200);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), body);
    });

    it("serves the S3 API with the tempauth user as access key", async function () {
      await assertServesS3(server!, "SignatureDoesNotMatch");
    });

    it("stops exactly its processes", async function () {
      this.timeout(60_000);
      await assertStopped(server!);
    });
  });

  describe("Ceph RGW on a single memstore OSD", function () {
    let server: CephRgwServer | undefined;

    before(async function () {
      this.timeout(240_000);
      requireServer(this, "ceph-rgw");
      const startMs = Date.now();
      server = await startCephRgw(await temps.make("ceph"));
      console.log(`      Ceph RGW started in ${Date.now() - startMs} ms at ${server.endpoint} (pids ${server.pids.join(" ")})`);
    });

    after(async function () {
      this.timeout(60_000);
      await server?.stop();
    });

    it("serves the S3 API with the created user's keys", async function () {
      await assertServesS3(server!, "InvalidAccessKeyId");
    });

    it("stops exactly its processes", async function () {
      this.timeout(60_000);
      await assertStopped(server!);
    });
  });
});

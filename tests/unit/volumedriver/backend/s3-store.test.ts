// Goal: the S3 store's pure parts (namespace layout, error table, part plan, listing decode, the
// conditional-write probe) and its request paths over an in-memory HTTP handler, without a server:
// emulated conditional puts stay atomic within the store, failures map to the right kinds, and
// messages never carry the secret. The real servers are in tests/interop/s3-contract.test.ts.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { isStoreError, StoreError } from "../../../../volumedriver/src/backend/object-store.ts";
import { probeConditionalWrites } from "../../../../volumedriver/src/backend/s3-conditional-writes.ts";
import { classifyS3Failure, mapS3Error } from "../../../../volumedriver/src/backend/s3-error-map.ts";
import { MULTIPART_PART_SIZE_BYTES_MIN, planParts } from "../../../../volumedriver/src/backend/s3-multipart.ts";
import { S3NamespaceLayout } from "../../../../volumedriver/src/backend/s3-namespace-layout.ts";
import { decodeListedKey, normalizeEtag, S3ObjectStore } from "../../../../volumedriver/src/backend/s3-store.ts";
import { expectStoreError } from "./object-store-contract.ts";

const MIB = 1024 * 1024;
const SECRET = "very-secret-key-never-printed";

describe("s3 namespace layout", function () {
  it("s3_layout_bucket_per_namespace_prefix", function () {
    // Goal: bucket = prefix + namespace, listed buckets outside the prefix are not namespaces, and names S3 refuses are Invalid.
    const layout = new S3NamespaceLayout({ kind: "bucketPerNamespace", bucketPrefix: "ovs-" });
    assert.equal(layout.bucket("vol-1"), "ovs-vol-1");
    assert.equal(layout.objectKey("vol-1", "a/b"), "a/b");
    assert.equal(layout.namespaceOfBucket("ovs-vol-1"), "vol-1");
    assert.equal(layout.namespaceOfBucket("other"), undefined);
    assert.throws(() => layout.bucket("x".repeat(60)), (error: unknown) => isStoreError(error, "Invalid"));
    assert.throws(() => layout.bucket("a..b"), (error: unknown) => isStoreError(error, "Invalid"));
    assert.throws(() => new S3NamespaceLayout({ kind: "bucketPerNamespace" }).bucket("ab"), (error: unknown) => isStoreError(error, "Invalid"));
    assert.throws(() => new S3NamespaceLayout({ kind: "bucketPerNamespace", bucketPrefix: "Bad_" }), RangeError);
  });

  it("s3_layout_shared_bucket_prefix_and_markers", function () {
    // Goal: namespaces are prefixes of one bucket, markers and probes lie outside every namespace, and keys map back.
    const layout = new S3NamespaceLayout({ kind: "sharedBucket", bucket: "shared", prefix: "ovs/cluster-1" });
    assert.equal(layout.bucket("vol-1"), "shared");
    assert.equal(layout.objectKey("vol-1", "sco_1"), "ovs/cluster-1/vol-1/sco_1");
    assert.equal(layout.keyOfObjectKey("vol-1", "ovs/cluster-1/vol-1/a/b"), "a/b");
    assert.equal(layout.markerKey("vol-1"), "ovs/cluster-1/.namespaces/vol-1");
    assert.ok(!layout.probeKey("00").startsWith(layout.namespacePrefix("vol-1")));
    assert.equal(new S3NamespaceLayout({ kind: "sharedBucket", bucket: "shared", prefix: "" }).objectKey("n1", "k"), "n1/k");
    assert.throws(() => new S3NamespaceLayout({ kind: "sharedBucket", bucket: "shared", prefix: "ovs/" }), RangeError);
    assert.throws(() => new S3NamespaceLayout({ kind: "sharedBucket", bucket: "No", prefix: "" }), RangeError);
  });
});

describe("s3 error table", function () {
  it("s3_errors_map_to_kinds", function () {
    // Goal: each S3 code and status maps to the kind that tells the caller what to do.
    const context = { description: "s3:test: put a/b", bucket: "b" };
    const cases: Array<[string, number | undefined, string]> = [
      ["NoSuchKey", 404, "NotFound"], ["NoSuchBucket", 404, "NotFound"], ["NotFound", 404, "NotFound"],
      ["PreconditionFailed", 412, "PreconditionFailed"], ["SlowDown", 503, "Transient"], ["InternalError", 500, "Transient"],
      ["ECONNREFUSED", undefined, "Transient"], ["TimeoutError", undefined, "Transient"], ["RequestTimeout", 400, "Transient"],
      ["ConditionalRequestConflict", 409, "Transient"], ["AccessDenied", 403, "Internal"], ["SignatureDoesNotMatch", 403, "Internal"],
      ["InvalidBucketName", 400, "Invalid"], ["KeyTooLongError", 400, "Invalid"], ["InvalidArgument", 400, "Invalid"],
      ["NotImplemented", 501, "Internal"], ["RequestTimeTooSkewed", 403, "Internal"], ["Weird", 418, "Internal"],
    ];
    for (const [name, status, kind] of cases) assert.equal(classifyS3Failure(name, status, context).kind, kind, `${name} ${status}`);
    assert.equal(classifyS3Failure("NoSuchBucket", 404, { ...context, bucketIsConfigured: true }).kind, "Internal");
  });

  it("s3_error_message_says_what_to_check", function () {
    // Goal: a mapped error names the call, the code and the status, and hints at the fix.
    const error = Object.assign(new Error("Access Denied"), { name: "AccessDenied", $metadata: { httpStatusCode: 403 } });
    const mapped = mapS3Error(error, { description: "s3:test: put a/b", bucket: "ovs-a" });
    assert.equal(mapped.kind, "Internal");
    assert.match(mapped.message, /^s3:test: put a\/b: AccessDenied \(HTTP 403\): Access Denied; check the access key and secret/);
    const network = mapS3Error(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), { description: "s3:test: get a/b" });
    assert.equal(network.kind, "Transient");
    const already = new StoreError("Closed", "closed");
    assert.equal(mapS3Error(already, { description: "x" }), already);
  });
});

describe("s3 helpers", function () {
  it("s3_part_plan_bounds", function () {
    // Goal: parts are at least 5 MiB, at most 10,000, the wanted size otherwise, and cover the object.
    assert.deepEqual(planParts(64 * MIB, 8 * MIB), { partSizeBytes: 8 * MIB, partCount: 8 });
    assert.deepEqual(planParts(64 * MIB + 1, 8 * MIB), { partSizeBytes: 8 * MIB, partCount: 9 });
    assert.deepEqual(planParts(10, MIB), { partSizeBytes: MULTIPART_PART_SIZE_BYTES_MIN, partCount: 1 });
    assert.deepEqual(planParts(0, 8 * MIB), { partSizeBytes: 8 * MIB, partCount: 1 });
    const huge = planParts(100_000 * MIB, 5 * MIB);
    assert.ok(huge.partCount <= 10_000 && huge.partCount * huge.partSizeBytes >= 100_000 * MIB);
  });

  it("s3_listed_keys_and_etags_decode", function () {
    // Goal: url-encoded listing keys decode whichever way the server wrote a space, and etags lose their quotes.
    assert.equal(decodeListedKey("a+b%20c%2Bd%25e%2F%F0%9F%98%80"), "a b c+d%e/😀");
    assert.equal(decodeListedKey("z%EF%BF%BF"), "z\uFFFF");
    assert.equal(normalizeEtag('"abc-3"'), "abc-3");
    assert.equal(normalizeEtag("abc"), "abc");
    assert.throws(() => normalizeEtag(undefined), (error: unknown) => isStoreError(error, "Internal"));
  });
});

describe("s3 conditional write probe", function () {
  /** A probe writer over one object whose server honours, ignores or refuses each condition. */
  function probeTarget(behaviour: { ifNoneMatch: "honour" | "ignore" | "refuse"; ifMatch: "honour" | "ignore" | "refuse" }) {
    let version = 0;
    let removed = false;
    return {
      get removed() {
        return removed;
      },
      write: async (condition: { ifNoneMatch?: string; ifMatch?: string }): Promise<string> => {
        const which = condition.ifNoneMatch !== undefined ? behaviour.ifNoneMatch : condition.ifMatch !== undefined ? behaviour.ifMatch : "ignore";
        if (which === "refuse") throw new StoreError("Invalid", "InvalidArgument (HTTP 400)");
        if (which === "honour" && condition.ifNoneMatch !== undefined && version > 0) throw new StoreError("PreconditionFailed", "412");
        if (which === "honour" && condition.ifMatch !== undefined && condition.ifMatch !== `"e${version}"`) throw new StoreError("PreconditionFailed", "412");
        version += 1;
        return `e${version}`;
      },
      remove: async () => {
        removed = true;
      },
    };
  }

  it("s3_probe_verdicts", async function () {
    // Goal: honoured conditions are detected, ignored and refused ones are not, and the probe object is removed.
    for (const [behaviour, expected] of [
      [{ ifNoneMatch: "honour", ifMatch: "honour" }, { ifNoneMatch: true, ifMatch: true }],
      [{ ifNoneMatch: "ignore", ifMatch: "ignore" }, { ifNoneMatch: false, ifMatch: false }],
      [{ ifNoneMatch: "refuse", ifMatch: "honour" }, { ifNoneMatch: false, ifMatch: true }],
      [{ ifNoneMatch: "honour", ifMatch: "refuse" }, { ifNoneMatch: true, ifMatch: false }],
    ] as const) {
      const target = probeTarget(behaviour);
      assert.deepEqual(await probeConditionalWrites(target), expected, JSON.stringify(behaviour));
      assert.ok(target.removed);
    }
  });

  it("s3_probe_transient_gives_no_verdict", async function () {
    // Goal: a Transient failure during the probe propagates (no verdict is cached) and the probe object is still removed.
    let removed = false;
    await expectStoreError(
      probeConditionalWrites({
        write: async () => {
          throw new StoreError("Transient", "503");
        },
        remove: async () => {
          removed = true;
        },
      }),
      "Transient",
    );
    assert.ok(removed);
  });
});

/** An in-memory S3 for PutObject, HeadObject, GetObject and DeleteObject in path style; conditions honoured or ignored. */
class FakeS3Handler {
  readonly objects = new Map<string, Buffer>();
  readonly requests: string[] = [];
  failNext: { statusCode: number; code: string } | Error | undefined;
  constructor(private readonly honourConditions: boolean) {}

  async handle(request: { method: string; path: string; headers: Record<string, string>; body?: unknown }): Promise<{ response: unknown }> {
    this.requests.push(`${request.method} ${request.path}`);
    // Yield, so concurrent calls interleave as they would over a network.
    await new Promise((resolve) => setImmediate(resolve));
    const failure = this.failNext;
    this.failNext = undefined;
    if (failure instanceof Error) throw failure;
    if (failure !== undefined) return this.error(failure.statusCode, failure.code);
    const path = decodeURIComponent(request.path);
    const stored = this.objects.get(path);
    const etagOf = (data: Buffer) => `"${createHash("md5").update(data).digest("hex")}"`;
    switch (request.method) {
      case "PUT": {
        const header = (name: string) => Object.entries(request.headers).find(([key]) => key.toLowerCase() === name)?.[1];
        if (this.honourConditions && header("if-none-match") === "*" && stored !== undefined) return this.error(412, "PreconditionFailed");
        const ifMatch = header("if-match");
        if (this.honourConditions && ifMatch !== undefined && (stored === undefined || etagOf(stored) !== ifMatch)) return this.error(412, "PreconditionFailed");
        const body = Buffer.from(request.body as Uint8Array);
        this.objects.set(path, body);
        return this.reply(200, { etag: etagOf(body) });
      }
      case "HEAD":
      case "GET":
        if (/^\/[^/]+\/?$/.test(path)) return this.reply(200, {}); // HeadBucket: every bucket exists
        if (stored === undefined) return request.method === "HEAD" ? this.reply(404, {}) : this.error(404, "NoSuchKey");
        return this.reply(200, { etag: etagOf(stored), "content-length": String(stored.length) }, request.method === "GET" ? stored : undefined);
      case "DELETE":
        this.objects.delete(path);
        return this.reply(204, {});
      default:
        return this.error(501, "NotImplemented");
    }
  }

  updateHttpClientConfig(): void {}
  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  private reply(statusCode: number, headers: Record<string, string>, body?: Buffer) {
    return { response: { statusCode, headers, body: Readable.from(body === undefined ? [] : [body]) } };
  }

  private error(statusCode: number, code: string) {
    const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code} happened</Message></Error>`;
    return this.reply(statusCode, { "content-type": "application/xml" }, Buffer.from(xml));
  }
}

describe("s3 store over an in-memory handler", function () {
  function makeStore(handler: FakeS3Handler): S3ObjectStore {
    return new S3ObjectStore({
      endpoint: "http://127.0.0.1:1",
      credentials: { accessKeyId: "AKIDTEST", secretAccessKey: SECRET },
      namespaces: { kind: "bucketPerNamespace", bucketPrefix: "t-" },
      requestHandler: handler as never,
    });
  }

  it("s3_emulated_if_absent_one_winner_when_server_ignores_conditions", async function () {
    // Goal: on a server that ignores If-None-Match the probe says so, and 20 racing ifAbsent puts in one store still give one winner.
    const handler = new FakeS3Handler(false);
    const store = makeStore(handler);
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, index) => store.put("vol", "race", Buffer.from(`contender ${index}`), { ifAbsent: true })));
    assert.equal(results.filter((result) => result.status === "fulfilled").length, 1);
    for (const result of results) if (result.status === "rejected") assert.ok(isStoreError(result.reason, "PreconditionFailed"), String(result.reason));
    assert.deepEqual(await store.conditionalWriteSupport("put"), { ifNoneMatch: false, ifMatch: false });
    assert.ok(![...handler.objects.keys()].some((key) => key.includes("probe")), "the probe object was removed");
    await store.close();
  });

  it("s3_native_conditions_sent_when_server_honours_them", async function () {
    // Goal: on a server that honours conditions, ifAbsent and ifMatch go out as headers and its 412 is PreconditionFailed.
    const handler = new FakeS3Handler(true);
    const store = makeStore(handler);
    const first = await store.put("vol", "k", Buffer.from("v1"), { ifAbsent: true });
    assert.deepEqual(await store.conditionalWriteSupport("put"), { ifNoneMatch: true, ifMatch: true });
    await expectStoreError(store.put("vol", "k", Buffer.from("v2"), { ifAbsent: true }), "PreconditionFailed");
    const second = await store.put("vol", "k", Buffer.from("v2"), { ifMatch: first.etag });
    await expectStoreError(store.put("vol", "k", Buffer.from("v3"), { ifMatch: first.etag }), "PreconditionFailed");
    assert.deepEqual(await store.head("vol", "k"), second);
    assert.deepEqual(await store.get("vol", "k"), Buffer.from("v2"));
    await store.close();
  });

  it("s3_failures_map_and_hide_the_secret", async function () {
    // Goal: a 503, a refused connection and a 403 become Transient, Transient and Internal, and no message shows the secret.
    const handler = new FakeS3Handler(true);
    const store = makeStore(handler);
    await store.put("vol", "k", Buffer.from("x"));
    for (const [failure, kind] of [
      [{ statusCode: 503, code: "SlowDown" }, "Transient"],
      [Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }), "Transient"],
      [{ statusCode: 403, code: "SignatureDoesNotMatch" }, "Internal"],
    ] as const) {
      handler.failNext = failure;
      await assert.rejects(store.get("vol", "k"), (error: unknown) => {
        assert.ok(isStoreError(error, kind), String(error));
        assert.ok(!error.message.includes(SECRET), error.message);
        return true;
      });
    }
    await store.close();
    await expectStoreError(store.get("vol", "k"), "Closed");
    await store.close();
  });
});

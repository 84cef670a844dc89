// Goal: S3ObjectStore keeps the whole ObjectStore contract on real S3 servers — Swift's s3api and
// Ceph RGW, each in bucket-per-namespace and shared-bucket mode — and a 64 MiB putFile goes up as
// a parallel multipart upload that reads back whole and across a part boundary. Each server is
// started on loopback by deploy/*/start.sh; a missing one skips (fails under CI=true).
//
// Run alone: npx mocha --no-config --node-option import=tsx --timeout 600000 --exit tests/interop/s3-contract.test.ts
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { S3ObjectStore } from "../../volumedriver/src/backend/s3-store.ts";
import type { S3ObjectStoreOptions } from "../../volumedriver/src/backend/s3-store.ts";
import { requireServer, startCephRgw, startSwift } from "../helpers/object-servers.ts";
import type { ObjectServer, ObjectServerKind } from "../helpers/object-servers.ts";
import { TempDirs } from "../helpers/temp-dir.ts";
import { runObjectStoreContract, seededBytes } from "../unit/volumedriver/backend/object-store-contract.ts";

const MIB = 1024 * 1024;
const SHARED_BUCKET = "ovs-shared";

function describeServer(kind: ObjectServerKind, start: (directory: string) => Promise<ObjectServer>): void {
  describe(`S3ObjectStore on ${kind}`, function () {
    const tempDirs = new TempDirs(`s3-${kind}`);
    let server: ObjectServer | undefined;

    function options(extra: Partial<S3ObjectStoreOptions> = {}): S3ObjectStoreOptions {
      assert.ok(server !== undefined, "server not started");
      return {
        endpoint: server.endpoint,
        region: server.s3.region,
        credentials: { accessKeyId: server.s3.accessKeyId, secretAccessKey: server.s3.secretAccessKey },
        forcePathStyle: true,
        ...extra,
      };
    }

    /** A store for one test and a cleanup that deletes every namespace the test left behind. */
    function makeStore(extra: () => Partial<S3ObjectStoreOptions>): () => Promise<{ store: S3ObjectStore; cleanup: () => Promise<void>; keySizeBytesMax: number }> {
      return async () => {
        const storeOptions = options(extra());
        // In a shared bucket the namespace's key prefix counts against S3's 1024-byte key limit.
        const mapping = storeOptions.namespaces;
        const prefixBytes = mapping?.kind === "sharedBucket" ? Buffer.byteLength(`${mapping.prefix}/contract/`, "utf8") : 0;
        return {
          keySizeBytesMax: 1024 - prefixBytes,
          store: new S3ObjectStore(storeOptions),
          cleanup: async () => {
            const cleaner = new S3ObjectStore(storeOptions);
            try {
              for (const namespace of await cleaner.listNamespaces()) await cleaner.deleteNamespace(namespace);
            } finally {
              await cleaner.close();
            }
          },
        };
      };
    }

    before(async function () {
      this.timeout(300_000);
      requireServer(this, kind);
      server = await start(await tempDirs.make());
      const setup = new S3ObjectStore(options());
      try {
        await setup.createNamespace(SHARED_BUCKET);
      } finally {
        await setup.close();
      }
    });

    after(async function () {
      this.timeout(120_000);
      await server?.stop();
      await tempDirs.removeAll();
    });

    runObjectStoreContract(`s3 on ${kind}, bucket per namespace`, makeStore(() => ({
      namespaces: { kind: "bucketPerNamespace", bucketPrefix: `t${randomBytes(4).toString("hex")}-` },
    })));

    runObjectStoreContract(`s3 on ${kind}, shared bucket`, makeStore(() => ({
      namespaces: { kind: "sharedBucket", bucket: SHARED_BUCKET, prefix: `run-${randomBytes(4).toString("hex")}` },
    })));

    it("s3_multipart_put_file_64_mib_ranged_get_across_part_boundary", async function () {
      // Goal: a 64 MiB putFile goes up as 8 parallel parts of 8 MiB and reads back whole, across a part boundary and at the end.
      this.timeout(300_000);
      const store = new S3ObjectStore(options({
        namespaces: { kind: "bucketPerNamespace", bucketPrefix: `m${randomBytes(4).toString("hex")}-` },
        multipartThresholdBytes: 16 * MIB,
        multipartPartSizeBytes: 8 * MIB,
        multipartPartsInFlightMax: 4,
      }));
      try {
        await store.createNamespace("multipart");
        const data = seededBytes(64 * MIB + 123, 64);
        const source = path.join(await tempDirs.make("source"), "sco");
        await writeFile(source, data);
        const info = await store.putFile("multipart", "sco_00000001", source, { ifAbsent: true });
        assert.equal(info.sizeBytes, data.length);
        assert.deepEqual(await store.head("multipart", "sco_00000001"), info);
        const boundary = 8 * MIB;
        assert.ok((await store.get("multipart", "sco_00000001", { offsetBytes: boundary - 1000, lengthBytes: 5000 })).equals(data.subarray(boundary - 1000, boundary + 4000)));
        assert.ok((await store.get("multipart", "sco_00000001", { offsetBytes: data.length - 10, lengthBytes: 100 })).equals(data.subarray(data.length - 10)));
        assert.ok((await store.get("multipart", "sco_00000001")).equals(data));
        await assert.rejects(store.putFile("multipart", "sco_00000001", source, { ifAbsent: true }), /PreconditionFailed|exists/);
        const replaced = await store.putFile("multipart", "sco_00000001", source, { ifMatch: info.etag });
        assert.equal(replaced.sizeBytes, data.length);
        await store.put("multipart", "small", Buffer.from("x"), { ifAbsent: true });
        console.log(`      conditional writes on ${kind}: put ${JSON.stringify(await store.conditionalWriteSupport("put"))}, multipart ${JSON.stringify(await store.conditionalWriteSupport("multipart"))}`);
        await store.deleteNamespace("multipart");
      } finally {
        await store.close();
      }
    });
  });
}

describeServer("swift", startSwift);
describeServer("ceph-rgw", startCephRgw);

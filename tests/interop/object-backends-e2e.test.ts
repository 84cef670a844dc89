// Goal: a vDisk on each real object store comes back bit for bit from the backend alone. For the
// native Swift API and S3 on Swift's s3api (one Swift all-in-one) and S3 on Ceph RGW, through the
// StorageDriver's backend opener (credentials from the environment, as in production): write 256 MiB
// of random data to a vDisk, flush, drain, close, open the vPool on an empty directory and compare
// hashes; then the same with lz4 compression and AES-256 encryption on. Servers run on loopback and
// are stopped by PID; without them the test skips (fails under CI=true).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import { MIB } from "../../volumedriver/src/engine/vpool-types.ts";
import type { BackendSpec } from "../../volumedriver/src/storagedriver/backend-spec.ts";
import { openBackend } from "../../volumedriver/src/storagedriver/backend-opener.ts";
import type { CodecConfig } from "../../volumedriver/src/storagedriver/codec-config.ts";
import { hashDevice } from "../helpers/device-hash.ts";
import { useSwiftAndCeph } from "../helpers/object-servers.ts";
import { SeededRandom, seedFromEnvironment } from "../helpers/seeded-random.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const DEVICE_SIZE_BYTES = 512 * MIB;
const WRITTEN_BYTES = Number(process.env.OVS_E2E_MIB ?? 256) * MIB;
const WRITE_BYTES = MIB;
const KEY_VARIABLE = "OVS_E2E_ENCRYPTION_KEY";

describe("interop: vDisks on Swift and S3 servers restore from the backend bit for bit", function () {
  this.timeout(900_000);
  const tempDirs = new TempDirs("backends-e2e");
  const servers = useSwiftAndCeph((name) => tempDirs.make(name));

  after(async function () {
    await tempDirs.removeAll();
  });

  const cases: Array<{ name: string; spec: () => BackendSpec; environment: () => NodeJS.ProcessEnv }> = [
    {
      name: "swift (native API, tempauth)",
      spec: () => ({ type: "swift", auth: "tempauth", authUrl: servers.swift.swift.authUrl, containerPrefix: `e2e${randomBytes(3).toString("hex")}-` }),
      environment: () => ({ ST_USER: servers.swift.swift.user, ST_KEY: servers.swift.swift.key }),
    },
    {
      name: "s3 on Swift s3api (shared bucket)",
      spec: () => ({ type: "s3", endpoint: servers.swift.endpoint, bucket: `e2e-${randomBytes(3).toString("hex")}`, pathStyle: true }),
      environment: () => ({ AWS_ACCESS_KEY_ID: servers.swift.s3.accessKeyId, AWS_SECRET_ACCESS_KEY: servers.swift.s3.secretAccessKey, AWS_REGION: servers.swift.s3.region }),
    },
    {
      name: "s3 on Ceph RGW (bucket per namespace)",
      spec: () => ({ type: "s3", endpoint: servers.ceph.endpoint, bucketPrefix: `e2e${randomBytes(3).toString("hex")}-`, pathStyle: true }),
      environment: () => ({ AWS_ACCESS_KEY_ID: servers.ceph.s3.accessKeyId, AWS_SECRET_ACCESS_KEY: servers.ceph.s3.secretAccessKey, AWS_REGION: servers.ceph.s3.region }),
    },
  ];
  const codecs: Array<{ name: string; codec: CodecConfig | undefined }> = [
    { name: "plain", codec: undefined },
    { name: "lz4 + AES-256", codec: { compression: "lz4", encryption: { keyEnv: KEY_VARIABLE } } },
  ];

  for (const backendCase of cases) {
    for (const codecCase of codecs) {
      it(`${backendCase.name}, ${codecCase.name}: ${WRITTEN_BYTES / MIB} MiB written, restored on an empty directory`, async function () {
        const seed = seedFromEnvironment();
        const random = new SeededRandom(seed);
        const spec = backendCase.spec();
        const environment = { ...backendCase.environment(), [KEY_VARIABLE]: randomBytes(32).toString("hex") };
        if (spec.type === "s3" && spec.bucket !== undefined) {
          // A shared bucket is the operator's: it exists before the vPool.
          const { store } = openBackend({ ...spec, bucket: undefined, bucketPrefix: "" }, undefined, environment);
          await store.createNamespace(spec.bucket);
          await store.close();
        }
        const open = async (directory: string) => {
          const backend = openBackend(spec, codecCase.codec, environment);
          const vpool = await openVPool({ name: "e2e", directory, backend: backend.store, scoSizeBytes: 16 * MIB });
          return { vpool, backend };
        };
        const startedMs = Date.now();
        let state = await open(await tempDirs.make("vpool"));
        const volume = await state.vpool.createVolume("disk", DEVICE_SIZE_BYTES);
        for (let offset = 0; offset < WRITTEN_BYTES; offset += WRITE_BYTES) {
          // Half random, half compressible, so compression has something to do and is still checked.
          const data = offset % (2 * WRITE_BYTES) === 0 ? random.bytes(WRITE_BYTES) : Buffer.alloc(WRITE_BYTES, offset / WRITE_BYTES);
          await volume.write(offset, data);
        }
        await volume.flush();
        const expected = await hashDevice(volume);
        await volume.drain();
        await state.vpool.close();
        await state.backend.store.close();
        const writtenMs = Date.now() - startedMs;
        state = await open(await tempDirs.make("vpool-restored"));
        const restored = state.vpool.getVolume("disk");
        assert.ok(restored !== undefined, `seed ${seed}: the vDisk was not found on the backend: ${JSON.stringify(state.vpool.listVolumes())}`);
        assert.equal(await hashDevice(restored), expected, `seed ${seed}: the restored vDisk differs`);
        const requests = state.backend.instrumented.snapshot();
        await state.vpool.deleteVolume("disk");
        await state.vpool.close();
        await state.backend.store.close();
        console.log(`      ${backendCase.name}, ${codecCase.name}: written and drained in ${writtenMs} ms, restored and compared in ${Date.now() - startedMs - writtenMs} ms`
          + ` (${Object.keys(requests.namespaces).length} namespaces metered)`);
      });
    }
  }
});

// Goal: `ovs up --backend` runs the cluster on a real object store with the credentials taken from
// the environment, as the swift and AWS clients read them: on Swift (native API, ST_USER / ST_KEY)
// and on S3 (Ceph RGW, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION). A vDisk written over
// the API survives a stop and shows up again from a fresh data directory on the same backend, and
// no secret appears in the output, the logs or the stored configs.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { readPidFile } from "../../framework/src/cluster/pid-file.ts";
import { useSwiftAndCeph } from "../helpers/object-servers.ts";
import { ChildHarness, freePort, killPid } from "../helpers/process-harness.ts";
import { authHeaders, forgetToken, useAdminToken } from "../helpers/ovs-auth.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;

/** Every file under `directory`, recursively, as text (the configs and logs ovs up writes). */
async function allText(directory: string): Promise<string> {
  let text = "";
  for (const entry of await readdir(directory, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !/\.(json|log)$/.test(entry.name)) continue;
    text += await readFile(path.join(entry.parentPath, entry.name), "utf8");
  }
  return text;
}

describe("ovs up --backend: a cluster on Swift and on S3", function () {
  this.timeout(600_000);
  const tempDirs = new TempDirs("ovs-up-backends");
  const harnesses: ChildHarness[] = [];
  const dataDirectories: string[] = [];
  const servers = useSwiftAndCeph((name) => tempDirs.make(name));

  after(async function () {
    this.timeout(60_000);
    forgetToken();
    for (const harness of harnesses) await harness.killHard();
    for (const dataDirectory of dataDirectories) {
      const pid = readPidFile(path.join(dataDirectory, "storagedrivers", "vpool1.pid"));
      if (pid !== undefined) killPid(pid, "SIGKILL");
    }
    await tempDirs.removeAll();
  });

  const cases = [
    {
      name: "swift://",
      url: () => `swift://${new URL(servers.swift.swift.authUrl).host}/auth/v1.0`,
      environment: () => ({ ST_USER: servers.swift.swift.user, ST_KEY: servers.swift.swift.key }),
      secret: () => servers.swift.swift.key,
    },
    {
      name: "s3://",
      url: () => `s3://${new URL(servers.ceph.endpoint).host}/ovs-up-test`,
      environment: () => ({
        AWS_ACCESS_KEY_ID: servers.ceph.s3.accessKeyId, AWS_SECRET_ACCESS_KEY: servers.ceph.s3.secretAccessKey, AWS_REGION: servers.ceph.s3.region,
      }),
      secret: () => servers.ceph.s3.secretAccessKey,
    },
  ];

  for (const backendCase of cases) {
    it(`${backendCase.name}: vDisks live on the server and come back on a fresh data directory`, async function () {
      const [apiPort, storagedriverPort, nbdPort] = [await freePort(), await freePort(), await freePort()];
      const apiUrl = `http://127.0.0.1:${apiPort}`;
      if (backendCase.name === "s3://") {
        // The bucket of s3://HOST:PORT/BUCKET is the operator's: make it as they would.
        const { S3ObjectStore } = await import("../../volumedriver/src/backend/s3-store.ts");
        const maker = new S3ObjectStore({ endpoint: servers.ceph.endpoint, region: servers.ceph.s3.region, credentials: servers.ceph.s3 });
        await maker.createNamespace("ovs-up-test");
        await maker.close();
      }
      const up = async (dataDirectory: string): Promise<ChildHarness> => {
        const harness = ChildHarness.ovs(["up", "--data", dataDirectory, "--api-port", String(apiPort), "--storagedriver-port", String(storagedriverPort),
          "--nbd-port", String(nbdPort), "--iscsi-port", String(await freePort()), "--backend", backendCase.url()], backendCase.environment());
        harnesses.push(harness);
        dataDirectories.push(dataDirectory);
        await harness.waitForOutput(/ovs ready/, START_TIMEOUT_MS);
        await useAdminToken(apiUrl, dataDirectory);
        return harness;
      };
      const stop = async (harness: ChildHarness): Promise<void> => {
        assert.ok(killPid(harness.pid, "SIGINT"));
        assert.deepEqual(await harness.waitForExit(STOP_TIMEOUT_MS), { code: 0, signal: null }, harness.describe());
      };
      const listNames = async (): Promise<string[]> => {
        const response = await fetch(`${apiUrl}/api/vdisks`, { headers: authHeaders(), signal: AbortSignal.timeout(30_000) });
        assert.equal(response.status, 200);
        return ((await response.json()) as { vdisks: Array<{ name: string }> }).vdisks.map((vdisk) => vdisk.name).sort();
      };

      const first = await tempDirs.make("data");
      let harness = await up(first);
      const created = await fetch(`${apiUrl}/api/vdisks`, {
        method: "POST", headers: { "content-type": "application/json", ...authHeaders() }, body: JSON.stringify({ name: "onbackend", size: 64 * 1024 * 1024 }),
        signal: AbortSignal.timeout(30_000),
      });
      assert.equal(created.status, 201, await created.text());
      assert.deepEqual(await listNames(), ["demo", "onbackend"]);
      const output = harness.stdout + harness.stderr;
      await stop(harness);
      const secret = backendCase.secret();
      assert.ok(!output.includes(secret), "the secret appears in the output of ovs up");
      assert.ok(!(await allText(first)).includes(secret), "the secret appears in a config or log file");

      harness = await up(await tempDirs.make("fresh"));
      assert.deepEqual(await listNames(), ["demo", "onbackend"], "a fresh data directory finds the vDisks on the backend");
      await stop(harness);
    });
  }
});

// Goal: the `alba` ObjectStore keeps the ObjectStore contract end to end: AlbaObjectStore → ProxyClient
// → the proxy's HTTP server (in-process) → AlbaClient → 6 real ASD processes on 3 node ids with
// preset (4,2,5,2) and 16 KiB fragments (so multi-chunk objects are cheap). Each contract test gets
// a fresh backend (metadata store) on the same ASDs; the error mapping is checked separately.
import path from "node:path";
import { AsdClient } from "../../../../alba/src/asd/asd-client.ts";
import { AlbaClient } from "../../../../alba/src/client/alba-client.ts";
import { AlbaError } from "../../../../alba/src/client/alba-client-api.ts";
import { AsdPool } from "../../../../alba/src/client/asd-pool.ts";
import type { AsdRecord } from "../../../../alba/src/metadata/metadata-store.ts";
import { SqliteMetadataStore } from "../../../../alba/src/metadata/sqlite-metadata-store.ts";
import { validatePreset } from "../../../../alba/src/preset/preset-validation.ts";
import { startProxyServer } from "../../../../alba/src/proxy/proxy-server.ts";
import { AlbaObjectStore } from "../../../../volumedriver/src/backend/alba-store.ts";
import { startAsd, stopAll, type RunningAsd } from "../../../helpers/alba-processes.ts";
import { TempDirs } from "../../../helpers/temp-dir.ts";
import { expectStoreError, runObjectStoreContract } from "./object-store-contract.ts";

const temp = new TempDirs("alba-store");
let asds: RunningAsd[] = [];

const PRESET = validatePreset({
  name: "contract", policies: [{ k: 4, m: 2, c: 5, x: 2 }], fragmentSizeBytes: 16 * 1024, compression: "none", encryption: "none", checksum: "crc32c",
});

before(async function () {
  this.timeout(120_000);
  const directories = await Promise.all(Array.from({ length: 6 }, (_, index) => temp.make(`asd-${index}`)));
  asds = await Promise.all(directories.map((directory, index) => startAsd({ directory, nodeId: `node-${index % 3}` })));
});

after(async function () {
  this.timeout(60_000);
  await stopAll(asds);
  await temp.removeAll();
});

/** A fresh backend on the shared ASDs, served by an in-process proxy; the store talks HTTP to it. */
async function makeAlbaStore(): Promise<{ store: AlbaObjectStore; cleanup: () => Promise<void> }> {
  const directory = await temp.make("backend");
  const metadata = SqliteMetadataStore.open(path.join(directory, "metadata.sqlite"));
  metadata.addPreset(PRESET);
  metadata.setDefaultPreset(PRESET.name);
  const pool = new AsdPool({ metadata, connect: (record: AsdRecord) => new AsdClient(record.host, record.port) });
  const client = new AlbaClient({ metadata, pool });
  for (const asd of asds) await client.claimAsd(asd.host, asd.port);
  const server = await startProxyServer({ api: client, host: "127.0.0.1", port: 0 });
  const store = new AlbaObjectStore({ proxyUrl: server.url });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await server.close();
      await client.close();
    },
  };
}

runObjectStoreContract("alba (proxy over 6 real ASDs)", makeAlbaStore);

describe("AlbaObjectStore error mapping", function () {
  it("alba_errors_map_to_store_error_kinds", async function () {
    // Goal: each AlbaError kind becomes the StoreError kind the engine acts on (Unavailable and NoSatisfiablePolicy are Transient, so they are retried).
    const cases: Array<[AlbaError["kind"], string]> = [
      ["NotFound", "NotFound"], ["PreconditionFailed", "PreconditionFailed"], ["Invalid", "Invalid"], ["Corrupt", "Corrupt"],
      ["Unavailable", "Transient"], ["NoSatisfiablePolicy", "Transient"], ["Conflict", "Invalid"],
    ];
    for (const [albaKind, storeKind] of cases) {
      const failing = new Proxy({}, { get: (_target, property) => (property === "close" ? async () => undefined : async () => { throw new AlbaError(albaKind, `${albaKind} on purpose`); }) });
      const store = new AlbaObjectStore({ proxyUrl: "http://127.0.0.1:1", api: failing as never });
      await expectStoreError(store.get("ns", "k"), storeKind as never);
      await store.close();
    }
  });

  it("unreachable_proxy_is_transient", async function () {
    // Goal: a proxy that does not answer makes calls fail Transient (retryable), not Internal.
    const store = new AlbaObjectStore({ proxyUrl: "http://127.0.0.1:1" });
    await expectStoreError(store.head("ns", "k"), "Transient");
    await store.close();
  });
});

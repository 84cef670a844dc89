// A whole Alba backend of real processes for integration tests and benchmarks: ASDs (`ovs alba asd
// run`), the backend directory (createAlbaBackend) and the proxy (`ovs alba proxy run --port 0`),
// with every ASD claimed and, if given, a preset made the one new namespaces get. stop() ends every
// process by PID. Tests talk to it through `client` (ProxyClient) or, as a vPool does, through
// AlbaObjectStore / an `alba` backend spec on `proxyUrl`.
import path from "node:path";
import type { AsdKeyInfo } from "../../alba/src/asd/asd-api.ts";
import { AsdClient } from "../../alba/src/asd/asd-client.ts";
import { createAlbaBackend } from "../../alba/src/backend/backend-directory.ts";
import { AlbaClient } from "../../alba/src/client/alba-client.ts";
import { AsdPool } from "../../alba/src/client/asd-pool.ts";
import { SqliteMetadataStore } from "../../alba/src/metadata/sqlite-metadata-store.ts";
import type { Preset } from "../../alba/src/preset/preset.ts";
import { ProxyClient } from "../../alba/src/proxy/proxy-client.ts";
import { startAsd, stopAll, type RunningAsd } from "./alba-processes.ts";
import { ChildHarness, killPid } from "./process-harness.ts";

const PROXY_READY_LINE = /^Alba proxy listening on (http:\/\/\S+)$/m;
const PROXY_START_TIMEOUT_MS = 30_000;
const PROXY_STOP_TIMEOUT_MS = 20_000;

export interface AlbaClusterOptions {
  /** Everything lives under here: asd-<i>/ and backend/. */
  directory: string;
  /** The node id (fault domain) of each ASD, in order: ["n1", "n1", "n2", ...]. */
  asdNodeIds: readonly string[];
  /** Becomes the backend's default preset (else the built-in default). */
  preset?: Preset;
  asdCapacityBytes?: number;
  /** Extra arguments of `ovs alba proxy run`, e.g. ["--dead-asd-after", "0"]. */
  proxyArguments?: readonly string[];
}

export interface AlbaCluster {
  asds: RunningAsd[];
  proxy: ChildHarness;
  proxyUrl: string;
  client: ProxyClient;
  backendDirectory: string;
  /** Starts one more ASD (e.g. a replacement) and claims it. */
  addAsd(nodeId: string, capacityBytes?: number): Promise<RunningAsd>;
  /** Stops the proxy and every ASD still running. */
  stop(): Promise<void>;
}

export async function startAlbaCluster(options: AlbaClusterOptions): Promise<AlbaCluster> {
  const backendDirectory = path.join(options.directory, "backend");
  const asds: RunningAsd[] = [];
  let proxy: ChildHarness | undefined;
  let client: ProxyClient | undefined;
  try {
    await createAlbaBackend(backendDirectory, options.preset === undefined ? {} : { preset: options.preset });
    asds.push(...(await Promise.all(options.asdNodeIds.map((nodeId, index) => startAsd({
      directory: path.join(options.directory, `asd-${index}`), nodeId,
      ...(options.asdCapacityBytes === undefined ? {} : { capacityBytes: options.asdCapacityBytes }),
    })))));
    proxy = ChildHarness.ovs(["alba", "proxy", "run", "--backend", backendDirectory, "--port", "0", ...(options.proxyArguments ?? [])], { OVS_LOG_LEVEL: "warn" });
    const proxyUrl = (await proxy.waitForOutput(PROXY_READY_LINE, PROXY_START_TIMEOUT_MS))[1]!;
    const proxyClient = new ProxyClient(proxyUrl);
    client = proxyClient;
    for (const asd of asds) await proxyClient.claimAsd(asd.host, asd.port);
    const runningProxy = proxy;
    let asdCount = asds.length;
    return {
      asds, proxy: runningProxy, proxyUrl, client: proxyClient, backendDirectory,
      async addAsd(nodeId: string, capacityBytes?: number): Promise<RunningAsd> {
        const asd = await startAsd({
          directory: path.join(options.directory, `asd-${asdCount++}`), nodeId,
          ...(capacityBytes === undefined ? {} : { capacityBytes }),
        });
        asds.push(asd);
        await proxyClient.claimAsd(asd.host, asd.port);
        return asd;
      },
      async stop(): Promise<void> {
        await proxyClient.close().catch(() => undefined);
        await stopProxy(runningProxy);
        await stopAll(asds);
      },
    };
  } catch (error) {
    await client?.close().catch(() => undefined);
    if (proxy !== undefined) await stopProxy(proxy);
    await stopAll(asds);
    throw error;
  }
}

async function stopProxy(proxy: ChildHarness): Promise<void> {
  if (!proxy.running) return;
  killPid(proxy.pid, "SIGTERM");
  await proxy.waitForExit(PROXY_STOP_TIMEOUT_MS).catch(async () => proxy.killHard());
}

/**
 * An AlbaClient in the test process on a backend's metadata file, talking to its ASDs with a short
 * request timeout and no background probing: health changes only through requests and probeAll,
 * so the test decides when an ASD counts as down.
 */
export function openTestAlbaClient(metadataFile: string): AlbaClient {
  const metadata = SqliteMetadataStore.open(metadataFile);
  const pool = new AsdPool({ metadata, connect: (record) => new AsdClient(record.host, record.port, { requestTimeoutMs: 5_000 }), background: false });
  return new AlbaClient({ metadata, pool });
}

/** Every key one ASD holds, all pages. */
export async function listAsdKeys(asd: { host: string; port: number }): Promise<AsdKeyInfo[]> {
  const connection = new AsdClient(asd.host, asd.port);
  const keys: AsdKeyInfo[] = [];
  try {
    for (let startAfter: string | undefined; ;) {
      const page = await connection.list({ limitKeys: 1000, ...(startAfter === undefined ? {} : { startAfter }) });
      keys.push(...page.keys);
      if (page.nextStartAfter === undefined) return keys;
      startAfter = page.nextStartAfter;
    }
  } finally {
    await connection.close();
  }
}

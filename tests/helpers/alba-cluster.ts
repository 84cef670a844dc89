// A whole Alba backend of real processes for integration tests and benchmarks: ASDs (`ovs alba asd
// run`), the backend directory (createAlbaBackend) and the proxy (`ovs alba proxy run --port 0`),
// with every ASD claimed and, if given, a preset made the one new namespaces get. stop() ends every
// process by PID. Tests talk to it through `client` (ProxyClient) or, as a vPool does, through
// AlbaObjectStore / an `alba` backend spec on `proxyUrl`.
import path from "node:path";
import { createAlbaBackend } from "../../alba/src/backend/backend-directory.ts";
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

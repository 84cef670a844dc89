// Pieces several framework tests share: a StorageDriver client that reaches nothing (port 1 on
// loopback, so a request that passes the framework's own checks fails with 503), and the cleanup of
// an `ovs up` a test started (SIGINT and wait, else SIGKILL; then its StorageDriver by PID file),
// and fastify inject calls with a role's token for the framework route tests.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import path from "node:path";
import { StorageDriverClient } from "../../framework/src/api/storagedriver-client.ts";
import { readPidFile } from "../../framework/src/cluster/pid-file.ts";
import { type ChildHarness, killPid } from "./process-harness.ts";

export function unreachableStorageDriver(): StorageDriverClient {
  return new StorageDriverClient({ vpool: "vpool1", baseUrl: "http://127.0.0.1:1", logHint: "the storagedriver log", requestTimeoutMs: 5_000 });
}

/** Stops an `ovs up` started by a test, whatever state it is in, and its StorageDrivers (every vPool's) by PID. */
export async function stopOvsUp(cluster: ChildHarness | undefined, dataDirectory: string | undefined): Promise<void> {
  if (cluster?.running) {
    killPid(cluster.pid, "SIGINT");
    await cluster.waitForExit(30_000).catch(async () => cluster.killHard());
  }
  if (dataDirectory !== undefined) {
    const directory = path.join(dataDirectory, "storagedrivers");
    let names: string[] = [];
    try {
      names = readdirSync(directory).filter((name) => name.endsWith(".pid"));
    } catch {
      // No StorageDriver was ever started.
    }
    for (const name of names) {
      const pid = readPidFile(path.join(directory, name));
      if (pid !== undefined) killPid(pid, "SIGKILL");
    }
  }
}

/** fastify inject with a role's bearer token, and the 4xx check the framework route tests share. */
export function apiCaller(app: () => FastifyInstance, tokens: Record<string, string>): {
  call(method: string, url: string, payload?: object, who?: string | null): Promise<{ status: number; json: any }>;
  expectError(status: number, code: string, message: RegExp, method: string, url: string, payload?: object, who?: string | null): Promise<void>;
} {
  /** `who`: whose token goes with the request; null for none. */
  const call = async (method: string, url: string, payload?: object, who: string | null = "admin"): Promise<{ status: number; json: any }> => {
    const response = await app().inject({
      method: method as "GET", url, ...(who === null ? {} : { headers: { authorization: `Bearer ${tokens[who]}` } }), ...(payload === undefined ? {} : { payload }),
    });
    return { status: response.statusCode, json: response.body.length === 0 ? undefined : response.json() };
  };
  const expectError = async (status: number, code: string, message: RegExp, method: string, url: string, payload?: object, who: string | null = "admin"): Promise<void> => {
    const answer = await call(method, url, payload, who);
    assert.equal(answer.status, status, `${method} ${url}: ${JSON.stringify(answer.json)}`);
    assert.equal(answer.json.error.code, code);
    assert.match(answer.json.error.message, message);
  };
  return { call, expectError };
}

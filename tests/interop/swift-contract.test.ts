// Goal: SwiftObjectStore keeps the whole ObjectStore contract against a real OpenStack Swift (the
// all-in-one of deploy/swift/start.sh, tempauth). A missing Swift skips (fails under CI=true).
// Token renewal and fault mapping are tested against misbehaving fakes in tests/unit (swift-store.test.ts).
//
// Where the Swift device lives matters: the object server keeps each object's name in extended
// attributes, and ext4 fits them in one 4 KiB block, so keys longer than about 1800 UTF-8 bytes
// (the contract has keys of 2048) fail there with 503 (ENOSPC on setxattr). tmpfs (Linux 6.6+)
// and XFS, Swift's recommended file system, hold them. So the server goes on /dev/shm when it
// takes a large user xattr, else under os.tmpdir().
//
// Run alone: npx mocha --no-config --node-option import=tsx --timeout 600000 --exit tests/interop/swift-contract.test.ts
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { SwiftObjectStore } from "../../volumedriver/src/backend/swift-store.ts";
import type { SwiftObjectStoreOptions } from "../../volumedriver/src/backend/swift-store.ts";
import { requireServer, startSwift } from "../helpers/object-servers.ts";
import type { SwiftServer } from "../helpers/object-servers.ts";
import { runObjectStoreContract } from "../unit/volumedriver/backend/object-store-contract.ts";

/** A parent directory whose file system takes an 8 KiB user xattr (tmpfs on Linux 6.6+), else os.tmpdir(). */
function swiftParentDirectory(): string {
  const probe = "import os, sys, tempfile\nwith tempfile.NamedTemporaryFile(dir=sys.argv[1]) as f: os.setxattr(f.name, 'user.ovs-probe', b'x' * 8192)";
  const result = spawnSync("python3", ["-c", probe, "/dev/shm"], { stdio: "ignore", timeout: 10_000 });
  return result.status === 0 ? "/dev/shm" : tmpdir();
}

describe("SwiftObjectStore on a real Swift (tempauth)", function () {
  let directory: string | undefined;
  let server: SwiftServer | undefined;

  function options(containerPrefix: string): SwiftObjectStoreOptions {
    assert.ok(server !== undefined, "server not started");
    const { authUrl, user, key } = server.swift;
    return { credentials: { kind: "tempauth", authUrl, user, key }, containerPrefix, requestTimeoutMs: 60_000 };
  }

  before(async function () {
    this.timeout(300_000);
    requireServer(this, "swift");
    directory = await mkdtemp(path.join(swiftParentDirectory(), "ovs-swift-contract-"));
    server = await startSwift(directory);
  });

  after(async function () {
    this.timeout(120_000);
    await server?.stop();
    if (directory !== undefined && process.env.OVS_KEEP_TEMP === undefined) await rm(directory, { recursive: true, force: true });
  });

  // Each test gets its own container prefix, so leftovers of another test never show in listNamespaces.
  runObjectStoreContract("swift (real Swift, tempauth)", async () => {
    const storeOptions = options(`t${randomBytes(4).toString("hex")}-`);
    return {
      store: new SwiftObjectStore(storeOptions),
      cleanup: async () => {
        const cleaner = new SwiftObjectStore(storeOptions);
        try {
          for (const namespace of await cleaner.listNamespaces()) await cleaner.deleteNamespace(namespace);
        } finally {
          await cleaner.close();
        }
      },
    };
  });
});

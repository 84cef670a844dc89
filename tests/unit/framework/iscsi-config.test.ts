// Goal: the iSCSI part of the configs is checked on load with messages that name the field (address,
// limits, CHAP, initiator ACL), `ovs up`'s iSCSI flags override and are stored in the cluster config,
// and the LUN table keeps numbers per vDisk, does not reuse a deleted one at once and refuses a
// damaged file.
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { applyOverrides, defaultClusterConfig } from "../../../framework/src/cluster/cluster-config.ts";
import { parseStorageDriverConfig } from "../../../volumedriver/src/storagedriver/config.ts";
import { LunTable, naaIdentifierHexOf, serialNumberOf } from "../../../volumedriver/src/storagedriver/iscsi-luns.ts";
import { iscsiUrlOf } from "../../../volumedriver/src/storagedriver/storagedriver.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

describe("framework: iSCSI in the StorageDriver config", function () {
  const valid = { vpool: "vpool1", directory: "vpools/vpool1", backend: { type: "local", path: "backend" } };
  const chap = { initiator: { username: "esx01", secret: "initiator-secret" }, target: { username: "vpool1", secret: "target-secret-1" } };

  it("has no iSCSI frontend unless the config asks for one; fills in 127.0.0.1:3260 and keeps CHAP, ACL and limits", function () {
    assert.equal(parseStorageDriverConfig(valid, "/srv", "sd.json").iscsi, undefined);
    assert.deepEqual(parseStorageDriverConfig({ ...valid, iscsi: {} }, "/srv", "sd.json").iscsi, { host: "127.0.0.1", port: 3260 });
    const config = parseStorageDriverConfig({
      ...valid, iscsi: { port: 0, chap, allowedInitiators: ["iqn.1998-01.com.vmware:esx01-1234", "eui.0123456789abcdef"], nopInIntervalMs: 0, immediateData: false },
    }, "/srv", "sd.json");
    assert.deepEqual(config.iscsi, {
      host: "127.0.0.1", port: 0, chap, allowedInitiators: ["iqn.1998-01.com.vmware:esx01-1234", "eui.0123456789abcdef"], nopInIntervalMs: 0, immediateData: false,
    });
  });

  const mistakes: Array<[string, unknown, RegExp]> = [
    ["a non-object", [], /"iscsi" must be an object like/],
    ["a port out of range", { port: 65536 }, /"iscsi"\.port must be a TCP port/],
    ["an unknown field", { portal: "x" }, /unknown field "portal"/],
    ["a negative limit", { sessionsMax: -1 }, /sessionsMax must be a whole number >= 0/],
    ["a limit out of the server's range", { commandWindowSize: 0 }, /"iscsi": iSCSI setting commandWindowSize = 0 must be an integer/],
    ["a flag that is not a boolean", { immediateData: "yes" }, /immediateData must be true or false/],
    ["a short CHAP secret", { chap: { initiator: { username: "a", secret: "short" } } }, /CHAP initiator secret must be 12-255 bytes/],
    ["the same secret both ways", { chap: { initiator: { username: "a", secret: "same-secret-12" }, target: { username: "b", secret: "same-secret-12" } } },
      /mutual CHAP secret must differ/],
    ["CHAP without a secret", { chap: { initiator: { username: "a" } } }, /"iscsi"\.chap\.initiator needs a "username" and a "secret"/],
    ["an unknown CHAP field", { chap: { initiator: { username: "a", secret: "initiator-secret" }, mutual: true } }, /unknown field "mutual"/],
    ["an ACL that is not a list", { allowedInitiators: "iqn.2020-01.com.example:a" }, /allowedInitiators must be a list/],
    ["a bad initiator name", { allowedInitiators: ["host1"] }, /allowedInitiators\[0\] must be an iSCSI name/],
  ];
  for (const [what, iscsi, message] of mistakes) {
    it(`refuses ${what}, naming the field`, function () {
      assert.throws(() => parseStorageDriverConfig({ ...valid, iscsi }, "/srv", "sd.json"), message);
    });
  }

  it("announces libiscsi's URL of the vPool's target", function () {
    assert.equal(iscsiUrlOf("127.0.0.1", 3260, "iqn.2026-11.org.openvstorage:vpool1"), "iscsi://127.0.0.1:3260/iqn.2026-11.org.openvstorage:vpool1");
    assert.equal(iscsiUrlOf("::1", 3260, "iqn.x"), "iscsi://[::1]:3260/iqn.x");
  });
});

describe("framework: iSCSI flags of ovs up", function () {
  it("overrides host and port and stores them; CHAP in config.json is kept", function () {
    const stored = defaultClusterConfig("2024-01-01T00:00:00.000Z");
    assert.deepEqual(stored.frontends.iscsi, { host: "127.0.0.1", port: 3260 });
    const withChap = { ...stored, frontends: { ...stored.frontends, iscsi: { ...stored.frontends.iscsi, chap: { initiator: { username: "a", secret: "initiator-secret" } } } } };
    const updated = applyOverrides(withChap, { iscsiHost: "0.0.0.0", iscsiPort: 13260 });
    assert.deepEqual(updated.frontends.iscsi, { host: "0.0.0.0", port: 13260, chap: { initiator: { username: "a", secret: "initiator-secret" } } });
    assert.deepEqual(stored.frontends.iscsi, { host: "127.0.0.1", port: 3260 }, "the input is not modified");
  });
});

describe("volumedriver: the iSCSI LUN table", function () {
  const tempDirs = new TempDirs("iscsi-lun-table");
  after(() => tempDirs.removeAll());

  it("keeps numbers across loads, hands out the next number after a delete, and refuses a damaged file", async function () {
    const file = path.join(await tempDirs.make(), "iscsi", "luns.json");
    const table = await LunTable.load(file);
    assert.equal(await table.assign("u-a", "a"), 0);
    assert.equal(await table.assign("u-b", "b"), 1);
    assert.equal(await table.assign("u-a", "a"), 0, "the same vDisk keeps its number");
    await table.forget(["u-b"]);
    assert.equal(await table.assign("u-c", "c"), 2, "a deleted vDisk's number is not reused at once");
    const reloaded = await LunTable.load(file);
    assert.deepEqual(reloaded.assignments(), [{ uuid: "u-a", vdisk: "a", lun: 0 }, { uuid: "u-c", vdisk: "c", lun: 2 }]);
    assert.equal(await reloaded.assign("u-d", "d"), 3);
    const text = await readFile(file, "utf8");
    await writeFile(file, text.replace('"lun": 3', '"lun": 0'));
    await assert.rejects(LunTable.load(file), /fails its checksum.*move it away/);
    await writeFile(file, "{");
    await assert.rejects(LunTable.load(file), /is not valid JSON/);
  });

  it("derives a stable serial number and NAA identifier from the vDisk's uuid", function () {
    const uuid = "12b8be93-fd2f-435e-ab8b-9ad59f34b6e6";
    assert.equal(serialNumberOf(uuid), "12b8be93fd2f435eab8b9ad59f34b6e6");
    assert.match(naaIdentifierHexOf(uuid), /^[0-9a-f]{16}$/);
    assert.equal(naaIdentifierHexOf(uuid), naaIdentifierHexOf(uuid));
    assert.notEqual(naaIdentifierHexOf(uuid), naaIdentifierHexOf("22b8be93-fd2f-435e-ab8b-9ad59f34b6e6"));
  });
});

// Goal: config files are checked on load and every mistake names the file, the field and what to
// write; flags override the stored cluster config; the supervisor's restart backoff is bounded.
import assert from "node:assert/strict";
import { applyOverrides, checkClusterConfig, defaultClusterConfig } from "../../../framework/src/cluster/cluster-config.ts";
import { restartBackoffMs } from "../../../framework/src/cluster/process-supervisor.ts";
import { formatTable } from "../../../framework/src/cli/table.ts";
import { describeBackendSpec } from "../../../volumedriver/src/storagedriver/backend-spec.ts";
import { parseStorageDriverConfig } from "../../../volumedriver/src/storagedriver/config.ts";

describe("framework: StorageDriver config", function () {
  const valid = { vpool: "vpool1", directory: "vpools/vpool1", backend: { type: "local", path: "backend" } };

  it("fills in defaults and resolves paths against the config's directory", function () {
    const config = parseStorageDriverConfig(valid, "/srv/ovs", "sd.json");
    assert.deepEqual(config, {
      vpool: "vpool1", directory: "/srv/ovs/vpools/vpool1", backend: { type: "local", path: "/srv/ovs/backend" },
      managementApi: { host: "127.0.0.1", port: 8510 }, settings: {}, logLevel: "info",
    });
    assert.equal(describeBackendSpec(config.backend), "local:/srv/ovs/backend");
  });

  it("keeps vPool settings and the optional files", function () {
    const config = parseStorageDriverConfig({ ...valid, settings: { scoSizeBytes: 4194304 }, logFile: "sd.log", pidFile: "/run/sd.pid", managementApi: { port: 0 } }, "/srv", "sd.json");
    assert.deepEqual(config.settings, { scoSizeBytes: 4194304 });
    assert.equal(config.logFile, "/srv/sd.log");
    assert.equal(config.pidFile, "/run/sd.pid");
    assert.deepEqual(config.managementApi, { host: "127.0.0.1", port: 0 });
  });

  const mistakes: Array<[string, unknown, RegExp]> = [
    ["a non-object", [], /sd\.json must hold a JSON object/],
    ["a bad vPool name", { ...valid, vpool: "VPool" }, /"vpool" must be a vPool name/],
    ["a missing directory", { ...valid, directory: undefined }, /"directory" must be a path/],
    ["an unknown backend type", { ...valid, backend: { type: "s4", path: "x" } }, /supported backend types are local/],
    ["a local backend without path", { ...valid, backend: { type: "local" } }, /"backend"\.path must be the directory/],
    ["an unknown backend field", { ...valid, backend: { type: "local", path: "b", secret: "x" } }, /unknown field "secret"/],
    ["a port out of range", { ...valid, managementApi: { port: 70000 } }, /port must be a TCP port/],
    ["an unknown setting", { ...valid, settings: { scoSize: 1 } }, /unknown field "scoSize"/],
    ["a non-integral setting", { ...valid, settings: { scoMaxAgeMs: 1.5 } }, /scoMaxAgeMs must be a whole number/],
    ["an unknown field", { ...valid, vpoolName: "x" }, /unknown field "vpoolName"/],
    ["a bad log level", { ...valid, logLevel: "loud" }, /"logLevel" must be one of fatal, error/],
  ];
  for (const [what, value, message] of mistakes) {
    it(`refuses ${what}, naming the field`, function () {
      assert.throws(() => parseStorageDriverConfig(value, "/srv", "sd.json"), message);
    });
  }
});

describe("framework: cluster config", function () {
  it("applies only the flags given and leaves the stored config alone", function () {
    const stored = defaultClusterConfig("2024-01-01T00:00:00.000Z");
    const updated = applyOverrides(stored, { apiPort: 18500, nbdPort: 20809 });
    assert.equal(updated.api.port, 18500);
    assert.equal(updated.api.host, "127.0.0.1");
    assert.equal(updated.frontends.nbd.port, 20809);
    assert.equal(updated.frontends.iscsi.port, 3260);
    assert.equal(updated.vpools[0].storagedriver.port, 8510);
    assert.equal(stored.api.port, 8500, "the input is not modified");
  });

  it("reads back what it writes and refuses configs it does not understand", function () {
    const config = defaultClusterConfig("2024-01-01T00:00:00.000Z");
    assert.deepEqual(checkClusterConfig(JSON.parse(JSON.stringify(config)), "config.json"), config);
    assert.throws(() => checkClusterConfig({ ...config, formatVersion: 2 }, "config.json"), /this release reads version 1/);
    assert.throws(() => checkClusterConfig({ ...config, vpools: [] }, "config.json"), /exactly one vPool/);
    assert.throws(() => checkClusterConfig({ ...config, api: { host: "127.0.0.1", port: -1 } }, "config.json"), /"api" must be like/);
  });
});

describe("framework: process supervisor backoff", function () {
  it("doubles from the minimum and stays at the maximum", function () {
    const settings = { restartBackoffMsMin: 1_000, restartBackoffMsMax: 30_000 };
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 100].map((failures) => restartBackoffMs(failures, settings)),
      [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });
});

describe("framework: CLI tables", function () {
  it("aligns columns and capitalises the header", function () {
    assert.equal(formatTable(["name", "size"], [["demo", "10 GiB"], ["a", "4 KiB"]]), "NAME  SIZE\ndemo  10 GiB\na     4 KiB");
  });
});

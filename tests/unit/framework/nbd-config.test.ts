// Goal: the NBD part of the configs is checked on load with messages that name the field, `ovs up`'s
// NBD flags (host, port, TLS) override and are stored in the cluster config, TLS without a
// certificate is refused, and the StorageDriver's export registry offers exactly its running vDisks.
import assert from "node:assert/strict";
import { applyOverrides, checkClusterConfig, defaultClusterConfig } from "../../../framework/src/cluster/cluster-config.ts";
import type { Volume, VolumeInfo, VPool } from "../../../volumedriver/src/engine/vpool-types.ts";
import { parseStorageDriverConfig } from "../../../volumedriver/src/storagedriver/config.ts";
import { vpoolExportRegistry } from "../../../volumedriver/src/storagedriver/nbd-exports.ts";
import { nbdUrlOf } from "../../../volumedriver/src/storagedriver/storagedriver.ts";

describe("framework: NBD in the StorageDriver config", function () {
  const valid = { vpool: "vpool1", directory: "vpools/vpool1", backend: { type: "local", path: "backend" } };

  it("has no NBD frontend unless the config asks for one", function () {
    assert.equal(parseStorageDriverConfig(valid, "/srv", "sd.json").nbd, undefined);
  });

  it("fills in 127.0.0.1:10809, keeps limits, resolves TLS paths and drops mode off", function () {
    assert.deepEqual(parseStorageDriverConfig({ ...valid, nbd: {} }, "/srv", "sd.json").nbd, { host: "127.0.0.1", port: 10809 });
    const config = parseStorageDriverConfig({
      ...valid,
      nbd: { port: 0, connectionsMax: 8, tls: { mode: "require", certificateFile: "tls/cert.pem", keyFile: "/etc/key.pem" } },
    }, "/srv", "sd.json");
    assert.deepEqual(config.nbd, {
      host: "127.0.0.1", port: 0, connectionsMax: 8,
      tls: { mode: "require", certificateFile: "/srv/tls/cert.pem", keyFile: "/etc/key.pem" },
    });
    const off = parseStorageDriverConfig({ ...valid, nbd: { tls: { mode: "off" } } }, "/srv", "sd.json");
    assert.equal(off.nbd?.tls, undefined);
  });

  const mistakes: Array<[string, unknown, RegExp]> = [
    ["a non-object", [], /"nbd" must be an object like/],
    ["a port out of range", { port: 65536 }, /"nbd"\.port must be a TCP port/],
    ["an unknown field", { address: "x" }, /unknown field "address"/],
    ["a zero limit", { inFlightRequestsMax: 0 }, /inFlightRequestsMax must be a whole number > 0/],
    ["an unknown TLS mode", { tls: { mode: "on" } }, /"nbd"\.tls\.mode must be one of off, allow, require/],
    ["TLS without a certificate", { tls: { mode: "allow", keyFile: "k.pem" } }, /"nbd"\.tls\.certificateFile must be a path/],
  ];
  for (const [what, nbd, message] of mistakes) {
    it(`refuses ${what}, naming the field`, function () {
      assert.throws(() => parseStorageDriverConfig({ ...valid, nbd }, "/srv", "sd.json"), message);
    });
  }

  it("announces nbds:// only when plain connections are refused", function () {
    assert.equal(nbdUrlOf("127.0.0.1", 10809, undefined), "nbd://127.0.0.1:10809");
    assert.equal(nbdUrlOf("127.0.0.1", 10809, "allow"), "nbd://127.0.0.1:10809");
    assert.equal(nbdUrlOf("::1", 10809, "require"), "nbds://[::1]:10809");
  });
});

describe("framework: NBD flags of ovs up", function () {
  const stored = defaultClusterConfig("2024-01-01T00:00:00.000Z");

  it("overrides host and port and leaves TLS off by default", function () {
    const updated = applyOverrides(stored, { nbdHost: "0.0.0.0", nbdPort: 20809 });
    assert.deepEqual(updated.frontends.nbd, { host: "0.0.0.0", port: 20809 });
    assert.deepEqual(stored.frontends.nbd, { host: "127.0.0.1", port: 10809 }, "the input is not modified");
  });

  it("a certificate and key alone mean TLS require; the mode can be changed later and turned off", function () {
    const secured = applyOverrides(stored, { nbdTlsCert: "/etc/ovs/cert.pem", nbdTlsKey: "/etc/ovs/key.pem" });
    assert.deepEqual(secured.frontends.nbd.tls, { mode: "require", certificateFile: "/etc/ovs/cert.pem", keyFile: "/etc/ovs/key.pem" });
    const allowed = applyOverrides(secured, { nbdTls: "allow" });
    assert.deepEqual(allowed.frontends.nbd.tls, { mode: "allow", certificateFile: "/etc/ovs/cert.pem", keyFile: "/etc/ovs/key.pem" });
    assert.equal(applyOverrides(allowed, { nbdTls: "off" }).frontends.nbd.tls, undefined);
    assert.deepEqual(checkClusterConfig(JSON.parse(JSON.stringify(allowed)), "config.json"), allowed);
  });

  it("refuses a TLS mode without certificate and key, and a stored TLS entry it does not understand", function () {
    assert.throws(() => applyOverrides(stored, { nbdTls: "require" }), /needs a certificate and its key: pass --nbd-tls-cert FILE and --nbd-tls-key FILE/);
    assert.throws(() => applyOverrides(stored, { nbdTlsCert: "/etc/cert.pem" }), /--nbd-tls-key FILE/);
    const broken = structuredClone(stored) as unknown as { frontends: { nbd: Record<string, unknown> } };
    broken.frontends.nbd.tls = { mode: "maybe", certificateFile: "c", keyFile: "k" };
    assert.throws(() => checkClusterConfig(broken, "config.json"), /"frontends\.nbd\.tls" must be like/);
  });
});

describe("volumedriver: NBD export registry of a vPool", function () {
  function fakeVolume(info: VolumeInfo): Volume {
    return { name: info.name, sizeBytes: info.sizeBytes, readOnly: false, info: () => info } as unknown as Volume;
  }

  function infoOf(name: string, state: VolumeInfo["state"]): VolumeInfo {
    return {
      name, state, uuid: "u", vpool: "pool", namespace: `vd-${name}`, sizeBytes: 10 * 1024 ** 3,
      clusterSizeBytes: 4096, scoSizeBytes: 64 * 1024 ** 2, createdAt: "2024-01-01T00:00:00.000Z",
      template: false, snapshotCount: 0, scrubPending: false, overrides: {},
    };
  }

  it("offers the running vDisks only, described with size and vPool, and finds them by name", function () {
    const volumes = new Map([["alpha", fakeVolume(infoOf("alpha", "running"))], ["beta", fakeVolume(infoOf("beta", "recovering"))]]);
    const infos = [infoOf("alpha", "running"), infoOf("beta", "recovering"), infoOf("gamma", "failed")];
    const vpool = { name: "pool", listVolumes: () => infos, getVolume: (name: string) => volumes.get(name), listSnapshots: () => [] } as unknown as VPool;
    const registry = vpoolExportRegistry(vpool);
    assert.deepEqual(registry.listExports().map((entry) => [entry.name, entry.description]), [["alpha", "vDisk alpha (10 GiB) in vPool pool"]]);
    assert.equal(registry.findExport("alpha")?.device, volumes.get("alpha"));
    assert.equal(registry.findExport("beta"), undefined, "not running yet");
    assert.equal(registry.findExport("gamma"), undefined, "failed");
    assert.equal(registry.findExport("delta"), undefined, "no such vDisk");
  });
});

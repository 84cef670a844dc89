// Goal: the inventory repositories of the framework model (storage routers, backends with their Alba
// ASDs and presets, vPools, StorageDrivers, vDisks) create, get, list, update and delete; refuse
// invalid input (Invalid), unknown names (NotFound), taken names and deletions something depends on
// (Conflict) with messages that say what to do; and never show a backend's or preset's secrets.
import assert from "node:assert/strict";
import { FrameworkModel } from "../../../framework/src/model/framework-model.ts";
import { isModelError, type ModelErrorKind } from "../../../framework/src/model/model-error.ts";

const NOW_MS = Date.parse("2024-05-01T12:00:00.000Z");
const CREATED_AT = "2024-05-01T12:00:00.000Z";
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const KEY_HEX = "ab".repeat(32);

/** A matcher for assert.throws: a ModelError of `kind` whose message contains every `fragment`. */
function modelError(kind: ModelErrorKind, ...fragments: string[]) {
  return (error: unknown): boolean => {
    assert.ok(isModelError(error, kind), `expected ModelError(${kind}), got ${String(error)}`);
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    return true;
  };
}

describe("framework model: inventory", function () {
  let model: FrameworkModel;

  beforeEach(function () {
    model = FrameworkModel.open(":memory:", { nowMs: () => NOW_MS });
  });

  afterEach(function () {
    model.close();
  });

  /** A local backend, a vPool on it and a 1 GiB vDisk in it. */
  function vpoolWithVdisk(): void {
    model.backends.create({ name: "local-1", kind: "local", config: { path: "/srv/ovs/backend" } });
    model.vpools.create({ name: "pool", backend: "local-1" });
    model.vdisks.create({ name: "base", vpool: "pool", sizeBytes: GIB });
  }

  describe("storage routers", function () {
    it("storage_router_crud", function () {
      const router = model.storageRouters.create({ name: "node-1", host: "node-1.example.com", ip: "10.0.0.1" });
      assert.deepEqual(router, { name: "node-1", host: "node-1.example.com", ip: "10.0.0.1", createdAt: CREATED_AT });
      model.storageRouters.create({ name: "node-0", host: "node-0", ip: "fd00::1" });
      assert.deepEqual(model.storageRouters.list().map((each) => each.name), ["node-0", "node-1"]);
      assert.equal(model.storageRouters.update("node-1", { ip: "10.0.0.2" }).ip, "10.0.0.2");
      model.storageRouters.delete("node-0");
      assert.throws(() => model.storageRouters.get("node-0"), modelError("NotFound", "node-0"));
      assert.throws(() => model.storageRouters.delete("node-0"), modelError("NotFound"));
    });

    it("storage_router_invalid_and_conflicts", function () {
      model.storageRouters.create({ name: "node-1", host: "node-1", ip: "10.0.0.1" });
      assert.throws(() => model.storageRouters.create({ name: "Node 1", host: "h", ip: "10.0.0.5" }), modelError("Invalid", "storage router name"));
      assert.throws(() => model.storageRouters.create({ name: "node-2", host: "h", ip: "10.0.0.256" }), modelError("Invalid", "IPv4 or IPv6"));
      assert.throws(() => model.storageRouters.create({ name: "node-1", host: "h", ip: "10.0.0.9" }), modelError("Conflict", "exists already"));
      assert.throws(() => model.storageRouters.create({ name: "node-2", host: "h", ip: "10.0.0.1" }), modelError("Conflict", "node-1 has the address"));
      assert.throws(() => model.storageRouters.update("node-9", { host: "x" }), modelError("NotFound"));
      assert.throws(() => model.storageRouters.update("node-1", { name: "node-2" } as never), modelError("Invalid", "unknown field \"name\""), "names never change");
    });

    it("storage_router_delete_with_storagedriver_is_conflict", function () {
      vpoolWithVdisk();
      model.storageRouters.create({ name: "node-1", host: "node-1", ip: "10.0.0.1" });
      model.storageDrivers.create({ vpool: "pool", storageRouter: "node-1", nbdPort: 10809, iscsiPort: 3260, managementPort: 8510 });
      assert.throws(() => model.storageRouters.delete("node-1"), modelError("Conflict", "runs StorageDrivers of the vPools pool", "remove"));
    });
  });

  describe("backends", function () {
    it("backend_crud_each_kind", function () {
      const local = model.backends.create({ name: "local-1", kind: "local", config: { path: "/srv/backend" } });
      assert.deepEqual(local, { name: "local-1", kind: "local", config: { path: "/srv/backend" }, secretsSet: [], createdAt: CREATED_AT });
      model.backends.create({ name: "s3-1", kind: "s3", config: { endpoint: "http://10.0.0.9:9000", bucket: "ovs" } });
      model.backends.create({ name: "swift-1", kind: "swift", config: { authUrl: "http://10.0.0.8:8080/auth/v1.0", auth: "tempauth" } });
      model.backends.create({ name: "alba-1", kind: "alba", config: { proxyUrl: "http://127.0.0.1:8600" } });
      assert.deepEqual(model.backends.list().map((backend) => `${backend.name}:${backend.kind}`), ["alba-1:alba", "local-1:local", "s3-1:s3", "swift-1:swift"]);
      const updated = model.backends.update("s3-1", { config: { endpoint: "http://10.0.0.10:9000", bucket: "ovs2", region: "eu-west-1" } });
      assert.deepEqual(updated.config, { endpoint: "http://10.0.0.10:9000", bucket: "ovs2", region: "eu-west-1" });
      model.backends.delete("swift-1");
      assert.throws(() => model.backends.get("swift-1"), modelError("NotFound", "swift-1"));
    });

    it("backend_config_is_validated_per_kind", function () {
      const create = (kind: string, config: unknown) => () => model.backends.create({ name: "b", kind: kind as "s3", config: config as Record<string, unknown> });
      assert.throws(create("ceph", {}), modelError("Invalid", "backend kind must be one of local, s3, swift, alba"));
      assert.throws(create("local", { path: "relative/dir" }), modelError("Invalid", "absolute"));
      assert.throws(create("local", { path: "/x", bucket: "b" }), modelError("Invalid", "unknown field \"bucket\""));
      assert.throws(create("s3", { endpoint: "ftp://x" }), modelError("Invalid", "http:// or https://"));
      assert.throws(create("s3", { accessKeyId: "AK" }), modelError("Invalid", "not secretAccessKey"));
      assert.throws(create("swift", { auth: "tempauth" }), modelError("Invalid", "authUrl is missing"));
      assert.throws(create("swift", { authUrl: "http://h/auth/v1.0", auth: "tempauth", password: "p" }), modelError("Invalid", "password does not apply to tempauth"));
      assert.throws(create("swift", { authUrl: "http://h/v3", auth: "keystone", user: "u", password: "p" }), modelError("Invalid", "not projectName"));
      assert.throws(create("alba", { proxyUrl: "https://127.0.0.1:8600" }), modelError("Invalid", "http:// URL"));
      assert.throws(create("alba", { type: "s3", proxyUrl: "http://127.0.0.1:8600" }), modelError("Invalid", "leave it out"));
      assert.throws(create("alba", "proxy"), modelError("Invalid", "JSON object"));
      assert.deepEqual(model.backends.list(), [], "nothing invalid was stored");
    });

    it("backend_name_conflict", function () {
      model.backends.create({ name: "b", kind: "local", config: { path: "/a" } });
      assert.throws(() => model.backends.create({ name: "b", kind: "local", config: { path: "/b" } }), modelError("Conflict", "a backend named b exists already"));
    });

    it("backend_secrets_never_in_public_views", function () {
      model.backends.create({
        name: "s3-1", kind: "s3", config: { endpoint: "http://10.0.0.9:9000", bucket: "ovs", accessKeyId: "AKIDPUBLIC", secretAccessKey: "s3-SECRET-value" },
      });
      model.backends.create({
        name: "swift-1", kind: "swift",
        config: { authUrl: "http://10.0.0.8:5000/v3", auth: "keystone", user: "ovs", password: "swift-SECRET-value", projectName: "storage" },
      });
      const s3 = model.backends.get("s3-1");
      assert.deepEqual(s3.config, { endpoint: "http://10.0.0.9:9000", bucket: "ovs", accessKeyId: "AKIDPUBLIC" }, "identities are public");
      assert.deepEqual(s3.secretsSet, ["secretAccessKey"]);
      assert.deepEqual(model.backends.get("swift-1").secretsSet, ["password"]);
      const shown = JSON.stringify([model.backends.list(), s3, model.backends.get("swift-1"), model.backends.update("s3-1", { config: { bucket: "ovs2", accessKeyId: "AKIDPUBLIC" } })]);
      assert.ok(!shown.includes("SECRET"), `a secret leaked into a view: ${shown}`);
      // A config replaces the whole public part, but one without secret fields keeps the stored
      // secrets (clients edit what GET showed them); the opener still gets them.
      assert.deepEqual(model.backends.connection("s3-1"), {
        spec: { type: "s3", bucket: "ovs2" }, credentials: { accessKeyId: "AKIDPUBLIC", secretAccessKey: "s3-SECRET-value" },
      });
      assert.deepEqual(model.backends.connection("swift-1"), {
        spec: { type: "swift", authUrl: "http://10.0.0.8:5000/v3", auth: "keystone" },
        credentials: { user: "ovs", password: "swift-SECRET-value", projectName: "storage" },
      });
      model.backends.update("s3-1", { config: { bucket: "ovs2", accessKeyId: "AK2", secretAccessKey: "s3-SECRET-2" } });
      assert.equal(model.backends.connection("s3-1").credentials.secretAccessKey, "s3-SECRET-2", "giving a secret replaces it");
    });

    it("backend_delete_used_by_vpool_is_conflict", function () {
      vpoolWithVdisk();
      assert.throws(() => model.backends.delete("local-1"), modelError("Conflict", "used by the vPools pool", "delete them first"));
      assert.equal(model.backends.get("local-1").name, "local-1");
    });
  });

  describe("alba ASDs and presets", function () {
    beforeEach(function () {
      model.backends.create({ name: "alba-1", kind: "alba", config: { proxyUrl: "http://127.0.0.1:8600", presetName: "default" } });
    });

    it("alba_asd_crud", function () {
      const asd = model.albaAsds.create("alba-1", { asdId: "0123456789abcdef0123456789abcdef", nodeId: "node-1", url: "http://127.0.0.1:8601" });
      assert.deepEqual(asd, {
        asdId: "0123456789abcdef0123456789abcdef", backend: "alba-1", nodeId: "node-1", url: "http://127.0.0.1:8601", status: "claimed", createdAt: CREATED_AT,
      });
      model.albaAsds.create("alba-1", { asdId: "asd-2", nodeId: "node-0", url: "http://127.0.0.1:8602", status: "available" });
      assert.deepEqual(model.albaAsds.list("alba-1").map((each) => each.asdId), ["asd-2", asd.asdId], "listed by node, then id");
      assert.equal(model.albaAsds.update("asd-2", { status: "error" }).status, "error");
      model.albaAsds.delete("asd-2");
      assert.throws(() => model.albaAsds.get("asd-2"), modelError("NotFound", "asd-2"));
    });

    it("alba_asd_invalid_and_conflicts", function () {
      model.backends.create({ name: "local-1", kind: "local", config: { path: "/srv/b" } });
      const asd = { asdId: "asd-1", nodeId: "node-1", url: "http://127.0.0.1:8601" };
      assert.throws(() => model.albaAsds.create("local-1", asd), modelError("Invalid", "only alba backends have ASDs"));
      assert.throws(() => model.albaAsds.create("nope", asd), modelError("NotFound", "nope"));
      assert.throws(() => model.albaAsds.create("alba-1", { ...asd, url: "127.0.0.1:8601" }), modelError("Invalid", "ASD url"));
      assert.throws(() => model.albaAsds.create("alba-1", { ...asd, status: "gone" as "claimed" }), modelError("Invalid", "ASD status"));
      model.albaAsds.create("alba-1", asd);
      assert.throws(() => model.albaAsds.create("alba-1", asd), modelError("Conflict", "ASD asd-1 is known already"));
    });

    it("alba_preset_crud_and_validation", function () {
      const preset = model.albaPresets.create("alba-1", { name: "default", policies: [{ k: 2, m: 1, c: 2, x: 1 }], fragmentSizeBytes: MIB });
      assert.deepEqual(preset, {
        name: "default", policies: [{ k: 2, m: 1, c: 2, x: 1 }], fragmentSizeBytes: MIB, compression: "none", encryption: "none",
        checksum: "crc32c", backend: "alba-1", createdAt: CREATED_AT,
      });
      assert.throws(() => model.albaPresets.create("alba-1", { name: "bad", policies: [{ k: 2, m: 1, c: 1, x: 1 }], fragmentSizeBytes: MIB }),
        modelError("Invalid", "c must be between k and k + m"));
      assert.throws(() => model.albaPresets.create("alba-1", { name: "default", policies: [{ k: 1, m: 0, c: 1, x: 1 }], fragmentSizeBytes: MIB }),
        modelError("Conflict", "has a preset named default already"));
      const updated = model.albaPresets.update("alba-1", "default", { policies: [{ k: 4, m: 2, c: 5, x: 2 }], compression: "lz4" });
      assert.deepEqual([updated.policies, updated.compression], [[{ k: 4, m: 2, c: 5, x: 2 }], "lz4"]);
      model.albaPresets.create("alba-1", { name: "spare", policies: [{ k: 1, m: 0, c: 1, x: 1 }], fragmentSizeBytes: MIB });
      assert.deepEqual(model.albaPresets.list("alba-1").map((each) => each.name), ["default", "spare"]);
      model.albaPresets.delete("alba-1", "spare");
      assert.throws(() => model.albaPresets.get("alba-1", "spare"), modelError("NotFound", "no preset named spare"));
    });

    it("alba_preset_of_the_backend_cannot_be_deleted", function () {
      model.albaPresets.create("alba-1", { name: "default", policies: [{ k: 2, m: 1, c: 2, x: 1 }], fragmentSizeBytes: MIB });
      assert.throws(() => model.albaPresets.delete("alba-1", "default"), modelError("Conflict", "preset of backend alba-1"));
    });

    it("alba_preset_key_never_in_public_views", function () {
      model.albaPresets.create("alba-1", {
        name: "secure", policies: [{ k: 2, m: 1, c: 2, x: 1 }], fragmentSizeBytes: MIB, encryption: "aes-256-ctr", encryptionKeyHex: KEY_HEX,
      });
      const updated = model.albaPresets.update("alba-1", "secure", { compression: "snappy" });
      const shown = JSON.stringify([model.albaPresets.get("alba-1", "secure"), model.albaPresets.list("alba-1"), updated]);
      assert.ok(!shown.includes(KEY_HEX), "the key leaked into a view");
      assert.equal(updated.encryption, "aes-256-ctr");
      assert.equal(model.albaPresets.withKey("alba-1", "secure").encryptionKeyHex, KEY_HEX, "an update without a key keeps it");
    });

    it("alba_backend_delete_takes_its_asds_and_presets", function () {
      model.albaAsds.create("alba-1", { asdId: "asd-1", nodeId: "node-1", url: "http://127.0.0.1:8601" });
      model.albaPresets.create("alba-1", { name: "default", policies: [{ k: 2, m: 1, c: 2, x: 1 }], fragmentSizeBytes: MIB });
      model.backends.delete("alba-1");
      assert.throws(() => model.albaAsds.get("asd-1"), modelError("NotFound"));
      model.backends.create({ name: "alba-1", kind: "alba", config: { proxyUrl: "http://127.0.0.1:8600" } });
      assert.deepEqual(model.albaPresets.list("alba-1"), [], "a new backend of the same name starts empty");
    });
  });

  describe("vPools", function () {
    beforeEach(function () {
      model.backends.create({ name: "local-1", kind: "local", config: { path: "/srv/ovs/backend" } });
    });

    it("vpool_crud_with_defaults", function () {
      const vpool = model.vpools.create({ name: "pool", backend: "local-1" });
      assert.deepEqual(vpool, {
        name: "pool", backend: "local-1", scoSizeBytes: 64 * MIB, writeBufferSizeBytes: GIB, readCacheSizeBytes: 256 * MIB,
        compression: "none", encryption: null, schedules: {}, createdAt: CREATED_AT,
      });
      model.vpools.create({
        name: "fast", backend: "local-1", scoSizeBytes: 4 * MIB, writeBufferSizeBytes: 8 * MIB, readCacheSizeBytes: 0, compression: "lz4",
        encryption: { keyFile: "/etc/ovs/fast.key" }, schedules: { snapshots: { everyMinutes: 15 }, scrub: null },
      });
      assert.deepEqual(model.vpools.list().map((each) => each.name), ["fast", "pool"]);
      const updated = model.vpools.update("pool", { scoSizeBytes: 32 * MIB, encryption: { keyEnv: "OVS_POOL_KEY" }, schedules: { scrub: { dailyAt: { hour: 1, minute: 30 } } } });
      assert.deepEqual([updated.scoSizeBytes, updated.encryption, updated.schedules], [32 * MIB, { keyEnv: "OVS_POOL_KEY" }, { scrub: { dailyAt: { hour: 1, minute: 30 } } }]);
      assert.equal(model.vpools.update("pool", { encryption: null }).encryption, null);
      model.vpools.delete("fast");
      assert.throws(() => model.vpools.get("fast"), modelError("NotFound", "fast"));
    });

    it("vpool_invalid_input", function () {
      const create = (changes: Record<string, unknown>) => () => model.vpools.create({ name: "pool", backend: "local-1", ...changes });
      assert.throws(create({ name: "Pool!" }), modelError("Invalid", "vPool name"));
      assert.throws(create({ scoSizeBytes: 2 * MIB }), modelError("Invalid", "scoSizeBytes"));
      assert.throws(create({ scoSizeBytes: 4 * MIB + 512 }), modelError("Invalid", "multiple of 4096"));
      assert.throws(create({ writeBufferSizeBytes: 64 * MIB }), modelError("Invalid", "at least 2 SCOs"));
      assert.throws(create({ compression: "zip" }), modelError("Invalid", "compression"));
      assert.throws(create({ encryption: { key: KEY_HEX } }), modelError("Invalid", "unknown field \"key\""));
      assert.throws(create({ encryption: { keyFile: "pool.key" } }), modelError("Invalid", "absolute path"));
      assert.throws(create({ schedules: { snapshots: { everyMinutes: 0 } } }), modelError("Invalid", "everyMinutes"));
      assert.throws(create({ schedules: { backup: null } }), modelError("Invalid", "unknown field \"backup\""));
      assert.throws(create({ backend: "nope" }), modelError("NotFound", "no backend named nope"));
      model.vpools.create({ name: "pool", backend: "local-1" });
      model.backends.create({ name: "local-2", kind: "local", config: { path: "/srv/other" } });
      assert.throws(() => model.vpools.update("pool", { backend: "local-2" }), modelError("Invalid", "stays on backend local-1"));
    });

    it("vpool_and_storagedriver_in_one_transaction_roll_back_together", function () {
      model.storageRouters.create({ name: "node-1", host: "node-1", ip: "10.0.0.1" });
      assert.throws(() => model.transaction(() => {
        model.vpools.create({ name: "pool", backend: "local-1" });
        model.storageDrivers.create({ vpool: "pool", storageRouter: "node-1", nbdPort: 10809, iscsiPort: 10809, managementPort: 8510 });
      }), modelError("Invalid", "ports must differ"));
      assert.deepEqual(model.vpools.list(), [], "the vPool went with the failed StorageDriver");
    });

    it("vpool_name_conflict", function () {
      model.vpools.create({ name: "pool", backend: "local-1" });
      assert.throws(() => model.vpools.create({ name: "pool", backend: "local-1" }), modelError("Conflict", "a vPool named pool exists already"));
    });

    it("vpool_delete_with_vdisks_is_conflict_and_takes_its_storagedrivers", function () {
      model.vpools.create({ name: "pool", backend: "local-1" });
      model.vdisks.create({ name: "disk", vpool: "pool", sizeBytes: GIB });
      model.storageRouters.create({ name: "node-1", host: "node-1", ip: "10.0.0.1" });
      model.storageDrivers.create({ vpool: "pool", storageRouter: "node-1", nbdPort: 10809, iscsiPort: 3260, managementPort: 8510 });
      assert.throws(() => model.vpools.delete("pool"), modelError("Conflict", "vPool pool holds vDisks (disk)", "delete them first"));
      model.vdisks.delete("disk");
      model.vpools.delete("pool");
      assert.deepEqual(model.storageDrivers.list(), [], "the vPool's StorageDrivers went with it");
    });
  });

  describe("StorageDrivers", function () {
    beforeEach(function () {
      vpoolWithVdisk();
      model.vpools.create({ name: "other", backend: "local-1" });
      model.storageRouters.create({ name: "node-1", host: "node-1", ip: "10.0.0.1" });
      model.storageRouters.create({ name: "node-2", host: "node-2", ip: "10.0.0.2" });
    });
    const ports = { nbdPort: 10809, iscsiPort: 3260, managementPort: 8510 };

    it("storagedriver_crud", function () {
      const driver = model.storageDrivers.create({ vpool: "pool", storageRouter: "node-1", ...ports });
      assert.deepEqual(driver, { vpool: "pool", storageRouter: "node-1", ...ports, createdAt: CREATED_AT });
      model.storageDrivers.create({ vpool: "pool", storageRouter: "node-2", ...ports });
      model.storageDrivers.create({ vpool: "other", storageRouter: "node-1", nbdPort: 10810, iscsiPort: 3261, managementPort: 8511 });
      assert.deepEqual(model.storageDrivers.list({ vpool: "pool" }).map((each) => each.storageRouter), ["node-1", "node-2"]);
      assert.deepEqual(model.storageDrivers.list({ storageRouter: "node-1" }).map((each) => each.vpool), ["other", "pool"]);
      assert.equal(model.storageDrivers.update("pool", "node-2", { nbdPort: 10900 }).nbdPort, 10900);
      model.storageDrivers.delete("pool", "node-2");
      assert.throws(() => model.storageDrivers.get("pool", "node-2"), modelError("NotFound", "no StorageDriver on storage router node-2"));
    });

    it("storagedriver_invalid_and_conflicts", function () {
      const create = (input: Record<string, unknown>) => () => model.storageDrivers.create({ vpool: "pool", storageRouter: "node-1", ...ports, ...input });
      assert.throws(create({ nbdPort: 0 }), modelError("Invalid", "nbdPort"));
      assert.throws(create({ iscsiPort: 10809 }), modelError("Invalid", "ports must differ"));
      assert.throws(create({ vpool: "nope" }), modelError("NotFound", "no vPool named nope"));
      assert.throws(create({ storageRouter: "node-9" }), modelError("NotFound", "node-9"));
      create({})();
      assert.throws(create({}), modelError("Conflict", "vPool pool has a StorageDriver on node-1 already"));
      assert.throws(create({ vpool: "other", nbdPort: 10810, iscsiPort: 3261 }), modelError("Conflict", "port 8510 on storage router node-1 is taken by the StorageDriver of vPool pool"));
      model.storageDrivers.create({ vpool: "other", storageRouter: "node-1", nbdPort: 10810, iscsiPort: 3261, managementPort: 8511 });
      assert.throws(() => model.storageDrivers.update("other", "node-1", { iscsiPort: 3260 }), modelError("Conflict", "port 3260"));
    });
  });

  describe("vDisks", function () {
    beforeEach(function () {
      vpoolWithVdisk();
    });

    it("vdisk_crud_clone_and_template", function () {
      assert.deepEqual(model.vdisks.get("base"), {
        name: "base", vpool: "pool", sizeBytes: GIB, parentSnapshot: null, template: false, configOverrides: {}, createdAt: CREATED_AT,
      });
      const clone = model.vdisks.create({ name: "clone", vpool: "pool", sizeBytes: 2 * GIB, parentSnapshot: "base@snap-1", configOverrides: { readCacheSizeBytes: 0 } });
      assert.deepEqual([clone.parentSnapshot, clone.configOverrides], ["base@snap-1", { readCacheSizeBytes: 0 }]);
      assert.deepEqual(model.vdisks.list({ vpool: "pool" }).map((each) => each.name), ["base", "clone"]);
      assert.deepEqual(model.vdisks.clonesOf("base").map((each) => each.name), ["clone"]);
      assert.deepEqual(model.vdisks.clonesOf("base", "snap-2"), []);
      const grown = model.vdisks.update("base", { sizeBytes: 4 * GIB, template: true });
      assert.deepEqual([grown.sizeBytes, grown.template], [4 * GIB, true]);
      model.vdisks.delete("clone");
      model.vdisks.delete("base");
      assert.deepEqual(model.vdisks.list(), []);
    });

    it("vdisk_invalid_input", function () {
      const create = (input: Record<string, unknown>) => () => model.vdisks.create({ name: "disk", vpool: "pool", sizeBytes: GIB, ...input });
      assert.throws(create({ name: "Disk" }), modelError("Invalid", "vDisk name"));
      assert.throws(create({ sizeBytes: 0 }), modelError("Invalid", "greater than 0"));
      assert.throws(create({ sizeBytes: 4097 }), modelError("Invalid", "multiple of 4096"));
      assert.throws(create({ parentSnapshot: "base" }), modelError("Invalid", "NAME@SNAPSHOT"));
      assert.throws(create({ parentSnapshot: "base@" }), modelError("Invalid", "NAME@SNAPSHOT"));
      assert.throws(create({ template: "yes" }), modelError("Invalid", "template"));
      assert.throws(create({ configOverrides: { cacheMode: 1 } }), modelError("Invalid", "unknown field \"cacheMode\""));
      assert.throws(create({ vpool: "nope" }), modelError("NotFound", "no vPool named nope"));
      assert.throws(create({ parentSnapshot: "ghost@snap" }), modelError("NotFound", "no vDisk named ghost"));
      model.vpools.create({ name: "other", backend: "local-1" });
      assert.throws(create({ vpool: "other", parentSnapshot: "base@snap" }), modelError("Invalid", "a clone lives in its parent's vPool"));
      assert.throws(() => model.vdisks.update("base", { sizeBytes: GIB / 2 }), modelError("Invalid", "can only grow"));
      model.vdisks.update("base", { template: true });
      assert.throws(() => model.vdisks.update("base", { template: false }), modelError("Invalid", "stays one"));
    });

    it("vdisk_name_conflict_across_vpools", function () {
      model.vpools.create({ name: "other", backend: "local-1" });
      assert.throws(() => model.vdisks.create({ name: "base", vpool: "other", sizeBytes: GIB }), modelError("Conflict", "unique in the cluster"));
    });

    it("vdisk_delete_with_clones_is_conflict", function () {
      model.vdisks.create({ name: "clone-a", vpool: "pool", sizeBytes: GIB, parentSnapshot: "base@snap-1" });
      model.vdisks.create({ name: "clone-b", vpool: "pool", sizeBytes: GIB, parentSnapshot: "base@snap-2" });
      assert.throws(() => model.vdisks.delete("base"), modelError("Conflict", "clone-a (from base@snap-1), clone-b (from base@snap-2)", "delete them first"));
      model.vdisks.delete("clone-a");
      model.vdisks.delete("clone-b");
      model.vdisks.delete("base");
    });
  });
});

// Goal: the model mirrors what a StorageDriver lists (cluster/inventory.ts reconcileVdisks): new
// vDisks are added parents first whatever the listing order, gone ones removed clones first, a grow
// and a set-template follow, a rollback to a smaller size is made again, a row the model refuses is
// skipped (and logged) without stopping the others, and other vPools' rows are left alone.
import assert from "node:assert/strict";
import { pino } from "pino";
import { reconcileVdisks, type ListedVdisk } from "../../../framework/src/cluster/inventory.ts";
import { FrameworkModel } from "../../../framework/src/model/framework-model.ts";

const GIB = 1024 ** 3;

describe("framework: the model mirrors the listed vDisks", function () {
  let model: FrameworkModel;
  let warnings: string[];
  const logger = pino({ level: "warn" }, { write: (line: string) => { warnings.push(line); } });

  beforeEach(function () {
    warnings = [];
    model = FrameworkModel.open(":memory:");
    model.backends.create({ name: "local", kind: "local", config: { path: "/srv/backend" } });
    model.vpools.create({ name: "pool", backend: "local" });
    model.vpools.create({ name: "other", backend: "local" });
    model.vdisks.create({ name: "elsewhere", vpool: "other", sizeBytes: GIB });
  });

  afterEach(function () {
    model.close();
  });

  const rows = (): string[] => model.vdisks.list({ vpool: "pool" }).map((vdisk) => `${vdisk.name}:${vdisk.sizeBytes / GIB}:${vdisk.parentSnapshot ?? "-"}:${vdisk.template}`);

  it("adds, follows and removes vDisks as listed", function () {
    const clone: ListedVdisk = { name: "clone", vpool: "pool", sizeBytes: GIB, parent: { volume: "base", snapshot: "s1" } };
    const base: ListedVdisk = { name: "base", vpool: "pool", sizeBytes: GIB, template: false };
    reconcileVdisks(model, "pool", [clone, base], logger);
    assert.deepEqual(rows(), ["base:1:-:false", "clone:1:base@s1:false"]);

    reconcileVdisks(model, "pool", [clone, { ...base, sizeBytes: 4 * GIB, template: true }], logger);
    assert.deepEqual(rows(), ["base:4:-:true", "clone:1:base@s1:false"], "a grow and set-template follow; the clone keeps its snapshot's size");

    reconcileVdisks(model, "pool", [clone, { ...base, sizeBytes: 4 * GIB, template: true }, { name: "solo", vpool: "pool", sizeBytes: 2 * GIB }], logger);
    reconcileVdisks(model, "pool", [clone, { ...base, sizeBytes: 4 * GIB, template: true }, { name: "solo", vpool: "pool", sizeBytes: GIB }], logger);
    assert.deepEqual(rows(), ["base:4:-:true", "clone:1:base@s1:false", "solo:1:-:false"], "a vDisk made again smaller is mirrored");

    reconcileVdisks(model, "pool", [clone, { ...base, sizeBytes: 4 * GIB, template: true }, { name: "solo", vpool: "pool", sizeBytes: GIB, overrides: { scoMaxAgeMs: 2000 } }], logger);
    assert.deepEqual(model.vdisks.get("solo").configOverrides, { scoMaxAgeMs: 2000 }, "setting overrides follow");
    reconcileVdisks(model, "pool", [clone, { ...base, sizeBytes: 4 * GIB, template: true }, { name: "solo", vpool: "pool", sizeBytes: GIB, overrides: {} }], logger);
    assert.deepEqual(model.vdisks.get("solo").configOverrides, {}, "and are cleared");

    reconcileVdisks(model, "pool", [], logger);
    assert.deepEqual(rows(), [], "parent and clone removed together, clone first");
    assert.deepEqual(model.vdisks.list({ vpool: "other" }).map((vdisk) => vdisk.name), ["elsewhere"], "other vPools are left alone");
    assert.deepEqual(warnings, []);
  });

  it("skips a row the model refuses and applies the others", function () {
    reconcileVdisks(model, "pool", [
      { name: "stray", vpool: "pool", sizeBytes: GIB, parent: { volume: "elsewhere", snapshot: "s1" } },
      { name: "fine", vpool: "pool", sizeBytes: GIB },
    ], logger);
    assert.deepEqual(rows(), ["fine:1:-:false"]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /a clone lives in its parent's vPool.*vDisk not mirrored in the model/);
  });
});

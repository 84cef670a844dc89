// Goal: preset validation accepts exactly the presets Alba can store and names every problem of the others.
import assert from "node:assert/strict";
import { MetadataError } from "../../../alba/src/metadata/metadata-store.ts";
import { defaultPreset, validatePreset } from "../../../alba/src/preset/preset-validation.ts";

const KEY_HEX = "ab".repeat(32);
const VALID = {
  name: "fast-4.2",
  policies: [{ k: 4, m: 2, c: 5, x: 2 }, { k: 2, m: 1, c: 2, x: 3 }],
  fragmentSizeBytes: 1 << 20,
  compression: "lz4",
  encryption: "aes-256-ctr",
  encryptionKeyHex: KEY_HEX.toUpperCase(),
  checksum: "crc32c",
};

function rejects(input: unknown, pattern: RegExp): void {
  assert.throws(() => validatePreset(input), (error: unknown) => error instanceof MetadataError && error.kind === "Invalid" && pattern.test(error.message), `expected ${pattern}`);
}

describe("alba preset validation", function () {
  it("valid_preset_is_copied_and_normalized", function () {
    // Goal: a valid preset comes back equal (key lower-cased), as a copy, and defaults fill compression/encryption/checksum.
    const preset = validatePreset(VALID);
    assert.deepEqual(preset, { ...VALID, encryptionKeyHex: KEY_HEX });
    assert.notEqual(preset.policies, VALID.policies);
    assert.deepEqual(validatePreset({ name: "p", policies: [{ k: 1, m: 0, c: 1, x: 1 }], fragmentSizeBytes: 4096 }), {
      name: "p", policies: [{ k: 1, m: 0, c: 1, x: 1 }], fragmentSizeBytes: 4096, compression: "none", encryption: "none", checksum: "crc32c",
    });
    assert.equal(validatePreset({ ...VALID, fragmentSizeBytes: 16 * 1024 * 1024 }).fragmentSizeBytes, 16 * 1024 * 1024);
    assert.deepEqual(validatePreset({ ...VALID, policies: [{ k: 24, m: 6, c: 30, x: 30 }] }).policies, [{ k: 24, m: 6, c: 30, x: 30 }]);
  });

  it("invalid_presets_name_their_problem", function () {
    // Goal: each rule (name, k, m, c, x, policies, fragment size, codecs, key iff encryption, checksum, unknown fields) has a clear message.
    rejects(null, /expected an object/);
    rejects({ ...VALID, name: "Bad Name" }, /name must be/);
    rejects({ ...VALID, policies: [] }, /policies must be a list of 1\.\.16/);
    rejects({ ...VALID, policies: [{ k: 0, m: 2, c: 2, x: 1 }] }, /policies\[0\]\.k \(data fragments\) must be an integer in 1\.\.24/);
    rejects({ ...VALID, policies: [{ k: 25, m: 2, c: 26, x: 1 }] }, /policies\[0\]\.k/);
    rejects({ ...VALID, policies: [{ k: 4, m: 7, c: 5, x: 1 }] }, /policies\[0\]\.m \(parity fragments\) must be an integer in 0\.\.6/);
    rejects({ ...VALID, policies: [{ k: 4, m: 2, c: 3, x: 1 }] }, /c must be between k and k \+ m \(4\.\.6\), got 3/);
    rejects({ ...VALID, policies: [{ k: 4, m: 2, c: 7, x: 1 }] }, /c must be between k and k \+ m/);
    rejects({ ...VALID, policies: [{ k: 4, m: 2, c: 5, x: 0 }] }, /policies\[0\]\.x/);
    rejects({ ...VALID, policies: [{ k: 4, m: 2, c: 5, x: 1.5 }] }, /policies\[0\]\.x/);
    rejects({ ...VALID, policies: [{ k: 4, m: 2, c: 5, x: 1, y: 2 }] }, /unknown field "y"/);
    rejects({ ...VALID, fragmentSizeBytes: 4095 }, /fragmentSizeBytes must be a multiple of 4096/);
    rejects({ ...VALID, fragmentSizeBytes: 6000 }, /fragmentSizeBytes/);
    rejects({ ...VALID, fragmentSizeBytes: 16 * 1024 * 1024 + 4096 }, /fragmentSizeBytes/);
    rejects({ ...VALID, compression: "zstd" }, /compression must be one of none, lz4, snappy/);
    rejects({ ...VALID, encryption: "aes-128" }, /encryption must be one of/);
    rejects({ ...VALID, encryptionKeyHex: undefined }, /encryptionKeyHex must be 64 hex digits/);
    rejects({ ...VALID, encryptionKeyHex: "ab".repeat(31) }, /encryptionKeyHex must be 64 hex digits/);
    rejects({ ...VALID, encryptionKeyHex: "zz".repeat(32) }, /encryptionKeyHex must be 64 hex digits/);
    rejects({ ...VALID, encryption: "none" }, /encryptionKeyHex is only allowed when encryption is aes-256-ctr/);
    rejects({ ...VALID, checksum: "md5" }, /checksum must be crc32c/);
    rejects({ ...VALID, extra: 1 }, /unknown field "extra"/);
  });

  it("all_problems_reported_at_once", function () {
    // Goal: one error lists every problem, so a user fixes them in one go.
    assert.throws(() => validatePreset({ ...VALID, fragmentSizeBytes: 1, compression: "x", policies: [{ k: 4, m: 2, c: 9, x: 1 }] }),
      (error: unknown) => error instanceof MetadataError && /fragmentSizeBytes/.test(error.message) && /compression/.test(error.message) && /c must be/.test(error.message));
  });

  it("default_preset_is_valid", function () {
    // Goal: the default preset passes validation, leads with (4, 2, 5, 2) and uses 1 MiB fragments without compression or encryption.
    const preset = defaultPreset();
    assert.equal(preset.name, "default");
    assert.deepEqual(preset.policies[0], { k: 4, m: 2, c: 5, x: 2 });
    assert.equal(preset.fragmentSizeBytes, 1 << 20);
    assert.deepEqual(validatePreset(preset), preset);
    assert.equal(defaultPreset("other").name, "other");
  });
});

// Backend specs of StorageDriver configs and `ovs up --backend` URLs: the alba member parses, is
// described without surprises, and bad input gets a message that says what to write instead.
import assert from "node:assert/strict";
import { backendSpecFromUrl, describeBackendSpec, parseBackendSpec } from "../../../volumedriver/src/storagedriver/backend-spec.ts";

describe("backend specs", function () {
  it("an alba spec names the proxy and optionally a preset", function () {
    assert.deepEqual(parseBackendSpec({ type: "alba", proxyUrl: "http://127.0.0.1:8600" }, "/data", "backend"), { type: "alba", proxyUrl: "http://127.0.0.1:8600" });
    const withPreset = parseBackendSpec({ type: "alba", proxyUrl: "http://127.0.0.1:8600", presetName: "fast" }, "/data", "backend");
    assert.deepEqual(withPreset, { type: "alba", proxyUrl: "http://127.0.0.1:8600", presetName: "fast" });
    assert.equal(describeBackendSpec(withPreset), "alba:http://127.0.0.1:8600 (preset fast)");
  });

  it("a bad alba spec says what is wrong", function () {
    assert.throws(() => parseBackendSpec({ type: "alba" }, "/data", "backend"), /backend\.proxyUrl is missing/);
    assert.throws(() => parseBackendSpec({ type: "alba", proxyUrl: "https://127.0.0.1:8600" }, "/data", "backend"), /must be an http:\/\/ URL/);
    assert.throws(() => parseBackendSpec({ type: "alba", proxyUrl: "http://127.0.0.1:8600", bucket: "x" }, "/data", "backend"), /unknown field "bucket"/);
    assert.throws(() => parseBackendSpec({ type: "ceph" }, "/data", "backend"), /supported backend types are local, s3, swift, alba/);
  });

  it("alba:// URLs of ovs up --backend become alba specs", function () {
    assert.deepEqual(backendSpecFromUrl("alba://127.0.0.1:8600", {}), { type: "alba", proxyUrl: "http://127.0.0.1:8600" });
    assert.deepEqual(backendSpecFromUrl("alba://127.0.0.1:8600?preset=ec42", {}), { type: "alba", proxyUrl: "http://127.0.0.1:8600", presetName: "ec42" });
    assert.throws(() => backendSpecFromUrl("alba://127.0.0.1:8600/x", {}), /has no path/);
    assert.throws(() => backendSpecFromUrl("ftp://127.0.0.1", {}), /s3:\/\/, swift:\/\/ or alba:\/\//);
  });
});

// Goal: errors become HTTP responses in one place, with the agreed statuses and codes, and every
// message says what to do; schema failures name the field and how to write it.
import assert from "node:assert/strict";
import { VolumeError, type VolumeErrorKind } from "../../../volumedriver/src/engine/block-device.ts";
import { HttpError, httpErrorResponse, validationMessage } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import { SizeError } from "../../../volumedriver/src/storagedriver/size.ts";

describe("framework: HTTP error mapping", function () {
  it("maps every VolumeError kind to its status and code", function () {
    const expected: Array<[VolumeErrorKind, number, string]> = [
      ["Exists", 409, "EXISTS"], ["NotFound", 404, "NOT_FOUND"], ["Invalid", 400, "INVALID_REQUEST"],
      ["OutOfRange", 400, "OUT_OF_RANGE"], ["Closed", 503, "CLOSED"], ["Io", 500, "IO_ERROR"], ["ReadOnly", 409, "READ_ONLY"],
    ];
    for (const [kind, statusCode, code] of expected) {
      const response = httpErrorResponse(new VolumeError(kind, `something about ${kind}`));
      assert.equal(response.statusCode, statusCode, kind);
      assert.equal(response.body.error.code, code, kind);
      assert.match(response.body.error.message, new RegExp(`^something about ${kind}: \\w`), kind);
    }
  });

  it("maps size errors to 400, HttpErrors to themselves, and anything else to 500 INTERNAL", function () {
    assert.deepEqual(httpErrorResponse(new SizeError("bad size")), { statusCode: 400, body: { error: { code: "INVALID_REQUEST", message: "bad size" } } });
    assert.equal(httpErrorResponse(new HttpError(503, "UNAVAILABLE", "down")).statusCode, 503);
    const internal = httpErrorResponse(new TypeError("x is undefined"));
    assert.equal(internal.statusCode, 500);
    assert.equal(internal.body.error.code, "INTERNAL");
    assert.match(internal.body.error.message, /bug/);
  });

  it("explains schema failures with the field's hint", function () {
    const message = validationMessage([
      { keyword: "pattern", instancePath: "/name", schemaPath: "#/properties/name/pattern", params: {}, message: "must match pattern \"^[a-z0-9]\"" },
      { keyword: "required", instancePath: "", schemaPath: "#/required", params: { missingProperty: "size" } },
      { keyword: "additionalProperties", instancePath: "", schemaPath: "#/additionalProperties", params: { additionalProperty: "sise" } },
    ], "body");
    assert.match(message, /body\.name must match pattern .*: a vDisk name is 1-63 characters/);
    assert.match(message, /body must have the field "size": a vDisk size is a number of bytes/);
    assert.match(message, /unknown field "sise": remove it/);
  });
});

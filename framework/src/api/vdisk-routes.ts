// /api/vdisks: the framework's vDisk resource, with its snapshots, rollback, templates, scrubs, resize and settings.
// Requests are validated here with the same schemas (and the same extra checks) as at the
// StorageDriver, sizes are turned into bytes, and the call is forwarded; the StorageDriver's answer
// (success or error) goes back to the caller unchanged.
import type { FastifyPluginAsync, FastifyReply } from "fastify";
import { allowEmptyBody, decodeCreateVdiskBody, encodeCreateVdiskBody } from "../../../volumedriver/src/storagedriver/vdisk-requests.ts";
import { parseVdiskSizeBytes } from "../../../volumedriver/src/storagedriver/size.ts";
import {
  createSnapshotBodySchema, createVdiskBodySchema, emptyBodySchema, resizeBodySchema, rollbackBodySchema, snapshotParamsSchema,
  vdiskConfigBodySchema, vdiskParamsSchema,
  type CreateSnapshotBody, type CreateVdiskBody, type ResizeBody, type RollbackBody, type SnapshotParams, type VdiskConfigBody, type VdiskParams,
} from "../../../volumedriver/src/storagedriver/vdisk-schemas.ts";
import type { StorageDriverClient, StorageDriverResponse } from "./storagedriver-client.ts";

/** Sends the StorageDriver's answer on as it is (status, body, and where a started task is followed). */
export function forward(reply: FastifyReply, response: StorageDriverResponse): FastifyReply {
  if (response.location !== undefined) void reply.header("location", `/api${response.location}`);
  return reply.code(response.statusCode).send(response.body);
}

const createVdiskQuerySchema = {
  type: "object", additionalProperties: false,
  properties: { vpool: { type: "string", minLength: 1, description: "the vPool of a new vDisk (default: the first vPool); a clone goes to its parent's vPool" } },
} as const;

export function vdiskRoutes(storagedriver: StorageDriverClient): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: CreateVdiskBody; Querystring: { vpool?: string } }>("/vdisks",
      { schema: { body: createVdiskBodySchema, querystring: createVdiskQuerySchema } }, async (request, reply) => {
        const decoded = decodeCreateVdiskBody(request.body);
        return forward(reply, await storagedriver.createVdiskIn(request.query.vpool, encodeCreateVdiskBody(decoded)));
      });

    app.get("/vdisks", async (_request, reply) => forward(reply, await storagedriver.listVdisks()));

    app.get<{ Params: VdiskParams }>("/vdisks/:name", { schema: { params: vdiskParamsSchema } }, async (request, reply) =>
      forward(reply, await storagedriver.getVdisk(request.params.name)));

    app.delete<{ Params: VdiskParams }>("/vdisks/:name", { schema: { params: vdiskParamsSchema } }, async (request, reply) =>
      forward(reply, await storagedriver.deleteVdisk(request.params.name)));

    app.post<{ Params: VdiskParams; Body: CreateSnapshotBody }>("/vdisks/:name/snapshots",
      { schema: { params: vdiskParamsSchema, body: createSnapshotBodySchema } }, async (request, reply) =>
        forward(reply, await storagedriver.createSnapshot(request.params.name, request.body.name)));

    app.get<{ Params: VdiskParams }>("/vdisks/:name/snapshots", { schema: { params: vdiskParamsSchema } }, async (request, reply) =>
      forward(reply, await storagedriver.listSnapshots(request.params.name)));

    app.delete<{ Params: SnapshotParams }>("/vdisks/:name/snapshots/:snapshot", { schema: { params: snapshotParamsSchema } }, async (request, reply) =>
      forward(reply, await storagedriver.deleteSnapshot(request.params.name, request.params.snapshot)));

    app.post<{ Params: VdiskParams; Body: RollbackBody }>("/vdisks/:name/rollback",
      { schema: { params: vdiskParamsSchema, body: rollbackBodySchema } }, async (request, reply) =>
        forward(reply, await storagedriver.rollbackVdisk(request.params.name, request.body.snapshot)));

    app.post<{ Params: VdiskParams }>("/vdisks/:name/template",
      { schema: { params: vdiskParamsSchema, body: emptyBodySchema }, preValidation: allowEmptyBody }, async (request, reply) =>
        forward(reply, await storagedriver.setTemplate(request.params.name)));

    app.post<{ Params: VdiskParams; Body: ResizeBody }>("/vdisks/:name/resize",
      { schema: { params: vdiskParamsSchema, body: resizeBodySchema } }, async (request, reply) =>
        forward(reply, await storagedriver.resizeVdisk(request.params.name, parseVdiskSizeBytes(request.body.size))));

    app.get<{ Params: VdiskParams }>("/vdisks/:name/config", { schema: { params: vdiskParamsSchema } }, async (request, reply) =>
      forward(reply, await storagedriver.getVdiskConfig(request.params.name)));

    app.put<{ Params: VdiskParams; Body: VdiskConfigBody }>("/vdisks/:name/config",
      { schema: { params: vdiskParamsSchema, body: vdiskConfigBodySchema } }, async (request, reply) =>
        forward(reply, await storagedriver.setVdiskConfig(request.params.name, request.body)));

    app.post<{ Params: VdiskParams }>("/vdisks/:name/scrub",
      { schema: { params: vdiskParamsSchema, body: emptyBodySchema }, preValidation: allowEmptyBody }, async (request, reply) =>
        forward(reply, await storagedriver.scrubVdisk(request.params.name)));
  };
}

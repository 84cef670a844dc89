// /api/vdisks: the framework's vDisk resource. Requests are validated here with the same schemas as
// at the StorageDriver, sizes are turned into bytes, and the call is forwarded; the StorageDriver's
// answer (success or error) goes back to the caller unchanged.
import type { FastifyPluginAsync, FastifyReply } from "fastify";
import { parseVdiskSizeBytes } from "../../../volumedriver/src/storagedriver/size.ts";
import { createVdiskBodySchema, vdiskParamsSchema, type CreateVdiskBody, type VdiskParams } from "../../../volumedriver/src/storagedriver/vdisk-schemas.ts";
import type { StorageDriverClient, StorageDriverResponse } from "./storagedriver-client.ts";

export function vdiskRoutes(storagedriver: StorageDriverClient): FastifyPluginAsync {
  return async (app) => {
    const forward = (reply: FastifyReply, response: StorageDriverResponse): FastifyReply =>
      reply.code(response.statusCode).send(response.body);

    app.post<{ Body: CreateVdiskBody }>("/vdisks", { schema: { body: createVdiskBodySchema } }, async (request, reply) => {
      const sizeBytes = parseVdiskSizeBytes(request.body.size);
      return forward(reply, await storagedriver.createVdisk(request.body.name, sizeBytes));
    });

    app.get("/vdisks", async (_request, reply) => forward(reply, await storagedriver.listVdisks()));

    app.get<{ Params: VdiskParams }>("/vdisks/:name", { schema: { params: vdiskParamsSchema } }, async (request, reply) =>
      forward(reply, await storagedriver.getVdisk(request.params.name)));

    app.delete<{ Params: VdiskParams }>("/vdisks/:name", { schema: { params: vdiskParamsSchema } }, async (request, reply) =>
      forward(reply, await storagedriver.deleteVdisk(request.params.name)));
  };
}

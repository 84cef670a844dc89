// The snapshot side of the vDisk resource: take, list and delete snapshots, roll a vDisk back, make
// it a template, and start a scrub (a background task, answered 202 at once). Clones are made with
// POST /vdisks and a parent (management-api.ts). The engine checks names against what exists and
// refuses conflicts (clones, templates); its VolumeErrors become HTTP answers in http-errors.ts.
import type { FastifyPluginAsync } from "fastify";
import type { VolumeInfo, VPool } from "../engine/vpool-types.ts";
import type { TaskRegistry } from "./task-registry.ts";
import { allowEmptyBody, vdiskNotFound } from "./vdisk-requests.ts";
import {
  createSnapshotBodySchema, emptyBodySchema, rollbackBodySchema, snapshotParamsSchema, vdiskParamsSchema,
  type CreateSnapshotBody, type RollbackBody, type SnapshotParams, type VdiskParams,
} from "./vdisk-schemas.ts";

export function snapshotRoutes(vpool: VPool, tasks: TaskRegistry): FastifyPluginAsync {
  /** The vDisk's info after an operation that may have replaced its Volume object. */
  const infoOf = (name: string): VolumeInfo => {
    const info = vpool.getVolume(name)?.info() ?? vpool.listVolumes().find((listed) => listed.name === name);
    if (info === undefined) throw vdiskNotFound(vpool, name);
    return info;
  };

  return async (app) => {
    app.post<{ Params: VdiskParams; Body: CreateSnapshotBody }>("/vdisks/:name/snapshots",
      { schema: { params: vdiskParamsSchema, body: createSnapshotBodySchema } }, async (request, reply) => {
        const snapshot = await vpool.createSnapshot(request.params.name, request.body.name);
        request.log.info({ vdisk: request.params.name, snapshot: snapshot.name }, "snapshot taken");
        return reply.code(201).send(snapshot);
      });

    app.get<{ Params: VdiskParams }>("/vdisks/:name/snapshots", { schema: { params: vdiskParamsSchema } }, async (request) =>
      ({ snapshots: vpool.listSnapshots(request.params.name) }));

    app.delete<{ Params: SnapshotParams }>("/vdisks/:name/snapshots/:snapshot", { schema: { params: snapshotParamsSchema } }, async (request, reply) => {
      // Refused (Exists) while vDisks are cloned from the snapshot.
      await vpool.deleteSnapshot(request.params.name, request.params.snapshot);
      request.log.info({ vdisk: request.params.name, snapshot: request.params.snapshot }, "snapshot deleted");
      return reply.code(204).send();
    });

    app.post<{ Params: VdiskParams; Body: RollbackBody }>("/vdisks/:name/rollback",
      { schema: { params: vdiskParamsSchema, body: rollbackBodySchema } }, async (request) => {
        const volume = await vpool.rollbackVolume(request.params.name, request.body.snapshot);
        request.log.info({ vdisk: request.params.name, snapshot: request.body.snapshot }, "vDisk rolled back");
        return volume.info();
      });

    app.post<{ Params: VdiskParams }>("/vdisks/:name/template",
      { schema: { params: vdiskParamsSchema, body: emptyBodySchema }, preValidation: allowEmptyBody }, async (request) => {
        await vpool.setTemplate(request.params.name);
        request.log.info({ vdisk: request.params.name }, "vDisk is now a template");
        return infoOf(request.params.name);
      });

    app.post<{ Params: VdiskParams }>("/vdisks/:name/scrub",
      { schema: { params: vdiskParamsSchema, body: emptyBodySchema }, preValidation: allowEmptyBody }, async (request, reply) => {
        const name = request.params.name;
        // A missing vDisk is the caller's mistake, answered now rather than as a failed task.
        infoOf(name);
        const task = tasks.submit("scrub", name, async (reportProgress) => {
          request.log.info({ vdisk: name }, "scrub started");
          const result = await vpool.scrubVolume(name, { onProgress: reportProgress });
          request.log.info({ vdisk: name, result }, "scrub finished");
          return result;
        });
        return reply.code(202).header("location", `/tasks/${task.id}`).send({ task });
      });
  };
}

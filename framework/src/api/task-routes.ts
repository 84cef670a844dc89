// /api/tasks: the background tasks (scrubs) of the StorageDriver, forwarded as it answers them.
import type { FastifyPluginAsync } from "fastify";
import { taskParamsSchema, type TaskParams } from "../../../volumedriver/src/storagedriver/vdisk-schemas.ts";
import type { StorageDriverClient } from "./storagedriver-client.ts";
import { forward } from "./vdisk-routes.ts";

export function taskRoutes(storagedriver: StorageDriverClient): FastifyPluginAsync {
  return async (app) => {
    app.get("/tasks", async (_request, reply) => forward(reply, await storagedriver.listTasks()));

    app.get<{ Params: TaskParams }>("/tasks/:id", { schema: { params: taskParamsSchema } }, async (request, reply) =>
      forward(reply, await storagedriver.getTask(request.params.id)));
  };
}

// /api/tasks: the background tasks of the cluster: the framework's own (creating and deleting vPools,
// kept in the model) and every StorageDriver's (scrubs), forwarded as they answer them.
import type { FastifyPluginAsync } from "fastify";
import { taskParamsSchema, type TaskParams } from "../../../volumedriver/src/storagedriver/vdisk-schemas.ts";
import type { FrameworkTasks } from "./framework-tasks.ts";
import type { StorageDriverClient } from "./storagedriver-client.ts";
import { forward } from "./vdisk-routes.ts";

export function taskRoutes(storagedriver: StorageDriverClient, frameworkTasks?: FrameworkTasks): FastifyPluginAsync {
  return async (app) => {
    app.get("/tasks", async (_request, reply) => {
      const response = await storagedriver.listTasks();
      if (frameworkTasks === undefined || response.statusCode !== 200) return forward(reply, response);
      const storagedriverTasks = (response.body as { tasks?: unknown[] } | undefined)?.tasks ?? [];
      return reply.send({ tasks: [...frameworkTasks.list(), ...storagedriverTasks] });
    });

    app.get<{ Params: TaskParams }>("/tasks/:id", { schema: { params: taskParamsSchema } }, async (request, reply) =>
      frameworkTasks?.get(request.params.id) ?? forward(reply, await storagedriver.getTask(request.params.id)));
  };
}

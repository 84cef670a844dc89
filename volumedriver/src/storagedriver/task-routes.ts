// /tasks: the StorageDriver's background tasks (scrubs), to follow what a 202 answer started.
import type { FastifyPluginAsync } from "fastify";
import { HttpError } from "./http-errors.ts";
import type { TaskRegistry } from "./task-registry.ts";
import { taskParamsSchema, type TaskParams } from "./vdisk-schemas.ts";

export function taskRoutes(tasks: TaskRegistry): FastifyPluginAsync {
  return async (app) => {
    app.get("/tasks", async () => ({ tasks: tasks.list() }));

    app.get<{ Params: TaskParams }>("/tasks/:id", { schema: { params: taskParamsSchema } }, async (request) => {
      const task = tasks.get(request.params.id);
      if (task === undefined) {
        throw new HttpError(404, "NOT_FOUND", `no task ${request.params.id}: tasks live in the StorageDriver's memory (the finished ones for a while) and are gone after a restart; GET /tasks lists them`);
      }
      return task;
    });
  };
}

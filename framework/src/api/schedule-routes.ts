// /api/schedules: the cluster's periodic jobs (scheduler.ts, cluster-jobs.ts): list them with their
// next and last runs, change a schedule or enable/disable a job (kept in config.json by `ovs up`),
// run one now, and read its run history.
import type { FastifyPluginAsync } from "fastify";
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import { JobBusyError, type JobInfo, type Scheduler } from "../scheduler/scheduler.ts";

const RUN_HISTORY_LIMIT_DEFAULT = 50;

interface JobParams { name: string }
interface UpdateBody { schedule?: unknown; enabled?: boolean }

const jobParamsSchema = {
  type: "object", required: ["name"], additionalProperties: false,
  properties: {
    name: {
      type: "string", pattern: "^[a-z][a-z0-9-]{0,62}(@[a-z0-9][a-z0-9_-]{0,62})?$",
      description: "a job name, e.g. snapshots, scrub, alba-maintenance, or a vPool's own run of one, e.g. snapshots@pool2",
    },
  },
} as const;

const updateBodySchema = {
  type: "object", additionalProperties: false, minProperties: 1,
  properties: {
    schedule: { type: "object", description: 'one of {"everyMinutes": 1-10080}, {"hourlyAtMinute": 0-59}, {"dailyAt": {"hour": 0-23, "minute": 0-59}} (UTC)' },
    enabled: { type: "boolean", description: "false stops the job's scheduled runs" },
  },
} as const;

function jobNotFound(scheduler: Scheduler, name: string): HttpError {
  return new HttpError(404, "NOT_FOUND", `no job ${name}: the jobs are ${scheduler.list().map((job) => job.name).join(", ")}`);
}

export function scheduleRoutes(scheduler: Scheduler, onChange?: (job: JobInfo) => Promise<void>): FastifyPluginAsync {
  const known = (name: string): boolean => scheduler.list().some((job) => job.name === name);
  return async (app) => {
    app.get("/schedules", async () => ({ schedules: scheduler.list() }));

    app.put<{ Params: JobParams; Body: UpdateBody }>("/schedules/:name", { schema: { params: jobParamsSchema, body: updateBodySchema } }, async (request) => {
      if (!known(request.params.name)) throw jobNotFound(scheduler, request.params.name);
      let job: JobInfo;
      try {
        job = scheduler.update(request.params.name, request.body);
      } catch (error) {
        throw new HttpError(400, "INVALID_REQUEST", (error as Error).message, { cause: error });
      }
      await onChange?.(job);
      return job;
    });

    app.post<{ Params: JobParams }>("/schedules/:name/run", { schema: { params: jobParamsSchema } }, async (request) => {
      if (!known(request.params.name)) throw jobNotFound(scheduler, request.params.name);
      try {
        return await scheduler.runNow(request.params.name);
      } catch (error) {
        if (error instanceof JobBusyError) throw new HttpError(409, "CONFLICT", error.message, { cause: error });
        throw error;
      }
    });

    app.get<{ Params: JobParams }>("/schedules/:name/runs", { schema: { params: jobParamsSchema } }, async (request) => {
      if (!known(request.params.name)) throw jobNotFound(scheduler, request.params.name);
      return { runs: scheduler.history.list(request.params.name, RUN_HISTORY_LIMIT_DEFAULT) };
    });
  };
}

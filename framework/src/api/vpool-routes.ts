// /api/vpools: the vPools of the cluster with their StorageDrivers (ports, status, NBD and iSCSI
// addresses). Creating one records it and starts its StorageDriver as a task (202 with the task and
// Location: /api/tasks/ID); deleting one stops its StorageDriver and forgets it, also as a task;
// changing its sizes (PATCH) applies them to the running StorageDriver at once.
import type { FastifyPluginAsync } from "fastify";
import { COMPRESSIONS } from "../../../volumedriver/src/backend/chunk-codec.ts";
import type { VPoolSchedules } from "../model/vpool-repository.ts";
import type { FrameworkTaskView } from "./framework-tasks.ts";

/** What the routes need of the cluster (cluster/vpool-control.ts). */
export interface VPoolService {
  list(): unknown[];
  get(name: string): unknown;
  create(input: CreateVPoolBody): Promise<{ vpool: unknown; task: FrameworkTaskView }>;
  delete(name: string): Promise<{ task: FrameworkTaskView }>;
  update(name: string, changes: UpdateVPoolBody): Promise<unknown>;
}

export interface UpdateVPoolBody {
  scoSizeBytes?: number;
  writeBufferSizeBytes?: number;
  readCacheSizeBytes?: number;
  /** Replaces the vPool's schedules whole ({} follows the cluster for all). */
  schedules?: VPoolSchedulesBody;
}

export interface CreateVPoolBody {
  name: string;
  backend: string;
  scoSizeBytes?: number;
  writeBufferSizeBytes?: number;
  readCacheSizeBytes?: number;
  compression?: (typeof COMPRESSIONS)[number];
  encryption?: { keyFile: string } | { keyEnv: string };
  schedules?: VPoolSchedulesBody;
}

/** A vPool's own schedules: a job named runs on its own schedule for this vPool (a spec) or not at all (null); the model checks the specs. */
export type VPoolSchedulesBody = VPoolSchedules;

const SCHEDULE_SPEC_HINT = 'one of {"everyMinutes": 1-10080}, {"hourlyAtMinute": 0-59}, {"dailyAt": {"hour": 0-23, "minute": 0-59}} (UTC), or null: not for this vPool';

const vpoolSchedulesSchema = {
  type: "object", additionalProperties: false,
  properties: {
    snapshots: { type: ["object", "null"], description: `the vPool's own snapshot schedule: ${SCHEDULE_SPEC_HINT}` },
    scrub: { type: ["object", "null"], description: `the vPool's own scrub schedule: ${SCHEDULE_SPEC_HINT}` },
  },
  description: 'the jobs this vPool schedules its own way, like {"snapshots": {"everyMinutes": 15}, "scrub": null}; a job left out follows the cluster\'s schedule (GET /api/schedules)',
} as const;

interface VPoolParams { name: string }

const NAME_SCHEMA = { type: "string", pattern: "^[a-z0-9][a-z0-9_-]{0,62}$", description: "1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit" } as const;

const vpoolParamsSchema = { type: "object", required: ["name"], additionalProperties: false, properties: { name: NAME_SCHEMA } } as const;

export const createVPoolBodySchema = {
  type: "object", required: ["name", "backend"], additionalProperties: false,
  properties: {
    name: { ...NAME_SCHEMA, description: "the vPool's name (also in its iSCSI target name): 1-63 of a-z, 0-9, '_' and '-'" },
    backend: { type: "string", minLength: 1, description: "the backend's name (GET /api/backends)" },
    scoSizeBytes: { type: "integer", description: "size of a storage container object in bytes: 4 MiB to 128 MiB, a multiple of 4096 (default 64 MiB)" },
    writeBufferSizeBytes: { type: "integer", description: "the local write buffer in bytes, at least 2 SCOs (default 1 GiB)" },
    readCacheSizeBytes: { type: "integer", minimum: 0, description: "the read cache in bytes (default 256 MiB)" },
    compression: { type: "string", enum: [...COMPRESSIONS], description: "compression of every object stored (default none)" },
    encryption: {
      type: "object", additionalProperties: false, minProperties: 1, maxProperties: 1,
      description: 'where the AES-256 key is: {"keyFile": "/etc/ovs/vpool.key"} (64 hex digits) or {"keyEnv": "OVS_VPOOL_KEY"}; never the key itself',
      properties: { keyFile: { type: "string", minLength: 1 }, keyEnv: { type: "string", minLength: 1 } },
    },
    schedules: vpoolSchedulesSchema,
  },
} as const;

export const updateVPoolBodySchema = {
  type: "object", additionalProperties: false, minProperties: 1,
  properties: {
    scoSizeBytes: { type: "integer", description: "SCO size of the vDisks created from now on, in bytes: 4 MiB to 128 MiB, a multiple of 4096" },
    writeBufferSizeBytes: { type: "integer", description: "the local write buffer in bytes, at least 2 SCOs" },
    readCacheSizeBytes: { type: "integer", minimum: 0, description: "the read cache in bytes" },
    schedules: vpoolSchedulesSchema,
  },
  description: 'send the settings to change, like {"readCacheSizeBytes": 536870912}; the backend, compression and encryption of a vPool never change (its data is stored that way): create another vPool instead',
} as const;

export function vpoolRoutes(vpools: VPoolService): FastifyPluginAsync {
  return async (app) => {
    app.get("/vpools", { schema: { description: "The vPools with their StorageDrivers" } }, async () => ({ vpools: vpools.list() }));

    app.get<{ Params: VPoolParams }>("/vpools/:name", { schema: { params: vpoolParamsSchema } }, async (request) => vpools.get(request.params.name));

    app.post<{ Body: CreateVPoolBody }>("/vpools", { schema: { body: createVPoolBodySchema, description: "Creates a vPool on a backend and starts its StorageDriver (a task)" } },
      async (request, reply) => {
        const created = await vpools.create(request.body);
        return reply.code(202).header("location", `/api/tasks/${created.task.id}`).send(created);
      });

    app.patch<{ Params: VPoolParams; Body: UpdateVPoolBody }>("/vpools/:name",
      { schema: { params: vpoolParamsSchema, body: updateVPoolBodySchema, description: "Changes a vPool's cache and SCO sizes (its StorageDriver takes them at once, without a restart) and its own schedules" } },
      async (request) => vpools.update(request.params.name, request.body));

    app.delete<{ Params: VPoolParams }>("/vpools/:name", { schema: { params: vpoolParamsSchema, description: "Stops the vPool's StorageDriver and forgets the vPool (a task); refused while it holds vDisks" } },
      async (request, reply) => {
        const deleted = await vpools.delete(request.params.name);
        return reply.code(202).header("location", `/api/tasks/${deleted.task.id}`).send(deleted);
      });
  };
}

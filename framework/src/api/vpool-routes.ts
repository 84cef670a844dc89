// /api/vpools: the vPools of the cluster with their StorageDrivers (ports, status, NBD and iSCSI
// addresses). Creating one records it and starts its StorageDriver as a task (202 with the task and
// Location: /api/tasks/ID); deleting one stops its StorageDriver and forgets it, also as a task.
import type { FastifyPluginAsync } from "fastify";
import { COMPRESSIONS } from "../../../volumedriver/src/backend/chunk-codec.ts";
import type { FrameworkTaskView } from "./framework-tasks.ts";

/** What the routes need of the cluster (cluster/vpool-control.ts). */
export interface VPoolService {
  list(): unknown[];
  get(name: string): unknown;
  create(input: CreateVPoolBody): Promise<{ vpool: unknown; task: FrameworkTaskView }>;
  delete(name: string): Promise<{ task: FrameworkTaskView }>;
}

export interface CreateVPoolBody {
  name: string;
  backend: string;
  scoSizeBytes?: number;
  writeBufferSizeBytes?: number;
  readCacheSizeBytes?: number;
  compression?: (typeof COMPRESSIONS)[number];
  encryption?: { keyFile: string } | { keyEnv: string };
}

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
  },
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

    app.delete<{ Params: VPoolParams }>("/vpools/:name", { schema: { params: vpoolParamsSchema, description: "Stops the vPool's StorageDriver and forgets the vPool (a task); refused while it holds vDisks" } },
      async (request, reply) => {
        const deleted = await vpools.delete(request.params.name);
        return reply.code(202).header("location", `/api/tasks/${deleted.task.id}`).send(deleted);
      });
  };
}

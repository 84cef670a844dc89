// /api/backends: the object stores vPools live on (local, s3, swift, alba), kept in the model.
// Listings never show a secret (only which ones are set). The Alba backend `ovs up` runs is recorded
// as "alba" and marked managed: it cannot be changed or deleted through the API. An Alba backend's
// presets are read, added, changed and deleted through its proxy (Alba keeps them; the model keeps a
// copy in step after Alba has accepted the change); a proxy that does not answer is a 503 that says
// where to look.
import type { FastifyPluginAsync } from "fastify";
import type { Preset, PresetChanges } from "../../../alba/src/preset/preset.ts";
import { isAlbaError } from "../../../alba/src/client/alba-client-api.ts";
import { ProxyClient } from "../../../alba/src/proxy/proxy-client.ts";
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import type { Backend } from "../model/backend-repository.ts";
import { BACKEND_KINDS } from "../model/backend-config.ts";
import { fromModel } from "./model-http.ts";
import type { FrameworkModel } from "../model/framework-model.ts";

export interface BackendsRoutesOptions {
  model: FrameworkModel;
  /** The backend `ovs up` runs itself (by its model name), when it does. */
  managedBackend?: string;
}

interface BackendParams { name: string }
interface PresetParams { name: string; preset: string }
interface CreateBackendBody { name: string; kind: Backend["kind"]; config: Record<string, unknown> }

const NAME_SCHEMA = { type: "string", pattern: "^[a-z0-9][a-z0-9_-]{0,62}$", description: "1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit" } as const;
const backendParamsSchema = { type: "object", required: ["name"], additionalProperties: false, properties: { name: NAME_SCHEMA } } as const;

const CONFIG_DESCRIPTION = 'where the store is and how to log in, by kind: local {"path": "/srv/ovs-backend"}; '
  + 's3 {"endpoint": "http://10.0.0.5:9000", "bucket": "ovs", "accessKeyId": ..., "secretAccessKey": ...}; '
  + 'swift {"authUrl": "http://10.0.0.6:8080/auth/v1.0", "user": ..., "key": ...}; alba {"proxyUrl": "http://10.0.0.7:8600"}. '
  + "Credentials left out come from the StorageDriver's environment.";

const createBackendBodySchema = {
  type: "object", required: ["name", "kind", "config"], additionalProperties: false,
  properties: {
    name: NAME_SCHEMA,
    kind: { type: "string", enum: [...BACKEND_KINDS], description: "local, s3, swift or alba" },
    config: { type: "object", description: CONFIG_DESCRIPTION },
  },
} as const;

const updateBackendBodySchema = {
  type: "object", required: ["config"], additionalProperties: false,
  properties: { config: { type: "object", description: `${CONFIG_DESCRIPTION} Secrets left out keep their stored values.` } },
} as const;

const PRESET_NAME_SCHEMA = { type: "string", pattern: "^[a-z0-9][a-z0-9._-]{0,62}$", description: "1-63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit" } as const;
const presetParamsSchema = {
  type: "object", required: ["name", "preset"], additionalProperties: false,
  properties: { name: NAME_SCHEMA, preset: { ...PRESET_NAME_SCHEMA, description: `the preset's name: ${PRESET_NAME_SCHEMA.description}` } },
} as const;

const POLICY_SCHEMA = {
  type: "object", required: ["k", "m", "c", "x"], additionalProperties: false,
  description: 'e.g. {"k": 4, "m": 2, "c": 5, "x": 2}: k data fragments (1-24) and m parity fragments (0-6) per chunk, c of them (k..k+m) stored for a write to succeed, at most x on one node',
  properties: { k: { type: "integer", minimum: 1 }, m: { type: "integer", minimum: 0 }, c: { type: "integer", minimum: 1 }, x: { type: "integer", minimum: 1 } },
} as const;

const presetBodySchema = {
  type: "object", required: ["name", "policies"], additionalProperties: false,
  properties: {
    name: PRESET_NAME_SCHEMA,
    policies: {
      type: "array", minItems: 1, description: "in order of preference: k data and m parity fragments, c needed for a write, at most x per node",
      items: POLICY_SCHEMA,
    },
    fragmentSizeBytes: { type: "integer", description: "data fragment size: a multiple of 4096 up to 16 MiB (default 1 MiB)" },
    compression: { type: "string", enum: ["none", "lz4", "snappy"] },
    encryption: { type: "string", enum: ["none", "aes-256-ctr"] },
    encryptionKeyHex: { type: "string", pattern: "^[0-9a-fA-F]{64}$", description: "with aes-256-ctr: the key as 64 hex digits (kept by Alba, never shown again)" },
  },
} as const;

/** Fixed fields pass the schema so that Alba, which checks every change, can say what to do instead. */
const FIXED_PRESET_FIELD = "fixed once the preset exists (its objects are read with it): accepted only with its current value; to change it, add a new preset";
const presetChangesBodySchema = {
  type: "object", additionalProperties: false,
  description: 'what changes, e.g. {"policies": [{"k": 4, "m": 2, "c": 5, "x": 2}]} or {"default": true}; give at least one of policies and default',
  properties: {
    policies: {
      type: "array", minItems: 1, items: POLICY_SCHEMA,
      description: "the new policies in order of preference, for objects written from now on; objects already stored keep the policy they were written with",
    },
    default: { type: "boolean", description: "true: make it the preset new namespaces get when none is named (false is refused: make another preset the default instead)" },
    fragmentSizeBytes: { type: "integer", description: FIXED_PRESET_FIELD },
    compression: { type: "string", description: FIXED_PRESET_FIELD },
    encryption: { type: "string", description: FIXED_PRESET_FIELD },
  },
} as const;

type PresetBody = Pick<Preset, "name" | "policies"> & Partial<Pick<Preset, "fragmentSizeBytes" | "compression" | "encryption" | "encryptionKeyHex">>;

export const PRESET_FRAGMENT_SIZE_BYTES_DEFAULT = 1024 * 1024;

export function backendsRoutes(options: BackendsRoutesOptions): FastifyPluginAsync {
  const { model, managedBackend } = options;
  const view = (backend: Backend): Backend & { managed: boolean; vpools: string[] } => ({
    ...backend,
    managed: backend.name === managedBackend,
    vpools: model.vpools.list().filter((vpool) => vpool.backend === backend.name).map((vpool) => vpool.name),
  });
  const refuseManaged = (name: string, action: string): void => {
    if (name === managedBackend) throw new HttpError(409, "CONFLICT", `backend ${name} is the Alba backend ovs up runs: it cannot be ${action} through the API (see config.json)`);
  };
  /** The proxy URL of an Alba backend; 404 for an unknown backend, 400 for other kinds. */
  const proxyUrlOf = (name: string): string => {
    const backend = fromModel(() => model.backends.get(name));
    if (backend.kind !== "alba") throw new HttpError(400, "INVALID_REQUEST", `backend ${name} is a ${backend.kind} backend: only alba backends have presets`);
    return String(backend.config.proxyUrl);
  };
  /** A client of an Alba backend's proxy, for fromProxy (which closes it). */
  const proxyOf = (name: string): { client: ProxyClient; url: string } => {
    const url = proxyUrlOf(name);
    return { client: new ProxyClient(url), url };
  };
  const fromProxy = async <T>(proxy: { client: ProxyClient; url: string }, call: (client: ProxyClient) => Promise<T>): Promise<T> => {
    try {
      return await call(proxy.client);
    } catch (error) {
      if (isAlbaError(error, "Invalid")) throw new HttpError(400, "INVALID_REQUEST", error.message, { cause: error });
      if (isAlbaError(error, "Conflict")) throw new HttpError(409, "CONFLICT", error.message, { cause: error });
      if (isAlbaError(error, "NotFound")) throw new HttpError(404, "NOT_FOUND", error.message, { cause: error });
      throw new HttpError(503, "UNAVAILABLE", `the Alba proxy at ${proxy.url} did not answer (${(error as Error).message}): check that it runs (ovs up restarts the one it runs; see data/logs/alba-proxy.log)`, { cause: error });
    } finally {
      await proxy.client.close().catch(() => undefined);
    }
  };

  return async (app) => {
    app.get("/backends", { schema: { description: "The backends, without secrets" } }, async () => ({ backends: model.backends.list().map(view) }));

    app.post<{ Body: CreateBackendBody }>("/backends", { schema: { body: createBackendBodySchema, description: "Adds a backend a vPool can be created on" } },
      async (request, reply) => reply.code(201).send(view(fromModel(() => model.backends.create(request.body)))));

    app.get<{ Params: BackendParams }>("/backends/:name", { schema: { params: backendParamsSchema } }, async (request) => {
      const backend = view(fromModel(() => model.backends.get(request.params.name)));
      return backend.kind === "alba" ? { ...backend, asds: model.albaAsds.list(backend.name) } : backend;
    });

    app.patch<{ Params: BackendParams; Body: { config: Record<string, unknown> } }>("/backends/:name",
      { schema: { params: backendParamsSchema, body: updateBackendBodySchema, description: "Changes where the backend is or its credentials; its kind and name stay" } },
      async (request) => {
        fromModel(() => model.backends.get(request.params.name));
        refuseManaged(request.params.name, "changed");
        return view(fromModel(() => model.backends.update(request.params.name, request.body)));
      });

    app.delete<{ Params: BackendParams }>("/backends/:name", { schema: { params: backendParamsSchema, description: "Forgets a backend no vPool uses (its data stays where it is)" } },
      async (request, reply) => {
        fromModel(() => model.backends.get(request.params.name));
        refuseManaged(request.params.name, "deleted");
        fromModel(() => model.backends.delete(request.params.name));
        return reply.code(204).send();
      });

    app.get<{ Params: BackendParams }>("/backends/:name/presets", { schema: { params: backendParamsSchema, description: "An Alba backend's presets, from its proxy (no keys)" } },
      async (request) => ({ presets: await fromProxy(proxyOf(request.params.name), (client) => client.listPresets()) }));

    app.post<{ Params: BackendParams; Body: PresetBody }>("/backends/:name/presets",
      { schema: { params: backendParamsSchema, body: presetBodySchema, description: "Adds a preset to an Alba backend (through its proxy)" } },
      async (request, reply) => {
        const proxy = proxyOf(request.params.name);
        const preset: Preset = {
          name: request.body.name, policies: request.body.policies,
          fragmentSizeBytes: request.body.fragmentSizeBytes ?? PRESET_FRAGMENT_SIZE_BYTES_DEFAULT,
          compression: request.body.compression ?? "none", encryption: request.body.encryption ?? "none", checksum: "crc32c",
          ...(request.body.encryptionKeyHex === undefined ? {} : { encryptionKeyHex: request.body.encryptionKeyHex }),
        };
        await fromProxy(proxy, (client) => client.addPreset(preset));
        // The model's copy follows Alba's (a copy recorded earlier is replaced).
        const { name: _name, ...settings } = preset;
        const recorded = fromModel(() => (model.albaPresets.list(request.params.name).some((known) => known.name === preset.name)
          ? model.albaPresets.update(request.params.name, preset.name, settings)
          : model.albaPresets.create(request.params.name, preset)));
        request.log.info({ backend: request.params.name, preset: preset.name }, "preset added");
        return reply.code(201).send(recorded);
      });

    app.patch<{ Params: PresetParams; Body: PresetChanges }>("/backends/:name/presets/:preset",
      {
        schema: {
          params: presetParamsSchema, body: presetChangesBodySchema,
          description: "Changes an Alba preset's policies and/or makes it the default (through its proxy); its fragment size and codecs never change",
        },
      },
      async (request) => {
        const { name, preset } = request.params;
        const updated = await fromProxy(proxyOf(name), (client) => client.updatePreset(preset, request.body));
        // The model's copy (when it has one: presets added outside the API may have none) takes
        // Alba's policies, as Alba validated and stored them.
        if (request.body.policies !== undefined) {
          fromModel(() => {
            if (model.albaPresets.list(name).some((known) => known.name === preset)) model.albaPresets.update(name, preset, { policies: updated.policies });
          });
        }
        request.log.info({ backend: name, preset, policies: updated.policies, madeDefault: request.body.default === true }, "preset changed");
        return updated;
      });

    app.delete<{ Params: PresetParams }>("/backends/:name/presets/:preset",
      { schema: { params: presetParamsSchema, description: "Deletes an Alba preset that no namespace uses, that is not Alba's default and that the backend's config does not name" } },
      async (request, reply) => {
        const { name, preset } = request.params;
        proxyUrlOf(name);
        // Asked before Alba deletes it, so a refusal leaves Alba and the model as they were.
        fromModel(() => model.albaPresets.requireDeletable(name, preset));
        await fromProxy(proxyOf(name), (client) => client.deletePreset(preset));
        fromModel(() => {
          if (model.albaPresets.list(name).some((known) => known.name === preset)) model.albaPresets.delete(name, preset);
        });
        request.log.info({ backend: name, preset }, "preset deleted");
        return reply.code(204).send();
      });
  };
}

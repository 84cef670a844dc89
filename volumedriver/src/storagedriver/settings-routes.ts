// GET/PATCH /settings: the running vPool's settings, changed without a restart (the write buffer and
// read cache resize, every vDisk takes the new values). This API does not persist them: the
// framework records them in its model (and config.json for the host's first vPool) and passes them
// again when it starts the StorageDriver. Not proxied under /api: the framework changes a vPool's
// settings with PATCH /api/vpools/:name.
import type { FastifyPluginAsync } from "fastify";
import { LIVE_VPOOL_SETTINGS } from "../engine/vpool.ts";
import type { VPool, VPoolSettings } from "../engine/vpool-types.ts";

export type VPoolSettingsBody = Partial<Pick<VPoolSettings, (typeof LIVE_VPOOL_SETTINGS)[number]>>;

const SETTING_HINTS: Record<(typeof LIVE_VPOOL_SETTINGS)[number], string> = {
  scoSizeBytes: "scoSizeBytes: SCO size of vDisks created from now on, 4 MiB-128 MiB, a multiple of 4096",
  scoMaxAgeMs: "scoMaxAgeMs: milliseconds before a SCO holding data is sealed and uploaded (10-3600000)",
  tlogScoCountMax: "tlogScoCountMax: SCOs per TLog before it is rolled (1-1024)",
  writeBufferSizeBytes: "writeBufferSizeBytes: the local write buffer in bytes, at least 2 SCOs",
  writeBufferTriggerGapBytes: "writeBufferTriggerGapBytes: uploaded SCOs are evicted when less room than this is left (at most half the buffer; default 1/8)",
  readCacheSizeBytes: "readCacheSizeBytes: the in-memory read cache in bytes (0: none)",
  uploadConcurrency: "uploadConcurrency: objects each vDisk uploads at once (1-64)",
  prefetchClusters: "prefetchClusters: 4 KiB clusters read ahead once reads are sequential (0-65536)",
  scrubLiveFractionKeep: "scrubLiveFractionKeep: a scrub rewrites SCOs with less than this fraction live (0-1)",
  scrubGracePeriodMs: "scrubGracePeriodMs: how long objects a scrub replaced are kept for readers (0-604800000)",
};

export const vpoolSettingsBodySchema = {
  type: "object",
  additionalProperties: false,
  minProperties: 1,
  properties: Object.fromEntries(LIVE_VPOOL_SETTINGS.map((key) =>
    [key, { type: key === "scrubLiveFractionKeep" ? "number" : "integer", description: SETTING_HINTS[key] }])),
  description: `send a JSON object with the settings to change, like {"readCacheSizeBytes": 536870912}; the keys: ${LIVE_VPOOL_SETTINGS.join(", ")}`,
} as const;

export function settingsRoutes(vpool: VPool): FastifyPluginAsync {
  return async (app) => {
    app.get("/settings", async () => ({ vpool: vpool.name, settings: { ...vpool.settings } }));

    app.patch<{ Body: VPoolSettingsBody }>("/settings", { schema: { body: vpoolSettingsBodySchema } }, async (request) => {
      const settings = vpool.updateSettings(request.body);
      request.log.info({ changes: request.body }, "vPool settings changed");
      return { vpool: vpool.name, settings };
    });
  };
}

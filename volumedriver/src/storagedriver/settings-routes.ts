// GET/PATCH /settings: the running vPool's settings, changed without a restart (the write buffer and
// read cache resize, every vDisk takes the new values). This API does not persist them: the
// framework records them in its model (and config.json for the host's first vPool) and passes them
// again when it starts the StorageDriver. Not proxied under /api: the framework changes a vPool's
// settings with PATCH /api/vpools/:name.
import type { FastifyPluginAsync } from "fastify";
import { LIVE_VPOOL_SETTINGS } from "../engine/vpool.ts";
import type { VPool, VPoolSettings } from "../engine/vpool-types.ts";
import { SETTING_HINTS } from "./vdisk-schemas.ts";

export type VPoolSettingsBody = Partial<Pick<VPoolSettings, (typeof LIVE_VPOOL_SETTINGS)[number]>>;

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

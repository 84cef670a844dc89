// An Alba backend on one host is a directory holding its metadata store (metadata.sqlite):
// claimed ASDs, presets, namespaces and manifests. createAlbaBackend makes one, with a default
// preset that new namespaces get; it is idempotent, so scripts may run it on every start.
import { mkdir } from "node:fs/promises";
import { metadataPathOf } from "../client/alba-client.ts";
import { AlbaError } from "../client/alba-client-api.ts";
import { SqliteMetadataStore } from "../metadata/sqlite-metadata-store.ts";
import { defaultPreset, validatePreset } from "../preset/preset-validation.ts";
import type { Preset } from "../preset/preset.ts";

export interface CreateAlbaBackendOptions {
  /** Name of the default preset (default "default"), used with `preset` or for the built-in default. */
  presetName?: string;
  /** The default preset itself (validated); the built-in (4,2,5,2)/(2,2,3,4) one when absent. */
  preset?: Preset;
}

export interface AlbaBackendInfo {
  metadataPath: string;
  defaultPresetName: string;
  /** False when the backend existed already (nothing changed). */
  created: boolean;
}

/** Creates DIR/metadata.sqlite with a default preset, or returns what is there already. */
export async function createAlbaBackend(directory: string, options: CreateAlbaBackendOptions = {}): Promise<AlbaBackendInfo> {
  await mkdir(directory, { recursive: true });
  const metadataPath = metadataPathOf(directory);
  const metadata = SqliteMetadataStore.open(metadataPath);
  try {
    const existing = metadata.defaultPresetName();
    if (existing !== undefined) return { metadataPath, defaultPresetName: existing, created: false };
    const preset = options.preset === undefined ? defaultPreset(options.presetName) : validatePreset({ ...options.preset, ...(options.presetName === undefined ? {} : { name: options.presetName }) });
    if (metadata.getPreset(preset.name) === undefined) metadata.addPreset(preset);
    else if (JSON.stringify(metadata.getPreset(preset.name)) !== JSON.stringify(preset)) {
      throw new AlbaError("Conflict", `preset ${preset.name} exists with different settings`);
    }
    metadata.setDefaultPreset(preset.name);
    return { metadataPath, defaultPresetName: preset.name, created: true };
  } finally {
    metadata.close();
  }
}

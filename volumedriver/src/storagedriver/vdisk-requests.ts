// Requests of the vDisk API decoded beyond what their JSON schemas say (vdisk-schemas.ts), shared by
// the StorageDriver API and the framework API so that both edges refuse the same requests.
import { VolumeError } from "../engine/block-device.ts";
import type { VPool } from "../engine/vpool-types.ts";
import { HttpError } from "./http-errors.ts";
import { parseVdiskSizeBytes } from "./size.ts";
import { CLONE_PARENT_HINT, SNAPSHOT_SEPARATOR, VDISK_SIZE_HINT, type CreateVdiskBody } from "./vdisk-schemas.ts";

/**
 * A preValidation hook for POSTs that take no body: a request without one is validated as {}, so
 * `curl -X POST URL` works while a body with fields is still refused by emptyBodySchema.
 */
export function allowEmptyBody(request: { body: unknown }, _reply: unknown, done: () => void): void {
  request.body ??= {};
  done();
}

export interface CloneSource {
  volume: string;
  /** Absent: the source is a template and its latest snapshot is cloned. */
  snapshot?: string;
}

/** "disk1@snap1" → {volume: "disk1", snapshot: "snap1"}; "tmpl" → {volume: "tmpl"}. The text matched cloneParentSchema. */
export function parseCloneParent(parent: string): CloneSource {
  const separator = parent.indexOf(SNAPSHOT_SEPARATOR);
  return separator < 0 ? { volume: parent } : { volume: parent.slice(0, separator), snapshot: parent.slice(separator + 1) };
}

/** What a valid POST /vdisks body asks for. */
export type CreateVdiskRequest =
  | { kind: "create"; name: string; sizeBytes: number }
  | { kind: "clone"; name: string; from: CloneSource; sizeBytes?: number };

/**
 * The checks of a POST /vdisks body that a JSON schema cannot say clearly: a size, or a parent, is
 * needed. Throws HttpError 400 or SizeError; both edges call it, so both refuse the same bodies.
 */
export function decodeCreateVdiskBody(body: CreateVdiskBody): CreateVdiskRequest {
  const sizeBytes = body.size === undefined ? undefined : parseVdiskSizeBytes(body.size);
  if (body.parent !== undefined) {
    return { kind: "clone", name: body.name, from: parseCloneParent(body.parent), ...(sizeBytes === undefined ? {} : { sizeBytes }) };
  }
  if (sizeBytes === undefined) {
    throw new HttpError(400, "INVALID_REQUEST", `body must have the field "size": ${VDISK_SIZE_HINT} (or the field "parent" to clone: ${CLONE_PARENT_HINT})`);
  }
  return { kind: "create", name: body.name, sizeBytes };
}

/** The body the framework forwards to the StorageDriver: the size in bytes, the parent as given. */
export function encodeCreateVdiskBody(request: CreateVdiskRequest): CreateVdiskBody {
  if (request.kind === "create") return { name: request.name, size: request.sizeBytes };
  const parent = request.from.snapshot === undefined ? request.from.volume : `${request.from.volume}${SNAPSHOT_SEPARATOR}${request.from.snapshot}`;
  return { name: request.name, parent, ...(request.sizeBytes === undefined ? {} : { size: request.sizeBytes }) };
}

/** The error for a vDisk name that names no vDisk of the vPool (404 NOT_FOUND). */
export function vdiskNotFound(vpool: VPool, name: string): VolumeError {
  return new VolumeError("NotFound", `no vDisk named ${name} in vPool ${vpool.name}`);
}

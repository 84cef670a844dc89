// HTTP client of a StorageDriver's management API, used by the framework API (which forwards the
// StorageDriver's answers as they are) and by `ovs up`. A StorageDriver that cannot be reached is an
// operating error (it may be restarting): HttpError 503 UNAVAILABLE, with what to do.
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import type { CreateVdiskBody, VdiskConfigBody } from "../../../volumedriver/src/storagedriver/vdisk-schemas.ts";

/** Management calls are small, but creating or deleting a vDisk touches the backend. */
export const STORAGEDRIVER_REQUEST_TIMEOUT_MS = 60_000;

export interface StorageDriverResponse {
  statusCode: number;
  /** Parsed JSON body; undefined for an empty body (204). */
  body: unknown;
  /** The Location header (a started task: /tasks/ID), when there is one. */
  location?: string;
}

export class StorageDriverClient {
  /** Changes when the StorageDriver restarts on another port. */
  baseUrl: string;
  readonly vpool: string;
  readonly logHint: string;
  private readonly requestTimeoutMs: number;

  /** logHint: where to look when the StorageDriver is down, e.g. its log file. */
  constructor(options: { vpool: string; baseUrl: string; logHint: string; requestTimeoutMs?: number }) {
    this.vpool = options.vpool;
    this.baseUrl = options.baseUrl;
    this.logHint = options.logHint;
    this.requestTimeoutMs = options.requestTimeoutMs ?? STORAGEDRIVER_REQUEST_TIMEOUT_MS;
  }

  async request(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", pathname: string, body?: unknown): Promise<StorageDriverResponse> {
    const url = `${this.baseUrl}${pathname}`;
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      text = await response.text();
    } catch (error) {
      const reason = describeFetchError(error);
      throw new HttpError(503, "UNAVAILABLE", `the StorageDriver of vPool ${this.vpool} at ${this.baseUrl} is not reachable (${reason}): it may be restarting; retry in a few seconds, and see ${this.logHint} if it persists`, { cause: error });
    }
    const location = response.headers.get("location") ?? undefined;
    const answer = { statusCode: response.status, ...(location === undefined ? {} : { location }) };
    if (text.length === 0) {
      return { ...answer, body: undefined };
    }
    try {
      return { ...answer, body: JSON.parse(text) as unknown };
    } catch (error) {
      throw new HttpError(502, "BAD_GATEWAY", `the StorageDriver of vPool ${this.vpool} answered ${method} ${pathname} with something that is not JSON: see ${this.logHint}`, { cause: error });
    }
  }

  createVdisk(name: string, sizeBytes: number): Promise<StorageDriverResponse> {
    return this.createVdiskFrom({ name, size: sizeBytes });
  }

  /** A new vDisk ({name, size}) or a clone ({name, parent}). */
  createVdiskFrom(body: CreateVdiskBody): Promise<StorageDriverResponse> {
    return this.request("POST", "/vdisks", body);
  }

  /** A new vDisk or clone in `vpool` (undefined: this StorageDriver's); StorageDriverRouter picks among vPools. */
  async createVdiskIn(vpool: string | undefined, body: CreateVdiskBody): Promise<StorageDriverResponse> {
    if (vpool !== undefined && vpool !== this.vpool) {
      throw new HttpError(404, "NOT_FOUND", `no running vPool named ${vpool}: list the vPools (GET /api/vpools, \`ovs vpool ls\`) to check the name`);
    }
    return this.createVdiskFrom(body);
  }

  listVdisks(): Promise<StorageDriverResponse> {
    return this.request("GET", "/vdisks");
  }

  getVdisk(name: string): Promise<StorageDriverResponse> {
    return this.request("GET", vdiskPath(name));
  }

  deleteVdisk(name: string): Promise<StorageDriverResponse> {
    return this.request("DELETE", vdiskPath(name));
  }

  createSnapshot(vdisk: string, snapshot: string): Promise<StorageDriverResponse> {
    return this.request("POST", `${vdiskPath(vdisk)}/snapshots`, { name: snapshot });
  }

  listSnapshots(vdisk: string): Promise<StorageDriverResponse> {
    return this.request("GET", `${vdiskPath(vdisk)}/snapshots`);
  }

  deleteSnapshot(vdisk: string, snapshot: string): Promise<StorageDriverResponse> {
    return this.request("DELETE", `${vdiskPath(vdisk)}/snapshots/${encodeURIComponent(snapshot)}`);
  }

  rollbackVdisk(vdisk: string, snapshot: string): Promise<StorageDriverResponse> {
    return this.request("POST", `${vdiskPath(vdisk)}/rollback`, { snapshot });
  }

  setTemplate(vdisk: string): Promise<StorageDriverResponse> {
    return this.request("POST", `${vdiskPath(vdisk)}/template`, {});
  }

  /** Grows the vDisk to sizeBytes (200 with its details). */
  resizeVdisk(vdisk: string, sizeBytes: number): Promise<StorageDriverResponse> {
    return this.request("POST", `${vdiskPath(vdisk)}/resize`, { size: sizeBytes });
  }

  /** {overrides, settings}: what the vDisk overrides and the settings it runs with. */
  getVdiskConfig(vdisk: string): Promise<StorageDriverResponse> {
    return this.request("GET", `${vdiskPath(vdisk)}/config`);
  }

  /** Replaces the vDisk's overrides ({} follows the vPool for all). */
  setVdiskConfig(vdisk: string, overrides: VdiskConfigBody): Promise<StorageDriverResponse> {
    return this.request("PUT", `${vdiskPath(vdisk)}/config`, overrides);
  }

  /** Changes the running vPool's settings (PATCH /settings: 200 {vpool, settings}). */
  updateSettings(settings: Record<string, number>): Promise<StorageDriverResponse> {
    return this.request("PATCH", "/settings", settings);
  }

  /** Starts a scrub: 202 {task}, followed with getTask. */
  scrubVdisk(vdisk: string): Promise<StorageDriverResponse> {
    return this.request("POST", `${vdiskPath(vdisk)}/scrub`, {});
  }

  listTasks(): Promise<StorageDriverResponse> {
    return this.request("GET", "/tasks");
  }

  getTask(id: string): Promise<StorageDriverResponse> {
    return this.request("GET", `/tasks/${encodeURIComponent(id)}`);
  }

  health(): Promise<StorageDriverResponse> {
    return this.request("GET", "/health");
  }
}

function vdiskPath(name: string): string {
  return `/vdisks/${encodeURIComponent(name)}`;
}

/** "connect ECONNREFUSED 127.0.0.1:8510", "timed out after 60000 ms": fetch hides the cause one level down. */
export function describeFetchError(error: unknown): string {
  if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return "no answer in time";
  }
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  if (cause instanceof Error) {
    return cause.message;
  }
  return error instanceof Error ? error.message : String(error);
}

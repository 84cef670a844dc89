// The framework's view of every vPool's StorageDriver as one: a vDisk request goes to the
// StorageDriver of the vPool that holds the vDisk, listings are merged, a new vDisk goes to the vPool
// asked for (or the first one), a clone to its parent's vPool. vDisk names are unique in the
// cluster (the framework refuses a name another vPool has). Which vPool holds a vDisk is remembered
// from listings and creations, and looked up again (by listing every vPool) when a name is not known.
// With one vPool every request simply goes to its StorageDriver.
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import { parseCloneParent } from "../../../volumedriver/src/storagedriver/vdisk-requests.ts";
import type { CreateVdiskBody } from "../../../volumedriver/src/storagedriver/vdisk-schemas.ts";
import { StorageDriverClient, type StorageDriverResponse } from "./storagedriver-client.ts";

export class StorageDriverRouter extends StorageDriverClient {
  private readonly clients = new Map<string, StorageDriverClient>();
  /** vDisk name → vPool, as last seen. */
  private readonly owners = new Map<string, string>();
  private readonly primary: StorageDriverClient;
  /** Told what each vPool listed, whenever the vDisks are listed (the model mirrors them). */
  onVdisksListed: ((vpool: string, vdisks: unknown[]) => void) | undefined;

  /** `primary`: the vPool that gets new vDisks when none is named, and requests no vPool claims. */
  constructor(primary: StorageDriverClient) {
    super({ vpool: primary.vpool, baseUrl: primary.baseUrl, logHint: primary.logHint });
    this.primary = primary;
    this.clients.set(primary.vpool, primary);
  }

  add(client: StorageDriverClient): void {
    this.clients.set(client.vpool, client);
  }

  remove(vpool: string): void {
    if (vpool === this.primary.vpool) throw new Error(`vPool ${vpool} is the first vPool: it cannot be removed`);
    this.clients.delete(vpool);
    for (const [vdisk, owner] of this.owners) if (owner === vpool) this.owners.delete(vdisk);
  }

  /** The StorageDrivers, the first vPool's first. */
  list(): StorageDriverClient[] {
    return [...this.clients.values()];
  }

  client(vpool: string): StorageDriverClient | undefined {
    return this.clients.get(vpool);
  }

  /** A new vDisk in `vpool` (default: the first vPool), or a clone in its parent's vPool. */
  override async createVdiskIn(vpool: string | undefined, body: CreateVdiskBody): Promise<StorageDriverResponse> {
    let target: StorageDriverClient;
    if (body.parent !== undefined) {
      const parentVpool = (await this.ownerOf(parseCloneParent(body.parent).volume)) ?? this.primary.vpool;
      if (vpool !== undefined && vpool !== parentVpool) {
        throw new HttpError(400, "INVALID_REQUEST", `a clone lives in its parent's vPool ${parentVpool}, not ${vpool}: leave out vpool`);
      }
      target = this.clients.get(parentVpool) ?? this.primary;
    } else {
      target = vpool === undefined ? this.primary : this.requireClient(vpool);
    }
    const existing = await this.ownerOf(body.name);
    if (existing !== undefined && existing !== target.vpool) {
      throw new HttpError(409, "CONFLICT", `a vDisk named ${body.name} exists in vPool ${existing}: vDisk names are unique in the cluster, choose another`);
    }
    const response = await target.createVdiskFrom(body);
    if (response.statusCode === 201) this.owners.set(body.name, target.vpool);
    return response;
  }

  override async request(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", pathname: string, body?: unknown): Promise<StorageDriverResponse> {
    const [resource, encodedName] = pathname.split("/").slice(1);
    if (resource === "vdisks" && encodedName === undefined) {
      if (method === "GET") return this.merged("/vdisks", "vdisks");
      return this.createVdiskIn(undefined, body as CreateVdiskBody);
    }
    if (resource === "vdisks") {
      const name = decodeURIComponent(encodedName);
      const target = this.clients.get((await this.ownerOf(name)) ?? this.primary.vpool) ?? this.primary;
      const response = await target.request(method, pathname, body);
      if (method === "DELETE" && pathname === `/vdisks/${encodedName}` && response.statusCode < 300) this.owners.delete(name);
      return response;
    }
    if (resource === "tasks" && encodedName === undefined) return this.merged("/tasks", "tasks");
    if (resource === "tasks") return this.firstFound(method, pathname);
    return this.primary.request(method, pathname, body);
  }

  private requireClient(vpool: string): StorageDriverClient {
    const client = this.clients.get(vpool);
    if (client === undefined) {
      throw new HttpError(404, "NOT_FOUND", `no running vPool named ${vpool}: list the vPools (GET /api/vpools, \`ovs vpool ls\`) to check the name`);
    }
    return client;
  }

  /** The vPool holding `vdisk`, listing every vPool when it is not known; undefined when none does. */
  private async ownerOf(vdisk: string): Promise<string | undefined> {
    if (this.clients.size === 1) return this.primary.vpool;
    const known = this.owners.get(vdisk);
    if (known !== undefined && this.clients.has(known)) return known;
    await this.merged("/vdisks", "vdisks");
    return this.owners.get(vdisk);
  }

  /** GET `pathname` of every StorageDriver, their `field` arrays joined; the first failure is the answer. */
  private async merged(pathname: string, field: "vdisks" | "tasks"): Promise<StorageDriverResponse> {
    const clients = this.list();
    const responses = await Promise.all(clients.map((client) => client.request("GET", pathname)));
    if (field === "vdisks") {
      responses.forEach((response, index) => {
        const listed = (response.body as { vdisks?: unknown[] } | undefined)?.vdisks;
        if (response.statusCode === 200 && listed !== undefined) this.onVdisksListed?.(clients[index].vpool, listed);
      });
    }
    const failed = responses.find((response) => response.statusCode !== 200);
    if (failed !== undefined) return failed;
    const items = responses.flatMap((response) => ((response.body as Record<string, unknown[]> | undefined)?.[field] ?? []));
    if (field === "vdisks") {
      for (const item of items as Array<{ name?: string; vpool?: string }>) {
        if (item.name !== undefined && item.vpool !== undefined) this.owners.set(item.name, item.vpool);
      }
    }
    return { statusCode: 200, body: { [field]: items } };
  }

  /** The first StorageDriver's answer that is not 404 (a task lives on one of them), else the primary's 404. */
  private async firstFound(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", pathname: string): Promise<StorageDriverResponse> {
    const responses = await Promise.all(this.list().map((client) => client.request(method, pathname)));
    return responses.find((response) => response.statusCode !== 404) ?? responses[0];
  }
}

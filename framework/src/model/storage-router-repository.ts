// StorageRouters: the hosts that run storage services. A StorageRouter cannot be deleted while a
// StorageDriver runs on it (remove the vPool from it first).
import { isIP } from "node:net";
import { requireName, requireOnlyKeys, requireRecord, requireString } from "./field-checks.ts";
import { deleteUnreferenced, insertUnique, type ModelContext } from "./model-context.ts";
import { conflict, invalid, notFound } from "./model-error.ts";

export interface StorageRouter {
  name: string;
  /** Host name as the operator knows it. */
  host: string;
  /** IPv4 or IPv6 address the other hosts reach it on; unique. */
  ip: string;
  createdAt: string;
}

export type StorageRouterInput = Pick<StorageRouter, "name" | "host" | "ip">;

interface StorageRouterRow { name: string; host: string; ip: string; created_at: string }

const HOST_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/;

function toStorageRouter(row: StorageRouterRow): StorageRouter {
  return { name: row.name, host: row.host, ip: row.ip, createdAt: row.created_at };
}

function checkStorageRouter(input: unknown): StorageRouterInput {
  const raw = requireRecord(input, "storage router");
  requireOnlyKeys(raw, ["name", "host", "ip"], "storage router");
  const host = requireString(raw.host, "storage router host", 253);
  if (!HOST_PATTERN.test(host)) throw invalid(`storage router host must be a host name like "node-1.example.com", got ${JSON.stringify(host)}`);
  if (typeof raw.ip !== "string" || isIP(raw.ip) === 0) throw invalid(`storage router ip must be an IPv4 or IPv6 address, got ${JSON.stringify(raw.ip)}`);
  return { name: requireName(raw.name, "storage router name"), host, ip: raw.ip };
}

export class StorageRouters {
  constructor(private readonly context: ModelContext) {}

  create(input: StorageRouterInput): StorageRouter {
    const router = checkStorageRouter(input);
    this.checkIpFree(router.ip, router.name);
    insertUnique(
      () => this.context.database.prepare("INSERT INTO storage_routers (name, host, ip, created_at) VALUES (?, ?, ?, ?)")
        .run(router.name, router.host, router.ip, this.context.nowIso()),
      `a storage router named ${router.name} exists already: choose another name`,
    );
    return this.get(router.name);
  }

  get(name: string): StorageRouter {
    const row = this.context.database.prepare("SELECT * FROM storage_routers WHERE name = ?").get(name) as StorageRouterRow | undefined;
    if (row === undefined) throw notFound(`no storage router named ${name}: list them to check the name`);
    return toStorageRouter(row);
  }

  list(): StorageRouter[] {
    return (this.context.database.prepare("SELECT * FROM storage_routers ORDER BY name").all() as StorageRouterRow[]).map(toStorageRouter);
  }

  /** Changes host and ip; the name never changes. */
  update(name: string, changes: Partial<Omit<StorageRouterInput, "name">>): StorageRouter {
    const current = this.get(name);
    requireOnlyKeys(requireRecord(changes, "storage router changes"), ["host", "ip"], "storage router changes");
    const router = checkStorageRouter({ name, host: changes.host ?? current.host, ip: changes.ip ?? current.ip });
    this.checkIpFree(router.ip, name);
    this.context.database.prepare("UPDATE storage_routers SET host = ?, ip = ? WHERE name = ?").run(router.host, router.ip, name);
    return this.get(name);
  }

  delete(name: string): void {
    this.get(name);
    const drivers = this.context.database.prepare("SELECT vpool FROM storagedrivers WHERE storage_router = ? ORDER BY vpool").pluck().all(name) as string[];
    if (drivers.length > 0) {
      throw conflict(`storage router ${name} runs StorageDrivers of the vPools ${drivers.join(", ")}: remove those vPools from it first`);
    }
    deleteUnreferenced(
      () => this.context.database.prepare("DELETE FROM storage_routers WHERE name = ?").run(name),
      `storage router ${name} still runs StorageDrivers: remove the vPools from it first`,
    );
  }

  /** Two routers on one address would make every port check meaningless. */
  private checkIpFree(ip: string, name: string): void {
    const holder = this.context.database.prepare("SELECT name FROM storage_routers WHERE ip = ? AND name <> ?").pluck().get(ip, name) as string | undefined;
    if (holder !== undefined) throw conflict(`storage router ${holder} has the address ${ip} already: give each storage router its own address`);
  }
}

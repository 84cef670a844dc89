// Goal: one place that starts an iSCSI server on a free loopback port over MemoryScsiTarget doubles
// (the transport's tests do not need the SCSI layer), and stops it and every test initiator again.
import pino from "pino";
import { IscsiTargetMap, startIscsiServer, vpoolTargetName } from "../../../../volumedriver/src/frontends/iscsi/iscsi-server.ts";
import type { IscsiServer, IscsiServerSettings, IscsiTargetEntry } from "../../../../volumedriver/src/frontends/iscsi/iscsi-types.ts";
import { MemoryScsiTarget } from "./iscsi-memory-target.ts";
import { IscsiTestInitiator } from "./iscsi-test-initiator.ts";

export const TARGET_NAME = vpoolTargetName("pool");

export interface IscsiFixture {
  server: IscsiServer;
  registry: IscsiTargetMap;
  target: MemoryScsiTarget;
  port: number;
  /** A connected test initiator, closed by close(). */
  connect(): Promise<IscsiTestInitiator>;
  close(): Promise<void>;
}

export function transportTestLogger(): pino.Logger {
  return pino({ level: process.env.ISCSI_TEST_LOG ?? "silent" });
}

export async function startIscsiFixture(
  settings: Partial<IscsiServerSettings> = {},
  entry: Partial<IscsiTargetEntry> = {},
): Promise<IscsiFixture> {
  const registry = new IscsiTargetMap();
  const target = new MemoryScsiTarget([0, 1]);
  registry.add({ name: TARGET_NAME, alias: "pool", scsiTarget: target, ...entry });
  const server = await startIscsiServer(registry, { host: "127.0.0.1", port: 0, logger: transportTestLogger(), ...settings },
    { randomBytes: undefined });
  const initiators: IscsiTestInitiator[] = [];
  return {
    server, registry, target, port: server.port,
    connect: async () => {
      const initiator = await IscsiTestInitiator.connect(server.port);
      initiators.push(initiator);
      return initiator;
    },
    close: async () => {
      for (const initiator of initiators) initiator.close();
      target.releaseHeld();
      await server.close();
    },
  };
}

// The identity of an ASD directory: DIR/asd.json (format in alba/docs/asd-format.md), made on the
// first run with a random ASD id and the node id (fault domain) it was started with, which must
// never change afterwards.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";

export const ASD_IDENTITY_FILE = "asd.json";
const ASD_IDENTITY_FORMAT = "ovs-asd";
const ASD_IDENTITY_VERSION = 1;
const ASD_ID_PATTERN = /^[0-9a-f]{32}$/;

export interface AsdIdentity {
  format: string;
  version: number;
  asdId: string;
  nodeId: string;
  createdAt: string;
}

/** Reads DIR/asd.json, or creates it (fsynced, via a temp name) on the first run. */
export function loadOrCreateIdentity(directory: string, nodeId: string): AsdIdentity {
  if (typeof nodeId !== "string" || nodeId === "" || nodeId.length > 128) throw new Error("a node id is 1-128 characters");
  const file = path.join(directory, ASD_IDENTITY_FILE);
  let text: string | undefined;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if (!isErrorCode(error, "ENOENT")) throw error;
  }
  if (text !== undefined) {
    const identity = JSON.parse(text) as AsdIdentity;
    if (identity.format !== ASD_IDENTITY_FORMAT || identity.version !== ASD_IDENTITY_VERSION || !ASD_ID_PATTERN.test(identity.asdId)) {
      throw new Error(`${file} is not an ASD identity file of version ${ASD_IDENTITY_VERSION}`);
    }
    if (identity.nodeId !== nodeId) {
      // The node id is the fault domain Alba spreads fragments over; silently changing it would break
      // the spread of every object already stored here.
      throw new Error(`${directory} belongs to ASD ${identity.asdId} of node ${identity.nodeId}, not node ${nodeId}`);
    }
    return identity;
  }
  const identity: AsdIdentity = {
    format: ASD_IDENTITY_FORMAT, version: ASD_IDENTITY_VERSION, asdId: randomBytes(16).toString("hex"), nodeId,
    createdAt: new Date().toISOString(),
  };
  const temporary = `${file}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(identity, null, 2)}\n`);
  fsyncPath(temporary);
  renameSync(temporary, file);
  fsyncPath(directory);
  return identity;
}

function isErrorCode(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === code;
}

function fsyncPath(file: string): void {
  const descriptor = openSync(file, "r");
  try {
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
}

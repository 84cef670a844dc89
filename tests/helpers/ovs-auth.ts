// Tests of a running `ovs up` log in as its admin: the password is in DATA/admin-credentials.json
// (mode 0600, written on the first start). useAdminToken also puts the token in OVS_TOKEN, which
// every `ovs` CLI child of the test process inherits; forgetToken clears it again.
import { readFile } from "node:fs/promises";
import path from "node:path";

export async function adminToken(apiUrl: string, dataDirectory: string): Promise<string> {
  const credentials = JSON.parse(await readFile(path.join(dataDirectory, "admin-credentials.json"), "utf8")) as { username: string; password: string };
  const response = await fetch(`${apiUrl}/api/oauth2/token`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ grant_type: "password", username: credentials.username, password: credentials.password }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await response.json()) as { access_token?: string };
  if (response.status !== 200 || body.access_token === undefined) throw new Error(`login as admin failed with HTTP ${response.status}: ${JSON.stringify(body)}`);
  return body.access_token;
}

export async function useAdminToken(apiUrl: string, dataDirectory: string): Promise<string> {
  const token = await adminToken(apiUrl, dataDirectory);
  process.env.OVS_TOKEN = token;
  return token;
}

export function forgetToken(): void {
  delete process.env.OVS_TOKEN;
}

/** Headers for fetch with the token of OVS_TOKEN. */
export function authHeaders(): Record<string, string> {
  const token = process.env.OVS_TOKEN;
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

// Where the CLI keeps its bearer tokens: $XDG_CONFIG_HOME/ovs/tokens.json (default ~/.config),
// mode 0600, one entry per API URL, written by `ovs login` and removed by `ovs logout`. OVS_TOKEN in
// the environment takes precedence (scripts, CI).
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";

interface StoredToken { token: string; expiresAt: string; subject: string }

export function tokenFile(): string {
  return path.join(process.env.XDG_CONFIG_HOME ?? path.join(homedir(), ".config"), "ovs", "tokens.json");
}

function readAll(): Record<string, StoredToken> {
  try {
    return JSON.parse(readFileSync(tokenFile(), "utf8")) as Record<string, StoredToken>;
  } catch {
    return {};
  }
}

function writeAll(entries: Record<string, StoredToken>): void {
  const file = tokenFile();
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify(entries, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** The token to send to `apiUrl`: OVS_TOKEN, else a stored one that has not expired. */
export function tokenFor(apiUrl: string): string | undefined {
  const fromEnvironment = process.env.OVS_TOKEN;
  if (fromEnvironment !== undefined && fromEnvironment !== "") return fromEnvironment;
  const stored = readAll()[apiUrl];
  return stored !== undefined && Date.parse(stored.expiresAt) > Date.now() ? stored.token : undefined;
}

export function storeToken(apiUrl: string, entry: StoredToken): void {
  writeAll({ ...readAll(), [apiUrl]: entry });
}

export function forgetToken(apiUrl: string): boolean {
  const entries = readAll();
  if (entries[apiUrl] === undefined) return false;
  delete entries[apiUrl];
  writeAll(entries);
  return true;
}

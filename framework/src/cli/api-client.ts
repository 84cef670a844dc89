// The CLI's client of the framework API. Every failure becomes a CliError whose message says what
// to do: start the cluster, fix the name, and so on; the CLI prints it and exits non-zero.
import type { Command } from "commander";
import { describeFetchError } from "../api/storagedriver-client.ts";
import { tokenFor } from "./cli-tokens.ts";

export const API_URL_DEFAULT = "http://127.0.0.1:8500";
/** The CLI waits this long for an answer before giving up. */
export const CLI_REQUEST_TIMEOUT_MS = 90_000;

export class CliError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CliError";
  }
}

export class FrameworkApiClient {
  readonly baseUrl: string;

  constructor(baseUrl: string) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch (error) {
      throw new CliError(`--api ${JSON.stringify(baseUrl)} is not a URL: give e.g. ${API_URL_DEFAULT}`, { cause: error });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new CliError(`--api ${baseUrl} must be an http:// or https:// URL, e.g. ${API_URL_DEFAULT}`);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, "");
  }

  /**
   * Sends a request to /api/...; returns the parsed JSON body (undefined when empty). A status outside
   * 2xx is a CliError with the API's message, unless listed in `acceptStatuses` (e.g. 503 of /health).
   */
  async request(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", pathname: string, body?: unknown, acceptStatuses: readonly number[] = []): Promise<unknown> {
    let response: Response;
    let text: string;
    try {
      const token = tokenFor(this.baseUrl);
      response = await fetch(`${this.baseUrl}/api${pathname}`, {
        method,
        headers: {
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(CLI_REQUEST_TIMEOUT_MS),
      });
      text = await response.text();
    } catch (error) {
      throw new CliError(`cannot reach the ovs API at ${this.baseUrl} (${describeFetchError(error)}): start the cluster with \`npm start\` (ovs up), or point --api or OVS_API at a running one`, { cause: error });
    }
    let parsed: unknown;
    try {
      parsed = text.length === 0 ? undefined : JSON.parse(text);
    } catch (error) {
      throw new CliError(`${this.baseUrl} answered ${method} /api${pathname} with HTTP ${response.status} and no JSON: is it an ovs API?`, { cause: error });
    }
    if (!response.ok && !acceptStatuses.includes(response.status)) {
      const failure = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new CliError(failure?.message !== undefined ? `${failure.message} (${failure.code ?? "ERROR"}, HTTP ${response.status})` : `HTTP ${response.status} from ${method} /api${pathname}`);
    }
    return parsed;
  }
}

/** The client of the API a command was pointed at (--api, OVS_API or the default). */
export function apiClientOf(command: Command): FrameworkApiClient {
  return new FrameworkApiClient(command.optsWithGlobals<{ api: string }>().api);
}

/** Path of a vDisk under /api. */
export function vdiskPath(name: string): string {
  return `/vdisks/${encodeURIComponent(name)}`;
}

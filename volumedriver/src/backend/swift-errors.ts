// Every Swift HTTP status the store does not handle in place becomes a StoreError here, in one
// table (STYLE.md habit 3). Statuses from the Swift API reference ("Object Storage API", response
// codes) and RFC 9110 §15. Messages never contain keys, passwords or tokens.
import { StoreError } from "./object-store.ts";
import type { StoreErrorKind } from "./object-store.ts";

/** What the operator should check when Swift refuses the credentials or the account. */
export const CREDENTIALS_HINT =
  "check the Swift credentials: for tempauth the user and key, for Keystone the user name, password, user domain, project and project domain";

/** The StoreError kind and a hint for an unexpected `status`. */
export function storeErrorKindForStatus(status: number): { kind: StoreErrorKind; hint: string } {
  switch (status) {
    case 400:
      return { kind: "Invalid", hint: "Swift refused the request (a key longer than the cluster's max_object_name_length?)" };
    case 401:
      return { kind: "Internal", hint: `Swift refused the token even after re-authenticating: ${CREDENTIALS_HINT}` };
    case 403:
      return { kind: "Internal", hint: "Swift forbids this: check that the user has a role (operator, .admin) on the account, and the container ACLs" };
    case 404:
      return { kind: "NotFound", hint: "not found" };
    case 408:
      return { kind: "Transient", hint: "Swift timed out reading the request" };
    case 409:
      return { kind: "Transient", hint: "Swift reported a conflict (a concurrent change)" };
    case 411:
    case 413:
      return { kind: "Invalid", hint: "Swift refused the object's size (larger than its max_file_size?)" };
    case 412:
      return { kind: "PreconditionFailed", hint: "the precondition did not hold" };
    case 416:
      return { kind: "Invalid", hint: "the range starts past the end of the object" };
    case 422:
      return { kind: "Transient", hint: "Swift received bytes whose MD5 differs from the ETag sent (damaged on the way)" };
    case 429:
    case 498:
      return { kind: "Transient", hint: "Swift is rate-limiting" };
    case 507:
      return { kind: "Transient", hint: "Swift has no space left on its drives" };
    default:
      if (status >= 500 && status <= 599) return { kind: "Transient", hint: "Swift failed or is overloaded" };
      return { kind: "Internal", hint: "unexpected reply" };
  }
}

/** A StoreError for an unexpected `status`, its message starting with `context` (e.g. "swift: put vol-1/sco_1"). */
export function storeErrorForStatus(status: number, context: string, responseBody?: Buffer): StoreError {
  const { kind, hint } = storeErrorKindForStatus(status);
  // Swift's error bodies are short plain text ("Object name length of 2048 longer than 1024"); they never echo credentials.
  const detail = responseBody !== undefined && responseBody.length > 0 && responseBody.length <= 512 && status !== 401 ? `: ${responseBody.toString("utf8").trim()}` : "";
  return new StoreError(kind, `${context}: HTTP ${status}, ${hint}${detail}`);
}

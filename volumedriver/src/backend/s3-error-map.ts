// The one place where S3 failures become StoreError kinds (STYLE.md habit 3). Input: whatever the
// SDK threw — a service error with an S3 error code and an HTTP status, or a Node network error —
// plus what the call was. Messages say what to check and never contain credentials.
import { isStoreError, StoreError } from "./object-store.ts";
import type { StoreErrorKind } from "./object-store.ts";

/** What the failed request was, for the message and for the codes whose meaning depends on it. */
export interface S3CallContext {
  /** e.g. "s3:http://127.0.0.1:8080 put vol-1/sco_1" */
  description: string;
  /** The bucket the call used, named in configuration hints. */
  bucket?: string;
  /** Shared-bucket mode: a missing bucket is a configuration error, not a missing namespace. */
  bucketIsConfigured?: boolean;
}

/** Node and SDK network failures worth a retry: the server or the path to it is down or slow. */
const TRANSIENT_NETWORK_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN",
  "EAI_AGAIN", "ENOTFOUND", "ESOCKETTIMEDOUT", "UND_ERR_SOCKET", "ERR_STREAM_PREMATURE_CLOSE",
]);
const TRANSIENT_ERROR_NAMES = new Set(["TimeoutError", "RequestTimeout", "RequestTimeoutException", "SlowDown", "ServiceUnavailable", "InternalError", "ThrottlingException", "RequestLimitExceeded", "OperationAborted", "ConditionalRequestConflict"]);
const NOT_FOUND_NAMES = new Set(["NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload"]);
const CREDENTIAL_NAMES = new Set(["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "CredentialsProviderError", "AllAccessDisabled", "Forbidden"]);

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/** The S3 error code (or Node error code) and HTTP status of `error`, as far as it has them. */
export function describeS3Failure(error: unknown): { name: string; statusCode: number | undefined; message: string } {
  const shape = (typeof error === "object" && error !== null ? error : {}) as ErrorShape;
  const code = typeof shape.code === "string" ? shape.code : undefined;
  const name = code !== undefined && TRANSIENT_NETWORK_CODES.has(code) ? code : typeof shape.name === "string" ? shape.name : (code ?? "Error");
  const statusCode = typeof shape.$metadata?.httpStatusCode === "number" ? shape.$metadata.httpStatusCode : undefined;
  const message = typeof shape.message === "string" ? shape.message : String(error);
  return { name, statusCode, message };
}

/** The kind of a failure and a hint on what to do, from its code and status. */
export function classifyS3Failure(name: string, statusCode: number | undefined, context: S3CallContext): { kind: StoreErrorKind; hint?: string } {
  const bucket = context.bucket ?? "the bucket";
  if (name === "NoSuchBucket" && context.bucketIsConfigured === true) {
    return { kind: "Internal", hint: `the shared bucket ${bucket} does not exist: create it or fix sharedBucket.bucket` };
  }
  if (NOT_FOUND_NAMES.has(name) || statusCode === 404) return { kind: "NotFound" };
  if (name === "PreconditionFailed" || statusCode === 412) return { kind: "PreconditionFailed" };
  if (TRANSIENT_NETWORK_CODES.has(name)) return { kind: "Transient", hint: "check that the endpoint is reachable" };
  if (TRANSIENT_ERROR_NAMES.has(name) || (statusCode !== undefined && statusCode >= 500 && name !== "NotImplemented")) return { kind: "Transient" };
  if (name === "RequestTimeTooSkewed") return { kind: "Internal", hint: "the clocks of this host and the server differ: sync them (NTP)" };
  if (CREDENTIAL_NAMES.has(name) || statusCode === 403) {
    return { kind: "Internal", hint: `check the access key and secret and that they may use ${bucket} (the secret is not shown)` };
  }
  if (name === "PermanentRedirect" || name === "AuthorizationHeaderMalformed" || statusCode === 301) {
    return { kind: "Internal", hint: `check the region and the endpoint for ${bucket}` };
  }
  if (name === "NotImplemented" || statusCode === 501) return { kind: "Internal", hint: "the server does not implement this request" };
  if (name === "BucketAlreadyExists") return { kind: "Invalid", hint: `${bucket} belongs to another account: choose another bucketPrefix or namespace` };
  if (name === "InvalidBucketName") return { kind: "Invalid", hint: "the server refuses this bucket name" };
  if (name === "KeyTooLongError" || name === "InvalidObjectName") return { kind: "Invalid", hint: "the key is longer than the server allows (S3: 1024 UTF-8 bytes, including a shared-bucket prefix)" };
  if (name === "InvalidRange" || statusCode === 416) return { kind: "Invalid", hint: "the range starts past the end of the object" };
  if (statusCode === 400) return { kind: "Invalid" };
  return { kind: "Internal" };
}

/** Maps anything an S3 call threw to a StoreError (StoreErrors pass unchanged). */
export function mapS3Error(error: unknown, context: S3CallContext): StoreError {
  if (isStoreError(error)) return error;
  const { name, statusCode, message } = describeS3Failure(error);
  const { kind, hint } = classifyS3Failure(name, statusCode, context);
  const status = statusCode === undefined ? "" : ` (HTTP ${statusCode})`;
  return new StoreError(kind, `${context.description}: ${name}${status}: ${message}${hint === undefined ? "" : `; ${hint}`}`, { cause: error });
}

// The one place where errors become HTTP responses, for the StorageDriver API and the framework API.
// Every error body has the shape {error: {code, message}}; the message says what to do about it.
// Codes (documented in volumedriver/README.md, "Management API"):
//   INVALID_REQUEST 400   the body or path does not match its schema, or a size is out of limits
//   OUT_OF_RANGE    400   the request names a range outside the vDisk
//   NOT_FOUND       404   no vDisk of that name
//   ROUTE_NOT_FOUND 404   no such endpoint
//   EXISTS          409   a vDisk of that name exists already
//   READ_ONLY       409   the vDisk is read-only
//   CLOSED          503   the vPool is shutting down
//   UNAVAILABLE     503   the StorageDriver behind the framework API is not reachable
//   IO_ERROR        500   the backend could not serve the data
//   INTERNAL        500   a bug: see the log
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from "fastify";
import { isVolumeError, type VolumeErrorKind } from "../engine/block-device.ts";
import { SizeError } from "./size.ts";
import { FIELD_HINTS } from "./vdisk-schemas.ts";

export interface ErrorBody {
  error: { code: string; message: string };
}

export interface HttpErrorResponse {
  statusCode: number;
  body: ErrorBody;
}

/** An error that already knows its HTTP form, e.g. "the StorageDriver is unreachable". */
export class HttpError extends Error {
  readonly statusCode: number;
  readonly code: string;
  constructor(statusCode: number, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.statusCode = statusCode;
    this.code = code;
    this.name = `HttpError(${code})`;
  }
}

const VOLUME_ERROR_RESPONSES: Record<VolumeErrorKind, { statusCode: number; code: string; advice: string }> = {
  Exists: { statusCode: 409, code: "EXISTS", advice: "choose another name, or delete the existing vDisk first" },
  NotFound: { statusCode: 404, code: "NOT_FOUND", advice: "list the vDisks with GET /vdisks (ovs vdisk ls) and check the name" },
  Invalid: { statusCode: 400, code: "INVALID_REQUEST", advice: "correct the request and send it again" },
  OutOfRange: { statusCode: 400, code: "OUT_OF_RANGE", advice: "keep the range inside the vDisk" },
  Closed: { statusCode: 503, code: "CLOSED", advice: "the vPool is shutting down: retry once the StorageDriver is back" },
  ReadOnly: { statusCode: 409, code: "READ_ONLY", advice: "the vDisk is read-only: write to a clone instead" },
  Io: { statusCode: 500, code: "IO_ERROR", advice: "the backend could not serve the data: check the backend and the StorageDriver log" },
};

/** Maps any error thrown while serving a request to its HTTP status and body. */
export function httpErrorResponse(error: unknown): HttpErrorResponse {
  if (isVolumeError(error)) {
    const response = VOLUME_ERROR_RESPONSES[error.kind];
    return reply(response.statusCode, response.code, `${error.message}: ${response.advice}`);
  }
  if (error instanceof SizeError) {
    return reply(400, "INVALID_REQUEST", error.message);
  }
  if (error instanceof HttpError) {
    return reply(error.statusCode, error.code, error.message);
  }
  const fastifyError = error as Partial<FastifyError> | undefined;
  if (fastifyError?.validation !== undefined) {
    return reply(400, "INVALID_REQUEST", validationMessage(fastifyError.validation, fastifyError.validationContext ?? "request"));
  }
  // Fastify's own client errors: malformed JSON, wrong content type, body too large.
  const statusCode = fastifyError?.statusCode;
  if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
    return reply(statusCode, "INVALID_REQUEST", `${fastifyError?.message ?? "bad request"}: send a JSON body with Content-Type: application/json`);
  }
  const message = error instanceof Error ? error.message : String(error);
  return reply(500, "INTERNAL", `internal error (${message}): this is a bug, the server log has the details`);
}

function reply(statusCode: number, code: string, message: string): HttpErrorResponse {
  return { statusCode, body: { error: { code, message } } };
}

/** One sentence per failed rule, with the hint of the field: "body/name must match pattern ...: a vDisk name is ...". */
export function validationMessage(errors: FastifySchemaValidationError[], context: string): string {
  return errors.map((failure) => {
    if (failure.keyword === "required") {
      const field = String(failure.params.missingProperty);
      return withHint(`${context} must have the field ${JSON.stringify(field)}`, `/${field}`);
    }
    if (failure.keyword === "additionalProperties") {
      return `${context} has the unknown field ${JSON.stringify(String(failure.params.additionalProperty))}: remove it (check its spelling)`;
    }
    return withHint(`${context}${failure.instancePath.replaceAll("/", ".")} ${failure.message ?? "is invalid"}`, failure.instancePath);
  }).join("; ");
}

function withHint(message: string, instancePath: string): string {
  const hint = FIELD_HINTS.get(instancePath);
  return hint === undefined ? message : `${message}: ${hint}`;
}

/**
 * Installs the error and not-found handlers on an API. Server errors are logged with their stack;
 * client errors only at debug level, as they are the caller's to fix.
 */
export function installErrorHandlers(app: FastifyInstance, routesHint: string): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, fastifyReply: FastifyReply) => {
    const response = httpErrorResponse(error);
    if (response.statusCode >= 500) {
      request.log.error({ err: error, code: response.body.error.code }, "request failed");
    } else {
      request.log.debug({ code: response.body.error.code, message: response.body.error.message }, "request refused");
    }
    return fastifyReply.code(response.statusCode).send(response.body);
  });
  app.setNotFoundHandler((request: FastifyRequest, fastifyReply: FastifyReply) => {
    const body: ErrorBody = { error: { code: "ROUTE_NOT_FOUND", message: `no endpoint ${request.method} ${request.url}: this API serves ${routesHint}` } };
    return fastifyReply.code(404).send(body);
  });
}

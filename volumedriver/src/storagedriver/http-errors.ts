// The one place where errors become HTTP responses, for the StorageDriver API and the framework API.
// Every error body has the shape {error: {code, message}}; the message says what to do about it.
// Codes (documented in volumedriver/README.md, "Management API"):
//   INVALID_REQUEST 400   the body or path does not match its schema, or a size is out of limits
//   OUT_OF_RANGE    400   the request names a range outside the vDisk
//   NOT_FOUND       404   no vDisk, snapshot or task of that name
//   ROUTE_NOT_FOUND 404   no such endpoint
//   EXISTS          409   the name is taken, something depends on it (clones), or the task is under way
//   READ_ONLY       409   the vDisk is read-only (a template); 409 rather than 403: it is the vDisk's
//                         state that refuses, not the caller's rights (403 is kept for authorization)
//   CLOSED          503   the vPool is shutting down
//   BUSY            503   too many tasks are waiting: retry later
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
  Exists: { statusCode: 409, code: "EXISTS", advice: "choose another name, or delete what stands in the way first (the existing vDisk or snapshot, or the clones)" },
  NotFound: { statusCode: 404, code: "NOT_FOUND", advice: "list the vDisks with GET /vdisks (ovs vdisk ls) or the snapshots with GET /vdisks/NAME/snapshots (ovs vdisk snapshots NAME) and check the name" },
  Invalid: { statusCode: 400, code: "INVALID_REQUEST", advice: "correct the request and send it again" },
  OutOfRange: { statusCode: 400, code: "OUT_OF_RANGE", advice: "keep the range inside the vDisk" },
  Closed: { statusCode: 503, code: "CLOSED", advice: "the vPool is shutting down: retry once the StorageDriver is back" },
  ReadOnly: { statusCode: 409, code: "READ_ONLY", advice: "the vDisk is read-only (a template or a snapshot): write to a clone instead" },
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

/** A schema as ajv reports it with `verbose` (api-server.ts): the hint of a field is its description. */
interface DescribedSchema {
  description?: unknown;
  properties?: Record<string, DescribedSchema | undefined>;
}

/**
 * One sentence per failed rule, with the hint of the field: "body.name must match pattern ...: a vDisk
 * name is ...". The hint is the description of the failing schema (ajv's `parentSchema`), or else
 * the one FIELD_HINTS has for that field.
 */
export function validationMessage(errors: FastifySchemaValidationError[], context: string): string {
  return errors.map((failure) => {
    const parentSchema = (failure as { parentSchema?: DescribedSchema }).parentSchema;
    if (failure.keyword === "required") {
      const field = String(failure.params.missingProperty);
      return withHint(`${context} must have the field ${JSON.stringify(field)}`, parentSchema?.properties?.[field], `/${field}`);
    }
    if (failure.keyword === "additionalProperties") {
      const message = `${context} has the unknown field ${JSON.stringify(String(failure.params.additionalProperty))}: remove it (check its spelling)`;
      return typeof parentSchema?.description === "string" ? `${message}; ${parentSchema.description}` : message;
    }
    return withHint(`${context}${failure.instancePath.replaceAll("/", ".")} ${failure.message ?? "is invalid"}`, parentSchema, failure.instancePath);
  }).join("; ");
}

function withHint(message: string, schema: DescribedSchema | undefined, instancePath: string): string {
  const hint = typeof schema?.description === "string" ? schema.description : FIELD_HINTS.get(instancePath);
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

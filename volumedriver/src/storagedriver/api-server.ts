// The Fastify settings every management API of the project shares (StorageDriver and framework):
// small bodies, strict validation, 503 while closing, idle keep-alive connections closed on close.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { pino, type Logger } from "pino";

/** Requests are small JSON documents; anything larger is a mistake or an attack. */
export const MANAGEMENT_BODY_SIZE_BYTES_MAX = 16 * 1024;

/**
 * Fastify with our validation settings: unknown fields are refused rather than silently dropped, and
 * types are not coerced, so "size": "4096" and "size": 4096 are each taken for what they are.
 */
export function createApiServer(logger: Logger | undefined): FastifyInstance {
  return Fastify({
    // A silent logger rather than none, so the instance has one type whether or not it logs.
    loggerInstance: (logger ?? pino({ level: "silent" })) as FastifyBaseLogger,
    bodyLimit: MANAGEMENT_BODY_SIZE_BYTES_MAX,
    // verbose: failures carry their schema, whose description is the hint shown to the caller.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true, allowUnionTypes: true, verbose: true } },
    return503OnClosing: true,
    forceCloseConnections: "idle",
  });
}


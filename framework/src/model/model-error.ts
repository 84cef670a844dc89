// The errors of the framework model. Few coarse kinds, each telling the caller what to do, and the one
// place the API maps to HTTP (NotFound 404, Conflict 409, Invalid 400).
// Messages name the entity and say how to get past the error.

/**
 * - NotFound: no entity of that name (or id); list them and check the name.
 * - Conflict: the name is taken, or something still depends on the entity (a vPool on a backend,
 *   vDisks in a vPool, clones of a vDisk), or a task has already finished.
 * - Invalid: the input does not describe a valid entity; the message names the field.
 */
export type ModelErrorKind = "NotFound" | "Conflict" | "Invalid";

export class ModelError extends Error {
  readonly kind: ModelErrorKind;
  constructor(kind: ModelErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `ModelError(${kind})`;
  }
}

export function isModelError(error: unknown, kind?: ModelErrorKind): error is ModelError {
  return error instanceof ModelError && (kind === undefined || error.kind === kind);
}

export function invalid(message: string): ModelError {
  return new ModelError("Invalid", message);
}

export function notFound(message: string): ModelError {
  return new ModelError("NotFound", message);
}

export function conflict(message: string): ModelError {
  return new ModelError("Conflict", message);
}

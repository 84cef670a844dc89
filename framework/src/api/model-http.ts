// The model's errors as API answers: NotFound, Conflict and Invalid become 404, 409 and 400 with
// the model's message (which says what to do); anything else stays an error (a 500 and a log line).
import { HttpError } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import { isModelError } from "../model/model-error.ts";

/** Runs a model call, turning its ModelErrors into HttpErrors. */
export function fromModel<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    if (isModelError(error, "NotFound")) throw new HttpError(404, "NOT_FOUND", error.message, { cause: error });
    if (isModelError(error, "Conflict")) throw new HttpError(409, "CONFLICT", error.message, { cause: error });
    if (isModelError(error, "Invalid")) throw new HttpError(400, "INVALID_REQUEST", error.message, { cause: error });
    throw error;
  }
}

// Does the server honour conditional writes? AWS S3 (since 2024), Ceph RGW and MinIO evaluate
// `If-None-Match: *` and `If-Match: <etag>` on PUT (RFC 9110 §13.1.1-2) and answer 412; some
// S3-compatible servers accept the headers and ignore them, which would silently turn an
// ifAbsent put into an overwrite. So the store asks once, by experiment, on a probe key:
//
//   1. write the probe (no condition)             -> its etag E
//   2. write it with If-None-Match: *             -> 412: honoured; success: ignored
//   3. write it with If-Match: <an etag never E>  -> 412: honoured; success: ignored
//   4. write it with If-Match: <current etag>     -> must succeed, else If-Match is not usable
//   5. delete the probe
//
// A 400 or 501 answer to a conditional write also means "not supported". Transient failures end
// the probe without a verdict (it runs again on the next conditional write).
import { isStoreError } from "./object-store.ts";

export interface ConditionalWriteSupport {
  ifNoneMatch: boolean;
  ifMatch: boolean;
}

export interface ProbeWriter {
  /** Writes the probe object with the given condition; resolves to its etag, or rejects with a mapped StoreError. */
  write(condition: { ifNoneMatch?: string; ifMatch?: string }): Promise<string>;
  remove(): Promise<void>;
}

/** An etag no server produces: S3 etags are hex digests, optionally with "-<parts>". */
const IMPOSSIBLE_ETAG = '"ovs-probe-never-an-etag"';

export async function probeConditionalWrites(writer: ProbeWriter): Promise<ConditionalWriteSupport> {
  try {
    let etag = await writer.write({});
    const ifNoneMatchOutcome = await conditionalOutcome(writer.write({ ifNoneMatch: "*" }));
    if (ifNoneMatchOutcome.etag !== undefined) etag = ifNoneMatchOutcome.etag;
    const wrongEtagOutcome = await conditionalOutcome(writer.write({ ifMatch: IMPOSSIBLE_ETAG }));
    if (wrongEtagOutcome.etag !== undefined) etag = wrongEtagOutcome.etag;
    let ifMatch = wrongEtagOutcome.verdict === "honoured";
    if (ifMatch) {
      const rightEtagOutcome = await conditionalOutcome(writer.write({ ifMatch: `"${etag}"` }));
      ifMatch = rightEtagOutcome.verdict === "ignored"; // "ignored" here means: the write went through, as it must
    }
    return { ifNoneMatch: ifNoneMatchOutcome.verdict === "honoured", ifMatch };
  } finally {
    await writer.remove().catch(() => undefined);
  }
}

/** honoured: refused with PreconditionFailed; ignored: the write went through; unsupported: refused as a bad request. */
async function conditionalOutcome(write: Promise<string>): Promise<{ verdict: "honoured" | "ignored" | "unsupported"; etag?: string }> {
  try {
    return { verdict: "ignored", etag: await write };
  } catch (error) {
    if (isStoreError(error, "PreconditionFailed")) return { verdict: "honoured" };
    if (isStoreError(error, "Invalid") || (isStoreError(error, "Internal") && /NotImplemented|HTTP 501/.test(error.message))) return { verdict: "unsupported" };
    throw error;
  }
}

// Multipart uploads for the S3 store: the part plan (pure) and the upload itself. Parts are read
// from their source one at a time per worker, so at most `partsInFlightMax` parts are in memory
// however large the object (an SCO file is never read whole). A failed upload is aborted, so no
// parts are left behind to be billed; a part that fails Transient is retried a bounded number of
// times on its own (parts are idempotent: uploading part n again replaces it).
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { setTimeout as sleepMs } from "node:timers/promises";
import { isStoreError, StoreError } from "./object-store.ts";

/** S3's bounds (AWS S3 User Guide, "Amazon S3 multipart upload limits"). */
export const MULTIPART_PART_SIZE_BYTES_MIN = 5 * 1024 * 1024;
export const MULTIPART_PARTS_MAX = 10_000;

export interface PartPlan {
  partSizeBytes: number;
  partCount: number;
}

/**
 * The part size and count for an object of `objectSizeBytes`: parts of `partSizeBytesWanted`
 * (raised to S3's 5 MiB minimum, and further so that no more than 10,000 parts are needed), the
 * last one shorter. An empty object is one empty part.
 */
export function planParts(objectSizeBytes: number, partSizeBytesWanted: number): PartPlan {
  const partSizeBytes = Math.max(partSizeBytesWanted, MULTIPART_PART_SIZE_BYTES_MIN, Math.ceil(objectSizeBytes / MULTIPART_PARTS_MAX));
  return { partSizeBytes, partCount: Math.max(1, Math.ceil(objectSizeBytes / partSizeBytes)) };
}

/** Reads `lengthBytes` bytes of the object at `offsetBytes`. */
export type PartReader = (offsetBytes: number, lengthBytes: number) => Promise<Buffer>;

export interface MultipartUploadRequest {
  client: S3Client;
  bucket: string;
  objectKey: string;
  objectSizeBytes: number;
  readPart: PartReader;
  plan: PartPlan;
  partsInFlightMax: number;
  partAttemptsMax: number;
  /** Sent with CompleteMultipartUpload: the write happens only if the condition holds there. */
  ifNoneMatch?: string;
  ifMatch?: string;
  /** Maps an SDK failure to a StoreError (one place: s3-error-map.ts). */
  mapError: (error: unknown) => StoreError;
}

/** Uploads the object in parts and completes it; returns the server's ETag. Aborts the upload on any failure. */
export async function uploadMultipart(request: MultipartUploadRequest): Promise<string | undefined> {
  const { client, bucket, objectKey } = request;
  let uploadId: string | undefined;
  try {
    const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: objectKey }));
    uploadId = created.UploadId;
    if (uploadId === undefined) throw new StoreError("Internal", `CreateMultipartUpload of ${bucket}/${objectKey} returned no UploadId`);
    const partETags = await uploadParts(request, uploadId);
    const completed = await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: objectKey,
        UploadId: uploadId,
        MultipartUpload: { Parts: partETags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) },
        IfNoneMatch: request.ifNoneMatch,
        IfMatch: request.ifMatch,
      }),
    );
    uploadId = undefined;
    return completed.ETag;
  } catch (error) {
    throw request.mapError(error);
  } finally {
    if (uploadId !== undefined) {
      // Best effort: an upload left behind is removed by the bucket's lifecycle rule or by deleteNamespace.
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: objectKey, UploadId: uploadId })).catch(() => undefined);
    }
  }
}

/** Uploads every part with at most partsInFlightMax in flight; the ETags in part order. */
async function uploadParts(request: MultipartUploadRequest, uploadId: string): Promise<string[]> {
  const { plan, objectSizeBytes } = request;
  const partETags: string[] = new Array<string>(plan.partCount);
  let nextPartIndex = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && nextPartIndex < plan.partCount) {
      const partIndex = nextPartIndex++;
      const offsetBytes = partIndex * plan.partSizeBytes;
      const lengthBytes = Math.min(plan.partSizeBytes, objectSizeBytes - offsetBytes);
      try {
        partETags[partIndex] = await uploadOnePart(request, uploadId, partIndex + 1, await request.readPart(offsetBytes, lengthBytes));
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const workerCount = Math.min(request.partsInFlightMax, plan.partCount);
  const results = await Promise.allSettled(Array.from({ length: workerCount }, () => worker()));
  const rejection = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (rejection !== undefined) throw rejection.reason;
  return partETags;
}

async function uploadOnePart(request: MultipartUploadRequest, uploadId: string, partNumber: number, body: Buffer): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      const uploaded = await request.client.send(
        new UploadPartCommand({ Bucket: request.bucket, Key: request.objectKey, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length }),
      );
      if (uploaded.ETag === undefined) throw new StoreError("Internal", `UploadPart ${partNumber} of ${request.bucket}/${request.objectKey} returned no ETag`);
      return uploaded.ETag;
    } catch (error) {
      const mapped = request.mapError(error);
      if (!isStoreError(mapped, "Transient") || attempt >= request.partAttemptsMax) throw mapped;
      await sleepMs(100 * 2 ** (attempt - 1));
    }
  }
}

// The file a putFile call names, for the stores and wrappers that need its bytes or its size
// rather than the file itself: the memory store copies it, the local store copies it when it
// cannot hard-link it, the retrying wrapper compares it with what landed, the cost meter counts it.
// The caller named the file, so a missing one is its mistake (Invalid), not a missing object.
import { open, readFile, stat } from "node:fs/promises";
import type { BufferPool } from "../../../alba/src/memory/buffer-pool.ts";
import { StoreError } from "./object-store.ts";
import type { StoreErrorKind } from "./object-store.ts";

/**
 * The whole content of the putFile source `filePath`; a failure is a StoreError of the kind that
 * says what to do. With `buffers`, the bytes land in a buffer from that pool (the caller releases it).
 */
export async function readSourceFile(filePath: string, buffers?: BufferPool): Promise<Buffer> {
  try {
    if (buffers === undefined) return await readFile(filePath);
    const handle = await open(filePath, "r");
    try {
      const sizeBytes = (await handle.stat()).size;
      const data = buffers.take(sizeBytes);
      for (let filledBytes = 0; filledBytes < sizeBytes;) {
        const { bytesRead } = await handle.read(data, filledBytes, sizeBytes - filledBytes, filledBytes);
        if (bytesRead === 0) throw new StoreError("Invalid", `putFile: ${filePath} shrank while being read (the file must not change)`);
        filledBytes += bytesRead;
      }
      return data;
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof StoreError) throw error;
    const message = `putFile: cannot read ${filePath}: ${error instanceof Error ? error.message : String(error)}`;
    const kind = sourceFileErrorKind((error as NodeJS.ErrnoException).code);
    throw new StoreError(kind, kind === "Invalid" ? `${message} (name an existing regular file)` : message, { cause: error });
  }
}

function sourceFileErrorKind(code: string | undefined): StoreErrorKind {
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
    case "EISDIR":
      return "Invalid";
    case "EIO":
    case "EMFILE":
    case "ENFILE":
    case "EAGAIN":
    case "EINTR":
    case "ENOMEM":
      return "Transient";
    default:
      return "Internal";
  }
}

/** The size of the putFile source `filePath`, or 0 when it cannot be read (the call itself then reports why). */
export async function sourceFileSizeBytes(filePath: string): Promise<number> {
  try {
    return (await stat(filePath)).size;
  } catch {
    return 0;
  }
}

// Reading the local store's object files, both versions (local-object-file.ts): headers, and
// ranges verified block by block against the checksum table. A version 2 meta file names its data
// file; this module opens it next to the meta file and reads the blocks from there.
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { StoreError } from "./object-store.ts";
import type { NamespaceName, ObjectRange } from "./object-store.ts";
import { resolveRange } from "./object-range.ts";
import { classifyFileName, fileNameOfKey } from "./local-file-names.ts";
import { decodeObjectFileHeader, OBJECT_FILE_HEADER_SIZE_BYTES_MAX, verifyObjectFileBlocks } from "./local-object-file.ts";
import type { ObjectFileHeader } from "./local-object-file.ts";

/** Where one key's files live. */
export interface ObjectLocation {
  namespace: NamespaceName;
  key: string;
  /** The namespace directory. */
  directory: string;
  /** The name of the object (version 1) or meta (version 2) file, fileNameOfKey(key). */
  fileName: string;
  filePath: string;
  /** "namespace/key", for messages. */
  description: string;
}

/** A ranged read: the bytes, or the name of the data file the meta file named and that was gone (replaced or deleted meanwhile). */
export type ObjectRangeRead = { data: Buffer } | { missingDataFileName: string };

/**
 * Reads the requested bytes of the object whose object or meta file is open as `handle`,
 * verifying the header and the checksum of every block they touch.
 */
export async function readObjectRange(handle: FileHandle, location: ObjectLocation, range: ObjectRange | undefined): Promise<ObjectRangeRead> {
  const fileStart = await readFileStart(handle);
  const header = decodeObjectHeader(fileStart, location.description, location.key);
  const { startBytes, endBytes } = resolveRange(range, header.dataSizeBytes);
  if (startBytes === endBytes) return { data: Buffer.alloc(0) };
  const metaSource: RegionSource = { handle, fileStart, description: location.description };
  if (header.dataFileName === undefined) return { data: await readVerifiedBlocks(header, metaSource, metaSource, startBytes, endBytes) };
  let dataHandle: FileHandle;
  try {
    dataHandle = await open(path.join(location.directory, header.dataFileName), "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { missingDataFileName: header.dataFileName };
    throw error;
  }
  try {
    const dataSource: RegionSource = { handle: dataHandle, fileStart: undefined, description: `${location.description} (data file ${header.dataFileName})` };
    return { data: await readVerifiedBlocks(header, metaSource, dataSource, startBytes, endBytes) };
  } finally {
    await dataHandle.close();
  }
}

/** The verified header of the object or meta file at `filePath`, or undefined if there is none. */
export async function readHeaderOfFile(filePath: string, fileDescription: string, expectedKey: string | undefined): Promise<ObjectFileHeader | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(filePath, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    return decodeObjectHeader(await readFileStart(handle), fileDescription, expectedKey);
  } finally {
    await handle.close();
  }
}

/**
 * Decodes the header and checks that it belongs where it was found: the key asked for (when
 * given), and a data file name that is one of this key's (so a damaged name cannot point
 * anywhere else, e.g. outside the directory).
 */
function decodeObjectHeader(fileStart: Buffer, fileDescription: string, expectedKey: string | undefined): ObjectFileHeader {
  const header = decodeObjectFileHeader(fileStart, fileDescription);
  if (expectedKey !== undefined && header.key !== expectedKey) {
    throw new StoreError("Corrupt", `object file ${fileDescription}: holds key ${JSON.stringify(header.key)}`);
  }
  if (header.dataFileName !== undefined) {
    const kind = classifyFileName(header.dataFileName);
    if (kind.kind !== "data" || kind.metaFileName !== fileNameOfKey(header.key)) {
      throw new StoreError("Corrupt", `object file ${fileDescription}: names data file ${JSON.stringify(header.dataFileName)}, which is not one of its key`);
    }
  }
  return header;
}

/** An open file a region is read from; `fileStart` holds its first bytes when they were read already. */
interface RegionSource {
  handle: FileHandle;
  fileStart: Buffer | undefined;
  description: string;
}

/**
 * The bytes [startBytes, endBytes) of the data, checked against the table: the table comes from the
 * object or meta file, the blocks from the data file (the same file in version 1).
 */
async function readVerifiedBlocks(
  header: ObjectFileHeader,
  tableSource: RegionSource,
  dataSource: RegionSource,
  startBytes: number,
  endBytes: number,
): Promise<Buffer> {
  const blockSizeBytes = header.blockSizeBytes;
  const firstBlock = Math.floor(startBytes / blockSizeBytes);
  const lastBlock = Math.floor((endBytes - 1) / blockSizeBytes);
  const blocksStartBytes = firstBlock * blockSizeBytes;
  const blocksEndBytes = Math.min(header.dataSizeBytes, (lastBlock + 1) * blockSizeBytes);
  const table = await readRegion(tableSource, header.tableOffsetBytes + 4 * firstBlock, 4 * (lastBlock - firstBlock + 1));
  const blocks = await readRegion(dataSource, header.dataOffsetBytes + blocksStartBytes, blocksEndBytes - blocksStartBytes);
  verifyObjectFileBlocks(header, firstBlock, table, blocks, dataSource.description);
  const exact = startBytes === blocksStartBytes && endBytes === blocksEndBytes && blocks.buffer !== dataSource.fileStart?.buffer;
  // A copy of just the range, so the caller holds no more memory than it asked for.
  return exact ? blocks : Buffer.from(blocks.subarray(startBytes - blocksStartBytes, endBytes - blocksStartBytes));
}

/** The first bytes of an object or meta file: enough for any header (all of a small file). */
async function readFileStart(handle: FileHandle): Promise<Buffer> {
  const buffer = Buffer.alloc(OBJECT_FILE_HEADER_SIZE_BYTES_MAX);
  const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
  return buffer.subarray(0, bytesRead);
}

/** `lengthBytes` bytes at `positionBytes`, from the already read file start when they lie in it. */
async function readRegion({ handle, fileStart, description }: RegionSource, positionBytes: number, lengthBytes: number): Promise<Buffer> {
  if (fileStart !== undefined && positionBytes + lengthBytes <= fileStart.length) return fileStart.subarray(positionBytes, positionBytes + lengthBytes);
  const buffer = Buffer.allocUnsafe(lengthBytes);
  let filledBytes = 0;
  while (filledBytes < lengthBytes) {
    const { bytesRead } = await handle.read(buffer, filledBytes, lengthBytes - filledBytes, positionBytes + filledBytes);
    if (bytesRead === 0) throw new StoreError("Corrupt", `object file ${description}: truncated (ends before byte ${positionBytes + lengthBytes})`);
    filledBytes += bytesRead;
  }
  return buffer;
}

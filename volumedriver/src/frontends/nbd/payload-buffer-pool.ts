// The pool of large WRITE payload buffers (alba/src/memory/buffer-pool.ts). A payload that arrives
// split over several socket chunks (every payload over 64 KiB does) is copied into one buffer;
// allocating a fresh one per request made V8's background threads spend more CPU sweeping and
// freeing them than the main thread spent on the writes (1 MiB sequential writes: 5 s of GC threads
// per 4 GiB written, 2.9 s with the pool), and each fresh allocation faults in new pages.
//
// Invariant: a buffer is released only once the device call that used it has settled; the
// BlockDevice contract (block-device.ts) is that write() keeps no reference to its data after that.
import { BufferPool } from "../../../../alba/src/memory/buffer-pool.ts";

/** Payloads at least this large come from the pool; smaller ones are cheap to allocate. */
export const PAYLOAD_POOL_SIZE_BYTES_MIN = 64 * 1024;
/** Free buffers the pool keeps, in bytes (one process-wide pool: the buffers are interchangeable). */
export const PAYLOAD_POOL_FREE_BYTES_MAX = 64 * 1024 * 1024;

/** The process-wide pool the NBD receive path uses. */
export const payloadBufferPool = new BufferPool({ sizeBytesMin: PAYLOAD_POOL_SIZE_BYTES_MIN, freeBytesMax: PAYLOAD_POOL_FREE_BYTES_MAX });

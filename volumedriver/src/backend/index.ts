// The backend layer in one import: the ObjectStore contract, its implementations (memory, local, s3, swift, alba)
// and the wrappers that stack on any of them (retrying, instrumented, failing).
export * from "./object-store.ts";
export { compareKeys, LIST_LIMIT_KEYS_MAX } from "./list-paging.ts";
export { MemoryObjectStore } from "./memory-store.ts";
export { LocalObjectStore } from "./local-store.ts";
export { S3ObjectStore } from "./s3-store.ts";
export type { S3ObjectStoreOptions } from "./s3-store.ts";
export { SwiftObjectStore } from "./swift-store.ts";
export type { SwiftObjectStoreOptions } from "./swift-store.ts";
export { AlbaObjectStore } from "./alba-store.ts";
export type { AlbaObjectStoreOptions } from "./alba-store.ts";
export { CodecObjectStore } from "./codec-store.ts";
export { RetryingObjectStore } from "./retrying-store.ts";
export type { RetryingObjectStoreOptions } from "./retrying-store.ts";
export { InstrumentedObjectStore, LATENCY_BUCKET_UPPER_BOUNDS_MS } from "./instrumented-store.ts";
export type {
  InstrumentedObjectStoreOptions,
  ObjectStoreOperation,
  ObjectStoreStatsSnapshot,
  OperationStats,
  OperationStatsTable,
} from "./instrumented-store.ts";
export { FailingObjectStore, mulberry32 } from "./failing-store.ts";
export type { FailingObjectStoreOptions, InjectedFaultPoint } from "./failing-store.ts";

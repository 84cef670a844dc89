// The scrubber in a worker thread: its CPU work (liveness, checksums, encoding) and its memory (one
// range's TLog entries, one SCO being built) stay off the StorageDriver's event loop and inside the
// worker's heap limit. Backend calls go back to the owner's store over the message port, so the
// worker works with any ObjectStore, and every request is counted and retried as the owner's are.
//
// Protocol (worker -> owner): {type: "call", id, method: "get" | "put" | "list", args}, {type:
// "progress", progress}, {type: "done", output}, {type: "failed", error}; (owner -> worker): {type:
// "reply", id, result} or {type: "reply", id, error: {kind, message}}.
import { parentPort, Worker, workerData } from "node:worker_threads";
import { isStoreError, StoreError, type ObjectStore, type StoreErrorKind } from "../backend/object-store.ts";
import { VolumeError, type VolumeErrorKind } from "./block-device.ts";
import { runScrub, type ScrubInput, type ScrubOutput, type ScrubStore } from "./scrubber.ts";
import type { ScrubProgress } from "./vpool-types.ts";

/** The worker's heap limit: a range's entries and one SCO fit many times over. */
const WORKER_HEAP_MB = 512;
const WORKER_ENTRY = new URL("./scrub-worker-entry.mjs", import.meta.url);

type WorkerInput = Omit<ScrubInput, "store" | "onProgress" | "nowMs">;
type CallMethod = "get" | "put" | "list";
type ToOwner =
  | { type: "call"; id: number; method: CallMethod; args: unknown[] }
  | { type: "progress"; progress: ScrubProgress }
  | { type: "done"; output: ScrubOutput }
  | { type: "failed"; error: SerializedError };
type ToWorker = { type: "reply"; id: number; result?: unknown; error?: SerializedError };
interface SerializedError { kind: string; message: string; store: boolean }

function serializeError(error: unknown): SerializedError {
  if (isStoreError(error)) return { kind: error.kind, message: error.message, store: true };
  const kind = error instanceof VolumeError ? error.kind : "Io";
  return { kind, message: error instanceof Error ? error.message : String(error), store: false };
}

function deserializeError(error: SerializedError): Error {
  return error.store ? new StoreError(error.kind as StoreErrorKind, error.message) : new VolumeError(error.kind as VolumeErrorKind, error.message);
}

/** A Buffer over what postMessage delivered (a Buffer arrives as a plain Uint8Array). */
function asBuffer(value: unknown): Buffer {
  const bytes = value as Uint8Array;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Runs the scrubber in a worker thread; its backend calls are served from `store` here. */
export function runScrubInWorker(input: ScrubInput): Promise<ScrubOutput> {
  const { store, onProgress, nowMs: _nowMs, ...rest } = input;
  const workerInput: WorkerInput = rest;
  return new Promise<ScrubOutput>((resolve, reject) => {
    const worker = new Worker(WORKER_ENTRY, { workerData: workerInput, resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } });
    let settled = false;
    const finish = (error: Error | undefined, output?: ScrubOutput): void => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      if (error !== undefined) reject(error);
      else resolve(output as ScrubOutput);
    };
    worker.on("message", (message: ToOwner) => {
      switch (message.type) {
        case "call":
          void serveCall(store, message).then((reply) => { if (!settled) worker.postMessage(reply); });
          return;
        case "progress":
          onProgress?.(message.progress);
          return;
        case "done":
          finish(undefined, message.output);
          return;
        case "failed":
          finish(deserializeError(message.error));
      }
    });
    worker.on("error", (error) => finish(new VolumeError("Io", `the scrub worker failed: ${error.message}`, { cause: error })));
    worker.on("exit", (code) => finish(new VolumeError("Io", `the scrub worker exited with code ${code} before finishing`)));
  });
}

async function serveCall(store: ScrubStore, call: Extract<ToOwner, { type: "call" }>): Promise<ToWorker> {
  try {
    const args = call.args;
    let result: unknown;
    if (call.method === "get") result = await store.get(args[0] as string, args[1] as string, args[2] as Parameters<ObjectStore["get"]>[2]);
    else if (call.method === "put") result = await store.put(args[0] as string, args[1] as string, asBuffer(args[2]));
    else result = await store.list(args[0] as string, args[1] as Parameters<ObjectStore["list"]>[1]);
    return { type: "reply", id: call.id, result };
  } catch (error) {
    return { type: "reply", id: call.id, error: serializeError(error) };
  }
}

/** Inside the worker: a ScrubStore whose calls are answered by the owner. */
function proxyStore(port: NonNullable<typeof parentPort>): ScrubStore {
  let nextId = 1;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  port.on("message", (message: ToWorker) => {
    const waiter = pending.get(message.id);
    if (waiter === undefined) return;
    pending.delete(message.id);
    if (message.error !== undefined) waiter.reject(deserializeError(message.error));
    else waiter.resolve(message.result);
  });
  const call = (method: CallMethod, args: unknown[]): Promise<unknown> => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    port.postMessage({ type: "call", id, method, args } satisfies ToOwner);
  });
  return {
    get: async (namespace, key, range) => asBuffer(await call("get", [namespace, key, range])),
    put: async (namespace, key, data) => (await call("put", [namespace, key, data])) as Awaited<ReturnType<ObjectStore["put"]>>,
    list: async (namespace, options) => (await call("list", [namespace, options])) as Awaited<ReturnType<ObjectStore["list"]>>,
  };
}

if (parentPort !== null && (workerData as { scrubScoNumber?: unknown } | null)?.scrubScoNumber !== undefined) {
  const port = parentPort;
  const input = workerData as WorkerInput;
  runScrub({ ...input, store: proxyStore(port), nowMs: Date.now, onProgress: (progress) => port.postMessage({ type: "progress", progress } satisfies ToOwner) })
    .then((output) => port.postMessage({ type: "done", output } satisfies ToOwner))
    .catch((error: unknown) => port.postMessage({ type: "failed", error: serializeError(error) } satisfies ToOwner));
}

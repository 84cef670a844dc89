// Assertions and small utilities shared by the engine tests.
import assert from "node:assert/strict";
import { isVolumeError, type VolumeErrorKind } from "../../volumedriver/src/engine/block-device.ts";

/** Awaits `operation` and asserts that it rejects with a VolumeError of `kind`; returns the error. */
export async function expectVolumeError(operation: Promise<unknown>, kind: VolumeErrorKind, what = ""): Promise<Error> {
  let outcome: unknown;
  try {
    await operation;
    outcome = undefined;
  } catch (error) {
    outcome = error;
    if (isVolumeError(error, kind)) return error;
  }
  assert.fail(`${what}expected VolumeError(${kind}), got ${outcome === undefined ? "success" : String(outcome)}`);
}

export function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

/** Polls `condition` every intervalMs until it holds or timeoutMs passes; returns whether it held. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/** Rejects with a clear message if `promise` does not settle within timeoutMs. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Concurrency helpers of the local store: group commit of directory fsyncs, a per-key mutex, and
// a bounded parallel map. Each bounds what it keeps in flight (STYLE.md habit 5).
import { open } from "node:fs/promises";

/** Makes the names created, renamed or removed in `directory` durable. */
export async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Group commit for directory fsyncs (STYLE.md habit 7): a request is answered by the first fsync
 * of that directory that starts after it, so concurrent puts into one namespace share fsyncs. At
 * most one fsync per directory runs, and at most one more is queued behind it.
 */
export class DirectorySyncs {
  private readonly states = new Map<string, { running: Promise<void>; queued: Promise<void> | undefined }>();

  sync(directory: string): Promise<void> {
    const state = this.states.get(directory);
    if (state === undefined) return this.start(directory);
    state.queued ??= state.running.then(ignore, ignore).then(() => this.start(directory));
    return state.queued;
  }

  private start(directory: string): Promise<void> {
    const running: Promise<void> = fsyncDirectory(directory).finally(() => {
      const state = this.states.get(directory);
      if (state?.running === running && state.queued === undefined) this.states.delete(directory);
    });
    const state = this.states.get(directory);
    if (state === undefined) {
      this.states.set(directory, { running, queued: undefined });
    } else {
      state.running = running;
      state.queued = undefined;
    }
    return running;
  }
}

function ignore(): void {}

/** Runs at most `inFlightMax` mappings at once; results in input order. */
export async function mapBounded<T, R>(items: readonly T[], inFlightMax: number, mapper: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    while (nextIndex < items.length) {
      const index = nextIndex++;
      results[index] = await mapper(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlightMax, items.length) }, worker));
  return results;
}

/** Serializes async critical sections per key. The map holds only keys with a section running or queued. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, critical: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    let release: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous === undefined ? done : previous.then(() => done);
    this.tails.set(key, tail);
    if (previous !== undefined) await previous;
    try {
      return await critical();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

// Temporary directories under os.tmpdir() for tests, removed again by the test that made them.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A fresh empty directory under os.tmpdir(), named with the given prefix. */
export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `ovs-${prefix}-`));
}

/** Removes a directory tree; a missing directory is not an error. */
export async function removeTempDir(directory: string | undefined): Promise<void> {
  if (directory === undefined) return;
  await rm(directory, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * A set of temp dirs owned by one test file: `make()` in tests, `removeAll()` in an after() hook,
 * so a failing test still cleans up.
 */
export class TempDirs {
  private readonly directories: string[] = [];
  constructor(private readonly prefix: string) {}

  async make(suffix = ""): Promise<string> {
    const directory = await makeTempDir(suffix === "" ? this.prefix : `${this.prefix}-${suffix}`);
    this.directories.push(directory);
    return directory;
  }

  /** Set OVS_KEEP_TEMP=1 to keep the directories for a post-mortem (their paths are printed). */
  async removeAll(): Promise<void> {
    const directories = this.directories.splice(0);
    if (process.env.OVS_KEEP_TEMP !== undefined) {
      console.log(`      kept temp dirs: ${directories.join(" ")}`);
      return;
    }
    for (const directory of directories) await removeTempDir(directory);
  }
}

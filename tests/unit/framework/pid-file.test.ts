// Goal: the PID file is a lock: taken when free, refused (naming the holder) while its process
// lives, taken over when its process is gone, and released only by its owner.
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { acquirePidFile, PidFileBusyError, readPidFile } from "../../../framework/src/cluster/pid-file.ts";
import { TempDirs } from "../../helpers/temp-dir.ts";

describe("framework: PID file lock", function () {
  const tempDirs = new TempDirs("pid-file");
  after(async function () {
    await tempDirs.removeAll();
  });

  it("is taken when free and released by its owner", async function () {
    const file = path.join(await tempDirs.make(), "ovs.pid");
    const release = acquirePidFile(file, "another `ovs up`");
    assert.equal((await readFile(file, "utf8")).trim(), String(process.pid));
    release();
    assert.equal(readPidFile(file), undefined);
  });

  it("is refused while the process in it runs, naming it", async function () {
    const file = path.join(await tempDirs.make(), "ovs.pid");
    await writeFile(file, `${process.ppid}\n`);
    assert.throws(() => acquirePidFile(file, "another `ovs up`"), (error: Error) =>
      error instanceof PidFileBusyError && error.pid === process.ppid && /another `ovs up` \(pid \d+\) is already running/.test(error.message));
  });

  it("is taken over from a process that is gone, or when it holds no PID", async function () {
    const directory = await tempDirs.make();
    for (const content of ["2147483646\n", "garbage\n"]) {
      const file = path.join(directory, "ovs.pid");
      await writeFile(file, content);
      const release = acquirePidFile(file, "another `ovs up`");
      assert.equal(readPidFile(file), process.pid);
      release();
    }
  });
});

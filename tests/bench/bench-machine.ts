// One line describing the machine a benchmark ran on, for docs/BENCHMARKS.md.
import { execFileSync } from "node:child_process";
import { cpus, freemem, release, tmpdir, totalmem, type as osType } from "node:os";

const GIB = 1024 ** 3;

export function machineDescription(): string {
  const cpuModel = cpus()[0]?.model.trim() ?? "unknown CPU";
  let filesystem = "unknown";
  try {
    filesystem = execFileSync("df", ["--output=fstype", tmpdir()], { encoding: "utf8" }).split("\n")[1]?.trim() ?? "unknown";
  } catch {
    // df missing: leave it unknown.
  }
  return `${cpus().length} × ${cpuModel} (nproc ${cpus().length}), ${(totalmem() / GIB).toFixed(1)} GiB memory ` +
    `(${(freemem() / GIB).toFixed(1)} GiB free), ${osType()} ${release()}, Node ${process.version}, temp filesystem ${filesystem}`;
}

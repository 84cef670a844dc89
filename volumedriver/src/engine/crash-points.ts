// Fault injection for crash tests: OVS_CRASH_AT=<name> makes the process kill itself with SIGKILL
// when it reaches the point of that name, so a test can stop it between two steps that a random
// kill would rarely separate (the steps of applying a scrub). Unset, it costs one property read.
const crashAt = process.env.OVS_CRASH_AT;

export function crashPoint(name: string): void {
  if (crashAt !== undefined && crashAt === name) process.kill(process.pid, "SIGKILL");
}

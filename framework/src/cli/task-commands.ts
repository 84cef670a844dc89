// `ovs task show ID | ls`: the StorageDriver's background tasks (scrubs), and followTask(), which
// polls a task until it has finished, drawing a progress bar on stderr when that is a terminal.
import type { Command } from "commander";
import { apiClientOf, CliError, type FrameworkApiClient } from "./api-client.ts";
import { formatKeyValues, formatTable } from "./table.ts";
import type { Print, Run } from "./vdisk-commands.ts";

/** How often a followed task is asked for; a scrub takes seconds to hours, so this is plenty. */
export const TASK_POLL_INTERVAL_MS = 500;

/** A task as GET /api/tasks/:id answers it (volumedriver/src/storagedriver/task-registry.ts). */
export interface TaskInfo {
  id: string;
  kind: string;
  /** A StorageDriver's task acts on a vDisk, a framework task on a vPool. */
  vdisk?: string;
  vpool?: string;
  state: "queued" | "running" | "succeeded" | "failed";
  progress: { phase: string; done: number; total: number };
  result?: unknown;
  error?: { code: string; message: string };
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
}

/** What a task acts on, as a table row: ["vdisk", NAME] or ["vpool", NAME]. */
function subjectOf(info: TaskInfo): [string, string] {
  return info.vdisk !== undefined ? ["vdisk", info.vdisk] : ["vpool", info.vpool ?? "-"];
}

function taskPath(id: string): string {
  return `/tasks/${encodeURIComponent(id)}`;
}

function progressText(task: TaskInfo): string {
  const { phase, done, total } = task.progress;
  return total > 0 ? `${phase} ${done}/${total}` : phase;
}

/** Shows a task's progress while it runs: a bar on a terminal, one line per phase otherwise. */
interface ProgressView {
  update(task: TaskInfo): void;
  stop(): void;
}

/** On stderr, so stdout holds only the final summary (or the task id) for scripts. */
async function progressView(label: string): Promise<ProgressView> {
  if (process.stderr.isTTY !== true) {
    let lastPhase = "";
    return {
      update: (task) => {
        if (task.progress.phase !== lastPhase) {
          lastPhase = task.progress.phase;
          process.stderr.write(`${label}: ${task.state}, ${progressText(task)}\n`);
        }
      },
      stop: () => {},
    };
  }
  // Loaded only on a terminal: scripts and pipes never pay for it.
  const { SingleBar, Presets } = (await import("cli-progress")).default;
  const bar = new SingleBar({
    format: `${label} [{bar}] {percentage}% | {phase} {value}/{total}`,
    hideCursor: true,
    clearOnComplete: true,
    stream: process.stderr,
  }, Presets.shades_classic);
  let started = false;
  return {
    update: (task) => {
      const total = Math.max(task.progress.total, 1);
      const payload = { phase: task.progress.phase };
      if (!started) {
        bar.start(total, task.progress.done, payload);
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(task.progress.done, payload);
      }
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/**
 * Polls the task until it has succeeded (resolves with it) or failed (CliError with its error). A
 * task that disappears (the StorageDriver restarted) is a CliError too, saying so.
 */
export async function followTask(client: FrameworkApiClient, task: TaskInfo, label: string): Promise<TaskInfo> {
  const view = await progressView(label);
  let current = task;
  try {
    for (;;) {
      view.update(current);
      if (current.state === "succeeded") return current;
      if (current.state === "failed") {
        const error = current.error;
        throw new CliError(`${label} failed (task ${current.id}): ${error?.message ?? "no reason given"}${error === undefined ? "" : ` (${error.code})`}`);
      }
      await new Promise((resolve) => setTimeout(resolve, TASK_POLL_INTERVAL_MS));
      current = await client.request("GET", taskPath(current.id)) as TaskInfo;
    }
  } finally {
    view.stop();
  }
}

export function registerTaskCommands(program: Command, run: Run, print: Print): void {
  const task = program.command("task").description("follow the background tasks: scrubs (StorageDrivers), vPool creation and deletion (framework)");

  task.command("show")
    .description("show a task: state, progress, result or error")
    .argument("<id>", "task id, as `ovs vdisk scrub --no-wait` printed it")
    .option("--json", "print the API's JSON")
    .action((id: string, options: { json?: boolean }, command: Command) => run(async () => {
      const info = await apiClientOf(command).request("GET", taskPath(id)) as TaskInfo;
      if (options.json === true) {
        print(JSON.stringify(info, null, 2));
        return;
      }
      const lines: Array<[string, string]> = [
        ["id", info.id], ["kind", info.kind], subjectOf(info), ["state", info.state], ["progress", progressText(info)],
        ["created", info.createdAt], ["started", info.startedAt ?? "-"], ["finished", info.finishedAt ?? "-"],
      ];
      if (info.result !== undefined && info.result !== null && typeof info.result === "object") {
        for (const [key, value] of Object.entries(info.result)) lines.push([`result.${key}`, String(value)]);
      }
      if (info.error !== undefined) lines.push(["error", `${info.error.message} (${info.error.code})`]);
      print(formatKeyValues(lines));
    }));

  task.command("ls")
    .alias("list")
    .description("list the tasks the framework and the StorageDrivers remember")
    .option("--json", "print the API's JSON instead of a table")
    .action((options: { json?: boolean }, command: Command) => run(async () => {
      const listed = await apiClientOf(command).request("GET", "/tasks") as { tasks: TaskInfo[] };
      if (options.json === true) {
        print(JSON.stringify(listed.tasks, null, 2));
        return;
      }
      if (listed.tasks.length === 0) {
        print("no tasks: `ovs vdisk scrub NAME` starts one");
        return;
      }
      const rows = listed.tasks.map((info) => [info.id, info.kind, subjectOf(info).join(" "), info.state, progressText(info), info.createdAt]);
      print(formatTable(["id", "kind", "on", "state", "progress", "created"], rows));
    }));
}

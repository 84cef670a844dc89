// The framework's own long actions (creating and deleting a vPool: starting or stopping its
// StorageDriver), kept as tasks in the model (DATA/framework.db) so they outlive the request and,
// once finished, a restart. They are shown in the same shape as a StorageDriver's tasks (scrubs),
// with `vpool` where those have `vdisk`, so GET /api/tasks and `ovs task` show both alike. A task
// an `ovs up` left running when it died is marked failed on the next start.
import { httpErrorResponse } from "../../../volumedriver/src/storagedriver/http-errors.ts";
import type { Task, Tasks } from "../model/task-repository.ts";
import { isModelError } from "../model/model-error.ts";

export interface FrameworkTaskView {
  id: string;
  kind: string;
  vpool: string;
  state: Task["state"];
  progress: { phase: string; done: number; total: number };
  result?: unknown;
  error?: { code: string; message: string };
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
}

/** The work of a task: says what it is doing (phase, fraction done), resolves with the result. */
export type FrameworkTaskWork = (report: (phase: string, fraction: number) => void) => Promise<unknown>;

/** Progress is shown as done/total out of this. */
const PROGRESS_STEPS = 100;

export class FrameworkTasks {
  /** The phase of each unfinished task (the model keeps the fraction; the words live while it runs). */
  private readonly phases = new Map<string, string>();
  /** The tasks under way. */
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly tasks: Tasks) {}

  /** Marks the tasks a previous run left unfinished as failed. */
  failInterrupted(): number {
    let count = 0;
    for (const state of ["queued", "running"] as const) {
      for (const task of this.tasks.list({ state })) {
        this.tasks.update(task.id, { state: "failed", error: { code: "INTERRUPTED", message: "ovs up stopped while this task ran: look at the state of its vPool and run the action again if needed" } });
        count++;
      }
    }
    return count;
  }

  /** Starts `work` as a task of `kind` on `vpool`; returns its view at once (queued). */
  start(kind: string, vpool: string, work: FrameworkTaskWork): FrameworkTaskView {
    const task = this.tasks.create({ kind, subject: vpool });
    const done = this.run(task.id, work).finally(() => this.running.delete(done));
    this.running.add(done);
    return this.view(task);
  }

  /** The task's view; undefined when the framework has no such task (it may be a StorageDriver's). */
  get(id: string): FrameworkTaskView | undefined {
    try {
      return this.view(this.tasks.get(id));
    } catch (error) {
      if (isModelError(error, "NotFound")) return undefined;
      throw error;
    }
  }

  list(): FrameworkTaskView[] {
    return this.tasks.list().map((task) => this.view(task));
  }

  /** Waits for the tasks under way (a stopping `ovs up`). */
  async settle(): Promise<void> {
    await Promise.all(this.running);
  }

  private async run(id: string, work: FrameworkTaskWork): Promise<void> {
    this.tasks.update(id, { state: "running" });
    this.phases.set(id, "starting");
    try {
      const result = await work((phase, fraction) => {
        this.phases.set(id, phase);
        this.tasks.update(id, { progress: Math.min(Math.max(fraction, 0), 1) });
      });
      this.tasks.update(id, { state: "succeeded", result: result ?? null });
    } catch (error) {
      this.tasks.update(id, { state: "failed", error: httpErrorResponse(error).body.error });
    } finally {
      this.phases.delete(id);
    }
  }

  private view(task: Task): FrameworkTaskView {
    const phase = task.state === "succeeded" || task.state === "failed" ? "done" : (this.phases.get(task.id) ?? task.state);
    return {
      id: task.id, kind: task.kind, vpool: task.subject ?? "",
      state: task.state,
      progress: { phase, done: Math.round(task.progress * PROGRESS_STEPS), total: PROGRESS_STEPS },
      ...(task.result === null || task.result === undefined ? {} : { result: task.result }),
      ...(task.error === null ? {} : { error: task.error }),
      createdAt: task.createdAt,
      ...(task.startedAt === null ? {} : { startedAt: task.startedAt }),
      ...(task.finishedAt === null ? {} : { finishedAt: task.finishedAt }),
    };
  }
}

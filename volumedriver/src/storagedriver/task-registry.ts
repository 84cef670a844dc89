// The StorageDriver's background tasks (scrubs): long operations the management API starts and
// answers at once (202 with the task), which callers then follow with GET /tasks/:id. Tasks live in
// memory only: a restarted StorageDriver has none. Everything is bounded: tasks running at once,
// tasks waiting, finished tasks remembered, and one active task per kind and vDisk.
import { randomUUID } from "node:crypto";
import { HttpError } from "./http-errors.ts";

export type TaskState = "queued" | "running" | "succeeded" | "failed";

export interface TaskProgress {
  /** What the task is doing now; "queued" before it starts, "done" once it has finished. */
  phase: string;
  done: number;
  total: number;
}

export interface TaskFailure {
  code: string;
  message: string;
}

export interface TaskInfo {
  id: string;
  /** What the task does, e.g. "scrub". */
  kind: string;
  vdisk: string;
  state: TaskState;
  progress: TaskProgress;
  /** The operation's result, once succeeded. */
  result?: unknown;
  /** Why it failed, in the API's error form, once failed. */
  error?: TaskFailure;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
}

export interface TaskRegistrySettings {
  /** Tasks run at once; the others wait their turn in submission order. Default 1 (scrubs are heavy). */
  runningTasksMax: number;
  /** Tasks waiting to run; more are refused (503 BUSY). Default 32. */
  queuedTasksMax: number;
  /** Finished tasks remembered for GET /tasks; the oldest are forgotten first. Default 100. */
  finishedTasksKeptMax: number;
}

export const TASK_REGISTRY_DEFAULTS: TaskRegistrySettings = { runningTasksMax: 1, queuedTasksMax: 32, finishedTasksKeptMax: 100 };

export interface TaskRegistryOptions extends Partial<TaskRegistrySettings> {
  /** How an error of a failed task is told to the caller (the API's {code, message}). */
  describeError: (error: unknown) => TaskFailure;
  nowMs?: () => number;
  newId?: () => string;
}

/** The work of a task: reports progress as it goes, resolves with its result. */
export type TaskWork = (reportProgress: (progress: TaskProgress) => void) => Promise<unknown>;

interface Task {
  info: TaskInfo;
  work: TaskWork;
}

export class TaskRegistry {
  private readonly settings: TaskRegistrySettings;
  private readonly describeError: (error: unknown) => TaskFailure;
  private readonly nowMs: () => number;
  private readonly newId: () => string;
  /** Every task remembered, in submission order (Map keeps insertion order). */
  private readonly tasks = new Map<string, Task>();
  private readonly queue: Task[] = [];
  private runningCount = 0;
  private finishedIds: string[] = [];
  private closed = false;

  constructor(options: TaskRegistryOptions) {
    this.settings = {
      runningTasksMax: options.runningTasksMax ?? TASK_REGISTRY_DEFAULTS.runningTasksMax,
      queuedTasksMax: options.queuedTasksMax ?? TASK_REGISTRY_DEFAULTS.queuedTasksMax,
      finishedTasksKeptMax: options.finishedTasksKeptMax ?? TASK_REGISTRY_DEFAULTS.finishedTasksKeptMax,
    };
    for (const [key, value] of Object.entries(this.settings)) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`TaskRegistry ${key} must be a whole number >= 1, not ${value}`);
    }
    this.describeError = options.describeError;
    this.nowMs = options.nowMs ?? Date.now;
    this.newId = options.newId ?? randomUUID;
  }

  /**
   * Queues a task and starts it when a slot is free. Refused with 409 EXISTS while a task of the
   * same kind runs or waits for the same vDisk, and with 503 BUSY when the queue is full.
   */
  submit(kind: string, vdisk: string, work: TaskWork): TaskInfo {
    if (this.closed) {
      throw new HttpError(503, "CLOSED", "the StorageDriver is stopping: submit the task again once it is back");
    }
    const active = [...this.tasks.values()].find(({ info }) =>
      info.kind === kind && info.vdisk === vdisk && (info.state === "queued" || info.state === "running"));
    if (active !== undefined) {
      throw new HttpError(409, "EXISTS", `a ${kind} of vDisk ${vdisk} is ${active.info.state} already as task ${active.info.id}: follow it with GET /tasks/${active.info.id} (ovs task show ${active.info.id})`);
    }
    if (this.queue.length >= this.settings.queuedTasksMax) {
      throw new HttpError(503, "BUSY", `${this.queue.length} tasks are waiting already (at most ${this.settings.queuedTasksMax}): retry once some have finished (GET /tasks)`);
    }
    const info: TaskInfo = {
      id: this.newId(), kind, vdisk, state: "queued", progress: { phase: "queued", done: 0, total: 0 },
      createdAt: this.timestamp(),
    };
    const task: Task = { info, work };
    this.tasks.set(info.id, task);
    this.queue.push(task);
    this.startQueued();
    return copyOf(info);
  }

  get(id: string): TaskInfo | undefined {
    const task = this.tasks.get(id);
    return task === undefined ? undefined : copyOf(task.info);
  }

  /** Every task remembered, oldest first. */
  list(): TaskInfo[] {
    return [...this.tasks.values()].map((task) => copyOf(task.info));
  }

  /**
   * Starts no more tasks; those still waiting fail with CLOSED. Running ones are left to finish or
   * to be abandoned when the process exits.
   */
  close(): void {
    this.closed = true;
    for (const task of this.queue.splice(0)) {
      this.finish(task, "failed", { error: { code: "CLOSED", message: "the StorageDriver stopped before the task started: submit it again once it is back" } });
    }
  }

  private startQueued(): void {
    while (!this.closed && this.runningCount < this.settings.runningTasksMax) {
      const task = this.queue.shift();
      if (task === undefined) return;
      this.runningCount++;
      task.info.state = "running";
      task.info.startedAt = this.timestamp();
      task.info.progress = { phase: "starting", done: 0, total: 0 };
      void this.run(task);
    }
  }

  private async run(task: Task): Promise<void> {
    const reportProgress = (progress: TaskProgress): void => {
      if (task.info.state === "running") task.info.progress = { phase: progress.phase, done: progress.done, total: progress.total };
    };
    try {
      const result = await task.work(reportProgress);
      const last = task.info.progress;
      this.finish(task, "succeeded", { result, progress: { phase: "done", done: last.total, total: last.total } });
    } catch (error) {
      this.finish(task, "failed", { error: this.describeError(error) });
    } finally {
      this.runningCount--;
      this.startQueued();
    }
  }

  private finish(task: Task, state: "succeeded" | "failed", outcome: { result?: unknown; error?: TaskFailure; progress?: TaskProgress }): void {
    task.info.state = state;
    task.info.finishedAt = this.timestamp();
    if (outcome.progress !== undefined) task.info.progress = outcome.progress;
    if (outcome.result !== undefined) task.info.result = outcome.result;
    if (outcome.error !== undefined) task.info.error = outcome.error;
    this.finishedIds.push(task.info.id);
    while (this.finishedIds.length > this.settings.finishedTasksKeptMax) {
      const forgotten = this.finishedIds.shift();
      if (forgotten !== undefined) this.tasks.delete(forgotten);
    }
  }

  private timestamp(): string {
    return new Date(this.nowMs()).toISOString();
  }
}

function copyOf(info: TaskInfo): TaskInfo {
  return { ...info, progress: { ...info.progress }, ...(info.error === undefined ? {} : { error: { ...info.error } }) };
}

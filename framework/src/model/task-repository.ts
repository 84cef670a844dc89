// Tasks: long actions (clone, scrub, rollback, resize) the API answers at once with an id and the
// caller then follows. A task moves queued -> running -> succeeded | failed (or queued -> failed when
// it is cancelled before it starts); a finished task never changes again. Progress is a fraction
// 0..1 (1 once succeeded). The finished tasks kept are bounded: creating a task forgets the oldest
// finished ones beyond FINISHED_TASKS_KEPT_MAX.
import assert from "node:assert/strict";
import { requireName, requireOnlyKeys, requireRecord, requireString, toJsonColumn } from "./field-checks.ts";
import { insertUnique, parseJsonColumn, type ModelContext } from "./model-context.ts";
import { conflict, invalid, notFound } from "./model-error.ts";
import { TASK_STATES } from "./model-schema.ts";

export type TaskState = (typeof TASK_STATES)[number];

/** Why a task failed, in the API's error form. */
export interface TaskError {
  code: string;
  message: string;
}

export interface Task {
  id: string;
  /** What it does, e.g. "clone" or "scrub". */
  kind: string;
  /** What it acts on, e.g. a vPool's name; null when it was not said. */
  subject: string | null;
  state: TaskState;
  /** Fraction done, 0..1. */
  progress: number;
  /** What it produced, once succeeded. */
  result: unknown;
  error: TaskError | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface TaskChange {
  state?: TaskState;
  progress?: number;
  /** Only with state "succeeded". */
  result?: unknown;
  /** Required with state "failed". */
  error?: TaskError;
}

export const FINISHED_TASKS_KEPT_MAX = 10_000;
/** The most tasks one list() returns. */
export const TASKS_LISTED_MAX = 1000;

const TASK_KIND_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
const NEXT_STATES: Record<TaskState, readonly TaskState[]> = {
  queued: ["queued", "running", "failed"],
  running: ["running", "succeeded", "failed"],
  succeeded: [],
  failed: [],
};

interface TaskRow {
  id: string; kind: string; subject: string | null; state: TaskState; progress: number; result_json: string | null; error_json: string | null;
  created_at: string; started_at: string | null; finished_at: string | null;
}

function toTask(row: TaskRow): Task {
  return {
    id: row.id, kind: row.kind, subject: row.subject, state: row.state, progress: row.progress,
    result: row.result_json === null ? null : parseJsonColumn<unknown>(row.result_json),
    error: row.error_json === null ? null : parseJsonColumn<TaskError>(row.error_json),
    createdAt: row.created_at, startedAt: row.started_at, finishedAt: row.finished_at,
  };
}

function checkError(value: unknown): TaskError {
  const raw = requireRecord(value, "task error");
  requireOnlyKeys(raw, ["code", "message"], "task error");
  return { code: requireString(raw.code, "task error code", 64), message: requireString(raw.message, "task error message", 4096) };
}

export class Tasks {
  constructor(private readonly context: ModelContext, private readonly finishedTasksKeptMax = FINISHED_TASKS_KEPT_MAX) {
    assert.ok(Number.isSafeInteger(finishedTasksKeptMax) && finishedTasksKeptMax >= 0, "finishedTasksKeptMax is a count");
  }

  /** A new queued task with a fresh id. */
  create(input: { kind: string; subject?: string }): Task {
    const raw = requireRecord(input, "task");
    requireOnlyKeys(raw, ["kind", "subject"], "task");
    const kind = requireName(raw.kind, "task kind", TASK_KIND_PATTERN, "1-63 characters of a-z, 0-9 and '-', starting with a letter");
    const subject = raw.subject === undefined ? null : requireString(raw.subject, "task subject", 255);
    const id = this.context.newId();
    this.context.database.transaction(() => {
      insertUnique(
        () => this.context.database.prepare("INSERT INTO tasks (id, kind, subject, state, progress, created_at) VALUES (?, ?, ?, 'queued', 0, ?)")
          .run(id, kind, subject, this.context.nowIso()),
        `task id ${id} is taken: the id source repeats itself (a bug)`,
      );
      this.forgetOldFinished();
    })();
    return this.get(id);
  }

  get(id: string): Task {
    const row = this.context.database.prepare("SELECT * FROM tasks WHERE id = ?").get(id) as TaskRow | undefined;
    if (row === undefined) throw notFound(`no task ${id}: it never existed or finished long ago; list the tasks to see the ones kept`);
    return toTask(row);
  }

  /** The newest tasks first, optionally of one state, at most `limit` (default and bound TASKS_LISTED_MAX). */
  list(filter: { state?: TaskState; limit?: number } = {}): Task[] {
    const limit = Math.min(filter.limit ?? TASKS_LISTED_MAX, TASKS_LISTED_MAX);
    const rows = this.context.database.prepare("SELECT * FROM tasks WHERE ? IS NULL OR state = ? ORDER BY created_at DESC, id LIMIT ?")
      .all(filter.state ?? null, filter.state ?? null, limit) as TaskRow[];
    return rows.map(toTask);
  }

  /** Records a step: start, progress, success with a result, or failure with an error. */
  update(id: string, change: TaskChange): Task {
    requireOnlyKeys(requireRecord(change, "task change"), ["state", "progress", "result", "error"], "task change");
    const current = this.get(id);
    const state = change.state ?? current.state;
    if (!NEXT_STATES[current.state].includes(state)) {
      throw conflict(`task ${id} is ${current.state} and cannot become ${state}${current.finishedAt === null ? "" : ": it has finished"}`);
    }
    let progress = change.progress ?? current.progress;
    if (typeof progress !== "number" || !(progress >= 0 && progress <= 1)) throw invalid(`task progress must be a fraction from 0 to 1, got ${JSON.stringify(progress)}`);
    if (state === "succeeded") progress = 1;
    if (change.result !== undefined && state !== "succeeded") throw invalid("a task has a result only once it has succeeded");
    if (change.error !== undefined && state !== "failed") throw invalid("a task has an error only once it has failed");
    if (state === "failed" && change.error === undefined) throw invalid("a failed task needs an error {code, message} saying why");
    const now = this.context.nowIso();
    this.context.database.prepare(
      "UPDATE tasks SET state = ?, progress = ?, result_json = ?, error_json = ?, started_at = ?, finished_at = ? WHERE id = ?",
    ).run(
      state, progress,
      change.result === undefined ? null : toJsonColumn(change.result, "task result"),
      change.error === undefined ? null : JSON.stringify(checkError(change.error)),
      current.startedAt ?? (state === "running" ? now : null),
      state === "succeeded" || state === "failed" ? now : null,
      id,
    );
    return this.get(id);
  }

  /** Forgets a finished task; one still queued or running is refused. */
  delete(id: string): void {
    const task = this.get(id);
    if (task.finishedAt === null) throw conflict(`task ${id} is ${task.state}: wait until it has finished`);
    this.context.database.prepare("DELETE FROM tasks WHERE id = ?").run(id);
  }

  private forgetOldFinished(): void {
    this.context.database.prepare(
      `DELETE FROM tasks WHERE id IN (
         SELECT id FROM tasks WHERE finished_at IS NOT NULL ORDER BY finished_at DESC, id LIMIT -1 OFFSET ?)`,
    ).run(this.finishedTasksKeptMax);
  }
}

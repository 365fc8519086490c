/**
 * Task identity for lock ownership on the single-threaded kernel.
 *
 * The emulated kernel runs many logical threads of control (uapi calls, driver work items,
 * device completions) as interleaved async flows on one JS thread. Lock rules such as "the
 * caller must hold the resv lock" or "recursive locking deadlocks" need to know *which* flow is
 * running, as lockdep knows `current`. Each flow runs inside runInTask(); code outside any task
 * runs as ROOT_TASK, for which ownership checks degrade to "held by someone".
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface Task {
  readonly id: number;
  readonly name: string;
}

export const ROOT_TASK: Task = Object.freeze({ id: 0, name: 'root' });

let storage: AsyncLocalStorage<Task> | undefined;
let nextId = 1;

/** The task the caller runs in (ROOT_TASK outside runInTask). Cheap; no hooks until first use. */
export function currentTask(): Task {
  return storage?.getStore() ?? ROOT_TASK;
}

/**
 * Run `fn` as a new task: locks it takes are owned by that task across every await inside it.
 * Called by: uapi entry points, driver work queues, tests that check lock ownership.
 */
export function runInTask<T>(name: string, fn: () => T): T {
  storage ??= new AsyncLocalStorage<Task>();
  return storage.run({ id: nextId++, name }, fn);
}

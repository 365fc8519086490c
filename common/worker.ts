/**
 * Starting worker threads from TypeScript sources, solved once.
 *
 * Node 20 cannot load a `.ts` worker entry, and it does not apply `--import` loader hooks to a
 * worker's entry module either. So a `.ts` entry is started through `worker-bootstrap.mjs`, which
 * registers tsx's ESM hooks inside the new thread and then imports the real entry (passed in
 * workerData). A built `.js` entry (dist/) starts directly. Works from any cwd and inside
 * vitest's forked test processes.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

const bootstrap = new URL('./worker-bootstrap.mjs', import.meta.url);

// Every worker p2pemu starts, until it exits: lets a run (and the test suite) prove it left none
// behind. Node does not list workers among process.getActiveResourcesInfo().
const live = new Map<Worker, string>();

/** new Worker() for a `.ts` or `.js` entry. Callers own the worker's lifecycle (terminate/join). */
export function spawnWorker(entry: URL, options: WorkerOptions = {}): Worker {
  const w = entry.pathname.endsWith('.ts')
    ? new Worker(bootstrap, {
        ...options,
        workerData: { ...(options.workerData ?? {}), __p2pemuEntry: entry.href },
      })
    : new Worker(entry, options);
  live.set(w, entry.pathname.split('/').slice(-2).join('/'));
  w.once('exit', () => live.delete(w));
  return w;
}

/** Workers started by spawnWorker that have not exited yet, with their entry file. */
export function liveWorkers(): Array<{ worker: Worker; entry: string }> {
  return [...live].map(([worker, entry]) => ({ worker, entry }));
}

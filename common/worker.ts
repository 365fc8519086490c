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

/** new Worker() for a `.ts` or `.js` entry. Callers own the worker's lifecycle (terminate/join). */
export function spawnWorker(entry: URL, options: WorkerOptions = {}): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, options);
  const data = { ...(options.workerData ?? {}), __p2pemuEntry: entry.href };
  return new Worker(bootstrap, { ...options, workerData: data });
}

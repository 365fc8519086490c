/**
 * Suite-wide leak check (vitest setupFiles): after each test file, every worker started through
 * spawnWorker must have exited, and no MessagePort or child process may stay open. A leak fails
 * the file with the names of what was left.
 *
 * Releases lag the events callers wait for (terminate() resolves before 'exit'; libuv frees a
 * process handle a loop turn after 'close'), so the check gives them a short deadline to settle
 * before it counts.
 */
import { afterAll } from 'vitest';
import { liveWorkers } from '../../common/worker.ts';

const WATCHED = ['MessagePort', 'ProcessWrap'] as const;
const SETTLE_MS = 2_000;

function count(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
  return m;
}

const baseline = count();

function leaks(): string[] {
  const now = count();
  const out = WATCHED.map((k) => [k, (now.get(k) ?? 0) - (baseline.get(k) ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k}`);
  const workers = liveWorkers();
  if (workers.length > 0) out.push(`${workers.length} worker(s): ${workers.map((w) => w.entry).join(', ')}`);
  return out;
}

afterAll(async () => {
  const end = performance.now() + SETTLE_MS;
  let left = leaks();
  while (left.length > 0 && performance.now() < end) {
    await new Promise((r) => setTimeout(r, 10));
    left = leaks();
  }
  if (left.length > 0) throw new Error(`leak check: this test file left behind ${left.join('; ')}`);
});

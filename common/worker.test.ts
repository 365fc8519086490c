import { describe, expect, it } from 'vitest';
import { withDeadline } from './deadline.ts';
import { spawnWorker } from './worker.ts';

describe('worker', () => {
  it('worker - a .ts entry starts and answers over SharedArrayBuffer Atomics', async () => {
    const sab = new SharedArrayBuffer(8);
    const word = new Int32Array(sab);
    const w = spawnWorker(new URL('./fixtures/echo-worker.ts', import.meta.url), { workerData: { sab } });
    const exited = new Promise<number>((resolve) => w.once('exit', resolve));
    try {
      const reply = Atomics.waitAsync(word, 1, 0, 10_000);
      Atomics.store(word, 0, 1);
      Atomics.notify(word, 0);
      await withDeadline(reply.async ? reply.value : Promise.resolve(reply.value), 10_000, 'worker reply');
      expect(Atomics.load(word, 1)).toBe(42);
      expect(await withDeadline(exited, 10_000, 'worker exit')).toBe(0);
    } finally {
      await w.terminate();
    }
  });
});

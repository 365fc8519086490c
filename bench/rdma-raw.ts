/**
 * Raw baselines of the RDMA bench (bench/rdma.ts), measured in the same run as the emulator:
 *   - `rawSetGBps`: `dst.set(src)` between two device memories (what a perfect NIC data path
 *     would cost in this process: one memcpy, no queues, no translation);
 *   - `pingPongRttUs`: the median round trip of a raw two-worker Atomics ping-pong, both sides
 *     spinning (bench/fixtures/pingpong-worker.ts), the floor of any cross-thread
 *     request/response, which an RDMA WRITE's post -> completion is.
 * Wall clock of this machine only.
 */
import { spawnWorker } from '../common/worker.ts';

/** GB/s (10^9 bytes/s) of `dst.set(src)` repeated for about `budgetMs` after three warm-up copies. */
export function rawSetGBps(src: Uint8Array, dst: Uint8Array, budgetMs: number): number {
  for (let i = 0; i < 3; i++) dst.set(src);
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    dst.set(src);
    n++;
    t = performance.now();
  } while (t - t0 < budgetMs);
  return (src.length * n) / ((t - t0) / 1000) / 1e9;
}

const PINGPONG_WORKER = new URL('./fixtures/pingpong-worker.ts', import.meta.url);

/**
 * Median round trip in microseconds of up to `iters` ping-pongs between two spinning workers,
 * stopping after `maxMs`, and how many were done. Both workers are terminated before this
 * returns, or throws (a worker error; no result within maxMs + 60 s).
 */
export async function pingPongRttUs(iters: number, maxMs: number): Promise<{ us: number; samples: number }> {
  const sab = new SharedArrayBuffer(32);
  const ws = [0, 1].map((role) => spawnWorker(PINGPONG_WORKER, { workerData: { sab, role, iters, maxMs } }));
  try {
    const w = new Int32Array(sab);
    const failed = new Promise<never>((_, reject) => {
      for (const x of ws) x.once('error', reject);
    });
    const r = Atomics.waitAsync(w, 2, 0, maxMs + 60_000);
    if (r.async) await Promise.race([r.value, failed]);
    const samples = Atomics.load(w, 4);
    if (Atomics.load(w, 2) !== 1 || samples === 0)
      throw new Error(`rdma bench: the ping-pong workers did no round trip within ${maxMs} ms`);
    return { us: Atomics.load(w, 1) / 1000, samples };
  } finally {
    await Promise.all(ws.map((x) => x.terminate()));
  }
}

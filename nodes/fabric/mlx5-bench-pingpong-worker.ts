/**
 * Baseline of the mlx5 latency benchmark (kernel/infiniband/mlx5-bench.ts): one side of a raw
 * two-worker Atomics ping-pong over one shared word, both sides spinning (no futex), which is the
 * floor any cross-thread request/response in the emulator can reach on this machine.
 *
 * workerData: { sab, role: 0 (pinger, measures) | 1 (ponger), iters }. The pinger stores the
 * median round trip in microseconds (x1000, as an integer) at word 1 and then DONE at word 2.
 */
import { workerData } from 'node:worker_threads';

const { sab, role, iters } = workerData as { sab: SharedArrayBuffer; role: 0 | 1; iters: number };
const w = new Int32Array(sab);
const PING = 0;
const RESULT = 1;
const DONE = 2;
const READY = 3;

Atomics.add(w, READY, 1);
while (Atomics.load(w, READY) < 2) {
  // both sides attached before the clock starts
}
if (role === 0) {
  const rtt = new Float64Array(iters);
  for (let i = 0; i < iters; i++) {
    const t = performance.now();
    // ping: 2i+1; the ponger answers 2i+2.
    Atomics.store(w, PING, 2 * i + 1);
    while (Atomics.load(w, PING) !== 2 * i + 2) {
      // spin
    }
    rtt[i] = performance.now() - t;
  }
  rtt.sort();
  Atomics.store(w, RESULT, Math.round(rtt[iters >> 1] * 1e6));
  Atomics.store(w, DONE, 1);
  Atomics.notify(w, DONE);
} else {
  for (let i = 0; i < iters; i++) {
    while (Atomics.load(w, PING) !== 2 * i + 1) {
      // spin
    }
    Atomics.store(w, PING, 2 * i + 2);
  }
}

/**
 * Consumer worker of the ring micro-benchmark (ring.bench.ts): drains `total` messages as a
 * device would (doorbell, bounded sleeps), folds word 0 of each into a checksum, and rings the
 * "space" doorbell after every burst so a producer waiting for free slots wakes up.
 *
 * Control words (RingBenchCtl, ring.bench.ts): the producer rings DB; this worker rings SPACE,
 * stores SUM, then DONE = 1 with a notify.
 */
import { workerData } from 'node:worker_threads';
import { doorbellRead, doorbellRing, doorbellWait } from './doorbell.ts';
import { RingConsumer } from './ring.ts';
import { RingBenchCtl } from './ring-bench-layout.ts';

const { ring, ctlSab, total, spinMs } = workerData as {
  ring: SharedArrayBuffer;
  ctlSab: SharedArrayBuffer;
  total: number;
  spinMs: number;
};
const ctl = new Int32Array(ctlSab);
const c = new RingConsumer(ring);
const w = c.words;
let got = 0;
let sum = 0;
// publish: the consumer is attached; the producer starts its clock after this.
Atomics.store(ctl, RingBenchCtl.READY, 1);
Atomics.notify(ctl, RingBenchCtl.READY);
while (got < total) {
  // load the count before looking at the ring, so a ring after this point ends the wait at once.
  const seen = doorbellRead(ctl, RingBenchCtl.DB);
  let s = c.peek();
  if (s < 0) {
    const end = performance.now() + spinMs;
    while (s < 0 && performance.now() < end) s = c.peek();
    if (s < 0) {
      doorbellWait(ctl, RingBenchCtl.DB, seen, 50);
      continue;
    }
  }
  while (s >= 0) {
    sum = (sum + w[s]) | 0;
    c.release();
    got++;
    s = c.peek();
  }
  doorbellRing(ctl, RingBenchCtl.SPACE);
}
Atomics.store(ctl, RingBenchCtl.SUM, sum);
// publish: SUM above is final once DONE reads 1.
Atomics.store(ctl, RingBenchCtl.DONE, 1);
Atomics.notify(ctl, RingBenchCtl.DONE);

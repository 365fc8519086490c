/**
 * Control words of the ring micro-benchmark (ring.bench.ts and ring-bench-worker.ts), kept
 * apart so that importing them starts no worker code.
 */
import { layoutCheck } from './layout.ts';

export const RingBenchCtl = {
  /** Producer -> consumer doorbell (COUNT, NEED_WAKEUP). */
  DB: 0,
  DB_NEED_WAKEUP: 1,
  /** Consumer -> producer "slots freed" doorbell. */
  SPACE: 16,
  SPACE_NEED_WAKEUP: 17,
  /** Consumer attached. */
  READY: 32,
  /** Consumer finished; SUM is final. */
  DONE: 33,
  /** (sum of word 0 of every message) | 0. */
  SUM: 34,
} as const;
export const RING_BENCH_CTL_WORDS = 48;

layoutCheck('RingBenchCtl', RingBenchCtl, RING_BENCH_CTL_WORDS, 192);

/**
 * Micro-benchmark of the descriptor ring (ring.ts) and doorbell (doorbell.ts): small messages
 * per second for several batch sizes (slots published per doorbell ring).
 *
 *  - sameThread: post a batch, consume it, repeat, on one thread: the ring's own cost per
 *    message (claim, payload stores, SEQ store; peek, payload load, TAIL store).
 *  - crossThread: the kernel's shape. This thread produces (never blocking: when the ring is
 *    full it awaits the consumer's "space" doorbell with Atomics.waitAsync), a worker consumes
 *    like a device (spin briefly, then sleep on the doorbell in bounded slices).
 *
 * Wall clock of this machine only (the emulator's own cost), never a modelled-hardware figure.
 * Not wired into the CLI registry (bench/ is another area); call runRingBench() from there.
 */
import { withDeadline } from '../../common/deadline.ts';
import { spawnWorker } from '../../common/worker.ts';
import { doorbellDisarm, doorbellRead, doorbellRing, doorbellWaitAsync } from './doorbell.ts';
import { RingConsumer, RingProducer } from './ring.ts';
import { RING_BENCH_CTL_WORDS, RingBenchCtl } from './ring-bench-layout.ts';
import { ringCreate } from './ring-layout.ts';

export interface RingBenchOpts {
  /** Messages per measurement. Default 2_000_000. */
  messages?: number;
  /** Batch sizes to measure. Default [1, 16, 64]. */
  batches?: readonly number[];
  /** Ring slots (power of two). Default 1024. */
  slots?: number;
  /** Consumer busy-poll before sleeping, ms. Default 0.2. */
  spinMs?: number;
}

/** One row; rates in messages per second. */
export interface RingBenchRow {
  batch: number;
  messages: number;
  sameThreadMps: number;
  crossThreadMps: number;
}

const SLOT_PAYLOAD = 4; // words written per message: a small descriptor

/** Producer and consumer on one thread: `messages` in batches of `batch`. Messages/s. */
function sameThread(slots: number, messages: number, batch: number): number {
  const sab = ringCreate(slots);
  const p = new RingProducer(sab);
  const c = new RingConsumer(sab);
  const pw = p.words;
  const cw = c.words;
  const step = Math.min(batch, slots);
  let sum = 0;
  const t0 = performance.now();
  for (let sent = 0; sent < messages; ) {
    const n = Math.min(step, messages - sent);
    for (let i = 0; i < n; i++) {
      const s = p.claim();
      for (let k = 0; k < SLOT_PAYLOAD; k++) pw[s + k] = sent + i + k;
      p.commit();
    }
    p.flush();
    for (let s = c.peek(); s >= 0; s = c.peek()) {
      sum = (sum + cw[s]) | 0;
      c.release();
    }
    sent += n;
  }
  const dt = performance.now() - t0;
  if (sum !== expectedSum(messages)) throw new Error('ring bench: same-thread checksum mismatch');
  return messages / (dt / 1000);
}

/** This thread produces, a worker consumes. Messages/s from the first post to DONE. */
async function crossThread(slots: number, messages: number, batch: number, spinMs: number): Promise<number> {
  const ring = ringCreate(slots);
  const ctlSab = new SharedArrayBuffer(RING_BENCH_CTL_WORDS * 4);
  const ctl = new Int32Array(ctlSab);
  const worker = spawnWorker(new URL('./ring-bench-worker.ts', import.meta.url), {
    workerData: { ring, ctlSab, total: messages, spinMs },
  });
  try {
    const failed = new Promise<never>((_, reject) => worker.once('error', reject));
    await withDeadline(
      Promise.race([waitWord(ctl, RingBenchCtl.READY, 0), failed]),
      10_000,
      'ring bench: worker start',
    );
    const p = new RingProducer(ring);
    const w = p.words;
    const done = waitWord(ctl, RingBenchCtl.DONE, 0);
    const t0 = performance.now();
    let sent = 0;
    while (sent < messages) {
      // load before posting: a "space" ring after this load is not missed by the wait below.
      const spaceSeen = doorbellRead(ctl, RingBenchCtl.SPACE);
      let n = 0;
      for (; n < batch && sent < messages; n++, sent++) {
        const s = p.claim();
        if (s < 0) break;
        for (let k = 0; k < SLOT_PAYLOAD; k++) w[s + k] = sent + k;
        p.commit();
      }
      if (n > 0) {
        p.flush();
        doorbellRing(ctl, RingBenchCtl.DB);
        continue;
      }
      // full: sleep (asynchronously) until the consumer frees slots.
      const wait = doorbellWaitAsync(ctl, RingBenchCtl.SPACE, spaceSeen);
      if (wait !== null) {
        await Promise.race([wait, failed]);
        doorbellDisarm(ctl, RingBenchCtl.SPACE);
      }
    }
    await withDeadline(Promise.race([done, failed]), 60_000, 'ring bench: consumer done');
    const dt = performance.now() - t0;
    if (Atomics.load(ctl, RingBenchCtl.SUM) !== expectedSum(messages)) {
      throw new Error('ring bench: cross-thread checksum mismatch');
    }
    return messages / (dt / 1000);
  } finally {
    await worker.terminate();
  }
}

/** Resolve once ctl[word] is no longer `old` (Atomics.waitAsync, never blocks). */
async function waitWord(ctl: Int32Array, word: number, old: number): Promise<void> {
  while (Atomics.load(ctl, word) === old) {
    const r = Atomics.waitAsync(ctl, word, old);
    if (r.async) await r.value;
  }
}

// (sum of 0..n-1) | 0, computed the way the consumers fold it.
function expectedSum(n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s = (s + i) | 0;
  return s;
}

/**
 * Measure both shapes for each batch size. Spawns one worker per row and terminates it.
 * Called by: bench tooling, by hand (`node --import tsx -e ...`). Throws: Error on a checksum
 * mismatch (a ring bug, not a measurement) or ETIMEDOUT if the consumer stalls.
 */
export async function runRingBench(opts: RingBenchOpts = {}): Promise<RingBenchRow[]> {
  const messages = opts.messages ?? 2_000_000;
  const slots = opts.slots ?? 1024;
  const spinMs = opts.spinMs ?? 0.2;
  const rows: RingBenchRow[] = [];
  for (const batch of opts.batches ?? [1, 16, 64]) {
    sameThread(slots, Math.min(messages, 10_000), batch); // warm-up
    rows.push({
      batch,
      messages,
      sameThreadMps: sameThread(slots, messages, batch),
      crossThreadMps: await crossThread(slots, messages, batch, spinMs),
    });
  }
  return rows;
}

/** Rows as a text table (millions of messages per second). */
export function formatRingBench(rows: readonly RingBenchRow[]): string {
  const lines = ['batch  messages   same-thread Mmsg/s  cross-thread Mmsg/s'];
  for (const r of rows) {
    lines.push(
      `${String(r.batch).padStart(5)}  ${String(r.messages).padStart(9)}  ${(r.sameThreadMps / 1e6).toFixed(2).padStart(18)}  ${(r.crossThreadMps / 1e6).toFixed(2).padStart(19)}`,
    );
  }
  return lines.join('\n');
}

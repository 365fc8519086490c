/**
 * The perftest loops of the RDMA bench (bench/rdma.ts), on one connected RC QP and its CQ:
 *   - `writeBwGBps` (ib_write_bw): RDMA WRITEs of one size streamed for about `budgetMs`, a
 *     window of WRs in flight, one signalled every 16, posted 16 per call (one doorbell);
 *   - `writeLatUs` (ib_write_lat): one signalled WRITE at a time, post -> spin-polled
 *     completion, median after a warm-up;
 *   - `msgRatePerSec`: small WRITEs posted `batch` per doorbell, one signalled per batch.
 * What they are compared against (raw `set`, the two-worker ping-pong) is bench/rdma-raw.ts.
 * Wall clock of this machine only. Every loop throws on a failed completion.
 */
import {
  type IbvCq,
  type IbvQp,
  IbvSendFlags,
  type IbvSendWr,
  type IbvWc,
  IbvWrOpcode,
  ibvPollCq,
  ibvPostSend,
} from '../nodes/uapi/verbs.ts';

/**
 * Longest a loop waits for one completion. The loops spin on the CQ with the event loop blocked,
 * so a NIC worker that died (its FATAL flag is set from an event-loop callback) would otherwise
 * hang the run: past this, the loop throws.
 */
export const COMPLETION_DEADLINE_MS = 10_000;

function noCompletion(what: string): never {
  throw new Error(
    `rdma bench: no completion for ${what} within ${COMPLETION_DEADLINE_MS} ms (NIC worker dead or stuck?)`,
  );
}

/** Makes WR number `i` of a run; `signaled` asks for a completion. */
export type WrMaker = (i: number, signaled: boolean) => IbvSendWr;

/** RDMA WRITE of `length` bytes from (`addr`, `lkey`) to (`remoteAddr`, `rkey`); inline copies the data into the WQE. */
export function rdmaWrite(
  length: number,
  src: { addr: number; lkey?: number },
  dst: { addr: number; rkey: number },
  inline = false,
): WrMaker {
  const sge = { addr: src.addr, length, lkey: inline ? 0 : (src.lkey ?? 0) };
  const rdma = { remote_addr: dst.addr, rkey: dst.rkey };
  return (i, signaled) => ({
    wr_id: i,
    opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
    send_flags: (signaled ? IbvSendFlags.IBV_SEND_SIGNALED : 0) | (inline ? IbvSendFlags.IBV_SEND_INLINE : 0),
    sg_list: [sge],
    wr: { rdma },
  });
}

/**
 * Post `total` WRs keeping at most `depth` in flight, `batchMax` per ibvPostSend, every
 * `sigEvery`-th (and the last) signalled; returns when the last one completed.
 */
export function stream(
  qp: IbvQp,
  cq: IbvCq,
  total: number,
  depth: number,
  sigEvery: number,
  batchMax: number,
  wr: WrMaker,
): void {
  const wc: IbvWc[] = [];
  const batch = Math.min(batchMax, depth);
  const sig = Math.min(sigEvery, batch);
  let posted = 0;
  let done = 0;
  let deadline = performance.now() + COMPLETION_DEADLINE_MS;
  while (done < total) {
    if (posted < total && posted - done + batch <= depth) {
      const n = Math.min(batch, total - posted);
      const list: IbvSendWr[] = [];
      for (let k = 0; k < n; k++, posted++)
        list.push(wr(posted, (posted + 1) % sig === 0 || posted === total - 1));
      ibvPostSend(qp, list);
    }
    const got = ibvPollCq(cq, 16, wc);
    if (got > 0) deadline = performance.now() + COMPLETION_DEADLINE_MS;
    // the clock is read only while nothing completes (a few ns per empty poll)
    else if (performance.now() > deadline) noCompletion(`WR ${done} of ${total}`);
    for (let k = 0; k < got; k++) {
      if (wc[k].status !== 0)
        throw new Error(`rdma bench: WR ${wc[k].wr_id} failed with status ${wc[k].status}`);
      done = wc[k].wr_id + 1;
    }
  }
}

/**
 * ib_write_bw: GB/s (10^9 bytes/s) of `size`-byte WRITEs made by `wr`, streamed for about
 * `budgetMs`, and how many WRs were timed.
 */
export function writeBw(
  qp: IbvQp,
  cq: IbvCq,
  size: number,
  budgetMs: number,
  wr: WrMaker,
): { gbps: number; wrs: number } {
  // 32 MiB in flight (4 to 256 WRs), as perftest's tx depth keeps the link busy.
  const depth = Math.max(4, Math.min(256, (32 << 20) / size));
  stream(qp, cq, 8, depth, 4, 4, wr); // warm-up
  let total = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    const n = Math.max(16, Math.ceil((256 << 20) / size / 4));
    stream(qp, cq, n, depth, 16, 16, wr);
    total += n;
    t = performance.now();
  } while (t - t0 < budgetMs);
  return { gbps: (size * total) / ((t - t0) / 1000) / 1e9, wrs: total };
}

/** A median over the samples a loop managed to take. */
export interface Sampled {
  value: number;
  samples: number;
  /** Every sample, ascending, microseconds (latency loops only). */
  sortedUs?: Float64Array;
}

/**
 * ib_write_lat: median microseconds from post to polled completion of one signalled WR, over up
 * to `iters` after up to `warmup` more, stopping after `maxMs` (and the warm-up after a quarter
 * of it). On a machine whose other load keeps the NIC worker and this thread off the cores at
 * the same time, every iteration costs a scheduler slice; the cap keeps the run bounded and
 * `samples` says how many counted.
 */
export function writeLatUs(
  qp: IbvQp,
  cq: IbvCq,
  wr: WrMaker,
  o: { iters: number; warmup: number; maxMs: number },
): Sampled {
  const wc: IbvWc[] = [];
  let i = 0;
  const once = (): number => {
    const w = wr(i, true);
    const t = performance.now();
    ibvPostSend(qp, w);
    let got = 0;
    for (let spins = 1; (got = ibvPollCq(cq, 1, wc)) === 0; spins++) {
      // spin: the perftest ib_write_lat way (the clock only every 4096 empty polls)
      if ((spins & 4095) === 0 && performance.now() - t > COMPLETION_DEADLINE_MS)
        noCompletion(`latency WR ${i}`);
    }
    const dt = performance.now() - t;
    if (got !== 1 || wc[0].status !== 0)
      throw new Error(`rdma bench: latency WR ${i} failed with status ${wc[0].status}`);
    i++;
    return dt;
  };
  const t0 = performance.now();
  for (let k = 0; k < o.warmup && performance.now() - t0 < o.maxMs / 4; k++) once();
  const lat = new Float64Array(o.iters);
  const t1 = performance.now();
  let n = 0;
  while (n < o.iters && (n === 0 || performance.now() - t1 < o.maxMs)) lat[n++] = once();
  const done = lat.subarray(0, n).sort();
  return { value: done[n >> 1] * 1000, samples: n, sortedUs: done.map((x) => x * 1000) };
}

/**
 * Messages per second of up to `n` WRs made by `wr`, `batch` per doorbell and one signalled per
 * batch, after `warmup` of them; stops after `maxMs` of measuring (at a chunk boundary).
 */
export function msgRatePerSec(
  qp: IbvQp,
  cq: IbvCq,
  wr: WrMaker,
  o: { batch: number; n: number; warmup: number; maxMs: number; depth?: number },
): Sampled {
  const depth = o.depth ?? 1024;
  const chunk = Math.min(o.n, 50 * depth);
  stream(qp, cq, o.warmup, depth, o.batch, o.batch, wr);
  let sent = 0;
  const t0 = performance.now();
  let t = t0;
  while (sent < o.n && (sent === 0 || t - t0 < o.maxMs)) {
    const k = Math.min(chunk, o.n - sent);
    stream(qp, cq, k, depth, o.batch, o.batch, wr);
    sent += k;
    t = performance.now();
  }
  return { value: sent / ((t - t0) / 1000), samples: sent };
}

/**
 * The completion side of a DeviceHost: the table of jobs in flight (indexed by fence seqno),
 * reaping the completion ring, and failing whatever the device will not complete. DeviceHost
 * owns the lifecycle and decides when each of these runs.
 *
 * Every job leaves the table exactly once, through finish(): with the completion the device
 * wrote, or with one the kernel made up (crash, destroy, hang). Once the timeline is shut
 * down the fence is the record of truth: a completion delivered then carries its fence's error.
 *
 * Thread: kernel (main thread) only.
 */
import { Errno } from '../../../common/errno.ts';
import { Cqe } from '../../fabric/device-queue-layout.ts';
import type { RingConsumer } from '../../fabric/ring.ts';
import { ringGetU64 } from '../../fabric/ring-layout.ts';
import type { DmaFence } from '../dma-buf/dma-fence.ts';
import type { DmaFenceSharedTimeline } from '../dma-buf/dma-fence-shared.ts';
import type { DeviceCompletionFn } from './device-host-types.ts';

interface Job {
  fence: DmaFence;
  cb: DeviceCompletionFn | undefined;
  opcode: number;
}

export class DeviceJobs {
  /** Jobs in flight: posted, completion not yet delivered. */
  count = 0;
  /** performance.now() of the last completion, or of the submission that ended an idle spell. */
  lastProgress = 0;
  /** Completion entries that matched no job in flight (a device bug); ignored. */
  badCompletions = 0;
  private readonly jobs: (Job | undefined)[];
  private readonly mask: number;
  private readonly cq: RingConsumer;
  private readonly timeline: DmaFenceSharedTimeline;
  private idleWaiters: (() => void)[] = [];

  /** `depth`: the in-flight limit, a power of two (seqno & (depth - 1) indexes the table). */
  constructor(depth: number, cq: RingConsumer, timeline: DmaFenceSharedTimeline) {
    this.jobs = new Array(depth).fill(undefined);
    this.mask = depth - 1;
    this.cq = cq;
    this.timeline = timeline;
  }

  /** Record a job just posted. Called by: DeviceHost.post(), with fewer than depth in flight. */
  add(fence: DmaFence, cb: DeviceCompletionFn | undefined, opcode: number): void {
    this.jobs[fence.seqno & this.mask] = { fence, cb, opcode };
    if (this.count++ === 0) this.lastProgress = performance.now();
  }

  /**
   * Deliver every completion entry in the CQ; returns how many. `replay`: the device is gone
   * or being failed, so a seqno it wrote a completion for but did not store yet is stored here
   * from the entry. Callers then let the timeline signal the fences (process(), or destroy()).
   */
  reap(replay: boolean): number {
    const cq = this.cq;
    const w = cq.words;
    const hw = this.timeline.hw;
    let n = 0;
    for (let s = cq.peek(); s >= 0; s = cq.peek()) {
      const seqno = w[s + Cqe.SEQNO] >>> 0;
      const raw = w[s + Cqe.STATUS];
      const result = ringGetU64(w, s + Cqe.RESULT_LO);
      cq.release();
      n++;
      // a positive status is a device bug; report it as an I/O error rather than success.
      const status = raw > 0 ? -Errno.EIO : raw;
      if (replay && !hw.isSignaled(seqno) && !this.timeline.closed) hw.signal(seqno, status);
      this.finish(seqno, status, result, false);
    }
    if (n > 0) this.lastProgress = performance.now();
    return n;
  }

  /**
   * Deliver what the device completed, fail the rest with `error`, and shut the timeline down.
   * With a live device (destroy) the device may complete a job between any two steps, so the
   * fences are settled first and each late completion is made to agree with its fence.
   * Called by: DeviceHost.destroy() and its exit handler.
   */
  failAll(error: number): void {
    this.reap(true);
    // fences the device stored keep its status; every other fence is forced with `error`.
    this.timeline.destroy(error);
    // a job whose seqno the device stored before that has its completion in the CQ already
    // (the device writes the entry first); finish() makes any other late entry match its fence.
    this.reap(false);
    const rest = this.jobs
      .filter((j): j is Job => j !== undefined)
      .sort((a, b) => a.fence.seqno - b.fence.seqno);
    for (const j of rest) this.finish(j.fence.seqno >>> 0, error, 0, true);
  }

  /** Resolve true once nothing is in flight, or false after `ms`. */
  whenIdle(ms: number): Promise<boolean> {
    if (this.count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Resolve every whenIdle() waiter (true). Called when the count reaches 0 and on exit. */
  wakeIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of w) fn();
  }

  private finish(seqno: number, status: number, result: number, synthetic: boolean): void {
    const i = seqno & this.mask;
    const job = this.jobs[i];
    if (job === undefined || job.fence.seqno >>> 0 !== seqno) {
      this.badCompletions++;
      return;
    }
    this.jobs[i] = undefined;
    this.count--;
    const forced = job.fence.error;
    const agree = this.timeline.closed && forced !== 0 && forced !== status;
    if (job.cb !== undefined) {
      try {
        job.cb({
          seqno: job.fence.seqno,
          // the kernel already failed this job's fence: the completion reports the same error.
          status: agree ? forced : status,
          result: agree ? 0 : result,
          opcode: job.opcode,
          synthetic: synthetic || agree,
        });
      } catch (e) {
        // a throwing callback is a driver bug: surface it without losing the other completions.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    if (this.count === 0) this.wakeIdle();
  }
}

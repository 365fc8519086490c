/**
 * Hardware fences: DmaFences backed by a seqno word in shared memory (amdgpu_fence.c's model).
 *
 * DOC: overview
 * A device worker completes job N by storing N into its timeline's writeback word
 * (nodes/fabric/fence, HwFenceTimeline.signal), which completes every job <= N at once. The
 * kernel side here emits one DmaFence per job, in seqno order, and learns about completions two
 * ways, as amdgpu does:
 *  - polling: `ops.signaled` compares the fence's seqno with the word (dmaFenceIsSignaled);
 *  - the "fence irq": while at least one unsignalled fence has signalling enabled, ONE
 *    Atomics.waitAsync watcher per timeline waits on the word; when it moves, process() signals
 *    every completed fence in seqno order, each with the error and timestamp the device wrote to
 *    its ring entry, then the watcher re-arms at once if enabled fences remain.
 *
 * DOC: liveness, exit and the fallback poll
 * A pending Atomics.waitAsync does not keep Node's event loop alive (checked on Node 20.20 and
 * 24.21: a script whose only pending work is a waitAsync, with or without a timeout, exits at
 * once; the shared-timeline tests assert it holds no handle). So an armed watcher never holds a run open; whoever waits for a fence holds it open instead
 * (dmaFenceWaitTimeout's deadline timer, or the device worker, which is a ref'd handle).
 * The watcher's waitAsync has no timeout: in Node each waitAsync timeout is a platform timer of
 * its own, which cost ~5 µs of main-thread time per wake-up in bench/fence-latency.ts. The
 * fallback poll (amdgpu_fence_fallback: a device that stores its seqno without notifying is
 * still noticed) is instead one unref'd interval of `fallbackMs` per timeline, running only
 * while signalling is enabled on some in-flight fence. close() and destroy() clear it and release
 * a pending watcher with Atomics.notify, so nothing stays queued on the word or in the loop.
 *
 * DOC: ring capacity
 * The device's per-seqno error entries live in a ring of `ringSize` entries, so at most ringSize
 * fences may be in flight per timeline: emit() refuses (EBUSY) rather than let the device
 * overwrite an error the kernel has not read (amdgpu waits for the old fence in its slot instead;
 * the kernel thread cannot block, so callers size the ring to their queue depth).
 *
 * Threads: kernel (main thread) only. The device side is HwFenceTimeline, in workers.
 */
import { Errno, err, isNegErrno } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { HwFenceTimeline } from '../../fabric/fence/hw-fence.ts';
import {
  createHwFenceMemory,
  HW_FENCE_DEFAULT_RING_SIZE,
  type HwFenceDesc,
  hwFenceInit,
  seqnoPassed,
} from '../../fabric/fence/hw-fence-layout.ts';
import {
  type DmaFence,
  type DmaFenceOps,
  DmaFenceFlag,
  DmaFenceTimeline,
  dmaFenceIsSignaled,
  dmaFenceSetError,
  dmaFenceWaitTimeout,
  type OrderPolicy,
} from './dma-fence.ts';

/** Default fallback poll of the watcher, in ms (amdgpu_fence_fallback runs every HZ/2). */
export const FENCE_FALLBACK_MS = 500;
/** Default time close() lets in-flight fences complete before forcing them with -ETIMEDOUT. */
export const FENCE_CLOSE_TIMEOUT_MS = 5_000;

export interface DmaFenceSharedTimelineOpts {
  /** Slot to use; default: a new one-slot fence memory of `ringSize` entries. */
  memory?: HwFenceDesc;
  /** Ring entries when allocating (power of two, default 64); bounds fences in flight. */
  ringSize?: number;
  /** Seqno that counts as already complete; the first fence gets start + 1. Default 0. */
  start?: number;
  /** What to do when the ordering rule is broken (DmaFenceTimeline). */
  order?: OrderPolicy;
  /** Period of the fallback poll in ms while the watcher is armed. Default FENCE_FALLBACK_MS. */
  fallbackMs?: number;
  /** Extra driver ops (setDeadline, release); signaled/enableSignaling are this module's. */
  ops?: Partial<Pick<DmaFenceOps, 'setDeadline' | 'release'>>;
}

const State = { OPEN: 0, CLOSING: 1, CLOSED: 2 } as const;
type State = (typeof State)[keyof typeof State];

/**
 * A timeline whose fences a device completes through shared memory. Construct it on the kernel
 * thread, post `desc` to the device worker, emit() one fence per submitted job.
 */
export class DmaFenceSharedTimeline extends DmaFenceTimeline {
  /** Kernel's view of the shared slot (the same class the device uses). */
  readonly hw: HwFenceTimeline;
  readonly ringSize: number;
  /** Watcher wake-ups handled (diagnostics). */
  irqs = 0;
  private readonly fallbackMs: number;
  // Emitted fences not yet processed, in seqno order (amdgpu's fences[] ring); never > ringSize.
  private readonly fifo: (DmaFence | undefined)[];
  private head = 0;
  private count = 0;
  private readonly mask: number;
  // SEQNO value the last process() acted on: the watcher sleeps only while the word still holds it.
  private seen: number;
  private armed = false;
  private fallback: NodeJS.Timeout | null = null;
  private state: State = State.OPEN;
  private closing: Promise<void> | null = null;

  /**
   * Build a timeline on `opts.memory` (re-initialised to `opts.start`) or on new fence memory.
   * Called by: drivers, kernel thread. Throws: EINVAL for bad options.
   */
  constructor(driverName: string, name: string, opts: DmaFenceSharedTimelineOpts = {}) {
    const start = opts.start ?? 0;
    if (!Number.isInteger(start) || start < 0 || start > 0xffff_ffff) {
      throw err('EINVAL', `DmaFenceSharedTimeline: opts.start ${start} must be a u32`);
    }
    const fallbackMs = opts.fallbackMs ?? FENCE_FALLBACK_MS;
    if (!(fallbackMs > 0 && fallbackMs <= 0x7fff_ffff)) {
      throw err('EINVAL', `DmaFenceSharedTimeline: opts.fallbackMs ${fallbackMs} must be in (0, 2^31) ms`);
    }
    super(driverName, name, { order: opts.order, start, ops: opts.ops });
    let desc = opts.memory;
    if (!desc) {
      const ringSize = opts.ringSize ?? HW_FENCE_DEFAULT_RING_SIZE;
      try {
        desc = { sab: createHwFenceMemory(1, ringSize), index: 0 };
      } catch (e) {
        throw err(
          'EINVAL',
          `DmaFenceSharedTimeline: opts.ringSize ${ringSize} must be a power of two in [2, 65536]`,
          {
            cause: e,
          },
        );
      }
    }
    try {
      hwFenceInit(desc, start);
      this.hw = new HwFenceTimeline(desc);
    } catch (e) {
      throw err('EINVAL', `DmaFenceSharedTimeline: opts.memory is not a fence memory slot`, { cause: e });
    }
    this.ringSize = this.hw.ringSize;
    this.mask = this.ringSize - 1;
    this.fifo = new Array(this.ringSize).fill(undefined);
    this.fallbackMs = fallbackMs;
    this.seen = start | 0;
    // The ops object is shared by every fence of the timeline, so these run per fence with no
    // per-fence closure.
    this.ops.signaled = (f) => this.opSignaled(f);
    this.ops.enableSignaling = (f) => this.opEnableSignaling(f);
  }

  /** Descriptor to post to the device worker (SAB + slot index). */
  get desc(): HwFenceDesc {
    return this.hw.desc;
  }

  /** Fences emitted and not yet processed (completed ones may linger until the next process()). */
  get inFlight(): number {
    return this.count;
  }

  /** True while a waitAsync watcher is queued on the seqno word. */
  get watcherArmed(): boolean {
    return this.armed;
  }

  /** True while the fallback poll interval exists (diagnostics). */
  get fallbackArmed(): boolean {
    return this.fallback !== null;
  }

  /** True once close() started or destroy() ran: emit() refuses. */
  get closed(): boolean {
    return this.state !== State.OPEN;
  }

  // Fully closed: no watcher may be armed any more.
  private get shutDown(): boolean {
    return this.state === State.CLOSED;
  }

  /**
   * Create the fence of the next job (seqno lastEmitted + 1). Call it before telling the device
   * about the job. Called by: drivers, kernel thread.
   * Throws: ENODEV after close()/destroy(); EBUSY with ringSize fences in flight.
   */
  override emit(): DmaFence {
    if (this.state !== State.OPEN)
      throw err('ENODEV', `DmaFenceSharedTimeline(${this.name}).emit: timeline closed`);
    if (this.count >= this.ringSize) {
      this.process();
      if (this.count >= this.ringSize) {
        throw err(
          'EBUSY',
          `DmaFenceSharedTimeline(${this.name}).emit: ${this.ringSize} fences in flight (ringSize)`,
        );
      }
    }
    const f = super.emit();
    this.fifo[(this.head + this.count) & this.mask] = f;
    this.count++;
    return f;
  }

  /**
   * The fence irq handler (amdgpu_fence_process): signal, in seqno order, every emitted fence
   * the device has completed, with the error and timestamp from its ring entry. Returns how many
   * fences it signalled. Called by: the watcher, emit(), forceComplete(), close(); callable from
   * anywhere on the kernel thread (re-entry from a fence callback is safe: both walk one FIFO).
   */
  process(): number {
    const hw = this.hw;
    // acquire: ring entries of every seqno <= cur are visible after this load.
    const cur = Atomics.load(hw.i32, hw.seqnoWord);
    this.seen = cur;
    let n = 0;
    // A fence the device completed by storing a later seqno finished no later than that store.
    let coverTs = -2;
    while (this.count > 0) {
      const f = this.fifo[this.head]!;
      if (!seqnoPassed(cur, f.seqno)) break;
      this.fifo[this.head] = undefined;
      this.head = (this.head + 1) & this.mask;
      this.count--;
      if (f.signaledFlag) continue;
      let ts = hw.timestampOf(f.seqno);
      if (ts < 0) ts = coverTs === -2 ? (coverTs = hw.timestampOf(cur)) : coverTs;
      this.signal(f, this.deviceError(f), ts >= 0 ? ts : undefined);
      n++;
    }
    return n;
  }

  /**
   * Hang recovery (amdgpu_fence_driver_force_completion): complete every in-flight fence with
   * `error` (e.g. -ETIMEDOUT, -ECANCELED). Fences the device already completed keep its status.
   * The forced seqno and errors are also written to shared memory so device-side waiters wake;
   * the device must be stopped first and reset before it signals this timeline again.
   * Called by: drivers' timeout handlers, destroy(), close(). Returns fences signalled.
   * Throws: EINVAL if `error` is not a negative errno.
   */
  forceComplete(error: number): number {
    if (!isNegErrno(error)) {
      throw err(
        'EINVAL',
        `DmaFenceSharedTimeline(${this.name}).forceComplete: error ${error} is not a negative errno`,
      );
    }
    let n = this.process();
    if (this.count === 0) return n;
    this.hw.forceComplete(this.lastEmitted, error);
    n += this.process();
    return n;
  }

  /**
   * Drain: refuse new fences, give in-flight ones up to `timeoutMs` to complete, force the rest
   * with -ETIMEDOUT, then release the watcher. Idempotent (returns the same promise).
   * Called by: drivers on teardown, kernel thread, not from a fence callback.
   */
  close(timeoutMs = FENCE_CLOSE_TIMEOUT_MS): Promise<void> {
    if (this.closing) return this.closing;
    if (this.state === State.OPEN) this.state = State.CLOSING;
    this.closing = this.drain(timeoutMs);
    return this.closing;
  }

  /**
   * Fail in-flight work: force every in-flight fence with `error` (default -ECANCELED) and
   * release the watcher at once. Idempotent. Called by: drivers, kernel thread.
   */
  destroy(error: number = -Errno.ECANCELED): void {
    if (this.state === State.CLOSED) return;
    // Refuse emits first: a callback run by the forced signals must not queue a fence that
    // nothing would ever complete.
    this.state = State.CLOSING;
    try {
      this.forceComplete(error);
    } finally {
      this.shutdown();
    }
  }

  private async drain(timeoutMs: number): Promise<void> {
    this.process();
    const last = this.count > 0 ? this.fifo[(this.head + this.count - 1) & this.mask] : undefined;
    if (last && !dmaFenceIsSignaled(last) && this.state !== State.CLOSED) {
      if ((await dmaFenceWaitTimeout(last, timeoutMs)) === 0) this.forceComplete(-Errno.ETIMEDOUT);
    }
    if (this.state !== State.CLOSED) {
      this.process();
      this.shutdown();
    }
  }

  private shutdown(): void {
    this.state = State.CLOSED;
    if (this.fallback) {
      clearInterval(this.fallback);
      this.fallback = null;
    }
    if (this.armed) {
      this.armed = false;
      // dequeue the pending waitAsync now; its late resolution sees CLOSED and stops.
      this.hw.kick();
    }
  }

  // ops.signaled: a hardware peek (dmaFenceIsSignaled). The core signals the fence when this
  // returns true, so the device's error is attached first.
  private opSignaled(f: DmaFence): boolean {
    if (!this.hw.isSignaled(f.seqno)) return false;
    this.attachDeviceError(f);
    return true;
  }

  // ops.enableSignaling: someone waits for `f`. Already complete: false (the core signals it).
  // Otherwise make sure the one watcher of this timeline is armed.
  private opEnableSignaling(f: DmaFence): boolean {
    if (this.hw.isSignaled(f.seqno)) {
      this.attachDeviceError(f);
      return false;
    }
    if (this.shutDown) return true;
    if (!this.armed && !this.tryArm()) {
      // The word moved since the last process(): handle it, but not inside this add_callback.
      this.armed = true;
      queueMicrotask(this.onIrq);
    }
    // The poll may have stopped while the watcher stayed queued with nothing enabled.
    if (!this.fallback) this.fallback = setInterval(this.onFallback, this.fallbackMs).unref();
    return true;
  }

  private attachDeviceError(f: DmaFence): void {
    const e = this.deviceError(f);
    if (e !== 0 && f.error === 0 && !f.signaledFlag) dmaFenceSetError(f, e);
  }

  // The device's error for f, or 0 if f already carries one. A value that is not a negative
  // errno is a device bug: traced and reported as -EIO, never thrown on the irq path.
  private deviceError(f: DmaFence): number {
    const e = this.hw.errorOf(f.seqno);
    if (e === 0 || f.error !== 0) return 0;
    if (isNegErrno(e)) return e;
    trace('fenceContractViolation', () => ({ context: this.context, seqno: f.seqno, deviceError: e }));
    return -Errno.EIO;
  }

  // Queue the watcher on the word while it still holds `seen`. False if it already moved.
  private tryArm(): boolean {
    // No timeout on purpose: see "the fallback poll" above.
    const r = Atomics.waitAsync(this.hw.i32, this.hw.seqnoWord, this.seen);
    if (!r.async) return false;
    this.armed = true;
    r.value.then(this.onIrq);
    return true;
  }

  // amdgpu_fence_fallback: handle a store that came without a notify. The queued watcher stays
  // queued (a notify still wakes it); the poll stops once no enabled fence is in flight.
  private readonly onFallback = (): void => {
    if (Atomics.load(this.hw.i32, this.hw.seqnoWord) !== this.seen) this.process();
    if (this.shutDown || !this.needsIrq()) {
      clearInterval(this.fallback!);
      this.fallback = null;
    }
  };

  // True if an unsignalled fence with signalling enabled is in flight: only then is the irq on.
  private needsIrq(): boolean {
    for (let i = 0; i < this.count; i++) {
      const f = this.fifo[(this.head + i) & this.mask]!;
      if ((f.flags & (DmaFenceFlag.ENABLE_SIGNAL | DmaFenceFlag.SIGNALED)) === DmaFenceFlag.ENABLE_SIGNAL)
        return true;
    }
    return false;
  }

  // The watcher fired (word moved, fallback timeout, or kick). Bound once: no allocation per irq.
  private readonly onIrq = (): void => {
    this.armed = false;
    if (this.state === State.CLOSED) return;
    this.irqs++;
    try {
      this.process();
    } finally {
      // Re-arm at once; loop while the device keeps moving the word under us. (A callback may
      // have closed the timeline or armed the watcher itself: both end the loop.)
      while (!this.shutDown && !this.armed && this.needsIrq() && !this.tryArm()) this.process();
    }
  };
}

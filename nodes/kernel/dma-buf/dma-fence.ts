/**
 * dma-fence: one-shot completion events for asynchronous work (drivers/dma-buf/dma-fence.c).
 *
 * DOC: fence cross-driver contract (kernel-semantics §2.2)
 *  - A fence signals at most once; signalling again is a no-op. Errors are set before signalling.
 *  - Fences of one context signal in seqno order (DmaFenceTimeline checks it for its fences).
 *  - Every fence signals in bounded time: waits take a deadline, and a hung producer is
 *    force-completed with an error (see DmaFenceSharedTimeline.forceComplete).
 *  - Nothing on the path to dmaFenceSignal() may take a dma_resv lock: callbacks run inside a
 *    signalling section and dmaResvLock() refuses to run there (rules 6, 15, 16).
 *
 * Threads: DmaFence objects live on the kernel (main) thread only. Hardware (worker) fences are
 * backed by shared memory elsewhere and surface here through `ops.signaled` / `enableSignaling`.
 * Waiting never blocks the thread: waits are promises.
 */
import { EmuError, err, isNegErrno } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';

/** Flag bits (DMA_FENCE_FLAG_*). */
export const DmaFenceFlag = {
  SIGNALED: 1 << 0,
  TIMESTAMP: 1 << 1,
  ENABLE_SIGNAL: 1 << 2,
  SEQNO64: 1 << 3,
  USER_BITS: 1 << 8,
} as const;
export type DmaFenceFlag = (typeof DmaFenceFlag)[keyof typeof DmaFenceFlag];

/**
 * Driver callbacks of a fence (struct dma_fence_ops). Called by the fence core only.
 * In 2026 kernels the ops are detached when the fence signals: none is called afterwards.
 */
export interface DmaFenceOps {
  /** Name of the driver that created the fence. Mandatory. */
  getDriverName(fence: DmaFence): string;
  /** Name of the fence's timeline. Mandatory. */
  getTimelineName(fence: DmaFence): string;
  /**
   * First callback or wait was added: arm whatever will call dmaFenceSignal().
   * Called by: dmaFenceEnableSwSignaling(), dmaFenceAddCallback(). Optional.
   * Returns false if the fence is already done (the core then signals it at once).
   */
  enableSignaling?(fence: DmaFence): boolean;
  /** Peek at the hardware: true if the work is done. Called by dmaFenceIsSignaled(). Optional. */
  signaled?(fence: DmaFence): boolean;
  /** "Needed by" hint, a monotonic time in ms (performance.now() clock). Optional, hint only. */
  setDeadline?(fence: DmaFence, deadlineMs: number): void;
  /**
   * Last reference dropped. Optional. Unlike the other ops it survives the detach at signal
   * time: a signalled container must still drop its children (the kernel's dma_fence_release
   * keeps the ops pointer for exactly this).
   */
  release?(fence: DmaFence): void;
}

export type DmaFenceFunc = (fence: DmaFence, cb: DmaFenceCb) => void;

/** A registered callback (struct dma_fence_cb). Reusable after it ran or was removed. */
export interface DmaFenceCb {
  func: DmaFenceFunc;
  /** Internal: the fence this callback is queued on, if pending. */
  pendingOn?: DmaFence;
}

let nextContext = 1;

/** Allocate `num` consecutive fence contexts; returns the first (dma_fence_context_alloc). */
export function dmaFenceContextAlloc(num = 1): number {
  if (!Number.isInteger(num) || num < 1) throw err('EINVAL', `dmaFenceContextAlloc: num ${num} must be >= 1`);
  const first = nextContext;
  nextContext += num;
  return first;
}

let signallingDepth = 0;

/**
 * Mark the start of a fence signalling critical section (dma_fence_begin_signalling).
 * Sections nest; returns a cookie for dmaFenceEndSignalling().
 */
export function dmaFenceBeginSignalling(): number {
  return signallingDepth++;
}

/** End a section started by dmaFenceBeginSignalling(); the cookie must match (no interleaving). */
export function dmaFenceEndSignalling(cookie: number): void {
  if (cookie !== signallingDepth - 1) {
    throw err('EINVAL', `dmaFenceEndSignalling: cookie ${cookie} does not close the innermost section`);
  }
  signallingDepth--;
}

/** True inside a signalling critical section: dma_resv locks and blocking waits are forbidden here. */
export function dmaFenceInSignallingSection(): boolean {
  return signallingDepth > 0;
}

/** Current time in ns on a monotonic clock, as fence timestamps use. */
export function ktimeGetNs(): number {
  return Number(process.hrtime.bigint());
}

export class DmaFence {
  /** Driver ops; null once signalled (2026 kernels detach them). */
  ops: DmaFenceOps | null;
  readonly context: number;
  readonly seqno: number;
  flags = 0;
  /** Negative errno set before signalling, or 0. */
  error = 0;
  /** Signal time in ns (ktimeGetNs clock); valid once TIMESTAMP is set. */
  timestamp = 0;
  refcount = 1;
  private cbList: DmaFenceCb[] = [];
  // Names captured at signal time, since the ops go away then.
  private detachedNames: [string, string] | null = null;
  // ops.release, kept past the detach at signal time.
  private releaseOp: ((fence: DmaFence) => void) | undefined;

  /** dma_fence_init / dma_fence_init64. Throws EINVAL if a mandatory op is missing. */
  constructor(ops: DmaFenceOps, context: number, seqno: number, opts: { seqno64?: boolean } = {}) {
    if (!ops || typeof ops.getDriverName !== 'function' || typeof ops.getTimelineName !== 'function') {
      throw err('EINVAL', 'dmaFenceInit: ops.getDriverName and ops.getTimelineName are mandatory');
    }
    if (!Number.isSafeInteger(context) || context < 0)
      throw err('EINVAL', `dmaFenceInit: context ${context}`);
    if (!Number.isSafeInteger(seqno) || seqno < 0) throw err('EINVAL', `dmaFenceInit: seqno ${seqno}`);
    this.ops = ops;
    this.context = context;
    this.seqno = seqno;
    if (opts.seqno64) this.flags |= DmaFenceFlag.SEQNO64;
  }

  /** Raw flag test (dma_fence_test_signaled_flag): no hardware peek. */
  get signaledFlag(): boolean {
    return (this.flags & DmaFenceFlag.SIGNALED) !== 0;
  }

  get driverName(): string {
    return this.ops ? this.ops.getDriverName(this) : (this.detachedNames?.[0] ?? 'detached-driver');
  }

  get timelineName(): string {
    return this.ops ? this.ops.getTimelineName(this) : (this.detachedNames?.[1] ?? 'signaled-timeline');
  }

  /** Internal: queued callbacks (for containers and tests). */
  get pendingCallbacks(): number {
    return this.cbList.length;
  }

  /** @internal used by dmaFenceSignal* only. */
  _takeCallbacks(): DmaFenceCb[] {
    const list = this.cbList;
    this.cbList = [];
    return list;
  }

  /** @internal */
  _queue(cb: DmaFenceCb): void {
    this.cbList.push(cb);
  }

  /** @internal */
  _dequeue(cb: DmaFenceCb): boolean {
    const i = this.cbList.indexOf(cb);
    if (i < 0) return false;
    this.cbList.splice(i, 1);
    return true;
  }

  /** @internal dmaFencePut's last reference: ops.release, detached or not. */
  _release(): void {
    const op = this.ops ? this.ops.release?.bind(this.ops) : this.releaseOp;
    op?.(this);
  }

  /** @internal: ops are dropped on signal; keep the names for sync_file info. */
  _detachOps(): void {
    if (!this.ops) return;
    this.detachedNames = [this.ops.getDriverName(this), this.ops.getTimelineName(this)];
    this.releaseOp = this.ops.release?.bind(this.ops);
    this.ops = null;
  }
}

function checkFence(fn: string, fence: DmaFence): void {
  if (!(fence instanceof DmaFence)) throw err('EINVAL', `${fn}: fence is not a DmaFence`);
}

/** dma_fence_get: take a reference. */
export function dmaFenceGet<T extends DmaFence | null | undefined>(fence: T): T {
  if (fence) checkFence('dmaFenceGet', fence);
  if (fence) fence.refcount++;
  return fence;
}

/** dma_fence_put: drop a reference; the last one calls ops.release. Over-put is EINVAL. */
export function dmaFencePut(fence: DmaFence | null | undefined): void {
  if (!fence) return;
  checkFence('dmaFencePut', fence);
  if (fence.refcount <= 0)
    throw err('EINVAL', `dmaFencePut: fence ${fence.context}:${fence.seqno} already released`);
  if (--fence.refcount === 0) fence._release();
}

/**
 * dma_fence_signal_timestamp: mark the fence signalled at `timestampNs` and run its callbacks.
 * Returns false if it was already signalled (no-op, rule 2). Callbacks run inside a signalling
 * section, synchronously, in the order they were added.
 */
export function dmaFenceSignalTimestamp(fence: DmaFence, timestampNs: number): boolean {
  checkFence('dmaFenceSignalTimestamp', fence);
  if (fence.flags & DmaFenceFlag.SIGNALED) return false;
  fence.flags |= DmaFenceFlag.SIGNALED;
  fence.timestamp = timestampNs;
  fence.flags |= DmaFenceFlag.TIMESTAMP;
  fence._detachOps();
  trace('fenceSignal', () => ({ context: fence.context, seqno: fence.seqno, error: fence.error }));
  const cbs = fence._takeCallbacks();
  if (cbs.length === 0) return true;
  const cookie = dmaFenceBeginSignalling();
  try {
    for (const cb of cbs) {
      cb.pendingOn = undefined;
      cb.func(fence, cb);
    }
  } finally {
    dmaFenceEndSignalling(cookie);
  }
  return true;
}

/** dma_fence_signal: signal now. Returns false if already signalled. */
export function dmaFenceSignal(fence: DmaFence): boolean {
  checkFence('dmaFenceSignal', fence);
  return dmaFenceSignalTimestamp(fence, ktimeGetNs());
}

/**
 * dma_fence_set_error: record `error` (a negative errno) to be reported when the fence signals.
 * Must be called before signalling (rule 10): EINVAL if already signalled or not a negative errno.
 */
export function dmaFenceSetError(fence: DmaFence, error: number): void {
  checkFence('dmaFenceSetError', fence);
  if (fence.flags & DmaFenceFlag.SIGNALED) {
    throw err('EINVAL', `dmaFenceSetError: fence ${fence.context}:${fence.seqno} already signalled`);
  }
  if (!isNegErrno(error)) throw err('EINVAL', `dmaFenceSetError: error ${error} is not a negative errno`);
  fence.error = error;
}

/**
 * dma_fence_is_signaled (dma_fence_check_and_signal in 2026): test the flag, and if clear ask the
 * hardware (ops.signaled) and signal the fence when it reports done.
 */
export function dmaFenceIsSignaled(fence: DmaFence): boolean {
  checkFence('dmaFenceIsSignaled', fence);
  if (fence.flags & DmaFenceFlag.SIGNALED) return true;
  if (fence.ops?.signaled?.(fence)) {
    dmaFenceSignal(fence);
    return true;
  }
  return false;
}

/** 2026 name of dmaFenceIsSignaled. */
export const dmaFenceCheckAndSignal = dmaFenceIsSignaled;

/**
 * dma_fence_get_status: 0 while unsignalled (even with an error set), 1 if signalled without
 * error, the negative errno if signalled with one.
 */
export function dmaFenceGetStatus(fence: DmaFence): number {
  checkFence('dmaFenceGetStatus', fence);
  if (!dmaFenceIsSignaled(fence)) return 0;
  return fence.error || 1;
}

/** dma_fence_enable_sw_signaling: call ops.enableSignaling once. */
export function dmaFenceEnableSwSignaling(fence: DmaFence): void {
  checkFence('dmaFenceEnableSwSignaling', fence);
  enableSignaling(fence);
}

// Returns true if the fence is (now) signalled.
function enableSignaling(fence: DmaFence): boolean {
  if (fence.flags & DmaFenceFlag.SIGNALED) return true;
  if (fence.flags & DmaFenceFlag.ENABLE_SIGNAL) return false;
  fence.flags |= DmaFenceFlag.ENABLE_SIGNAL;
  if (fence.ops?.enableSignaling && !fence.ops.enableSignaling(fence)) {
    dmaFenceSignal(fence);
    return true;
  }
  return (fence.flags & DmaFenceFlag.SIGNALED) !== 0;
}

/**
 * dma_fence_add_callback: call `func` exactly once when the fence signals.
 * Returns 0, or -ENOENT if the fence is already signalled (then `func` is never called).
 * The callback runs inside a signalling section: it must not take a dma_resv lock or wait.
 */
export function dmaFenceAddCallback(fence: DmaFence, cb: DmaFenceCb, func?: DmaFenceFunc): 0 | -2 {
  checkFence('dmaFenceAddCallback', fence);
  if (func) cb.func = func;
  if (typeof cb.func !== 'function') throw err('EINVAL', 'dmaFenceAddCallback: cb.func is not a function');
  if (cb.pendingOn) throw err('EBUSY', 'dmaFenceAddCallback: cb is already queued on a fence');
  if (enableSignaling(fence)) return -2;
  cb.pendingOn = fence;
  fence._queue(cb);
  return 0;
}

/** dma_fence_remove_callback: true iff the callback was still pending (it will not run now). */
export function dmaFenceRemoveCallback(fence: DmaFence, cb: DmaFenceCb): boolean {
  if (!cb || typeof cb !== 'object') throw err('EINVAL', 'dmaFenceRemoveCallback: cb is not a dma_fence_cb');
  if (cb.pendingOn !== fence) return false;
  cb.pendingOn = undefined;
  return fence._dequeue(cb);
}

/** dma_fence_is_later: f1 later than f2 (same context); 32-bit wrap-around unless SEQNO64. */
export function dmaFenceIsLater(f1: DmaFence, f2: DmaFence): boolean {
  if (f1.context !== f2.context) {
    throw err('EINVAL', `dmaFenceIsLater: fences of different contexts ${f1.context} and ${f2.context}`);
  }
  return seqnoAfter(f1.seqno, f2.seqno, (f1.flags & DmaFenceFlag.SEQNO64) !== 0);
}

/** dma_fence_is_later_or_same. */
export function dmaFenceIsLaterOrSame(f1: DmaFence, f2: DmaFence): boolean {
  return f1 === f2 || f1.seqno === f2.seqno || dmaFenceIsLater(f1, f2);
}

/** __dma_fence_is_later: seqno `a` after `b`; 32-bit fences compare as (s32)(a - b) > 0. */
export function seqnoAfter(a: number, b: number, seqno64: boolean): boolean {
  if (seqno64) return a > b;
  return ((a - b) | 0) > 0;
}

/** dma_fence_set_deadline: forward a "needed by" hint (ms, performance.now clock). */
export function dmaFenceSetDeadline(fence: DmaFence, deadlineMs: number): void {
  checkFence('dmaFenceSetDeadline', fence);
  if (typeof deadlineMs !== 'number' || Number.isNaN(deadlineMs))
    throw err('EINVAL', `dmaFenceSetDeadline: deadline ${deadlineMs} is not a time`);
  if (!fence.signaledFlag) fence.ops?.setDeadline?.(fence, deadlineMs);
}

/** Options of a wait. `signal` aborts the wait with ERESTARTSYS (the "interruptible" wait). */
export interface DmaFenceWaitOpts {
  signal?: AbortSignal;
}

/**
 * dma_fence_wait_timeout: wait up to `timeoutMs` for the fence.
 * Resolves to the remaining time in ms (>= 1; 1 when timeoutMs is 0 and the fence is signalled),
 * or 0 on timeout. Throws EINVAL for a negative timeout and ERESTARTSYS when interrupted.
 * Never blocks the thread. Must not be called inside a signalling section.
 */
export function dmaFenceWaitTimeout(
  fence: DmaFence,
  timeoutMs: number,
  opts: DmaFenceWaitOpts = {},
): Promise<number> {
  if (!(fence instanceof DmaFence))
    return Promise.reject(err('EINVAL', 'dmaFenceWaitTimeout: fence is not a DmaFence'));
  if (!(timeoutMs >= 0))
    return Promise.reject(err('EINVAL', `dmaFenceWaitTimeout: timeout ${timeoutMs} < 0`));
  if (dmaFenceInSignallingSection()) {
    return Promise.reject(err('EDEADLK', 'dmaFenceWaitTimeout: wait inside a fence signalling section'));
  }
  if (dmaFenceIsSignaled(fence)) return Promise.resolve(Math.max(1, timeoutMs));
  if (timeoutMs === 0) return Promise.resolve(0);
  if (opts.signal?.aborted) return Promise.reject(err('ERESTARTSYS', 'dmaFenceWaitTimeout: interrupted'));
  const start = performance.now();
  // Hold a reference for the wait: the caller's may go away while we sleep.
  dmaFenceGet(fence);
  return new Promise<number>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const cb: DmaFenceCb = {
      func: () => {
        finish();
        resolve(Math.max(1, timeoutMs - (performance.now() - start)));
      },
    };
    const onAbort = () => {
      dmaFenceRemoveCallback(fence, cb);
      finish();
      reject(err('ERESTARTSYS', 'dmaFenceWaitTimeout: interrupted'));
    };
    const finish = () => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      dmaFencePut(fence);
    };
    if (dmaFenceAddCallback(fence, cb) !== 0) {
      finish();
      resolve(Math.max(1, timeoutMs));
      return;
    }
    if (Number.isFinite(timeoutMs)) {
      timer = setTimeout(() => {
        if (dmaFenceRemoveCallback(fence, cb)) {
          finish();
          resolve(0);
        }
      }, timeoutMs);
    }
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * dma_fence_wait_any_timeout: wait until any fence signals. Resolves to `{ remaining, index }`
 * (index of the first signalled fence, -1 and remaining 0 on timeout). EINVAL for no fences or
 * a `fences` that is not an array.
 */
export async function dmaFenceWaitAnyTimeout(
  fences: readonly DmaFence[],
  timeoutMs: number,
  opts: DmaFenceWaitOpts = {},
): Promise<{ remaining: number; index: number }> {
  if (!Array.isArray(fences) || fences.length === 0)
    throw err('EINVAL', 'dmaFenceWaitAnyTimeout: fences must be a non-empty array');
  if (!(timeoutMs >= 0)) throw err('EINVAL', `dmaFenceWaitAnyTimeout: timeout ${timeoutMs} < 0`);
  const idx = fences.findIndex((f) => dmaFenceIsSignaled(f));
  if (idx >= 0) return { remaining: Math.max(1, timeoutMs), index: idx };
  if (timeoutMs === 0) return { remaining: 0, index: -1 };
  const start = performance.now();
  const cbs: DmaFenceCb[] = [];
  const held = fences.map((f) => dmaFenceGet(f)); // keep them alive for the wait
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise((resolve, reject) => {
      fences.forEach((f, i) => {
        const cb: DmaFenceCb = {
          func: () => resolve({ remaining: Math.max(1, timeoutMs - (performance.now() - start)), index: i }),
        };
        cbs.push(cb);
        if (dmaFenceAddCallback(f, cb) !== 0) resolve({ remaining: Math.max(1, timeoutMs), index: i });
      });
      if (Number.isFinite(timeoutMs))
        timer = setTimeout(() => resolve({ remaining: 0, index: -1 }), timeoutMs);
      if (opts.signal) {
        if (opts.signal.aborted) reject(err('ERESTARTSYS', 'dmaFenceWaitAnyTimeout: interrupted'));
        opts.signal.addEventListener(
          'abort',
          () => reject(err('ERESTARTSYS', 'dmaFenceWaitAnyTimeout: interrupted')),
          {
            once: true,
          },
        );
      }
    });
  } finally {
    if (timer) clearTimeout(timer);
    for (let i = 0; i < cbs.length; i++) dmaFenceRemoveCallback(fences[i], cbs[i]);
    for (const f of held) dmaFencePut(f);
  }
}

/**
 * dma_fence_wait: wait with no timeout. The emulator still refuses to hang: `opts.signal` is the
 * only way out besides the signal, so callers on a test or run path pass a deadline-bound signal.
 */
export async function dmaFenceWait(fence: DmaFence, opts: DmaFenceWaitOpts = {}): Promise<0> {
  await dmaFenceWaitTimeout(fence, Number.POSITIVE_INFINITY, opts);
  return 0;
}

/** Convenience for userspace-facing code: 'signaled' | 'timed-out' (expected refusal as a value). */
export async function fenceWaitResult(fence: DmaFence, timeoutMs: number): Promise<'signaled' | 'timed-out'> {
  return (await dmaFenceWaitTimeout(fence, timeoutMs)) > 0 ? 'signaled' : 'timed-out';
}

// ---------------------------------------------------------------------------------------------
// Stub fences

const stubOps: DmaFenceOps = {
  getDriverName: () => 'stub',
  getTimelineName: () => 'stub',
};

let stub: DmaFence | null = null;

/** dma_fence_get_stub: the global always-signalled fence (context 0, seqno 0). */
export function dmaFenceGetStub(): DmaFence {
  if (!stub) {
    stub = new DmaFence(stubOps, 0, 0);
    dmaFenceSignalTimestamp(stub, 0);
  }
  return dmaFenceGet(stub);
}

/** dma_fence_allocate_private_stub: a new signalled fence with the given timestamp. */
export function dmaFenceAllocatePrivateStub(timestampNs: number = ktimeGetNs()): DmaFence {
  if (typeof timestampNs !== 'number' || !(timestampNs >= 0))
    throw err('EINVAL', `dmaFenceAllocatePrivateStub: timestamp ${timestampNs} is not a time in ns`);
  const f = new DmaFence(stubOps, dmaFenceContextAlloc(1), 0);
  dmaFenceSignalTimestamp(f, timestampNs);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Timelines: one context, fences emitted in seqno order, and the in-order rule checked.

/** What a timeline does when a fence signals before an earlier fence of its context (rule 3). */
export const OrderPolicy = { WARN: 'warn', THROW: 'throw' } as const;
export type OrderPolicy = (typeof OrderPolicy)[keyof typeof OrderPolicy];

/**
 * A software timeline: allocates one context, emits fences with increasing seqnos and checks that
 * they signal in order. Drivers build on it (GPU rings, sw_sync); hardware timelines in shared
 * memory wrap it.
 */
export class DmaFenceTimeline {
  readonly context: number;
  readonly driverName: string;
  readonly name: string;
  /** Seqno of the last fence emitted. */
  lastEmitted: number;
  /** Contract violations seen (out-of-order signalling). */
  violations = 0;
  private lastSignaled: number;
  private readonly order: OrderPolicy;
  readonly ops: DmaFenceOps;

  constructor(
    driverName: string,
    name: string,
    opts: { order?: OrderPolicy; start?: number; ops?: Partial<DmaFenceOps> } = {},
  ) {
    this.context = dmaFenceContextAlloc(1);
    this.driverName = driverName;
    this.name = name;
    this.lastEmitted = opts.start ?? 0;
    this.lastSignaled = this.lastEmitted;
    this.order = opts.order ?? OrderPolicy.WARN;
    this.ops = { getDriverName: () => driverName, getTimelineName: () => name, ...opts.ops };
  }

  /** Create the next fence on this timeline. */
  emit(): DmaFence {
    this.lastEmitted = (this.lastEmitted + 1) >>> 0;
    return new DmaFence(this.ops, this.context, this.lastEmitted);
  }

  /**
   * Signal `fence` (of this timeline), optionally with an error and a timestamp (ns, ktimeGetNs
   * clock; default now); checks rule 3.
   */
  signal(fence: DmaFence, error = 0, timestampNs?: number): boolean {
    if (fence.context !== this.context) {
      throw err('EINVAL', `DmaFenceTimeline(${this.name}).signal: fence of context ${fence.context}`);
    }
    if (fence.signaledFlag) return false;
    if (seqnoAfter(this.lastSignaled, fence.seqno, false)) this.violation(fence);
    else this.lastSignaled = fence.seqno;
    if (error) dmaFenceSetError(fence, error);
    return timestampNs === undefined ? dmaFenceSignal(fence) : dmaFenceSignalTimestamp(fence, timestampNs);
  }

  private violation(fence: DmaFence): void {
    this.violations++;
    const msg = `timeline ${this.name}: fence ${fence.seqno} signalled after later fence ${this.lastSignaled} (rule 3)`;
    trace('fenceContractViolation', () => ({
      context: this.context,
      seqno: fence.seqno,
      last: this.lastSignaled,
    }));
    if (this.order === OrderPolicy.THROW) throw new EmuError('EINVAL', msg);
  }
}

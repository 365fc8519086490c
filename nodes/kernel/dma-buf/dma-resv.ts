/**
 * dma_resv: reservation object (drivers/dma-buf/dma-resv.c). A ww_mutex plus a list of
 * (fence, usage) pairs.
 *
 * DOC: Reservation Object Overview (kernel-semantics §2.3)
 *  - Writers hold the lock: reserve slots with dmaResvReserveFences(), then dmaResvAddFence().
 *    Reservations do not survive unlock (rule 19).
 *  - Usages are ordered KERNEL < WRITE < READ < BOOKKEEP; a query for one usage includes every
 *    lower one (rule 21). A fence can be promoted (BOOKKEEP -> READ by re-adding) but never
 *    demoted; a later fence of the same context supersedes the earlier (rule 20).
 *  - Readers may look without the lock; an unlocked iteration that races a writer restarts
 *    (rule 25).
 *
 * Locking: dmaResvLock* must not be called from a fence signalling section (rule 15): the
 * signal path may be what the lock holder waits for.
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { type WwAcquireCtx, type WwLockOpts, WwMutex } from '../locking/ww-mutex.ts';
import {
  DmaFence,
  type DmaFenceWaitOpts,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceInSignallingSection,
  dmaFenceIsLaterOrSame,
  dmaFenceIsSignaled,
  dmaFenceWaitTimeout,
} from './dma-fence.ts';
import { dmaFenceArrayCreate } from './dma-fence-array.ts';
import { dmaFenceIsContainer } from './dma-fence-unwrap.ts';

/** enum dma_resv_usage; numeric order matters (lower = stronger). */
export const DmaResvUsage = { KERNEL: 0, WRITE: 1, READ: 2, BOOKKEEP: 3 } as const;
export type DmaResvUsage = (typeof DmaResvUsage)[keyof typeof DmaResvUsage];
export const dmaResvUsages: readonly DmaResvUsage[] = [0, 1, 2, 3];
export const dmaResvUsageName = (u: DmaResvUsage): string => {
  checkUsage('dmaResvUsageName', u);
  return ['KERNEL', 'WRITE', 'READ', 'BOOKKEEP'][u];
};

/** dma_resv_usage_rw: what an implicit-sync access must wait for (rule 22). */
export function dmaResvUsageRw(write: boolean): DmaResvUsage {
  // A new write waits for all readers and writers; a new read waits for writers only.
  return write ? DmaResvUsage.READ : DmaResvUsage.WRITE;
}

interface Entry {
  fence: DmaFence;
  usage: DmaResvUsage;
}

export class DmaResv {
  readonly lock: WwMutex;
  /** Sequence count: bumped by every change of the fence list (seqcount_ww_mutex_t). */
  seq = 0;
  private fences: Entry[] = [];
  private maxFences = 0;

  constructor(name = 'dma_resv') {
    this.lock = new WwMutex(name);
  }

  get name(): string {
    return this.lock.name;
  }

  /** Number of entries currently in the list (signalled ones included). */
  get numFences(): number {
    return this.fences.length;
  }

  /** @internal snapshot of the list, for iteration. */
  _entries(): readonly Entry[] {
    return this.fences;
  }

  /** @internal set by dmaResvReserveFences / reset on unlock. */
  _reserve(n: number): void {
    this.maxFences = Math.max(this.maxFences, this.fences.length + n);
  }

  /** @internal */
  _resetReservations(): void {
    this.maxFences = this.fences.length;
  }

  /** @internal rule 20. */
  _add(fence: DmaFence, usage: DmaResvUsage): void {
    for (let i = 0; i < this.fences.length; i++) {
      const old = this.fences[i];
      const sameCtx = old.fence.context === fence.context;
      if (
        (sameCtx && old.usage >= usage && dmaFenceIsLaterOrSame(fence, old.fence)) ||
        dmaFenceIsSignaled(old.fence)
      ) {
        this.fences[i] = { fence, usage };
        this.seq++;
        return;
      }
    }
    if (this.fences.length >= this.maxFences) {
      throw err(
        'ENOSPC',
        `dmaResvAddFence(${this.name}): no reserved slot (call dmaResvReserveFences first)`,
      );
    }
    this.fences.push({ fence, usage });
    this.seq++;
  }

  /** @internal */
  _replaceContext(context: number, replacement: DmaFence, usage: DmaResvUsage): void {
    for (let i = 0; i < this.fences.length; i++) {
      if (this.fences[i].fence.context === context) this.fences[i] = { fence: replacement, usage };
    }
    this.seq++;
  }
}

function checkUsage(fn: string, usage: DmaResvUsage): void {
  if (!(usage in dmaResvUsages) || !Number.isInteger(usage))
    throw err('EINVAL', `${fn}: usage ${usage} is not a dma_resv_usage`);
}

function checkResv(fn: string, obj: DmaResv): void {
  if (!(obj instanceof DmaResv)) throw err('EINVAL', `${fn}: obj is not a dma_resv`);
}

/**
 * dma_resv_assert_held: the calling task must hold obj's lock (EPERM naming `caller` otherwise).
 * Callees that need the lock call this on their first line.
 */
export function dmaResvAssertHeld(obj: DmaResv, caller: string): void {
  if (!obj.lock.heldByCurrent()) {
    throw err('EPERM', `${caller}: ${obj.name} lock must be held by the caller (locking convention)`);
  }
}

/** The calling task must NOT hold obj's lock (EDEADLK naming `caller`): functions that take it. */
export function dmaResvAssertNotHeld(obj: DmaResv, caller: string): void {
  // ROOT_TASK cannot tell holders apart; only flag when the holder is provably the caller.
  if (obj.lock.ownerIsCurrentTask()) {
    throw err(
      'EDEADLK',
      `${caller}: ${obj.name} lock is held by the caller; this call takes it (locking convention)`,
    );
  }
}

function refuseInSignalling(fn: string, obj: DmaResv): void {
  if (dmaFenceInSignallingSection()) {
    throw err('EDEADLK', `${fn}(${obj.name}): called from a fence signalling section (rules 6, 15)`);
  }
}

/** dma_resv_lock: take the lock (ctx may be null). Errors: see WwMutex.lock, plus EDEADLK in a signalling section. */
export async function dmaResvLock(
  obj: DmaResv,
  ctx: WwAcquireCtx | null = null,
  opts: WwLockOpts = {},
): Promise<void> {
  checkResv('dmaResvLock', obj);
  refuseInSignalling('dmaResvLock', obj);
  await obj.lock.lock(ctx, opts);
}

/** dma_resv_lock_interruptible: as dmaResvLock, aborted through `signal` with ERESTARTSYS. */
export function dmaResvLockInterruptible(
  obj: DmaResv,
  ctx: WwAcquireCtx | null,
  signal: AbortSignal,
): Promise<void> {
  return dmaResvLock(obj, ctx, { signal });
}

/** dma_resv_lock_slow: after EDEADLK and dropping every lock of ctx, wait for the contended one. */
export async function dmaResvLockSlow(obj: DmaResv, ctx: WwAcquireCtx): Promise<void> {
  checkResv('dmaResvLockSlow', obj);
  refuseInSignalling('dmaResvLockSlow', obj);
  if (ctx.acquired !== 0) {
    throw err('EINVAL', `dmaResvLockSlow(${obj.name}): ctx ${ctx.name} still holds ${ctx.acquired} lock(s)`);
  }
  await obj.lock.lock(ctx, { slow: true });
}

/** dma_resv_trylock. */
export function dmaResvTrylock(obj: DmaResv): boolean {
  checkResv('dmaResvTrylock', obj);
  refuseInSignalling('dmaResvTrylock', obj);
  return obj.lock.trylock(null);
}

/** dma_resv_unlock: drops unused reservations (rule 19), then the lock. */
export function dmaResvUnlock(obj: DmaResv): void {
  checkResv('dmaResvUnlock', obj);
  obj._resetReservations();
  obj.lock.unlock();
}

/** dma_resv_reserve_fences: make room for `num` more fences. Lock held. */
export function dmaResvReserveFences(obj: DmaResv, num: number): void {
  dmaResvAssertHeld(obj, 'dmaResvReserveFences');
  if (!Number.isInteger(num) || num < 0) throw err('EINVAL', `dmaResvReserveFences: num ${num}`);
  obj._reserve(num);
}

/**
 * dma_resv_add_fence: add `fence` with `usage` (rule 20). Lock held; a slot must be reserved
 * (ENOSPC otherwise); containers are refused (EINVAL: add their leaves).
 */
export function dmaResvAddFence(obj: DmaResv, fence: DmaFence, usage: DmaResvUsage): void {
  dmaResvAssertHeld(obj, 'dmaResvAddFence');
  checkUsage('dmaResvAddFence', usage);
  if (!(fence instanceof DmaFence)) throw err('EINVAL', 'dmaResvAddFence: fence is not a DmaFence');
  if (dmaFenceIsContainer(fence))
    throw err('EINVAL', 'dmaResvAddFence: container fences may not be added; add the leaves');
  obj._add(fence, usage);
  trace('resvAddFence', () => ({ resv: obj.name, context: fence.context, seqno: fence.seqno, usage }));
}

/** dma_resv_replace_fences: swap every fence of `context` for `replacement` (rule 23). Lock held. */
export function dmaResvReplaceFences(
  obj: DmaResv,
  context: number,
  replacement: DmaFence,
  usage: DmaResvUsage,
): void {
  dmaResvAssertHeld(obj, 'dmaResvReplaceFences');
  checkUsage('dmaResvReplaceFences', usage);
  obj._replaceContext(context, replacement, usage);
}

/** One fence seen by an iterator, with its usage. */
export interface DmaResvIterEntry {
  fence: DmaFence;
  usage: DmaResvUsage;
}

/** dma_resv_for_each_fence (locked): every fence with usage <= `usage`. Lock held. */
export function* dmaResvForEachFence(obj: DmaResv, usage: DmaResvUsage): Generator<DmaResvIterEntry> {
  dmaResvAssertHeld(obj, 'dmaResvForEachFence');
  for (const e of obj._entries()) if (e.usage <= usage) yield e;
}

/**
 * dma_resv_iter for lock-free readers (rule 25). Call next() until it returns null; if
 * isRestarted() turns true, a writer raced and the caller must discard what it collected.
 */
export class DmaResvIter {
  private readonly obj: DmaResv;
  private readonly usage: DmaResvUsage;
  private seq: number;
  private index = 0;
  private restarted = true;

  constructor(obj: DmaResv, usage: DmaResvUsage) {
    checkResv('dmaResvIterBegin', obj);
    checkUsage('dmaResvIterBegin', usage);
    this.obj = obj;
    this.usage = usage;
    this.seq = obj.seq;
  }

  /** dma_resv_iter_is_restarted: true for the first entry after a (re)start. */
  isRestarted(): boolean {
    return this.restarted;
  }

  /** Next unsignalled-or-not fence of usage <= the iterator's usage, or null at the end. */
  next(): DmaResvIterEntry | null {
    for (;;) {
      if (this.obj.seq !== this.seq) {
        // A writer changed the list under us: start over and tell the reader.
        this.seq = this.obj.seq;
        this.index = 0;
        this.restarted = true;
      } else if (this.index > 0) this.restarted = false;
      const list = this.obj._entries();
      while (this.index < list.length) {
        const e = list[this.index++];
        if (e.usage <= this.usage) return e;
      }
      if (this.obj.seq === this.seq) return null;
    }
  }
}

/** dma_resv_get_fences: the fences with usage <= `usage` (unsignalled and signalled). */
export function dmaResvGetFences(obj: DmaResv, usage: DmaResvUsage): DmaFence[] {
  checkResv('dmaResvGetFences', obj);
  checkUsage('dmaResvGetFences', usage);
  return obj
    ._entries()
    .filter((e) => e.usage <= usage)
    .map((e) => e.fence);
}

/** dma_resv_test_signaled: true if every fence with usage <= `usage` has signalled. */
export function dmaResvTestSignaled(obj: DmaResv, usage: DmaResvUsage): boolean {
  checkResv('dmaResvTestSignaled', obj);
  checkUsage('dmaResvTestSignaled', usage);
  return obj._entries().every((e) => e.usage > usage || dmaFenceIsSignaled(e.fence));
}

/**
 * dma_resv_wait_timeout: wait until every fence with usage <= `usage` has signalled, including
 * fences added while waiting. Resolves to remaining ms (> 0) or 0 on timeout; EINVAL for a
 * negative timeout; ERESTARTSYS if interrupted. Must not be called in a signalling section.
 */
export async function dmaResvWaitTimeout(
  obj: DmaResv,
  usage: DmaResvUsage,
  timeoutMs: number,
  opts: DmaFenceWaitOpts = {},
): Promise<number> {
  checkResv('dmaResvWaitTimeout', obj);
  checkUsage('dmaResvWaitTimeout', usage);
  if (!(timeoutMs >= 0)) throw err('EINVAL', `dmaResvWaitTimeout: timeout ${timeoutMs} < 0`);
  const end = performance.now() + timeoutMs;
  for (;;) {
    const pending = obj._entries().find((e) => e.usage <= usage && !dmaFenceIsSignaled(e.fence));
    if (!pending) return Math.max(1, end - performance.now());
    const left = Math.max(0, end - performance.now());
    if (left === 0 || (await dmaFenceWaitTimeout(pending.fence, left, opts)) === 0) return 0;
  }
}

/**
 * dma_resv_get_singleton (rule 24): one fence standing for every unsignalled fence with usage <=
 * `usage`: null when there is none, the fence itself when there is one, else a new
 * dma_fence_array over them (a new context, signalling when all have).
 */
export function dmaResvGetSingleton(obj: DmaResv, usage: DmaResvUsage): DmaFence | null {
  const pending = dmaResvGetFences(obj, usage).filter((f) => !dmaFenceIsSignaled(f));
  if (pending.length === 0) return null;
  if (pending.length === 1) return dmaFenceGet(pending[0]);
  return dmaFenceArrayCreate(
    pending.map((f) => dmaFenceGet(f)),
    dmaFenceContextAlloc(1),
    1,
    false,
  );
}

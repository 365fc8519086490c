/**
 * Wound/wait mutex, wait-die flavour (kernel/locking/ww_mutex.h, reservation_ww_class), async.
 *
 * DOC: deadlock avoidance
 * A transaction that locks several objects takes a WwAcquireCtx, whose stamp orders it against
 * every other transaction (lower stamp = older). When a transaction that already holds locks meets
 * a lock held (or about to be handed) to an older transaction, it "dies": lock() rejects with
 * EDEADLK and the caller must unlock everything it holds in this context, lockSlow() the contended
 * lock, and retry. Older transactions wait. Waits only ever go from older to younger (or from a
 * transaction holding nothing), so no cycle can form.
 *
 * Locking with ctx == null has no deadlock avoidance, as in the kernel. Recursion by the same
 * task is detected and reported as EDEADLK instead of hanging (see task.ts).
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { currentTask, ROOT_TASK, type Task } from './task.ts';

let nextStamp = 1;

/** ww_acquire_ctx: one multi-object locking transaction. */
export class WwAcquireCtx {
  readonly stamp: number;
  readonly name: string;
  /** Locks currently held in this context. */
  acquired = 0;
  /** ww_acquire_done() was called: no more locks may be taken. */
  done = false;
  finished = false;

  /** ww_acquire_init. */
  constructor(name = 'ww_ctx') {
    this.stamp = nextStamp++;
    this.name = name;
  }

  /** ww_acquire_done: all locks are taken; further lock() calls are a bug (EINVAL). */
  acquireDone(): void {
    this.done = true;
  }

  /** ww_acquire_fini: the context must not hold locks any more (EBUSY otherwise). */
  acquireFini(): void {
    if (this.acquired !== 0)
      throw err('EBUSY', `wwAcquireFini(${this.name}): ${this.acquired} lock(s) still held`);
    this.finished = true;
  }
}

interface Waiter {
  ctx: WwAcquireCtx | null;
  task: Task;
  resolve: () => void;
  reject: (e: Error) => void;
  cleanup?: () => void;
}

/** Lock options: an AbortSignal makes the wait interruptible (ERESTARTSYS / EINTR). */
export interface WwLockOpts {
  signal?: AbortSignal;
  /** lockSlow: wait without the die check (the caller holds nothing in ctx after backing off). */
  slow?: boolean;
}

export class WwMutex {
  readonly name: string;
  private ownerCtx: WwAcquireCtx | null = null;
  private ownerTask: Task | null = null;
  private locked = false;
  private waiters: Waiter[] = [];

  constructor(name: string) {
    this.name = name;
  }

  get isLocked(): boolean {
    return this.locked;
  }

  /** The acquire context holding the lock (null for ctx-less locking or when unlocked). */
  get ctx(): WwAcquireCtx | null {
    return this.ownerCtx;
  }

  /** True if the lock is held by the calling task (by anyone when the caller is ROOT_TASK). */
  heldByCurrent(): boolean {
    if (!this.locked) return false;
    const t = currentTask();
    return t === ROOT_TASK || this.ownerTask === t || this.ownerTask === ROOT_TASK;
  }

  /** True only if a real task (not ROOT_TASK) holds the lock and it is the calling task. */
  ownerIsCurrentTask(): boolean {
    const t = currentTask();
    return this.locked && t !== ROOT_TASK && this.ownerTask === t;
  }

  /**
   * ww_mutex_lock. Resolves once held. Rejects with EALREADY if ctx already holds it, EDEADLK if
   * ctx must back off (wait-die) or if the calling task already holds it without a ctx
   * (recursive locking), ERESTARTSYS if interrupted through opts.signal.
   */
  lock(ctx: WwAcquireCtx | null, opts: WwLockOpts = {}): Promise<void> {
    if (ctx?.done)
      return Promise.reject(err('EINVAL', `wwMutexLock(${this.name}): ctx ${ctx.name} after acquireDone`));
    if (ctx?.finished)
      return Promise.reject(err('EINVAL', `wwMutexLock(${this.name}): ctx ${ctx.name} finished`));
    if (!this.locked) {
      this.take(ctx, currentTask());
      return Promise.resolve();
    }
    if (ctx && this.ownerCtx === ctx)
      return Promise.reject(err('EALREADY', `wwMutexLock(${this.name}): held by ctx ${ctx.name}`));
    const task = currentTask();
    if (task !== ROOT_TASK && this.ownerTask === task && (!ctx || this.ownerCtx === null)) {
      trace('resvDeadlock', () => ({ lock: this.name, task: task.name, reason: 'recursive' }));
      return Promise.reject(
        err('EDEADLK', `wwMutexLock(${this.name}): task ${task.name} already holds it (recursive locking)`),
      );
    }
    if (ctx && !opts.slow && this.mustDie(ctx, this.ownerCtx)) return Promise.reject(this.dieError(ctx));
    if (opts.signal?.aborted)
      return Promise.reject(err('ERESTARTSYS', `wwMutexLock(${this.name}): interrupted`));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { ctx, task, resolve, reject };
      if (opts.signal) {
        const signal = opts.signal;
        const onAbort = () => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(err('ERESTARTSYS', `wwMutexLock(${this.name}): interrupted`));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        w.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.waiters.push(w);
    });
  }

  /** ww_mutex_trylock: true if taken now. Never waits, never dies. */
  trylock(ctx: WwAcquireCtx | null = null): boolean {
    if (this.locked) return false;
    this.take(ctx, currentTask());
    return true;
  }

  /** ww_mutex_unlock: release and hand over to the oldest waiter. EPERM if not locked. */
  unlock(): void {
    if (!this.locked) throw err('EPERM', `wwMutexUnlock(${this.name}): not locked`);
    if (this.ownerCtx) this.ownerCtx.acquired--;
    this.locked = false;
    this.ownerCtx = null;
    this.ownerTask = null;
    this.handOff();
  }

  private take(ctx: WwAcquireCtx | null, task: Task): void {
    this.locked = true;
    this.ownerCtx = ctx;
    this.ownerTask = task;
    if (ctx) ctx.acquired++;
  }

  // Wait-die: a younger transaction that holds locks must not wait for an older one.
  private mustDie(ctx: WwAcquireCtx, holder: WwAcquireCtx | null): boolean {
    return holder !== null && ctx.acquired > 0 && ctx.stamp > holder.stamp;
  }

  private dieError(ctx: WwAcquireCtx): Error {
    trace('resvDeadlock', () => ({ lock: this.name, ctx: ctx.name, stamp: ctx.stamp }));
    return err(
      'EDEADLK',
      `wwMutexLock(${this.name}): ctx ${ctx.name} must back off (older transaction holds it)`,
    );
  }

  private handOff(): void {
    if (this.waiters.length === 0) return;
    // Oldest ctx waiter first (stamp order), then ctx-less waiters in arrival order.
    let best = 0;
    for (let i = 1; i < this.waiters.length; i++) {
      const a = this.waiters[i].ctx;
      const b = this.waiters[best].ctx;
      if (a && (!b || a.stamp < b.stamp)) best = i;
    }
    const [next] = this.waiters.splice(best, 1);
    next.cleanup?.();
    this.take(next.ctx, next.task);
    // Waiters that now wait on an older owner while holding other locks must die.
    if (next.ctx) {
      const keep: Waiter[] = [];
      for (const w of this.waiters) {
        if (w.ctx && this.mustDie(w.ctx, next.ctx)) {
          w.cleanup?.();
          w.reject(this.dieError(w.ctx));
        } else keep.push(w);
      }
      this.waiters = keep;
    }
    next.resolve();
  }
}

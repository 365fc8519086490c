/**
 * Deadlines for async expectations (nats.js `Lock(n, ms)` habit): nothing in p2pemu waits
 * without one.
 */
import { EmuError } from './errno.ts';

/** Resolve with `p`, or reject ETIMEDOUT naming `what` after `ms`. Clears its timer either way. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EmuError('ETIMEDOUT', `${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** A latch that resolves after `count` unlock() calls, or rejects ETIMEDOUT after `ms`. */
export class Latch {
  private remaining: number;
  private resolveFn!: () => void;
  readonly done: Promise<void>;

  constructor(count: number, ms: number, what = 'latch') {
    this.remaining = count;
    const p = new Promise<void>((resolve) => {
      this.resolveFn = resolve;
    });
    this.done = withDeadline(p, ms, `${what} (${count} expected)`);
    if (count <= 0) this.resolveFn();
  }

  unlock(): void {
    if (--this.remaining === 0) this.resolveFn();
  }

  get pending(): number {
    return Math.max(0, this.remaining);
  }
}

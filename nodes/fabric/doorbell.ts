/**
 * Doorbells: the "something is in your ring" word, in either direction (kernel -> device for a
 * submission queue, device -> kernel for a completion queue, where it plays the interrupt).
 *
 * A doorbell is two words at `base` in some control block (device-queue-layout.ts places them):
 *   COUNT        an event counter the ringer bumps with Atomics.add after publishing slots;
 *   NEED_WAKEUP  1 while the other side is (about to be) asleep on COUNT; set and cleared by
 *                the sleeper only.
 * The ringer notifies only when NEED_WAKEUP is set (AF_XDP's XDP_RING_NEED_WAKEUP, virtio's
 * event suppression), so a busy consumer costs the producer one atomic add per batch and no
 * futex call.
 *
 * No wake-up is lost (all Atomics are sequentially consistent): the sleeper stores NEED_WAKEUP=1
 * and then waits while COUNT still equals the value it loaded before it last drained its ring;
 * the ringer adds to COUNT and then loads NEED_WAKEUP. If the ringer read 0, its add came before
 * the sleeper's store, so the wait sees a changed COUNT and returns at once.
 */
import { layoutCheck } from './layout.ts';

/** Word offsets relative to a doorbell's base. */
export const DoorbellWord = {
  COUNT: 0,
  NEED_WAKEUP: 1,
} as const;
export const DOORBELL_WORDS = 2;

layoutCheck('Doorbell', DoorbellWord, DOORBELL_WORDS, 8);

/**
 * Ring: bump COUNT (publishing every slot committed before this call) and wake the other side
 * if it asked for it, or always with `force` (stop requests). Returns true if it notified.
 * Called by: producers after a batch, any thread. Never waits.
 */
export function doorbellRing(w: Int32Array, base: number, force = false): boolean {
  // release: slots committed before this add are visible to whoever observes the new COUNT.
  Atomics.add(w, base + DoorbellWord.COUNT, 1);
  // load NEED_WAKEUP after the add: see the file comment for why no wake-up is lost.
  if (!force && Atomics.load(w, base + DoorbellWord.NEED_WAKEUP) === 0) return false;
  Atomics.notify(w, base + DoorbellWord.COUNT);
  return true;
}

/**
 * Current COUNT. A consumer loads it before draining its ring and passes it to doorbellWait(),
 * so a ring between the drain and the wait is not lost. Any thread.
 */
export function doorbellRead(w: Int32Array, base: number): number {
  return Atomics.load(w, base + DoorbellWord.COUNT);
}

/**
 * Sleep until COUNT moves away from `seen` or `sliceMs` passes (one bounded slice: callers loop
 * and re-check their stop word). Blocks the thread: workers only, never the kernel thread.
 * Returns Atomics.wait's result.
 */
export function doorbellWait(
  w: Int32Array,
  base: number,
  seen: number,
  sliceMs: number,
): 'ok' | 'not-equal' | 'timed-out' {
  // ask for a notify before the wait checks COUNT (pairs with the ringer's add-then-load).
  Atomics.store(w, base + DoorbellWord.NEED_WAKEUP, 1);
  const r = Atomics.wait(w, base + DoorbellWord.COUNT, seen, sliceMs);
  // awake: rings until the next wait need not notify.
  Atomics.store(w, base + DoorbellWord.NEED_WAKEUP, 0);
  return r;
}

/**
 * Kernel-thread variant: arm one Atomics.waitAsync on COUNT while it equals `seen`, with
 * NEED_WAKEUP set first. Returns the promise, or null if COUNT already moved (the caller drains
 * again instead of waiting). The caller clears NEED_WAKEUP with doorbellDisarm() when it wakes.
 * No timeout on purpose: a waitAsync timeout is a platform timer per wait; callers keep their
 * own deadline (hang timer) instead.
 */
export function doorbellWaitAsync(w: Int32Array, base: number, seen: number): Promise<unknown> | null {
  // ask for a notify before waitAsync checks COUNT, as doorbellWait does.
  Atomics.store(w, base + DoorbellWord.NEED_WAKEUP, 1);
  const r = Atomics.waitAsync(w, base + DoorbellWord.COUNT, seen);
  if (r.async) return r.value;
  Atomics.store(w, base + DoorbellWord.NEED_WAKEUP, 0);
  return null;
}

/** Clear NEED_WAKEUP after a doorbellWaitAsync() woke (or was abandoned). */
export function doorbellDisarm(w: Int32Array, base: number): void {
  Atomics.store(w, base + DoorbellWord.NEED_WAKEUP, 0);
}

/** Wake every waiter on COUNT without moving it (they re-check and sleep again). */
export function doorbellKick(w: Int32Array, base: number): void {
  Atomics.notify(w, base + DoorbellWord.COUNT);
}

/**
 * Device-side view of one hardware fence timeline (the GPU's fence writeback, amdgpu_fence.c).
 *
 * Roles: the device that owns the timeline is its only signaller; any thread may wait on it
 * (other devices with wait(), the kernel through DmaFenceSharedTimeline's watcher). Waits block
 * in Atomics.wait, so wait() is for worker threads only: the main thread never blocks.
 * Imports only fabric/ and common/ (devices may not import the kernel).
 */
import { err } from '../../../common/errno.ts';
import {
  FENCE_FLAG_FORCED,
  FENCE_RING_ENTRY_WORDS,
  FENCE_SLOT_HDR_WORDS,
  FenceRingEntry,
  FenceSlotHdr,
  type HwFenceDesc,
  hwFenceCheck,
  hwFenceSlotBase,
  seqnoPassed,
} from './hw-fence-layout.ts';

/** Result of a device-side wait: an expected "no" is a value, not an exception. */
export type HwFenceWaitResult = 'ok' | 'timed-out';

/**
 * Longest single Atomics.wait. Waits are sliced so a waiter re-checks its deadline and a
 * terminating worker is never parked for long.
 */
export const HW_FENCE_WAIT_SLICE_MS = 50;

export class HwFenceTimeline {
  readonly desc: HwFenceDesc;
  readonly ringSize: number;
  /** Word index of SEQNO; public so the kernel's watcher can Atomics.waitAsync on it. */
  readonly seqnoWord: number;
  readonly i32: Int32Array;
  private readonly flagsWord: number;
  private readonly ring: number;
  private readonly mask: number;

  /** Attach to the timeline `desc` names. Throws RangeError if desc is not fence memory. */
  constructor(desc: HwFenceDesc) {
    this.ringSize = hwFenceCheck(desc);
    this.desc = desc;
    this.i32 = new Int32Array(desc.sab);
    const base = hwFenceSlotBase(this.ringSize, desc.index);
    this.seqnoWord = base + FenceSlotHdr.SEQNO;
    this.flagsWord = base + FenceSlotHdr.FLAGS;
    this.ring = base + FENCE_SLOT_HDR_WORDS;
    this.mask = this.ringSize - 1;
  }

  /**
   * Report `seqno` complete with `error` (0 or a negative errno); completes every earlier seqno
   * too. Called by: the owning device, any thread. Never blocks.
   * Throws: EINVAL for a non-integer seqno or a positive error (a device-model bug).
   */
  signal(seqno: number, error = 0): void {
    if (!Number.isInteger(seqno)) throw err('EINVAL', `hwFenceSignal: seqno ${seqno} is not an integer`);
    if (!Number.isInteger(error) || error > 0)
      throw err('EINVAL', `hwFenceSignal: error ${error} must be <= 0`);
    const i32 = this.i32;
    const e = this.ring + (seqno & this.mask) * FENCE_RING_ENTRY_WORDS;
    const t = process.hrtime();
    // fill the ring entry with plain stores: the SEQNO store below publishes them.
    i32[e + FenceRingEntry.ERROR] = error;
    i32[e + FenceRingEntry.TS_SEC] = t[0];
    i32[e + FenceRingEntry.TS_NSEC] = t[1];
    i32[e + FenceRingEntry.TAG] = seqno | 0;
    // publish: a reader that loads this seqno sees the entry above.
    Atomics.store(i32, this.seqnoWord, seqno | 0);
    // wake after publishing, so a woken waiter cannot miss the new value.
    Atomics.notify(i32, this.seqnoWord);
  }

  /**
   * Block until `seqno` is complete or `timeoutMs` ms have passed (Infinity allowed), in slices
   * of HW_FENCE_WAIT_SLICE_MS. Called by: device workers only (blocks the thread).
   * Returns 'ok' or 'timed-out'. Throws: EINVAL for a negative or NaN timeout.
   */
  wait(seqno: number, timeoutMs: number): HwFenceWaitResult {
    const i32 = this.i32;
    const word = this.seqnoWord;
    // load first: the common case (already complete) costs one atomic load.
    let cur = Atomics.load(i32, word);
    if (seqnoPassed(cur, seqno)) return 'ok';
    if (!(timeoutMs >= 0)) throw err('EINVAL', `hwFenceWait: timeoutMs ${timeoutMs} must be >= 0`);
    const start = performance.now();
    let left = timeoutMs;
    for (;;) {
      // sleeps only while SEQNO still equals `cur`: a store between load and wait is not lost.
      Atomics.wait(i32, word, cur, Math.min(left, HW_FENCE_WAIT_SLICE_MS));
      cur = Atomics.load(i32, word);
      if (seqnoPassed(cur, seqno)) return 'ok';
      left = timeoutMs - (performance.now() - start);
      if (left <= 0) return 'timed-out';
    }
  }

  /** Last completed seqno (u32). May be stale by the time the caller looks at it. */
  read(): number {
    return Atomics.load(this.i32, this.seqnoWord) >>> 0;
  }

  /** True if `seqno` is complete. */
  isSignaled(seqno: number): boolean {
    return seqnoPassed(Atomics.load(this.i32, this.seqnoWord), seqno);
  }

  /**
   * Error the device reported for `seqno`: 0 or a negative errno. 0 too when the ring entry no
   * longer (or never) describes `seqno`: completed by a later store, or older than the ring.
   * Meaningful once isSignaled(seqno); call that first (it is the acquire load).
   */
  errorOf(seqno: number): number {
    const e = this.ring + (seqno & this.mask) * FENCE_RING_ENTRY_WORDS;
    return this.i32[e + FenceRingEntry.TAG] === (seqno | 0) ? this.i32[e + FenceRingEntry.ERROR] : 0;
  }

  /** Device completion time of `seqno` in ns (process.hrtime clock), or -1 if not recorded. */
  timestampOf(seqno: number): number {
    const i32 = this.i32;
    const e = this.ring + (seqno & this.mask) * FENCE_RING_ENTRY_WORDS;
    if (i32[e + FenceRingEntry.TAG] !== (seqno | 0)) return -1;
    return i32[e + FenceRingEntry.TS_SEC] * 1e9 + i32[e + FenceRingEntry.TS_NSEC];
  }

  /** True after the kernel force-completed this timeline: the device must be reset. */
  get forced(): boolean {
    return (Atomics.load(this.i32, this.flagsWord) & FENCE_FLAG_FORCED) !== 0;
  }

  /**
   * Kernel hang recovery (amdgpu_fence_driver_force_completion): record `error` for every seqno
   * in (read(), upTo], mark the slot FORCED, then publish upTo and wake every waiter.
   * Called by: the kernel only, with the device stopped. Never blocks.
   */
  forceComplete(upTo: number, error: number): void {
    const i32 = this.i32;
    const ahead = (upTo - Atomics.load(i32, this.seqnoWord)) | 0;
    const n = ahead > 0 ? Math.min(ahead, this.ringSize) : 0;
    const t = process.hrtime();
    for (let k = 0; k < n; k++) {
      const s = (upTo - k) | 0;
      const e = this.ring + (s & this.mask) * FENCE_RING_ENTRY_WORDS;
      i32[e + FenceRingEntry.ERROR] = error;
      i32[e + FenceRingEntry.TS_SEC] = t[0];
      i32[e + FenceRingEntry.TS_NSEC] = t[1];
      i32[e + FenceRingEntry.TAG] = s;
    }
    Atomics.or(i32, this.flagsWord, FENCE_FLAG_FORCED);
    // publish the forced entries with the seqno, as signal() does; never move SEQNO backwards.
    if (ahead > 0) Atomics.store(i32, this.seqnoWord, upTo | 0);
    Atomics.notify(i32, this.seqnoWord);
  }

  /** Wake every waiter on SEQNO without changing it (they re-check and sleep again). */
  kick(): void {
    Atomics.notify(this.i32, this.seqnoWord);
  }
}

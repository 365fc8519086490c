/**
 * Hardware fence memory: the shared-memory contract between device workers (which complete work
 * and write seqnos) and the kernel (nodes/kernel/dma-buf/dma-fence-shared.ts, which turns those
 * seqnos into DmaFence signals). Modelled on amdgpu_fence.c: a hardware timeline is one 32-bit
 * seqno writeback word that the GPU overwrites with the seqno of the last completed job, so one
 * store completes every earlier job too. Nothing here imports kernel code.
 *
 * One SharedArrayBuffer holds SLOTS timelines (as amdgpu packs fence writeback slots in one page):
 *
 *   [FenceMemHdr, 16 words][slot 0][slot 1]...
 *   slot = [FenceSlotHdr, 16 words: SEQNO alone on its cache line][ring: RING_SIZE entries]
 *   ring entry (FenceRingEntry, 4 words) for seqno s sits at s & (RING_SIZE - 1):
 *     TAG     the seqno this entry describes (an entry whose TAG is not s says nothing about s)
 *     ERROR   0 or a negative errno the device reported for s
 *     TS_SEC, TS_NSEC   device completion time, CLOCK_MONOTONIC (process.hrtime clock)
 *
 * Seqnos are u32 and wrap: "s is complete" is `((SEQNO - s) | 0) >= 0`, the kernel's 32-bit
 * dma_fence_is_later rule. Publication order: the device fills the ring entry with plain stores,
 * then `Atomics.store`s SEQNO (release), then notifies; readers `Atomics.load` SEQNO first.
 */

import { layoutCheck } from '../layout.ts';

export const HW_FENCE_MAGIC = 0x464e4345; // 'FNCE'
export const HW_FENCE_VERSION = 1;

export const FenceMemHdr = {
  MAGIC: 0,
  VERSION: 1,
  /** Timelines in this SAB. */
  SLOTS: 2,
  /** Error-ring entries per timeline, a power of two. */
  RING_SIZE: 3,
} as const;
export const FENCE_MEM_HDR_WORDS = 16;

export const FenceSlotHdr = {
  /** Last completed seqno (u32 stored as i32). The one word waiters wait on. */
  SEQNO: 0,
  /** FENCE_FLAG_* bits, written by the kernel. */
  FLAGS: 1,
} as const;
export const FENCE_SLOT_HDR_WORDS = 16;

export const FenceRingEntry = {
  TAG: 0,
  ERROR: 1,
  TS_SEC: 2,
  TS_NSEC: 3,
} as const;
export const FENCE_RING_ENTRY_WORDS = 4;

/**
 * The kernel force-completed this timeline (hang recovery): it wrote SEQNO itself, so a device
 * that comes back must be reset before it signals again, or SEQNO may go backwards.
 */
export const FENCE_FLAG_FORCED = 1 << 0;

export const HW_FENCE_DEFAULT_RING_SIZE = 64;
export const HW_FENCE_MAX_RING_SIZE = 1 << 16;

layoutCheck('FenceMemHdr', FenceMemHdr, FENCE_MEM_HDR_WORDS, 64);
layoutCheck('FenceSlotHdr', FenceSlotHdr, FENCE_SLOT_HDR_WORDS, 64);
layoutCheck('FenceRingEntry', FenceRingEntry, FENCE_RING_ENTRY_WORDS, 16);

/**
 * Where a hardware timeline lives: structured-cloneable, so it can be posted to a worker or
 * passed in workerData (the SAB is shared, not copied).
 */
export interface HwFenceDesc {
  readonly sab: SharedArrayBuffer;
  /** Slot number inside `sab`, 0 <= index < SLOTS. */
  readonly index: number;
}

/** Words of one timeline slot with `ringSize` ring entries. */
export function hwFenceSlotWords(ringSize: number): number {
  return FENCE_SLOT_HDR_WORDS + ringSize * FENCE_RING_ENTRY_WORDS;
}

/** Bytes of a fence memory SAB holding `slots` timelines of `ringSize` entries. */
export function hwFenceMemoryBytes(slots: number, ringSize: number): number {
  return (FENCE_MEM_HDR_WORDS + slots * hwFenceSlotWords(ringSize)) * 4;
}

/** Word index of slot `index`'s header. */
export function hwFenceSlotBase(ringSize: number, index: number): number {
  return FENCE_MEM_HDR_WORDS + index * hwFenceSlotWords(ringSize);
}

/** True if u32 seqno `cur` has reached `seqno` (32-bit wrap-around compare). */
export function seqnoPassed(cur: number, seqno: number): boolean {
  return ((cur - seqno) | 0) >= 0;
}

/**
 * Allocate fence memory for `slots` timelines. Every slot starts at seqno 0; the kernel
 * re-initialises a slot with hwFenceInit() when it builds a timeline on it.
 * Called by: the kernel (drivers), on the main thread. Throws: Error for bad sizes (setup bug).
 */
export function createHwFenceMemory(slots = 1, ringSize = HW_FENCE_DEFAULT_RING_SIZE): SharedArrayBuffer {
  if (!Number.isInteger(slots) || slots < 1 || slots > 4096) {
    throw new RangeError(`createHwFenceMemory: slots ${slots} must be an integer in [1, 4096]`);
  }
  if (
    !Number.isInteger(ringSize) ||
    ringSize < 2 ||
    ringSize > HW_FENCE_MAX_RING_SIZE ||
    ringSize & (ringSize - 1)
  ) {
    throw new RangeError(`createHwFenceMemory: ringSize ${ringSize} must be a power of two in [2, 65536]`);
  }
  const sab = new SharedArrayBuffer(hwFenceMemoryBytes(slots, ringSize));
  const i32 = new Int32Array(sab);
  i32[FenceMemHdr.SLOTS] = slots;
  i32[FenceMemHdr.RING_SIZE] = ringSize;
  i32[FenceMemHdr.VERSION] = HW_FENCE_VERSION;
  for (let s = 0; s < slots; s++) initSlot(i32, ringSize, s, 0);
  // publish the header last: a reader that sees MAGIC sees the sizes.
  Atomics.store(i32, FenceMemHdr.MAGIC, HW_FENCE_MAGIC);
  return sab;
}

/**
 * Check a descriptor against its SAB header and size; returns the ring size.
 * Called by: both sides when they attach to a timeline. Throws: RangeError (setup bug).
 */
export function hwFenceCheck(desc: HwFenceDesc): number {
  const sab = desc?.sab;
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < FENCE_MEM_HDR_WORDS * 4) {
    throw new RangeError('hwFence: desc.sab is not fence memory (not a SharedArrayBuffer or too small)');
  }
  const i32 = new Int32Array(sab, 0, FENCE_MEM_HDR_WORDS);
  if (
    Atomics.load(i32, FenceMemHdr.MAGIC) !== HW_FENCE_MAGIC ||
    i32[FenceMemHdr.VERSION] !== HW_FENCE_VERSION
  ) {
    throw new RangeError('hwFence: desc.sab has no fence memory header (magic/version mismatch)');
  }
  const slots = i32[FenceMemHdr.SLOTS];
  const ringSize = i32[FenceMemHdr.RING_SIZE];
  if (sab.byteLength < hwFenceMemoryBytes(slots, ringSize)) {
    throw new RangeError(
      `hwFence: desc.sab is ${sab.byteLength} bytes, header says ${slots} slots of ${ringSize}`,
    );
  }
  if (!Number.isInteger(desc.index) || desc.index < 0 || desc.index >= slots) {
    throw new RangeError(`hwFence: desc.index ${desc.index} outside [0, ${slots})`);
  }
  return ringSize;
}

/**
 * Reset one slot so that `start` counts as completed and no ring entry claims a later seqno.
 * Called by: the kernel before it hands the slot to a device (no device may use it yet).
 */
export function hwFenceInit(desc: HwFenceDesc, start: number): void {
  const ringSize = hwFenceCheck(desc);
  initSlot(new Int32Array(desc.sab), ringSize, desc.index, start >>> 0);
}

function initSlot(i32: Int32Array, ringSize: number, index: number, start: number): void {
  const base = hwFenceSlotBase(ringSize, index);
  const ring = base + FENCE_SLOT_HDR_WORDS;
  for (let k = 0; k < ringSize; k++) {
    const e = ring + k * FENCE_RING_ENTRY_WORDS;
    // Tag each entry with a seqno already complete at `start`, so a stale entry never matches a
    // seqno the kernel will ask about before the device rewrites it.
    i32[e + FenceRingEntry.TAG] = (start - ((start - k) & (ringSize - 1))) | 0;
    i32[e + FenceRingEntry.ERROR] = 0;
    i32[e + FenceRingEntry.TS_SEC] = 0;
    i32[e + FenceRingEntry.TS_NSEC] = 0;
  }
  Atomics.store(i32, base + FenceSlotHdr.FLAGS, 0);
  // publish: the ring is reset before the new start seqno becomes visible.
  Atomics.store(i32, base + FenceSlotHdr.SEQNO, start | 0);
}

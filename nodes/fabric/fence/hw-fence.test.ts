// Fabric hardware fence memory, device side. Runs on the test thread: the only blocking calls are
// waits of a few ms (the cross-thread behaviour is in nodes/kernel/dma-buf/dma-fence-shared.test.ts).
import { describe, expect, it } from 'vitest';
import { Errno } from '../../../common/errno.ts';
import {
  createHwFenceMemory,
  FENCE_MEM_HDR_WORDS,
  FENCE_RING_ENTRY_WORDS,
  FENCE_SLOT_HDR_WORDS,
  FenceMemHdr,
  FenceRingEntry,
  FenceSlotHdr,
  HW_FENCE_MAGIC,
  hwFenceCheck,
  hwFenceInit,
  hwFenceMemoryBytes,
  hwFenceSlotBase,
  seqnoPassed,
} from './hw-fence-layout.ts';
import { HwFenceTimeline } from './hw-fence.ts';

describe('hw-fence layout', () => {
  it('hw-fence - records have the documented sizes and SEQNO sits alone on a 64-byte line', () => {
    expect([FENCE_MEM_HDR_WORDS * 4, FENCE_SLOT_HDR_WORDS * 4, FENCE_RING_ENTRY_WORDS * 4]).toEqual([
      64, 64, 16,
    ]);
    expect(Object.values(FenceRingEntry).every((o) => o < FENCE_RING_ENTRY_WORDS)).toBe(true);
    expect(hwFenceMemoryBytes(2, 8)).toBe(64 + 2 * (64 + 8 * 16));
    for (const i of [0, 1, 2]) expect(((hwFenceSlotBase(8, i) + FenceSlotHdr.SEQNO) * 4) % 64).toBe(0);
    const sab = createHwFenceMemory(3, 8);
    expect(sab.byteLength).toBe(hwFenceMemoryBytes(3, 8));
    const hdr = new Int32Array(sab);
    expect([hdr[FenceMemHdr.MAGIC], hdr[FenceMemHdr.SLOTS], hdr[FenceMemHdr.RING_SIZE]]).toEqual([
      HW_FENCE_MAGIC,
      3,
      8,
    ]);
  });

  it('hw-fence - createHwFenceMemory refuses bad slot counts and ring sizes', () => {
    expect(() => createHwFenceMemory(0)).toThrow(/slots 0/);
    expect(() => createHwFenceMemory(1, 6)).toThrow(/ringSize 6/);
    expect(() => createHwFenceMemory(1, 1)).toThrow(/ringSize 1/);
    expect(() => createHwFenceMemory(1, 1 << 17)).toThrow(RangeError);
  });

  it('hw-fence - attach refuses memory without the header, too short, or an index out of range', () => {
    expect(() => new HwFenceTimeline({ sab: new SharedArrayBuffer(1024), index: 0 })).toThrow(/magic/);
    expect(() => new HwFenceTimeline({ sab: new ArrayBuffer(64) as never, index: 0 })).toThrow(
      /SharedArrayBuffer/,
    );
    const sab = createHwFenceMemory(2, 4);
    expect(() => hwFenceCheck({ sab, index: 2 })).toThrow(/index 2/);
    expect(() => hwFenceCheck({ sab, index: -1 })).toThrow(RangeError);
    const short = new SharedArrayBuffer(sab.byteLength - 4);
    new Int32Array(short).set(new Int32Array(sab, 0, FENCE_MEM_HDR_WORDS));
    expect(() => hwFenceCheck({ sab: short, index: 0 })).toThrow(/bytes/);
  });

  it('hw-fence - a descriptor survives structured cloning and still shares the memory', () => {
    const desc = { sab: createHwFenceMemory(2), index: 1 };
    const copy = structuredClone(desc);
    new HwFenceTimeline(copy).signal(9, -Errno.EIO);
    const view = new HwFenceTimeline(desc);
    expect([view.read(), view.errorOf(9)]).toEqual([9, -Errno.EIO]);
    expect(new HwFenceTimeline({ sab: desc.sab, index: 0 }).read()).toBe(0);
  });
});

describe('hw-fence device API', () => {
  it('hw-fence - signal publishes seqno, error and timestamp; completing 3 completes 1 and 2', () => {
    const hw = new HwFenceTimeline({ sab: createHwFenceMemory(1, 8), index: 0 });
    const before = Number(process.hrtime.bigint());
    hw.signal(3, -Errno.ETIMEDOUT);
    const after = Number(process.hrtime.bigint());
    expect(hw.read()).toBe(3);
    expect([hw.isSignaled(1), hw.isSignaled(3), hw.isSignaled(4)]).toEqual([true, true, false]);
    expect(hw.errorOf(3)).toBe(-Errno.ETIMEDOUT);
    // Skipped seqnos have no entry of their own: no error, no timestamp.
    expect([hw.errorOf(2), hw.timestampOf(2)]).toEqual([0, -1]);
    expect(hw.timestampOf(3)).toBeGreaterThanOrEqual(before - 1_000);
    expect(hw.timestampOf(3)).toBeLessThanOrEqual(after + 1_000);
    // Eight seqnos later the entry belongs to 11: 3's record is gone, not misattributed.
    hw.signal(11);
    expect([hw.errorOf(3), hw.errorOf(11)]).toEqual([0, 0]);
  });

  it('hw-fence - signal refuses a non-integer seqno or a positive error', () => {
    const hw = new HwFenceTimeline({ sab: createHwFenceMemory(), index: 0 });
    expect(() => hw.signal(1.5)).toThrow(/seqno 1.5/);
    expect(() => hw.signal(1, 5)).toThrow(/error 5/);
    expect(hw.read()).toBe(0);
  });

  it('hw-fence - wait is ok at once when complete, times out as a value, EINVAL for a bad timeout', () => {
    const hw = new HwFenceTimeline({ sab: createHwFenceMemory(), index: 0 });
    hw.signal(2);
    expect(hw.wait(2, 0)).toBe('ok');
    expect(hw.wait(1, -1)).toBe('ok');
    expect(hw.wait(3, 0)).toBe('timed-out');
    const t0 = performance.now();
    expect(hw.wait(3, 5)).toBe('timed-out');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(4);
    expect(() => hw.wait(3, -1)).toThrow(/timeoutMs -1/);
    expect(() => hw.wait(3, Number.NaN)).toThrow(/timeoutMs NaN/);
  });

  it('hw-fence - seqno comparison wraps at 32 bits', () => {
    expect(seqnoPassed(0, 0xffff_ffff)).toBe(true);
    expect(seqnoPassed(0xffff_ffff, 0)).toBe(false);
    expect(seqnoPassed(0x8000_0000, 1)).toBe(true);
    expect(seqnoPassed(0x8000_0001, 1)).toBe(false);
    const sab = createHwFenceMemory(1, 4);
    hwFenceInit({ sab, index: 0 }, 0xffff_fffe);
    const hw = new HwFenceTimeline({ sab, index: 0 });
    hw.signal(1, -Errno.EIO);
    expect([hw.read(), hw.isSignaled(0xffff_ffff), hw.isSignaled(2), hw.errorOf(1)]).toEqual([
      1,
      true,
      false,
      -5,
    ]);
  });

  it('hw-fence - init resets a slot so stale ring entries never match a later seqno', () => {
    const sab = createHwFenceMemory(1, 4);
    const hw = new HwFenceTimeline({ sab, index: 0 });
    for (let s = 1; s <= 4; s++) hw.signal(s, -Errno.EIO);
    hwFenceInit({ sab, index: 0 }, 100);
    expect(hw.read()).toBe(100);
    for (let s = 101; s <= 108; s++) expect(hw.errorOf(s)).toBe(0);
    expect(hw.forced).toBe(false);
  });

  it('hw-fence - forceComplete records the error, marks the slot and never moves SEQNO backwards', () => {
    const hw = new HwFenceTimeline({ sab: createHwFenceMemory(1, 4), index: 0 });
    hw.signal(2);
    hw.forceComplete(5, -Errno.ECANCELED);
    expect([hw.read(), hw.forced, hw.errorOf(2), hw.errorOf(3), hw.errorOf(5)]).toEqual([
      5,
      true,
      0,
      -Errno.ECANCELED,
      -Errno.ECANCELED,
    ]);
    hw.forceComplete(4, -Errno.EIO);
    expect([hw.read(), hw.errorOf(4)]).toEqual([5, -Errno.ECANCELED]);
  });
});

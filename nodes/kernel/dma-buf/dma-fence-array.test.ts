// dma_fence_array behaviour (kernel-semantics §2.4 rule 27, rule 11). No selftest exists upstream;
// these pin down the contract the unwrap and sync_file code rely on.
import { describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import {
  DmaFence,
  DmaFenceFlag,
  type DmaFenceOps,
  dmaFenceContextAlloc,
  dmaFenceEnableSwSignaling,
  dmaFenceGetStatus,
  dmaFenceIsSignaled,
  dmaFenceSetDeadline,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceWaitTimeout,
} from './dma-fence.ts';
import {
  dmaFenceArrayCreate,
  dmaFenceArrayFirst,
  dmaFenceArrayNext,
  dmaFenceIsArray,
  toDmaFenceArray,
} from './dma-fence-array.ts';

const deadlines: number[] = [];
const mockOps: DmaFenceOps = {
  getDriverName: () => 'mock',
  getTimelineName: () => 'mock',
  setDeadline: (_f, ms) => deadlines.push(ms),
};
const mockFence = () => new DmaFence(mockOps, dmaFenceContextAlloc(1), 1);
const mockArray = (fences: DmaFence[], any = false) =>
  dmaFenceArrayCreate(fences, dmaFenceContextAlloc(1), 1, any);

describe('dma-fence-array', () => {
  it('dma-fence-array - signals only when every child has signalled', async () => {
    const [a, b, c] = [mockFence(), mockFence(), mockFence()];
    const array = mockArray([a, b, c]);
    const waiter = dmaFenceWaitTimeout(array, 1000);
    dmaFenceSignal(a);
    dmaFenceSignal(c);
    expect(array.signaledFlag).toBe(false);
    dmaFenceSignal(b);
    expect(array.signaledFlag).toBe(true);
    expect(await withDeadline(waiter, 1000, 'array wait')).toBeGreaterThan(0);
    expect(dmaFenceGetStatus(array)).toBe(1);
  });

  it('dma-fence-array - signal_on_any signals with the first child', () => {
    const [a, b] = [mockFence(), mockFence()];
    const array = mockArray([a, b], true);
    dmaFenceEnableSwSignaling(array);
    dmaFenceSignal(b);
    expect(array.signaledFlag).toBe(true);
    dmaFenceSignal(a); // late child: no second signal, no error
    expect(dmaFenceGetStatus(array)).toBe(1);
  });

  it('dma-fence-array - carries the first child error when it signals', () => {
    const [a, b, c] = [mockFence(), mockFence(), mockFence()];
    const array = mockArray([a, b, c]);
    dmaFenceEnableSwSignaling(array);
    dmaFenceSignal(a);
    dmaFenceSetError(c, -125 /* -ECANCELED */);
    dmaFenceSignal(c);
    expect(dmaFenceGetStatus(array)).toBe(0); // error is invisible until the array signals
    dmaFenceSetError(b, -5 /* -EIO */);
    dmaFenceSignal(b);
    expect(dmaFenceGetStatus(array)).toBe(-125);
  });

  it('dma-fence-array - children signalled before enabling count at once, errors included', () => {
    const [a, b] = [mockFence(), mockFence()];
    dmaFenceSetError(a, -2 /* -ENOENT */);
    dmaFenceSignal(a);
    dmaFenceSignal(b);
    const array = mockArray([a, b]);
    dmaFenceEnableSwSignaling(array);
    expect(array.signaledFlag).toBe(true);
    expect(dmaFenceGetStatus(array)).toBe(-2);
  });

  it('dma-fence-array - is_signaled peeks at children without enabling signalling', () => {
    const [a, b] = [mockFence(), mockFence()];
    const array = mockArray([a, b]);
    dmaFenceSignal(a);
    expect(dmaFenceIsSignaled(array)).toBe(false);
    expect(array.flags & DmaFenceFlag.ENABLE_SIGNAL).toBe(0);
    dmaFenceSignal(b);
    expect(dmaFenceIsSignaled(array)).toBe(true);
  });

  it('dma-fence-array - set_deadline reaches every child', () => {
    deadlines.length = 0;
    const array = mockArray([mockFence(), mockFence()]);
    dmaFenceSetDeadline(array, 42);
    expect(deadlines).toEqual([42, 42]);
  });

  it('dma-fence-array - stays recognisable and iterable after it signalled', () => {
    const [a, b] = [mockFence(), mockFence()];
    const array = mockArray([a, b]);
    dmaFenceSignal(a);
    dmaFenceSignal(b);
    expect(dmaFenceIsSignaled(array)).toBe(true);
    expect(array.ops).toBeNull(); // the core detached the ops
    expect(toDmaFenceArray(array)).toBe(array);
    expect(dmaFenceIsArray(a)).toBe(false);
    expect(dmaFenceArrayFirst(array)).toBe(a);
    expect(dmaFenceArrayNext(array, 1)).toBe(b);
    expect(dmaFenceArrayNext(array, 2)).toBeNull();
    expect(dmaFenceArrayFirst(a)).toBe(a);
  });

  it('dma-fence-array - an empty or non-fence list is EINVAL', () => {
    expect(() => mockArray([])).toThrow(/EINVAL/);
    expect(() => mockArray([{} as DmaFence])).toThrow(/EINVAL: dmaFenceArrayCreate: fences\[0\]/);
  });
});

// Port of drivers/dma-buf/st-dma-fence-unwrap.c (kernel-semantics §8.1), current KUnit version.
import { describe, expect, it } from 'vitest';
import {
  DmaFence,
  type DmaFenceOps,
  dmaFenceContextAlloc,
  dmaFenceEnableSwSignaling,
  dmaFenceGet,
  dmaFenceGetStub,
  dmaFenceIsSignaled,
  dmaFenceSignal,
  dmaFenceSignalTimestamp,
} from './dma-fence.ts';
import { dmaFenceArrayCreate, toDmaFenceArray } from './dma-fence-array.ts';
import { dmaFenceChainInit } from './dma-fence-chain.ts';
import { dmaFenceIsContainer, dmaFenceUnwrapForEach, dmaFenceUnwrapMerge } from './dma-fence-unwrap.ts';

const mockOps: DmaFenceOps = { getDriverName: () => 'mock', getTimelineName: () => 'mock' };

function mockFenceOn(context: number, seqno: number): DmaFence {
  const f = new DmaFence(mockOps, context, seqno);
  dmaFenceEnableSwSignaling(f);
  return f;
}
const mockFence = () => mockFenceOn(dmaFenceContextAlloc(1), 1);
// mock_array / mock_chain take over the references they are given, as in the selftest.
const mockArray = (...fences: DmaFence[]) => dmaFenceArrayCreate(fences, dmaFenceContextAlloc(1), 1, false);
const mockChain = (prev: DmaFence | null, fence: DmaFence) => dmaFenceChainInit(prev, fence, 1);
const leaves = (f: DmaFence) => [...dmaFenceUnwrapForEach(f)];

describe('dma-fence-unwrap', () => {
  it('dma-fence-unwrap - sanitycheck', () => {
    const f = mockFence();
    const chain = mockChain(null, mockArray(f));
    expect(leaves(chain)).toEqual([f]);
    expect(dmaFenceIsContainer(chain)).toBe(true);
    expect(dmaFenceIsContainer(f)).toBe(false);
  });

  it('dma-fence-unwrap - unwrap_array yields exactly the leaves', () => {
    const [f1, f2] = [mockFence(), mockFence()];
    expect(leaves(mockArray(f1, f2))).toEqual([f1, f2]);
  });

  it('dma-fence-unwrap - unwrap_chain yields exactly the leaves', () => {
    const [f1, f2] = [mockFence(), mockFence()];
    expect(new Set(leaves(mockChain(f1, f2)))).toEqual(new Set([f1, f2]));
  });

  it('dma-fence-unwrap - unwrap_chain_array yields exactly the leaves', () => {
    const [f1, f2] = [mockFence(), mockFence()];
    expect(leaves(mockChain(null, mockArray(f1, f2)))).toEqual([f1, f2]);
  });

  it('dma-fence-unwrap - unwrap_merge of two fences holds both', () => {
    const [f1, f2] = [mockFence(), mockFence()];
    const f3 = dmaFenceUnwrapMerge(f1, f2);
    expect(new Set(leaves(f3))).toEqual(new Set([f1, f2]));
  });

  it('dma-fence-unwrap - unwrap_merge_duplicate merge(f, f) is f', () => {
    const f1 = mockFence();
    const f2 = dmaFenceUnwrapMerge(f1, f1);
    expect(f2).toBe(f1);
    expect(leaves(f2)).toEqual([f1]);
  });

  it('dma-fence-unwrap - unwrap_merge_seqno drops the older fence of a context, orders by context', () => {
    const ctx0 = dmaFenceContextAlloc(1);
    const ctx1 = dmaFenceContextAlloc(1);
    const f1 = mockFenceOn(ctx1, 1);
    const f2 = mockFenceOn(ctx1, 2);
    const f3 = mockFenceOn(ctx0, 1);
    const f4 = dmaFenceUnwrapMerge(f1, f2, f3);
    expect(leaves(f4)).toEqual([f3, f2]);
  });

  it('dma-fence-unwrap - unwrap_merge_order a chain in reverse order merges in context order', () => {
    const [f1, f2] = [mockFence(), mockFence()];
    const a1 = mockArray(dmaFenceGet(f1), dmaFenceGet(f2));
    const c1 = mockChain(null, dmaFenceGet(f1));
    const c2 = mockChain(c1, dmaFenceGet(f2));
    const a2 = dmaFenceUnwrapMerge(a1, c2);
    expect(leaves(a2)).toEqual([f1, f2]);
  });

  it('dma-fence-unwrap - unwrap_merge_complex filters the stub and merges two arrays', () => {
    const [f1, f2] = [mockFence(), mockFence()];
    const f3 = dmaFenceUnwrapMerge(f1, f2);
    const f4 = mockArray(dmaFenceGet(f2), dmaFenceGet(f1)); // the same fences, reversed
    const f5 = dmaFenceUnwrapMerge(f3, f4, dmaFenceGetStub());
    expect(leaves(f5)).toEqual([f1, f2]);
  });

  it('dma-fence-unwrap - unwrap_merge_complex_seqno keeps the latest of each context in order', () => {
    const ctx0 = dmaFenceContextAlloc(1);
    const ctx1 = dmaFenceContextAlloc(1);
    const f1 = mockFenceOn(ctx0, 2);
    const f2 = mockFenceOn(ctx1, 1);
    const f3 = mockFenceOn(ctx0, 1);
    const f4 = mockFenceOn(ctx1, 2);
    const f7 = dmaFenceUnwrapMerge(mockArray(f1, f2), mockArray(f3, f4));
    expect(leaves(f7)).toEqual([f1, f4]);
  });

  it('dma-fence-unwrap - merge of signalled fences is a signalled stub with the latest timestamp', () => {
    const [f1, f2] = [mockFence(), mockFence()];
    dmaFenceSignalTimestamp(f1, 100);
    dmaFenceSignalTimestamp(f2, 200);
    const m = dmaFenceUnwrapMerge(f1, mockArray(f2));
    expect(dmaFenceIsSignaled(m)).toBe(true);
    expect(toDmaFenceArray(m)).toBeNull();
    expect(m.timestamp).toBe(200);
  });

  it('dma-fence-unwrap - merge drops signalled leaves and builds an array of the rest', () => {
    const [f1, f2, f3] = [mockFence(), mockFence(), mockFence()];
    dmaFenceSignal(f2);
    const m = dmaFenceUnwrapMerge(f1, f2, f3);
    expect(toDmaFenceArray(m)?.fences).toEqual([f1, f3]);
    expect(dmaFenceUnwrapMerge(f2, f3)).toBe(f3);
  });

  it('dma-fence-unwrap - nested containers are flattened at any depth', () => {
    const [f1, f2, f3] = [mockFence(), mockFence(), mockFence()];
    const inner = mockChain(mockChain(null, f1), mockArray(f2));
    const outer = mockArray(inner, mockChain(null, f3));
    expect(new Set(leaves(outer))).toEqual(new Set([f1, f2, f3]));
  });

  it('dma-fence-unwrap - merge rejects a non-fence argument with EINVAL', () => {
    expect(() => dmaFenceUnwrapMerge(mockFence(), null as unknown as DmaFence)).toThrow(/EINVAL/);
  });
});

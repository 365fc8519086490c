// Port of drivers/dma-buf/st-dma-fence-chain.c (kernel-semantics §8.1), plus stack-depth checks.
import { describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { Rng } from '../../../common/random.ts';
import {
  DmaFence,
  type DmaFenceOps,
  dmaFenceGet,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSignal,
  dmaFenceWaitTimeout,
} from './dma-fence.ts';
import {
  type DmaFenceChain,
  dmaFenceChainFindSeqno,
  dmaFenceChainForEach,
  dmaFenceChainInit,
  toDmaFenceChain,
} from './dma-fence-chain.ts';

const CHAIN_SZ = 4 << 10;
const mockOps: DmaFenceOps = { getDriverName: () => 'mock', getTimelineName: () => 'mock' };

// Like the selftest: every mock fence is context 0, seqno 0.
const mockFence = () => new DmaFence(mockOps, 0, 0);
const mockChain = (prev: DmaFence | null, fence: DmaFence, seqno: number) =>
  dmaFenceChainInit(dmaFenceGet(prev), dmaFenceGet(fence), seqno);

interface FenceChains {
  fences: DmaFence[];
  chains: DmaFenceChain[];
  tail: DmaFenceChain;
}

function fenceChainsInit(count: number, seqnoFn: (i: number) => number): FenceChains {
  const fences: DmaFence[] = [];
  const chains: DmaFenceChain[] = [];
  let tail: DmaFenceChain | null = null;
  for (let i = 0; i < count; i++) {
    fences.push(mockFence());
    tail = mockChain(tail, fences[i], seqnoFn(i));
    chains.push(tail);
  }
  return { fences, chains, tail: tail as DmaFenceChain };
}

const seqnoInc = (i: number) => i + 1;
const seqnoInc2 = (i: number) => 2 * i + 2;

// find_seqno with the selftest's reference handling folded in: the result is compared by identity.
function find(fence: DmaFence, seqno: number): DmaFence | null {
  const found = dmaFenceChainFindSeqno(fence, seqno);
  dmaFencePut(found);
  return found;
}

describe('dma-fence-chain', () => {
  it('dma-fence-chain - sanitycheck', () => {
    const f = mockFence();
    const chain = mockChain(null, f, 1);
    expect(dmaFenceIsSignaled(chain)).toBe(false);
    dmaFenceSignal(f);
    expect(dmaFenceIsSignaled(chain)).toBe(true);
  });

  it('dma-fence-chain - init joins the previous context when the point is later, else starts an unordered one', () => {
    const a = mockChain(null, mockFence(), 5);
    const b = mockChain(a, mockFence(), 7);
    expect(b.context).toBe(a.context);
    expect(b.prevSeqno).toBe(5);
    const c = mockChain(b, mockFence(), 3);
    expect(c.context).not.toBe(b.context);
    expect(c.seqno).toBe(7);
    expect(c.prevSeqno).toBe(0);
  });

  it('dma-fence-chain - find_seqno point 0, each point, self, future point and previous point', () => {
    const fc = fenceChainsInit(64, seqnoInc);
    expect(find(fc.tail, 0)).toBe(fc.tail);
    for (let i = 0; i < fc.chains.length; i++) {
      const fence = find(fc.tail, i + 1);
      expect(fence).toBe(fc.chains[i]);
      expect(find(fence as DmaFence, i + 1)).toBe(fc.chains[i]);
      expect(() => dmaFenceChainFindSeqno(fence as DmaFence, i + 2)).toThrow(/EINVAL/);
      const previous = find(fence as DmaFence, i);
      if (i > 0) expect(previous).toBe(fc.chains[i - 1]);
      else expect(previous).toBe(fence); // point 0: unchanged
    }
  });

  it('dma-fence-chain - find_seqno on a non-chain fence is EINVAL unless the point is 0', () => {
    const f = mockFence();
    expect(find(f, 0)).toBe(f);
    expect(() => dmaFenceChainFindSeqno(f, 1)).toThrow(/EINVAL/);
  });

  it('dma-fence-chain - find_signaled returns the first node or null once it signalled', () => {
    const fc = fenceChainsInit(2, seqnoInc);
    dmaFenceSignal(fc.fences[0]);
    const fence = find(fc.tail, 1);
    expect(fence === null || fence === fc.chains[0]).toBe(true);
  });

  it('dma-fence-chain - find_out_of_order signalling the middle of 1-2-3 resolves point 2 to node 1', () => {
    const fc = fenceChainsInit(3, seqnoInc);
    dmaFenceSignal(fc.fences[1]);
    expect(find(fc.tail, 2)).toBe(fc.chains[0]);
  });

  it('dma-fence-chain - find_gap an odd point resolves to the next even node', () => {
    const fc = fenceChainsInit(64, seqnoInc2);
    for (let i = 0; i < fc.chains.length; i++) {
      const fence = find(fc.tail, 2 * i + 1);
      expect(fence).toBe(fc.chains[i]);
      expect(find(fence as DmaFence, 2 * i + 2)).toBe(fc.chains[i]);
    }
  });

  it('dma-fence-chain - find_race random finds and signals over 4096 links stay consistent', async () => {
    const fc = fenceChainsInit(CHAIN_SZ, seqnoInc);
    const rng = new Rng(0xc4a1);
    const errors: string[] = [];
    // Two interleaved "threads" (the selftest runs one per CPU), yielding between steps.
    const worker = async (rounds: number) => {
      for (let r = 0; r < rounds; r++) {
        const seqno = rng.below(CHAIN_SZ) + 1;
        const fence = dmaFenceChainFindSeqno(fc.tail, seqno);
        if (fence && fence.seqno === seqno) {
          const self = dmaFenceChainFindSeqno(fence, seqno);
          if (self !== fence) errors.push(`find-self ${seqno} gave ${self?.seqno}`);
          dmaFencePut(self);
        }
        dmaFencePut(fence);
        dmaFenceSignal(fc.fences[rng.below(CHAIN_SZ - 1)]);
        if (r % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    };
    await withDeadline(Promise.all([worker(400), worker(400)]), 5000, 'find_race workers');
    expect(errors).toEqual([]);
  });

  it('dma-fence-chain - signal_forward completes chain i but not i+1', () => {
    const fc = fenceChainsInit(64, seqnoInc);
    for (let i = 0; i < fc.chains.length; i++) {
      dmaFenceSignal(fc.fences[i]);
      expect(dmaFenceIsSignaled(fc.chains[i])).toBe(true);
      if (i + 1 < fc.chains.length) expect(dmaFenceIsSignaled(fc.chains[i + 1])).toBe(false);
    }
  });

  it('dma-fence-chain - signal_backward completes nothing until fence 0, then everything', () => {
    const fc = fenceChainsInit(64, seqnoInc);
    for (let i = fc.chains.length - 1; i >= 0; i--) {
      dmaFenceSignal(fc.fences[i]);
      if (i > 0) expect(dmaFenceIsSignaled(fc.chains[i])).toBe(false);
    }
    for (const chain of fc.chains) expect(dmaFenceIsSignaled(chain)).toBe(true);
  });

  // wait_forward / wait_backward / wait_random: a waiter on the tail of 4096 links wakes only
  // after every fence signalled. Callbacks run synchronously, so the tail's flag is exact.
  async function waitChain(order: (fc: FenceChains) => DmaFence[]): Promise<void> {
    const fc = fenceChainsInit(CHAIN_SZ, seqnoInc);
    const waiter = dmaFenceWaitTimeout(fc.tail, 5000);
    const fences = order(fc);
    for (let i = 0; i < fences.length - 1; i++) dmaFenceSignal(fences[i]);
    expect(fc.tail.signaledFlag).toBe(false);
    dmaFenceSignal(fences[fences.length - 1]);
    expect(fc.tail.signaledFlag).toBe(true);
    expect(await withDeadline(waiter, 5000, 'tail wait')).toBeGreaterThan(0);
  }

  it('dma-fence-chain - wait_forward the tail waiter wakes after the last of 4096 signals', async () => {
    await waitChain((fc) => fc.fences);
  });

  it('dma-fence-chain - wait_backward the tail waiter wakes when fence 0 signals last', async () => {
    await waitChain((fc) => [...fc.fences].reverse());
  });

  it('dma-fence-chain - wait_random the tail waiter wakes after a shuffled 4096 signal', async () => {
    await waitChain((fc) => new Rng(4096).shuffle([...fc.fences]));
  });

  it('dma-fence-chain - walking garbage-collects signalled nodes', () => {
    const fc = fenceChainsInit(8, seqnoInc);
    for (const i of [1, 2, 3, 5]) dmaFenceSignal(fc.fences[i]);
    const seen = [...dmaFenceChainForEach(fc.tail)].map((f) => f.seqno);
    expect(seen).toEqual([8, 7, 5, 1]);
    expect(toDmaFenceChain(fc.chains[4])?.prev).toBe(fc.chains[0]);
  });

  it('dma-fence-chain - 20000 links: signalled check, release and enable never recurse', async () => {
    let tail: DmaFenceChain | null = null;
    const fences: DmaFence[] = [];
    for (let i = 0; i < 20000; i++) {
      fences.push(mockFence());
      tail = dmaFenceChainInit(tail, dmaFenceGet(fences[i]), i + 1); // the new node owns `tail`
    }
    const head = tail as DmaFenceChain;
    const waiter = dmaFenceWaitTimeout(head, 5000);
    for (const f of fences.slice(0, -1)) dmaFenceSignal(f);
    expect(dmaFenceIsSignaled(head)).toBe(false);
    dmaFenceSignal(fences[fences.length - 1]);
    expect(await withDeadline(waiter, 5000, 'long chain wait')).toBeGreaterThan(0);

    // An unsignalled 20000-link chain released by its last reference unlinks iteratively.
    let t2: DmaFenceChain | null = null;
    for (let i = 0; i < 20000; i++) t2 = dmaFenceChainInit(t2, mockFence(), i + 1);
    expect(() => dmaFencePut(t2)).not.toThrow();
  });
});

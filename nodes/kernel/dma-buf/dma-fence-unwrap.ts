/**
 * dma-fence-unwrap: iterate the leaves of container fences and merge fences into one
 * (drivers/dma-buf/dma-fence-unwrap.c, include/linux/dma-fence-unwrap.h).
 *
 * DOC: contract (kernel-semantics §2.4 rule 30)
 *  - Unwrapping walks chains (with their garbage collection, so leaves of already-signalled
 *    earlier nodes may be skipped) and opens arrays; the kernel stops at chain-of-array depth,
 *    here any nesting is flattened (recursion depth = nesting depth, never chain length).
 *  - Merging flattens, drops signalled leaves, keeps the latest fence per context and orders
 *    the result by context. Nothing left: a private signalled stub carrying the latest signal
 *    timestamp seen. One left: that fence. Otherwise: a new dma_fence_array.
 */
import {
  DmaFence,
  dmaFenceAllocatePrivateStub,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceIsLater,
  dmaFenceIsSignaled,
} from './dma-fence.ts';
import { dmaFenceArrayCreate, toDmaFenceArray } from './dma-fence-array.ts';
import { dmaFenceChainContained, dmaFenceChainForEach, toDmaFenceChain } from './dma-fence-chain.ts';
import { err } from '../../../common/errno.ts';

/** True for dma_fence_array and dma_fence_chain fences (dma_fence_is_container). */
export function dmaFenceIsContainer(fence: DmaFence): boolean {
  return toDmaFenceArray(fence) !== null || toDmaFenceChain(fence) !== null;
}

/**
 * dma_fence_unwrap_for_each: yield every leaf fence inside `head` (which may itself be a leaf).
 * Leaves are borrowed for the step; take a reference to keep one.
 */
export function* dmaFenceUnwrapForEach(head: DmaFence): Generator<DmaFence, void, undefined> {
  if (!(head instanceof DmaFence)) throw err('EINVAL', 'dmaFenceUnwrapForEach: head is not a DmaFence');
  for (const node of dmaFenceChainForEach(head)) {
    const inner = dmaFenceChainContained(node);
    const array = toDmaFenceArray(inner);
    if (array) {
      for (const child of array.fences) yield* dmaFenceUnwrapForEach(child);
    } else if (inner !== node && toDmaFenceChain(inner)) {
      yield* dmaFenceUnwrapForEach(inner);
    } else {
      yield inner;
    }
  }
}

// Sort key of the merge: context ascending, and within a context the latest fence first.
function fenceCmp(a: DmaFence, b: DmaFence): number {
  if (a.context !== b.context) return a.context < b.context ? -1 : 1;
  if (dmaFenceIsLater(b, a)) return 1;
  if (dmaFenceIsLater(a, b)) return -1;
  return 0;
}

/**
 * dma_fence_unwrap_merge: one fence that signals when every unsignalled leaf of `fences` has.
 * Called by: SYNC_IOC_MERGE (syncFileMerge), DRM_IOCTL_SYNCOBJ_TRANSFER, drivers.
 * The inputs are borrowed; the result is a new reference (a stub, one of the leaves, or a new
 * array with a fresh context and seqno 1).
 * Throws: EINVAL if an argument is not a fence.
 */
export function dmaFenceUnwrapMerge(...fences: DmaFence[]): DmaFence {
  fences.forEach((f, i) => {
    if (!(f instanceof DmaFence)) throw err('EINVAL', `dmaFenceUnwrapMerge: argument ${i} is not a DmaFence`);
  });
  let timestamp = 0;
  const pending: DmaFence[] = [];
  for (const f of fences) {
    for (const leaf of dmaFenceUnwrapForEach(f)) {
      if (!dmaFenceIsSignaled(leaf)) pending.push(leaf);
      else if (leaf.timestamp > timestamp) timestamp = leaf.timestamp;
    }
  }
  if (pending.length === 0) return dmaFenceAllocatePrivateStub(timestamp);
  if (pending.length === 1) return dmaFenceGet(pending[0]);

  pending.sort(fenceCmp);
  // Only the most recent fence of each context survives (it implies the earlier ones, rule 3).
  const kept: DmaFence[] = [pending[0]];
  for (let i = 1; i < pending.length; i++) {
    if (pending[i].context !== kept[kept.length - 1].context) kept.push(pending[i]);
  }
  if (kept.length === 1) return dmaFenceGet(kept[0]);
  return dmaFenceArrayCreate(
    kept.map((f) => dmaFenceGet(f)),
    dmaFenceContextAlloc(1),
    1,
    false,
  );
}

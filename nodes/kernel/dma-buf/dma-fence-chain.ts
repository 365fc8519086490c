/**
 * dma-fence-chain: timeline nodes, one fence plus a link to the previous node
 * (drivers/dma-buf/dma-fence-chain.c). drm_syncobj timelines are built from these.
 *
 * DOC: contract (kernel-semantics §2.4 rules 28, 29)
 *  - A node joins its predecessor's context when its seqno is later; otherwise it starts a new
 *    context with seqno max(prev, seqno) ("unordered point"; timeline order is broken there).
 *  - A node counts as signalled only when its own fence and every earlier node's fence are.
 *  - Walking (dmaFenceChainWalk / dmaFenceChainForEach) unlinks nodes whose fence has signalled,
 *    so chains shrink to their unsignalled nodes.
 *  - Chain seqnos are 64-bit (compared numerically; safe integers up to 2^53 here).
 *
 * References: a node owns one reference to `prev` and one to `fence` (the caller's are taken
 * over). Walking consumes the reference it is given and returns a new one.
 *
 * Stack depth: everything here iterates; nothing recurses along the chain. The node's callback
 * sits on one leaf fence at a time and re-arms on the next unsignalled one, as the kernel's
 * irq_work does, so a 4096-link chain costs no stack.
 */
import { err } from '../../../common/errno.ts';
import {
  DmaFence,
  type DmaFenceCb,
  type DmaFenceOps,
  dmaFenceAddCallback,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSetDeadline,
  dmaFenceSignal,
} from './dma-fence.ts';

const chainOps: DmaFenceOps = {
  getDriverName: () => 'dma_fence_chain',
  getTimelineName: () => 'unbound',
  enableSignaling: (fence) => chainEnableSignaling(fence as DmaFenceChain),
  signaled: (fence) => {
    for (const node of dmaFenceChainForEach(fence)) {
      if (!dmaFenceIsSignaled(dmaFenceChainContained(node))) return false;
    }
    return true;
  },
  setDeadline: (fence, deadlineMs) => {
    for (const node of dmaFenceChainForEach(fence))
      dmaFenceSetDeadline(dmaFenceChainContained(node), deadlineMs);
  },
  release: (fence) => chainRelease(fence as DmaFenceChain),
};

/** struct dma_fence_chain. Create with dmaFenceChainInit(); do not call the constructor. */
export class DmaFenceChain extends DmaFence {
  /** Previous node (or plain fence); null at the start or once everything before is signalled. */
  prev: DmaFence | null;
  /** Seqno of `prev` when this node joined its context; 0 if it started a new one. */
  readonly prevSeqno: number;
  /** The fence this node stands for. */
  readonly fence: DmaFence;
  /** The one callback, queued on the first unsignalled fence found walking back. */
  readonly cb: DmaFenceCb;

  constructor(prev: DmaFence | null, fence: DmaFence, context: number, seqno: number, prevSeqno: number) {
    super(chainOps, context, seqno, { seqno64: true });
    this.prev = prev;
    this.fence = fence;
    this.prevSeqno = prevSeqno;
    this.cb = { func: () => chainCallback(this) };
  }
}

/**
 * dma_fence_chain_init: make a node for `fence` at point `seqno` after `prev`.
 * Called by: drmSyncobjAddPoint() and drivers that build timelines.
 * Takes over the caller's references to `prev` and `fence`.
 * Throws: EINVAL if `fence` is not a fence or `seqno` is not a safe non-negative integer.
 */
export function dmaFenceChainInit(prev: DmaFence | null, fence: DmaFence, seqno: number): DmaFenceChain {
  if (!(fence instanceof DmaFence)) throw err('EINVAL', 'dmaFenceChainInit: fence is not a DmaFence');
  if (prev !== null && !(prev instanceof DmaFence)) {
    throw err('EINVAL', 'dmaFenceChainInit: prev is not a DmaFence or null');
  }
  if (!Number.isSafeInteger(seqno) || seqno < 0) throw err('EINVAL', `dmaFenceChainInit: seqno ${seqno}`);
  const prevChain = toDmaFenceChain(prev);
  // Reuse the previous node's context only if this point keeps the timeline ordered (rule 28).
  if (prevChain && seqno > prevChain.seqno) {
    return new DmaFenceChain(prev, fence, prevChain.context, seqno, prevChain.seqno);
  }
  const point = prevChain ? Math.max(prevChain.seqno, seqno) : seqno;
  return new DmaFenceChain(prev, fence, dmaFenceContextAlloc(1), point, 0);
}

/** dma_fence_chain_alloc + init in one step: JS has no separate allocation. Same contract. */
export const dmaFenceChainAlloc = dmaFenceChainInit;

/** to_dma_fence_chain: the node behind `fence`, or null if it is not a chain node. */
export function toDmaFenceChain(fence: DmaFence | null | undefined): DmaFenceChain | null {
  return fence instanceof DmaFenceChain ? fence : null;
}

/** dma_fence_is_chain. */
export function dmaFenceIsChain(fence: DmaFence | null | undefined): fence is DmaFenceChain {
  return fence instanceof DmaFenceChain;
}

/** dma_fence_chain_contained: the node's fence, or `fence` itself for a non-chain. Borrowed. */
export function dmaFenceChainContained(fence: DmaFence): DmaFence {
  if (!(fence instanceof DmaFence)) throw err('EINVAL', 'dmaFenceChainContained: fence is not a DmaFence');
  const chain = toDmaFenceChain(fence);
  return chain ? chain.fence : fence;
}

/**
 * dma_fence_chain_walk: step from `fence` to the previous unsignalled node, unlinking the
 * signalled nodes in between (garbage collection).
 * Consumes the caller's reference to `fence`; returns a new reference to the next node, or null
 * at the end of the chain (always null for a non-chain fence).
 */
export function dmaFenceChainWalk(fence: DmaFence): DmaFence | null {
  if (!(fence instanceof DmaFence)) throw err('EINVAL', 'dmaFenceChainWalk: fence is not a DmaFence');
  const chain = toDmaFenceChain(fence);
  if (!chain) {
    dmaFencePut(fence);
    return null;
  }
  let prev: DmaFence | null;
  while ((prev = chain.prev)) {
    const prevChain = toDmaFenceChain(prev);
    let replacement: DmaFence | null;
    if (prevChain) {
      if (!dmaFenceIsSignaled(prevChain.fence)) break;
      replacement = dmaFenceGet(prevChain.prev);
    } else {
      if (!dmaFenceIsSignaled(prev)) break;
      replacement = null;
    }
    // The signalled check may run callbacks that walk this chain too: unlink only if nobody
    // else did (the kernel's cmpxchg).
    if (chain.prev === prev) {
      chain.prev = replacement;
      dmaFencePut(prev);
    } else {
      dmaFencePut(replacement);
    }
  }
  const next = dmaFenceGet(prev);
  dmaFencePut(fence);
  return next;
}

/**
 * dma_fence_chain_for_each: iterate from `head` through every unsignalled earlier node,
 * garbage-collecting as it goes. A non-chain `head` yields itself once.
 * Yielded fences are borrowed for the step: take a reference to keep one. Breaking out early
 * is fine; the iterator drops its reference.
 */
export function* dmaFenceChainForEach(head: DmaFence): Generator<DmaFence, void, undefined> {
  if (!(head instanceof DmaFence)) throw err('EINVAL', 'dmaFenceChainForEach: head is not a DmaFence');
  let iter: DmaFence | null = dmaFenceGet(head);
  try {
    while (iter) {
      yield iter;
      iter = dmaFenceChainWalk(iter);
    }
  } finally {
    dmaFencePut(iter);
  }
}

/**
 * dma_fence_chain_find_seqno: the node to wait on for timeline point `seqno`, starting at `fence`.
 * Called by: drm_syncobj (waits, exports, transfers) and drivers resolving timeline points.
 * - seqno 0: returns `fence` unchanged (binary behaviour).
 * - otherwise: the node that will signal once `seqno` is reached. That may be an *earlier*
 *   unsignalled node (earlier points must complete first), or null when the point is already
 *   complete. A point in a gap resolves to the next node above it.
 * `fence` is borrowed; the result is a new reference (put it) or null.
 * Throws: EINVAL if `fence` is not a chain node (seqno != 0) or `seqno` is past its head
 * ("future point").
 */
export function dmaFenceChainFindSeqno(fence: DmaFence, seqno: number): DmaFence | null {
  if (!(fence instanceof DmaFence)) throw err('EINVAL', 'dmaFenceChainFindSeqno: fence is not a DmaFence');
  if (!seqno) return dmaFenceGet(fence);
  const chain = toDmaFenceChain(fence);
  if (!chain) {
    throw err('EINVAL', `dmaFenceChainFindSeqno: fence ${fence.context}:${fence.seqno} is not a chain node`);
  }
  if (chain.seqno < seqno) {
    throw err('EINVAL', `dmaFenceChainFindSeqno: point ${seqno} is past the head (${chain.seqno})`);
  }
  for (const node of dmaFenceChainForEach(chain)) {
    const c = toDmaFenceChain(node);
    // Stop at the node that first covers `seqno`, or where the timeline's context ends.
    if (node.context !== chain.context || !c || c.prevSeqno < seqno) return dmaFenceGet(node);
  }
  return null;
}

// ops.enableSignaling: queue the node's callback on the first unsignalled fence walking back.
// Holds a reference to the node while the callback is queued.
function chainEnableSignaling(head: DmaFenceChain): boolean {
  dmaFenceGet(head);
  for (const node of dmaFenceChainForEach(head)) {
    if (dmaFenceAddCallback(dmaFenceChainContained(node), head.cb) === 0) return true;
  }
  dmaFencePut(head);
  return false;
}

// dma_fence_chain_cb + irq_work: the awaited fence signalled; re-arm on the next, or signal.
function chainCallback(head: DmaFenceChain): void {
  if (!chainEnableSignaling(head)) dmaFenceSignal(head);
  dmaFencePut(head);
}

// dma_fence_chain_release: unlink predecessors we hold the last reference to one by one, so
// releasing a long chain does not recurse.
function chainRelease(chain: DmaFenceChain): void {
  let prev: DmaFence | null;
  while ((prev = chain.prev)) {
    const prevChain = toDmaFenceChain(prev);
    if (prev.refcount > 1 || !prevChain) break;
    chain.prev = prevChain.prev;
    prevChain.prev = null;
    dmaFencePut(prev);
  }
  chain.prev = null;
  dmaFencePut(prev);
  dmaFencePut(chain.fence);
}

/**
 * dma-fence-array: one fence standing for N others (drivers/dma-buf/dma-fence-array.c).
 *
 * DOC: contract (kernel-semantics §2.4 rule 27, rule 11)
 *  - The array signals when all children signal, or with `signalOnAny` when the first one does.
 *  - It carries the error of the first child that signalled with one; the error is set just
 *    before the array signals, as dmaFenceSetError() requires.
 *  - The array owns one reference to each child (the caller's references are taken over).
 *  - Arrays are recognised by class (toDmaFenceArray), not by ops: the core detaches ops when a
 *    fence signals, and a signalled array must still unwrap to its children.
 *
 * Child callbacks run synchronously inside the child's signalling section (the kernel bounces
 * through irq_work); the only nesting is container depth, never chain length.
 */
import { err } from '../../../common/errno.ts';
import {
  DmaFence,
  type DmaFenceCb,
  DmaFenceFlag,
  type DmaFenceOps,
  dmaFenceAddCallback,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSetDeadline,
  dmaFenceSetError,
  dmaFenceSignal,
} from './dma-fence.ts';

const arrayOps: DmaFenceOps = {
  getDriverName: () => 'dma_fence_array',
  getTimelineName: () => 'unbound',
  enableSignaling: (fence) => (fence as DmaFenceArray)._enableSignaling(),
  signaled: (fence) => (fence as DmaFenceArray)._signaled(),
  setDeadline: (fence, deadlineMs) => {
    for (const f of (fence as DmaFenceArray).fences) dmaFenceSetDeadline(f, deadlineMs);
  },
  release: (fence) => {
    for (const f of (fence as DmaFenceArray).fences) dmaFencePut(f);
  },
};

/** struct dma_fence_array. Create with dmaFenceArrayCreate(); do not call the constructor. */
export class DmaFenceArray extends DmaFence {
  /** The children, in the order given at creation. */
  readonly fences: readonly DmaFence[];
  readonly signalOnAny: boolean;
  /** Children still to signal before the array does (1 for signal-on-any); <= 0 once done. */
  numPending: number;
  // First child error seen; committed to `error` right before the array signals.
  private pendingError = 0;
  private readonly cbs: DmaFenceCb[];

  constructor(fences: readonly DmaFence[], context: number, seqno: number, signalOnAny: boolean) {
    super(arrayOps, context, seqno);
    this.fences = fences;
    this.signalOnAny = signalOnAny;
    this.numPending = signalOnAny ? 1 : fences.length;
    this.cbs = fences.map(() => ({ func: (f: DmaFence) => this.childSignaled(f) }));
  }

  private recordError(child: DmaFence): void {
    if (child.error && !this.pendingError) this.pendingError = child.error;
  }

  private commitError(): void {
    if (this.pendingError && !this.signaledFlag && !this.error) dmaFenceSetError(this, this.pendingError);
  }

  // dma_fence_array_cb_func: one child is done.
  private childSignaled(child: DmaFence): void {
    this.recordError(child);
    if (--this.numPending === 0) {
      this.commitError();
      dmaFenceSignal(this);
    }
  }

  /** @internal ops.enableSignaling: hook every child; false if already complete. */
  _enableSignaling(): boolean {
    for (let i = 0; i < this.fences.length; i++) {
      const child = this.fences[i];
      if (dmaFenceAddCallback(child, this.cbs[i]) !== 0) {
        // Already signalled: count it now, as its callback will never run.
        this.recordError(child);
        if (--this.numPending === 0) {
          this.commitError();
          return false;
        }
      }
      if (this.signaledFlag) return true;
    }
    return true;
  }

  /** @internal ops.signaled: complete if enough children are (peeking at them if not armed). */
  _signaled(): boolean {
    if (this.flags & DmaFenceFlag.ENABLE_SIGNAL) {
      if (this.numPending > 0) return false;
      this.commitError();
      return true;
    }
    let pending = this.numPending;
    for (const child of this.fences) {
      if (!dmaFenceIsSignaled(child)) continue;
      this.recordError(child);
      if (--pending === 0) {
        this.commitError();
        return true;
      }
    }
    return false;
  }
}

/**
 * dma_fence_array_create: a fence that signals when all of `fences` (or, with `signalOnAny`, the
 * first of them) have signalled, carrying the first child error.
 * Called by: dmaFenceUnwrapMerge(), drivers building a dependency fence.
 * Takes over the caller's reference to each child. Nested containers are allowed here (the kernel
 * WARNs), and dmaFenceUnwrapForEach() flattens them.
 * Throws: EINVAL for an empty list, a non-fence entry, or a bad context/seqno.
 */
export function dmaFenceArrayCreate(
  fences: readonly DmaFence[],
  context: number,
  seqno: number,
  signalOnAny: boolean,
): DmaFenceArray {
  if (!Array.isArray(fences) || fences.length === 0) {
    throw err('EINVAL', 'dmaFenceArrayCreate: fences must be a non-empty array');
  }
  fences.forEach((f, i) => {
    if (!(f instanceof DmaFence)) throw err('EINVAL', `dmaFenceArrayCreate: fences[${i}] is not a DmaFence`);
  });
  return new DmaFenceArray([...fences], context, seqno, signalOnAny);
}

/** to_dma_fence_array: the array behind `fence`, or null if it is not one. */
export function toDmaFenceArray(fence: DmaFence | null | undefined): DmaFenceArray | null {
  return fence instanceof DmaFenceArray ? fence : null;
}

/** dma_fence_is_array. */
export function dmaFenceIsArray(fence: DmaFence | null | undefined): fence is DmaFenceArray {
  return fence instanceof DmaFenceArray;
}

/** dma_fence_array_first: first child of an array, or `head` itself if it is not an array. */
export function dmaFenceArrayFirst(head: DmaFence): DmaFence {
  if (!(head instanceof DmaFence)) throw err('EINVAL', 'dmaFenceArrayFirst: head is not a DmaFence');
  const array = toDmaFenceArray(head);
  return array ? array.fences[0] : head;
}

/** dma_fence_array_next: child `index` of an array, or null past the end (or for a non-array). */
export function dmaFenceArrayNext(head: DmaFence, index: number): DmaFence | null {
  if (!(head instanceof DmaFence)) throw err('EINVAL', 'dmaFenceArrayNext: head is not a DmaFence');
  if (!Number.isInteger(index) || index < 0) throw err('EINVAL', `dmaFenceArrayNext: index ${index}`);
  const array = toDmaFenceArray(head);
  return array && index < array.fences.length ? array.fences[index] : null;
}

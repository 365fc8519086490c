/**
 * The exporter side of a move (invalidate_mappings, kernel-semantics §1.3 rules 11, 22-25), as
 * one helper both movable exporters use: the mock exporter (CPU copy) and the GPU driver (copy
 * on the GPU's copy engine). What differs between them is only where the new backing store
 * comes from and who copies; the fence and invalidate protocol is here, once.
 *
 * DOC: move protocol
 *  1. the exporter takes the resv lock, refuses if pinned (rule 11) and allocates the new store;
 *  2. dmaBufMoveBeginLocked(): snapshot every unsignalled fence on the buffer (BOOKKEEP
 *     included: those are the deps of the copy), emit the move's fence, switch the buffer to
 *     the new store (the exporter's commit()), tell every dynamic importer
 *     (dmaBufInvalidateMappings, lock held) and publish the fence as DMA_RESV_USAGE_KERNEL;
 *     the exporter unlocks. Maps from now on point at the new store, and every importer and
 *     job that follows waits for the KERNEL fence;
 *  3. dmaBufMoveRun(): wait for every dep, copy, give the old store back, signal the fence. So
 *     the old store is reused only after every fence that was on the buffer has signalled
 *     (rule 25), and its release comes before the signal that lets new users in.
 * A dep that never signals (deadline `timeoutMs`) fails the move's fence with -ETIMEDOUT and
 * the old store is never released (ops.leak): the emulator never reuses memory a device may
 * still touch. A copy that fails signals the fence with its error (after ops.release: the
 * copier is done with both stores either way).
 *
 * Thread: kernel (main thread).
 */
import { Errno } from '../../../common/errno.ts';
import type { DmaBuf } from './dma-buf.ts';
import { dmaBufInvalidateMappings } from './dma-buf.ts';
import { type DmaFence, type DmaFenceTimeline, dmaFenceWaitTimeout } from './dma-fence.ts';
import {
  type DmaResv,
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvAssertHeld,
  dmaResvGetFences,
  dmaResvReserveFences,
} from './dma-resv.ts';

/** A published move: its KERNEL fence and the fences its copy must wait for. */
export interface DmaBufMove {
  readonly fence: DmaFence;
  readonly deps: readonly DmaFence[];
}

/** How dmaBufMoveRun() copies and releases; all run on the kernel thread. */
export interface DmaBufMoveOps {
  /** Deadline for each dep, in ms. */
  timeoutMs: number;
  /** Copy old -> new once every dep signalled. Resolves 0 or a negative errno; must not throw. */
  copy(): number | Promise<number>;
  /** Give the old store back. Called once, after copy() settled. */
  release(): void;
  /** A dep never signalled: the old store stays allocated. Called instead of copy/release. */
  leak(): void;
}

/**
 * Steps 2 of DOC: move protocol, with the lock held: deps, fence, commit(), invalidate, KERNEL
 * fence. `dmabuf` is null for a buffer nobody imported (nothing to invalidate).
 * Called by: movable exporters (MockExporter.moveLocked, the GPU's move). Lock: resv held (EPERM).
 * Throws: only what commit() throws, before anything is published.
 */
export function dmaBufMoveBeginLocked(
  resv: DmaResv,
  dmabuf: DmaBuf | null,
  timeline: DmaFenceTimeline,
  commit: () => void,
): DmaBufMove {
  dmaResvAssertHeld(resv, 'dmaBufMoveBeginLocked');
  const deps = dmaResvGetFences(resv, DmaResvUsage.BOOKKEEP).filter((f) => !f.signaledFlag);
  dmaResvReserveFences(resv, 1);
  commit();
  const fence = timeline.emit();
  if (dmabuf !== null) dmaBufInvalidateMappings(dmabuf);
  dmaResvAddFence(resv, fence, DmaResvUsage.KERNEL);
  return { fence, deps };
}

/**
 * Step 3 of DOC: move protocol: ordered after every dep; releases the old store only then and
 * signals `move.fence` on `timeline` last. Never rejects.
 * Called by: the exporter right after dmaBufMoveBeginLocked(), not awaited under the lock.
 */
export async function dmaBufMoveRun(
  move: DmaBufMove,
  timeline: DmaFenceTimeline,
  ops: DmaBufMoveOps,
): Promise<void> {
  // The copy runs asynchronously to the CPU that queued it, even with nothing to wait for.
  await new Promise((r) => setImmediate(r));
  for (const dep of move.deps) {
    if ((await dmaFenceWaitTimeout(dep, ops.timeoutMs)) === 0) {
      ops.leak();
      timeline.signal(move.fence, -Errno.ETIMEDOUT);
      return;
    }
  }
  let status: number;
  try {
    status = await ops.copy();
  } catch {
    status = -Errno.EIO;
  }
  ops.release();
  timeline.signal(move.fence, status < 0 ? status : 0);
}

/**
 * Revoke of VFIO dma-bufs (the revoke half of drivers/vfio/pci/vfio_pci_dmabuf.c, 2026 series
 * "dmabuf-revoke", kernel-semantics §6.2 rules 6-11): vfio_pci_dma_buf_move() for reset and
 * memory decode, vfio_pci_dma_buf_cleanup() for the device's last close, the proposed
 * VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE (rule 11, Jun 2026) for one buffer, and the live-mapping
 * count (kref + completion) a revoke waits on.
 *
 * DOC: states (§6.2 rule 11), per buffer, changed with memory_lock and the resv lock held
 *  - OK: attach, pin and map work;
 *  - TEMP_REVOKED: decode off or a reset in progress (also a buffer exported while decode is
 *    off); decode on (or the end of a reset with decode on) makes it OK again;
 *  - PERM_REVOKED: by VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE or by the device's last close. Nothing
 *    leaves it: un-revoke skips it, so the buffer can never be attached, pinned or mapped again
 *    (ENODEV); the BAR range can be exported anew as a new dma-buf. A feature revoke keeps the
 *    buffer on the device (its release drops the registration); close takes it off.
 * attach, pin and map refuse both revoked states alike (ENODEV).
 *
 * DOC: revoke (§6.2 rule 8), per buffer, memory_lock held by the caller
 *  1. take the resv lock; set the revoked state (attach, pin and map now fail ENODEV);
 *  2. dmaBufInvalidateMappings(): every dynamic importer is told to stop, with the lock held;
 *  3. drop the resv lock; wait for every fence on the buffer (BOOKKEEP: in-flight DMA retires),
 *     bounded by vdev.revokeFenceTimeoutMs (the kernel waits forever);
 *  4. wait until every mapping is unmapped, bounded by vdev.revokeUnmapTimeoutMs (the kernel's
 *     1 s WARN: an importer whose invalidate_mappings never leads to an unmap is broken).
 * A timeout is returned as ETIMEDOUT naming the buffer and what is left; the buffer stays
 * revoked. Un-revoke: lock, set OK, invalidate again so dynamic importers re-map, unlock.
 * Close (cleanup) does the same revoke for good and takes the buffer off the device. A permanent
 * revoke of a buffer already revoked (temporarily or for good) runs the whole protocol again:
 * the extra notify is a no-op for importers that already let go, and the waits make a success
 * mean "every mapping is gone" even after an earlier revoke timed out (the proposal skips both
 * on a TEMP -> PERM upgrade). Unlike the kernel, which waits for the unmaps at close still
 * holding the resv lock (its revocable importers unmap inside the callback), the wait here runs
 * unlocked, so importers that unmap on their next access (TestImporter) can.
 *
 * Thread: kernel. Lock order: memory_lock, then the buffer's resv lock.
 */
import { type EmuError, err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { dmaBufInvalidateMappings } from '../dma-buf/dma-buf.ts';
import { DmaResvUsage, dmaResvLock, dmaResvUnlock, dmaResvWaitTimeout } from '../dma-buf/dma-resv.ts';
import type { VfioPciCoreDevice } from './vfio-pci-core.ts';
import type { VfioPciDmaBuf } from './vfio-pci-dmabuf.ts';

/** enum vfio_pci_dma_buf_status of the proposal (DOC: states). */
export const VfioDmaBufStatus = { OK: 0, TEMP_REVOKED: 1, PERM_REVOKED: 2 } as const;
export type VfioDmaBufStatus = (typeof VfioDmaBufStatus)[keyof typeof VfioDmaBufStatus];

/**
 * The live mappings of one buffer: each successful map takes a reference, each unmap drops one;
 * a revoke waits until none is left, with a deadline, because an importer that never unmaps
 * after invalidate_mappings is a bug to report, not to hang on. No lock of its own: map and
 * unmap run under the buffer's resv lock, and the waiter only reads the count.
 */
export class VfioDmaBufMappings {
  /** Mappings handed out and not yet unmapped. */
  count = 0;
  private waiters: Array<() => void> = [];

  /** A map succeeded. */
  get(): void {
    this.count++;
  }

  /** An unmap: the last one wakes every waiter. Throws: EINVAL on more unmaps than maps. */
  put(): void {
    if (this.count === 0) throw err('EINVAL', 'vfio_pci_dma_buf_unmap: more unmaps than maps');
    if (--this.count === 0) for (const wake of this.waiters.splice(0)) wake();
  }

  /**
   * Resolve true once no mapping is left, or false after `ms` (the timer is cleared either way,
   * so a pending wait never keeps the process alive past its deadline).
   */
  waitIdle(ms: number): Promise<boolean> {
    if (this.count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== wake);
        resolve(false);
      }, ms);
      this.waiters.push(wake);
    });
  }
}

function timeout(fn: string, priv: VfioPciDmaBuf, what: string): EmuError {
  trace('vfioRevokeTimeout', () => ({ buf: String(priv.dmabuf), what }));
  return err('ETIMEDOUT', `${fn}: ${priv.dmabuf}: ${what}`);
}

/** How revokeOne revokes: `fn` names the caller in timeouts, `reason` goes to the trace. */
interface RevokeHow {
  fn: string;
  /** The state to enter; a PERM_REVOKED buffer stays so whatever is asked. */
  status: typeof VfioDmaBufStatus.TEMP_REVOKED | typeof VfioDmaBufStatus.PERM_REVOKED;
  reason: string;
  /** Also take the buffer off the device and drop its registration (close). */
  cleanup: boolean;
}

// Steps 1-4 of DOC: revoke for one buffer (the one copy of the protocol: move, cleanup and the
// DMA_BUF_REVOKE feature all come here).
async function revokeOne(vdev: VfioPciCoreDevice, priv: VfioPciDmaBuf, how: RevokeHow): Promise<EmuError[]> {
  const { fn, status, reason, cleanup } = how;
  const { dmabuf } = priv;
  let was: VfioDmaBufStatus;
  await dmaResvLock(dmabuf.resv, null);
  try {
    if (dmabuf.released) return []; // its release took it off the device meanwhile
    if (cleanup) {
      vdev.dmabufs.delete(priv);
      vdev.registrations--;
      priv.vdev = null;
    }
    was = priv.status;
    if (priv.status !== VfioDmaBufStatus.PERM_REVOKED) priv.status = status;
    dmaBufInvalidateMappings(dmabuf);
  } finally {
    dmaResvUnlock(dmabuf.resv);
  }
  // reported once per state change: a repeated revoke of a buffer revoked for good says nothing.
  if (priv.status !== was)
    trace('vfioRevoke', () => ({
      buf: String(dmabuf),
      dev: vdev.name,
      revoked: true,
      reason,
      permanent: priv.permanent,
    }));
  const errors: EmuError[] = [];
  const fenceMs = vdev.revokeFenceTimeoutMs;
  if ((await dmaResvWaitTimeout(dmabuf.resv, DmaResvUsage.BOOKKEEP, fenceMs)) === 0) {
    errors.push(timeout(fn, priv, `fences did not signal within ${fenceMs} ms of the revoke`));
  }
  const unmapMs = vdev.revokeUnmapTimeoutMs;
  if (!(await priv.mappings.waitIdle(unmapMs))) {
    const n = priv.mappings.count;
    errors.push(
      timeout(
        fn,
        priv,
        `${n} mapping(s) not unmapped within ${unmapMs} ms of the revoke (broken invalidate_mappings)`,
      ),
    );
  }
  return errors;
}

/**
 * vfio_pci_dma_buf_move(): revoke (true: OK -> TEMP_REVOKED) or restore (false: TEMP_REVOKED ->
 * OK) every buffer of `vdev` (DOC: revoke); PERM_REVOKED buffers are never touched. Called by:
 * command writes, reset. Lock: memory_lock held (EPERM). Returns the revoke timeouts as ETIMEDOUT
 * errors; every buffer is processed regardless.
 */
export async function vfioPciDmaBufMove(
  vdev: VfioPciCoreDevice,
  revoked: boolean,
  reason: string,
): Promise<EmuError[]> {
  if (!vdev.memoryLock.heldByCurrent())
    throw err('EPERM', `vfio_pci_dma_buf_move: ${vdev} memory_lock not held`);
  const errors: EmuError[] = [];
  const how = { fn: 'vfio_pci_dma_buf_move', status: VfioDmaBufStatus.TEMP_REVOKED, reason, cleanup: false };
  const from = revoked ? VfioDmaBufStatus.OK : VfioDmaBufStatus.TEMP_REVOKED;
  for (const priv of [...vdev.dmabufs]) {
    if (priv.vdev !== vdev || priv.status !== from) continue;
    if (revoked) {
      errors.push(...(await revokeOne(vdev, priv, how)));
      continue;
    }
    const { dmabuf } = priv;
    await dmaResvLock(dmabuf.resv, null);
    try {
      // Never revive a buffer revoked for good (checked again under the lock).
      if (dmabuf.released || priv.status !== VfioDmaBufStatus.TEMP_REVOKED) continue;
      priv.status = VfioDmaBufStatus.OK;
      // Notify again: dynamic importers re-map on their next access (§6.2 rule 7).
      dmaBufInvalidateMappings(dmabuf);
    } finally {
      dmaResvUnlock(dmabuf.resv);
    }
    trace('vfioRevoke', () => ({
      buf: String(dmabuf),
      dev: vdev.name,
      revoked: false,
      reason,
      permanent: false,
    }));
  }
  return errors;
}

/**
 * vfio_pci_dma_buf_cleanup(): at the device's last close, revoke every buffer for good, take it
 * off the device and drop its registration. Called by: vfioPciCoreCloseDevice. Lock:
 * memory_lock held (EPERM). Returns the revoke timeouts as ETIMEDOUT errors.
 */
export async function vfioPciDmaBufCleanup(vdev: VfioPciCoreDevice): Promise<EmuError[]> {
  if (!vdev.memoryLock.heldByCurrent())
    throw err('EPERM', `vfio_pci_dma_buf_cleanup: ${vdev} memory_lock not held`);
  const errors: EmuError[] = [];
  const how = { fn: 'vfio_pci_dma_buf_cleanup', status: VfioDmaBufStatus.PERM_REVOKED, reason: 'close' };
  for (const priv of [...vdev.dmabufs])
    errors.push(...(await revokeOne(vdev, priv, { ...how, cleanup: true })));
  return errors;
}

/**
 * VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE, the state change: revoke `priv` for good (DOC: revoke,
 * into PERM_REVOKED) and leave it on the device until its release. Idempotent: a buffer already
 * revoked for good is revoked again, which returns at once unless a mapping or fence is still
 * left from an earlier revoke that timed out. Called by: vfioPciCoreFeatureDmaBufRevoke.
 * Lock: memory_lock held (EPERM). Throws: ENODEV if `priv` is not (or no longer) on `vdev`.
 * Returns the revoke timeouts as ETIMEDOUT errors (the buffer is revoked for good regardless).
 */
export async function vfioPciDmaBufRevoke(vdev: VfioPciCoreDevice, priv: VfioPciDmaBuf): Promise<EmuError[]> {
  const fn = 'vfio_pci_dma_buf_revoke';
  if (!vdev.memoryLock.heldByCurrent()) throw err('EPERM', `${fn}: ${vdev} memory_lock not held`);
  if (priv.vdev !== vdev) throw err('ENODEV', `${fn}: ${priv.dmabuf} is not a dma-buf of ${vdev}`);
  return revokeOne(vdev, priv, {
    fn,
    status: VfioDmaBufStatus.PERM_REVOKED,
    reason: 'DMA_BUF_REVOKE',
    cleanup: false,
  });
}

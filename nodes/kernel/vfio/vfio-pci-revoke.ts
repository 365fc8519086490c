/**
 * Revoke of VFIO dma-bufs (the revoke half of drivers/vfio/pci/vfio_pci_dmabuf.c, 2026 series
 * "dmabuf-revoke", kernel-semantics §6.2 rules 6-10): vfio_pci_dma_buf_move() for reset and
 * memory decode, vfio_pci_dma_buf_cleanup() for the device's last close, and the live-mapping
 * count (kref + completion) a revoke waits on.
 *
 * DOC: revoke (§6.2 rule 8), per buffer, memory_lock held by the caller
 *  1. take the resv lock; set revoked (attach, pin and map now fail ENODEV);
 *  2. dmaBufInvalidateMappings(): every dynamic importer is told to stop, with the lock held;
 *  3. drop the resv lock; wait for every fence on the buffer (BOOKKEEP: in-flight DMA retires),
 *     bounded by vdev.revokeFenceTimeoutMs (the kernel waits forever);
 *  4. wait until every mapping is unmapped, bounded by vdev.revokeUnmapTimeoutMs (the kernel's
 *     1 s WARN: an importer whose invalidate_mappings never leads to an unmap is broken).
 * A timeout is returned as ETIMEDOUT naming the buffer and what is left; the buffer stays
 * revoked. Un-revoke: lock, clear revoked, invalidate again so dynamic importers re-map, unlock.
 * Close (cleanup) does the same revoke for good and takes the buffer off the device. Unlike the
 * kernel, which waits for the unmaps still holding the resv lock (its revocable importers unmap
 * inside the callback), the wait here runs unlocked, so importers that unmap on their next
 * access (TestImporter) can.
 *
 * Thread: kernel. Lock order: memory_lock, then the buffer's resv lock.
 */
import { type EmuError, err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { dmaBufInvalidateMappings } from '../dma-buf/dma-buf.ts';
import { DmaResvUsage, dmaResvLock, dmaResvUnlock, dmaResvWaitTimeout } from '../dma-buf/dma-resv.ts';
import type { VfioPciCoreDevice } from './vfio-pci-core.ts';
import type { VfioPciDmaBuf } from './vfio-pci-dmabuf.ts';

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

function timeout(priv: VfioPciDmaBuf, what: string): EmuError {
  trace('vfioRevokeTimeout', () => ({ buf: String(priv.dmabuf), what }));
  return err('ETIMEDOUT', `vfio_pci_dma_buf_move: ${priv.dmabuf}: ${what}`);
}

// Steps 1-4 of DOC: revoke for one buffer; `cleanup` also takes it off the device for good.
async function revokeOne(vdev: VfioPciCoreDevice, priv: VfioPciDmaBuf, reason: string, cleanup: boolean) {
  const { dmabuf } = priv;
  await dmaResvLock(dmabuf.resv, null);
  try {
    if (dmabuf.released) return []; // its release took it off the device meanwhile
    if (cleanup) {
      vdev.dmabufs.delete(priv);
      vdev.registrations--;
      priv.vdev = null;
      priv.permanent = true;
    }
    priv.revoked = true;
    dmaBufInvalidateMappings(dmabuf);
  } finally {
    dmaResvUnlock(dmabuf.resv);
  }
  trace('vfioRevoke', () => ({
    buf: String(dmabuf),
    dev: vdev.name,
    revoked: true,
    reason,
    permanent: cleanup,
  }));
  const errors: EmuError[] = [];
  const fenceMs = vdev.revokeFenceTimeoutMs;
  if ((await dmaResvWaitTimeout(dmabuf.resv, DmaResvUsage.BOOKKEEP, fenceMs)) === 0) {
    errors.push(timeout(priv, `fences did not signal within ${fenceMs} ms of the revoke`));
  }
  const unmapMs = vdev.revokeUnmapTimeoutMs;
  if (!(await priv.mappings.waitIdle(unmapMs))) {
    const n = priv.mappings.count;
    errors.push(
      timeout(
        priv,
        `${n} mapping(s) not unmapped within ${unmapMs} ms of the revoke (broken invalidate_mappings)`,
      ),
    );
  }
  return errors;
}

/**
 * vfio_pci_dma_buf_move(): revoke (true) or restore (false) every buffer of `vdev` whose state
 * differs (DOC: revoke). Called by: command writes, reset. Lock: memory_lock held (EPERM).
 * Returns the revoke timeouts as ETIMEDOUT errors; every buffer is processed regardless.
 */
export async function vfioPciDmaBufMove(
  vdev: VfioPciCoreDevice,
  revoked: boolean,
  reason: string,
): Promise<EmuError[]> {
  if (!vdev.memoryLock.heldByCurrent())
    throw err('EPERM', `vfio_pci_dma_buf_move: ${vdev} memory_lock not held`);
  const errors: EmuError[] = [];
  for (const priv of [...vdev.dmabufs]) {
    if (priv.vdev !== vdev || priv.permanent || priv.revoked === revoked) continue;
    if (revoked) {
      errors.push(...(await revokeOne(vdev, priv, reason, false)));
      continue;
    }
    const { dmabuf } = priv;
    await dmaResvLock(dmabuf.resv, null);
    try {
      if (dmabuf.released) continue;
      priv.revoked = false;
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
  for (const priv of [...vdev.dmabufs]) errors.push(...(await revokeOne(vdev, priv, 'close', true)));
  return errors;
}

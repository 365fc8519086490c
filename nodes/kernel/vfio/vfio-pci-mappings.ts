/**
 * The live-mapping count of one VFIO dma-buf: the kref + completion the 2026 revoke series added
 * to struct vfio_pci_dma_buf (kernel-semantics §6.2 rules 6 and 8). Each successful map takes a
 * reference, each unmap drops one; a revoke waits until none is left, with a deadline, because an
 * importer that never unmaps after invalidate_mappings is a bug the emulator must report, not
 * hang on.
 *
 * Thread: kernel. No lock of its own: map and unmap run under the buffer's resv lock, and the
 * waiter only reads the count.
 */
import { err } from '../../../common/errno.ts';

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

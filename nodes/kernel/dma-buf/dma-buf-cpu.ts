/**
 * CPU access to a dma-buf: begin/end_cpu_access and DMA_BUF_IOCTL_SYNC, vmap, mmap, llseek and
 * poll (kernel-semantics rules 2, 4, 29-32). See dma-buf-ops.ts for the locking convention.
 */
import { err } from '../../../common/errno.ts';
import { type DmaBuf, checkDmaBuf } from './dma-buf.ts';
import type { DmaBufCpuView } from './dma-buf-ops.ts';
import { dmaFenceWaitTimeout } from './dma-fence.ts';
import {
  DmaResvUsage,
  dmaResvAssertHeld,
  dmaResvAssertNotHeld,
  dmaResvGetFences,
  dmaResvLock,
  dmaResvTestSignaled,
  dmaResvUnlock,
  dmaResvUsageRw,
  dmaResvWaitTimeout,
} from './dma-resv.ts';
import { DmaDataDirection, PAGE_SHIFT } from './scatterlist.ts';

/** How long CPU access waits for implicit fences before failing with ETIMEDOUT (never hang). */
export const dmaBufCpuWait = { timeoutMs: 10_000 };

function isWriteDir(dir: DmaDataDirection): boolean {
  return dir === DmaDataDirection.TO_DEVICE || dir === DmaDataDirection.BIDIRECTIONAL;
}

/**
 * dma_buf_begin_cpu_access (rule 29): call the exporter hook, then wait for implicit fences:
 * a CPU write waits for every reader and writer, a CPU read only for writers. Lock: not held.
 * Errors: EINVAL (direction), ETIMEDOUT (fences did not signal in dmaBufCpuWait.timeoutMs).
 */
export async function dmaBufBeginCpuAccess(dmabuf: DmaBuf, dir: DmaDataDirection): Promise<void> {
  checkDmaBuf('dmaBufBeginCpuAccess', dmabuf);
  if (dir !== 0 && dir !== 1 && dir !== 2) throw err('EINVAL', `dmaBufBeginCpuAccess: direction ${dir}`);
  dmaResvAssertNotHeld(dmabuf.resv, 'dmaBufBeginCpuAccess');
  if (dmabuf.ops.beginCpuAccess) await dmabuf.ops.beginCpuAccess(dmabuf, dir);
  const usage = dmaResvUsageRw(isWriteDir(dir));
  if ((await dmaResvWaitTimeout(dmabuf.resv, usage, dmaBufCpuWait.timeoutMs)) === 0) {
    throw err('ETIMEDOUT', `dmaBufBeginCpuAccess: implicit fences of ${dmabuf} did not signal`);
  }
}

/** dma_buf_end_cpu_access: only the exporter hook (rule 29). Lock: not held. */
export async function dmaBufEndCpuAccess(dmabuf: DmaBuf, dir: DmaDataDirection): Promise<void> {
  checkDmaBuf('dmaBufEndCpuAccess', dmabuf);
  if (dir !== 0 && dir !== 1 && dir !== 2) throw err('EINVAL', `dmaBufEndCpuAccess: direction ${dir}`);
  dmaResvAssertNotHeld(dmabuf.resv, 'dmaBufEndCpuAccess');
  if (dmabuf.ops.endCpuAccess) await dmabuf.ops.endCpuAccess(dmabuf, dir);
}

/** struct dma_buf_sync flags. */
export const DMA_BUF_SYNC = { READ: 1 << 0, WRITE: 2 << 0, RW: 3, START: 0 << 2, END: 1 << 2 } as const;
const DMA_BUF_SYNC_VALID_FLAGS_MASK = DMA_BUF_SYNC.RW | DMA_BUF_SYNC.END;

/**
 * DMA_BUF_IOCTL_SYNC (rule 30): bracket CPU access through an mmap. Unknown flags or no
 * direction ⇒ EINVAL naming `flags`.
 */
export async function dmaBufIoctlSync(dmabuf: DmaBuf, flags: number): Promise<void> {
  checkDmaBuf('DMA_BUF_IOCTL_SYNC', dmabuf);
  if (!Number.isInteger(flags) || flags & ~DMA_BUF_SYNC_VALID_FLAGS_MASK) {
    throw err('EINVAL', `DMA_BUF_IOCTL_SYNC: flags 0x${Number(flags).toString(16)} has unknown bits`);
  }
  const rw = flags & DMA_BUF_SYNC.RW;
  if (rw === 0) throw err('EINVAL', 'DMA_BUF_IOCTL_SYNC: flags has no direction (READ, WRITE or RW)');
  const dir =
    rw === DMA_BUF_SYNC.RW
      ? DmaDataDirection.BIDIRECTIONAL
      : rw === DMA_BUF_SYNC.WRITE
        ? DmaDataDirection.TO_DEVICE
        : DmaDataDirection.FROM_DEVICE;
  if (flags & DMA_BUF_SYNC.END) await dmaBufEndCpuAccess(dmabuf, dir);
  else await dmaBufBeginCpuAccess(dmabuf, dir);
}

/**
 * dma_buf_mmap (rule 2): CPU view of `pages` pages from `pgoff`. Bounds are checked before the
 * exporter is called: EINVAL beyond size, EOVERFLOW if pgoff + pages overflows. EOPNOTSUPP if the
 * exporter has no mmap. Lock: not held.
 */
export function dmaBufMmap(dmabuf: DmaBuf, pgoff: number, pages: number): DmaBufCpuView {
  checkDmaBuf('dmaBufMmap', dmabuf);
  if (!Number.isInteger(pgoff) || pgoff < 0) throw err('EINVAL', `dmaBufMmap: pgoff ${pgoff}`);
  if (!Number.isInteger(pages) || pages <= 0) throw err('EINVAL', `dmaBufMmap: pages ${pages}`);
  if (!Number.isSafeInteger(pgoff + pages))
    throw err('EOVERFLOW', `dmaBufMmap: pgoff ${pgoff} + pages ${pages} overflows`);
  if (pgoff + pages > dmabuf.size >> PAGE_SHIFT) {
    throw err(
      'EINVAL',
      `dmaBufMmap: pages ${pgoff}..${pgoff + pages} beyond ${dmabuf} of ${dmabuf.size >> PAGE_SHIFT} pages`,
    );
  }
  if (!dmabuf.ops.mmap) throw err('EOPNOTSUPP', `dmaBufMmap: exporter ${dmabuf.expName} has no mmap`);
  dmaResvAssertNotHeld(dmabuf.resv, 'dmaBufMmap');
  return dmabuf.ops.mmap(dmabuf, pgoff, pages);
}

const vmaps = new WeakMap<DmaBuf, DmaBufCpuView>();

/**
 * dma_buf_vmap (rule 31): refcounted kernel view; the exporter's vmap runs only for the first
 * caller and everyone gets the same view. Lock held. EOPNOTSUPP without exporter vmap.
 */
export function dmaBufVmap(dmabuf: DmaBuf): DmaBufCpuView {
  checkDmaBuf('dmaBufVmap', dmabuf);
  dmaResvAssertHeld(dmabuf.resv, 'dmaBufVmap');
  if (!dmabuf.ops.vmap) throw err('EOPNOTSUPP', `dmaBufVmap: exporter ${dmabuf.expName} has no vmap`);
  let view = vmaps.get(dmabuf);
  if (!view) {
    view = dmabuf.ops.vmap(dmabuf);
    vmaps.set(dmabuf, view);
  }
  dmabuf.vmappingCounter++;
  return view;
}

/** dma_buf_vunmap: EINVAL if `view` is not the current vmap (the kernel BUGs) or none is held. Lock held. */
export function dmaBufVunmap(dmabuf: DmaBuf, view: DmaBufCpuView): void {
  checkDmaBuf('dmaBufVunmap', dmabuf);
  dmaResvAssertHeld(dmabuf.resv, 'dmaBufVunmap');
  const cur = vmaps.get(dmabuf);
  if (!cur || dmabuf.vmappingCounter === 0) throw err('EINVAL', `dmaBufVunmap: ${dmabuf} is not vmapped`);
  if (cur !== view) throw err('EINVAL', `dmaBufVunmap: view is not the current vmap of ${dmabuf}`);
  if (--dmabuf.vmappingCounter === 0) {
    vmaps.delete(dmabuf);
    dmabuf.ops.vunmap?.(dmabuf, view);
  }
}

/** dma_buf_vmap_unlocked. Lock: not held. */
export async function dmaBufVmapUnlocked(dmabuf: DmaBuf): Promise<DmaBufCpuView> {
  checkDmaBuf('dmaBufVmapUnlocked', dmabuf);
  dmaResvAssertNotHeld(dmabuf.resv, 'dmaBufVmapUnlocked');
  await dmaResvLock(dmabuf.resv, null);
  try {
    return dmaBufVmap(dmabuf);
  } finally {
    dmaResvUnlock(dmabuf.resv);
  }
}

/** dma_buf_vunmap_unlocked. Lock: not held. */
export async function dmaBufVunmapUnlocked(dmabuf: DmaBuf, view: DmaBufCpuView): Promise<void> {
  checkDmaBuf('dmaBufVunmapUnlocked', dmabuf);
  dmaResvAssertNotHeld(dmabuf.resv, 'dmaBufVunmapUnlocked');
  await dmaResvLock(dmabuf.resv, null);
  try {
    dmaBufVunmap(dmabuf, view);
  } finally {
    dmaResvUnlock(dmabuf.resv);
  }
}

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;

/** dma_buf_llseek (rule 4): only offset 0 with SEEK_SET (0) or SEEK_END (size); else EINVAL. */
export function dmaBufLlseek(dmabuf: DmaBuf, offset: number, whence: number): number {
  checkDmaBuf('dmaBufLlseek', dmabuf);
  if (offset !== 0) throw err('EINVAL', `dmaBufLlseek: offset ${offset} (only 0 is supported)`);
  if (whence === SEEK_SET) return 0;
  if (whence === SEEK_END) return dmabuf.size;
  throw err('EINVAL', `dmaBufLlseek: whence ${whence} (SEEK_SET or SEEK_END only)`);
}

export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;

/**
 * poll() readiness now (rule 32): EPOLLIN once WRITE (and KERNEL) fences signalled, EPOLLOUT
 * once every implicit reader and writer (READ usage) signalled.
 */
export function dmaBufPollMask(dmabuf: DmaBuf): number {
  checkDmaBuf('dmaBufPoll', dmabuf);
  let mask = 0;
  if (dmaResvTestSignaled(dmabuf.resv, DmaResvUsage.WRITE)) mask |= EPOLLIN;
  if (dmaResvTestSignaled(dmabuf.resv, DmaResvUsage.READ)) mask |= EPOLLOUT;
  return mask;
}

/**
 * poll() with a timeout: resolves to the ready mask among `events` (0 on timeout). Fences added
 * while polling are waited for too.
 */
export async function dmaBufPoll(dmabuf: DmaBuf, events: number, timeoutMs: number): Promise<number> {
  checkDmaBuf('dmaBufPoll', dmabuf);
  if (!(timeoutMs >= 0)) throw err('EINVAL', `dmaBufPoll: timeout ${timeoutMs}`);
  const end = performance.now() + timeoutMs;
  for (;;) {
    const ready = dmaBufPollMask(dmabuf) & events;
    if (ready) return ready;
    const left = end - performance.now();
    if (left <= 0) return 0;
    // Wait for the strongest pending fence that gates one of the requested events.
    const usage = events & EPOLLIN ? DmaResvUsage.WRITE : DmaResvUsage.READ;
    const pending = dmaResvGetFences(dmabuf.resv, usage).find((f) => !f.signaledFlag);
    if (pending && (await dmaFenceWaitTimeout(pending, left)) === 0) return 0;
  }
}

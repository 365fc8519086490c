/**
 * A dma-buf as a file: dma_buf_fd / dma_buf_get, DMA_BUF_SET_NAME and the sync_file ioctls
 * DMA_BUF_IOCTL_EXPORT_SYNC_FILE / IMPORT_SYNC_FILE (kernel-semantics rule 33).
 */
import { err } from '../../../common/errno.ts';
import { type FdTable, type FileObject, O_RDWR } from '../fs/file.ts';
import { type DmaBuf, checkDmaBuf, dmaBufPut, getDmaBuf } from './dma-buf.ts';
import { dmaFenceGetStub, dmaFencePut } from './dma-fence.ts';
import { dmaFenceUnwrapForEach } from './dma-fence-unwrap.ts';
import {
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvAssertNotHeld,
  dmaResvGetSingleton,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
  dmaResvUsageRw,
} from './dma-resv.ts';
import { syncFileGetFence, syncFileInstall } from './sync-file.ts';
import { DMA_BUF_SYNC } from './dma-buf-cpu.ts';

/** The open file behind a dma-buf fd: holds one reference, dropped when the last fd closes. */
export class DmaBufFile implements FileObject {
  readonly kind = 'dma-buf';
  readonly dmabuf: DmaBuf;

  constructor(dmabuf: DmaBuf) {
    this.dmabuf = dmabuf;
  }

  release(): void {
    dmaBufPut(this.dmabuf);
  }
}

/**
 * dma_buf_fd: install an fd; the fd takes over the caller's reference. `flags`: the file's access
 * mode (the exporter's exp_info.flags) and O_CLOEXEC for the fd; default O_RDWR.
 */
export function dmaBufFd(fdt: FdTable, dmabuf: DmaBuf, flags: number = O_RDWR): number {
  checkDmaBuf('dmaBufFd', dmabuf);
  return fdt.install(new DmaBufFile(dmabuf), flags);
}

/** dma_buf_get: the buffer behind `fd`, with a new reference. EBADF bad fd, EINVAL not a dma-buf. */
export function dmaBufGet(fdt: FdTable, fd: number): DmaBuf {
  const file = fdt.getAs(fd, DmaBufFile, 'dmaBufGet');
  return getDmaBuf(file.dmabuf);
}

/** The buffer behind `fd` without a new reference (ioctl handlers). */
export function dmaBufFromFd(fdt: FdTable, fd: number, who: string): DmaBuf {
  const dmabuf = fdt.getAs(fd, DmaBufFile, who).dmabuf;
  checkDmaBuf(who, dmabuf);
  return dmabuf;
}

/** DMA_BUF_NAME_LEN: names are at most 31 bytes plus NUL. */
export const DMA_BUF_NAME_LEN = 32;

/** DMA_BUF_SET_NAME: EINVAL naming `name` when too long or not a string. */
export function dmaBufSetName(dmabuf: DmaBuf, name: string): void {
  checkDmaBuf('DMA_BUF_SET_NAME', dmabuf);
  if (typeof name !== 'string') throw err('EINVAL', 'DMA_BUF_SET_NAME: name is not a string');
  if (Buffer.byteLength(name) >= DMA_BUF_NAME_LEN) {
    throw err(
      'EINVAL',
      `DMA_BUF_SET_NAME: name is ${Buffer.byteLength(name)} bytes, at most ${DMA_BUF_NAME_LEN - 1}`,
    );
  }
  dmabuf.name = name;
}

function checkSyncFileFlags(who: string, flags: number): void {
  if (!Number.isInteger(flags) || flags === 0 || flags & ~(DMA_BUF_SYNC.READ | DMA_BUF_SYNC.WRITE)) {
    throw err(
      'EINVAL',
      `${who}: flags 0x${Number(flags).toString(16)} must be DMA_BUF_SYNC_READ and/or WRITE`,
    );
  }
}

/**
 * DMA_BUF_IOCTL_EXPORT_SYNC_FILE: a sync_file snapshotting the fences an access of this kind
 * must wait for now (usage_rw(write)); fences added later are not in it; with none it wraps the
 * signalled stub. Returns the new fd. EINVAL naming flags. Lock: not held.
 */
export function dmaBufExportSyncFile(fdt: FdTable, dmabuf: DmaBuf, flags: number): number {
  checkDmaBuf('DMA_BUF_IOCTL_EXPORT_SYNC_FILE', dmabuf);
  checkSyncFileFlags('DMA_BUF_IOCTL_EXPORT_SYNC_FILE', flags);
  const usage = dmaResvUsageRw((flags & DMA_BUF_SYNC.WRITE) !== 0);
  const fence = dmaResvGetSingleton(dmabuf.resv, usage) ?? dmaFenceGetStub();
  try {
    return syncFileInstall(fdt, fence);
  } finally {
    dmaFencePut(fence);
  }
}

/**
 * DMA_BUF_IOCTL_IMPORT_SYNC_FILE: add every leaf fence of the sync_file to the buffer, as WRITE
 * if flags has WRITE, else READ. EINVAL naming flags; EBADF/EINVAL for the fd. Lock: not held
 * (it takes the resv lock).
 */
export async function dmaBufImportSyncFile(
  fdt: FdTable,
  dmabuf: DmaBuf,
  flags: number,
  syncFd: number,
): Promise<void> {
  checkDmaBuf('DMA_BUF_IOCTL_IMPORT_SYNC_FILE', dmabuf);
  checkSyncFileFlags('DMA_BUF_IOCTL_IMPORT_SYNC_FILE', flags);
  dmaResvAssertNotHeld(dmabuf.resv, 'DMA_BUF_IOCTL_IMPORT_SYNC_FILE');
  const usage = flags & DMA_BUF_SYNC.WRITE ? DmaResvUsage.WRITE : DmaResvUsage.READ;
  const fence = syncFileGetFence(fdt, syncFd);
  try {
    const leaves = [...dmaFenceUnwrapForEach(fence)];
    await dmaResvLock(dmabuf.resv, null);
    try {
      dmaResvReserveFences(dmabuf.resv, leaves.length);
      for (const leaf of leaves) dmaResvAddFence(dmabuf.resv, leaf, usage);
    } finally {
      dmaResvUnlock(dmabuf.resv);
    }
  } finally {
    dmaFencePut(fence);
  }
}

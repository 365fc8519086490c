/**
 * dma-heap and dma-buf uapi: DMA_HEAP_IOCTL_ALLOC, the dma-buf fd ioctls (SYNC, SET_NAME,
 * EXPORT/IMPORT_SYNC_FILE), mmap, llseek, poll and close. Fds are the process's.
 * Errors: EBADF (fd not open), EINVAL (fd of another kind or a bad argument, named), ENOENT
 * (unknown heap), ENOMEM, ETIMEDOUT (a fence never signalled).
 */
import { err } from '../../common/errno.ts';
import {
  dmaBufIoctlSync,
  dmaBufLlseek,
  dmaBufMmap as kDmaBufMmap,
  dmaBufPoll as kDmaBufPoll,
} from '../kernel/dma-buf/dma-buf-cpu.ts';
import type { DmaBufCpuView } from '../kernel/dma-buf/dma-buf-ops.ts';
import {
  dmaBufExportSyncFile as kExportSyncFile,
  dmaBufFd,
  dmaBufFromFd,
  dmaBufImportSyncFile as kImportSyncFile,
  dmaBufSetName as kSetName,
} from '../kernel/dma-buf/dma-buf-file.ts';
import { dmaHeapBufferAlloc } from '../kernel/dma-buf/heaps/dma-heap.ts';
import { type Process, syscall } from './process.ts';

export { DMA_BUF_SYNC, EPOLLIN, EPOLLOUT, SEEK_END, SEEK_SET } from '../kernel/dma-buf/dma-buf-cpu.ts';
export { O_CLOEXEC, O_RDWR } from '../kernel/dma-buf/heaps/dma-heap.ts';

/** struct dma_heap_allocation_data (fd is the output). */
export interface DmaHeapAllocationData {
  len: number;
  fd_flags?: number;
  heap_flags?: number;
}

/** open("/dev/dma_heap/<heap>") + DMA_HEAP_IOCTL_ALLOC: a new dma-buf fd. */
export function dmaHeapAlloc(proc: Process, heap: string, data: DmaHeapAllocationData): number {
  return syscall(proc, 'DMA_HEAP_IOCTL_ALLOC', () => {
    if (!data || typeof data !== 'object') throw err('EINVAL', 'DMA_HEAP_IOCTL_ALLOC: data missing');
    const h = proc.kernel.heaps.find(heap);
    const fdFlags = data.fd_flags ?? 0;
    return dmaBufFd(proc.fdt, dmaHeapBufferAlloc(h, data.len, fdFlags, data.heap_flags ?? 0), fdFlags);
  });
}

/** Heaps under /dev/dma_heap. */
export function dmaHeapList(proc: Process): string[] {
  return syscall(proc, 'readdir', () => proc.kernel.heaps.names());
}

/** DMA_BUF_IOCTL_SYNC with struct dma_buf_sync.flags. */
export function dmaBufSync(proc: Process, fd: number, flags: number): Promise<void> {
  return syscall(proc, 'DMA_BUF_IOCTL_SYNC', () =>
    dmaBufIoctlSync(dmaBufFromFd(proc.fdt, fd, 'DMA_BUF_IOCTL_SYNC'), flags),
  );
}

/** DMA_BUF_SET_NAME. */
export function dmaBufSetName(proc: Process, fd: number, name: string): void {
  syscall(proc, 'DMA_BUF_SET_NAME', () => kSetName(dmaBufFromFd(proc.fdt, fd, 'DMA_BUF_SET_NAME'), name));
}

/** DMA_BUF_IOCTL_EXPORT_SYNC_FILE: returns the sync_file fd. */
export function dmaBufExportSyncFile(proc: Process, fd: number, flags: number): number {
  return syscall(proc, 'DMA_BUF_IOCTL_EXPORT_SYNC_FILE', () =>
    kExportSyncFile(proc.fdt, dmaBufFromFd(proc.fdt, fd, 'DMA_BUF_IOCTL_EXPORT_SYNC_FILE'), flags),
  );
}

/** DMA_BUF_IOCTL_IMPORT_SYNC_FILE. */
export function dmaBufImportSyncFile(
  proc: Process,
  fd: number,
  flags: number,
  syncFd: number,
): Promise<void> {
  return syscall(proc, 'DMA_BUF_IOCTL_IMPORT_SYNC_FILE', () =>
    kImportSyncFile(proc.fdt, dmaBufFromFd(proc.fdt, fd, 'DMA_BUF_IOCTL_IMPORT_SYNC_FILE'), flags, syncFd),
  );
}

/** mmap(fd, pgoff, pages): a CPU view; bracket accesses with dmaBufSync (rule 30). */
export function dmaBufMmap(proc: Process, fd: number, pgoff: number, pages: number): DmaBufCpuView {
  return syscall(proc, 'mmap', () => kDmaBufMmap(dmaBufFromFd(proc.fdt, fd, 'mmap'), pgoff, pages));
}

/** lseek(fd, offset, whence): the buffer size with SEEK_END. */
export function dmaBufSeek(proc: Process, fd: number, offset: number, whence: number): number {
  return syscall(proc, 'lseek', () => dmaBufLlseek(dmaBufFromFd(proc.fdt, fd, 'lseek'), offset, whence));
}

/** poll(fd, events, timeout): the ready mask (0 on timeout). */
export function dmaBufPoll(proc: Process, fd: number, events: number, timeoutMs: number): Promise<number> {
  return syscall(proc, 'poll', () => kDmaBufPoll(dmaBufFromFd(proc.fdt, fd, 'poll'), events, timeoutMs));
}

/** close(fd), for any fd kind. */
export function close(proc: Process, fd: number): void {
  syscall(proc, 'close', () => proc.fdt.close(fd));
}

/**
 * Explicit-sync uapi: sync_file (SYNC_IOC_*), sw_sync (the test timeline driver) and drm_syncobj
 * (DRM_IOCTL_SYNCOBJ_*), bound to the calling process's fd and handle tables. The argument
 * checks and errno conventions are the kernel modules' (see their docs); this layer adds the
 * process and the task.
 */
import { swSyncCreateFence, swSyncInc, swSyncTimelineCreate } from '../kernel/dma-buf/sw-sync.ts';
import {
  type SyncFileInfo,
  syncFileInfo,
  syncFileMerge,
  syncFilePoll,
  syncFileSetDeadline,
} from '../kernel/dma-buf/sync-file.ts';
import {
  syncobjCreate,
  syncobjDestroy,
  syncobjExportSyncFile,
  syncobjImportSyncFile,
  syncobjQuery,
  syncobjReset,
  syncobjSignal,
  syncobjTimelineSignal,
} from '../kernel/dma-buf/syncobj.ts';
import { syncobjWait } from '../kernel/dma-buf/syncobj-wait.ts';
import { type Process, syscall } from './process.ts';

export { POLLIN } from '../kernel/dma-buf/sync-file.ts';
export { DRM_SYNCOBJ_CREATE_FLAGS, DRM_SYNCOBJ_WAIT_FLAGS } from '../kernel/dma-buf/syncobj.ts';

export const syncIocMerge = (p: Process, fd1: number, fd2: number, name: string) =>
  syscall(p, 'SYNC_IOC_MERGE', () => syncFileMerge(p.fdt, fd1, fd2, name));
export const syncIocFileInfo = (p: Process, fd: number, req: { num_fences?: number } = {}): SyncFileInfo =>
  syscall(p, 'SYNC_IOC_FILE_INFO', () => syncFileInfo(p.fdt, fd, req));
export const syncIocSetDeadline = (p: Process, fd: number, deadlineMs: number) =>
  syscall(p, 'SYNC_IOC_SET_DEADLINE', () => syncFileSetDeadline(p.fdt, fd, deadlineMs));
/** poll(sync_file, POLLIN, timeout). */
export const syncFileWaitReady = (p: Process, fd: number, timeoutMs: number) =>
  syscall(p, 'poll', () => syncFilePoll(p.fdt, fd, timeoutMs));

export const swSyncOpen = (p: Process, name?: string) =>
  syscall(p, 'open(sw_sync)', () => swSyncTimelineCreate(p.fdt, name));
export const swSyncIocCreateFence = (p: Process, tl: number, value: number) =>
  syscall(p, 'SW_SYNC_IOC_CREATE_FENCE', () => swSyncCreateFence(p.fdt, tl, value));
export const swSyncIocInc = (p: Process, tl: number, n: number) =>
  syscall(p, 'SW_SYNC_IOC_INC', () => swSyncInc(p.fdt, tl, n));

export const drmSyncobjCreate = (p: Process, flags = 0) =>
  syscall(p, 'DRM_IOCTL_SYNCOBJ_CREATE', () => syncobjCreate(p.syncobjs, flags));
export const drmSyncobjDestroy = (p: Process, handle: number) =>
  syscall(p, 'DRM_IOCTL_SYNCOBJ_DESTROY', () => syncobjDestroy(p.syncobjs, handle));
export const drmSyncobjReset = (p: Process, handles: number[]) =>
  syscall(p, 'DRM_IOCTL_SYNCOBJ_RESET', () => syncobjReset(p.syncobjs, handles));
export const drmSyncobjSignal = (p: Process, handles: number[]) =>
  syscall(p, 'DRM_IOCTL_SYNCOBJ_SIGNAL', () => syncobjSignal(p.syncobjs, handles));
export const drmSyncobjTimelineSignal = (p: Process, handles: number[], points: number[]) =>
  syscall(p, 'DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL', () => syncobjTimelineSignal(p.syncobjs, handles, points));
export const drmSyncobjQuery = (p: Process, handles: number[], flags = 0) =>
  syscall(p, 'DRM_IOCTL_SYNCOBJ_QUERY', () => syncobjQuery(p.syncobjs, handles, flags));
export const drmSyncobjExportSyncFile = (p: Process, handle: number, point = 0) =>
  syscall(p, 'DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD', () => syncobjExportSyncFile(p.syncobjs, handle, point));
export const drmSyncobjImportSyncFile = (p: Process, handle: number, fd: number, point = 0) =>
  syscall(p, 'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE', () => syncobjImportSyncFile(p.syncobjs, handle, fd, point));
/** DRM_IOCTL_SYNCOBJ_(TIMELINE_)WAIT: resolves to first_signaled; ETIME on timeout. */
export const drmSyncobjWait = (
  p: Process,
  handles: number[],
  points: number[] | null,
  timeoutMs: number,
  flags = 0,
) => syscall(p, 'DRM_IOCTL_SYNCOBJ_WAIT', () => syncobjWait(p.syncobjs, handles, points, timeoutMs, flags));

/**
 * sync_file: an immutable fd wrapping exactly one fence (drivers/dma-buf/sync_file.c), and the
 * the SYNC_IOC_* calls on it. Fd tables are in fs/file.ts.
 *
 * DOC: contract (kernel-semantics §2.4 rule 31)
 *  - A sync_file never changes its fence: whatever it was exported from may change later
 *    without affecting it.
 *  - SYNC_IOC_MERGE makes a new sync_file that signals when both inputs have (deduplicated as
 *    dmaFenceUnwrapMerge does); merging a file with itself or with expired fences is fine.
 *  - SYNC_IOC_FILE_INFO reports status (1 signalled, 0 active, <0 error) and one info record per
 *    leaf fence, with the two-call size probe: num_fences 0 returns the count; too small is EINVAL.
 *  - poll() reports POLLIN once the fence has signalled (with or without error).
 *
 */
import { err, type EmuError } from '../../../common/errno.ts';
import {
  DmaFence,
  type DmaFenceCb,
  dmaFenceAddCallback,
  dmaFenceGet,
  dmaFenceGetStatus,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceRemoveCallback,
  dmaFenceSetDeadline,
} from './dma-fence.ts';
import { dmaFenceUnwrapForEach, dmaFenceUnwrapMerge } from './dma-fence-unwrap.ts';
import type { FdTable, FileObject } from '../fs/file.ts';

/** Poll readiness bit (POLLIN). */
export const POLLIN = 0x0001;

/** struct sync_file. */
export class SyncFile implements FileObject {
  readonly kind = 'sync_file';
  /** The wrapped fence; never replaced. */
  readonly fence: DmaFence;
  /** Name given at merge time ('' when none). */
  readonly userName: string;

  /** Takes over the caller's reference to `fence`. Use syncFileCreate(). */
  constructor(fence: DmaFence, userName = '') {
    this.fence = fence;
    this.userName = userName.slice(0, 31);
  }

  release(): void {
    dmaFencePut(this.fence);
  }
}

/** sync_file_create: a sync_file holding a new reference to `fence`. Install it with FdTable.install(). */
export function syncFileCreate(fence: DmaFence, userName = ''): SyncFile {
  if (!(fence instanceof DmaFence)) throw err('EINVAL', 'syncFileCreate: fence is not a DmaFence');
  return new SyncFile(dmaFenceGet(fence), userName);
}

/** sync_file_create + fd_install: a new sync_file fd for `fence` in `fdt`. */
export function syncFileInstall(fdt: FdTable, fence: DmaFence): number {
  return fdt.install(syncFileCreate(fence));
}

/**
 * sync_file_get_fence: a new reference to the fence of sync_file `fd`.
 * Throws: EBADF (fd not open), EINVAL (not a sync_file).
 */
export function syncFileGetFence(fdt: FdTable, fd: number): DmaFence {
  return dmaFenceGet(fdt.getAs(fd, SyncFile, 'syncFileGetFence').fence);
}

/**
 * SYNC_IOC_MERGE on `fd1` with `fd2`: a new sync_file fd, named `name` (truncated to 31 chars),
 * that signals when both have.
 * Throws: EBADF/EINVAL for `fd1` (the ioctl target), ENOENT if `fd2` is not a sync_file
 * (as sync_file_ioctl_merge), EINVAL for non-zero flags or a `name` that is not a string.
 */
export function syncFileMerge(fdt: FdTable, fd1: number, fd2: number, name: string, flags = 0): number {
  const a = fdt.getAs(fd1, SyncFile, 'SYNC_IOC_MERGE');
  if (flags) throw err('EINVAL', `SYNC_IOC_MERGE: flags ${flags} must be 0`);
  if (typeof name !== 'string') throw err('EINVAL', 'SYNC_IOC_MERGE: name is not a string');
  let b: SyncFile;
  try {
    b = fdt.getAs(fd2, SyncFile, 'SYNC_IOC_MERGE');
  } catch (e) {
    throw err('ENOENT', `SYNC_IOC_MERGE: fd2 = ${fd2} is not a sync_file`, { cause: e as EmuError });
  }
  const merged = dmaFenceUnwrapMerge(a.fence, b.fence);
  return fdt.install(new SyncFile(merged, name));
}

/** struct sync_fence_info. */
export interface SyncFenceInfo {
  obj_name: string;
  driver_name: string;
  /** 1 signalled, 0 active, negative errno on error. */
  status: number;
  flags: number;
  /** Signal time (ns, ktimeGetNs clock); 0 while active. */
  timestamp_ns: number;
}

/** struct sync_file_info as returned. */
export interface SyncFileInfo {
  name: string;
  status: number;
  num_fences: number;
  sync_fence_info: SyncFenceInfo[];
}

function syncFileName(file: SyncFile): string {
  if (file.userName) return file.userName;
  const f = file.fence;
  return `${f.driverName}-${f.timelineName}${f.context}-${f.seqno}`.slice(0, 31);
}

/**
 * SYNC_IOC_FILE_INFO. Call with num_fences 0 to learn the count (status is then the whole
 * fence's status); call again with room for that many to get per-fence records (status is then
 * the first non-positive record status, else 1).
 * Throws: EBADF/EINVAL for `fd`; EINVAL for non-zero flags/pad or num_fences below the count.
 */
export function syncFileInfo(
  fdt: FdTable,
  fd: number,
  req: { num_fences?: number; flags?: number; pad?: number } = {},
): SyncFileInfo {
  const file = fdt.getAs(fd, SyncFile, 'SYNC_IOC_FILE_INFO');
  if (req.flags || req.pad) throw err('EINVAL', 'SYNC_IOC_FILE_INFO: flags and pad must be 0');
  const leaves = [...dmaFenceUnwrapForEach(file.fence)];
  const want = req.num_fences ?? 0;
  const info: SyncFileInfo = {
    name: syncFileName(file),
    status: 1,
    num_fences: leaves.length,
    sync_fence_info: [],
  };
  if (!want) {
    info.status = dmaFenceGetStatus(file.fence);
    return info;
  }
  if (want < leaves.length) {
    throw err('EINVAL', `SYNC_IOC_FILE_INFO: num_fences ${want} < ${leaves.length} fences in fd ${fd}`);
  }
  for (const f of leaves) {
    const status = dmaFenceGetStatus(f);
    info.sync_fence_info.push({
      obj_name: f.timelineName.slice(0, 31),
      driver_name: f.driverName.slice(0, 31),
      status,
      flags: 0,
      timestamp_ns: status !== 0 ? f.timestamp : 0,
    });
    if (info.status > 0) info.status = status;
  }
  return info;
}

/**
 * poll(2) for POLLIN on sync_file `fd`: resolves POLLIN once the fence signals, or 0 after
 * `timeoutMs` (0 polls once; negative waits without a timer, so give the caller a deadline).
 * Polling enables signalling. A poll in flight holds its own fence reference, so closing the fd
 * meanwhile does not strand it (Linux's poll holds the file).
 * Throws (synchronously): EBADF/EINVAL for `fd`; EINVAL for a `timeoutMs` that is not a number.
 */
export function syncFilePoll(fdt: FdTable, fd: number, timeoutMs: number): Promise<number> {
  const file = fdt.getAs(fd, SyncFile, 'poll');
  // NaN would neither poll once nor arm a timer: a wait that never ends.
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs))
    throw err('EINVAL', `poll: timeout ${timeoutMs} is not a number`);
  const fence = dmaFenceGet(file.fence);
  return new Promise<number>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let finished = false;
    const cb: DmaFenceCb = { func: () => done(POLLIN) };
    const done = (revents: number) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      dmaFenceRemoveCallback(fence, cb);
      dmaFencePut(fence);
      resolve(revents);
    };
    // The peek lets hardware fences (ops.signaled) report completion, as sync_file_poll does.
    if (dmaFenceAddCallback(fence, cb) !== 0 || dmaFenceIsSignaled(fence)) done(POLLIN);
    else if (timeoutMs === 0) done(0);
    else if (timeoutMs > 0) timer = setTimeout(() => done(0), timeoutMs);
  });
}

/** libsync sync_wait(): 'signaled' or 'timed-out' (an expected refusal, as a value). */
export async function syncFileWait(
  fdt: FdTable,
  fd: number,
  timeoutMs: number,
): Promise<'signaled' | 'timed-out'> {
  return (await syncFilePoll(fdt, fd, timeoutMs)) & POLLIN ? 'signaled' : 'timed-out';
}

/**
 * SYNC_IOC_SET_DEADLINE: forward a "needed by" hint (ms, performance.now clock) to the fence.
 * Throws: EBADF/EINVAL for `fd`; EINVAL for non-zero pad or a deadline that is not a number.
 */
export function syncFileSetDeadline(fdt: FdTable, fd: number, deadlineMs: number, pad = 0): void {
  const file = fdt.getAs(fd, SyncFile, 'SYNC_IOC_SET_DEADLINE');
  if (pad) throw err('EINVAL', `SYNC_IOC_SET_DEADLINE: pad ${pad} must be 0`);
  if (typeof deadlineMs !== 'number' || Number.isNaN(deadlineMs))
    throw err('EINVAL', `SYNC_IOC_SET_DEADLINE: deadline ${deadlineMs} is not a time`);
  dmaFenceSetDeadline(file.fence, deadlineMs);
}

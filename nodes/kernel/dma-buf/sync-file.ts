/**
 * sync_file: an immutable fd wrapping exactly one fence (drivers/dma-buf/sync_file.c), and the
 * small per-host fd table that fd-based uapi objects live in.
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
 * Files are reference counted like struct file: dup(), fork() and fd passing share one open file,
 * and its release() runs when the last fd referring to it is closed.
 */
import { err, type EmuError } from '../../../common/errno.ts';
import {
  type DmaFence,
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

/** What an fd can refer to (the struct file's private object plus its f_op->release). */
export interface FileObject {
  /** Short type name for messages ("sync_file", "sw_sync", "drm_syncobj"). */
  readonly kind: string;
  /** Last fd referring to the open file was closed. */
  release(): void;
}

// struct file: the open file shared by dup'd, forked and passed fds.
interface OpenFile {
  obj: FileObject;
  refs: number;
}

const inFlight = new Map<number, OpenFile>();
let nextToken = 1;

/**
 * A process's fd table. Lookups throw EBADF for an fd that is not open and EINVAL for an fd of
 * the wrong kind, naming the caller. New fds take the lowest free number from 3 (0-2 are stdio).
 */
export class FdTable {
  readonly name: string;
  private readonly fds = new Map<number, OpenFile>();

  constructor(name = 'host') {
    this.name = name;
  }

  /** Open a new file for `obj` and return its fd. */
  install(obj: FileObject): number {
    return this.installFile({ obj, refs: 0 });
  }

  private installFile(file: OpenFile): number {
    let fd = 3;
    while (this.fds.has(fd)) fd++;
    file.refs++;
    this.fds.set(fd, file);
    return fd;
  }

  private file(fd: number, who: string): OpenFile {
    const file = Number.isInteger(fd) ? this.fds.get(fd) : undefined;
    if (!file) throw err('EBADF', `${who}: fd ${fd} is not open in ${this.name}`);
    return file;
  }

  /** The object behind `fd`. Throws EBADF. */
  get(fd: number, who = 'fdget'): FileObject {
    return this.file(fd, who).obj;
  }

  /** The object behind `fd` if it is a `cls`. Throws EBADF, or EINVAL for another kind. */
  getAs<T extends FileObject>(fd: number, cls: abstract new (...args: never[]) => T, who: string): T {
    const obj = this.get(fd, who);
    if (!(obj instanceof cls)) throw err('EINVAL', `${who}: fd ${fd} is a ${obj.kind}, not a ${cls.name}`);
    return obj;
  }

  /** close(2). Throws EBADF. The file is released when its last fd goes. */
  close(fd: number): void {
    const file = this.file(fd, 'close');
    this.fds.delete(fd);
    putFile(file);
  }

  /** dup(2): a second fd for the same open file. */
  dup(fd: number): number {
    return this.installFile(this.file(fd, 'dup'));
  }

  /** fork(2): a child table with the same fds referring to the same open files. */
  fork(name = `${this.name}-child`): FdTable {
    const child = new FdTable(name);
    for (const [fd, file] of this.fds) {
      file.refs++;
      child.fds.set(fd, file);
    }
    return child;
  }

  /** Process exit: close every fd. */
  closeAll(): void {
    for (const fd of [...this.fds.keys()]) this.close(fd);
  }

  /**
   * SCM_RIGHTS send: a token (a plain number, safe to postMessage) that holds a reference to
   * the open file until receiveFd() installs it in another table.
   */
  sendFd(fd: number): number {
    const file = this.file(fd, 'sendFd');
    file.refs++;
    const token = nextToken++;
    inFlight.set(token, file);
    return token;
  }

  /** SCM_RIGHTS receive: install the file a token stands for. Throws EINVAL for a stale token. */
  receiveFd(token: number): number {
    const file = inFlight.get(token);
    if (!file) throw err('EINVAL', `receiveFd: token ${token} is not in flight`);
    inFlight.delete(token);
    const fd = this.installFile(file);
    file.refs--; // the in-flight reference became the fd's
    return fd;
  }

  /** Number of open fds. */
  get size(): number {
    return this.fds.size;
  }
}

function putFile(file: OpenFile): void {
  if (--file.refs === 0) file.obj.release();
}

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
 * (as sync_file_ioctl_merge), EINVAL for non-zero flags.
 */
export function syncFileMerge(fdt: FdTable, fd1: number, fd2: number, name: string, flags = 0): number {
  const a = fdt.getAs(fd1, SyncFile, 'SYNC_IOC_MERGE');
  if (flags) throw err('EINVAL', `SYNC_IOC_MERGE: flags ${flags} must be 0`);
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
 * Throws (synchronously): EBADF/EINVAL for `fd`.
 */
export function syncFilePoll(fdt: FdTable, fd: number, timeoutMs: number): Promise<number> {
  const fence = dmaFenceGet(fdt.getAs(fd, SyncFile, 'poll').fence);
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
 * Throws: EBADF/EINVAL for `fd`; EINVAL for non-zero pad.
 */
export function syncFileSetDeadline(fdt: FdTable, fd: number, deadlineMs: number, pad = 0): void {
  const file = fdt.getAs(fd, SyncFile, 'SYNC_IOC_SET_DEADLINE');
  if (pad) throw err('EINVAL', `SYNC_IOC_SET_DEADLINE: pad ${pad} must be 0`);
  dmaFenceSetDeadline(file.fence, deadlineMs);
}

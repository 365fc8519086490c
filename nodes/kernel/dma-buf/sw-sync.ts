/**
 * sw_sync: the software timeline test driver (drivers/dma-buf/sw_sync.c), reached through the
 * debugfs file `sw_sync` in Linux and through an fd in an FdTable here.
 *
 * DOC: contract (kernel-semantics §2.4 rule 32)
 *  - A timeline has a 32-bit counter starting at 0 and one fence context. A fence ("sync_pt")
 *    created for value V signals once the counter reaches V, compared with 32-bit wrap-around
 *    ((s32)(V - counter) <= 0), so values wrap past 2^32 like the kernel's.
 *  - SW_SYNC_IOC_INC(n) advances the counter and signals, in order, every fence it reached; an
 *    increment above INT_MAX is applied in INT_MAX steps so the wrap-around compare stays valid.
 *  - Creating a second fence for a pending value returns the same fence.
 *  - Closing the timeline signals every still-pending fence with -ENOENT; fences that had
 *    signalled keep status 1.
 *  - SW_SYNC_GET_DEADLINE reads back the earliest deadline hint set on a fence (ENOENT if none).
 */
import { err } from '../../../common/errno.ts';
import {
  DmaFence,
  type DmaFenceOps,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSetError,
  dmaFenceSignal,
  seqnoAfter,
} from './dma-fence.ts';
import type { FdTable, FileObject } from '../fs/file.ts';
import { SyncFile, syncFileInstall } from './sync-file.ts';

const INT_MAX = 0x7fff_ffff;

const syncPtOps: DmaFenceOps = {
  getDriverName: () => 'sw_sync',
  getTimelineName: (fence) => (fence as SyncPt).timeline.name,
  // timeline_fence_signaled: reached unless the point is still after the counter.
  signaled: (fence) => !seqnoAfter(fence.seqno, (fence as SyncPt).timeline.value, false),
  setDeadline: (fence, deadlineMs) => {
    const pt = fence as SyncPt;
    if (pt.deadlineMs === null || deadlineMs < pt.deadlineMs) pt.deadlineMs = deadlineMs;
  },
  // timeline_fence_release: nobody can wait on it any more; stop tracking it.
  release: (fence) => (fence as SyncPt).timeline._forget(fence as SyncPt),
};

/** struct sync_pt: a fence on a sw_sync timeline. */
export class SyncPt extends DmaFence {
  readonly timeline: SyncTimeline;
  /** Earliest deadline hint set (ms, performance.now clock), or null. */
  deadlineMs: number | null = null;

  constructor(timeline: SyncTimeline, value: number) {
    super(syncPtOps, timeline.context, value);
    this.timeline = timeline;
  }
}

/** struct sync_timeline, also the open sw_sync file. */
export class SyncTimeline implements FileObject {
  readonly kind = 'sw_sync';
  readonly name: string;
  readonly context: number;
  /** The 32-bit counter. */
  value = 0;
  /** Set once the file is closed: no new fences. */
  closed = false;
  // Pending points in signal order (the kernel's rbtree + pt_list), oldest first.
  private pending: SyncPt[] = [];

  constructor(name = 'sw_sync') {
    this.name = name.slice(0, 31);
    this.context = dmaFenceContextAlloc(1);
  }

  /**
   * sync_pt_create: a new reference to the fence for `value`. An already-reached value gives a
   * signalled fence; a pending value that has a fence already gives that fence.
   */
  createPt(value: number): SyncPt {
    if (this.closed) throw err('EINVAL', `sw_sync ${this.name}: timeline is closed`);
    value >>>= 0;
    // Find the insertion point by 32-bit distance, as the kernel's rbtree compare does.
    let i = this.pending.length;
    while (i > 0) {
      const cmp = (value - this.pending[i - 1].seqno) | 0;
      if (cmp === 0) return dmaFenceGet(this.pending[i - 1]);
      if (cmp > 0) break;
      i--;
    }
    const pt = new SyncPt(this, value);
    if (!dmaFenceIsSignaled(pt)) this.pending.splice(i, 0, pt);
    return pt;
  }

  /** sync_timeline_signal: advance the counter by `inc` (u32, wrapping) and signal reached points. */
  signal(inc: number): void {
    this.value = (this.value + inc) >>> 0;
    while (this.pending.length > 0 && !seqnoAfter(this.pending[0].seqno, this.value, false)) {
      const pt = this.pending.shift() as SyncPt;
      dmaFenceSignal(pt);
    }
  }

  /** @internal a pending point lost its last reference. */
  _forget(pt: SyncPt): void {
    const i = this.pending.indexOf(pt);
    if (i >= 0) this.pending.splice(i, 1);
  }

  /** sw_sync_debugfs_release: fail every pending fence with -ENOENT. */
  release(): void {
    this.closed = true;
    const pending = this.pending;
    this.pending = [];
    for (const pt of pending) {
      if (pt.signaledFlag) continue;
      dmaFenceSetError(pt, -2 /* -ENOENT */);
      dmaFenceSignal(pt);
    }
  }

  /** Number of fences still waiting for the counter. */
  get pendingCount(): number {
    return this.pending.length;
  }
}

function timeline(fdt: FdTable, fd: number, who: string): SyncTimeline {
  return fdt.getAs(fd, SyncTimeline, who);
}

function checkU32(v: number, who: string, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff)
    throw err('EINVAL', `${who}: ${what} ${v} is not a u32`);
}

/** open("/sys/kernel/debug/sync/sw_sync"): a new timeline fd named `name` (the task comm in Linux). */
export function swSyncTimelineCreate(fdt: FdTable, name = 'sw_sync'): number {
  if (typeof name !== 'string') throw err('EINVAL', 'open(sw_sync): name is not a string');
  return fdt.install(new SyncTimeline(name));
}

/**
 * SW_SYNC_IOC_CREATE_FENCE: a sync_file fd whose fence signals when timeline `timelineFd` reaches
 * `value`.
 * Throws: EBADF/EINVAL for `timelineFd`; EINVAL if `value` is not a u32.
 */
export function swSyncCreateFence(fdt: FdTable, timelineFd: number, value: number): number {
  const tl = timeline(fdt, timelineFd, 'SW_SYNC_IOC_CREATE_FENCE');
  checkU32(value, 'SW_SYNC_IOC_CREATE_FENCE', 'value');
  const pt = tl.createPt(value);
  try {
    return syncFileInstall(fdt, pt);
  } finally {
    dmaFencePut(pt);
  }
}

/**
 * SW_SYNC_IOC_INC: advance timeline `timelineFd` by `inc`.
 * Throws: EBADF/EINVAL for `timelineFd`; EINVAL if `inc` is not a u32.
 */
export function swSyncInc(fdt: FdTable, timelineFd: number, inc: number): void {
  const tl = timeline(fdt, timelineFd, 'SW_SYNC_IOC_INC');
  checkU32(inc, 'SW_SYNC_IOC_INC', 'inc');
  // Larger steps would make reached points look like future ones under the 32-bit compare.
  while (inc > INT_MAX) {
    tl.signal(INT_MAX);
    inc -= INT_MAX;
  }
  tl.signal(inc);
}

/**
 * SW_SYNC_GET_DEADLINE: the deadline hint (ms) set on sw_sync fence `fenceFd`.
 * Throws: EBADF/EINVAL for either fd; EINVAL if the fence is not a sw_sync point; ENOENT if no
 * deadline was set.
 */
export function swSyncGetDeadline(fdt: FdTable, timelineFd: number, fenceFd: number): number {
  timeline(fdt, timelineFd, 'SW_SYNC_GET_DEADLINE');
  const fence = fdt.getAs(fenceFd, SyncFile, 'SW_SYNC_GET_DEADLINE').fence;
  if (!(fence instanceof SyncPt))
    throw err('EINVAL', `SW_SYNC_GET_DEADLINE: fd ${fenceFd} is not a sw_sync fence`);
  if (fence.deadlineMs === null)
    throw err('ENOENT', `SW_SYNC_GET_DEADLINE: no deadline set on fd ${fenceFd}`);
  return fence.deadlineMs;
}

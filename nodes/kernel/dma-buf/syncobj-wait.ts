/**
 * drm_syncobj host waits (drivers/gpu/drm/drm_syncobj.c): drm_syncobj_find_fence with
 * WAIT_FOR_SUBMIT, DRM_IOCTL_SYNCOBJ_TRANSFER and DRM_IOCTL_SYNCOBJ_(TIMELINE_)WAIT. The objects,
 * handles and the non-waiting ioctls are in syncobj.ts (see its DOC block for the contract).
 */
import { err } from '../../../common/errno.ts';
import {
  type DmaFence,
  type DmaFenceCb,
  dmaFenceAddCallback,
  dmaFenceGetStub,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceRemoveCallback,
  dmaFenceSetDeadline,
} from './dma-fence.ts';
import { dmaFenceUnwrapMerge } from './dma-fence-unwrap.ts';

import {
  DRM_SYNCOBJ_WAIT_FLAGS,
  DRM_SYNCOBJ_WAIT_FOR_SUBMIT_TIMEOUT_MS,
  type DrmSyncobj,
  type DrmSyncobjTable,
  addWait,
  arrayFind,
  checkPoints,
  drmSyncobjAddPoint,
  drmSyncobjPut,
  drmSyncobjReplaceFence,
  findFenceNow,
  findPoint,
  handleOf,
  removeWait,
  type WaitEntry,
} from './syncobj.ts';

const W = DRM_SYNCOBJ_WAIT_FLAGS;
/**
 * drm_syncobj_find_fence: a reference to the fence for `point` of `handle`. With WAIT_FOR_SUBMIT,
 * first waits (up to 5 s) for it to be submitted. Called by submits and the transfer ioctl.
 * Rejects: EINVAL for other flags or no fence; ENOENT for an unknown handle; ETIME after 5 s.
 */
export async function drmSyncobjFindFence(
  file: DrmSyncobjTable,
  handle: number,
  point: number,
  flags = 0,
): Promise<DmaFence> {
  const who = 'drmSyncobjFindFence';
  if (flags & ~W.WAIT_FOR_SUBMIT) throw err('EINVAL', `${who}: flags 0x${flags.toString(16)}`);
  if (!(flags & W.WAIT_FOR_SUBMIT)) return findFenceNow(file, handle, point, who);
  const s = handleOf(file, handle, who);
  let timer: NodeJS.Timeout | undefined;
  const w: WaitEntry = { point, fence: null, wake: () => {} };
  try {
    addWait(s, w);
    if (!w.fence) {
      await new Promise<void>((resolve) => {
        w.wake = resolve;
        timer = setTimeout(resolve, DRM_SYNCOBJ_WAIT_FOR_SUBMIT_TIMEOUT_MS);
      });
    }
    if (!w.fence) throw err('ETIME', `${who}: handle ${handle} point ${point} not submitted within 5 s`);
    return w.fence;
  } finally {
    clearTimeout(timer);
    removeWait(s, w);
    drmSyncobjPut(s);
  }
}

/**
 * DRM_IOCTL_SYNCOBJ_TRANSFER: copy the fence of src point `srcPoint` to dst point `dstPoint`
 * (0 = replace the binary payload). `flags` may hold WAIT_FOR_SUBMIT.
 * Rejects: EINVAL (pad, flags, no source fence), ENOENT (unknown handle), ETIME.
 */
export async function syncobjTransfer(
  file: DrmSyncobjTable,
  args: {
    srcHandle: number;
    srcPoint?: number;
    dstHandle: number;
    dstPoint?: number;
    flags?: number;
    pad?: number;
  },
): Promise<void> {
  if (args.pad) throw err('EINVAL', `syncobjTransfer: pad ${args.pad} must be 0`);
  const dst = handleOf(file, args.dstHandle, 'syncobjTransfer');
  try {
    const fence = await drmSyncobjFindFence(file, args.srcHandle, args.srcPoint ?? 0, args.flags ?? 0);
    try {
      if (args.dstPoint) {
        // A timeline node must not wrap another chain: flatten first.
        const merged = dmaFenceUnwrapMerge(fence);
        drmSyncobjAddPoint(dst, merged, args.dstPoint);
        dmaFencePut(merged);
      } else {
        drmSyncobjReplaceFence(dst, fence);
      }
    } finally {
      dmaFencePut(fence);
    }
  } finally {
    drmSyncobjPut(dst);
  }
}

/** Options of syncobjWait(). */
export interface SyncobjWaitOpts {
  /** With WAIT_DEADLINE: the "needed by" hint (ms, performance.now clock). Default 0. */
  deadlineMs?: number;
  /** Interrupts the wait with ERESTARTSYS (a signal in Linux). */
  signal?: AbortSignal;
}

/**
 * DRM_IOCTL_SYNCOBJ_WAIT (`points` null) / DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT: wait up to
 * `timeoutMs` (0 polls) for all (WAIT_ALL) or any of the syncobjs. Resolves to first_signaled:
 * the index of a signalled one (any mode), else the first found signalled on entry or 0xffffffff.
 * WAIT_AVAILABLE (timeline only) counts a point as done once it is submitted.
 * Rejects: EINVAL (bad flags, no handles, bad points, a missing fence or point without
 * WAIT_FOR_SUBMIT), ENOENT (handle), ETIME, ERESTARTSYS.
 */
export async function syncobjWait(
  file: DrmSyncobjTable,
  handles: readonly number[],
  points: readonly number[] | null,
  timeoutMs: number,
  flags = 0,
  opts: SyncobjWaitOpts = {},
): Promise<number> {
  const who = points ? 'syncobjTimelineWait' : 'syncobjWait';
  const possible = W.WAIT_ALL | W.WAIT_FOR_SUBMIT | W.WAIT_DEADLINE | (points ? W.WAIT_AVAILABLE : 0);
  if (flags & ~possible) throw err('EINVAL', `${who}: flags 0x${(flags >>> 0).toString(16)}`);
  if (points) checkPoints(points, handles.length, who);
  const syncobjs = arrayFind(file, handles, who);
  try {
    return await arrayWait(syncobjs, points, timeoutMs, flags, opts, handles, who);
  } finally {
    for (const s of syncobjs) drmSyncobjPut(s);
  }
}

interface Entry extends WaitEntry {
  cb: DmaFenceCb | null;
}

// drm_syncobj_array_wait_timeout.
async function arrayWait(
  syncobjs: DrmSyncobj[],
  points: readonly number[] | null,
  timeoutMs: number,
  flags: number,
  opts: SyncobjWaitOpts,
  handles: readonly number[],
  who: string,
): Promise<number> {
  const forSubmit = (flags & W.WAIT_FOR_SUBMIT) !== 0;
  const lazy = (flags & (W.WAIT_FOR_SUBMIT | W.WAIT_AVAILABLE)) !== 0;
  const avail = (flags & W.WAIT_AVAILABLE) !== 0;
  const all = (flags & W.WAIT_ALL) !== 0;
  let wake = () => {};
  const entries: Entry[] = syncobjs.map((_, i) => ({
    point: points?.[i] ?? 0,
    fence: null,
    cb: null,
    wake: () => wake(),
  }));
  let first = 0xffff_ffff;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = !(timeoutMs > 0);
  const onAbort = () => wake();
  try {
    // Resolve every entry up front so a missing fence is EINVAL before any sleeping.
    let signaled = 0;
    for (let i = 0; i < entries.length; i++) {
      const found = findPoint(syncobjs[i].fence, entries[i].point);
      if (found === undefined) {
        // Only WAIT_FOR_SUBMIT may sleep for a missing fence; WAIT_AVAILABLE alone is EINVAL here.
        if (forSubmit) continue;
        throw err(
          'EINVAL',
          `${who}: handles[${i}] = ${handles[i]} has no fence for point ${entries[i].point}`,
        );
      }
      entries[i].fence = found ?? dmaFenceGetStub();
      if (avail || dmaFenceIsSignaled(entries[i].fence as DmaFence)) {
        if (signaled++ === 0) first = i;
      }
    }
    if (signaled === entries.length || (signaled > 0 && !all)) return first;
    if (lazy) for (let i = 0; i < entries.length; i++) addWait(syncobjs[i], entries[i]);
    if (flags & W.WAIT_DEADLINE) {
      for (const e of entries) if (e.fence) dmaFenceSetDeadline(e.fence, opts.deadlineMs ?? 0);
    }
    if (!timedOut && Number.isFinite(timeoutMs)) {
      timer = setTimeout(() => {
        timedOut = true;
        wake();
      }, timeoutMs);
    }
    opts.signal?.addEventListener('abort', onAbort);
    for (;;) {
      signaled = 0;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        if (!e.fence) continue;
        let done = avail || dmaFenceIsSignaled(e.fence);
        if (!done && !e.cb) {
          const cb: DmaFenceCb = { func: () => wake() };
          if (dmaFenceAddCallback(e.fence, cb) === 0) e.cb = cb;
          else done = true;
        }
        if (!done) continue;
        if (!all) return i;
        signaled++;
      }
      if (signaled === entries.length) return first;
      if (timedOut) throw err('ETIME', `${who}: timed out after ${timeoutMs} ms`);
      if (opts.signal?.aborted) throw err('ERESTARTSYS', `${who}: interrupted`);
      // Single-threaded: nothing can signal between the checks above and installing `wake`.
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    entries.forEach((e, i) => {
      removeWait(syncobjs[i], e);
      if (e.fence && e.cb) dmaFenceRemoveCallback(e.fence, e.cb);
      dmaFencePut(e.fence);
    });
  }
}

/**
 * drm_syncobj: mutable fence containers behind per-file handles (drivers/gpu/drm/drm_syncobj.c).
 *
 * DOC: contract (kernel-semantics §2.4 rules 33-36)
 *  - Binary: the payload is null or a fence. CREATE_SIGNALED and SIGNAL install a signalled
 *    stub, RESET installs null, submits replace it. Waiting on a null payload is EINVAL unless
 *    WAIT_FOR_SUBMIT, which first waits for a fence to appear.
 *  - Timeline: signalling point P appends a dma_fence_chain node; point P is found with
 *    dmaFenceChainFindSeqno (rule 29); point 0 means "the payload as is" (binary behaviour).
 *    QUERY reports the last signalled point, which only grows even when devices signal out of
 *    order. Chain seqnos are 64-bit, so points past 2^31 or 2^32 order numerically.
 *  - sync_file export snapshots the current fence; whole-object fd export shares the object,
 *    and every import makes a new handle (no de-duplication).
 *  - Errors as the ioctls report them: bad flags/pad or zero handles EINVAL, unknown handle in
 *    an array ENOENT (destroy and handle-to-fd say EINVAL), timeout ETIME.
 *
 * Host waits are promises; wake-ups come from fence callbacks and from the syncobj's waiter
 * list (a fence attached while a WAIT_FOR_SUBMIT/WAIT_AVAILABLE wait sleeps).
 */
import { type EmuError, err } from '../../../common/errno.ts';
import {
  DmaFence,
  type DmaFenceCb,
  dmaFenceAddCallback,
  dmaFenceAllocatePrivateStub,
  dmaFenceGet,
  dmaFenceGetStub,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceRemoveCallback,
  dmaFenceSetDeadline,
} from './dma-fence.ts';
import {
  dmaFenceChainFindSeqno,
  dmaFenceChainForEach,
  dmaFenceChainInit,
  toDmaFenceChain,
} from './dma-fence-chain.ts';
import { dmaFenceUnwrapMerge } from './dma-fence-unwrap.ts';
import type { FdTable, FileObject } from '../fs/file.ts';
import { syncFileGetFence, syncFileInstall } from './sync-file.ts';

export const DRM_SYNCOBJ_CREATE_FLAGS = { SIGNALED: 1 << 0 } as const;
export const DRM_SYNCOBJ_WAIT_FLAGS = {
  WAIT_ALL: 1 << 0,
  WAIT_FOR_SUBMIT: 1 << 1,
  WAIT_AVAILABLE: 1 << 2,
  WAIT_DEADLINE: 1 << 3,
} as const;
export const DRM_SYNCOBJ_QUERY_FLAGS = { LAST_SUBMITTED: 1 << 0 } as const;
export const DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS = { EXPORT_SYNC_FILE: 1 << 0, TIMELINE: 1 << 1 } as const;
export const DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS = { IMPORT_SYNC_FILE: 1 << 0, TIMELINE: 1 << 1 } as const;
/** drm_syncobj_find_fence() with WAIT_FOR_SUBMIT gives up after this long (5 s). */
export const DRM_SYNCOBJ_WAIT_FOR_SUBMIT_TIMEOUT_MS = 5000;

const W = DRM_SYNCOBJ_WAIT_FLAGS;

// struct syncobj_wait_entry: a sleeping wait that wants a fence for `point`.
interface WaitEntry {
  point: number;
  fence: DmaFence | null;
  wake(): void;
}

/** struct drm_syncobj. */
export class DrmSyncobj {
  /** Payload: null, a fence, or the head of a dma_fence_chain. Holds a reference. */
  fence: DmaFence | null = null;
  refcount = 1;
  /** @internal waits for a fence to appear (cb_list). */
  readonly waiters: WaitEntry[] = [];
}

/** The open whole-object syncobj fd (anon inode "syncobj"). */
export class SyncobjFile implements FileObject {
  readonly kind = 'drm_syncobj';
  readonly syncobj: DrmSyncobj;
  constructor(syncobj: DrmSyncobj) {
    this.syncobj = syncobj;
  }
  release(): void {
    drmSyncobjPut(this.syncobj);
  }
}

/** The syncobj part of struct drm_file: the handle table (syncobj_idr) and the process fd table. */
export class DrmSyncobjTable {
  readonly fdt: FdTable;
  private readonly handles = new Map<number, DrmSyncobj>();
  constructor(fdt: FdTable) {
    this.fdt = fdt;
  }
  /** idr_alloc from 1: takes over the caller's reference. */
  install(syncobj: DrmSyncobj): number {
    let h = 1;
    while (this.handles.has(h)) h++;
    this.handles.set(h, syncobj);
    return h;
  }
  /** @internal */
  _lookup(handle: number): DrmSyncobj | undefined {
    return this.handles.get(handle);
  }
  /** @internal */
  _remove(handle: number): DrmSyncobj | undefined {
    const s = this.handles.get(handle);
    this.handles.delete(handle);
    return s;
  }
  /** drm_syncobj_release: the DRM file is closed; drop every handle. */
  release(): void {
    for (const h of [...this.handles.keys()]) drmSyncobjPut(this._remove(h) as DrmSyncobj);
  }
}

function checkSyncobj(fn: string, syncobj: DrmSyncobj): void {
  if (!(syncobj instanceof DrmSyncobj)) throw err('EINVAL', `${fn}: syncobj is not a drm_syncobj`);
  if (syncobj.refcount <= 0) throw err('EINVAL', `${fn}: syncobj already released`);
}

export function drmSyncobjGet(syncobj: DrmSyncobj): DrmSyncobj {
  checkSyncobj('drmSyncobjGet', syncobj);
  syncobj.refcount++;
  return syncobj;
}

/** drm_syncobj_put: the last reference drops the payload. */
export function drmSyncobjPut(syncobj: DrmSyncobj): void {
  checkSyncobj('drmSyncobjPut', syncobj);
  if (--syncobj.refcount === 0) drmSyncobjReplaceFence(syncobj, null);
}

/** drm_syncobj_find: a new reference to the syncobj behind `handle`, or null. */
export function drmSyncobjFind(file: DrmSyncobjTable, handle: number): DrmSyncobj | null {
  if (!(file instanceof DrmSyncobjTable))
    throw err('EINVAL', 'drmSyncobjFind: file is not a DrmSyncobjTable');
  const s = file._lookup(handle);
  return s ? drmSyncobjGet(s) : null;
}

/** drm_syncobj_fence_get: a new reference to the payload, or null. */
export function drmSyncobjFenceGet(syncobj: DrmSyncobj): DmaFence | null {
  checkSyncobj('drmSyncobjFenceGet', syncobj);
  return dmaFenceGet(syncobj.fence);
}

// The fence for `point` in `payload`: a reference, null if already complete, undefined if there
// is no payload or the point is not submitted yet (find_seqno said EINVAL).
function findPoint(payload: DmaFence | null, point: number): DmaFence | null | undefined {
  if (!payload) return undefined;
  try {
    return dmaFenceChainFindSeqno(payload, point);
  } catch {
    return undefined;
  }
}

// syncobj_wait_syncobj_func: the payload changed; hand the fence to waits that can now proceed.
function wakeWaiters(syncobj: DrmSyncobj): void {
  for (const w of [...syncobj.waiters]) {
    const found = findPoint(syncobj.fence, w.point);
    if (found === undefined) continue;
    w.fence = found ?? dmaFenceGetStub();
    syncobj.waiters.splice(syncobj.waiters.indexOf(w), 1);
    w.wake();
  }
}

// drm_syncobj_fence_add_wait: take the point's fence now, or queue until it appears.
function addWait(syncobj: DrmSyncobj, w: WaitEntry): void {
  if (w.fence) return;
  const found = findPoint(syncobj.fence, w.point);
  if (found === undefined) syncobj.waiters.push(w);
  else w.fence = found ?? dmaFenceGetStub();
}

function removeWait(syncobj: DrmSyncobj, w: WaitEntry): void {
  const i = syncobj.waiters.indexOf(w);
  if (i >= 0) syncobj.waiters.splice(i, 1);
}

/** drm_syncobj_replace_fence: install `fence` (a new reference is taken) or null as the payload. */
export function drmSyncobjReplaceFence(syncobj: DrmSyncobj, fence: DmaFence | null): void {
  if (!(syncobj instanceof DrmSyncobj))
    throw err('EINVAL', 'drmSyncobjReplaceFence: syncobj is not a drm_syncobj');
  if (fence !== null && !(fence instanceof DmaFence))
    throw err('EINVAL', 'drmSyncobjReplaceFence: fence is not a DmaFence or null');
  const old = syncobj.fence;
  syncobj.fence = dmaFenceGet(fence);
  if (fence !== old) wakeWaiters(syncobj);
  dmaFencePut(old);
}

/**
 * drm_syncobj_add_point: append `fence` (a new reference is taken) as timeline point `point`.
 * A point not above the last one makes an unordered node (rule 28) and is allowed, as in Linux.
 */
export function drmSyncobjAddPoint(syncobj: DrmSyncobj, fence: DmaFence, point: number): void {
  checkSyncobj('drmSyncobjAddPoint', syncobj);
  if (!(fence instanceof DmaFence)) throw err('EINVAL', 'drmSyncobjAddPoint: fence is not a DmaFence');
  if (!Number.isSafeInteger(point) || point < 0) throw err('EINVAL', `drmSyncobjAddPoint: point ${point}`);
  const prev = syncobj.fence; // the payload's reference moves into the chain node
  syncobj.fence = dmaFenceChainInit(prev, dmaFenceGet(fence), point);
  wakeWaiters(syncobj);
  // Walk once so signalled nodes are unlinked and the chain does not grow without bound.
  if (prev) for (const _ of dmaFenceChainForEach(prev));
}

function assignNullHandle(syncobj: DrmSyncobj): void {
  const stub = dmaFenceAllocatePrivateStub();
  drmSyncobjReplaceFence(syncobj, stub);
  dmaFencePut(stub);
}

function handleOf(file: DrmSyncobjTable, handle: number, who: string): DrmSyncobj {
  const s = drmSyncobjFind(file, handle);
  if (!s) throw err('ENOENT', `${who}: handle ${handle} is not a syncobj`);
  return s;
}

// drm_syncobj_array_find: references to every syncobj, or ENOENT naming the first bad handle.
function arrayFind(file: DrmSyncobjTable, handles: readonly number[], who: string): DrmSyncobj[] {
  if (!Array.isArray(handles) || handles.length === 0) throw err('EINVAL', `${who}: count_handles is 0`);
  const found: DrmSyncobj[] = [];
  for (let i = 0; i < handles.length; i++) {
    const s = drmSyncobjFind(file, handles[i]);
    if (!s) {
      for (const f of found) drmSyncobjPut(f);
      throw err('ENOENT', `${who}: handles[${i}] = ${handles[i]} is not a syncobj`);
    }
    found.push(s);
  }
  return found;
}

function checkPoints(points: readonly number[], n: number, who: string): void {
  if (points.length !== n) throw err('EINVAL', `${who}: ${points.length} points for ${n} handles`);
  points.forEach((p, i) => {
    if (!Number.isSafeInteger(p) || p < 0)
      throw err('EINVAL', `${who}: points[${i}] = ${p} is not a u64 point`);
  });
}

/** DRM_IOCTL_SYNCOBJ_CREATE. Throws: EINVAL for unknown flags. */
export function syncobjCreate(file: DrmSyncobjTable, flags = 0): number {
  if (!Number.isInteger(flags) || flags & ~DRM_SYNCOBJ_CREATE_FLAGS.SIGNALED)
    throw err('EINVAL', `syncobjCreate: flags 0x${Number(flags).toString(16)}`);
  const syncobj = new DrmSyncobj();
  if (flags & DRM_SYNCOBJ_CREATE_FLAGS.SIGNALED) assignNullHandle(syncobj);
  return file.install(syncobj);
}

/** DRM_IOCTL_SYNCOBJ_DESTROY. Throws: EINVAL for non-zero pad or an unknown handle. */
export function syncobjDestroy(file: DrmSyncobjTable, handle: number, pad = 0): void {
  if (pad) throw err('EINVAL', `syncobjDestroy: pad ${pad} must be 0`);
  const s = file._remove(handle);
  if (!s) throw err('EINVAL', `syncobjDestroy: handle ${handle} is not a syncobj`);
  drmSyncobjPut(s);
}

/**
 * DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD: a whole-object fd, or with EXPORT_SYNC_FILE a sync_file
 * snapshot of the fence for `point` (TIMELINE flag).
 * Throws: EINVAL for bad flags/pad, a point without TIMELINE, an unknown handle (whole object) or a
 * missing fence; ENOENT for an unknown handle (sync_file export).
 */
export function syncobjHandleToFd(
  file: DrmSyncobjTable,
  args: { handle: number; flags?: number; point?: number; pad?: number },
): number {
  const F = DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS;
  const flags = args.flags ?? 0;
  if (args.pad || flags & ~(F.EXPORT_SYNC_FILE | F.TIMELINE))
    throw err('EINVAL', 'syncobjHandleToFd: bad flags or pad');
  const point = flags & F.TIMELINE ? (args.point ?? 0) : 0;
  if (flags & F.EXPORT_SYNC_FILE) {
    const fence = findFenceNow(file, args.handle, point, 'syncobjHandleToFd');
    try {
      return syncFileInstall(file.fdt, fence);
    } finally {
      dmaFencePut(fence);
    }
  }
  if (args.point) throw err('EINVAL', 'syncobjHandleToFd: point without the TIMELINE flag');
  const s = drmSyncobjFind(file, args.handle);
  if (!s) throw err('EINVAL', `syncobjHandleToFd: handle ${args.handle} is not a syncobj`);
  return file.fdt.install(new SyncobjFile(s));
}

/**
 * DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE: import a whole-object fd as a new handle, or with
 * IMPORT_SYNC_FILE set the payload of `handle` (or its timeline `point`) from a sync_file.
 * Returns the handle. Throws: EINVAL for bad flags/pad or an fd of the wrong kind or not open;
 * ENOENT for an unknown `handle` (sync_file import).
 */
export function syncobjFdToHandle(
  file: DrmSyncobjTable,
  args: { fd: number; flags?: number; handle?: number; point?: number; pad?: number },
): number {
  const F = DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS;
  const flags = args.flags ?? 0;
  if (args.pad || flags & ~(F.IMPORT_SYNC_FILE | F.TIMELINE))
    throw err('EINVAL', 'syncobjFdToHandle: bad flags or pad');
  const point = flags & F.TIMELINE ? (args.point ?? 0) : 0;
  const handle = args.handle ?? 0;
  if (flags & F.IMPORT_SYNC_FILE) {
    let fence: DmaFence;
    try {
      fence = syncFileGetFence(file.fdt, args.fd);
    } catch (e) {
      throw err('EINVAL', `syncobjFdToHandle: fd ${args.fd} is not a sync_file`, { cause: e as EmuError });
    }
    try {
      const s = handleOf(file, handle, 'syncobjFdToHandle');
      if (point) drmSyncobjAddPoint(s, fence, point);
      else drmSyncobjReplaceFence(s, fence);
      drmSyncobjPut(s);
    } finally {
      dmaFencePut(fence);
    }
    return handle;
  }
  if (args.point) throw err('EINVAL', 'syncobjFdToHandle: point without the TIMELINE flag');
  let obj: SyncobjFile;
  try {
    obj = file.fdt.getAs(args.fd, SyncobjFile, 'syncobjFdToHandle');
  } catch (e) {
    throw err('EINVAL', `syncobjFdToHandle: fd ${args.fd} is not a syncobj fd`, { cause: e as EmuError });
  }
  return file.install(drmSyncobjGet(obj.syncobj));
}

/** HANDLE_TO_FD with EXPORT_SYNC_FILE: a sync_file fd snapshotting the fence for `point`. */
export function syncobjExportSyncFile(file: DrmSyncobjTable, handle: number, point = 0): number {
  const F = DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS;
  return syncobjHandleToFd(file, { handle, point, flags: F.EXPORT_SYNC_FILE | (point ? F.TIMELINE : 0) });
}

/** FD_TO_HANDLE with IMPORT_SYNC_FILE: set `handle`'s payload (or `point`) from sync_file `fd`. */
export function syncobjImportSyncFile(file: DrmSyncobjTable, handle: number, fd: number, point = 0): void {
  const F = DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS;
  syncobjFdToHandle(file, { fd, handle, point, flags: F.IMPORT_SYNC_FILE | (point ? F.TIMELINE : 0) });
}

// drm_syncobj_find_fence without waiting: a fence reference (stub if the point is complete).
function findFenceNow(file: DrmSyncobjTable, handle: number, point: number, who: string): DmaFence {
  const s = handleOf(file, handle, who);
  try {
    const found = findPoint(s.fence, point);
    if (found === undefined) throw err('EINVAL', `${who}: handle ${handle} has no fence for point ${point}`);
    return found ?? dmaFenceGetStub();
  } finally {
    drmSyncobjPut(s);
  }
}

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

/** DRM_IOCTL_SYNCOBJ_RESET: payloads become null. Throws: EINVAL (pad, no handles), ENOENT. */
export function syncobjReset(file: DrmSyncobjTable, handles: readonly number[], pad = 0): void {
  if (pad) throw err('EINVAL', `syncobjReset: pad ${pad} must be 0`);
  for (const s of arrayFind(file, handles, 'syncobjReset')) {
    drmSyncobjReplaceFence(s, null);
    drmSyncobjPut(s);
  }
}

/** DRM_IOCTL_SYNCOBJ_SIGNAL: payloads become signalled stubs. Throws: EINVAL, ENOENT. */
export function syncobjSignal(file: DrmSyncobjTable, handles: readonly number[], pad = 0): void {
  if (pad) throw err('EINVAL', `syncobjSignal: pad ${pad} must be 0`);
  for (const s of arrayFind(file, handles, 'syncobjSignal')) {
    assignNullHandle(s);
    drmSyncobjPut(s);
  }
}

/**
 * DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL: append a signalled point to each syncobj (`points` null
 * means all 0). Throws: EINVAL (flags, no handles, bad points), ENOENT.
 */
export function syncobjTimelineSignal(
  file: DrmSyncobjTable,
  handles: readonly number[],
  points: readonly number[] | null,
  flags = 0,
): void {
  const who = 'syncobjTimelineSignal';
  if (flags) throw err('EINVAL', `${who}: flags ${flags} must be 0`);
  if (points) checkPoints(points, handles.length, who);
  const syncobjs = arrayFind(file, handles, who);
  syncobjs.forEach((s, i) => {
    const stub = dmaFenceGetStub();
    drmSyncobjAddPoint(s, stub, points ? points[i] : 0);
    dmaFencePut(stub);
    drmSyncobjPut(s);
  });
}

/**
 * DRM_IOCTL_SYNCOBJ_QUERY: per handle, the last signalled timeline point (0 for a binary
 * payload), or with LAST_SUBMITTED the last submitted one. Throws: EINVAL (flags, no handles),
 * ENOENT.
 */
export function syncobjQuery(file: DrmSyncobjTable, handles: readonly number[], flags = 0): number[] {
  const who = 'syncobjQuery';
  if (flags & ~DRM_SYNCOBJ_QUERY_FLAGS.LAST_SUBMITTED)
    throw err('EINVAL', `${who}: flags 0x${flags.toString(16)}`);
  return arrayFind(file, handles, who).map((s) => {
    const head = toDmaFenceChain(s.fence);
    drmSyncobjPut(s);
    if (!head) return 0;
    if (flags & DRM_SYNCOBJ_QUERY_FLAGS.LAST_SUBMITTED) return head.seqno;
    // The oldest unsignalled node of the head's context bounds what is complete; an unordered
    // point (new context) ends the walk, so the value never runs backwards.
    let last = head;
    for (const node of dmaFenceChainForEach(head)) {
      const c = toDmaFenceChain(node);
      if (!c || c.context !== head.context) break;
      last = c;
    }
    return dmaFenceIsSignaled(last) ? last.seqno : last.prevSeqno;
  });
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

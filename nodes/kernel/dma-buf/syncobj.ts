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
  dmaFenceAllocatePrivateStub,
  dmaFenceGet,
  dmaFenceGetStub,
  dmaFenceIsSignaled,
  dmaFencePut,
} from './dma-fence.ts';
import {
  dmaFenceChainFindSeqno,
  dmaFenceChainForEach,
  dmaFenceChainInit,
  toDmaFenceChain,
} from './dma-fence-chain.ts';
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
/** @internal shared with syncobj-wait.ts */
export interface WaitEntry {
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
/** @internal shared with syncobj-wait.ts */
export function findPoint(payload: DmaFence | null, point: number): DmaFence | null | undefined {
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
/** @internal shared with syncobj-wait.ts */
export function addWait(syncobj: DrmSyncobj, w: WaitEntry): void {
  if (w.fence) return;
  const found = findPoint(syncobj.fence, w.point);
  if (found === undefined) syncobj.waiters.push(w);
  else w.fence = found ?? dmaFenceGetStub();
}

/** @internal shared with syncobj-wait.ts */
export function removeWait(syncobj: DrmSyncobj, w: WaitEntry): void {
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

/** @internal shared with syncobj-wait.ts */
export function handleOf(file: DrmSyncobjTable, handle: number, who: string): DrmSyncobj {
  const s = drmSyncobjFind(file, handle);
  if (!s) throw err('ENOENT', `${who}: handle ${handle} is not a syncobj`);
  return s;
}

// drm_syncobj_array_find: references to every syncobj, or ENOENT naming the first bad handle.
/** @internal shared with syncobj-wait.ts */
export function arrayFind(file: DrmSyncobjTable, handles: readonly number[], who: string): DrmSyncobj[] {
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

/** @internal shared with syncobj-wait.ts */
export function checkPoints(points: readonly number[], n: number, who: string): void {
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
/** @internal shared with syncobj-wait.ts */
export function findFenceNow(file: DrmSyncobjTable, handle: number, point: number, who: string): DmaFence {
  const s = handleOf(file, handle, who);
  try {
    const found = findPoint(s.fence, point);
    if (found === undefined) throw err('EINVAL', `${who}: handle ${handle} has no fence for point ${point}`);
    return found ?? dmaFenceGetStub();
  } finally {
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

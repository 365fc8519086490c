/**
 * ib_umem_dmabuf (drivers/infiniband/core/umem_dmabuf.c, 2026 semantics; kernel-semantics §7.2):
 * an MR's memory taken from a dma-buf. Three ways to hold it:
 *
 *  - dynamic (ibUmemDmabufGet): a dynamic attach with the driver's invalidate callback; no
 *    mapping until ibUmemDmabufMapPages() under the resv lock, which also waits for the KERNEL
 *    fences (the exporter's move/clear). The driver zaps its translation in the callback and
 *    unmaps; the next access faults and maps again (ODP).
 *  - pinned (ibUmemDmabufGetPinned): dma_buf_pin + map once; the importer registers the
 *    dmaBufUnsupportedInvalidateMappings sentinel, so it is NOT revocable (rule 28) and an
 *    exporter that revokes (VFIO) refuses it at attach.
 *  - pinned revocable (ibUmemDmabufGetPinnedRevocableAndLock): pinned and mapped, with a working
 *    invalidate that revokes: the driver's revoke callback runs, then the umem is unmapped and
 *    unpinned for good (rule 27: for a pinned attachment an invalidate is a revoke).
 *
 * The mapping is trimmed to the page-aligned window [offset, offset + size) of the buffer and
 * kept as translation runs (DMA address, pages, bus flag) for the driver to program.
 *
 * Thread: kernel. Locks: as each function says; the invalidate callback runs with the resv lock
 * held by the exporter and must not take it.
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import type { Device } from '../device.ts';
import {
  type DmaBuf,
  type DmaBufAttachment,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachment,
  dmaBufPin,
  dmaBufPut,
  dmaBufUnmapAttachment,
  dmaBufUnpin,
  getDmaBuf,
} from '../dma-buf/dma-buf.ts';
import { dmaBufUnsupportedInvalidateMappings } from '../dma-buf/dma-buf-ops.ts';
import {
  DmaResvUsage,
  dmaResvAssertHeld,
  dmaResvLock,
  dmaResvUnlock,
  dmaResvWaitTimeout,
} from '../dma-buf/dma-resv.ts';
import { DmaDataDirection, PAGE_SIZE, type SgTable, sgTableWalk } from '../dma-buf/scatterlist.ts';

/** One translation run: `pages` pages at DMA address `addr` (a bus address when `bus`). */
export interface UmemRun {
  addr: number;
  pages: number;
  bus: boolean;
}

/** The driver's side of a dynamic or revocable umem (mlx5_ib_dmabuf_invalidate_cb and friends). */
export interface IbUmemDmabufOps {
  /** The exporter invalidated the mapping. Lock: resv held; must not take it; must not throw. */
  invalidate(umem: IbUmemDmabuf): void;
}

/** How long map_pages waits for KERNEL fences (the kernel waits forever; we never hang). */
export const ibUmemDmabufWait = { timeoutMs: 10_000 };

const BIDI = DmaDataDirection.BIDIRECTIONAL;

export class IbUmemDmabuf {
  readonly dmabuf: DmaBuf;
  readonly offset: number;
  readonly length: number;
  readonly writable: boolean;
  attach!: DmaBufAttachment;
  /** The importer's table while mapped. */
  sgt: SgTable | null = null;
  /** Translation of the window while mapped (trimmed sgt). */
  runs: UmemRun[] | null = null;
  pinned = false;
  revoked = false;
  /** The driver's MR (umem_dmabuf->private). */
  priv: unknown = null;
  ops: IbUmemDmabufOps | null = null;

  constructor(dmabuf: DmaBuf, offset: number, length: number, writable: boolean) {
    this.dmabuf = dmabuf;
    this.offset = offset;
    this.length = length;
    this.writable = writable;
  }

  /** First byte of the window within its first page. */
  get pageOffset(): number {
    return this.offset % PAGE_SIZE;
  }

  toString(): string {
    return `umem_dmabuf [${this.offset}, +${this.length}) of ${this.dmabuf}`;
  }
}

function checkWindow(fn: string, dmabuf: DmaBuf, offset: number, size: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0)
    throw err('EINVAL', `${fn}: offset ${offset} is not a byte offset`);
  if (!Number.isSafeInteger(size) || size <= 0) throw err('EINVAL', `${fn}: size ${size} covers no page`);
  if (offset + size > dmabuf.size) {
    throw err('EINVAL', `${fn}: [${offset}, +${size}) runs past the ${dmabuf.size}-byte ${dmabuf}`);
  }
}

/**
 * ib_umem_dmabuf_get: dynamic attach of `dev` to `dmabuf` (a new reference) for the window
 * [offset, offset + size); no mapping yet. Lock: not held.
 * Throws: EINVAL (ops missing, window outside the buffer or empty); attach errors.
 */
export async function ibUmemDmabufGet(
  dev: Device,
  offset: number,
  size: number,
  dmabuf: DmaBuf,
  writable: boolean,
  ops: IbUmemDmabufOps,
): Promise<IbUmemDmabuf> {
  if (!ops || typeof ops.invalidate !== 'function')
    throw err('EINVAL', 'ibUmemDmabufGet: ops.invalidate missing');
  checkWindow('ibUmemDmabufGet', dmabuf, offset, size);
  const umem = new IbUmemDmabuf(dmabuf, offset, size, writable);
  umem.ops = ops;
  getDmaBuf(dmabuf);
  try {
    umem.attach = await dmaBufDynamicAttach(
      dmabuf,
      dev,
      { allowPeer2peer: true, invalidateMappings: () => umem.ops?.invalidate(umem) },
      umem,
    );
  } catch (e) {
    dmaBufPut(dmabuf);
    throw e;
  }
  return umem;
}

/**
 * ib_umem_dmabuf_map_pages: map (if not mapped), trim to the window, then wait for the KERNEL
 * fences. Lock: resv held. Throws: EINVAL if revoked; ETIMEDOUT if a KERNEL fence does not
 * signal; exporter errors (ENODEV while the exporter is revoked).
 */
export async function ibUmemDmabufMapPages(umem: IbUmemDmabuf): Promise<void> {
  const resv = umem.dmabuf.resv;
  dmaResvAssertHeld(resv, 'ibUmemDmabufMapPages');
  if (umem.revoked) throw err('EINVAL', `ibUmemDmabufMapPages: ${umem} is revoked`);
  if (umem.sgt === null) {
    const sgt = await dmaBufMapAttachment(umem.attach, BIDI);
    umem.sgt = sgt;
    umem.runs = trim(umem, sgt);
  }
  // the exporter's move/clear must be done before the device touches the new pages (rule 21b).
  if ((await dmaResvWaitTimeout(resv, DmaResvUsage.KERNEL, ibUmemDmabufWait.timeoutMs)) === 0) {
    throw err('ETIMEDOUT', `ibUmemDmabufMapPages: KERNEL fences of ${umem.dmabuf} did not signal`);
  }
}

// The DMA runs covering the page-aligned window, from the importer's table (bus flag kept).
function trim(umem: IbUmemDmabuf, sgt: SgTable): UmemRun[] {
  const start = umem.offset - umem.pageOffset;
  const end = Math.ceil((umem.offset + umem.length) / PAGE_SIZE) * PAGE_SIZE;
  const runs: UmemRun[] = [];
  sgTableWalk(sgt, start, end - start, (addr, _at, n, bus) => {
    const last = runs[runs.length - 1];
    if (last && last.bus === bus && last.addr + last.pages * PAGE_SIZE === addr) last.pages += n / PAGE_SIZE;
    else runs.push({ addr, pages: n / PAGE_SIZE, bus });
    return 0;
  });
  return runs;
}

/**
 * ib_umem_dmabuf_unmap_pages: give the mapping back; no-op when not mapped. Lock: resv held.
 * The unmap itself happens before this returns its promise (callable from invalidate).
 */
export function ibUmemDmabufUnmapPages(umem: IbUmemDmabuf): Promise<void> {
  dmaResvAssertHeld(umem.dmabuf.resv, 'ibUmemDmabufUnmapPages');
  const sgt = umem.sgt;
  if (sgt === null) return Promise.resolve();
  umem.sgt = null;
  umem.runs = null;
  return dmaBufUnmapAttachment(umem.attach, sgt, BIDI);
}

/**
 * ib_umem_dmabuf_get_pinned: attach with the unsupported-invalidate sentinel (not revocable),
 * then pin and map under the lock. Lock: not held. Throws: as ibUmemDmabufGet, plus pin/map
 * errors (EBUSY: the exporter cannot pin where the device reaches).
 */
export async function ibUmemDmabufGetPinned(
  dev: Device,
  offset: number,
  size: number,
  dmabuf: DmaBuf,
  writable: boolean,
): Promise<IbUmemDmabuf> {
  checkWindow('ibUmemDmabufGetPinned', dmabuf, offset, size);
  const umem = new IbUmemDmabuf(dmabuf, offset, size, writable);
  getDmaBuf(dmabuf);
  try {
    umem.attach = await dmaBufDynamicAttach(
      dmabuf,
      dev,
      { allowPeer2peer: true, invalidateMappings: dmaBufUnsupportedInvalidateMappings },
      umem,
    );
  } catch (e) {
    dmaBufPut(dmabuf);
    throw e;
  }
  await pinAndMap(umem);
  dmaResvUnlock(dmabuf.resv);
  return umem;
}

/**
 * ib_umem_dmabuf_get_pinned_revocable_and_lock (2026): pinned and mapped, with a working
 * invalidate; returns with the resv lock HELD so the driver can install its revoke callback
 * (ibUmemDmabufSetRevokeLocked) before any invalidate can run. The caller unlocks.
 */
export async function ibUmemDmabufGetPinnedRevocableAndLock(
  dev: Device,
  offset: number,
  size: number,
  dmabuf: DmaBuf,
  writable: boolean,
): Promise<IbUmemDmabuf> {
  const umem = await ibUmemDmabufGet(dev, offset, size, dmabuf, writable, {
    // until the driver installs its callback, a revoke only tears the umem down.
    invalidate: (u) => void ibUmemDmabufRevoke(u),
  });
  await pinAndMap(umem);
  return umem;
}

/** ib_umem_dmabuf_set_revoke_locked: the driver's revoke callback. Lock: resv held. */
export function ibUmemDmabufSetRevokeLocked(umem: IbUmemDmabuf, ops: IbUmemDmabufOps): void {
  dmaResvAssertHeld(umem.dmabuf.resv, 'ibUmemDmabufSetRevokeLocked');
  umem.ops = ops;
}

// Lock, pin, map; on failure undo everything (including the attach) and rethrow. Returns locked.
async function pinAndMap(umem: IbUmemDmabuf): Promise<void> {
  const resv = umem.dmabuf.resv;
  await dmaResvLock(resv, null);
  try {
    await dmaBufPin(umem.attach);
    umem.pinned = true;
    await ibUmemDmabufMapPages(umem);
  } catch (e) {
    await ibUmemDmabufRevoke(umem);
    dmaResvUnlock(resv);
    await dmaBufDetach(umem.dmabuf, umem.attach);
    dmaBufPut(umem.dmabuf);
    throw e;
  }
}

/**
 * ib_umem_dmabuf_revoke: unmap, unpin if pinned, mark revoked (idempotent). Lock: resv held.
 * All state changes happen before the promise is returned, so invalidate callbacks may call it.
 */
export function ibUmemDmabufRevoke(umem: IbUmemDmabuf): Promise<void> {
  dmaResvAssertHeld(umem.dmabuf.resv, 'ibUmemDmabufRevoke');
  if (umem.revoked) return Promise.resolve();
  umem.revoked = true;
  const work = [ibUmemDmabufUnmapPages(umem)];
  if (umem.pinned) {
    umem.pinned = false;
    work.push(dmaBufUnpin(umem.attach));
  }
  trace('rdmaUmemRevoke', () => ({ umem: String(umem) }));
  return Promise.all(work).then(() => undefined);
}

/** ib_umem_dmabuf_release: revoke under the lock, detach, drop the reference. Lock: not held. */
export async function ibUmemDmabufRelease(umem: IbUmemDmabuf): Promise<void> {
  const resv = umem.dmabuf.resv;
  await dmaResvLock(resv, null);
  try {
    umem.ops = null;
    await ibUmemDmabufRevoke(umem);
  } finally {
    dmaResvUnlock(resv);
  }
  await dmaBufDetach(umem.dmabuf, umem.attach);
  dmaBufPut(umem.dmabuf);
}

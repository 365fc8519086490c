/**
 * GPU buffer objects (GEM objects backed the TTM way): a size, a reservation object, a
 * placement (VRAM or system memory) with its pages, and the mapping of those pages in the GPU
 * VM (see DOC: GPU address space in gpu.ts). Creation and moves are in gpu-placement.ts.
 *
 * DOC: lifetime
 * gpuBoCreate() returns one reference (the creator's handle); gpuBoExport() takes another for
 * the dma-buf, dropped by its release. The last gpuBoPut() frees the memory only after every
 * fence on the object has signalled (BOOKKEEP included, rule 25); a fence that never signals
 * leaves the memory allocated (Gpu.leaked) rather than letting a device write into reused
 * pages. gpuRemove() marks every object `gone`: no more jobs, maps or attachments (ENODEV).
 *
 * DOC: pinning
 * A pinned object never moves and is never evicted (EBUSY / skipped, rule 11). Two kinds of
 * pin count: the driver's own (gpuBoPin, e.g. for scanout or a long-lived kernel user) and the
 * dma-buf core's (dmaBufPin by a dynamic importer, or pin-on-map of a static one).
 *
 * Thread: kernel (main thread).
 */
import { err } from '../../../common/errno.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { type DmaBuf, dmaBufIsPinned } from '../dma-buf/dma-buf.ts';
import { DmaFenceTimeline } from '../dma-buf/dma-fence.ts';
import {
  DmaResv,
  DmaResvUsage,
  dmaResvLock,
  dmaResvUnlock,
  dmaResvWaitTimeout,
} from '../dma-buf/dma-resv.ts';
import type { DmaSegment } from '../iommu/dma-iommu.ts';
import type { PageAllocator } from '../mm/page-alloc.ts';
import type { PageList } from '../mm/page-list.ts';
import type { Gpu } from './gpu.ts';

/** Where a buffer object's pages live (TTM_PL_VRAM, TTM_PL_TT). */
export const GpuPlacement = { VRAM: 'vram', SYSTEM: 'system' } as const;
export type GpuPlacement = (typeof GpuPlacement)[keyof typeof GpuPlacement];

export class GpuBo {
  readonly gpu: Gpu;
  readonly id: number;
  /** Bytes, a multiple of PAGE_SIZE; never changes. */
  readonly size: number;
  readonly resv: DmaResv;
  /** KERNEL fences of this object's moves (one context per object: they signal in order). */
  readonly moveTimeline: DmaFenceTimeline;
  placement: GpuPlacement;
  pages: PageList;
  /** The current placement's mapping in the GPU VM: one IOVA range. */
  vm: DmaSegment[];
  refcount = 1;
  /** Driver pins (gpuBoPin); dma-buf pins are counted by the core. */
  pinCount = 0;
  /** The PRIME export, while one exists. */
  dmabuf: DmaBuf | null = null;
  moves = 0;
  /** Last reference dropped. */
  freed = false;
  /** The GPU was removed. */
  gone = false;
  private memReleased = false;

  constructor(gpu: Gpu, placement: GpuPlacement, pages: PageList, vm: DmaSegment[]) {
    this.gpu = gpu;
    this.id = gpu.nextBoId++;
    this.size = pages.size;
    this.placement = placement;
    this.pages = pages;
    this.vm = vm;
    this.resv = new DmaResv(`${gpu.name}:bo${this.id}`);
    this.moveTimeline = new DmaFenceTimeline(gpu.name, `${gpu.name}.bo${this.id}.move`);
  }

  /** GPU VA of byte 0 (what descriptors carry). */
  get gpuVa(): number {
    return this.vm[0].addr;
  }

  /** Internal: give the memory back once (release and removal both may ask). */
  _releaseMemory(): boolean {
    if (this.memReleased) return false;
    this.memReleased = true;
    gpuVmUnmap(this.gpu, this.vm);
    this.pages.free();
    return true;
  }

  toString(): string {
    return `${this.gpu.name} bo${this.id}`;
  }
}

/** The page allocator of `placement` on `gpu`. */
export function gpuPlacementAlloc(gpu: Gpu, placement: GpuPlacement): PageAllocator {
  return placement === GpuPlacement.VRAM ? gpu.vramAlloc : gpu.kernel.ramAlloc;
}

/**
 * Map `pages` into the GPU VM (read + write) as one IOVA range.
 * Called by: creation and moves. Throws: ENOSPC (IOVA space), EINVAL if the GPU's domain is not
 * a DMA-API domain (identity domains would give one segment per run).
 */
export function gpuVmMap(gpu: Gpu, pages: PageList): DmaSegment[] {
  const segs = gpu.dev.dma!.mapSg(pages.physSegments(gpu.kernel.physMap), { read: true, write: true });
  if (segs.length !== 1) {
    gpu.dev.dma!.unmapSg(segs);
    throw err('EINVAL', `${gpu.name}: GPU VM mapping of ${pages.size} bytes is not one IOVA range`);
  }
  return segs;
}

/** Unmap a range gpuVmMap() returned. Tolerates a domain already torn down (kernel close). */
export function gpuVmUnmap(gpu: Gpu, vm: DmaSegment[]): void {
  try {
    gpu.dev.dma!.unmapSg(vm);
  } catch {
    // the kernel freed the GPU's domain first: nothing left to unmap.
  }
}

/** Is `bo` pinned by the driver or through its dma-buf (rule 11)? */
export function gpuBoIsPinned(bo: GpuBo): boolean {
  return bo.pinCount > 0 || (bo.dmabuf !== null && dmaBufIsPinned(bo.dmabuf));
}

/** Throw unless `bo` is a live object of a live GPU. ENODEV after removal; EINVAL otherwise. */
export function gpuBoCheck(fn: string, bo: GpuBo): void {
  if (!(bo instanceof GpuBo)) throw err('EINVAL', `${fn}: bo is not a GPU buffer object`);
  if (bo.freed) throw err('EINVAL', `${fn}: ${bo} was freed`);
  if (bo.gone) throw err('ENODEV', `${fn}: ${bo.gpu.name} was removed`);
}

/** drm_gem_object_get: take a reference. */
export function gpuBoGet(bo: GpuBo): GpuBo {
  if (!(bo instanceof GpuBo) || bo.freed) throw err('EINVAL', 'gpuBoGet: bo is not a live buffer object');
  bo.refcount++;
  return bo;
}

/**
 * drm_gem_object_put: drop a reference; the last one releases the memory after every fence on
 * the object has signalled (DOC: lifetime). Called by: handle owners, the dma-buf release.
 * Throws: EINVAL on a freed object.
 */
export function gpuBoPut(bo: GpuBo): void {
  if (!(bo instanceof GpuBo) || bo.freed) throw err('EINVAL', 'gpuBoPut: bo is not a live buffer object');
  if (--bo.refcount > 0) return;
  bo.freed = true;
  bo.gpu.lru.delete(bo.id);
  gpuBoReleaseWhenIdle(bo);
}

/**
 * Give `bo`'s memory back once every fence on it has signalled (or never, counted in
 * Gpu.leaked, if one does not within the GPU's fence timeout). Returns the release promise,
 * tracked for VRAM so that eviction can wait for it. Called by: gpuBoPut(), gpuRemove().
 */
export function gpuBoReleaseWhenIdle(bo: GpuBo): Promise<void> {
  const gpu = bo.gpu;
  const pages = bo.pages.size / PAGE_SIZE;
  const p = dmaResvWaitTimeout(bo.resv, DmaResvUsage.BOOKKEEP, gpu.fenceTimeoutMs).then((left) => {
    if (left === 0) gpu.leaked++;
    else bo._releaseMemory();
  });
  if (bo.placement === GpuPlacement.VRAM) gpu.trackFreeing(p, pages);
  return p;
}

/**
 * Pin `bo` where it is (ttm_bo_pin): it will not move until gpuBoUnpin. Resolves once pending
 * moves are done (rule 10). Lock: takes the resv lock. Throws: ENODEV/EINVAL (gpuBoCheck),
 * ETIMEDOUT if a move never finishes (the pin is dropped again).
 */
export async function gpuBoPin(bo: GpuBo): Promise<void> {
  gpuBoCheck('gpuBoPin', bo);
  await dmaResvLock(bo.resv, null);
  bo.pinCount++;
  dmaResvUnlock(bo.resv);
  if ((await dmaResvWaitTimeout(bo.resv, DmaResvUsage.KERNEL, bo.gpu.fenceTimeoutMs)) === 0) {
    bo.pinCount--;
    throw err('ETIMEDOUT', `gpuBoPin: a move of ${bo} did not finish`);
  }
}

/** Undo one gpuBoPin. Throws: EINVAL if not pinned by the driver. */
export function gpuBoUnpin(bo: GpuBo): void {
  if (!(bo instanceof GpuBo) || bo.pinCount === 0) throw err('EINVAL', `gpuBoUnpin: ${bo} is not pinned`);
  bo.pinCount--;
}

/**
 * CPU read of `length` bytes at `offset`, after the implicit writers (KERNEL and WRITE fences:
 * moves and GPU writes) are done, like begin_cpu_access(DMA_FROM_DEVICE).
 * Throws: EINVAL (range, freed), ENODEV, ETIMEDOUT.
 */
export async function gpuBoCpuRead(bo: GpuBo, offset: number, length: number): Promise<Uint8Array> {
  gpuBoCheck('gpuBoCpuRead', bo);
  if (!Number.isSafeInteger(length) || length < 0) throw err('EINVAL', `gpuBoCpuRead: length ${length}`);
  if ((await dmaResvWaitTimeout(bo.resv, DmaResvUsage.WRITE, bo.gpu.fenceTimeoutMs)) === 0)
    throw err('ETIMEDOUT', `gpuBoCpuRead: writers of ${bo} did not finish`);
  const out = new Uint8Array(length);
  bo.pages.read(offset, out);
  return out;
}

/**
 * CPU write of `data` at `offset`, after every implicit reader and writer is done, like
 * begin_cpu_access(DMA_TO_DEVICE). Throws: as gpuBoCpuRead.
 */
export async function gpuBoCpuWrite(bo: GpuBo, offset: number, data: Uint8Array): Promise<void> {
  gpuBoCheck('gpuBoCpuWrite', bo);
  if (!(data instanceof Uint8Array)) throw err('EINVAL', 'gpuBoCpuWrite: data must be a Uint8Array');
  if ((await dmaResvWaitTimeout(bo.resv, DmaResvUsage.READ, bo.gpu.fenceTimeoutMs)) === 0)
    throw err('ETIMEDOUT', `gpuBoCpuWrite: users of ${bo} did not finish`);
  bo.pages.write(offset, data);
}

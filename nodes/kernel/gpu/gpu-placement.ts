/**
 * Where GPU buffer objects live (the TTM half of the driver): creation, moves between VRAM and
 * system memory on the GPU's copy engine, eviction under memory pressure and on demand.
 *
 * DOC: move (the exporter side of invalidate_mappings; protocol in dma-buf/dma-buf-move.ts)
 *  1. lock the object; refuse EBUSY if pinned (rule 11);
 *  2. allocate the new pages (not zeroed: the copy overwrites them) and map them in the GPU VM;
 *  3. switch the object to them, invalidate every dynamic importer of its dma-buf, publish the
 *     move's KERNEL fence; unlock. Jobs and importers that come later wait for that fence;
 *  4. once every fence that was on the object has signalled (BOOKKEEP included), the copy
 *     engine copies old -> new on the scheduler's KERNEL entity; then the old pages leave the
 *     GPU VM and go back to their allocator, and only then the KERNEL fence signals (rule 25).
 * A failed copy (the GPU died) zeroes the new pages, so nobody sees a previous owner's bytes
 * (rule 10), and signals the KERNEL fence with the error.
 *
 * DOC: eviction under pressure
 * A VRAM allocation that does not fit evicts unpinned VRAM objects to system memory, least
 * recently used first (objects are "used" when created and when a job touches them), until
 * the free pages plus the pages that evictions in flight will give back cover it; then it waits
 * for those releases. Victims are locked with trylock (an object whose lock is held is skipped,
 * as TTM skips busy objects outside a ww transaction), so eviction never deadlocks. Nothing
 * left to evict: ENOMEM.
 *
 * Thread: kernel (main thread).
 */
import { Errno, err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { GPU_MAX_LEN, GpuOp } from '../../fabric/gpu-layout.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { dmaBufMoveBeginLocked, dmaBufMoveRun } from '../dma-buf/dma-buf-move.ts';
import type { DmaFence } from '../dma-buf/dma-fence.ts';
import { dmaResvAssertHeld, dmaResvLock, dmaResvTrylock, dmaResvUnlock } from '../dma-buf/dma-resv.ts';
import type { DeviceCmd } from '../drivers/device-host.ts';
import { PageList } from '../mm/page-list.ts';
import type { Gpu } from './gpu.ts';
import {
  GpuBo,
  GpuPlacement,
  gpuBoCheck,
  gpuBoIsPinned,
  gpuPlacementAlloc,
  gpuVmMap,
  gpuVmUnmap,
} from './gpu-bo.ts';
import { GpuEntity } from './gpu-sched.ts';

/**
 * Longest physically contiguous run a BO's pages come in. VRAM: 2 MiB, the block amdgpu's VRAM
 * manager asks drm_buddy for when a BO is not CONTIGUOUS (pages_per_block). System memory: 64 KiB
 * runs with holes, as a fragmented host hands out pages.
 */
function maxRun(p: GpuPlacement): number {
  return p === GpuPlacement.VRAM ? 512 : 16;
}

function checkPlacement(fn: string, p: GpuPlacement): void {
  if (p !== GpuPlacement.VRAM && p !== GpuPlacement.SYSTEM)
    throw err('EINVAL', `${fn}: placement ${JSON.stringify(p)} is not a GpuPlacement`);
}

/**
 * Create a zeroed buffer object of `size` bytes (rounded up to pages) in `placement`, evicting
 * least recently used VRAM objects if VRAM is short (DOC: eviction under pressure).
 * Called by: uapi (GEM create), other drivers, tests. Lock: none held; takes victims' locks.
 * Throws: EINVAL naming size or placement; ENOMEM naming the memory; ENODEV after removal.
 */
export async function gpuBoCreate(
  gpu: Gpu,
  size: number,
  placement: GpuPlacement = GpuPlacement.VRAM,
): Promise<GpuBo> {
  if (gpu.removed) throw err('ENODEV', `gpuBoCreate: ${gpu.name} was removed`);
  if (!Number.isSafeInteger(size) || size <= 0) throw err('EINVAL', `gpuBoCreate: size ${size}`);
  checkPlacement('gpuBoCreate', placement);
  const pages = Math.ceil(size / PAGE_SIZE);
  if (placement === GpuPlacement.VRAM) await gpuEvictForSpace(gpu, pages);
  // Zeroed (rule 10): the pages may have belonged to an evicted object a moment ago.
  const list = PageList.allocate(gpuPlacementAlloc(gpu, placement), pages * PAGE_SIZE, {
    maxRun: maxRun(placement),
  });
  let vm: ReturnType<typeof gpuVmMap>;
  try {
    vm = gpuVmMap(gpu, list);
  } catch (e) {
    list.free();
    throw e;
  }
  const bo = new GpuBo(gpu, placement, list, vm);
  gpu.touch(bo);
  trace('gpuBoCreate', () => ({ gpu: gpu.name, bo: bo.id, size: bo.size, placement }));
  return bo;
}

/**
 * Move `bo` to `target` (DOC: move, steps 1-3; step 4 runs on its own). Returns the move's
 * KERNEL fence, or null if `bo` is already there.
 * Called by: gpuBoMove(), eviction, the PRIME exporter's pin/map. Lock: resv held (EPERM).
 * Throws: EBUSY (pinned), ENOMEM (no room in `target`), ENODEV (removed), EINVAL.
 */
export function gpuBoMoveLocked(bo: GpuBo, target: GpuPlacement): DmaFence | null {
  dmaResvAssertHeld(bo.resv, 'gpuBoMoveLocked');
  gpuBoCheck('gpuBoMoveLocked', bo);
  checkPlacement('gpuBoMoveLocked', target);
  if (bo.placement === target) return null;
  if (gpuBoIsPinned(bo)) throw err('EBUSY', `gpuBoMoveLocked: ${bo} is pinned (rule 11)`);
  const gpu = bo.gpu;
  const next = PageList.allocate(gpuPlacementAlloc(gpu, target), bo.size, {
    maxRun: maxRun(target),
    zero: false,
  });
  let nextVm: ReturnType<typeof gpuVmMap>;
  try {
    nextVm = gpuVmMap(gpu, next);
  } catch (e) {
    next.free();
    throw e;
  }
  const old = { placement: bo.placement, pages: bo.pages, vm: bo.vm };
  const move = dmaBufMoveBeginLocked(bo.resv, bo.dmabuf, bo.moveTimeline, () => {
    bo.pages = next;
    bo.vm = nextVm;
    bo.placement = target;
    bo.moves++;
  });
  trace('gpuMove', () => ({ bo: String(bo), from: old.placement, to: target, deps: move.deps.length }));
  const run = dmaBufMoveRun(move, bo.moveTimeline, {
    timeoutMs: gpu.fenceTimeoutMs,
    copy: async () => {
      const status = await gpuCopyEngine(gpu, old.vm[0].addr, nextVm[0].addr, bo.size);
      if (status < 0) next.fill(0, next.size, 0);
      return status;
    },
    release: () => {
      gpuVmUnmap(gpu, old.vm);
      old.pages.free();
    },
    leak: () => {
      gpu.leaked++;
    },
  });
  if (old.placement === GpuPlacement.VRAM) gpu.trackFreeing(run, old.pages.size / PAGE_SIZE);
  return move.fence;
}

// Copy `size` bytes between two GPU VAs on the copy engine (KERNEL entity, no dependencies:
// the move protocol waited for them). Resolves 0 or the copy's negative errno.
async function gpuCopyEngine(gpu: Gpu, src: number, dst: number, size: number): Promise<number> {
  const cmds: DeviceCmd[] = [];
  for (let off = 0; off < size; off += GPU_MAX_LEN) {
    cmds.push({ opcode: GpuOp.COPY, src: src + off, dst: dst + off, len: Math.min(GPU_MAX_LEN, size - off) });
  }
  try {
    return (await gpu.sched.push(GpuEntity.KERNEL, cmds).done).status;
  } catch {
    return -Errno.ENODEV;
  }
}

/**
 * Move `bo` to `target`, making room in VRAM first if needed. Resolves with the KERNEL fence
 * (null if already there) once the move is published, not once it is done.
 * Lock: not held; takes the object's lock (EDEADLK if the calling task holds it).
 * Throws: as gpuBoMoveLocked.
 */
export async function gpuBoMove(bo: GpuBo, target: GpuPlacement): Promise<DmaFence | null> {
  gpuBoCheck('gpuBoMove', bo);
  checkPlacement('gpuBoMove', target);
  if (target === GpuPlacement.VRAM && bo.placement !== target) {
    await gpuEvictForSpace(bo.gpu, bo.size / PAGE_SIZE, bo);
  }
  await dmaResvLock(bo.resv, null);
  try {
    return gpuBoMoveLocked(bo, target);
  } finally {
    dmaResvUnlock(bo.resv);
  }
}

/**
 * Evict `bo` to system memory on demand (the driver's evict knob). Resolves with the KERNEL
 * fence, or null if it already is in system memory. Throws: EBUSY if pinned; as gpuBoMove.
 */
export async function gpuBoEvict(bo: GpuBo): Promise<DmaFence | null> {
  const f = await gpuBoMove(bo, GpuPlacement.SYSTEM);
  if (f !== null) bo.gpu.evictions++;
  return f;
}

/**
 * Make `pages` VRAM pages free (DOC: eviction under pressure); `keep` is never a victim.
 * Called by: gpuBoCreate(), gpuBoMove(). Lock: must not hold a victim's lock (it is skipped).
 * Throws: ENOMEM naming VRAM when evicting everything evictable does not make room in time.
 */
export async function gpuEvictForSpace(gpu: Gpu, pages: number, keep?: GpuBo): Promise<void> {
  const alloc = gpu.vramAlloc;
  if (pages > gpu.vram.pages) {
    throw err('ENOMEM', `gpuEvictForSpace: ${pages} pages requested, ${gpu.name} VRAM has ${gpu.vram.pages}`);
  }
  const deadline = performance.now() + 2 * gpu.fenceTimeoutMs;
  for (;;) {
    if (alloc.freePages >= pages) return;
    let expected = alloc.freePages + gpu.vramFreeingPages;
    for (const victim of [...gpu.lru.values()]) {
      if (expected >= pages) break;
      if (victim === keep || victim.placement !== GpuPlacement.VRAM || gpuBoIsPinned(victim)) continue;
      if (!dmaResvTrylock(victim.resv)) continue;
      try {
        if (gpuBoMoveLocked(victim, GpuPlacement.SYSTEM) !== null) {
          gpu.evictions++;
          expected += victim.size / PAGE_SIZE;
          trace('gpuEvict', () => ({ bo: String(victim), pages: victim.size / PAGE_SIZE, need: pages }));
        }
      } catch {
        // no system memory for it, or it just got pinned: try the next one
      } finally {
        dmaResvUnlock(victim.resv);
      }
    }
    const left = deadline - performance.now();
    if (expected < pages || gpu.freeing.size === 0 || left <= 0) {
      throw err(
        'ENOMEM',
        `gpuEvictForSpace: ${gpu.name} VRAM has ${alloc.freePages} free pages, ${pages} needed, nothing more to evict`,
      );
    }
    // Wait for one release in flight (they free pages only after their fences), then recount.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      ...gpu.freeing.keys(),
      new Promise((r) => {
        timer = setTimeout(r, left);
      }),
    ]);
    clearTimeout(timer);
  }
}

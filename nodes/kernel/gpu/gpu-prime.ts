/**
 * PRIME export of GPU buffer objects (drm_gem_prime_export with amdgpu/xe's dma-buf ops): a
 * dynamic exporter (it has pin/unpin) sharing the object's dma_resv, whose buffer moves under
 * its importers (gpu-placement.ts: lock, invalidate, KERNEL fence, copy engine).
 *
 * DOC: placement decisions (kernel-semantics §1.4 matrix, §3.2 rule 9)
 *  - attach: ask P2PDMA how the importer reaches VRAM (gpuP2pMapType); NOT_SUPPORTED clears
 *    attach.peer2peer (rule 7). Static importers never have it;
 *  - pin: VRAM only if every attachment is peer2peer; otherwise migrate to system memory first
 *    (rule 12). A buffer already pinned in VRAM cannot move: EBUSY for an attachment that
 *    cannot reach it. Returns only when pending moves are done (rule 10);
 *  - map: system memory -> the pages through the importer's DMA API (IOVAs). VRAM and a
 *    peer2peer attachment -> BUS_ADDR: PCI bus addresses, `bus: true`, no IOMMU and no page
 *    side; THRU_HOST_BRIDGE: the VRAM BAR mapped through the importer's IOMMU like memory
 *    (DMA_ATTR_MMIO; rule 8). VRAM and a non-peer2peer attachment -> migrate to system memory
 *    (every dynamic importer is invalidated), or EBUSY if pinned;
 *  - release: drops the export's reference on the object, whose memory then goes once its
 *    fences have signalled.
 * The core waits for the KERNEL fence for static importers (pin-on-map); dynamic importers
 * wait for it themselves (rule 21).
 *
 * Thread: kernel (main thread). Callbacks follow the lock rules of dma-buf-ops.ts.
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { P2pdmaMapType, p2pdmaAddressing } from '../../../topology/p2pdma.ts';
import { type DmaBuf, type DmaBufAttachment, dmaBufExport, getDmaBuf } from '../dma-buf/dma-buf.ts';
import type { DmaBufOps } from '../dma-buf/dma-buf-ops.ts';
import { DmaResvUsage, dmaResvWaitTimeout } from '../dma-buf/dma-resv.ts';
import { mapPageList, pageListView, unmapPageList } from '../dma-buf/heaps/system-heap.ts';
import { PAGE_SIZE, type SgTable, sgTableCreate } from '../dma-buf/scatterlist.ts';
import { gpuP2pMapType } from './gpu.ts';
import { GpuBo, GpuPlacement, gpuBoCheck, gpuBoGet, gpuBoIsPinned, gpuBoPut } from './gpu-bo.ts';
import { gpuBoMoveLocked } from './gpu-placement.ts';

const boOf = (dmabuf: DmaBuf): GpuBo => dmabuf.priv as GpuBo;

/**
 * Export `bo` as a dma-buf (one per object: a second export returns the same buffer with a new
 * reference, as drm_gem_prime_export caches obj->dma_buf). The dma-buf holds a reference on
 * the object until its release. Called by: uapi (PRIME handle-to-fd), other drivers.
 * Lock: not held. Throws: EINVAL/ENODEV (gpuBoCheck).
 */
export function gpuBoExport(bo: GpuBo): DmaBuf {
  gpuBoCheck('gpuBoExport', bo);
  if (bo.dmabuf !== null) return getDmaBuf(bo.dmabuf);
  const dmabuf = dmaBufExport({
    expName: 'gpu',
    owner: bo.gpu.name,
    ops: gpuDmaBufOps,
    size: bo.size,
    priv: gpuBoGet(bo),
    resv: bo.resv,
  });
  bo.dmabuf = dmabuf;
  return dmabuf;
}

/** True if `dmabuf` is a GPU PRIME export; its object is then `dmabuf.priv`. */
export function gpuDmaBufIsGpu(dmabuf: DmaBuf): boolean {
  return dmabuf.ops === gpuDmaBufOps && dmabuf.priv instanceof GpuBo;
}

// Can every attachment reach VRAM? (rule 12: otherwise pin in system memory)
function allPeer2peer(dmabuf: DmaBuf): boolean {
  return dmabuf.attachments.every((a) => a.peer2peer);
}

// BUS_ADDR (rule 8): DMA address = bus address of each VRAM run, no IOVA, no page side.
function busTable(bo: GpuBo, who: string): SgTable {
  const physMap = bo.gpu.kernel.physMap;
  const entries = bo.pages.physSegments(physMap).map((s) => {
    const busOffset = physMap.resolve(s.addr)?.window.busOffset ?? 0;
    const a = p2pdmaAddressing(P2pdmaMapType.BUS_ADDR, BigInt(s.addr), BigInt(busOffset));
    if (a.kind !== 'bus-addr') throw err('EINVAL', `${who}: no bus address for ${bo}`);
    return { dmaAddress: Number(a.busAddr), dmaLength: s.length, bus: true as const };
  });
  return sgTableCreate(entries, [], who);
}

const gpuDmaBufOps: DmaBufOps = {
  attach(dmabuf, attach) {
    const bo = boOf(dmabuf);
    if (bo.gone) throw err('ENODEV', `gpu_dma_buf_attach: ${bo.gpu.name} was removed`);
    const mapType = gpuP2pMapType(bo.gpu, attach.dev);
    attach.priv = mapType;
    if (mapType === P2pdmaMapType.NOT_SUPPORTED) attach.peer2peer = false;
    trace('gpuPrimeAttach', () => ({
      bo: String(bo),
      dev: attach.dev.name,
      mapType,
      peer2peer: attach.peer2peer,
    }));
  },

  async pin(attach) {
    const bo = boOf(attach.dmabuf);
    if (bo.gone) throw err('ENODEV', `gpu_dma_buf_pin: ${bo.gpu.name} was removed`);
    if (bo.placement === GpuPlacement.VRAM && !allPeer2peer(attach.dmabuf) && !gpuBoIsPinned(bo)) {
      gpuBoMoveLocked(bo, GpuPlacement.SYSTEM);
    } else if (bo.placement === GpuPlacement.VRAM && !attach.peer2peer) {
      throw err('EBUSY', `gpu_dma_buf_pin: ${bo} is pinned in VRAM, unreachable by ${attach.dev.name}`);
    }
    // Rule 10: memory usable when pin returns: wait for the move just queued, or an earlier one.
    if ((await dmaResvWaitTimeout(bo.resv, DmaResvUsage.KERNEL, bo.gpu.fenceTimeoutMs)) === 0) {
      throw err('ETIMEDOUT', `gpu_dma_buf_pin: a move of ${bo} did not finish`);
    }
  },

  unpin() {},

  mapDmaBuf(attach: DmaBufAttachment, dir): SgTable {
    const bo = boOf(attach.dmabuf);
    if (bo.gone) throw err('ENODEV', `gpu_dma_buf_map: ${bo.gpu.name} was removed`);
    if (bo.placement === GpuPlacement.VRAM && !attach.peer2peer) {
      if (gpuBoIsPinned(bo)) {
        throw err('EBUSY', `gpu_dma_buf_map: ${bo} is pinned in VRAM, unreachable by ${attach.dev.name}`);
      }
      gpuBoMoveLocked(bo, GpuPlacement.SYSTEM);
    }
    if (bo.placement === GpuPlacement.VRAM && attach.priv === P2pdmaMapType.BUS_ADDR) {
      return busTable(bo, 'gpu_dma_buf_map');
    }
    return mapPageList(bo.pages, bo.gpu.kernel.physMap, attach.dev, dir, 'gpu_dma_buf_map');
  },

  unmapDmaBuf(attach, sgt) {
    // Bus addresses were never mapped anywhere; everything else went through the DMA API.
    if (!sgt.entries.some((e) => e.bus)) unmapPageList(attach.dev, sgt);
  },

  release(dmabuf) {
    const bo = boOf(dmabuf);
    bo.dmabuf = null;
    gpuBoPut(bo);
  },

  mmap(dmabuf, pgoff, pages) {
    const bo = boOf(dmabuf);
    return pageListView(() => bo.pages, pgoff * PAGE_SIZE, pages * PAGE_SIZE);
  },

  vmap(dmabuf) {
    const bo = boOf(dmabuf);
    return pageListView(() => bo.pages, 0, dmabuf.size);
  },
};

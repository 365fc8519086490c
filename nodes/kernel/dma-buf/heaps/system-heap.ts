/**
 * The "system" dma-heap (drivers/dma-buf/heaps/system_heap.c): host RAM pages, scattered, a
 * static exporter (no pin: pages never move), mapped for each attachment through the importing
 * device's DMA API. Also the udmabuf-like exporter tests and the demo use.
 */
import { err } from '../../../../common/errno.ts';
import type { Device } from '../../device.ts';
import type { PageAllocator } from '../../mm/page-alloc.ts';
import { PageList } from '../../mm/page-list.ts';
import type { PhysMap } from '../../mm/phys-map.ts';
import { type DmaBuf, dmaBufExport } from '../dma-buf.ts';
import type { DmaBufCpuView, DmaBufOps } from '../dma-buf-ops.ts';
import {
  type DmaDataDirection,
  dmaDirAccess,
  PAGE_SIZE,
  type SgTable,
  sgTableCreate,
} from '../scatterlist.ts';
import type { DmaHeapOps } from './dma-heap.ts';

/** Exporter data of a system-heap buffer. */
export interface SystemHeapBuffer {
  pages: PageList;
  physMap: PhysMap;
}

/** CPU view of `length` bytes at `base` of a page list. */
export function pageListView(pages: () => PageList, base: number, length: number): DmaBufCpuView {
  const check = (fn: string, offset: number, n: number) => {
    if (!Number.isInteger(offset) || offset < 0 || offset + n > length) {
      throw err('EINVAL', `${fn}: [${offset}, +${n}) outside the ${length}-byte view`);
    }
  };
  return {
    length,
    read(offset, dst) {
      check('read', offset, dst.length);
      pages().read(base + offset, dst);
    },
    write(offset, src) {
      check('write', offset, src.length);
      pages().write(base + offset, src);
    },
  };
}

/**
 * Map a page list for attach.dev (dma_map_sgtable): physical runs through the device's DMA API.
 * Throws: ENODEV if the device cannot DMA; the DMA API's errors (ENOSPC).
 */
export function mapPageList(
  pages: PageList,
  physMap: PhysMap,
  dev: Device,
  dir: DmaDataDirection,
  who: string,
): SgTable {
  if (!dev.dma) throw err('ENODEV', `${who}: device ${dev.name} cannot DMA`);
  const phys = pages.physSegments(physMap);
  const mapped = dev.dma.mapSg(phys, dmaDirAccess(dir));
  return sgTableCreate(
    mapped.map((s) => ({ dmaAddress: s.addr, dmaLength: s.length })),
    phys.map((s) => ({ phys: s.addr, length: s.length })),
    who,
  );
}

/** dma_unmap_sgtable for a table mapPageList built. */
export function unmapPageList(dev: Device, sgt: SgTable): void {
  dev.dma?.unmapSg(sgt.entries.map((e) => ({ addr: e.dmaAddress, length: e.dmaLength })));
}

const systemHeapOps: DmaBufOps = {
  mapDmaBuf(attach, dir) {
    const b = attach.dmabuf.priv as SystemHeapBuffer;
    return mapPageList(b.pages, b.physMap, attach.dev, dir, 'system_heap_map_dma_buf');
  },
  unmapDmaBuf(attach, sgt) {
    unmapPageList(attach.dev, sgt);
  },
  release(dmabuf) {
    (dmabuf.priv as SystemHeapBuffer).pages.free();
  },
  // System memory is coherent here: begin/end_cpu_access have nothing to flush.
  mmap(dmabuf, pgoff, pages) {
    const b = dmabuf.priv as SystemHeapBuffer;
    return pageListView(() => b.pages, pgoff * PAGE_SIZE, pages * PAGE_SIZE);
  },
  vmap(dmabuf) {
    const b = dmabuf.priv as SystemHeapBuffer;
    return pageListView(() => b.pages, 0, dmabuf.size);
  },
};

/** Heap ops over host RAM: pass to DmaHeapRegistry.add('system', ...). */
export function systemHeapCreate(ram: PageAllocator, physMap: PhysMap): DmaHeapOps {
  return {
    allocate(_heap, len): DmaBuf {
      // Scattered runs of up to 16 pages, as system_heap's high-order-first allocation produces.
      const pages = PageList.allocate(ram, len, { maxRun: 16 });
      try {
        return dmaBufExport({
          expName: 'system',
          ops: systemHeapOps,
          size: len,
          priv: { pages, physMap } satisfies SystemHeapBuffer,
        });
      } catch (e) {
        pages.free();
        throw e;
      }
    },
  };
}

/**
 * Micro-benchmark of the DMA routing point: dmaWrite bandwidth through an IOMMU domain against a
 * raw Uint8Array.prototype.set of the same size into the same SharedArrayBuffer memory.
 *
 * Wall clock of this machine only (the emulator's own cost), never a modelled-hardware figure.
 * Not wired into any CLI; bench/ may call runDmaBench(). This file sets up a host through the
 * kernel (PhysMap, Iommu), so unlike dma.ts it is not importable by device workers.
 */
import { PageAllocator } from '../kernel/mm/page-alloc.ts';
import { PhysMap } from '../kernel/mm/phys-map.ts';
import { MemRegionKind, memRegionCreate } from '../kernel/mm/region.ts';
import {
  IOMMU_READ,
  IOMMU_WRITE,
  Iommu,
  IommuDomainType,
  iommuAttachDevice,
  iommuDeviceDmaCtx,
  iommuDomainAlloc,
  iommuMap,
} from '../kernel/iommu/iommu.ts';
import { DmaCtx, dmaWrite } from './dma.ts';
import { PAGE_SIZE } from './page.ts';

/** One row of results; bandwidths in GB/s (10^9 bytes per second). */
export interface DmaBenchResult {
  size: number;
  /** dst.set(src) straight into the RAM SAB. */
  rawGBps: number;
  /** dmaWrite through a paging domain mapping physically contiguous pages (one run). */
  iommuContigGBps: number;
  /** dmaWrite where no two IOVA-adjacent pages are physically adjacent (one run per page). */
  iommuScatteredGBps: number;
}

export const DMA_BENCH_SIZES = [64 << 10, 1 << 20, 16 << 20] as const;

/** Repeat `fn` (one transfer of `bytes`) for about `budgetMs` after a warm-up; GB/s. */
function measure(bytes: number, budgetMs: number, fn: () => void): number {
  for (let i = 0; i < 3; i++) fn();
  let iters = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    fn();
    iters++;
    t = performance.now();
  } while (t - t0 < budgetMs);
  return (bytes * iters) / ((t - t0) / 1000) / 1e9;
}

/**
 * Measure each size in `sizes` (bytes, multiples of PAGE_SIZE). Allocates 2 x max(size) of
 * SAB memory. Throws: Error if a DMA fails (a broken setup, not a measurement).
 */
export function runDmaBench(sizes: readonly number[] = DMA_BENCH_SIZES, budgetMs = 200): DmaBenchResult[] {
  const max = Math.max(...sizes);
  const physMap = new PhysMap();
  const ram = memRegionCreate('bench-ram', MemRegionKind.RAM, 2 * max);
  physMap.addRam(ram);
  const pages = new PageAllocator(ram);
  const iommu = new Iommu(physMap);
  const dom = iommuDomainAlloc(iommu, IommuDomainType.UNMANAGED);
  iommuAttachDevice(dom, 1);
  const handoff = iommuDeviceDmaCtx(iommu, 1);
  const ctx = new DmaCtx(handoff.desc);
  const n = max / PAGE_SIZE;
  const contig = pages.allocContigPages(n).pfn * PAGE_SIZE;
  const scattered = pages.allocContigPages(n).pfn * PAGE_SIZE;
  const contigIova = 1 << 30;
  const scatterIova = 2 ** 32;
  const rw = IOMMU_READ | IOMMU_WRITE;
  iommuMap(dom, contigIova, contig, max, rw);
  // reverse page order: IOVA page i -> physical page n - 1 - i, so nothing merges.
  for (let i = 0; i < n; i++)
    iommuMap(dom, scatterIova + i * PAGE_SIZE, scattered + (n - 1 - i) * PAGE_SIZE, PAGE_SIZE, rw);
  const src = new Uint8Array(max).fill(0x5a);
  const out: DmaBenchResult[] = [];
  try {
    for (const size of sizes) {
      const s = src.subarray(0, size);
      const dst = ram.bytes.subarray(contig, contig + size);
      const check = (status: number) => {
        if (status !== 0) throw new Error(`runDmaBench: dmaWrite of ${size} bytes failed with ${status}`);
      };
      out.push({
        size,
        rawGBps: measure(size, budgetMs, () => dst.set(s)),
        iommuContigGBps: measure(size, budgetMs, () => check(dmaWrite(ctx, contigIova, src, 0, size))),
        iommuScatteredGBps: measure(size, budgetMs, () => check(dmaWrite(ctx, scatterIova, src, 0, size))),
      });
    }
  } finally {
    ctx.close();
    handoff.release();
  }
  return out;
}

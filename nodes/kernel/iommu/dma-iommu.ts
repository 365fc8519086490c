/**
 * DMA-API glue over IOMMU domains (Linux drivers/iommu/dma-iommu.c): IOVA allocation with the
 * 32-bit-first policy, and scatter-gather mapping into one contiguous IOVA range.
 *
 * Called by: the dma-buf core and drivers when they map an sg table for a device (the analogue
 * of dma_map_sgtable). Thread: kernel. Segments are page aligned (dma-buf sg tables always are).
 */
import { err } from '../../../common/errno.ts';
import { IommuDomainType } from '../../fabric/iommu-layout.ts';
import { hex, isAddrRange, isPageAligned, PAGE_SIZE } from '../../fabric/page.ts';
import { IommuDomain, iommuMap, iommuUnmap } from './iommu.ts';

/** A DMA address range: physical in, bus/IOVA out. */
export interface DmaSegment {
  addr: number;
  length: number;
}

const DMA_BIT_MASK_32 = 2 ** 32 - 1;

function isDomain(fn: string, domain: IommuDomain): void {
  if (!(domain instanceof IommuDomain)) throw err('EINVAL', `${fn}: domain is not an IommuDomain`);
}

function dmaDomain(fn: string, domain: IommuDomain): void {
  isDomain(fn, domain);
  if (domain.freed) throw err('EINVAL', `${fn}: domain ${domain.id} was freed`);
  if (domain.type !== IommuDomainType.DMA) {
    throw err('EINVAL', `${fn}: domain ${domain.id} is not a DMA-API domain (type ${domain.type})`);
  }
}

/**
 * iommu_dma_alloc_iova(): `size` bytes (rounded up to pages) of IOVA at or below `dmaLimit` (a DMA
 * mask: the highest usable address, e.g. 2 ** 32 - 1),
 * size aligned. Like Linux for PCI devices, tries below 4 GiB first unless `forceDac`.
 * Returns the IOVA. Throws: EINVAL naming size/dmaLimit or a non-DMA domain; ENOSPC.
 */
export function iommuDmaAllocIova(
  domain: IommuDomain,
  size: number,
  dmaLimit = Number.MAX_SAFE_INTEGER,
  forceDac = false,
): number {
  dmaDomain('iommuDmaAllocIova', domain);
  if (!Number.isInteger(size) || size <= 0)
    throw err('EINVAL', `iommuDmaAllocIova: size must be a positive integer, got ${size}`);
  if (!Number.isInteger(dmaLimit) || dmaLimit < PAGE_SIZE) {
    throw err('EINVAL', `iommuDmaAllocIova: dmaLimit must be an integer >= ${PAGE_SIZE}, got ${dmaLimit}`);
  }
  const iovad = domain.iovad!;
  const pages = Math.ceil(size / PAGE_SIZE);
  const limit = Math.min(dmaLimit, domain.pgtable.limit - 1);
  if (limit > DMA_BIT_MASK_32 && !forceDac) {
    try {
      return iovad.allocIova(pages, Math.floor(DMA_BIT_MASK_32 / PAGE_SIZE), true).pfnLo * PAGE_SIZE;
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOSPC') throw e;
    }
  }
  return iovad.allocIova(pages, Math.floor(limit / PAGE_SIZE), true).pfnLo * PAGE_SIZE;
}

/** iommu_dma_free_iova(): free the IOVA range starting at `iova`. Throws: EINVAL if not allocated. */
export function iommuDmaFreeIova(domain: IommuDomain, iova: number): void {
  dmaDomain('iommuDmaFreeIova', domain);
  if (!isPageAligned(iova)) throw err('EINVAL', `iommuDmaFreeIova: iova ${iova} must be page aligned`);
  const r = domain.iovad!.findIova(iova / PAGE_SIZE);
  if (r === null || r.pfnLo * PAGE_SIZE !== iova) {
    throw err('EINVAL', `iommuDmaFreeIova: iova ${hex(iova)} does not start an allocated range`);
  }
  domain.iovad!.freeIova(r.pfnLo);
}

/**
 * iommu_dma_map_sg(): map physical `segs` for a device in `domain`.
 *   DMA domain: one IOVA range, segments mapped back to back, one segment returned.
 *   IDENTITY domain: the segments themselves (DMA address == physical address).
 * Throws: EINVAL naming segs[i] (page-aligned addr and length) or the domain type (UNMANAGED
 * and BLOCKED domains have no DMA API); ENOSPC; anything iommuMap throws, with nothing left
 * mapped.
 */
export function iommuDmaMapSg(
  domain: IommuDomain,
  segs: readonly DmaSegment[],
  prot: number,
  dmaLimit?: number,
): DmaSegment[] {
  isDomain('iommuDmaMapSg', domain);
  if (!Array.isArray(segs) || segs.length === 0)
    throw err('EINVAL', 'iommuDmaMapSg: segs must be a non-empty array');
  let total = 0;
  segs.forEach((s, i) => {
    if (!isPageAligned(s.addr) || !isAddrRange(s.addr, s.length) || s.length % PAGE_SIZE !== 0) {
      throw err(
        'EINVAL',
        `iommuDmaMapSg: segs[${i}] {addr ${s.addr}, length ${s.length}} must be page aligned, < 2^52`,
      );
    }
    total += s.length;
  });
  if (domain.type === IommuDomainType.IDENTITY && !domain.freed) return segs.map((s) => ({ ...s }));
  dmaDomain('iommuDmaMapSg', domain);
  const iova = iommuDmaAllocIova(domain, total, dmaLimit);
  let off = 0;
  try {
    for (const s of segs) {
      iommuMap(domain, iova + off, s.addr, s.length, prot);
      off += s.length;
    }
  } catch (e) {
    if (off > 0) iommuUnmap(domain, iova, off);
    iommuDmaFreeIova(domain, iova);
    throw e;
  }
  return [{ addr: iova, length: total }];
}

/**
 * iommu_dma_unmap_sg(): undo iommuDmaMapSg with the segments it returned. Throws: EINVAL if
 * the range is not fully mapped (double unmap) or not an allocated IOVA.
 */
export function iommuDmaUnmapSg(domain: IommuDomain, mapped: readonly DmaSegment[]): void {
  isDomain('iommuDmaUnmapSg', domain);
  if (!Array.isArray(mapped)) throw err('EINVAL', 'iommuDmaUnmapSg: mapped must be an array');
  if (domain.type === IommuDomainType.IDENTITY) return;
  dmaDomain('iommuDmaUnmapSg', domain);
  for (const m of mapped) {
    const r = domain.iovad!.findIova(m.addr / PAGE_SIZE);
    if (r === null || r.pfnLo * PAGE_SIZE !== m.addr) {
      throw err('EINVAL', `iommuDmaUnmapSg: ${hex(m.addr)} was not returned by iommuDmaMapSg`);
    }
    const bytes = iommuUnmap(domain, m.addr, Math.ceil(m.length / PAGE_SIZE) * PAGE_SIZE);
    if (bytes !== Math.ceil(m.length / PAGE_SIZE) * PAGE_SIZE) {
      throw err(
        'EINVAL',
        `iommuDmaUnmapSg: ${hex(m.addr)} had only ${hex(bytes)} of ${hex(m.length)} bytes mapped`,
      );
    }
    domain.iovad!.freeIova(r.pfnLo);
  }
}

/**
 * IOVA allocator, after Linux drivers/iommu/iova.c.
 *
 * An IovaDomain hands out ranges of IOVA page frames (units of `granule` bytes) inside
 * [startPfn, endPfn]. Like Linux it allocates top-down from a caller's limit (so 32-bit-capable
 * devices get IOVAs below 4 GiB when dma-iommu asks for that first) and, with `sizeAligned`,
 * aligns a range to its size rounded up to a power of two. Ranges are kept sorted in an array
 * (Linux uses an rbtree; domains here hold hundreds, not millions, of ranges).
 *
 * Differences from Linux, on purpose: freeing a pfn that is not allocated throws EINVAL instead
 * of being ignored, and reserveIova() refuses overlaps (EEXIST) instead of merging, because both
 * are contract bugs the emulator wants to surface.
 *
 * Thread: kernel only, no lock (callers are the IOMMU domain's owner on the main thread).
 */
import { err } from '../../../common/errno.ts';
import { hex, MAX_PFN, PAGE_SIZE } from '../../fabric/page.ts';

/** One allocated or reserved range, inclusive bounds (struct iova). */
export interface Iova {
  pfnLo: number;
  pfnHi: number;
}

export class IovaDomain {
  /** Bytes per IOVA pfn; a power of two >= PAGE_SIZE. */
  readonly granule: number;
  /** Lowest allocatable pfn (Linux start_pfn; 1 keeps IOVA 0 unused). */
  readonly startPfn: number;
  /** Highest allocatable pfn, inclusive (end of the aperture). */
  readonly endPfn: number;
  private los: number[] = [];
  private his: number[] = [];
  private readonly label: string;

  /**
   * init_iova_domain(). Throws: EINVAL naming granule/startPfn/endPfn.
   * @param label names the domain in error messages.
   */
  constructor(granule: number, startPfn: number, endPfn: number, label = 'iova') {
    this.label = label;
    if (!Number.isInteger(granule) || granule < PAGE_SIZE || (granule & (granule - 1)) !== 0) {
      throw err(
        'EINVAL',
        `initIovaDomain(${label}): granule must be a power of two >= ${PAGE_SIZE}, got ${granule}`,
      );
    }
    if (!Number.isInteger(startPfn) || startPfn < 0) {
      throw err(
        'EINVAL',
        `initIovaDomain(${label}): startPfn must be a non-negative integer, got ${startPfn}`,
      );
    }
    if (!Number.isInteger(endPfn) || endPfn < startPfn || endPfn >= MAX_PFN) {
      throw err(
        'EINVAL',
        `initIovaDomain(${label}): endPfn must be an integer in [startPfn, 2^40), got ${endPfn}`,
      );
    }
    this.granule = granule;
    this.startPfn = startPfn;
    this.endPfn = endPfn;
  }

  /** Number of ranges held (allocated + reserved). */
  get count(): number {
    return this.los.length;
  }

  /**
   * alloc_iova(): find `size` free pfns at or below `limitPfn`, highest first. With
   * `sizeAligned`, pfnLo is a multiple of size rounded up to a power of two.
   * Called by: dma-iommu (iommuDmaAllocIova), vfio/iommufd-style owners of UNMANAGED domains.
   * Throws: EINVAL naming size/limitPfn; ENOSPC naming the domain, size and limit.
   */
  allocIova(size: number, limitPfn: number, sizeAligned = true): Iova {
    if (!Number.isInteger(size) || size < 1) {
      throw err('EINVAL', `allocIova(${this.label}): size must be a positive number of pfns, got ${size}`);
    }
    if (!Number.isInteger(limitPfn) || limitPfn < this.startPfn) {
      throw err(
        'EINVAL',
        `allocIova(${this.label}): limitPfn must be an integer >= startPfn ${this.startPfn}, got ${limitPfn}`,
      );
    }
    const align = sizeAligned ? 2 ** Math.ceil(Math.log2(size)) : 1;
    let top = Math.min(limitPfn, this.endPfn);
    let idx = this.upperBound(top) - 1; // last range with pfnLo <= top
    for (;;) {
      const floor = idx >= 0 ? this.his[idx] + 1 : this.startPfn;
      if (idx >= 0 && this.his[idx] >= top) {
        top = this.los[idx] - 1; // range straddles top: the gap is below it
        idx--;
        continue;
      }
      const lo = Math.floor((top - size + 1) / align) * align;
      if (top - size + 1 >= floor && lo >= floor) {
        this.los.splice(idx + 1, 0, lo);
        this.his.splice(idx + 1, 0, lo + size - 1);
        return { pfnLo: lo, pfnHi: lo + size - 1 };
      }
      if (idx < 0) break;
      top = this.los[idx] - 1;
      idx--;
    }
    throw err(
      'ENOSPC',
      `allocIova(${this.label}): no ${size}-pfn range (align ${align}) at or below pfn ${hex(limitPfn)} in [${hex(this.startPfn)}, ${hex(this.endPfn)}]`,
    );
  }

  /**
   * free_iova(): free the range containing `pfn`. Throws: EINVAL if no range contains it.
   */
  freeIova(pfn: number): Iova {
    const i = this.indexOf(pfn);
    if (i < 0) throw err('EINVAL', `freeIova(${this.label}): pfn ${hex(pfn)} is not in an allocated range`);
    const r = { pfnLo: this.los[i], pfnHi: this.his[i] };
    this.los.splice(i, 1);
    this.his.splice(i, 1);
    return r;
  }

  /** find_iova(): the range containing `pfn`, or null. */
  findIova(pfn: number): Iova | null {
    const i = this.indexOf(pfn);
    return i < 0 ? null : { pfnLo: this.los[i], pfnHi: this.his[i] };
  }

  /**
   * reserve_iova(): take [pfnLo, pfnHi] out of allocation (MSI windows, BAR holes).
   * Throws: EINVAL naming pfnLo/pfnHi; EEXIST if it overlaps a range already held.
   */
  reserveIova(pfnLo: number, pfnHi: number): Iova {
    if (!Number.isInteger(pfnLo) || pfnLo < this.startPfn || pfnLo > this.endPfn) {
      throw err(
        'EINVAL',
        `reserveIova(${this.label}): pfnLo ${pfnLo} outside [${this.startPfn}, ${this.endPfn}]`,
      );
    }
    if (!Number.isInteger(pfnHi) || pfnHi < pfnLo || pfnHi > this.endPfn) {
      throw err('EINVAL', `reserveIova(${this.label}): pfnHi ${pfnHi} must be in [pfnLo, ${this.endPfn}]`);
    }
    const idx = this.upperBound(pfnHi); // ranges from idx on start above pfnHi; only idx - 1 can overlap
    if (idx > 0 && this.his[idx - 1] >= pfnLo) {
      throw err(
        'EEXIST',
        `reserveIova(${this.label}): [${hex(pfnLo)}, ${hex(pfnHi)}] overlaps a range already held`,
      );
    }
    this.los.splice(idx, 0, pfnLo);
    this.his.splice(idx, 0, pfnHi);
    return { pfnLo, pfnHi };
  }

  /** Index of the first range with pfnLo > pfn. */
  private upperBound(pfn: number): number {
    let lo = 0;
    let hi = this.los.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.los[mid] <= pfn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private indexOf(pfn: number): number {
    const i = this.upperBound(pfn) - 1;
    return i >= 0 && this.his[i] >= pfn ? i : -1;
  }
}

/** Shift of a granule (iova_shift()). */
export function iovaShift(iovad: IovaDomain): number {
  return Math.log2(iovad.granule);
}

/** Bytes rounded up to whole granules, as a pfn count (iova_align() >> shift). */
export function iovaPages(iovad: IovaDomain, bytes: number): number {
  return Math.ceil(bytes / iovad.granule);
}

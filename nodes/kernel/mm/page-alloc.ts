/**
 * Page allocator: one per MemRegion, 4 KiB pages tracked in a bitmap (1 = allocated).
 *
 * Ownership: an allocator belongs to exactly one thread, recorded as `owner` (a worker_threads
 * threadId; 0 is the main thread, i.e. the kernel). Only the owner allocates or frees; calls from
 * any other thread throw EPERM. The bitmap is plain (not shared) memory for that reason: no
 * other thread can even see it, so no Atomics are needed.
 *
 * Two kinds of allocation, after Linux:
 *   - allocContigPages(): one physically contiguous run (alloc_contig_pages), next-fit;
 *   - allocPagesBulk(): `count` pages in runs of at most `maxRun` pages separated by at least
 *     one page where possible (alloc_pages_bulk), so sg tables built over them have several
 *     entries, as they do on a fragmented host.
 * Page numbers here are region-relative (page 0 is the region's first 4 KiB); PhysMap turns a
 * region offset into a physical address.
 */
import { threadId } from 'node:worker_threads';
import { err } from '../../../common/errno.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { MemRegion } from './region.ts';

/** A run of `count` pages starting at region page `pfn`. */
export interface PageRun {
  pfn: number;
  count: number;
}

export class PageAllocator {
  readonly region: MemRegion;
  /** threadId of the only thread allowed to allocate and free. */
  readonly owner: number;
  private readonly map: Uint32Array;
  private readonly pages: number;
  private free: number;
  private hint = 0;

  constructor(region: MemRegion, owner: number = threadId) {
    if (!(region instanceof MemRegion)) throw err('EINVAL', 'PageAllocator: region is not a MemRegion');
    this.region = region;
    this.owner = owner;
    this.pages = region.size / PAGE_SIZE;
    this.free = this.pages;
    this.map = new Uint32Array(Math.ceil(this.pages / 32));
  }

  /** Pages currently free. */
  get freePages(): number {
    return this.free;
  }

  /** True if region page `pfn` is allocated. */
  isAllocated(pfn: number): boolean {
    return (this.map[pfn >>> 5] & (1 << (pfn & 31))) !== 0;
  }

  /**
   * Allocate `count` contiguous pages whose first page number is a multiple of `align`.
   * Called by: kernel code owning the region (RAM: dma-buf heaps; VRAM: the GPU driver).
   * Thread: owner only. Throws: EPERM (not the owner), EINVAL naming `count`/`align`,
   * ENOMEM naming the region when no such run exists.
   */
  allocContigPages(count: number, align = 1): PageRun {
    this.assertOwner('allocContigPages');
    this.checkCount('allocContigPages', count);
    if (!Number.isInteger(align) || align < 1 || align > this.pages) {
      throw err(
        'EINVAL',
        `allocContigPages(${this.region.name}): align must be an integer in [1, ${this.pages}], got ${align}`,
      );
    }
    let pfn = this.findRun(count, align, this.hint, this.pages);
    if (pfn < 0) pfn = this.findRun(count, align, 0, Math.min(this.pages, this.hint + count));
    if (pfn < 0) {
      throw err(
        'ENOMEM',
        `allocContigPages: region ${this.region.name} has no run of ${count} free pages (${this.free} free)`,
      );
    }
    this.setRange(pfn, count, true);
    this.hint = pfn + count >= this.pages ? 0 : pfn + count;
    return { pfn, count };
  }

  /**
   * Allocate `count` pages in runs of at most `maxRun` pages, leaving a gap after each run when
   * the region has room, so the runs are not physically adjacent. All or nothing.
   * Thread: owner only. Throws: EPERM, EINVAL naming `count`/`maxRun`, ENOMEM naming the region.
   */
  allocPagesBulk(count: number, maxRun = 1): PageRun[] {
    this.assertOwner('allocPagesBulk');
    this.checkCount('allocPagesBulk', count);
    if (!Number.isInteger(maxRun) || maxRun < 1) {
      throw err(
        'EINVAL',
        `allocPagesBulk(${this.region.name}): maxRun must be a positive integer, got ${maxRun}`,
      );
    }
    if (count > this.free) {
      throw err(
        'ENOMEM',
        `allocPagesBulk: region ${this.region.name} has ${this.free} free pages, ${count} requested`,
      );
    }
    const runs: PageRun[] = [];
    let got = 0;
    // pass 0 keeps a free page between runs; pass 1 takes whatever is left.
    for (let pass = 0; pass < 2 && got < count; pass++) {
      for (let i = 0; i < this.pages && got < count; i++) {
        if (this.isAllocated(i)) continue;
        let n = 0;
        while (n < maxRun && got + n < count && i + n < this.pages && !this.isAllocated(i + n)) n++;
        this.setRange(i, n, true);
        runs.push({ pfn: i, count: n });
        got += n;
        i += n - 1 + (pass === 0 ? 1 : 0);
      }
    }
    return runs.sort((a, b) => a.pfn - b.pfn);
  }

  /**
   * Free `count` pages starting at region page `pfn` (free_contig_range). Checks every page
   * before freeing any. Thread: owner only.
   * Throws: EPERM; EINVAL naming `pfn`/`count`, or naming the first page that is not allocated.
   */
  freeContigRange(pfn: number, count: number): void {
    this.assertOwner('freeContigRange');
    this.checkCount('freeContigRange', count);
    if (!Number.isInteger(pfn) || pfn < 0 || pfn + count > this.pages) {
      throw err(
        'EINVAL',
        `freeContigRange(${this.region.name}): pfn ${pfn} + count ${count} outside ${this.pages} pages`,
      );
    }
    for (let i = pfn; i < pfn + count; i++) {
      if (!this.isAllocated(i)) {
        throw err(
          'EINVAL',
          `freeContigRange(${this.region.name}): page ${i} is not allocated (double free?)`,
        );
      }
    }
    this.setRange(pfn, count, false);
  }

  /** Free every run from allocPagesBulk (checks all runs first). Same errors as freeContigRange. */
  freePagesBulk(runs: readonly PageRun[]): void {
    this.assertOwner('freePagesBulk');
    for (const r of runs) {
      if (
        !Number.isInteger(r.pfn) ||
        r.pfn < 0 ||
        !Number.isInteger(r.count) ||
        r.pfn + r.count > this.pages
      ) {
        throw err(
          'EINVAL',
          `freePagesBulk(${this.region.name}): run {pfn ${r.pfn}, count ${r.count}} outside region`,
        );
      }
      for (let i = r.pfn; i < r.pfn + r.count; i++) {
        if (!this.isAllocated(i))
          throw err('EINVAL', `freePagesBulk(${this.region.name}): page ${i} is not allocated`);
      }
    }
    for (const r of runs) this.setRange(r.pfn, r.count, false);
  }

  private assertOwner(fn: string): void {
    if (threadId !== this.owner) {
      throw err(
        'EPERM',
        `${fn}(${this.region.name}): called from thread ${threadId}, owner is thread ${this.owner}`,
      );
    }
  }

  private checkCount(fn: string, count: number): void {
    if (!Number.isInteger(count) || count < 1) {
      throw err('EINVAL', `${fn}(${this.region.name}): count must be a positive integer, got ${count}`);
    }
  }

  /** First pfn in [from, to) of an aligned free run of `count`, or -1. Skips full bitmap words. */
  private findRun(count: number, align: number, from: number, to: number): number {
    let i = Math.ceil(from / align) * align;
    while (i + count <= to) {
      if ((i & 31) === 0 && this.map[i >>> 5] === 0xffffffff) {
        i = Math.ceil((i + 32) / align) * align;
        continue;
      }
      let j = i;
      while (j < i + count && !this.isAllocated(j)) j++;
      if (j === i + count) return i;
      i = Math.ceil((j + 1) / align) * align;
    }
    return -1;
  }

  private setRange(pfn: number, count: number, on: boolean): void {
    for (let i = pfn; i < pfn + count; i++) {
      if (on) this.map[i >>> 5] |= 1 << (i & 31);
      else this.map[i >>> 5] &= ~(1 << (i & 31));
    }
    this.free += on ? -count : count;
  }
}

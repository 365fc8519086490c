/**
 * A buffer's backing pages: page runs of one region, with their physical segments and CPU access
 * that walks the runs (scattered pages cannot be one contiguous view in JS, so CPU access is by
 * copy, as a kernel vmap of scattered pages would be by a page walk).
 *
 * Thread: kernel (the owner of the region's allocator).
 */
import { err } from '../../../common/errno.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import type { DmaSegment } from '../iommu/dma-iommu.ts';
import { PageAllocator, type PageRun } from './page-alloc.ts';
import type { PhysMap } from './phys-map.ts';

export class PageList {
  readonly alloc: PageAllocator;
  readonly runs: readonly PageRun[];
  /** Bytes, a multiple of PAGE_SIZE. */
  readonly size: number;
  private freed = false;

  private constructor(alloc: PageAllocator, runs: PageRun[]) {
    this.alloc = alloc;
    this.runs = runs;
    this.size = runs.reduce((n, r) => n + r.count * PAGE_SIZE, 0);
  }

  /**
   * Allocate `size` bytes (rounded up to pages) from `alloc`: scattered in runs of at most `maxRun`
   * pages (as a fragmented host hands them out), or one contiguous run when `contiguous`. Pages
   * are zeroed unless `zero` is false (only for a destination that is overwritten whole).
   * Throws: ENOMEM naming the region; EINVAL naming size.
   */
  static allocate(
    alloc: PageAllocator,
    size: number,
    opts: { contiguous?: boolean; maxRun?: number; zero?: boolean } = {},
  ): PageList {
    if (!(alloc instanceof PageAllocator))
      throw err('EINVAL', 'PageList.allocate: alloc is not a PageAllocator');
    if (!Number.isSafeInteger(size) || size <= 0) throw err('EINVAL', `PageList.allocate: size ${size}`);
    const pages = Math.ceil(size / PAGE_SIZE);
    const runs = opts.contiguous
      ? [alloc.allocContigPages(pages)]
      : alloc.allocPagesBulk(pages, opts.maxRun ?? 16);
    const list = new PageList(alloc, runs);
    // __GFP_ZERO: freed pages keep their last owner's bytes and nobody may see them (rule 10).
    // Only a destination about to be overwritten whole (a move's copy) skips it.
    if (opts.zero !== false) list.fill(0, list.size, 0);
    return list;
  }

  get region() {
    return this.alloc.region;
  }

  /** Physical segments, one per run, through the host's physical address map. */
  physSegments(physMap: PhysMap): DmaSegment[] {
    return this.runs.map((r) => {
      const addr = physMap.regionToPhys(this.region, r.pfn * PAGE_SIZE);
      if (addr === null)
        throw err('EFAULT', `PageList: region ${this.region.name} is not in the physical map`);
      return { addr, length: r.count * PAGE_SIZE };
    });
  }

  /** Copy `dst.length` bytes from buffer offset `offset` into `dst`. EINVAL out of range. */
  read(offset: number, dst: Uint8Array): void {
    this.walk('read', offset, dst.length, (view, at) => dst.set(view, at));
  }

  /** Copy `src` into the buffer at `offset`. EINVAL out of range. */
  write(offset: number, src: Uint8Array): void {
    this.walk('write', offset, src.length, (view, at) => view.set(src.subarray(at, at + view.length)));
  }

  /** Fill `length` bytes at `offset` with `value`. */
  fill(offset: number, length: number, value: number): void {
    this.walk('fill', offset, length, (view) => view.fill(value));
  }

  /** Copy the whole content to `dst` (same size): what a move's copy job does. */
  copyTo(dst: PageList): void {
    if (dst.size < this.size)
      throw err('EINVAL', `PageList.copyTo: destination of ${dst.size} bytes < ${this.size}`);
    let at = 0;
    for (const r of this.runs) {
      const view = this.region.bytes.subarray(r.pfn * PAGE_SIZE, (r.pfn + r.count) * PAGE_SIZE);
      dst.write(at, view);
      at += view.length;
    }
  }

  /** Return the pages to the allocator. Idempotent. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.alloc.freePagesBulk(this.runs);
  }

  get isFreed(): boolean {
    return this.freed;
  }

  // Visit the region views covering [offset, offset + length) with their offset into the range.
  private walk(
    fn: string,
    offset: number,
    length: number,
    visit: (view: Uint8Array, at: number) => void,
  ): void {
    if (this.freed) throw err('EFAULT', `PageList.${fn}: pages were freed`);
    if (
      !Number.isInteger(offset) ||
      offset < 0 ||
      !Number.isInteger(length) ||
      length < 0 ||
      offset + length > this.size
    ) {
      throw err('EINVAL', `PageList.${fn}: [${offset}, +${length}) outside ${this.size} bytes`);
    }
    let skip = offset;
    let at = 0;
    for (const r of this.runs) {
      const runBytes = r.count * PAGE_SIZE;
      if (skip >= runBytes) {
        skip -= runBytes;
        continue;
      }
      const start = r.pfn * PAGE_SIZE + skip;
      const n = Math.min(runBytes - skip, length - at);
      visit(this.region.bytes.subarray(start, start + n), at);
      at += n;
      skip = 0;
      if (at === length) return;
    }
  }
}

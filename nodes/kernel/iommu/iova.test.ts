import { describe, expect, it } from 'vitest';
import type { EmuError } from '../../../common/errno.ts';
import { Rng } from '../../../common/random.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { type Iova, IovaDomain, iovaPages, iovaShift } from './iova.ts';
import { expectErr } from '../../../test/support/expect-errno.ts';

describe('iova', () => {
  it('iova - allocation is top-down from the limit, below earlier ranges', () => {
    const d = new IovaDomain(PAGE_SIZE, 1, 0xffff);
    expect(d.allocIova(1, 0xffff)).toEqual({ pfnLo: 0xffff, pfnHi: 0xffff });
    expect(d.allocIova(2, 0xffff)).toEqual({ pfnLo: 0xfffc, pfnHi: 0xfffd });
    expect(d.allocIova(1, 0x0fff)).toEqual({ pfnLo: 0x0fff, pfnHi: 0x0fff });
    expect(d.allocIova(3, 0xffff, false)).toEqual({ pfnLo: 0xfff9, pfnHi: 0xfffb });
    expect(d.count).toBe(4);
  });

  it('iova - size-aligned allocations start at a multiple of the size rounded to a power of two', () => {
    const d = new IovaDomain(PAGE_SIZE, 1, 0xfffff);
    for (const size of [1, 3, 5, 8, 17, 64, 100]) {
      const r = d.allocIova(size, 0xfffff, true);
      const align = 2 ** Math.ceil(Math.log2(size));
      expect(r.pfnLo % align).toBe(0);
      expect(r.pfnHi - r.pfnLo + 1).toBe(size);
    }
  });

  it('iova - exhaustion is ENOSPC naming the size and the limit', () => {
    const d = new IovaDomain(PAGE_SIZE, 1, 15, 'dom7');
    d.allocIova(8, 15); // [8, 15]
    d.allocIova(4, 15); // [4, 7]
    expectErr(
      () => d.allocIova(4, 15),
      'ENOSPC',
      /allocIova\(dom7\): no 4-pfn range \(align 4\) at or below pfn 0xf/,
    );
    expect(d.allocIova(2, 15)).toEqual({ pfnLo: 2, pfnHi: 3 }); // pfn 0 is below startPfn
    expect(d.allocIova(1, 15)).toEqual({ pfnLo: 1, pfnHi: 1 });
    expectErr(() => d.allocIova(1, 15, true), 'ENOSPC', /no 1-pfn range/);
  });

  it('iova - a freed range is reusable; freeing an unallocated pfn is EINVAL', () => {
    const d = new IovaDomain(PAGE_SIZE, 1, 255, 'd');
    const a = d.allocIova(16, 255);
    d.allocIova(16, 255);
    expect(d.findIova(a.pfnLo + 3)).toEqual(a);
    expect(d.freeIova(a.pfnLo + 3)).toEqual(a);
    expect(d.findIova(a.pfnLo)).toBeNull();
    expect(d.allocIova(16, 255)).toEqual(a);
    expectErr(() => d.freeIova(5), 'EINVAL', /freeIova\(d\): pfn 0x5 is not in an allocated range/);
  });

  it('iova - reserved ranges are skipped; an overlapping reservation is EEXIST', () => {
    const d = new IovaDomain(PAGE_SIZE, 1, 0xff);
    d.reserveIova(0xf0, 0xff); // e.g. an MSI window at the top
    expect(d.allocIova(4, 0xff)).toEqual({ pfnLo: 0xec, pfnHi: 0xef });
    expectErr(() => d.reserveIova(0xe0, 0xec), 'EEXIST', /overlaps a range already held/);
    expectErr(() => d.reserveIova(0xf5, 0xf6), 'EEXIST', /overlaps/);
    expect(d.reserveIova(0x10, 0x10)).toEqual({ pfnLo: 0x10, pfnHi: 0x10 });
  });

  it('iova - bad arguments are EINVAL naming the argument', () => {
    expectErr(() => new IovaDomain(1000, 1, 10), 'EINVAL', /granule must be a power of two/);
    expectErr(() => new IovaDomain(PAGE_SIZE, -1, 10), 'EINVAL', /startPfn must be/);
    expectErr(() => new IovaDomain(PAGE_SIZE, 5, 4), 'EINVAL', /endPfn must be/);
    expectErr(() => new IovaDomain(PAGE_SIZE, 1, 2 ** 40), 'EINVAL', /endPfn must be/);
    const d = new IovaDomain(PAGE_SIZE, 1, 100);
    expectErr(() => d.allocIova(0, 100), 'EINVAL', /size must be a positive number of pfns, got 0/);
    expectErr(() => d.allocIova(1.5, 100), 'EINVAL', /size must be/);
    expectErr(() => d.allocIova(1, 0), 'EINVAL', /limitPfn must be an integer >= startPfn 1, got 0/);
    expectErr(() => d.reserveIova(0, 3), 'EINVAL', /pfnLo 0 outside/);
    expectErr(() => d.reserveIova(3, 2), 'EINVAL', /pfnHi 2 must be/);
    expect(iovaShift(d)).toBe(12);
    expect(iovaPages(d, 4097)).toBe(2);
  });

  it('iova - random alloc/free sequences never hand out overlapping ranges', () => {
    const rng = new Rng(0x10a);
    const d = new IovaDomain(PAGE_SIZE, 1, 4095);
    const live: Iova[] = [];
    for (let step = 0; step < 2000; step++) {
      if (live.length > 0 && rng.below(3) === 0) {
        const [r] = live.splice(rng.below(live.length), 1);
        d.freeIova(r.pfnLo);
        continue;
      }
      try {
        live.push(d.allocIova(1 + rng.below(40), 1 + rng.below(4095), rng.below(2) === 0));
      } catch (e) {
        expect((e as EmuError).code).toBe('ENOSPC');
      }
    }
    const sorted = [...live].sort((a, b) => a.pfnLo - b.pfnLo);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i].pfnLo).toBeGreaterThan(sorted[i - 1].pfnHi);
    expect(d.count).toBe(live.length);
  });
});

import { describe, expect, it } from 'vitest';
import { PAGE_SHIFT, PAGE_SIZE } from '../../fabric/page.ts';
import { PageAllocator } from './page-alloc.ts';
import { MemRegionKind, memRegionCreate } from './region.ts';
import { expectErr } from '../../../test/support/expect-errno.ts';

const ram = (pages: number, name = 'ram-t') => memRegionCreate(name, MemRegionKind.RAM, pages * PAGE_SIZE);

describe('page-alloc', () => {
  it('page-alloc - PAGE_SIZE and PAGE_SHIFT agree, regions are SAB backed and zeroed', () => {
    expect(PAGE_SIZE).toBe(4096);
    expect(1 << PAGE_SHIFT).toBe(PAGE_SIZE);
    const r = ram(4);
    expect(r.sab).toBeInstanceOf(SharedArrayBuffer);
    expect(r.pages).toBe(4);
    expect(r.bytes.every((b) => b === 0)).toBe(true);
    expect(r.descriptor()).toMatchObject({
      id: r.id,
      name: 'ram-t',
      kind: MemRegionKind.RAM,
      size: 4 * PAGE_SIZE,
    });
    expect(r.view(PAGE_SIZE, 8).byteOffset).toBe(PAGE_SIZE);
  });

  it('page-alloc - contiguous runs never overlap and honour alignment', () => {
    const a = new PageAllocator(ram(64));
    const r1 = a.allocContigPages(3);
    const r2 = a.allocContigPages(5);
    const r3 = a.allocContigPages(8, 8);
    expect(r1).toEqual({ pfn: 0, count: 3 });
    expect(r2).toEqual({ pfn: 3, count: 5 });
    expect(r3.pfn % 8).toBe(0);
    expect(r3.pfn).toBeGreaterThanOrEqual(8);
    expect(a.freePages).toBe(64 - 16);
    for (let i = 0; i < 16; i++) expect(a.isAllocated(i < 8 ? i : r3.pfn + i - 8)).toBe(true);
  });

  it('page-alloc - bulk allocation gives separated runs so an sg table has several entries', () => {
    const a = new PageAllocator(ram(64));
    const runs = a.allocPagesBulk(6, 2);
    expect(runs.map((r) => r.count)).toEqual([2, 2, 2]);
    for (let i = 1; i < runs.length; i++)
      expect(runs[i].pfn).toBeGreaterThan(runs[i - 1].pfn + runs[i - 1].count);
    const singles = a.allocPagesBulk(4);
    expect(singles).toHaveLength(4);
    expect(a.freePages).toBe(54);
  });

  it('page-alloc - bulk allocation falls back to adjacent pages when gaps no longer fit', () => {
    const a = new PageAllocator(ram(8));
    const runs = a.allocPagesBulk(8, 1);
    expect(runs.reduce((n, r) => n + r.count, 0)).toBe(8);
    expect(a.freePages).toBe(0);
  });

  it('page-alloc - exhaustion is ENOMEM naming the region', () => {
    const a = new PageAllocator(ram(8, 'vram-small'));
    a.allocContigPages(2);
    a.allocContigPages(1, 4); // pages 4: leaves holes [2,3] and [5,7]
    expectErr(
      () => a.allocContigPages(4),
      'ENOMEM',
      /region vram-small has no run of 4 free pages \(5 free\)/,
    );
    expectErr(() => a.allocPagesBulk(6), 'ENOMEM', /region vram-small has 5 free pages, 6 requested/);
    expect(a.allocContigPages(3)).toEqual({ pfn: 5, count: 3 });
  });

  it('page-alloc - freed pages are reusable; a double free is EINVAL naming the page', () => {
    const a = new PageAllocator(ram(16, 'r'));
    const r = a.allocContigPages(16);
    a.freeContigRange(r.pfn + 4, 4);
    expect(a.allocContigPages(4)).toEqual({ pfn: 4, count: 4 });
    a.freeContigRange(0, 16);
    expectErr(
      () => a.freeContigRange(2, 1),
      'EINVAL',
      /freeContigRange\(r\): page 2 is not allocated \(double free\?\)/,
    );
    const bulk = a.allocPagesBulk(3);
    a.freePagesBulk(bulk);
    expectErr(() => a.freePagesBulk(bulk), 'EINVAL', /freePagesBulk\(r\): page \d+ is not allocated/);
    expect(a.freePages).toBe(16);
  });

  it('page-alloc - bad arguments are EINVAL naming the argument', () => {
    const a = new PageAllocator(ram(8, 'r'));
    expectErr(
      () => a.allocContigPages(0),
      'EINVAL',
      /allocContigPages\(r\): count must be a positive integer, got 0/,
    );
    expectErr(() => a.allocContigPages(1, 0), 'EINVAL', /align must be an integer in \[1, 8\], got 0/);
    expectErr(() => a.allocPagesBulk(2, 0), 'EINVAL', /maxRun must be a positive integer, got 0/);
    expectErr(() => a.freeContigRange(7, 2), 'EINVAL', /pfn 7 \+ count 2 outside 8 pages/);
    expectErr(
      () => a.freePagesBulk([{ pfn: -1, count: 1 }]),
      'EINVAL',
      /run \{pfn -1, count 1\} outside region/,
    );
  });

  it('page-alloc - only the owner thread allocates or frees (EPERM otherwise)', () => {
    const a = new PageAllocator(ram(8, 'gpu-vram'), 7);
    expect(a.owner).toBe(7);
    expectErr(
      () => a.allocContigPages(1),
      'EPERM',
      /allocContigPages\(gpu-vram\): called from thread 0, owner is thread 7/,
    );
    expectErr(() => a.freeContigRange(0, 1), 'EPERM', /owner is thread 7/);
  });

  it('mm - memRegionCreate rejects a bad name, kind or size with EINVAL naming it', () => {
    expectErr(
      () => memRegionCreate('', MemRegionKind.RAM, PAGE_SIZE),
      'EINVAL',
      /name must be a non-empty string/,
    );
    expectErr(
      () => memRegionCreate('x', 7 as MemRegionKind, PAGE_SIZE),
      'EINVAL',
      /memRegionCreate\(x\): kind must be/,
    );
    expectErr(
      () => memRegionCreate('x', MemRegionKind.BAR, 100),
      'EINVAL',
      /size must be a positive multiple of 4096/,
    );
    expectErr(() => memRegionCreate('x', MemRegionKind.BAR, 0), 'EINVAL', /got 0/);
    expectErr(() => ram(1).view(4000, 200), 'EINVAL', /exceeds 0x1000/);
  });
});

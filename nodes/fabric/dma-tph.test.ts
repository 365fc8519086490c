// TPH hints at the DMA routing point (kernel-semantics §4.6 scenario 6): a hint set on the DMA
// context (or per side of dmaCopy) reaches the hook and is counted by a window that has a hint
// statistics block; windows without one count nothing.
import { describe, expect, it } from 'vitest';
import { expectCode } from '../../test/support/expect-errno.ts';
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
import { PageAllocator } from '../kernel/mm/page-alloc.ts';
import { PhysMap } from '../kernel/mm/phys-map.ts';
import { MemRegionKind, memRegionCreate } from '../kernel/mm/region.ts';
import {
  DmaCtx,
  dmaCopy,
  dmaCopyTph,
  DmaOp,
  dmaTph,
  dmaTphPh,
  dmaTphSt,
  dmaWrite,
  dmaWriteBus,
} from './dma.ts';
import { PAGE_SIZE } from './page.ts';
import {
  TPH_STATS_ST_SLOTS,
  TphStat,
  tphStatsCount,
  tphStatsCreate,
  tphStatsRead,
} from './phys-map-layout.ts';

const IOVA = 1 << 30;

/** RAM mapped at IOVA, BAR `a` with a statistics block, BAR `b` without. */
function rig() {
  const physMap = new PhysMap();
  const ram = memRegionCreate('ram', MemRegionKind.RAM, 16 * PAGE_SIZE);
  physMap.addRam(ram);
  const a = physMap.addBar(memRegionCreate('bar-a', MemRegionKind.BAR, 4 * PAGE_SIZE));
  const b = physMap.addBar(memRegionCreate('bar-b', MemRegionKind.BAR, 4 * PAGE_SIZE));
  const statsA = tphStatsCreate();
  const statsB = tphStatsCreate(); // never attached: must stay zero
  physMap.setWindowTphStats(a.phys, statsA);
  const iommu = new Iommu(physMap);
  const dom = iommuDomainAlloc(iommu, IommuDomainType.UNMANAGED);
  iommuAttachDevice(dom, 1);
  const pfn = new PageAllocator(ram).allocContigPages(4).pfn;
  iommuMap(dom, IOVA, pfn * PAGE_SIZE, 4 * PAGE_SIZE, IOMMU_READ | IOMMU_WRITE);
  // the BAR reached through the IOMMU too (THRU_HOST_BRIDGE)
  iommuMap(dom, 2 * IOVA, a.phys, 4 * PAGE_SIZE, IOMMU_READ | IOMMU_WRITE);
  const ctx = new DmaCtx(iommuDeviceDmaCtx(iommu, 1).desc);
  return { physMap, a, b, statsA, statsB, ctx };
}

const zero = { runs: 0, bytes: 0 };

describe('TPH at the routing point', () => {
  it('tph - a hinted DMA into a window with statistics counts its runs and bytes under its ST slot and PH; an unhinted one counts as unhinted', () => {
    const { a, statsA, ctx } = rig();
    const buf = new Uint8Array(3 * PAGE_SIZE).fill(7);
    ctx.tph = dmaTph(2, 0x2a);
    expect(dmaWriteBus(ctx, a.phys + 100, buf, 0, 3000)).toBe(0);
    // through the IOMMU, two pages: one run (contiguous)
    expect(dmaWrite(ctx, 2 * IOVA, buf, 0, 2 * PAGE_SIZE)).toBe(0);
    ctx.tph = 0;
    expect(dmaWriteBus(ctx, a.phys, buf, 0, 500)).toBe(0);
    const s = tphStatsRead(statsA);
    expect(s.hinted).toEqual({ runs: 2, bytes: 3000 + 2 * PAGE_SIZE });
    expect(s.st[0x2a % TPH_STATS_ST_SLOTS]).toEqual(s.hinted);
    expect(s.ph[2]).toEqual(s.hinted);
    expect([s.ph[0], s.ph[1], s.ph[3]]).toEqual([zero, zero, zero]);
    expect(s.st.filter((c) => c.runs !== 0)).toHaveLength(1);
    expect(s.unhinted).toEqual({ runs: 1, bytes: 500 });
  });

  it('tph - dmaCopyTph carries each side its own hint and the hook sees it; windows without statistics count nothing', () => {
    const { a, b, statsA, statsB, ctx } = rig();
    const seen: [DmaOp, number, number][] = [];
    ctx.hook = (_c, op, _addr, _phys, len, _bus, tph) => {
      seen.push([op, len, tph]);
      return 0;
    };
    ctx.tph = dmaTph(3, 0x77); // overridden by both sides below
    const src = dmaTph(1, 0x05);
    const dst = dmaTph(2, 0x2a);
    expect(dmaCopyTph(ctx, IOVA, false, ctx, a.phys, true, 1000, src, dst)).toBe(0);
    // into the window without statistics: nothing counted anywhere
    expect(dmaCopyTph(ctx, IOVA, false, ctx, b.phys, true, 1000, src, dst)).toBe(0);
    // the ctx's hint is the default of both sides; RAM (the source) has no statistics
    expect(dmaCopy(ctx, IOVA, false, ctx, a.phys, true, 10)).toBe(0);
    expect(seen).toEqual([
      [DmaOp.READ, 1000, src],
      [DmaOp.WRITE, 1000, dst],
      [DmaOp.READ, 1000, src],
      [DmaOp.WRITE, 1000, dst],
      [DmaOp.READ, 10, ctx.tph],
      [DmaOp.WRITE, 10, ctx.tph],
    ]);
    const s = tphStatsRead(statsA);
    expect(s.hinted).toEqual({ runs: 2, bytes: 1010 });
    expect(s.ph[2]).toEqual({ runs: 1, bytes: 1000 });
    expect(s.ph[3]).toEqual({ runs: 1, bytes: 10 });
    expect(s.st[0x2a]).toEqual({ runs: 1, bytes: 1000 });
    expect(s.st[0x77 % TPH_STATS_ST_SLOTS]).toEqual({ runs: 1, bytes: 10 });
    expect(s.st[0x05]).toEqual(zero); // the read side hit RAM
    expect(s.unhinted).toEqual(zero);
    expect(new Int32Array(statsB).every((w) => w === 0)).toBe(true);
    expect([dmaTphPh(dst), dmaTphSt(dst), dmaTph(0, 0) !== 0]).toEqual([2, 0x2a, true]);
  });

  it('tph - a run vetoed by the hook or faulting is not counted; taking the block away stops counting', () => {
    const { physMap, a, statsA, ctx } = rig();
    const buf = new Uint8Array(64);
    ctx.tph = dmaTph(2, 0x2a);
    ctx.hook = () => -5;
    expect(dmaWriteBus(ctx, a.phys, buf, 0, 64)).toBe(-5);
    ctx.hook = null;
    expect(dmaWrite(ctx, 3 * IOVA, buf, 0, 64)).toBeLessThan(0); // unmapped IOVA: fault
    expect(tphStatsRead(statsA).hinted).toEqual(zero);
    physMap.setWindowTphStats(a.phys, null);
    expect(dmaWriteBus(ctx, a.phys, buf, 0, 64)).toBe(0);
    expect(tphStatsRead(statsA).hinted).toEqual(zero);
    expectCode(() => physMap.setWindowTphStats(a.phys + PAGE_SIZE, statsA), 'ENOENT');
    expectCode(() => physMap.setWindowTphStats(a.phys, new SharedArrayBuffer(8)), 'EINVAL');
  });

  it('tph - byte counters carry into their high word, also when adders race past 2^32', () => {
    const sab = tphStatsCreate();
    const w = new Int32Array(sab);
    w[TphStat.HINTED + 1] = -16; // LO = 2^32 - 16
    tphStatsCount(w, dmaTph(1, 3), 20);
    tphStatsCount(w, dmaTph(1, 3), 2 ** 33 + 1);
    const s = tphStatsRead(sab);
    expect(s.hinted).toEqual({ runs: 2, bytes: 2 ** 32 - 16 + 20 + 2 ** 33 + 1 });
    expect(s.st[3]).toEqual({ runs: 2, bytes: 20 + 2 ** 33 + 1 });
    expect(() => tphStatsRead(new SharedArrayBuffer(4))).toThrow(RangeError);
  });
});

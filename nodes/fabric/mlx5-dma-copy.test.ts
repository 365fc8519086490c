// dmaCopy (fabric/dma.ts): the zero-intermediate-copy path the mlx5 NIC uses between two memory
// regions. Checked through a real IOMMU domain with scattered pages on both sides, against a BAR
// by bus address, for faults on either side and for the routing hook.
import { afterEach, describe, expect, it } from 'vitest';
import {
  type DmaCtxHandoff,
  IOMMU_READ,
  IOMMU_WRITE,
  iommuDeviceDmaCtx,
  iommuMap,
} from '../kernel/iommu/iommu.ts';
import { HostKernel } from '../kernel/kernel.ts';
import { DmaCtx, DmaOp, DmaStatus, dmaCopy } from './dma.ts';
import { DmaAccess, IommuFaultReason } from './iommu-layout.ts';
import { PAGE_SIZE } from './page.ts';

const open: { kernel: HostKernel; handoff: DmaCtxHandoff; ctx: DmaCtx }[] = [];

afterEach(() => {
  for (const o of open.splice(0)) {
    o.ctx.close();
    o.handoff.release();
    o.kernel.close();
  }
});

/** A kernel with one device; `map(pages, iova, prot)` maps pages in reverse physical order. */
function rig() {
  const kernel = new HostKernel({ ramBytes: 4 << 20 });
  const dev = kernel.addDevice('nic0');
  const dom = kernel.domainOf('nic0');
  const handoff = iommuDeviceDmaCtx(kernel.iommu, dev.iommuId!);
  const ctx = new DmaCtx(handoff.desc);
  open.push({ kernel, handoff, ctx });
  const map = (pages: number, iova: number, prot = IOMMU_READ | IOMMU_WRITE) => {
    const run = kernel.ramAlloc.allocContigPages(pages);
    // IOVA page i -> physical page pages-1-i: no two IOVA-adjacent pages merge.
    for (let i = 0; i < pages; i++)
      iommuMap(dom, iova + i * PAGE_SIZE, (run.pfn + pages - 1 - i) * PAGE_SIZE, PAGE_SIZE, prot);
    return (off: number) => {
      const page = Math.floor(off / PAGE_SIZE);
      return (run.pfn + pages - 1 - page) * PAGE_SIZE + (off % PAGE_SIZE);
    };
  };
  return { kernel, ctx, map, ram: kernel.ram.bytes };
}

describe('dmaCopy', () => {
  it('mlx5 - dmaCopy moves bytes between two scattered IOVA ranges with one set per run pair', () => {
    const { ctx, map, ram } = rig();
    const src = map(4, 0x10_0000);
    const dst = map(4, 0x20_0000);
    const len = 3 * PAGE_SIZE + 123;
    for (let i = 0; i < len; i++) ram[src(100 + i)] = (i * 13 + 1) & 0xff;
    const runs: [number, number][] = [];
    ctx.hook = (_c, op, _a, _p, n) => {
      runs.push([op, n]);
      return 0;
    };
    expect(dmaCopy(ctx, 0x10_0000 + 100, false, ctx, 0x20_0000 + 200, false, len)).toBe(DmaStatus.OK);
    for (let i = 0; i < len; i++) expect(ram[dst(200 + i)]).toBe((i * 13 + 1) & 0xff);
    expect(ram[dst(199)]).toBe(0);
    expect(ram[dst(200 + len)]).toBe(0);
    // every page is its own run on both sides: 4 source runs, 4 destination runs, reads and writes.
    expect(runs.filter(([op]) => op === DmaOp.READ).reduce((n, [, l]) => n + l, 0)).toBe(len);
    expect(runs.filter(([op]) => op === DmaOp.WRITE).reduce((n, [, l]) => n + l, 0)).toBe(len);
  });

  it('mlx5 - dmaCopy from a BAR by bus address into an IOVA range, and a destination without write permission faults PERM', () => {
    const { kernel, ctx, map, ram } = rig();
    const vram = kernel.addDeviceMemory('vram0', 4 * PAGE_SIZE);
    const win = kernel.physMap.regionToPhys(vram.region, 0)!;
    vram.region.bytes.fill(0x5a, 0, 2 * PAGE_SIZE);
    const dst = map(2, 0x30_0000);
    // a bus address equals the phys window address here (busOffset 0).
    expect(dmaCopy(ctx, win, true, ctx, 0x30_0000, false, 2 * PAGE_SIZE)).toBe(DmaStatus.OK);
    expect(ram[dst(0)]).toBe(0x5a);
    expect(ram[dst(2 * PAGE_SIZE - 1)]).toBe(0x5a);
    map(1, 0x40_0000, IOMMU_READ);
    expect(dmaCopy(ctx, 0x30_0000, false, ctx, 0x40_0000, false, 8)).toBe(DmaStatus.EFAULT);
    expect(kernel.iommu.faultLog.drain()).toMatchObject([
      { address: 0x40_0000, access: DmaAccess.WRITE, reason: IommuFaultReason.PERM },
    ]);
  });

  it('mlx5 - dmaCopy merges physically contiguous pages into one run across a page-table leaf boundary', () => {
    const kernel = new HostKernel({ ramBytes: 8 << 20 });
    const dev = kernel.addDevice('nic0');
    const dom = kernel.domainOf('nic0');
    const handoff = iommuDeviceDmaCtx(kernel.iommu, dev.iommuId!);
    const ctx = new DmaCtx(handoff.desc);
    open.push({ kernel, handoff, ctx });
    const pages = 600;
    const src = kernel.ramAlloc.allocContigPages(pages).pfn * PAGE_SIZE;
    const dst = kernel.ramAlloc.allocContigPages(pages).pfn * PAGE_SIZE;
    // a leaf maps 512 pages: start 100 pages before a leaf boundary on the source side.
    const sIova = 512 * PAGE_SIZE * 7 - 100 * PAGE_SIZE;
    const dIova = 512 * PAGE_SIZE * 20;
    iommuMap(dom, sIova, src, pages * PAGE_SIZE, IOMMU_READ | IOMMU_WRITE);
    iommuMap(dom, dIova, dst, pages * PAGE_SIZE, IOMMU_READ | IOMMU_WRITE);
    const ram = kernel.ram.bytes;
    for (let i = 0; i < pages * PAGE_SIZE; i += 997) ram[src + i] = (i >> 3) & 0xff;
    const runs: number[] = [];
    ctx.hook = (_c, _op, _a, _p, n) => {
      runs.push(n);
      return 0;
    };
    expect(dmaCopy(ctx, sIova, false, ctx, dIova, false, pages * PAGE_SIZE)).toBe(DmaStatus.OK);
    expect(runs).toEqual([pages * PAGE_SIZE, pages * PAGE_SIZE]);
    expect(
      Buffer.compare(ram.subarray(src, src + pages * PAGE_SIZE), ram.subarray(dst, dst + pages * PAGE_SIZE)),
    ).toBe(0);
  });

  it('mlx5 - dmaCopy stops at an unmapped source page after landing the earlier bytes, and rejects bad ranges', () => {
    const { kernel, ctx, map, ram } = rig();
    const src = map(1, 0x50_0000);
    const dst = map(2, 0x60_0000);
    ram.fill(7, src(0), src(0) + PAGE_SIZE);
    expect(dmaCopy(ctx, 0x50_0000, false, ctx, 0x60_0000, false, 2 * PAGE_SIZE)).toBe(DmaStatus.EFAULT);
    expect(ram[dst(PAGE_SIZE - 1)]).toBe(7);
    expect(ram[dst(PAGE_SIZE)]).toBe(0);
    expect(kernel.iommu.faultLog.drain()).toMatchObject([
      { address: 0x50_0000 + PAGE_SIZE, access: DmaAccess.READ, reason: IommuFaultReason.NOT_PRESENT },
    ]);
    expect(dmaCopy(ctx, -1, false, ctx, 0, false, 4)).toBe(DmaStatus.EINVAL);
    expect(dmaCopy(ctx, 0, false, ctx, 2 ** 52 - 2, false, 4)).toBe(DmaStatus.EINVAL);
    expect(dmaCopy(ctx, 0, false, ctx, 0, false, 0)).toBe(DmaStatus.OK);
    expect(kernel.iommu.faultLog.drain()).toEqual([]);
  });
});

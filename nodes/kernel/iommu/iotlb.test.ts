// The device IOTLB (fabric/iotlb.ts) against the kernel's invalidations: a warm cache never
// outlives an unmap, a remap, a detach or a new window, and a hit costs no table walk.
import { afterEach, describe, expect, it } from 'vitest';
import { dmaCopy, dmaFill, dmaRead, DmaStatus, dmaWrite } from '../../fabric/dma.ts';
import { IommuFaultReason } from '../../fabric/iommu-layout.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { MemRegionKind, memRegionCreate } from '../mm/region.ts';
import { testHost, type TestHost } from './fixtures/host.ts';
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IommuDomainType,
  iommuAttachDevice,
  iommuDetachDevice,
  iommuDomainAlloc,
  iommuMap,
  iommuUnmap,
} from './iommu.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const DEV = 0x0200;

describe('iotlb', () => {
  let host: TestHost;
  afterEach(() => host?.close());

  function setup() {
    host = testHost(8 << 20);
    const dom = iommuDomainAlloc(host.iommu, IommuDomainType.UNMANAGED);
    iommuAttachDevice(dom, DEV);
    return { dom, ctx: host.ctx(DEV) };
  }

  it('iotlb - a repeated DMA hits the cache: no table walk after the first', () => {
    const { dom, ctx } = setup();
    const run = host.pages.allocContigPages(16);
    iommuMap(dom, 0x40_0000, run.pfn * PAGE_SIZE, 16 * PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x40_0000, 1, 16 * PAGE_SIZE)).toBe(DmaStatus.OK);
    const walks = ctx.iotlb.misses;
    expect(walks).toBeGreaterThan(0);
    for (let i = 0; i < 10; i++) expect(dmaFill(ctx, 0x40_0000, 2, 16 * PAGE_SIZE)).toBe(DmaStatus.OK);
    expect(ctx.iotlb.misses).toBe(walks);
    expect(host.ram.bytes[run.pfn * PAGE_SIZE + 16 * PAGE_SIZE - 1]).toBe(2);
  });

  it('iotlb - buffers at aligned IOVAs do not evict each other', () => {
    const { dom, ctx } = setup();
    // IOVA allocators align: 256 MiB apart, the same low bits in every page number.
    const iovas = [1, 2, 3, 4].map((i) => i * 0x1000_0000);
    for (const iova of iovas) {
      // single scattered pages: one cache entry per page
      for (let p = 0; p < 32; p++) {
        const [r] = host.pages.allocPagesBulk(1, 1);
        iommuMap(dom, iova + p * PAGE_SIZE, r.pfn * PAGE_SIZE, PAGE_SIZE, RW);
      }
    }
    for (const iova of iovas) expect(dmaFill(ctx, iova, 3, 32 * PAGE_SIZE)).toBe(DmaStatus.OK);
    const walks = ctx.iotlb.misses;
    for (let round = 0; round < 3; round++)
      for (const iova of iovas) expect(dmaFill(ctx, iova, 4, 32 * PAGE_SIZE)).toBe(DmaStatus.OK);
    expect(ctx.iotlb.misses).toBe(walks);
  });

  it('iotlb - an unmap after the cache is warm makes the next DMA fault, nothing lands', () => {
    const { dom, ctx } = setup();
    const run = host.pages.allocContigPages(2);
    const phys = run.pfn * PAGE_SIZE;
    iommuMap(dom, 0x10_0000, phys, 2 * PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x10_0000, 5, 2 * PAGE_SIZE)).toBe(DmaStatus.OK);
    expect(iommuUnmap(dom, 0x10_0000, 2 * PAGE_SIZE)).toBe(2 * PAGE_SIZE);
    expect(dmaFill(ctx, 0x10_0000, 6, 8)).toBe(DmaStatus.EFAULT);
    expect(host.ram.bytes[phys]).toBe(5);
    expect(host.iommu.faultLog.drain()).toMatchObject([
      { address: 0x10_0000, reason: IommuFaultReason.NOT_PRESENT },
    ]);
  });

  it('iotlb - a remap to other pages is followed by the next DMA, not the cached translation', () => {
    const { dom, ctx } = setup();
    const a = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    const b = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    iommuMap(dom, 0x20_0000, a, PAGE_SIZE, RW);
    const src = new Uint8Array([1, 2, 3, 4]);
    expect(dmaWrite(ctx, 0x20_0000, src, 0, 4)).toBe(DmaStatus.OK);
    iommuUnmap(dom, 0x20_0000, PAGE_SIZE);
    iommuMap(dom, 0x20_0000, b, PAGE_SIZE, IOMMU_READ);
    // read-only now: the write faults PERM; the read comes from the new page.
    expect(dmaWrite(ctx, 0x20_0000, src, 0, 4)).toBe(DmaStatus.EFAULT);
    host.ram.bytes.set([9, 9], b);
    const got = new Uint8Array(2);
    expect(dmaRead(ctx, 0x20_0000, 2, got)).toBe(DmaStatus.OK);
    expect([...got]).toEqual([9, 9]);
    expect([...host.ram.bytes.subarray(a, a + 4)]).toEqual([1, 2, 3, 4]);
  });

  it('iotlb - an unmap during a DMA (from the routing hook) stops it at the next run', () => {
    const { dom, ctx } = setup();
    const pages = host.pages.allocPagesBulk(3, 1); // three runs: one per page
    for (const [i, r] of pages.entries())
      iommuMap(dom, 0x30_0000 + i * PAGE_SIZE, r.pfn * PAGE_SIZE, PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x30_0000, 1, 3 * PAGE_SIZE)).toBe(DmaStatus.OK); // warm
    let runs = 0;
    ctx.hook = () => {
      if (++runs === 1) iommuUnmap(dom, 0x30_0000 + PAGE_SIZE, 2 * PAGE_SIZE);
      return 0;
    };
    expect(dmaFill(ctx, 0x30_0000, 7, 3 * PAGE_SIZE)).toBe(DmaStatus.EFAULT);
    expect(runs).toBe(1);
    expect(host.ram.bytes[pages[0].pfn * PAGE_SIZE]).toBe(7);
    expect(host.ram.bytes[pages[1].pfn * PAGE_SIZE]).toBe(1);
    expect(host.iommu.faultLog.drain()).toMatchObject([
      { address: 0x30_0000 + PAGE_SIZE, reason: IommuFaultReason.NOT_PRESENT },
    ]);
  });

  it('iotlb - detach and attach to another domain flush it', () => {
    const { dom, ctx } = setup();
    const a = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    const b = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    iommuMap(dom, 0x50_0000, a, PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x50_0000, 1, 16)).toBe(DmaStatus.OK);
    iommuDetachDevice(dom, DEV);
    expect(dmaFill(ctx, 0x50_0000, 2, 16)).toBe(DmaStatus.EFAULT);
    const other = iommuDomainAlloc(host.iommu, IommuDomainType.UNMANAGED);
    iommuMap(other, 0x50_0000, b, PAGE_SIZE, RW);
    iommuAttachDevice(other, DEV);
    expect(dmaFill(ctx, 0x50_0000, 3, 16)).toBe(DmaStatus.OK);
    expect(host.ram.bytes[a]).toBe(1);
    expect(host.ram.bytes[b]).toBe(3);
  });

  it('iotlb - a hook that remaps windows and runs its own DMA does not redirect the run it was called for', () => {
    const { dom, ctx } = setup();
    const b1 = memRegionCreate('b1', MemRegionKind.BAR, 4 * PAGE_SIZE);
    const b2 = memRegionCreate('b2', MemRegionKind.BAR, 4 * PAGE_SIZE);
    const b3 = memRegionCreate('b3', MemRegionKind.BAR, 4 * PAGE_SIZE);
    const w1 = host.physMap.addBar(b1);
    const w2 = host.physMap.addBar(b2);
    iommuMap(dom, 0x10_0000, w2.phys, PAGE_SIZE, RW);
    iommuMap(dom, 0x20_0000, host.pages.allocContigPages(1).pfn * PAGE_SIZE, PAGE_SIZE, RW);
    let once = false;
    ctx.hook = (_c, _op, addr) => {
      if (!once && addr === 0x10_0000) {
        once = true;
        // the window list changes under the run, and the nested DMA syncs the ctx to it
        host.physMap.removeWindow(w1.phys);
        host.physMap.addBar(b3);
        expect(dmaRead(ctx, 0x20_0000, 4, new Uint8Array(4))).toBe(DmaStatus.OK);
      }
      return 0;
    };
    expect(dmaFill(ctx, 0x10_0000, 0xab, 16)).toBe(DmaStatus.OK);
    expect([b2.bytes[0], b3.bytes[0], b1.bytes[0]]).toEqual([0xab, 0, 0]);
  });

  it('iotlb - a loopback copy whose source walk sees a map made after an unmap does not write through the unmapped destination', () => {
    const { dom, ctx } = setup();
    const S = 0x10_0000;
    const D = 0x20_0000;
    const s0 = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    const s1 = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    const d = host.pages.allocContigPages(2).pfn * PAGE_SIZE;
    iommuMap(dom, S, s0, PAGE_SIZE, RW);
    iommuMap(dom, D, d, 2 * PAGE_SIZE, RW);
    host.ram.bytes.fill(0x11, s0, s0 + PAGE_SIZE);
    // warm the cache: the first source page and both destination pages
    expect(dmaFill(ctx, D, 0, 2 * PAGE_SIZE)).toBe(DmaStatus.OK);
    expect(dmaCopy(ctx, S, false, ctx, D, false, 16)).toBe(DmaStatus.OK);
    host.ram.bytes.fill(0, d, d + 2 * PAGE_SIZE);
    // the kernel runs between two loads of the device's source-side table walk: it unmaps the
    // destination, then maps the source's second page, which the walk then reads.
    const load = Atomics.load;
    const table = (dom as unknown as { pgtable: { sab: SharedArrayBuffer } }).pgtable.sab;
    let armed = true;
    const patched = ((a: Int32Array, i: number) => {
      if (armed && a.buffer === table) {
        armed = false;
        iommuUnmap(dom, D, 2 * PAGE_SIZE);
        iommuMap(dom, S + PAGE_SIZE, s1, PAGE_SIZE, RW);
      }
      return load(a, i);
    }) as typeof Atomics.load;
    Atomics.load = patched;
    let st: number;
    try {
      st = dmaCopy(ctx, S, false, ctx, D, false, 2 * PAGE_SIZE);
    } finally {
      Atomics.load = load;
    }
    expect(armed).toBe(false);
    expect(st).toBe(DmaStatus.EFAULT);
    expect(host.ram.bytes[d]).toBe(0);
  });

  it('iotlb - a window added after the cache is warm is reachable at the next DMA', () => {
    const { dom, ctx } = setup();
    const ram = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    iommuMap(dom, 0x60_0000, ram, PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x60_0000, 1, 16)).toBe(DmaStatus.OK);
    const bar = memRegionCreate('bar-late', MemRegionKind.BAR, 4 * PAGE_SIZE);
    const phys = host.physMap.addBar(bar).phys;
    iommuMap(dom, 0x70_0000, phys, PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x70_0000, 8, 16)).toBe(DmaStatus.OK);
    expect(bar.bytes[15]).toBe(8);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { onTrace } from '../../../common/trace.ts';
import { dmaFill, dmaRead, DmaStatus, dmaWrite } from '../../fabric/dma.ts';
import { DmaAccess, IommuFaultReason } from '../../fabric/iommu-layout.ts';
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
  iommuDomainFree,
  iommuIovaToPhys,
  iommuMap,
  iommuUnmap,
} from './iommu.ts';
import { expectErr } from '../../../test/support/expect-errno.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const DEV = 0x0100; // bus 1, dev 0, fn 0

describe('iommu', () => {
  let host: TestHost;
  afterEach(() => host?.close());

  function pagingSetup(type: IommuDomainType = IommuDomainType.UNMANAGED) {
    host = testHost();
    const dom = iommuDomainAlloc(host.iommu, type);
    iommuAttachDevice(dom, DEV);
    return { dom, ctx: host.ctx(DEV) };
  }

  it('iommu - map then DMA write and read land in the mapped physical pages', () => {
    const { dom, ctx } = pagingSetup();
    const run = host.pages.allocContigPages(2);
    const paddr = run.pfn * PAGE_SIZE;
    iommuMap(dom, 0x10000, paddr, 2 * PAGE_SIZE, RW);
    const src = Uint8Array.from({ length: 6000 }, (_, i) => i & 0xff);
    expect(dmaWrite(ctx, 0x10000 + 100, src, 0, src.length)).toBe(DmaStatus.OK);
    expect(host.ram.bytes.subarray(paddr + 100, paddr + 6100)).toEqual(src);
    const dst = new Uint8Array(6000);
    expect(dmaRead(ctx, 0x10000 + 100, 6000, dst, 0)).toBe(DmaStatus.OK);
    expect(dst).toEqual(src);
    expect(dmaFill(ctx, 0x10000, 0xee, 8)).toBe(DmaStatus.OK);
    expect([...host.ram.bytes.subarray(paddr, paddr + 8)]).toEqual(Array(8).fill(0xee));
    expect(host.iommu.faultLog.drain()).toEqual([]);
  });

  it('iommu - write through a read-only entry faults and is logged', () => {
    const { dom, ctx } = pagingSetup();
    iommuMap(dom, 0x20000, 0x3000, PAGE_SIZE, IOMMU_READ);
    host.ram.bytes.fill(7, 0x3000, 0x4000);
    const buf = new Uint8Array(64).fill(1);
    expect(dmaWrite(ctx, 0x20010, buf, 0, 64)).toBe(DmaStatus.EFAULT);
    expect(host.ram.bytes[0x3010]).toBe(7); // nothing landed
    expect(dmaRead(ctx, 0x20010, 64, buf)).toBe(DmaStatus.OK);
    expect(buf[0]).toBe(7);
    expect(host.iommu.faultLog.drain()).toEqual([
      {
        deviceId: DEV,
        domainId: dom.id,
        address: 0x20010,
        access: DmaAccess.WRITE,
        bus: false,
        reason: IommuFaultReason.PERM,
        length: 64,
      },
    ]);
    expect(host.iommu.faultLog.count).toBe(1);
  });

  it('iommu - read through a write-only entry faults PERM with access READ', () => {
    const { dom, ctx } = pagingSetup();
    iommuMap(dom, 0x20000, 0x3000, PAGE_SIZE, IOMMU_WRITE);
    expect(dmaRead(ctx, 0x20000, 8, new Uint8Array(8))).toBe(DmaStatus.EFAULT);
    const [f] = host.iommu.faultLog.drain();
    expect([f.access, f.reason]).toEqual([DmaAccess.READ, IommuFaultReason.PERM]);
  });

  it('iommu - unmap then access faults NOT_PRESENT, at the first unmapped page', () => {
    const { dom, ctx } = pagingSetup();
    iommuMap(dom, 0x40000, 0x8000, 3 * PAGE_SIZE, RW);
    expect(iommuUnmap(dom, 0x41000, 2 * PAGE_SIZE)).toBe(2 * PAGE_SIZE);
    const src = new Uint8Array(2 * PAGE_SIZE).fill(9);
    expect(dmaWrite(ctx, 0x40000, src, 0, src.length)).toBe(DmaStatus.EFAULT);
    expect(host.ram.bytes[0x8fff]).toBe(9); // the mapped first page landed, like completed TLPs
    expect(host.ram.bytes[0x9000]).toBe(0);
    const [f] = host.iommu.faultLog.drain();
    expect(f).toMatchObject({ address: 0x41000, reason: IommuFaultReason.NOT_PRESENT, length: PAGE_SIZE });
    expect(dmaRead(ctx, 0x7f000, 1, new Uint8Array(1))).toBe(DmaStatus.EFAULT); // never mapped
    expect(host.iommu.faultLog.drain()[0].reason).toBe(IommuFaultReason.NOT_PRESENT);
  });

  it('iommu - map over a mapped page is EEXIST and leaves nothing of the new range mapped', () => {
    const { dom } = pagingSetup();
    iommuMap(dom, 0x3000, 0x3000, PAGE_SIZE, RW);
    expectErr(
      () => iommuMap(dom, 0x1000, 0x10000, 3 * PAGE_SIZE, RW),
      'EEXIST',
      /iova 0x3000 is already mapped/,
    );
    expect(iommuIovaToPhys(dom, 0x1000)).toBeNull();
    expect(iommuIovaToPhys(dom, 0x2000)).toBeNull();
    expect(iommuIovaToPhys(dom, 0x3123)).toBe(0x3123);
  });

  it('iommu - unmap stops at the first hole and returns the bytes unmapped', () => {
    const { dom } = pagingSetup();
    iommuMap(dom, 0x1000, 0x1000, 2 * PAGE_SIZE, RW);
    iommuMap(dom, 0x4000, 0x4000, PAGE_SIZE, RW);
    expect(iommuUnmap(dom, 0x1000, 4 * PAGE_SIZE)).toBe(2 * PAGE_SIZE);
    expect(iommuIovaToPhys(dom, 0x4000)).toBe(0x4000);
    expect(iommuUnmap(dom, 0x1000, PAGE_SIZE)).toBe(0);
  });

  it('iommu - bad map arguments are EINVAL naming the argument', () => {
    const { dom } = pagingSetup();
    expectErr(() => iommuMap(dom, 0x1001, 0, PAGE_SIZE, RW), 'EINVAL', /iova 4097 must be page aligned/);
    expectErr(() => iommuMap(dom, 0x1000, 0x10, PAGE_SIZE, RW), 'EINVAL', /paddr 16 must be page aligned/);
    expectErr(() => iommuMap(dom, 0x1000, 0, 100, RW), 'EINVAL', /size 100 must be a positive multiple/);
    expectErr(() => iommuMap(dom, 0x1000, 0, PAGE_SIZE, 0), 'EINVAL', /prot 0 must include IOMMU_READ/);
    expectErr(() => iommuMap(dom, 0x1000, 0, PAGE_SIZE, 1 << 9), 'EINVAL', /prot 512/);
    expectErr(
      () => iommuMap(dom, 2 ** 39 - PAGE_SIZE, 0, 2 * PAGE_SIZE, RW),
      'EINVAL',
      /exceeds the aperture/,
    );
    expectErr(() => iommuMap(dom, 0x1000, 2 ** 52 - PAGE_SIZE, 2 * PAGE_SIZE, RW), 'EINVAL', /paddr/);
    const ident = iommuDomainAlloc(host.iommu, IommuDomainType.IDENTITY);
    expectErr(() => iommuMap(ident, 0x1000, 0, PAGE_SIZE, RW), 'EINVAL', /not a paging domain/);
    expectErr(() => iommuDomainAlloc(host.iommu, 9 as IommuDomainType), 'EINVAL', /type must be/);
    expectErr(
      () => iommuDomainAlloc(host.iommu, IommuDomainType.DMA, { apertureBits: 50 }),
      'EINVAL',
      /apertureBits/,
    );
    expectErr(() => iommuAttachDevice(ident, 0), 'EINVAL', /deviceId must be/);
  });

  it('iommu - physically contiguous pages merge into one run, scattered pages do not', () => {
    const { dom, ctx } = pagingSetup();
    const runs: number[] = [];
    ctx.hook = (_c, _op, _a, _p, len) => {
      runs.push(len);
      return 0;
    };
    const contig = host.pages.allocContigPages(4);
    iommuMap(dom, 0x100000, contig.pfn * PAGE_SIZE, 4 * PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x100000, 1, 4 * PAGE_SIZE)).toBe(0);
    expect(runs).toEqual([4 * PAGE_SIZE]);
    runs.length = 0;
    const scattered = host.pages.allocPagesBulk(4, 1);
    for (const [i, r] of scattered.entries()) {
      iommuMap(dom, 0x200000 + i * PAGE_SIZE, r.pfn * PAGE_SIZE, PAGE_SIZE, RW);
    }
    expect(dmaFill(ctx, 0x200000, 2, 4 * PAGE_SIZE)).toBe(0);
    expect(runs).toEqual([PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, PAGE_SIZE]);
    for (const r of scattered) expect(host.ram.bytes[r.pfn * PAGE_SIZE + 5]).toBe(2);
  });

  it('iommu - a hook returning an errno stops the DMA before the copy', () => {
    const { dom, ctx } = pagingSetup();
    iommuMap(dom, 0x1000, 0x1000, PAGE_SIZE, RW);
    ctx.hook = () => -5;
    expect(dmaFill(ctx, 0x1000, 3, 16)).toBe(-5);
    expect(host.ram.bytes[0x1000]).toBe(0);
  });

  it('iommu - identity passes through; blocked domains and detached devices fault BLOCKED', () => {
    host = testHost();
    const ident = iommuDomainAlloc(host.iommu, IommuDomainType.IDENTITY);
    iommuAttachDevice(ident, DEV);
    const ctx = host.ctx(DEV);
    expect(dmaFill(ctx, 0x5000, 4, PAGE_SIZE * 2)).toBe(0);
    expect(host.ram.bytes[0x6fff]).toBe(4);
    expect(iommuIovaToPhys(ident, 0x5000)).toBe(0x5000);
    iommuDetachDevice(ident, DEV);
    expect(dmaFill(ctx, 0x5000, 5, 1)).toBe(DmaStatus.EFAULT);
    const blocked = iommuDomainAlloc(host.iommu, IommuDomainType.BLOCKED);
    iommuAttachDevice(blocked, DEV);
    expect(dmaRead(ctx, 0x5000, 1, new Uint8Array(1))).toBe(DmaStatus.EFAULT);
    const faults = host.iommu.faultLog.drain();
    expect(faults.map((f) => [f.domainId, f.reason])).toEqual([
      [0, IommuFaultReason.BLOCKED],
      [blocked.id, IommuFaultReason.BLOCKED],
    ]);
    expect(host.ram.bytes[0x5000]).toBe(4);
  });

  it('iommu - attach while attached is EBUSY; a domain with devices cannot be freed', () => {
    const { dom, ctx } = pagingSetup();
    const other = iommuDomainAlloc(host.iommu, IommuDomainType.DMA);
    expectErr(() => iommuAttachDevice(other, DEV), 'EBUSY', /attached to domain \d+; detach first/);
    expectErr(() => iommuDomainFree(dom), 'EBUSY', /still has devices 256/);
    iommuDetachDevice(dom, DEV);
    iommuAttachDevice(other, DEV);
    iommuMap(other, 0x1000, 0x2000, PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x1000, 6, 1)).toBe(0); // the ctx picked up the new domain from its port
    expect(ctx.knownDomain(other.id)).toBe(true);
    expect(host.ram.bytes[0x2000]).toBe(6);
    iommuDomainFree(dom);
    expectErr(() => iommuAttachDevice(dom, DEV), 'EINVAL', /was freed/);
  });

  it('iommu - DMA to a mapped but unbacked physical address is an unsupported request', () => {
    const { dom, ctx } = pagingSetup();
    iommuMap(dom, 0x1000, 2 ** 40, PAGE_SIZE, RW);
    expect(dmaFill(ctx, 0x1000, 1, 8)).toBe(DmaStatus.EIO);
    expect(host.iommu.faultLog.drain()[0].reason).toBe(IommuFaultReason.UNSUPPORTED_REQUEST);
  });

  it('iommu - physical addresses above 2^44 round-trip through the two-word PTE', () => {
    const { dom, ctx } = pagingSetup();
    const vram = memRegionCreate('vram0', MemRegionKind.VRAM, 1 << 20);
    const bar = host.physMap.addWindow({ kind: 1, phys: 2 ** 51 + 2 ** 33, region: vram, size: 1 << 20 });
    iommuMap(dom, 0x1000, bar.phys + 0x3000, PAGE_SIZE, RW);
    expect(iommuIovaToPhys(dom, 0x1abc)).toBe(bar.phys + 0x3abc);
    expect(dmaFill(ctx, 0x1abc, 0x5a, 4)).toBe(0);
    expect(vram.bytes[0x3abc]).toBe(0x5a);
  });

  it('iommu - a full fault ring counts overflow and never blocks the producer', () => {
    host = testHost(1 << 20, 4);
    const ctx = host.ctx(DEV); // attached to nothing: every access faults
    for (let i = 0; i < 10; i++) expect(dmaFill(ctx, 0x1000 * i, 0, 1)).toBe(DmaStatus.EFAULT);
    expect(host.iommu.faultLog.overflow).toBe(6);
    expect(host.iommu.faultLog.drain().map((f) => f.address)).toEqual([0, 0x1000, 0x2000, 0x3000]);
    expect(dmaFill(ctx, 0xa000, 0, 1)).toBe(DmaStatus.EFAULT);
    expect(host.iommu.faultLog.drain().map((f) => f.address)).toEqual([0xa000]);
    expect(host.iommu.faultLog.count).toBe(5);
  });

  it('iommu - drained faults are published on the iommuFault trace point', () => {
    host = testHost();
    const seen: unknown[] = [];
    const off = onTrace('iommuFault', (m) => seen.push(m));
    try {
      dmaRead(host.ctx(DEV), 0x1000, 4, new Uint8Array(4));
      host.iommu.faultLog.drain();
    } finally {
      off();
    }
    expect(seen).toEqual([
      expect.objectContaining({ deviceId: DEV, address: 0x1000, reasonName: 'BLOCKED' }),
    ]);
  });
});

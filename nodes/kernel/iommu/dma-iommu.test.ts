import { afterEach, describe, expect, it } from 'vitest';
import { dmaFill, dmaRead, DmaStatus } from '../../fabric/dma.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { iommuDmaAllocIova, iommuDmaFreeIova, iommuDmaMapSg, iommuDmaUnmapSg } from './dma-iommu.ts';
import { testHost, type TestHost } from './fixtures/host.ts';
import {
  IOMMU_READ,
  IOMMU_WRITE,
  IommuDomainType,
  iommuAttachDevice,
  iommuDomainAlloc,
  iommuIovaToPhys,
  iommuMap,
} from './iommu.ts';
import { expectErr } from '../../../test/support/expect-errno.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const DEV = 0x0200;

describe('dma-iommu', () => {
  let host: TestHost;
  afterEach(() => host?.close());

  it('dma-iommu - map_sg puts scattered pages behind one size-aligned IOVA below 4 GiB', () => {
    host = testHost();
    const dom = iommuDomainAlloc(host.iommu, IommuDomainType.DMA);
    iommuAttachDevice(dom, DEV);
    const ctx = host.ctx(DEV);
    const runs = host.pages.allocPagesBulk(3, 1);
    const segs = runs.map((r) => ({ addr: r.pfn * PAGE_SIZE, length: r.count * PAGE_SIZE }));
    const [m] = iommuDmaMapSg(dom, segs, RW);
    expect(m.length).toBe(3 * PAGE_SIZE);
    expect(m.addr).toBeLessThan(2 ** 32);
    expect(m.addr % (4 * PAGE_SIZE)).toBe(0);
    expect(dmaFill(ctx, m.addr + PAGE_SIZE - 2, 0x61, 4)).toBe(DmaStatus.OK); // crosses two sg entries
    expect(host.ram.bytes[segs[0].addr + PAGE_SIZE - 1]).toBe(0x61);
    expect(host.ram.bytes[segs[1].addr + 1]).toBe(0x61);
    iommuDmaUnmapSg(dom, [m]);
    expect(dom.iovad!.count).toBe(0);
    expect(dmaRead(ctx, m.addr, 1, new Uint8Array(1))).toBe(DmaStatus.EFAULT);
    expectErr(() => iommuDmaUnmapSg(dom, [m]), 'EINVAL', /was not returned by iommuDmaMapSg/);
  });

  it('dma-iommu - IOVA allocation falls back above 4 GiB only when asked (forceDac) or full', () => {
    host = testHost();
    const dom = iommuDomainAlloc(host.iommu, IommuDomainType.DMA, { apertureBits: 34 });
    expect(iommuDmaAllocIova(dom, PAGE_SIZE)).toBe(2 ** 32 - PAGE_SIZE);
    expect(iommuDmaAllocIova(dom, PAGE_SIZE, undefined, true)).toBe(2 ** 34 - PAGE_SIZE);
    dom.iovad!.reserveIova(1, 2 ** 20 - 2); // the rest of the 32-bit space is taken...
    expect(iommuDmaAllocIova(dom, PAGE_SIZE)).toBe(2 ** 34 - 2 * PAGE_SIZE); // ...so DAC
    expect(iommuDmaAllocIova(dom, PAGE_SIZE, 2 ** 33 - 1)).toBe(2 ** 33 - PAGE_SIZE);
    iommuDmaFreeIova(dom, 2 ** 32 - PAGE_SIZE);
    expectErr(
      () => iommuDmaFreeIova(dom, 2 ** 32 - PAGE_SIZE),
      'EINVAL',
      /does not start an allocated range/,
    );
    expectErr(() => iommuDmaAllocIova(dom, 0), 'EINVAL', /size must be a positive integer, got 0/);
    expectErr(
      () => iommuDmaAllocIova(dom, PAGE_SIZE, 5),
      'EINVAL',
      /dmaLimit must be an integer >= 4096, got 5/,
    );
  });

  it('dma-iommu - identity domains return physical addresses; unmanaged and blocked domains refuse', () => {
    host = testHost();
    const segs = [{ addr: 0x2000, length: PAGE_SIZE }];
    expect(iommuDmaMapSg(iommuDomainAlloc(host.iommu, IommuDomainType.IDENTITY), segs, RW)).toEqual(segs);
    const unmanaged = iommuDomainAlloc(host.iommu, IommuDomainType.UNMANAGED);
    expectErr(() => iommuDmaMapSg(unmanaged, segs, RW), 'EINVAL', /is not a DMA-API domain/);
    const blocked = iommuDomainAlloc(host.iommu, IommuDomainType.BLOCKED);
    expectErr(() => iommuDmaAllocIova(blocked, PAGE_SIZE), 'EINVAL', /is not a DMA-API domain/);
  });

  it('dma-iommu - bad segments are EINVAL naming segs[i]; a failed map leaves nothing behind', () => {
    host = testHost();
    const dom = iommuDomainAlloc(host.iommu, IommuDomainType.DMA);
    expectErr(() => iommuDmaMapSg(dom, [], RW), 'EINVAL', /segs must be a non-empty array/);
    expectErr(
      () =>
        iommuDmaMapSg(
          dom,
          [
            { addr: 0, length: PAGE_SIZE },
            { addr: 0x1800, length: PAGE_SIZE },
          ],
          RW,
        ),
      'EINVAL',
      /segs\[1\] \{addr 6144, length 4096\} must be page aligned/,
    );
    // squat on the second page of the IOVA the next 2-page allocation will get.
    iommuMap(dom, 2 ** 32 - PAGE_SIZE, 0x9000, PAGE_SIZE, RW);
    const two = [
      { addr: 0x1000, length: PAGE_SIZE },
      { addr: 0x5000, length: PAGE_SIZE },
    ];
    expectErr(() => iommuDmaMapSg(dom, two, RW), 'EEXIST', /already mapped/);
    expect(iommuIovaToPhys(dom, 2 ** 32 - 2 * PAGE_SIZE)).toBeNull();
    expect(dom.iovad!.count).toBe(0);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { DmaStatus } from '../../fabric/dma.ts';
import { DmaAccess } from '../../fabric/iommu-layout.ts';
import { HostKernel } from '../kernel.ts';
import {
  dmaBufAttach,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufPin,
  dmaBufPut,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufUnpin,
} from './dma-buf.ts';
import { dmaBufVmapUnlocked } from './dma-buf-cpu.ts';
import { type DmaFence, dmaFenceGetStatus, dmaFenceSignal, dmaFenceWaitTimeout } from './dma-fence.ts';
import {
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
} from './dma-resv.ts';
import { deviceDma, pattern } from './fixtures/host.ts';
import { mockFence } from './fixtures/probe-exporter.ts';
import { dmaHeapBufferAlloc } from './heaps/dma-heap.ts';
import { MockExporter, Placement } from './mock-exporter.ts';
import { DmaDataDirection, PAGE_SIZE } from './scatterlist.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';

const BIDI = DmaDataDirection.BIDIRECTIONAL;
let kernels: HostKernel[] = [];
const cleanups: Array<() => void> = [];

function host(): HostKernel {
  const k = new HostKernel({ ramBytes: 8 << 20 });
  kernels.push(k);
  return k;
}

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  for (const k of kernels) k.close();
  kernels = [];
});

describe('system heap', () => {
  it('system-heap - a device writes through its IOMMU mapping and the CPU reads the same bytes', async () => {
    const k = host();
    const nic = k.addDevice('nic0');
    const dma = deviceDma(k, nic);
    cleanups.push(() => dma.close());
    const buf = dmaHeapBufferAlloc(k.heaps.find('system'), 64 * 1024, 0, 0);
    const a = await dmaBufAttach(buf, nic);
    const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
    const data = pattern(64 * 1024, 3);
    expect(dma.write(sgt, 0, data)).toBe(0);
    const view = await dmaBufVmapUnlocked(buf);
    const back = new Uint8Array(data.length);
    view.read(0, back);
    expect(back).toEqual(data);
    expect(dma.read(sgt, 100, 50).data).toEqual(data.subarray(100, 150));
    await dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
    // After unmap the IOVA is gone: the device's access faults and is logged, never lands.
    k.iommu.faultLog.drain();
    expect(dma.write(sgt, 0, data.subarray(0, 16))).toBe(DmaStatus.EFAULT);
    const faults = k.iommu.faultLog.drain();
    expect(faults).toHaveLength(1);
    expect(faults[0]).toMatchObject({
      deviceId: nic.iommuId,
      address: sgt.entries[0].dmaAddress,
      access: DmaAccess.WRITE,
    });
  });

  it('system-heap - pages are scattered: the page side has several runs, the IOMMU side one range', async () => {
    const k = host();
    const nic = k.addDevice('nic0');
    const buf = dmaHeapBufferAlloc(k.heaps.find('system'), 256 * 1024, 0, 0);
    const a = await dmaBufAttach(buf, nic);
    await dmaResvLock(buf.resv, null);
    const sgt = await dmaBufMapAttachment(a, BIDI);
    const original = a.mappings.get(sgt)!.sgt;
    expect(original.origNents).toBeGreaterThan(1);
    expect(sgt.entries).toHaveLength(1);
    expect(sgt.length).toBe(256 * 1024);
    await dmaBufUnmapAttachment(a, sgt, BIDI);
    dmaResvUnlock(buf.resv);
  });

  it('system-heap - release returns the pages to the allocator', async () => {
    const k = host();
    const free0 = k.ramAlloc.freePages;
    const buf = dmaHeapBufferAlloc(k.heaps.find('system'), 10 * PAGE_SIZE + 1, 0, 0);
    expect(buf.size).toBe(11 * PAGE_SIZE);
    expect(k.ramAlloc.freePages).toBe(free0 - 11);
    dmaBufPut(buf);
    expect(k.ramAlloc.freePages).toBe(free0);
  });

  it('dma-heap - ALLOC rejects len 0, unknown fd_flags and heap_flags with EINVAL; unknown heap is ENOENT', async () => {
    const k = host();
    const heap = k.heaps.find('system');
    expect((await expectCode(() => dmaHeapBufferAlloc(heap, 0, 0, 0), 'EINVAL')).message).toMatch(/len 0/);
    expect((await expectCode(() => dmaHeapBufferAlloc(heap, 4096, 0o100, 0), 'EINVAL')).message).toMatch(
      /fd_flags/,
    );
    expect((await expectCode(() => dmaHeapBufferAlloc(heap, 4096, 0, 1), 'EINVAL')).message).toMatch(
      /heap_flags/,
    );
    expect((await expectCode(() => k.heaps.find('cma'), 'ENOENT')).message).toMatch(/"cma"/);
    await expectCode(() => dmaHeapBufferAlloc(heap, 1 << 30, 0, 0), 'ENOMEM');
  });
});

describe('mock exporter', () => {
  async function addFence(buf: MockExporter['dmabuf'], f: DmaFence, usage: DmaResvUsage) {
    await dmaResvLock(buf.resv, null);
    dmaResvReserveFences(buf.resv, 1);
    dmaResvAddFence(buf.resv, f, usage);
    dmaResvUnlock(buf.resv);
  }

  it('mock-exporter - scenario 7: move invalidates the dynamic importer under the lock; the re-map points to new memory with the data', async () => {
    const k = host();
    const exp = MockExporter.create(k.mockExporterEnv(1 << 20), 64 * 1024);
    const nic = k.addDevice('nic0');
    const dma = deviceDma(k, nic);
    cleanups.push(() => dma.close());
    const log: string[] = [];
    const a = await dmaBufDynamicAttach(exp.dmabuf, nic, {
      allowPeer2peer: true,
      invalidateMappings: (att) => log.push(`invalidate locked=${att.dmabuf.resv.lock.isLocked}`),
    });
    await dmaResvLock(exp.dmabuf.resv, null);
    const old = await dmaBufMapAttachment(a, BIDI);
    dmaResvUnlock(exp.dmabuf.resv);
    const data = pattern(64 * 1024, 9);
    expect(dma.write(old, 0, data)).toBe(0);
    const oldPfn = exp.pages.runs[0].pfn;

    const kernelFence = await exp.move(Placement.SYSTEM);
    expect(log).toEqual(['invalidate locked=true']);
    expect(exp.placement).toBe('system');
    // The importer re-maps under the lock and gates its DMA on the KERNEL fence (rule 21b).
    await dmaResvLock(exp.dmabuf.resv, null);
    await dmaBufUnmapAttachment(a, old, BIDI);
    const fresh = await dmaBufMapAttachment(a, BIDI);
    dmaResvUnlock(exp.dmabuf.resv);
    expect(await withDeadline(dmaFenceWaitTimeout(kernelFence, 2_000), 2_000, 'move fence')).toBeGreaterThan(
      0,
    );
    expect(dmaFenceGetStatus(kernelFence)).toBe(1);
    expect(dma.read(fresh, 0, data.length).data).toEqual(data);
    expect(exp.env.vram.isAllocated(oldPfn)).toBe(false);
  });

  it('mock-exporter - scenario 9: old storage is not freed while an importer BOOKKEEP fence is pending', async () => {
    const k = host();
    const exp = MockExporter.create(k.mockExporterEnv(1 << 20), 16 * 1024);
    const oldRuns = exp.pages.runs.map((r) => r.pfn);
    const busy = mockFence();
    await addFence(exp.dmabuf, busy, DmaResvUsage.BOOKKEEP);
    const kf = await exp.move(Placement.SYSTEM);
    await new Promise((r) => setImmediate(r));
    expect(kf.signaledFlag).toBe(false);
    expect(oldRuns.every((pfn) => exp.env.vram.isAllocated(pfn))).toBe(true);
    dmaFenceSignal(busy);
    await withDeadline(dmaFenceWaitTimeout(kf, 2_000), 2_000, 'move fence');
    expect(oldRuns.some((pfn) => exp.env.vram.isAllocated(pfn))).toBe(false);
  });

  it('mock-exporter - a move whose old fence never signals fails its KERNEL fence and keeps the old pages', async () => {
    const k = host();
    const exp = MockExporter.create(k.mockExporterEnv(1 << 20, { fenceTimeoutMs: 20 }), 16 * 1024);
    const pfn = exp.pages.runs[0].pfn;
    await addFence(exp.dmabuf, mockFence(), DmaResvUsage.WRITE);
    const kf = await exp.move();
    await withDeadline(dmaFenceWaitTimeout(kf, 2_000), 2_000, 'move fence');
    expect(dmaFenceGetStatus(kf)).toBe(-110);
    expect(exp.leakedMoves).toBe(1);
    expect(exp.env.vram.isAllocated(pfn)).toBe(true);
  });

  it('mock-exporter - scenario 5: a static importer pins on map; move is EBUSY while mapped and allowed after unmap', async () => {
    const k = host();
    const exp = MockExporter.create(k.mockExporterEnv(1 << 20), 16 * 1024, Placement.SYSTEM);
    const disp = k.addDevice('display0');
    const a = await dmaBufAttach(exp.dmabuf, disp);
    const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
    await expectCode(exp.move(), 'EBUSY');
    await dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
    await exp.move();
    expect(exp.placement).toBe('vram');
  });

  it('mock-exporter - scenario 10 / rule 12: a pin with a non-P2P attachment places the buffer in system memory', async () => {
    const k = host();
    const exp = MockExporter.create(k.mockExporterEnv(1 << 20), 16 * 1024);
    const gpu = k.addDevice('gpu1');
    const p2p = await dmaBufDynamicAttach(exp.dmabuf, gpu, {
      allowPeer2peer: true,
      invalidateMappings: () => {},
    });
    await dmaResvLock(exp.dmabuf.resv, null);
    await dmaBufPin(p2p);
    dmaResvUnlock(exp.dmabuf.resv);
    expect(exp.placement).toBe('vram'); // every attachment can reach VRAM
    await dmaResvLock(exp.dmabuf.resv, null);
    await dmaBufUnpin(p2p);
    dmaResvUnlock(exp.dmabuf.resv);

    const cpuOnly = await dmaBufDynamicAttach(exp.dmabuf, k.addDevice('nic-no-p2p'), {
      allowPeer2peer: false,
      invalidateMappings: () => {},
    });
    await dmaResvLock(exp.dmabuf.resv, null);
    await dmaBufPin(cpuOnly);
    dmaResvUnlock(exp.dmabuf.resv);
    expect(exp.placement).toBe('system');
  });

  it('mock-exporter - rule 7: the topology check clears peer2peer at attach', async () => {
    const k = host();
    const exp = MockExporter.create(
      k.mockExporterEnv(1 << 20, { p2pReachable: (d) => d.name !== 'far-nic' }),
      16 * 1024,
    );
    const near = await dmaBufDynamicAttach(exp.dmabuf, k.addDevice('near-nic'), {
      allowPeer2peer: true,
      invalidateMappings: () => {},
    });
    const far = await dmaBufDynamicAttach(exp.dmabuf, k.addDevice('far-nic'), {
      allowPeer2peer: true,
      invalidateMappings: () => {},
    });
    expect([near.peer2peer, far.peer2peer]).toEqual([true, false]);
  });

  it('mock-exporter - scenario 11: revoke stops both; the pinned importer never remaps, the unpinned one remaps after un-revoke', async () => {
    const k = host();
    const exp = MockExporter.create(k.mockExporterEnv(1 << 20), 16 * 1024, Placement.SYSTEM);
    let pinnedGone = false;
    const pinnedDev = k.addDevice('rdma-pinned');
    const pinned = await dmaBufDynamicAttach(exp.dmabuf, pinnedDev, {
      allowPeer2peer: true,
      invalidateMappings: () => (pinnedGone = true), // a revoke of a pinned attachment is final (rule 27)
    });
    const unpinnedLog: string[] = [];
    const unpinned = await dmaBufDynamicAttach(exp.dmabuf, k.addDevice('odp-nic'), {
      allowPeer2peer: true,
      invalidateMappings: () => unpinnedLog.push('invalidate'),
    });
    await dmaResvLock(exp.dmabuf.resv, null);
    await dmaBufPin(pinned);
    const pinnedMap = await dmaBufMapAttachment(pinned, BIDI);
    const unpinnedMap = await dmaBufMapAttachment(unpinned, BIDI);
    dmaResvUnlock(exp.dmabuf.resv);

    const revoking = exp.revoke({ waitUnmap: true, timeoutMs: 2_000 });
    await new Promise((r) => setImmediate(r));
    expect(pinnedGone).toBe(true);
    expect(unpinnedLog).toEqual(['invalidate']);
    // Importers tear down; revoke completes only when every mapping is gone.
    await dmaResvLock(exp.dmabuf.resv, null);
    await dmaBufUnmapAttachment(pinned, pinnedMap, BIDI);
    await dmaBufUnmapAttachment(unpinned, unpinnedMap, BIDI);
    await dmaBufUnpin(pinned);
    await expectCode(dmaBufMapAttachment(unpinned, BIDI), 'ENODEV');
    dmaResvUnlock(exp.dmabuf.resv);
    await withDeadline(revoking, 2_000, 'revoke');

    await exp.unrevoke();
    const again = await dmaBufMapAttachmentUnlocked(unpinned, BIDI);
    expect(again.length).toBe(16 * 1024);
    await dmaBufUnmapAttachmentUnlocked(unpinned, again, BIDI);
    await dmaBufDetach(exp.dmabuf, pinned);
  });

  it('mock-exporter - attach while revoked is ENODEV and leaves no attachment', async () => {
    const k = host();
    const exp = MockExporter.create(k.mockExporterEnv(1 << 20), 16 * 1024);
    await exp.revoke();
    await expectCode(dmaBufAttach(exp.dmabuf, k.addDevice('late')), 'ENODEV');
    expect(exp.dmabuf.attachments).toHaveLength(0);
  });
});

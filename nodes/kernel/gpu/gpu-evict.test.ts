// Eviction and moves of GPU buffer objects: under VRAM pressure (LRU) and on demand, with a
// dynamic importer of the object's dma-buf (TestImporter), fences that hold the old memory,
// and pins that forbid moving. Rule numbers: kernel-semantics.md §1.3.
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { DeviceOp } from '../../fabric/device-queue-layout.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { dmaBufPin, dmaBufUnpin } from '../dma-buf/dma-buf.ts';
import { dmaFenceGetStatus, dmaFenceWaitTimeout } from '../dma-buf/dma-fence.ts';
import { DmaResvUsage, dmaResvGetFences, dmaResvLock, dmaResvUnlock } from '../dma-buf/dma-resv.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import type { Gpu } from './gpu.ts';
import { GpuPlacement, gpuBoCpuRead, gpuBoCpuWrite, gpuBoPin, gpuBoUnpin } from './gpu-bo.ts';
import { gpuBoChecksum, gpuSubmitRaw } from './gpu-jobs.ts';
import { gpuBoCreate, gpuBoEvict, gpuBoMove } from './gpu-placement.ts';
import { gpuBoExport } from './gpu-prime.ts';
import {
  foreignFence,
  gpuHost,
  gpuHostsTeardown,
  importer,
  MS,
  pattern,
  START_MS,
  signalForeign,
} from './fixtures/gpu-host.ts';

afterEach(gpuHostsTeardown);

/** A round trip through the GPU's ring: the event loop and the worker both made progress. */
async function gpuBarrier(gpu: Gpu): Promise<void> {
  await withDeadline(gpuSubmitRaw(gpu, { opcode: DeviceOp.NOP }).done, MS, 'GPU barrier');
}

describe('gpu eviction', () => {
  it('gpu - eviction under pressure moves the LRU buffer to system memory, invalidates its dynamic importer, and the data survives', async () => {
    const { host, gpu } = gpuHost({ vramPages: 16 });
    await gpu.host.ready(START_MS);
    const old = await gpuBoCreate(gpu, 6 * PAGE_SIZE);
    const recent = await gpuBoCreate(gpu, 6 * PAGE_SIZE);
    const data = pattern(old.size, 9);
    await gpuBoCpuWrite(old, 0, data);
    await gpuBoChecksum(recent, 0, PAGE_SIZE); // touches `recent`: `old` is now least recently used
    const imp = importer(host, 'nic0', { dynamic: true, p2p: true });
    await imp.attachTo(gpuBoExport(old));
    expect((await imp.read(0, 64)).data).toEqual(data.subarray(0, 64)); // mapped in VRAM (P2P)
    // 8 pages do not fit in the 4 left: `old` (LRU) goes, `recent` stays.
    const big = await withDeadline(gpuBoCreate(gpu, 8 * PAGE_SIZE), MS, 'create under pressure');
    expect([old.placement, recent.placement, big.placement]).toEqual([
      GpuPlacement.SYSTEM,
      GpuPlacement.VRAM,
      GpuPlacement.VRAM,
    ]);
    expect(imp.invalidations).toBe(1);
    expect(gpu.evictions).toBe(1);
    // The importer remaps (to system pages) after the KERNEL fence and sees the same bytes.
    const r = await imp.read(0, old.size);
    expect(r.status).toBe(0);
    expect(r.data).toEqual(data);
    const sum = await gpuBoChecksum(old, 0, old.size);
    expect((await withDeadline(sum.done, MS, 'checksum')).result).toBe(crc32(data));
  });

  for (const usage of [DmaResvUsage.READ, DmaResvUsage.BOOKKEEP]) {
    const name = usage === DmaResvUsage.READ ? 'READ' : 'BOOKKEEP';
    it(`gpu - rule 25: old VRAM is not reused before a pending ${name} fence signals`, async () => {
      const { host, gpu } = gpuHost({ vramPages: 8 });
      await gpu.host.ready(START_MS);
      const bo = await gpuBoCreate(gpu, 6 * PAGE_SIZE);
      const data = pattern(bo.size, 4);
      await gpuBoCpuWrite(bo, 0, data);
      const imp = importer(host, 'nic0', { dynamic: true, p2p: true });
      await imp.attachTo(gpuBoExport(bo));
      await imp.read(0, 16);
      const importerJob = await foreignFence(bo, usage); // the importer's DMA still running
      const oldRuns = bo.pages.runs;
      const move = await gpuBoEvict(bo);
      expect(move).not.toBeNull();
      expect(dmaResvGetFences(bo.resv, DmaResvUsage.KERNEL)).toContain(move);
      // A create that needs the old pages has to wait for them.
      let created = false;
      const next = gpuBoCreate(gpu, 6 * PAGE_SIZE).then((b) => {
        created = true;
        return b;
      });
      await gpuBarrier(gpu);
      await gpuBarrier(gpu);
      expect(move!.signaledFlag).toBe(false);
      expect(created).toBe(false);
      for (const r of oldRuns)
        for (let i = 0; i < r.count; i++) expect(gpu.vramAlloc.isAllocated(r.pfn + i)).toBe(true);
      signalForeign(importerJob);
      expect(await dmaFenceWaitTimeout(move!, MS)).toBeGreaterThan(0);
      expect(dmaFenceGetStatus(move!)).toBe(1);
      const other = await withDeadline(next, MS, 'create after the fence');
      expect(created).toBe(true);
      // the new object got (some of) the old pages, zeroed; the moved one kept its bytes.
      expect(other.pages.runs.some((r) => oldRuns.some((o) => o.pfn === r.pfn))).toBe(true);
      expect(await gpuBoCpuRead(other, 0, other.size)).toEqual(new Uint8Array(other.size));
      expect(await gpuBoCpuRead(bo, 0, bo.size)).toEqual(data);
    });
  }

  it('gpu - rule 11: a pinned buffer is never evicted (EBUSY on demand, skipped under pressure)', async () => {
    const { host, gpu } = gpuHost({ vramPages: 16 });
    await gpu.host.ready(START_MS);
    const pinned = await gpuBoCreate(gpu, 6 * PAGE_SIZE);
    const victim = await gpuBoCreate(gpu, 6 * PAGE_SIZE);
    await gpuBoPin(pinned);
    await expectCode(gpuBoEvict(pinned), 'EBUSY');
    // `pinned` is least recently used but pinned: `victim` goes instead.
    const a = await withDeadline(gpuBoCreate(gpu, 8 * PAGE_SIZE), MS, 'create under pressure');
    expect([pinned.placement, victim.placement, a.placement]).toEqual([
      GpuPlacement.VRAM,
      GpuPlacement.SYSTEM,
      GpuPlacement.VRAM,
    ]);
    // with `a` pinned too, nothing is evictable: ENOMEM naming VRAM, and nothing moved.
    await gpuBoPin(a);
    const e = await expectCode(gpuBoCreate(gpu, 4 * PAGE_SIZE), 'ENOMEM');
    expect(e.message).toMatch(/VRAM/);
    expect([pinned.moves, a.moves]).toEqual([0, 0]);
    gpuBoUnpin(a);
    gpuBoUnpin(pinned);
    // A dma-buf pin counts too (a dynamic importer pinning for RDMA without ODP).
    const imp = importer(host, 'nic0', { dynamic: true, p2p: true });
    await imp.attachTo(gpuBoExport(pinned));
    await dmaResvLock(pinned.resv, null);
    await dmaBufPin(imp.attach!);
    dmaResvUnlock(pinned.resv);
    await expectCode(gpuBoEvict(pinned), 'EBUSY');
    await dmaResvLock(pinned.resv, null);
    await dmaBufUnpin(imp.attach!);
    dmaResvUnlock(pinned.resv);
    expect(await gpuBoEvict(pinned)).not.toBeNull();
    expect(pinned.placement).toBe(GpuPlacement.SYSTEM);
  });

  it('gpu - a job submitted after a move waits for its KERNEL fence and sees the moved data; moving back to VRAM works', async () => {
    const { gpu } = gpuHost({ vramPages: 16 });
    await gpu.host.ready(START_MS);
    const bo = await gpuBoCreate(gpu, 4 * PAGE_SIZE);
    const data = pattern(bo.size, 2);
    await gpuBoCpuWrite(bo, 0, data);
    const oldVa = bo.gpuVa;
    const out = await gpuBoEvict(bo);
    const sum = await gpuBoChecksum(bo, 0, bo.size);
    expect(bo.gpuVa).not.toBe(oldVa);
    expect((await withDeadline(sum.done, MS, 'checksum after evict')).result).toBe(crc32(data));
    expect(out!.signaledFlag).toBe(true); // the checksum could only run after it
    expect(await gpuBoEvict(bo)).toBeNull(); // already in system memory
    const back = await gpuBoMove(bo, GpuPlacement.VRAM);
    expect(bo.placement).toBe(GpuPlacement.VRAM);
    expect(await dmaFenceWaitTimeout(back!, MS)).toBeGreaterThan(0);
    expect(await gpuBoCpuRead(bo, 0, bo.size)).toEqual(data);
    expect(bo.moves).toBe(2);
  });
});

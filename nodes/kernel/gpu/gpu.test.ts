// The GPU end to end: a real device worker, buffer objects in VRAM and system memory mapped in
// the GPU VM, jobs through the scheduler and the ring, fences in the objects' dma_resv, crash
// and removal. Eviction: gpu-evict.test.ts; PRIME export: gpu-prime.test.ts.
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { Errno } from '../../../common/errno.ts';
import { liveWorkers } from '../../../common/worker.ts';
import { CrashMode, DeviceOp } from '../../fabric/device-queue-layout.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { dmaFenceGetStatus, dmaFenceWaitTimeout } from '../dma-buf/dma-fence.ts';
import { DmaResvUsage, dmaResvGetFences } from '../dma-buf/dma-resv.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { GpuOp, gpuRemove } from './gpu.ts';
import { GpuPlacement, gpuBoCpuRead, gpuBoCpuWrite, gpuBoPut } from './gpu-bo.ts';
import { gpuBoChecksum, gpuBoCopy, gpuBoFill, gpuSubmitRaw } from './gpu-jobs.ts';
import { gpuBoCreate } from './gpu-placement.ts';
import {
  foreignFence,
  gpuHost,
  gpuHostsTeardown,
  MS,
  pattern,
  START_MS,
  signalForeign,
} from './fixtures/gpu-host.ts';

afterEach(gpuHostsTeardown);

/** The bytes a FILL of `value` with `width` leaves in `length` bytes. */
function filled(length: number, value: number, width: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (value >>> (8 * (i % width))) & 0xff);
}

describe('gpu', () => {
  for (const placement of [GpuPlacement.VRAM, GpuPlacement.SYSTEM]) {
    it(`gpu - fill writes the pattern and checksum of the range matches zlib crc32 (${placement})`, async () => {
      const { gpu } = gpuHost();
      await gpu.host.ready(START_MS);
      const bo = await gpuBoCreate(gpu, 5 * PAGE_SIZE, placement);
      expect(bo.placement).toBe(placement);
      const fill = await gpuBoFill(bo, 100, 3 * PAGE_SIZE + 7, 0xa1b2c3d4, 4);
      const narrow = await gpuBoFill(bo, 4 * PAGE_SIZE, 10, 0x5a, 1);
      // implicit sync: the checksum (a reader) waits for both writers.
      const sum = await gpuBoChecksum(bo, 0, bo.size);
      const r = await withDeadline(sum.done, MS, 'checksum');
      expect(r.status).toBe(0);
      expect(dmaFenceGetStatus(fill.fence)).toBe(1);
      expect(dmaFenceGetStatus(narrow.fence)).toBe(1);
      const want = new Uint8Array(bo.size);
      want.set(filled(3 * PAGE_SIZE + 7, 0xa1b2c3d4, 4), 100);
      want.fill(0x5a, 4 * PAGE_SIZE, 4 * PAGE_SIZE + 10);
      expect(await gpuBoCpuRead(bo, 0, bo.size)).toEqual(want);
      expect(r.result).toBe(crc32(want));
    });
  }

  it('gpu - VRAM buffer objects come in blocks of up to 2 MiB (drm_buddy), system ones in runs of up to 64 KiB', async () => {
    const { gpu } = gpuHost({ vramPages: 2048 });
    const vram = await gpuBoCreate(gpu, 6 << 20, GpuPlacement.VRAM);
    const sys = await gpuBoCreate(gpu, 1 << 20, GpuPlacement.SYSTEM);
    const pages = (bo: typeof vram) => bo.pages.runs.map((r) => r.count);
    // 6 MiB of an empty 8 MiB VRAM: three 2 MiB blocks, not 96 runs of 64 KiB
    expect(pages(vram)).toEqual([512, 512, 512]);
    expect(Math.max(...pages(sys))).toBeLessThanOrEqual(16);
    expect(pages(sys).reduce((a, b) => a + b, 0)).toBe(256);
    gpuBoPut(vram);
    gpuBoPut(sys);
  });

  it('gpu - copy moves bytes VRAM -> system -> VRAM on the copy engine', async () => {
    const { gpu } = gpuHost();
    await gpu.host.ready(START_MS);
    const a = await gpuBoCreate(gpu, 4 * PAGE_SIZE, GpuPlacement.VRAM);
    const s = await gpuBoCreate(gpu, 6 * PAGE_SIZE, GpuPlacement.SYSTEM);
    const b = await gpuBoCreate(gpu, 4 * PAGE_SIZE, GpuPlacement.VRAM);
    const data = pattern(a.size, 3);
    await gpuBoCpuWrite(a, 0, data);
    await gpuBoCopy(a, 0, s, PAGE_SIZE, a.size);
    const back = await gpuBoCopy(s, PAGE_SIZE, b, 0, a.size);
    expect((await withDeadline(back.done, MS, 'copy back')).status).toBe(0);
    expect(await gpuBoCpuRead(s, PAGE_SIZE, a.size)).toEqual(data);
    expect(await gpuBoCpuRead(b, 0, b.size)).toEqual(data);
    expect(gpu.vram.bytes.some((x) => x === data[1])).toBe(true); // VRAM really holds the bytes
    await expectCode(() => gpuBoCopy(a, 0, a, 100, PAGE_SIZE), 'EINVAL');
    await expectCode(() => gpuBoCopy(a, 0, b, 1, a.size), 'EINVAL');
  });

  it('gpu - jobs publish WRITE/READ fences (BOOKKEEP when explicit) and wait for foreign fences first', async () => {
    const { gpu } = gpuHost();
    await gpu.host.ready(START_MS);
    const bo = await gpuBoCreate(gpu, 2 * PAGE_SIZE);
    const other = await foreignFence(bo, DmaResvUsage.WRITE);
    const w = await gpuBoFill(bo, 0, bo.size, 7, 1);
    const r = await gpuBoChecksum(bo, 0, bo.size);
    const x = await gpuBoChecksum(bo, 0, bo.size, { explicit: true });
    const usage = (f: typeof w.fence) =>
      [DmaResvUsage.KERNEL, DmaResvUsage.WRITE, DmaResvUsage.READ, DmaResvUsage.BOOKKEEP].find((u) =>
        dmaResvGetFences(bo.resv, u).includes(f),
      );
    expect([usage(w.fence), usage(r.fence), usage(x.fence)]).toEqual([
      DmaResvUsage.WRITE,
      DmaResvUsage.READ,
      DmaResvUsage.BOOKKEEP,
    ]);
    // the fill waits for the foreign writer; the explicit job has no implicit dependency but
    // queues behind it (one FIFO entity), as drm_sched jobs of one entity do.
    expect(w.fence.signaledFlag).toBe(false);
    signalForeign(other);
    const done = await withDeadline(Promise.all([w.done, r.done, x.done]), MS, 'jobs');
    expect(done.map((d) => d.status)).toEqual([0, 0, 0]);
    expect(done[1].result).toBe(crc32(new Uint8Array(bo.size).fill(7)));
  });

  it('gpu - a job whose dependency failed is not run and carries the error, and so do jobs after it (rule 11)', async () => {
    const { gpu } = gpuHost();
    await gpu.host.ready(START_MS);
    const bo = await gpuBoCreate(gpu, PAGE_SIZE);
    await gpuBoCpuWrite(bo, 0, new Uint8Array(PAGE_SIZE).fill(1));
    const producer = await foreignFence(bo, DmaResvUsage.WRITE);
    const fill = await gpuBoFill(bo, 0, bo.size, 7, 1); // implicit dependency on the producer
    const sum = await gpuBoChecksum(bo, 0, bo.size); // depends on the fill's WRITE fence
    signalForeign(producer, -Errno.EIO);
    const done = await withDeadline(Promise.all([fill.done, sum.done]), MS, 'jobs after a failed dependency');
    expect(done.map((d) => d.status)).toEqual([-Errno.EIO, -Errno.EIO]);
    expect([dmaFenceGetStatus(fill.fence), dmaFenceGetStatus(sum.fence)]).toEqual([-Errno.EIO, -Errno.EIO]);
    expect(await gpuBoCpuRead(bo, 0, 16)).toEqual(new Uint8Array(16).fill(1)); // the fill never ran
  });

  it('gpu - bad descriptors complete with errors; the GPU keeps running', async () => {
    const { gpu } = gpuHost();
    await gpu.host.ready(START_MS);
    const bo = await gpuBoCreate(gpu, PAGE_SIZE);
    const jobs = [
      gpuSubmitRaw(gpu, { opcode: 0x42, src: bo.gpuVa, len: 64 }),
      gpuSubmitRaw(gpu, { opcode: GpuOp.FILL, dst: bo.gpuVa, len: 64, arg1: 3 }),
      gpuSubmitRaw(gpu, { opcode: GpuOp.FILL, flags: 1 << 5, dst: bo.gpuVa, len: 64, arg1: 1 }),
      gpuSubmitRaw(gpu, { opcode: GpuOp.CHECKSUM, src: bo.gpuVa + 64 * PAGE_SIZE, len: 64 }),
      gpuSubmitRaw(gpu, { opcode: GpuOp.CHECKSUM, src: bo.gpuVa, len: 64 }),
    ];
    const st = await withDeadline(Promise.all(jobs.map((j) => j.done)), MS, 'raw jobs');
    expect(st.map((s) => s.status)).toEqual([
      -Errno.EOPNOTSUPP,
      -Errno.EINVAL,
      -Errno.EINVAL,
      -Errno.EFAULT,
      0,
    ]);
    expect(dmaFenceGetStatus(jobs[3].fence)).toBe(-Errno.EFAULT);
    expect(gpu.kernel.iommu.faultLog.drain()).toHaveLength(1);
    await expectCode(() => gpuBoFill(bo, 0, PAGE_SIZE + 1, 0), 'EINVAL');
    await expectCode(() => gpuBoFill(bo, 0, 16, 0, 3), 'EINVAL');
  });

  it('gpu - a device crash error-signals the jobs on the ring (-EIO) and the queued ones (-ENODEV)', async () => {
    const { gpu } = gpuHost({ testHooks: true });
    await gpu.host.ready(START_MS);
    const bo = await gpuBoCreate(gpu, PAGE_SIZE);
    const before = await gpuBoFill(bo, 0, 64, 1, 1);
    expect((await withDeadline(before.done, MS, 'fill before')).status).toBe(0);
    const blocker = await foreignFence(bo, DmaResvUsage.WRITE);
    const crash = gpuSubmitRaw(gpu, { opcode: DeviceOp.CRASH, arg0: CrashMode.EXIT, arg1: 3 });
    const onRing = gpuSubmitRaw(gpu, { opcode: GpuOp.FILL, dst: bo.gpuVa, len: 64, arg1: 1 });
    const queued = await gpuBoFill(bo, 0, 64, 2, 1); // waits for the foreign writer
    const exit = await withDeadline(gpu.host.exited, START_MS, 'worker exit');
    expect(exit).toMatchObject({ code: 3, crashed: true });
    const st = await withDeadline(Promise.all([crash.done, onRing.done, queued.done]), MS, 'failed jobs');
    expect(st.map((s) => s.status)).toEqual([-Errno.EIO, -Errno.EIO, -Errno.ENODEV]);
    for (const [f, e] of [
      [onRing.fence, -Errno.EIO],
      [queued.fence, -Errno.ENODEV],
    ] as const) {
      expect(await dmaFenceWaitTimeout(f, MS)).toBeGreaterThan(0);
      expect(dmaFenceGetStatus(f)).toBe(e);
    }
    await expectCode(() => gpuBoFill(bo, 0, 64, 3, 1), 'ENODEV');
    signalForeign(blocker);
    await withDeadline(gpuRemove(gpu), MS, 'remove after crash');
  });

  it('gpu - remove drains queued work, stops the worker and gives every page back', async () => {
    const { gpu, kernel } = gpuHost();
    await gpu.host.ready(START_MS);
    const ram0 = kernel.ramAlloc.freePages;
    const vram0 = gpu.vramAlloc.freePages;
    const a = await gpuBoCreate(gpu, 8 * PAGE_SIZE);
    const s = await gpuBoCreate(gpu, 8 * PAGE_SIZE, GpuPlacement.SYSTEM);
    const last = await gpuBoCopy(a, 0, s, 0, a.size);
    gpuBoPut(s); // freed once the copy's fence signals
    await withDeadline(gpuRemove(gpu), START_MS, 'remove');
    expect(dmaFenceGetStatus(last.fence)).toBe(1);
    expect(liveWorkers().filter((w) => w.worker === gpu.host.worker)).toEqual([]);
    expect(await gpu.host.exited).toMatchObject({ code: 0, crashed: false });
    expect([kernel.ramAlloc.freePages, gpu.vramAlloc.freePages]).toEqual([ram0, vram0]);
    await expectCode(() => gpuBoFill(a, 0, 64, 1), 'ENODEV');
    await expectCode(() => gpuBoCreate(gpu, PAGE_SIZE), 'ENODEV');
  });
});

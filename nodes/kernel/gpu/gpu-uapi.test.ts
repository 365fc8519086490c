// The GPU uapi (nodes/uapi/gpu.ts) from a process: GEM create, submit with out sync_file and
// syncobj, explicit sync through an in-fence, wait for a checksum, PRIME handle <-> fd with a
// CPU mapping of the dma-buf, the evict knob, argument errors, close.
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { DMA_BUF_SYNC, dmaBufMmap, dmaBufSync } from '../../uapi/dma-buf.ts';
import {
  GpuPlacement,
  gpuClose,
  gpuGemClose,
  gpuGemCreate,
  gpuGemEvict,
  gpuGemInfo,
  gpuPrimeFdToHandle,
  gpuPrimeHandleToFd,
  gpuSubmit,
  gpuWait,
} from '../../uapi/gpu.ts';
import { Process, processExit } from '../../uapi/process.ts';
import { drmSyncobjCreate, drmSyncobjWait, syncFileWaitReady } from '../../uapi/sync.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { gpuHost, gpuHostsTeardown, MS, START_MS } from './fixtures/gpu-host.ts';

const procs: Process[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await processExit(p);
  await gpuHostsTeardown();
});

describe('gpu uapi', () => {
  it('gpu - uapi: create, fill with out syncobj + sync_file, explicit checksum after it, wait, PRIME mmap, evict, close', async () => {
    const { kernel, gpu } = gpuHost({ name: 'card0' });
    await gpu.host.ready(START_MS);
    const p = new Process(kernel, 'app');
    procs.push(p);
    const h = await gpuGemCreate(p, 'card0', { size: 3 * PAGE_SIZE });
    const so = drmSyncobjCreate(p);
    const fill = await gpuSubmit(p, 'card0', {
      op: 'fill',
      handle: h,
      length: 3 * PAGE_SIZE,
      pattern: 0x11223344,
      outSyncobj: so,
      outSyncFile: true,
    });
    expect(fill.syncFile).not.toBeNull();
    const sum = await gpuSubmit(p, 'card0', {
      op: 'checksum',
      handle: h,
      length: 3 * PAGE_SIZE,
      explicit: true,
      inSyncFile: fill.syncFile!,
    });
    const want = Uint8Array.from({ length: 3 * PAGE_SIZE }, (_, i) => [0x44, 0x33, 0x22, 0x11][i % 4]);
    expect(await gpuWait(p, 'card0', sum.job, MS)).toEqual({ status: 0, result: crc32(want) });
    expect(await drmSyncobjWait(p, [so], null, MS)).toBe(0);
    expect(await syncFileWaitReady(p, fill.syncFile!, MS)).toBeGreaterThan(0);
    // PRIME: a dma-buf fd, mapped by the CPU, and back to a handle of the same object.
    const fd = gpuPrimeHandleToFd(p, 'card0', h);
    const view = dmaBufMmap(p, fd, 0, 3);
    await dmaBufSync(p, fd, DMA_BUF_SYNC.START | DMA_BUF_SYNC.READ);
    const got = new Uint8Array(8);
    view.read(PAGE_SIZE, got);
    expect(got).toEqual(want.subarray(0, 8));
    const h2 = gpuPrimeFdToHandle(p, 'card0', fd);
    expect(gpuGemInfo(p, 'card0', h2)).toEqual({
      size: 3 * PAGE_SIZE,
      placement: 'vram',
      moves: 0,
      pinned: false,
    });
    const moved = await gpuGemEvict(p, 'card0', h);
    expect(await syncFileWaitReady(p, moved, MS)).toBeGreaterThan(0);
    expect(gpuGemInfo(p, 'card0', h2).placement).toBe(GpuPlacement.SYSTEM);
    expect(await gpuGemEvict(p, 'card0', h)).toBe(-1);
    view.read(PAGE_SIZE, got); // the mapping follows the move
    expect(got).toEqual(want.subarray(0, 8));
    gpuGemClose(p, 'card0', h2);
    gpuClose(p, 'card0');
    await expectCode(() => gpuGemInfo(p, 'card0', h), 'ENOENT');
  });

  it('gpu - uapi: process exit drops the GEM handles it never closed and their VRAM comes back', async () => {
    const { kernel, gpu } = gpuHost({ name: 'card2' });
    await gpu.host.ready(START_MS);
    const p = new Process(kernel, 'leaky-app');
    const free0 = gpu.vramAlloc.freePages;
    await gpuGemCreate(p, 'card2', { size: 4 * PAGE_SIZE });
    await gpuGemCreate(p, 'card2', { size: 2 * PAGE_SIZE });
    expect(gpu.vramAlloc.freePages).toBe(free0 - 6);
    await processExit(p); // no gpuClose: exit must release them, as closing the card would
    expect(gpu.vramAlloc.freePages).toBe(free0);
  });

  it('gpu - uapi: unknown GPU, handle, job or op and bad sizes are errors naming the argument', async () => {
    const { kernel } = gpuHost({ name: 'card1' });
    const p = new Process(kernel, 'app');
    procs.push(p);
    await expectCode(gpuGemCreate(p, 'card9', { size: PAGE_SIZE }), 'ENODEV');
    expect((await expectCode(gpuGemCreate(p, 'card1', { size: 0 }), 'EINVAL')).message).toMatch(/size 0/);
    await expectCode(
      gpuGemCreate(p, 'card1', { size: PAGE_SIZE, placement: 'gtt' as GpuPlacement }),
      'EINVAL',
    );
    const h = await gpuGemCreate(p, 'card1', { size: PAGE_SIZE, placement: GpuPlacement.SYSTEM });
    await expectCode(gpuSubmit(p, 'card1', { op: 'fill', handle: h + 1, length: 16 }), 'ENOENT');
    await expectCode(gpuSubmit(p, 'card1', { op: 'blit' as 'fill', handle: h, length: 16 }), 'EINVAL');
    await expectCode(gpuSubmit(p, 'card1', { op: 'fill', handle: h, length: PAGE_SIZE + 1 }), 'EINVAL');
    await expectCode(gpuWait(p, 'card1', 77, MS), 'ENOENT');
    await expectCode(() => gpuPrimeFdToHandle(p, 'card1', 99), 'EBADF');
  });
});

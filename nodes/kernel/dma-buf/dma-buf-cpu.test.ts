import { describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import {
  DMA_BUF_SYNC,
  EPOLLIN,
  EPOLLOUT,
  SEEK_CUR,
  SEEK_END,
  SEEK_SET,
  dmaBufBeginCpuAccess,
  dmaBufCpuWait,
  dmaBufEndCpuAccess,
  dmaBufIoctlSync,
  dmaBufLlseek,
  dmaBufMmap,
  dmaBufPoll,
  dmaBufPollMask,
  dmaBufVmap,
  dmaBufVmapUnlocked,
  dmaBufVunmap,
  dmaBufVunmapUnlocked,
} from './dma-buf-cpu.ts';
import { dmaBufPut } from './dma-buf.ts';
import { type DmaFence, dmaFenceSignal } from './dma-fence.ts';
import {
  type DmaResv,
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
} from './dma-resv.ts';
import { bytesView, mockFence, probeExport } from './fixtures/probe-exporter.ts';
import { DmaDataDirection, PAGE_SIZE } from './scatterlist.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';

async function addFence(resv: DmaResv, f: DmaFence, usage: DmaResvUsage): Promise<void> {
  await dmaResvLock(resv, null);
  dmaResvReserveFences(resv, 1);
  dmaResvAddFence(resv, f, usage);
  dmaResvUnlock(resv);
}

/** Resolves true if `p` settles within a few event-loop turns (it must not, while a fence blocks it). */
async function settlesSoon(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return settled;
}

describe('dma-buf cpu access', () => {
  it('dma-buf-cpu - rule 29: begin(read) waits only for writers; begin(write) waits for readers too', async () => {
    const p = probeExport();
    const writer = mockFence();
    const reader = mockFence();
    await addFence(p.dmabuf.resv, writer, DmaResvUsage.WRITE);
    await addFence(p.dmabuf.resv, reader, DmaResvUsage.READ);
    const read = dmaBufBeginCpuAccess(p.dmabuf, DmaDataDirection.FROM_DEVICE);
    expect(await settlesSoon(read)).toBe(false);
    dmaFenceSignal(writer);
    await withDeadline(read, 2_000, 'begin read');
    const write = dmaBufBeginCpuAccess(p.dmabuf, DmaDataDirection.TO_DEVICE);
    expect(await settlesSoon(write)).toBe(false);
    dmaFenceSignal(reader);
    await withDeadline(write, 2_000, 'begin write');
    expect(p.calls.filter((c) => c.op === 'begin_cpu')).toEqual([
      { op: 'begin_cpu', locked: false },
      { op: 'begin_cpu', locked: false },
    ]);
  });

  it('dma-buf-cpu - rule 29: explicitly synced (BOOKKEEP) DMA is not waited for; end only calls the hook', async () => {
    const p = probeExport();
    await addFence(p.dmabuf.resv, mockFence(), DmaResvUsage.BOOKKEEP);
    await withDeadline(dmaBufBeginCpuAccess(p.dmabuf, DmaDataDirection.BIDIRECTIONAL), 1_000, 'begin');
    await dmaBufEndCpuAccess(p.dmabuf, DmaDataDirection.BIDIRECTIONAL);
    expect(p.calls.map((c) => c.op)).toEqual(['begin_cpu', 'end_cpu']);
  });

  it('dma-buf-cpu - begin_cpu_access never hangs: a fence that never signals is ETIMEDOUT', async () => {
    const p = probeExport();
    await addFence(p.dmabuf.resv, mockFence(), DmaResvUsage.WRITE);
    const saved = dmaBufCpuWait.timeoutMs;
    dmaBufCpuWait.timeoutMs = 20;
    try {
      await expectCode(dmaBufBeginCpuAccess(p.dmabuf, DmaDataDirection.FROM_DEVICE), 'ETIMEDOUT');
    } finally {
      dmaBufCpuWait.timeoutMs = saved;
    }
  });

  it('dma-buf-cpu - rule 30: DMA_BUF_IOCTL_SYNC maps START/END and directions; bad flags are EINVAL', async () => {
    const p = probeExport();
    await dmaBufIoctlSync(p.dmabuf, DMA_BUF_SYNC.START | DMA_BUF_SYNC.RW);
    await dmaBufIoctlSync(p.dmabuf, DMA_BUF_SYNC.END | DMA_BUF_SYNC.RW);
    expect(p.calls.map((c) => c.op)).toEqual(['begin_cpu', 'end_cpu']);
    const e = await expectCode(dmaBufIoctlSync(p.dmabuf, DMA_BUF_SYNC.START), 'EINVAL');
    expect(e.message).toMatch(/no direction/);
    await expectCode(dmaBufIoctlSync(p.dmabuf, 0x100 | DMA_BUF_SYNC.READ), 'EINVAL');
  });

  it('dma-buf-cpu - rule 31: vmap is refcounted; exporter vmap once, vunmap at zero, same view for all', async () => {
    const p = probeExport();
    const v1 = await dmaBufVmapUnlocked(p.dmabuf);
    const v2 = await dmaBufVmapUnlocked(p.dmabuf);
    expect(v2).toBe(v1);
    expect(p.dmabuf.vmappingCounter).toBe(2);
    await dmaBufVunmapUnlocked(p.dmabuf, v1);
    expect(p.calls.filter((c) => c.op === 'vunmap')).toHaveLength(0);
    await dmaBufVunmapUnlocked(p.dmabuf, v2);
    expect(
      p.calls.filter((c) => c.op === 'vmap' || c.op === 'vunmap').map((c) => `${c.op}:${c.locked}`),
    ).toEqual(['vmap:true', 'vunmap:true']);
    await expectCode(dmaBufVunmapUnlocked(p.dmabuf, v1), 'EINVAL');
  });

  it('dma-buf-cpu - rule 31: vunmap of a different view is EINVAL; vmap needs the lock; put while vmapped is EBUSY', async () => {
    const p = probeExport();
    expect(() => dmaBufVmap(p.dmabuf)).toThrow(/lock must be held/);
    const v = await dmaBufVmapUnlocked(p.dmabuf);
    await dmaResvLock(p.dmabuf.resv, null);
    await expectCode(() => dmaBufVunmap(p.dmabuf, bytesView(new Uint8Array(1))), 'EINVAL');
    dmaResvUnlock(p.dmabuf.resv);
    await expectCode(() => dmaBufPut(p.dmabuf), 'EBUSY');
    await dmaBufVunmapUnlocked(p.dmabuf, v);
    dmaBufPut(p.dmabuf);
    expect(p.released).toBe(1);
  });

  it('dma-buf-cpu - rule 2: mmap bounds are checked before the exporter is called', async () => {
    const p = probeExport({ size: 4 * PAGE_SIZE });
    const view = dmaBufMmap(p.dmabuf, 1, 3);
    view.write(0, Uint8Array.of(7));
    expect(p.bytes[PAGE_SIZE]).toBe(7);
    await expectCode(() => dmaBufMmap(p.dmabuf, 2, 3), 'EINVAL');
    await expectCode(() => dmaBufMmap(p.dmabuf, Number.MAX_SAFE_INTEGER, 2), 'EOVERFLOW');
    await expectCode(() => dmaBufMmap(p.dmabuf, -1, 1), 'EINVAL');
    expect(p.calls.filter((c) => c.op === 'mmap')).toHaveLength(1);
  });

  it('dma-buf-cpu - rule 4: llseek supports only offset 0 with SEEK_SET or SEEK_END', async () => {
    const p = probeExport({ size: 2 * PAGE_SIZE });
    expect(dmaBufLlseek(p.dmabuf, 0, SEEK_SET)).toBe(0);
    expect(dmaBufLlseek(p.dmabuf, 0, SEEK_END)).toBe(2 * PAGE_SIZE);
    await expectCode(() => dmaBufLlseek(p.dmabuf, 0, SEEK_CUR), 'EINVAL');
    await expectCode(() => dmaBufLlseek(p.dmabuf, 4, SEEK_SET), 'EINVAL');
  });

  it('dma-buf-cpu - rule 32: EPOLLIN once writers signalled, EPOLLOUT once readers and writers did', async () => {
    const p = probeExport();
    const writer = mockFence();
    const reader = mockFence();
    await addFence(p.dmabuf.resv, writer, DmaResvUsage.WRITE);
    await addFence(p.dmabuf.resv, reader, DmaResvUsage.READ);
    expect(dmaBufPollMask(p.dmabuf)).toBe(0);
    expect(await dmaBufPoll(p.dmabuf, EPOLLIN, 0)).toBe(0);
    const pollin = dmaBufPoll(p.dmabuf, EPOLLIN, 2_000);
    dmaFenceSignal(writer);
    expect(await withDeadline(pollin, 2_000, 'poll in')).toBe(EPOLLIN);
    expect(dmaBufPollMask(p.dmabuf)).toBe(EPOLLIN);
    const pollout = dmaBufPoll(p.dmabuf, EPOLLOUT, 2_000);
    dmaFenceSignal(reader);
    expect(await withDeadline(pollout, 2_000, 'poll out')).toBe(EPOLLOUT);
    expect(dmaBufPollMask(p.dmabuf)).toBe(EPOLLIN | EPOLLOUT);
  });
});

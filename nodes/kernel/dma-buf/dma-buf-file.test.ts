// igt dmabuf_sync_file, ported: a system-heap buffer stands in for the vgem bo, and fences are
// attached to its resv the way vgem_fence_attach does (WRITE for a write fence, READ otherwise).
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { EmuError } from '../../../common/errno.ts';
import { FdTable } from '../fs/file.ts';
import { HostKernel } from '../kernel.ts';
import { dmaBufPut } from './dma-buf.ts';
import { DMA_BUF_SYNC, EPOLLIN, EPOLLOUT, dmaBufPollMask } from './dma-buf-cpu.ts';
import {
  DmaBufFile,
  dmaBufExportSyncFile,
  dmaBufFd,
  dmaBufFromFd,
  dmaBufGet,
  dmaBufImportSyncFile,
  dmaBufSetName,
} from './dma-buf-file.ts';
import { type DmaFence, dmaFenceSignal } from './dma-fence.ts';
import {
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
} from './dma-resv.ts';
import { mockFence } from './fixtures/probe-exporter.ts';
import { dmaHeapBufferAlloc } from './heaps/dma-heap.ts';
import { swSyncCreateFence, swSyncInc, swSyncTimelineCreate } from './sw-sync.ts';
import { syncFileInfo, syncFilePoll } from './sync-file.ts';

const { READ, WRITE, RW } = DMA_BUF_SYNC;
let kernel: HostKernel;
let fdt: FdTable;

afterEach(() => {
  fdt?.closeAll();
  kernel?.close();
});

function setup(): number {
  kernel = new HostKernel({ ramBytes: 4 << 20 });
  fdt = new FdTable('igt');
  return dmaBufFd(fdt, dmaHeapBufferAlloc(kernel.heaps.find('system'), 4096, 0, 0));
}

/** vgem_fence_attach: a fence on the bo, WRITE or READ usage. */
async function attachFence(fd: number, write: boolean): Promise<DmaFence> {
  const buf = dmaBufFromFd(fdt, fd, 'test');
  const f = mockFence();
  await dmaResvLock(buf.resv, null);
  dmaResvReserveFences(buf.resv, 1);
  dmaResvAddFence(buf.resv, f, write ? DmaResvUsage.WRITE : DmaResvUsage.READ);
  dmaResvUnlock(buf.resv);
  return f;
}

const syncFileBusy = (fd: number) => syncFileInfo(fdt, fd).status === 0;
/** igt dmabuf_busy: would an access of this kind wait? (poll EPOLLOUT for write, EPOLLIN for read) */
const dmabufBusy = (fd: number, write: boolean) =>
  (dmaBufPollMask(dmaBufFromFd(fdt, fd, 'test')) & (write ? EPOLLOUT : EPOLLIN)) === 0;

describe('dmabuf_sync_file (igt)', () => {
  it('dmabuf_sync_file - export-basic: a READ export waits for writers only, a WRITE export for everything', async () => {
    for (const write of [false, true]) {
      const fd = setup();
      const f = await attachFence(fd, write);
      const rd = dmaBufExportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), READ);
      const wr = dmaBufExportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), WRITE);
      expect(syncFileBusy(rd)).toBe(write);
      expect(syncFileBusy(wr)).toBe(true);
      dmaFenceSignal(f);
      expect(syncFileBusy(rd)).toBe(false);
      expect(syncFileBusy(wr)).toBe(false);
      fdt.closeAll();
      kernel.close();
    }
  });

  it('dmabuf_sync_file - export-before-signal: the exported sync_file signals when the fence does', async () => {
    const fd = setup();
    const f = await attachFence(fd, true);
    const sf = dmaBufExportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), RW);
    const polled = syncFilePoll(fdt, sf, 2_000);
    dmaFenceSignal(f);
    expect(await withDeadline(polled, 2_000, 'poll')).not.toBe(0);
  });

  it('dmabuf_sync_file - export-multiwait: the sync_file waits for every fence present at export', async () => {
    const fd = setup();
    const f1 = await attachFence(fd, true);
    const f2 = await attachFence(fd, false);
    const sf = dmaBufExportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), WRITE);
    dmaFenceSignal(f1);
    expect(syncFileBusy(sf)).toBe(true);
    dmaFenceSignal(f2);
    expect(syncFileBusy(sf)).toBe(false);
  });

  it('dmabuf_sync_file - export-wait-after-attach: a snapshot ignores fences attached later', async () => {
    const fd = setup();
    const rd = dmaBufExportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), READ);
    const wr = dmaBufExportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), WRITE);
    const f = await attachFence(fd, true);
    expect(syncFileBusy(rd)).toBe(false); // stub fence: already signalled
    expect(syncFileBusy(wr)).toBe(false);
    expect(syncFileBusy(dmaBufExportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), READ))).toBe(true);
    dmaFenceSignal(f);
  });

  it('dmabuf_sync_file - import-basic: a WRITE import blocks readers and writers, a READ import only writers', async () => {
    const fd = setup();
    const tl = swSyncTimelineCreate(fdt);
    const wfence = swSyncCreateFence(fdt, tl, 1);
    await dmaBufImportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), WRITE, wfence);
    expect(dmabufBusy(fd, false)).toBe(true);
    expect(dmabufBusy(fd, true)).toBe(true);
    swSyncInc(fdt, tl, 1);
    expect(dmabufBusy(fd, true)).toBe(false);
    const rfence = swSyncCreateFence(fdt, tl, 2);
    await dmaBufImportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), READ, rfence);
    expect(dmabufBusy(fd, false)).toBe(false);
    expect(dmabufBusy(fd, true)).toBe(true);
    swSyncInc(fdt, tl, 1);
    expect(dmabufBusy(fd, true)).toBe(false);
  });

  it('dmabuf_sync_file - import-multiple-read-only: read fences block writers until all signal, never readers', async () => {
    const fd = setup();
    const tl1 = swSyncTimelineCreate(fdt);
    const tl2 = swSyncTimelineCreate(fdt);
    await dmaBufImportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), READ, swSyncCreateFence(fdt, tl1, 1));
    await dmaBufImportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), READ, swSyncCreateFence(fdt, tl2, 1));
    expect(dmabufBusy(fd, false)).toBe(false);
    expect(dmabufBusy(fd, true)).toBe(true);
    swSyncInc(fdt, tl1, 1);
    expect(dmabufBusy(fd, true)).toBe(true);
    swSyncInc(fdt, tl2, 1);
    expect(dmabufBusy(fd, true)).toBe(false);
  });

  it('dmabuf_sync_file - import-multiple-read-write: a write fence among reads blocks readers until it signals', async () => {
    const fd = setup();
    const tlr = swSyncTimelineCreate(fdt);
    const tlw = swSyncTimelineCreate(fdt);
    await dmaBufImportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), READ, swSyncCreateFence(fdt, tlr, 1));
    await dmaBufImportSyncFile(fdt, dmaBufFromFd(fdt, fd, 't'), WRITE, swSyncCreateFence(fdt, tlw, 1));
    expect(dmabufBusy(fd, false)).toBe(true);
    swSyncInc(fdt, tlw, 1);
    expect(dmabufBusy(fd, false)).toBe(false);
    expect(dmabufBusy(fd, true)).toBe(true);
    swSyncInc(fdt, tlr, 1);
    expect(dmabufBusy(fd, true)).toBe(false);
  });
});

describe('dma-buf file', () => {
  it('dma-buf-file - rule 33: export/import flags must be READ and/or WRITE (EINVAL naming flags)', async () => {
    const fd = setup();
    const buf = dmaBufFromFd(fdt, fd, 't');
    for (const flags of [0, 4, RW | 8]) {
      expect(() => dmaBufExportSyncFile(fdt, buf, flags)).toThrow(
        /EINVAL: DMA_BUF_IOCTL_EXPORT_SYNC_FILE: flags/,
      );
      await expect(dmaBufImportSyncFile(fdt, buf, flags, fd)).rejects.toThrow(
        /EINVAL: DMA_BUF_IOCTL_IMPORT_SYNC_FILE: flags/,
      );
    }
    // The fd given to import must be a sync_file.
    await expect(dmaBufImportSyncFile(fdt, buf, READ, fd)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(dmaBufImportSyncFile(fdt, buf, READ, 999)).rejects.toMatchObject({ code: 'EBADF' });
  });

  it('dma-buf-file - dma_buf_get takes a reference; the buffer is released when the fd and that reference are gone', async () => {
    const fd = setup();
    const free0 = kernel.ramAlloc.freePages;
    const buf = dmaBufGet(fdt, fd);
    fdt.close(fd);
    expect(kernel.ramAlloc.freePages).toBe(free0);
    dmaBufPut(buf);
    expect(kernel.ramAlloc.freePages).toBe(free0 + 1);
    expect(() => dmaBufGet(fdt, fd)).toThrow(EmuError);
  });

  it('dma-buf-file - dma_buf_get on a non-dma-buf fd is EINVAL, on a closed fd EBADF', () => {
    setup();
    const tl = swSyncTimelineCreate(fdt);
    expect(() => dmaBufGet(fdt, tl)).toThrow(/EINVAL: dmaBufGet: fd \d+ is a sw_sync/);
    expect(() => dmaBufGet(fdt, 77)).toThrow(/EBADF/);
    expect(fdt.get(tl)).not.toBeInstanceOf(DmaBufFile);
  });

  it('dma-buf-file - DMA_BUF_SET_NAME accepts up to 31 bytes and refuses longer names', () => {
    const fd = setup();
    const buf = dmaBufFromFd(fdt, fd, 't');
    dmaBufSetName(buf, 'frame-0');
    expect(String(buf)).toMatch(/\(frame-0\)/);
    expect(() => dmaBufSetName(buf, 'x'.repeat(32))).toThrow(/EINVAL: DMA_BUF_SET_NAME: name is 32 bytes/);
  });
});

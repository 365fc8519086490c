// kernel-semantics §6.2 rule 8 at device close (vfio_pci_dma_buf_cleanup): the lock state the
// importers see while the exporter revokes and waits for their unmaps. The kernel holds the resv
// lock from the invalidate until every mapping is gone, which works because revocable importers
// unmap inside invalidate_mappings. The emulator invalidates under the lock the same way but
// waits for the unmaps with the lock dropped (vfio-pci-revoke.ts DOC), so importers that unmap
// on their next access (TestImporter) can finish; the second test pins that difference.
import { afterEach, describe, expect, it } from 'vitest';
import { Latch, withDeadline } from '../../../common/deadline.ts';
import { onTrace } from '../../../common/trace.ts';
import { close as fdClose } from '../../uapi/dma-buf.ts';
import { F_GETFD, F_GETFL, FD_CLOEXEC, fcntl, O_CLOEXEC, O_RDONLY, processExec } from '../../uapi/process.ts';
import { O_RDWR, vfioDeviceClose, vfioDeviceFeatureDmaBuf } from '../../uapi/vfio.ts';
import {
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
} from '../dma-buf/dma-buf.ts';
import { DmaDataDirection, PAGE_SIZE, type SgTable } from '../dma-buf/scatterlist.ts';
import { MS, type VfioHost, vfioHost, vfioHostsTeardown } from './fixtures/vfio-host.ts';
import { vfioPciDmaBufOf } from './vfio-pci-dmabuf.ts';

afterEach(vfioHostsTeardown);

const BIDI = DmaDataDirection.BIDIRECTIONAL;

async function exportBar0(h: VfioHost) {
  const fd = await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, {
    region_index: 0,
    open_flags: O_RDWR,
    flags: 0,
    nr_ranges: 1,
    dma_ranges: [{ offset: 0, length: 4 * PAGE_SIZE }],
  });
  const buf = h.buf(fd);
  return { fd, buf, priv: vfioPciDmaBufOf(buf)! };
}

describe('vfio dma-buf fd flags (rule 3)', () => {
  it('vfio - the dma-buf fd honours open_flags: its access mode and O_CLOEXEC; exec closes only the O_CLOEXEC one', async () => {
    const h = await vfioHost();
    const exp = (open_flags: number) =>
      vfioDeviceFeatureDmaBuf(h.proc, h.devFd, {
        region_index: 0,
        open_flags,
        flags: 0,
        nr_ranges: 1,
        dma_ranges: [{ offset: 0, length: PAGE_SIZE }],
      });
    const rw = await exp(O_RDWR | O_CLOEXEC);
    const ro = await exp(O_RDONLY);
    expect([fcntl(h.proc, rw, F_GETFL), fcntl(h.proc, rw, F_GETFD)]).toEqual([O_RDWR, FD_CLOEXEC]);
    expect([fcntl(h.proc, ro, F_GETFL), fcntl(h.proc, ro, F_GETFD)]).toEqual([O_RDONLY, 0]);
    processExec(h.proc);
    expect(() => fcntl(h.proc, rw, F_GETFD)).toThrow(/EBADF/);
    expect(fcntl(h.proc, ro, F_GETFL)).toBe(O_RDONLY);
    fdClose(h.proc, ro);
  });
});

describe('vfio close-time revoke', () => {
  it('vfio - close invalidates with the resv lock held; an importer that unmaps inside its callback leaves nothing to wait for', async () => {
    const h = vfioHost();
    const { fd, buf, priv } = await exportBar0(h);
    const seen: { locked: boolean; revoked: boolean; before: number; after: number }[] = [];
    let unmapped: Promise<void> | null = null;
    let sgt: SgTable | null = null;
    // A revocable importer as the kernel expects one: it unmaps synchronously inside the callback,
    // with the lock the exporter holds (the locked unmap asserts it is held).
    const a = await dmaBufDynamicAttach(buf, h.nic, {
      allowPeer2peer: true,
      invalidateMappings: (att) => {
        const before = priv.mappings.count;
        if (sgt) unmapped = dmaBufUnmapAttachment(att, sgt, BIDI);
        sgt = null;
        seen.push({
          locked: buf.resv.lock.isLocked,
          revoked: priv.revoked,
          before,
          after: priv.mappings.count,
        });
      },
    });
    sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
    expect(priv.mappings.count).toBe(1);
    const timeouts: unknown[] = [];
    const off = onTrace('vfioRevokeTimeout', (m) => timeouts.push(m));
    try {
      await withDeadline(vfioDeviceClose(h.proc, h.devFd), MS, 'device close');
    } finally {
      off();
    }
    expect(seen).toEqual([{ locked: true, revoked: true, before: 1, after: 0 }]);
    await withDeadline(unmapped!, MS, 'unmap inside invalidate');
    expect(timeouts).toEqual([]);
    expect([priv.permanent, priv.mappings.count, buf.resv.lock.isLocked]).toEqual([true, 0, false]);
    await dmaBufDetach(buf, a);
    fdClose(h.proc, fd);
    expect(buf.released).toBe(true);
  });

  it('vfio - close waits for the unmaps with the resv lock dropped (emulator difference): an importer that unmaps after its callback, taking the lock, lets the close finish', async () => {
    const h = vfioHost();
    const { fd, buf, priv } = await exportBar0(h);
    const invalidated = new Latch(1, MS, 'invalidate on close');
    const lockedInCallback: boolean[] = [];
    const a = await dmaBufDynamicAttach(buf, h.nic, {
      allowPeer2peer: true,
      invalidateMappings: () => {
        lockedInCallback.push(buf.resv.lock.isLocked);
        invalidated.unlock();
      },
    });
    const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
    let closed = false;
    const closing = vfioDeviceClose(h.proc, h.devFd).then(() => {
      closed = true;
    });
    await invalidated.done;
    expect(lockedInCallback).toEqual([true]);
    // The close is still waiting for this mapping, and it does so without the resv lock (the
    // kernel would still hold it here, and this importer's unmap would block until its WARN).
    expect([closed, priv.revoked, priv.mappings.count, buf.resv.lock.isLocked]).toEqual([
      false,
      true,
      1,
      false,
    ]);
    await withDeadline(dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI), MS, 'unmap after the callback');
    await withDeadline(closing, MS, 'device close');
    expect([closed, priv.permanent, priv.mappings.count]).toEqual([true, true, 0]);
    await dmaBufDetach(buf, a);
    fdClose(h.proc, fd);
    expect(buf.released).toBe(true);
  });
});

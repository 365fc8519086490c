// The proposed permanent revoke of one VFIO dma-buf (kernel-semantics §6.2 rule 11, §6.3
// scenario 7; Matt Evans, Jun 2026): VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE runs the revoke protocol
// of rule 8 on one buffer into PERM_REVOKED, which decode on and reset never undo; the BAR range
// can then be exported again as a new dma-buf. Importers are TestImporter (gpu, IOVA through the
// IOMMU) and raw dynamic attachments (nic, bus addresses).
import { afterEach, describe, expect, it } from 'vitest';
import { Latch, withDeadline } from '../../../common/deadline.ts';
import { Errno } from '../../../common/errno.ts';
import { onTrace } from '../../../common/trace.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { close as fdClose, dmaHeapAlloc } from '../../uapi/dma-buf.ts';
import {
  O_RDWR,
  VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR,
  VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  vfioDeviceClose,
  vfioDeviceFeature,
  vfioDeviceFeatureDmaBuf,
  vfioDeviceFeatureDmaBufRevoke,
  vfioDeviceOpen,
  vfioDeviceReset,
  vfioDeviceSetCommand,
} from '../../uapi/vfio.ts';
import {
  type DmaBuf,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
} from '../dma-buf/dma-buf.ts';
import { DmaDataDirection, PAGE_SIZE, type SgTable } from '../dma-buf/scatterlist.ts';
import type { TestImporter } from '../dma-buf/test-importer.ts';
import {
  busyFence,
  MS,
  pattern,
  START_MS,
  sgtWrite,
  type VfioHost,
  vfioHost,
  vfioHostsTeardown,
} from './fixtures/vfio-host.ts';
import { DECODE_OFF, DECODE_ON, exportBar0, LEN, revokeUnderTraffic } from './fixtures/revoke.ts';
import { vfioPciProbe, vfioPciRemove } from './vfio-pci.ts';
import { vfioPciDmaBufOf } from './vfio-pci-dmabuf.ts';
import { VfioDmaBufStatus } from './vfio-pci-revoke.ts';

afterEach(vfioHostsTeardown);

const BIDI = DmaDataDirection.BIDIRECTIONAL;
const { OK, TEMP_REVOKED, PERM_REVOKED } = VfioDmaBufStatus;

/** Where an importer's invalidations go: set a latch before the revoke that should unlock it. */
type Hook = { latch: Latch | null };

/** A TestImporter on the gpu (THRU_HOST_BRIDGE) whose invalidations unlock `hook.latch`. */
async function gpuImporter(h: VfioHost, buf: DmaBuf, hook: Hook = { latch: null }) {
  const imp = h.importer(h.gpu, { onEvent: (e) => e.what === 'invalidate' && hook.latch?.unlock() });
  await imp.attachTo(buf);
  return imp;
}

const revoke = (h: VfioHost, dmabufFd: number, devFd = h.devFd) =>
  withDeadline(vfioDeviceFeatureDmaBufRevoke(h.proc, devFd, { dmabuf_fd: dmabufFd }), MS, 'DMA_BUF_REVOKE');

/**
 * Run a revoking `op` while each importer holds a mapping: a TestImporter lets go of its stale
 * table at its next access (refused ENODEV), so make one once it was invalidated; the revoke
 * waits for it.
 */
async function letGo(what: string, op: () => Promise<void>, ...users: [TestImporter, Hook][]) {
  for (const [, hook] of users) hook.latch = new Latch(1, MS, `invalidate on ${what}`);
  const running = withDeadline(op(), MS, what);
  for (const [imp, hook] of users) {
    await hook.latch!.done;
    await expectCode(imp.write(0, pattern(32, 99)), 'ENODEV');
  }
  await running;
}

const revokeMapped = (h: VfioHost, dmabufFd: number, imp: TestImporter, hook: Hook) =>
  letGo('DMA_BUF_REVOKE', () => revoke(h, dmabufFd), [imp, hook]);

/** Does BAR0 hold `want` at `offset`? (A boolean: no big arrays go to expect.) */
const barHolds = (h: VfioHost, offset: number, want: Uint8Array) =>
  Buffer.from(h.vdev.bars[0]!.region.bytes.subarray(offset, offset + want.length)).equals(want);

describe('vfio permanent revoke (DMA_BUF_REVOKE)', () => {
  it('vfio - DMA_BUF_REVOKE invalidates every importer and returns once they unmapped; attach and map are ENODEV for good and the fd still closes', async () => {
    const h = vfioHost();
    const { fd, buf, priv } = await exportBar0(h);
    const invalidated = new Latch(2, MS, 'invalidate of both importers');
    const imp = await gpuImporter(h, buf, { latch: invalidated });
    expect(await imp.write(0, pattern(64, 1))).toBe(0);
    // A NIC that unmaps a little after its callback (on a later turn), as a deferred work item would.
    let nicUnmapped = false;
    let nicTable: SgTable | null = null;
    const nic = await dmaBufDynamicAttach(buf, h.nic, {
      allowPeer2peer: true,
      invalidateMappings: (att) => {
        invalidated.unlock();
        const t = nicTable;
        nicTable = null;
        if (t)
          setImmediate(() => {
            void dmaBufUnmapAttachmentUnlocked(att, t, BIDI).then(() => {
              nicUnmapped = true;
            });
          });
      },
    });
    nicTable = await dmaBufMapAttachmentUnlocked(nic, BIDI);
    expect(sgtWrite(h.peer(h.nic), nicTable, 64, pattern(64, 2))).toBe(0);
    expect(priv.mappings.count).toBe(2);

    const revoking = revoke(h, fd);
    await invalidated.done;
    expect(priv.status).toBe(PERM_REVOKED);
    // The TestImporter lets go of its stale table at its next access; the re-map is refused.
    expect((await expectCode(imp.write(0, pattern(64, 3)), 'ENODEV')).message).toMatch(/is revoked for good/);
    await revoking;
    expect([nicUnmapped, priv.mappings.count, imp.invalidations]).toEqual([true, 0, 1]);

    // Nothing maps or attaches again; the buffer stays on the device until its fd closes.
    expect((await expectCode(dmaBufMapAttachmentUnlocked(nic, BIDI), 'ENODEV')).message).toMatch(
      /is revoked for good/,
    );
    await expectCode(gpuImporter(h, buf), 'ENODEV');
    expect([h.vdev.registrations, h.vdev.dmabufs.has(priv)]).toEqual([1, true]);
    expect(barHolds(h, 0, pattern(64, 1)) && barHolds(h, 64, pattern(64, 2))).toBe(true);
    await dmaBufDetach(buf, nic);
    await imp.close();
    fdClose(h.proc, fd);
    expect([buf.released, h.vdev.registrations, h.vdev.dmabufs.size]).toEqual([true, 0, 0]);
  });

  it('vfio - DMA_BUF_REVOKE is for good: decode off/on and a reset restore the other buffers but never a revoked one, even one revoked while decode was off', async () => {
    const h = vfioHost();
    const a = await exportBar0(h); // revoked while OK
    const b = await exportBar0(h, LEN); // never revoked: the control
    const c = await exportBar0(h, 2 * LEN); // revoked while decode is off (TEMP -> PERM)
    const hookA: Hook = { latch: null };
    const impA = await gpuImporter(h, a.buf, hookA);
    const hookB: Hook = { latch: null };
    const impB = await gpuImporter(h, b.buf, hookB);
    expect(await impA.write(0, pattern(32, 1))).toBe(0);
    await revokeMapped(h, a.fd, impA, hookA);
    await expectCode(impA.write(0, pattern(32, 2)), 'ENODEV');

    await letGo('decode off', () => vfioDeviceSetCommand(h.proc, h.devFd, DECODE_OFF), [impB, hookB]);
    expect([a.priv.status, b.priv.status, c.priv.status]).toEqual([PERM_REVOKED, TEMP_REVOKED, TEMP_REVOKED]);
    await revoke(h, c.fd);
    await withDeadline(vfioDeviceSetCommand(h.proc, h.devFd, DECODE_ON), MS, 'decode on');
    expect([a.priv.status, b.priv.status, c.priv.status]).toEqual([PERM_REVOKED, OK, PERM_REVOKED]);
    expect(await impB.write(0, pattern(32, 3))).toBe(0);
    await expectCode(impA.write(0, pattern(32, 4)), 'ENODEV');
    await expectCode(gpuImporter(h, c.buf), 'ENODEV');

    await letGo('reset', () => vfioDeviceReset(h.proc, h.devFd), [impB, hookB]);
    expect([a.priv.status, b.priv.status, c.priv.status]).toEqual([PERM_REVOKED, OK, PERM_REVOKED]);
    expect(await impB.write(32, pattern(32, 5))).toBe(0);
    await expectCode(impA.write(0, pattern(32, 6)), 'ENODEV');
    await expectCode(gpuImporter(h, a.buf), 'ENODEV');
    expect(barHolds(h, 0, pattern(32, 1)) && barHolds(h, LEN, pattern(32, 3))).toBe(true);
    expect(barHolds(h, LEN + 32, pattern(32, 5))).toBe(true);
  });

  it('vfio - after DMA_BUF_REVOKE a new dma-buf over the same BAR range works: importers attach, map and their writes land', async () => {
    const h = vfioHost();
    const old = await exportBar0(h);
    const hook: Hook = { latch: null };
    const oldImp = await gpuImporter(h, old.buf, hook);
    expect(await oldImp.write(0, pattern(64, 1))).toBe(0);
    await revokeMapped(h, old.fd, oldImp, hook);
    await expectCode(oldImp.write(0, pattern(64, 2)), 'ENODEV');

    const again = await exportBar0(h); // the same range, a new buffer
    expect([again.buf === old.buf, again.priv.status, h.vdev.registrations]).toEqual([false, OK, 2]);
    const imp = await gpuImporter(h, again.buf);
    expect(await imp.write(0, pattern(64, 3))).toBe(0);
    const nic = await dmaBufDynamicAttach(again.buf, h.nic, {
      allowPeer2peer: true,
      invalidateMappings: () => {},
    });
    const t = await dmaBufMapAttachmentUnlocked(nic, BIDI);
    expect(sgtWrite(h.peer(h.nic), t, 64, pattern(64, 4))).toBe(0);
    expect(barHolds(h, 0, pattern(64, 3)) && barHolds(h, 64, pattern(64, 4))).toBe(true);
    await expectCode(oldImp.write(0, pattern(64, 5)), 'ENODEV'); // the old one stays dead
    expect(barHolds(h, 0, pattern(64, 3))).toBe(true);
    await dmaBufUnmapAttachmentUnlocked(nic, t, BIDI);
    await dmaBufDetach(again.buf, nic);
  });

  it('vfio - DMA_BUF_REVOKE refuses a fd that is no dma-buf (EINVAL, EBADF) and a dma-buf that is not this device (ENODEV), is SET only, and a second revoke is 0; MEMATTR is EOPNOTSUPP', async () => {
    const h = vfioHost();
    const { fd, buf, priv } = await exportBar0(h);
    const refs = buf.refcount;
    const set = (data: unknown) =>
      vfioDeviceFeature(h.proc, h.devFd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE, data);
    expect((await expectCode(set({ dmabuf_fd: h.devFd }), 'EINVAL')).message).toMatch(
      /dmabuf_fd: fd \d+ is a vfio-device/,
    );
    expect((await expectCode(set({ dmabuf_fd: 'x' }), 'EINVAL')).message).toMatch(/dmabuf_fd x must be/);
    await expectCode(set({ dmabuf_fd: 2 ** 40 }), 'EINVAL'); // outside __s32: not a fd number at all
    expect((await expectCode(set(undefined), 'EINVAL')).message).toMatch(/data missing/);
    await expectCode(set({ dmabuf_fd: 999 }), 'EBADF');
    await expectCode(set({ dmabuf_fd: -1 }), 'EBADF');
    const heapFd = dmaHeapAlloc(h.proc, 'system', { len: PAGE_SIZE });
    expect((await expectCode(set({ dmabuf_fd: heapFd }), 'ENODEV')).message).toMatch(
      /dmabuf_fd \d+ .* is not a dma-buf of vfio-pci vfio0/,
    );
    const feature = (flags: number) => vfioDeviceFeature(h.proc, h.devFd, flags, { dmabuf_fd: fd });
    expect(
      (await expectCode(feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE), 'EINVAL'))
        .message,
    ).toMatch(/supports only SET/);
    expect(
      await feature(VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE),
    ).toBe(0);
    // No dma-buf mmap in the emulator: the memory-attribute feature is not implemented.
    expect(
      (await expectCode(feature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR), 'EOPNOTSUPP'))
        .message,
    ).toMatch(
      new RegExp(`feature ${VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR} is not supported by vfio-pci vfio0`),
    );
    expect(priv.status).toBe(OK); // none of the above touched the buffer
    expect(buf.refcount).toBe(refs); // nor kept a reference to it

    // A dma-buf of another vfio device in the same process.
    const other = vfioPciProbe(h.kernel, 'vfio1', { bars: [{ size: 64 << 10 }] });
    try {
      const otherDev = vfioDeviceOpen(h.proc, 'vfio1');
      const otherFd = await vfioDeviceFeatureDmaBuf(h.proc, otherDev, {
        region_index: 0,
        open_flags: O_RDWR,
        flags: 0,
        nr_ranges: 1,
        dma_ranges: [{ offset: 0, length: PAGE_SIZE }],
      });
      await expectCode(set({ dmabuf_fd: otherFd }), 'ENODEV');
      expect(vfioPciDmaBufOf(h.buf(otherFd))!.status).toBe(OK);
      await expectCode(revoke(h, fd, otherDev), 'ENODEV'); // and ours through its device fd
      expect(priv.status).toBe(OK);
      expect(buf.refcount).toBe(refs);
      fdClose(h.proc, otherFd);
      await withDeadline(vfioDeviceClose(h.proc, otherDev), MS, 'close vfio1');
    } finally {
      await withDeadline(vfioPciRemove(other), START_MS, 'remove vfio1');
      await other.host.worker.terminate();
    }

    const reported: unknown[] = [];
    const unsub = onTrace('vfioRevoke', (m) => reported.push(m));
    try {
      await revoke(h, fd);
      await revoke(h, fd); // idempotent: already revoked for good
      expect(priv.status).toBe(PERM_REVOKED);
      // A buffer the device's close took away is no longer this device's, even on a new open.
      await withDeadline(vfioDeviceClose(h.proc, h.devFd), MS, 'device close');
    } finally {
      unsub();
    }
    expect(reported.length).toBe(1); // "revoked for good" once, not per repeat or at close
    const fd2 = vfioDeviceOpen(h.proc, 'vfio0');
    await expectCode(revoke(h, fd, fd2), 'ENODEV');
    expect(buf.refcount).toBe(refs);
    fdClose(h.proc, fd);
    expect(h.vdev.registrations).toBe(0);
  });

  it('vfio - DMA_BUF_REVOKE whose fence never signals fails ETIMEDOUT naming the buffer; it is revoked for good anyway', async () => {
    const h = vfioHost({ revokeFenceTimeoutMs: 100 });
    const { fd, buf, priv } = await exportBar0(h);
    const busy = await busyFence(buf);
    const refs = buf.refcount;
    const e = await expectCode(revoke(h, fd), 'ETIMEDOUT');
    expect(buf.refcount).toBe(refs); // the call's own reference is dropped on the error path too
    expect(e.message).toContain(String(buf));
    expect(e.message).toMatch(/fences did not signal within 100 ms/);
    expect(priv.status).toBe(PERM_REVOKED);
    busy.signal();
    await revoke(h, fd); // nothing left to wait for now
  });
});

describe('vfio permanent revoke under traffic', () => {
  it('vfio - DMA_BUF_REVOKE under traffic: no importer write lands after it returned, and later accesses fail even after decode off/on', async () => {
    const h = vfioHost();
    const { fd, buf, priv } = await exportBar0(h);
    const imp = await gpuImporter(h, buf);
    let mappedAtReturn = -1;
    const r = await revokeUnderTraffic(h, imp, async () => {
      await revoke(h, fd);
      mappedAtReturn = priv.mappings.count; // it returned only once the importer let go
    });
    expect(mappedAtReturn).toBe(0);
    // Decode off and on again does not bring it back either.
    await withDeadline(vfioDeviceSetCommand(h.proc, h.devFd, DECODE_OFF), MS, 'decode off');
    await withDeadline(vfioDeviceSetCommand(h.proc, h.devFd, DECODE_ON), MS, 'decode on');
    await expectCode(imp.write(0, pattern(PAGE_SIZE, 0)), 'ENODEV');
    expect(r.landedAfter).toEqual([]);
    expect(barHolds(h, 0, pattern(PAGE_SIZE, r.lastOk))).toBe(true); // the last write before it landed
    expect(imp.writeThrough(r.lastTable!, 0, pattern(PAGE_SIZE, 0))).toBe(-Errno.EFAULT);
    expect(barHolds(h, 0, r.snapshot)).toBe(true);
  });
});

// Revoke of VFIO dma-bufs (kernel-semantics §6.2 rules 4, 7-10, §6.3 scenarios 2, 4-6): on
// reset, memory decode off and device close the exporter locks, marks the buffer revoked,
// invalidates, unlocks, waits for fences and for every unmap (each with a deadline); decode on
// un-revokes. Importers are TestImporter (IOVA, THRU_HOST_BRIDGE) and raw attachments.
import { afterEach, describe, expect, it } from 'vitest';
import { Latch, withDeadline } from '../../../common/deadline.ts';
import { Errno } from '../../../common/errno.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { close as fdClose } from '../../uapi/dma-buf.ts';
import { processExit } from '../../uapi/process.ts';
import {
  vfioDeviceClose,
  vfioDeviceGetCommand,
  vfioDeviceOpen,
  vfioDeviceReset,
  vfioDeviceSetCommand,
  vfioSettle,
} from '../../uapi/vfio.ts';
import {
  type DmaBuf,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
} from '../dma-buf/dma-buf.ts';
import { DmaDataDirection, PAGE_SIZE } from '../dma-buf/scatterlist.ts';
import type { TestImporter } from '../dma-buf/test-importer.ts';
import {
  busyFence,
  MS,
  pattern,
  sgtWrite,
  type VfioHost,
  vfioHost,
  vfioHostsTeardown,
} from './fixtures/vfio-host.ts';
import { DECODE_OFF, DECODE_ON, exportBar0, LEN, revokeUnderTraffic } from './fixtures/revoke.ts';

afterEach(vfioHostsTeardown);

const BIDI = DmaDataDirection.BIDIRECTIONAL;

/** A TestImporter on the gpu (THRU_HOST_BRIDGE) whose invalidations unlock `latch`. */
async function gpuImporter(h: VfioHost, buf: DmaBuf, latch?: Latch) {
  const imp = h.importer(h.gpu, { onEvent: (e) => e.what === 'invalidate' && latch?.unlock() });
  await imp.attachTo(buf);
  return imp;
}

const bar0 = (h: VfioHost, n = LEN) => h.vdev.bars[0]!.region.bytes.subarray(0, n);

describe('vfio revoke', () => {
  it('vfio - reset revokes: the importer is invalidated, map is ENODEV while the reset waits for a fence, then it remaps', async () => {
    const h = vfioHost();
    const { buf } = await exportBar0(h);
    const invalidated = new Latch(1, MS, 'invalidate on reset');
    const imp = await gpuImporter(h, buf, invalidated);
    expect(await imp.write(0, pattern(64, 1))).toBe(0);
    const busy = await busyFence(buf); // DMA in flight: the revoke must wait for it
    let done = false;
    const reset = vfioDeviceReset(h.proc, h.devFd).then(() => {
      done = true;
    });
    await invalidated.done;
    // Revoked while the reset waits for the fence: the importer's re-map is refused.
    expect((await expectCode(imp.write(0, pattern(64, 2)), 'ENODEV')).message).toMatch(/is revoked/);
    expect(done).toBe(false);
    busy.signal();
    await withDeadline(reset, MS, 'reset');
    // Decode is still on: the reset un-revoked the buffer and notified the importer again.
    expect(imp.invalidations).toBe(2);
    expect(await imp.write(0, pattern(64, 3))).toBe(0);
    expect(bar0(h, 64)).toEqual(pattern(64, 3));
  });

  it('vfio - a revoke whose fence never signals fails ETIMEDOUT naming the buffer; decode is off anyway', async () => {
    const h = vfioHost({ revokeFenceTimeoutMs: 100 });
    const { buf, priv } = await exportBar0(h);
    const busy = await busyFence(buf);
    const e = await expectCode(
      withDeadline(vfioDeviceSetCommand(h.proc, h.devFd, DECODE_OFF), MS, 'decode off'),
      'ETIMEDOUT',
    );
    expect(e.message).toContain(String(buf));
    expect(e.message).toMatch(/fences did not signal within 100 ms/);
    expect([vfioDeviceGetCommand(h.proc, h.devFd), priv.revoked]).toEqual([DECODE_OFF, true]);
    busy.signal();
  });

  it('vfio - decode off waits until every mapping is unmapped; an importer that never unmaps fails it ETIMEDOUT with the count', async () => {
    const h = vfioHost({ revokeUnmapTimeoutMs: 150 });
    const { buf, priv } = await exportBar0(h);
    const invalidated = new Latch(1, MS, 'invalidate');
    const imp = await gpuImporter(h, buf, invalidated);
    expect(await imp.write(0, pattern(64, 1))).toBe(0);
    let done = false;
    const off = vfioDeviceSetCommand(h.proc, h.devFd, DECODE_OFF).then(() => {
      done = true;
    });
    await invalidated.done;
    // The TestImporter unmaps at its next access: until then the revoke holds.
    expect([done, priv.mappings.count]).toEqual([false, 1]);
    await imp.unmap();
    await withDeadline(off, MS, 'decode off after the unmap');

    // A broken importer: its invalidate does nothing and it never unmaps.
    await vfioDeviceSetCommand(h.proc, h.devFd, DECODE_ON);
    const broken = await dmaBufDynamicAttach(buf, h.nic, {
      allowPeer2peer: true,
      invalidateMappings: () => {},
    });
    const t1 = await dmaBufMapAttachmentUnlocked(broken, BIDI);
    const t2 = await dmaBufMapAttachmentUnlocked(broken, BIDI);
    const e = await expectCode(
      withDeadline(vfioDeviceSetCommand(h.proc, h.devFd, DECODE_OFF), MS, 'decode off'),
      'ETIMEDOUT',
    );
    expect(e.message).toMatch(/2 mapping\(s\) not unmapped within 150 ms .*broken invalidate_mappings/);
    expect(e.message).toContain(String(buf));
    for (const t of [t1, t2]) await dmaBufUnmapAttachmentUnlocked(broken, t, BIDI);
    await dmaBufDetach(buf, broken);
  });

  it('vfio - decode off revokes: map is ENODEV and no peer reaches the BAR; decode on un-revokes and importers remap', async () => {
    const h = vfioHost();
    const { buf } = await exportBar0(h);
    const invalidated = new Latch(2, MS, 'invalidate of both importers');
    const imp = await gpuImporter(h, buf, invalidated);
    const nic = await dmaBufDynamicAttach(buf, h.nic, {
      allowPeer2peer: true,
      invalidateMappings: () => invalidated.unlock(),
    });
    const nicCtx = h.peer(h.nic);
    expect(await imp.write(0, pattern(64, 1))).toBe(0);
    const oldIova = imp.current!;
    const oldBus = await dmaBufMapAttachmentUnlocked(nic, BIDI);
    expect(sgtWrite(nicCtx, oldBus, 64, pattern(64, 2))).toBe(0);

    const off = vfioDeviceSetCommand(h.proc, h.devFd, DECODE_OFF);
    await invalidated.done;
    await dmaBufUnmapAttachmentUnlocked(nic, oldBus, BIDI);
    await expectCode(imp.write(0, pattern(64, 3)), 'ENODEV'); // unmaps the stale table, re-map refused
    await withDeadline(off, MS, 'decode off');

    const before = bar0(h).slice();
    await expectCode(dmaBufMapAttachmentUnlocked(nic, BIDI), 'ENODEV');
    // Stale addresses kept by a buggy device: the IOVA is unmapped, the bus address decodes nowhere.
    expect(imp.writeThrough(oldIova, 0, pattern(64, 4))).toBe(-Errno.EFAULT);
    expect(sgtWrite(nicCtx, oldBus, 64, pattern(64, 5))).toBe(-Errno.EIO);
    expect(bar0(h)).toEqual(before);

    await withDeadline(vfioDeviceSetCommand(h.proc, h.devFd, DECODE_ON), MS, 'decode on');
    expect(await imp.write(0, pattern(64, 6))).toBe(0);
    const bus = await dmaBufMapAttachmentUnlocked(nic, BIDI);
    expect(sgtWrite(nicCtx, bus, 64, pattern(64, 7))).toBe(0);
    expect([bar0(h, 64), bar0(h, 128).subarray(64)]).toEqual([pattern(64, 6), pattern(64, 7)]);
    await dmaBufUnmapAttachmentUnlocked(nic, bus, BIDI);
    await dmaBufDetach(buf, nic);
  });

  it('vfio - a buffer exported while decode is off starts revoked: attach is ENODEV until decode is on', async () => {
    const h = vfioHost();
    await vfioDeviceSetCommand(h.proc, h.devFd, DECODE_OFF);
    const { buf, priv } = await exportBar0(h);
    expect(priv.revoked).toBe(true);
    const imp = h.importer(h.gpu);
    expect((await expectCode(imp.attachTo(buf), 'ENODEV')).message).toMatch(/is revoked/);
    await vfioDeviceSetCommand(h.proc, h.devFd, DECODE_ON);
    await imp.attachTo(buf);
    expect(await imp.write(0, pattern(32, 1))).toBe(0);
    expect(bar0(h, 32)).toEqual(pattern(32, 1));
  });

  it('vfio - closing the device fd revokes every buffer for good; reopening does not restore it and the dma-buf fd still closes', async () => {
    const h = vfioHost();
    const a = await exportBar0(h);
    const b = await exportBar0(h, LEN);
    const invalidated = new Latch(1, MS, 'invalidate on close');
    const imp = await gpuImporter(h, a.buf, invalidated);
    expect(await imp.write(0, pattern(64, 1))).toBe(0);
    expect(h.vdev.registrations).toBe(2);
    const closing = vfioDeviceClose(h.proc, h.devFd);
    await invalidated.done;
    await expectCode(imp.write(0, pattern(64, 2)), 'ENODEV'); // the importer lets go of its mapping
    await withDeadline(closing, MS, 'device close');
    expect([a.priv.permanent, b.priv.permanent, h.vdev.registrations, h.vdev.dmabufs.size]).toEqual([
      true,
      true,
      0,
      0,
    ]);
    // A new open (and decode toggling) belongs to a new user: the old buffers stay revoked.
    const fd2 = vfioDeviceOpen(h.proc, 'vfio0');
    await vfioDeviceSetCommand(h.proc, fd2, DECODE_OFF);
    await vfioDeviceSetCommand(h.proc, fd2, DECODE_ON);
    await expectCode(imp.write(0, pattern(64, 3)), 'ENODEV');
    await imp.close();
    fdClose(h.proc, a.fd);
    fdClose(h.proc, b.fd);
    expect([a.buf.released, b.buf.released, h.vdev.registrations]).toEqual([true, true, 0]);
  });

  it('vfio - process exit closes the device in the background: vfioSettle waits for the revoke, then buffers are gone', async () => {
    const h = vfioHost();
    const { buf, priv } = await exportBar0(h);
    const invalidated = new Latch(1, MS, 'invalidate on exit');
    const imp = await gpuImporter(h, buf, invalidated);
    expect(await imp.write(0, pattern(64, 1))).toBe(0);
    await processExit(h.proc); // closes the device fd and the dma-buf fd; the importer keeps a reference
    await invalidated.done;
    expect(priv.revoked).toBe(true);
    await expectCode(imp.write(0, pattern(64, 2)), 'ENODEV'); // lets go of its mapping
    await withDeadline(vfioSettle(h.proc), MS, 'background device close');
    expect([priv.permanent, h.vdev.openCount, h.vdev.registrations]).toEqual([true, 0, 0]);
    await imp.close();
    expect(buf.released).toBe(true);
  });
});

describe('vfio revoke under traffic', () => {
  it('vfio - revoke under traffic: no importer write lands after the revoke completed, and later accesses fail', async () => {
    const h = vfioHost();
    const { buf } = await exportBar0(h);
    const imp: TestImporter = await gpuImporter(h, buf);
    const r = await revokeUnderTraffic(h, imp, () =>
      withDeadline(vfioDeviceSetCommand(h.proc, h.devFd, DECODE_OFF), MS, 'revoke under traffic'),
    );
    expect(r.landedAfter).toEqual([]);
    expect(r.snapshot.subarray(0, PAGE_SIZE)).toEqual(pattern(PAGE_SIZE, r.lastOk)); // the last write before it landed
    expect(imp.writeThrough(r.lastTable!, 0, pattern(PAGE_SIZE, 0))).toBe(-Errno.EFAULT);
    expect(bar0(h)).toEqual(r.snapshot);
  });
});

// ib_umem_dmabuf and mlx5 dma-buf MR rules (kernel-semantics §7.2 rules 1, 3, 5; §7.3 rules 8,
// 12): registration errors leave nothing behind; unmap gives the exporter back its whole,
// untrimmed table and is a no-op when nothing is mapped; a second revoke of a pinned-revocable
// umem does nothing; an ODP MR is prefaulted over its whole range at registration; a dereg
// racing an invalidate or a page fault leaves no mapping, no live translation and no IOMMU fault.
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { onTrace } from '../../../common/trace.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { Mlx5Ctl, Mlx5Mkey, Mlx5MkeyState, Mlx5Xlt } from '../../fabric/mlx5-layout.ts';
import { DmaFenceTimeline } from '../dma-buf/dma-fence.ts';
import {
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
} from '../dma-buf/dma-resv.ts';
import { PAGE_SIZE } from '../dma-buf/scatterlist.ts';
import {
  IbvWcStatus as S,
  ibvDeregMr,
  ibvPostSend,
  ibvRegDmabufMr,
  ibvRegMr,
  Mlx5dvRegDmabufAccess as A,
  mlx5dvRegDmabufMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import type { IbUmemDmabufOps } from './umem-dmabuf.ts';
import {
  ibUmemDmabufGet,
  ibUmemDmabufGetPinned,
  ibUmemDmabufGetPinnedRevocableAndLock,
  ibUmemDmabufMapPages,
  ibUmemDmabufRelease,
  ibUmemDmabufRevoke,
  ibUmemDmabufUnmapPages,
} from './umem-dmabuf.ts';
import type { Mlx5Mr } from './mlx5/mlx5-mr.ts';
import {
  ALL_ACCESS,
  firstDiff,
  MS,
  mkeyWord,
  mockBuf,
  pattern,
  pollN,
  rcPair,
  rdmaHost,
  rdmaTeardown,
  rdmaWr,
  traceCounter,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

const IOVA = 0x800_0000;
const NOP_OPS: IbUmemDmabufOps = { invalidate: () => {} };

describe('ib_umem_dmabuf rules', () => {
  it('umem - get without an invalidate op, with a zero length, or with offset + size overflowing is EINVAL and takes nothing', async () => {
    const h = await rdmaHost();
    const B = mockBuf(h, 64 << 10);
    const dev = h.nics[0].dev;
    const buf = B.exp.dmabuf;
    const refs = buf.refcount;
    const bad: Array<[string, () => Promise<unknown>]> = [
      ['ops null', () => ibUmemDmabufGet(dev, 0, 4096, buf, true, null as unknown as IbUmemDmabufOps)],
      ['ops {}', () => ibUmemDmabufGet(dev, 0, 4096, buf, true, {} as IbUmemDmabufOps)],
      [
        'invalidate not a function',
        () => ibUmemDmabufGet(dev, 0, 4096, buf, true, { invalidate: 1 } as unknown as IbUmemDmabufOps),
      ],
      ['zero length', () => ibUmemDmabufGet(dev, 0, 0, buf, true, NOP_OPS)],
      ['zero length at the end', () => ibUmemDmabufGet(dev, buf.size, 0, buf, true, NOP_OPS)],
      ['zero length pinned', () => ibUmemDmabufGetPinned(dev, 0, 0, buf, true)],
      ['zero length pinned-revocable', () => ibUmemDmabufGetPinnedRevocableAndLock(dev, 0, 0, buf, true)],
      // offset + size past 2^53: the JS counterpart of the kernel's u64 check_add_overflow.
      ['sum overflows', () => ibUmemDmabufGet(dev, 2 ** 53 - PAGE_SIZE, 2 * PAGE_SIZE, buf, true, NOP_OPS)],
      [
        'offset 2^64 - 4096',
        () => ibUmemDmabufGet(dev, 2 ** 64 - PAGE_SIZE, 2 * PAGE_SIZE, buf, true, NOP_OPS),
      ],
      ['size 2^64 - 4096', () => ibUmemDmabufGet(dev, PAGE_SIZE, 2 ** 64 - PAGE_SIZE, buf, true, NOP_OPS)],
      [
        'sum overflows pinned',
        () => ibUmemDmabufGetPinned(dev, 2 ** 53 - PAGE_SIZE, 2 * PAGE_SIZE, buf, true),
      ],
      [
        'sum overflows pinned-revocable',
        () => ibUmemDmabufGetPinnedRevocableAndLock(dev, 2 ** 53 - PAGE_SIZE, 2 * PAGE_SIZE, buf, true),
      ],
    ];
    for (const [what, call] of bad) {
      const e = await expectCode(withDeadline(call(), MS, what), 'EINVAL');
      expect(e.message, what).toMatch(/ibUmemDmabufGet/);
      // nothing attached, no reference kept, the lock free.
      expect(buf.attachments.length, what).toBe(0);
      expect(buf.refcount, what).toBe(refs);
      expect(buf.resv.lock.isLocked, what).toBe(false);
    }
  });

  it('umem - reg_dmabuf_mr of zero length or with offset + length overflowing is EINVAL in every mode and leaves no mkey or attachment', async () => {
    const h = await rdmaHost();
    const [a] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const B = mockBuf(h, 64 << 10);
    const mrs = h.nics[0].mrs.size;
    const modes: Array<[string, (off: number, len: number, iova: number) => Promise<unknown>]> = [
      ['odp', (o, l, i) => ibvRegDmabufMr(a.pd, o, l, i, B.fd, ALL_ACCESS)],
      [
        'pinned',
        (o, l, i) =>
          mlx5dvRegDmabufMr(a.pd, o, l, i, B.fd, ALL_ACCESS, A.MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT),
      ],
      [
        'pinned-revocable',
        (o, l, i) => mlx5dvRegDmabufMr(a.pd, o, l, i, B.fd, ALL_ACCESS, A.P2PEMU_PINNED_REVOCABLE),
      ],
    ];
    for (const [mode, reg] of modes) {
      for (const [what, off, len] of [
        ['zero length', 0, 0],
        ['offset + length past 2^53', 2 ** 53 - PAGE_SIZE, 2 * PAGE_SIZE],
        ['offset 2^64 - 4096', 2 ** 64 - PAGE_SIZE, 2 * PAGE_SIZE],
      ] as const) {
        await expectCode(withDeadline(reg(off, len, 0), MS, `${mode} ${what}`), 'EINVAL');
        expect(B.exp.dmabuf.attachments.length, `${mode} ${what}`).toBe(0);
        expect(h.nics[0].mrs.size, `${mode} ${what}`).toBe(mrs);
      }
    }
    // the buffer is still fine for a good registration.
    const mr = await withDeadline(ibvRegDmabufMr(a.pd, 0, 64 << 10, IOVA, B.fd, ALL_ACCESS), MS, 'reg');
    expect(mr.length).toBe(64 << 10);
  });

  it('umem - unmap gives the exporter back its whole untrimmed table; unmapping when nothing is mapped is a no-op', async () => {
    const h = await rdmaHost();
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const dev = h.nics[0].dev;
    const unmaps = traceCounter('dmabufUnmap', (m) => m.buf === String(buf));
    try {
      // a window [PAGE + 100, +2 pages) covers pages 1..3 of the 16.
      const umem = await withDeadline(
        ibUmemDmabufGet(dev, PAGE_SIZE + 100, 2 * PAGE_SIZE, buf, true, NOP_OPS),
        MS,
        'get',
      );
      expect(umem.sgt).toBe(null); // no mapping yet (rule 1)
      await withDeadline(dmaResvLock(buf.resv, null), MS, 'lock');
      try {
        // never mapped: a no-op.
        await withDeadline(ibUmemDmabufUnmapPages(umem), MS, 'unmap unmapped');
        expect(unmaps.n).toBe(0);
        await withDeadline(ibUmemDmabufMapPages(umem), MS, 'map');
        const [attach] = buf.attachments;
        const mine = umem.sgt!;
        const exporters = attach.mappings.get(mine)!.sgt;
        const before = exporters.entries.map((e) => ({ ...e }));
        // the table itself is the whole buffer: the trim lives in the runs only.
        expect(mine.length).toBe(buf.size);
        expect(exporters.length).toBe(buf.size);
        expect(mine.entries.map((e) => ({ ...e }))).toEqual(before);
        // the runs are exactly pages 1..3, starting at the DMA address of page 1.
        expect(umem.runs!.reduce((n, r) => n + r.pages, 0)).toBe(3);
        let page1 = -1;
        for (let i = 0, at = 0; i < before.length; at += before[i].dmaLength, i++) {
          if (at + before[i].dmaLength > PAGE_SIZE) {
            page1 = before[i].dmaAddress + (PAGE_SIZE - at);
            break;
          }
        }
        expect(umem.runs![0].addr).toBe(page1);
        await withDeadline(ibUmemDmabufUnmapPages(umem), MS, 'unmap');
        expect(unmaps.n).toBe(1);
        expect(B.exp.mappedCount).toBe(0);
        expect(umem.sgt).toBe(null);
        expect(umem.runs).toBe(null);
        // what the exporter got back is its table, every entry as it handed it out.
        expect(exporters.entries.map((e) => ({ ...e }))).toEqual(before);
        expect(exporters.length).toBe(buf.size);
        // a second unmap: nothing mapped, nothing happens.
        await withDeadline(ibUmemDmabufUnmapPages(umem), MS, 'unmap again');
        expect(unmaps.n).toBe(1);
        // map again after the unmap: a fresh whole table, trimmed the same way.
        await withDeadline(ibUmemDmabufMapPages(umem), MS, 'map again');
        expect(umem.sgt!.length).toBe(buf.size);
        expect(umem.runs!.reduce((n, r) => n + r.pages, 0)).toBe(3);
      } finally {
        dmaResvUnlock(buf.resv);
      }
      await withDeadline(ibUmemDmabufRelease(umem), MS, 'release');
      expect(unmaps.n).toBe(2);
      expect(buf.attachments.length).toBe(0);
    } finally {
      unmaps.off();
    }
  });

  it('umem - an ODP MR unmapped by an invalidate is not unmapped again by a second invalidate or by dereg', async () => {
    const h = await rdmaHost();
    const [a] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const unmaps = traceCounter('dmabufUnmap', (m) => m.buf === String(buf));
    try {
      const mr = await withDeadline(
        ibvRegDmabufMr(a.pd, 4096, 8192, IOVA + 4096, B.fd, ALL_ACCESS),
        MS,
        'reg',
      );
      await withDeadline(B.exp.move(), MS, 'move 1');
      expect(unmaps.n).toBe(1);
      // nothing mapped now: the second invalidate (a second move) and the dereg unmap nothing.
      await withDeadline(B.exp.move(), MS, 'move 2');
      await withDeadline(ibvDeregMr(mr), MS, 'dereg');
      expect(unmaps.n).toBe(1);
      expect(buf.attachments.length).toBe(0);
    } finally {
      unmaps.off();
    }
  });

  it('umem - a second revoke of a pinned-revocable umem does nothing: one unmap, one unpin, no error', async () => {
    const h = await rdmaHost();
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const of = (m: Record<string, unknown>) => String(m.buf ?? m.umem ?? '').includes(String(buf));
    const unmaps = traceCounter('dmabufUnmap', of);
    const unpins = traceCounter('dmabufUnpin', of);
    const revokes = traceCounter('rdmaUmemRevoke', of);
    try {
      // returns with the resv lock held (rule 6).
      const umem = await withDeadline(
        ibUmemDmabufGetPinnedRevocableAndLock(h.nics[0].dev, 0, 64 << 10, buf, true),
        MS,
        'get',
      );
      const [attach] = buf.attachments;
      try {
        expect(attach.pinCount).toBe(1);
        expect(B.exp.mappedCount).toBe(1);
        await withDeadline(ibUmemDmabufRevoke(umem), MS, 'revoke 1');
        expect({ revoked: umem.revoked, pinned: umem.pinned, pins: attach.pinCount }).toEqual({
          revoked: true,
          pinned: false,
          pins: 0,
        });
        expect(B.exp.mappedCount).toBe(0);
        await withDeadline(ibUmemDmabufRevoke(umem), MS, 'revoke 2');
        expect({ revoked: umem.revoked, pinned: umem.pinned, pins: attach.pinCount }).toEqual({
          revoked: true,
          pinned: false,
          pins: 0,
        });
        expect([unmaps.n, unpins.n, revokes.n]).toEqual([1, 1, 1]);
        // revoked for good: no mapping again.
        await expectCode(withDeadline(ibUmemDmabufMapPages(umem), MS, 'map'), 'EINVAL');
      } finally {
        dmaResvUnlock(buf.resv);
      }
      // release revokes a third time, still harmlessly, then detaches.
      await withDeadline(ibUmemDmabufRelease(umem), MS, 'release');
      expect([unmaps.n, unpins.n, revokes.n]).toEqual([1, 1, 1]);
      expect(buf.attachments.length).toBe(0);
    } finally {
      unmaps.off();
      unpins.off();
      revokes.off();
    }
  });

  it('mlx5 - a pinned-revocable MR revoked twice by its exporter stays revoked; nothing lands and dereg releases it cleanly', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const unpins = traceCounter('dmabufUnpin', (m) => String(m.buf).includes(String(buf)));
    try {
      const mr = await withDeadline(
        mlx5dvRegDmabufMr(b.pd, 0, 64 << 10, IOVA, B.fd, ALL_ACCESS, A.P2PEMU_PINNED_REVOCABLE),
        MS,
        'reg',
      );
      const [attach] = buf.attachments;
      await withDeadline(B.exp.revoke({ waitUnmap: true, timeoutMs: MS }), MS, 'revoke 1');
      await withDeadline(B.exp.unrevoke(), MS, 'unrevoke');
      await withDeadline(B.exp.revoke({ waitUnmap: true, timeoutMs: MS }), MS, 'revoke 2');
      expect(attach.pinCount).toBe(0);
      expect(B.exp.mappedCount).toBe(0);
      expect(unpins.n).toBe(1);
      expect(mkeyWord(h, mr.rkey, Mlx5Mkey.STATE)).toBe(Mlx5MkeyState.REVOKED);
      await withDeadline(B.exp.unrevoke(), MS, 'unrevoke 2');
      const src = mmapAnonymous(h.proc, 4096);
      src.bytes.fill(0x5a);
      const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
      ibvPostSend(a.qp, rdmaWr('write', 1, smr.lkey, src.addr, mr.rkey, IOVA, 4096));
      expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_REM_ACCESS_ERR);
      expect(B.read(0, 4096).every((x) => x === 0)).toBe(true);
      await withDeadline(ibvDeregMr(mr), MS, 'dereg');
      expect(unpins.n).toBe(1);
      expect(buf.attachments.length).toBe(0);
      expect(h.kernel.iommu.faultLog.drain()).toEqual([]);
    } finally {
      unpins.off();
    }
  });
});

describe('mlx5 dma-buf MR registration and deregistration rules', () => {
  for (const [what, off, len] of [
    ['the whole buffer', 0, 256 << 10],
    ['an unaligned window', 4096 + 300, 100 << 10],
  ] as const) {
    it(`mlx5 - an ODP MR over ${what} is prefaulted at registration: present MTTs for every page and no page fault on first WRITE or READ`, async () => {
      const h = await rdmaHost();
      const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
      const B = mockBuf(h, 256 << 10);
      const iova = IOVA + (off % PAGE_SIZE);
      const mr = await withDeadline(ibvRegDmabufMr(b.pd, off, len, iova, B.fd, ALL_ACCESS), MS, 'reg');
      const m = mr.mr.priv as Mlx5Mr;
      const pages = Math.ceil(((off % PAGE_SIZE) + len) / PAGE_SIZE);
      // mapped and translated before any access.
      expect(B.exp.mappedCount).toBe(1);
      expect(mkeyWord(h, mr.rkey, Mlx5Mkey.XLT)).toBe(Mlx5Xlt.PRESENT);
      expect(mkeyWord(h, mr.rkey, Mlx5Mkey.MTT_NENT)).toBe(
        m.umem && 'runs' in m.umem ? m.umem.runs!.length : -1,
      );
      expect((m.umem as { runs: { pages: number }[] }).runs.reduce((n, r) => n + r.pages, 0)).toBe(pages);
      const faults0 = Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_PAGE_FAULTS);
      const rnr0 = Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_RNR_NAKS);
      const src = mmapAnonymous(h.proc, len + PAGE_SIZE);
      src.bytes.set(pattern(len, 5));
      const smr = ibvRegMr(a.pd, src.addr, src.length, ALL_ACCESS);
      // the first access touches the last byte of the window too.
      ibvPostSend(a.qp, rdmaWr('write', 1, smr.lkey, src.addr, mr.rkey, iova, len));
      expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
      expect(firstDiff(B.read(off, len), pattern(len, 5))).toBe(-1);
      src.bytes.fill(0);
      ibvPostSend(a.qp, rdmaWr('read', 2, smr.lkey, src.addr, mr.rkey, iova, len));
      expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
      expect(firstDiff(src.bytes.subarray(0, len), pattern(len, 5))).toBe(-1);
      expect(Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_PAGE_FAULTS)).toBe(faults0);
      expect(Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_RNR_NAKS)).toBe(rnr0);
      expect(m.faults).toBe(0);
    });
  }

  it('mlx5 - dereg racing an exporter move, in either order, leaves no mapping, no live mkey and no IOMMU fault', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const src = mmapAnonymous(h.proc, 8192);
    src.bytes.set(pattern(8192, 3));
    const smr = ibvRegMr(a.pd, src.addr, 8192, ALL_ACCESS);
    for (const first of ['move', 'dereg', 'move', 'dereg']) {
      const B = mockBuf(h, 64 << 10);
      const mr = await withDeadline(ibvRegDmabufMr(b.pd, 0, 64 << 10, IOVA, B.fd, ALL_ACCESS), MS, 'reg');
      ibvPostSend(a.qp, rdmaWr('write', 1, smr.lkey, src.addr, mr.rkey, IOVA, 8192));
      expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
      // both started in the same tick; each takes the resv lock in its own turn.
      const both: Promise<unknown> =
        first === 'move'
          ? Promise.all([B.exp.move(), ibvDeregMr(mr)])
          : Promise.all([ibvDeregMr(mr), B.exp.move()]);
      await withDeadline(both, MS, `${first} first`);
      expect(B.exp.mappedCount, first).toBe(0);
      expect(B.exp.dmabuf.attachments.length, first).toBe(0);
      expect(mkeyWord(h, mr.rkey, Mlx5Mkey.XLT), first).toBe(Mlx5Xlt.ZAPPED);
      expect(mkeyWord(h, mr.rkey, Mlx5Mkey.STATE), first).toBe(Mlx5MkeyState.FREE);
    }
    expect(h.nics[0].host.alive).toBe(true);
    expect(h.kernel.iommu.faultLog.drain()).toEqual([]);
  });

  it('mlx5 - dereg while a page fault holds the resv lock waiting for the KERNEL fence waits its turn: the mkey ends freed and zapped, nothing stays mapped, no IOMMU fault', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0], { rnrRetry: 7, minRnrTimer: 1 });
    const src = mmapAnonymous(h.proc, 8192);
    src.bytes.set(pattern(8192, 8));
    const smr = ibvRegMr(a.pd, src.addr, 8192, ALL_ACCESS);
    const B = mockBuf(h, 64 << 10);
    const buf = B.exp.dmabuf;
    const mr = await withDeadline(ibvRegDmabufMr(b.pd, 0, 64 << 10, IOVA, B.fd, ALL_ACCESS), MS, 'reg');
    // a GPU job still reading the buffer: the move's copy (its KERNEL fence) waits for it.
    const tl = new DmaFenceTimeline('test-gpu', 'ring0');
    const job = tl.emit();
    await withDeadline(dmaResvLock(buf.resv, null), MS, 'lock');
    dmaResvReserveFences(buf.resv, 1);
    dmaResvAddFence(buf.resv, job, DmaResvUsage.BOOKKEEP);
    dmaResvUnlock(buf.resv);
    const kernelFence = await withDeadline(B.exp.move(), MS, 'move');
    // the fault's re-map: after it, the fault task holds the lock and waits for the KERNEL fence.
    let remapped!: () => void;
    const remap = new Promise<void>((r) => {
      remapped = r;
    });
    const off = onTrace('dmabufMap', (m) => {
      if ((m as { buf: string }).buf === String(buf)) remapped();
    });
    try {
      ibvPostSend(a.qp, rdmaWr('write', 1, smr.lkey, src.addr, mr.rkey, IOVA, 8192));
      await withDeadline(remap, MS, 'page fault re-map');
    } finally {
      off();
    }
    expect(kernelFence.signaledFlag).toBe(false);
    let deregDone = false;
    const dereg = ibvDeregMr(mr).then(() => {
      deregDone = true;
    });
    // the dereg has started (the MR is dead) and waits: the fault task holds the lock.
    expect((mr.mr.priv as Mlx5Mr).dead).toBe(true);
    expect(buf.resv.lock.isLocked).toBe(true);
    expect(deregDone).toBe(false);
    tl.signal(job);
    await withDeadline(dereg, MS, 'dereg');
    // the WRITE either landed (fault resolved first) or found the freed mkey; never anything else.
    const [wc] = await pollN(a.cq, 1);
    expect([S.IBV_WC_SUCCESS, S.IBV_WC_REM_ACCESS_ERR]).toContain(wc.status);
    expect(mkeyWord(h, mr.rkey, Mlx5Mkey.XLT)).toBe(Mlx5Xlt.ZAPPED);
    expect(mkeyWord(h, mr.rkey, Mlx5Mkey.STATE)).toBe(Mlx5MkeyState.FREE);
    expect(B.exp.mappedCount).toBe(0);
    expect(buf.attachments.length).toBe(0);
    // the stale rkey reaches nothing, on a new QP pair.
    const [c] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const cmr = ibvRegMr(c.pd, src.addr, 8192, ALL_ACCESS);
    ibvPostSend(c.qp, rdmaWr('write', 2, cmr.lkey, src.addr, mr.rkey, IOVA, 4096));
    expect((await pollN(c.cq, 1))[0].status).toBe(S.IBV_WC_REM_ACCESS_ERR);
    expect(h.nics[0].host.alive).toBe(true);
    expect(h.kernel.iommu.faultLog.drain()).toEqual([]);
  });
});

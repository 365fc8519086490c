// dma-buf MRs under invalidation (kernel-semantics §7.2-7.3, §7.5 scenarios 2-5): ODP MRs are
// zapped synchronously in invalidate, fault on the next access, are re-mapped after the
// exporter's KERNEL fence while the responder answers RNR, and lose no byte across moves
// during a stream of RDMA WRITEs; a revoked exporter fails the access until un-revoked.
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { hcaMkeyBase, Mlx5Ctl, Mlx5Mkey, Mlx5Xlt, mlx5KeyIndex } from '../../fabric/mlx5-layout.ts';
import { type DmaFence, DmaFenceTimeline, dmaFenceWaitTimeout } from '../dma-buf/dma-fence.ts';
import { Placement } from '../dma-buf/mock-exporter.ts';
import {
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
} from '../dma-buf/dma-resv.ts';
import {
  IbvSendFlags,
  type IbvSendWr,
  IbvWcStatus as S,
  IbvWrOpcode,
  ibvPostSend,
  ibvRegDmabufMr,
  ibvRegMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  ALL_ACCESS,
  firstDiff,
  MS,
  mockBuf,
  pattern,
  pollN,
  connect,
  qpEnd,
  rcPair,
  type RdmaHost,
  rdmaHost,
  rdmaTeardown,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

const SIG = IbvSendFlags.IBV_SEND_SIGNALED;
const SRC_IOVA = 0x100_0000;
const DST_IOVA = 0x800_0000;

function write(id: number, lkey: number, laddr: number, rkey: number, raddr: number, len: number): IbvSendWr {
  return {
    wr_id: id,
    opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
    send_flags: SIG,
    sg_list: [{ addr: laddr, length: len, lkey }],
    wr: { rdma: { remote_addr: raddr, rkey } },
  };
}

function mkeyWord(h: RdmaHost, nic: number, key: number, word: number): number {
  return Atomics.load(h.nics[nic].hca, hcaMkeyBase(mlx5KeyIndex(key)) + word);
}

describe('mlx5 ODP dma-buf MRs', () => {
  it('mlx5 - a move zaps the mkey at once; the next WRITE faults, is re-mapped after the KERNEL fence and lands in the new placement', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const src = mmapAnonymous(h.proc, 64 << 10);
    src.bytes.set(pattern(64 << 10, 1));
    const smr = ibvRegMr(a.pd, src.addr, src.length, ALL_ACCESS);
    const B = mockBuf(h, 64 << 10);
    const dmr = await withDeadline(ibvRegDmabufMr(b.pd, 0, 64 << 10, DST_IOVA, B.fd, ALL_ACCESS), MS, 'reg');
    ibvPostSend(a.qp, write(1, smr.lkey, src.addr, dmr.rkey, DST_IOVA, 32 << 10));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    const fence = await B.exp.move(Placement.SYSTEM);
    // invalidate returned: the translation is gone and the old mapping given back (rule 9).
    expect(mkeyWord(h, 0, dmr.rkey, Mlx5Mkey.XLT)).toBe(Mlx5Xlt.ZAPPED);
    expect(B.exp.mappedCount).toBe(0);
    ibvPostSend(a.qp, write(2, smr.lkey, src.addr + (32 << 10), dmr.rkey, DST_IOVA + (32 << 10), 32 << 10));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    expect(fence.signaledFlag).toBe(true);
    expect(Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_PAGE_FAULTS)).toBeGreaterThanOrEqual(1);
    expect(B.exp.placement).toBe(Placement.SYSTEM);
    // the first WRITE was copied by the exporter, the second landed after the re-map.
    expect(firstDiff(B.read(0, 64 << 10), src.bytes)).toBe(-1);
    expect(h.kernel.iommu.faultLog.drain()).toEqual([]);
  });

  for (const nics of [1, 2]) {
    it(`mlx5 - ${nics === 1 ? 'loopback' : 'two HCAs'}: moves of both ODP MRs during a WRITE stream; every WR completes and no byte is corrupted`, async () => {
      const h = await rdmaHost({ nics });
      const [a, b] = await rcPair(h.ctxs[0], h.ctxs[nics - 1], { depth: 256 });
      const size = 2 << 20;
      const A = mockBuf(h, size);
      const B = mockBuf(h, size);
      const data = pattern(size, 7);
      A.exp.pages.write(0, data);
      const smr = await withDeadline(
        ibvRegDmabufMr(a.pd, 0, size, SRC_IOVA, A.fd, ALL_ACCESS),
        MS,
        'reg src',
      );
      const dmr = await withDeadline(
        ibvRegDmabufMr(b.pd, 0, size, DST_IOVA, B.fd, ALL_ACCESS),
        MS,
        'reg dst',
      );
      const n = 128;
      const chunk = size / n;
      let done = 0;
      const lastMove: DmaFence[] = [];
      for (let round = 0; round < 8; round++) {
        const wrs = [];
        for (let i = round * 16; i < (round + 1) * 16; i++) {
          wrs.push(write(i, smr.lkey, SRC_IOVA + i * chunk, dmr.rkey, DST_IOVA + i * chunk, chunk));
        }
        ibvPostSend(a.qp, wrs);
        // move while these are in flight: the source on even rounds, the target on odd ones.
        lastMove[round % 2] = await (round % 2 === 0 ? A : B).exp.move();
        const wcs = await pollN(a.cq, 16, MS, `round ${round}`);
        expect(wcs.every((w) => w.status === S.IBV_WC_SUCCESS)).toBe(true);
        done += wcs.length;
      }
      expect(done).toBe(n);
      // a CPU reader waits for the exporter's last copy first (as DMA_BUF_IOCTL_SYNC would): the
      // WRs may all have completed before the last move, whose copy then still runs.
      for (const f of lastMove) expect(await dmaFenceWaitTimeout(f, MS)).toBeGreaterThan(0);
      expect(firstDiff(B.read(0, size), data)).toBe(-1);
      expect(firstDiff(A.read(0, size), data)).toBe(-1);
      expect(A.exp.moves + B.exp.moves).toBe(8);
      expect(A.exp.leakedMoves + B.exp.leakedMoves).toBe(0);
      const faults = h.nics.reduce((s, d) => s + Atomics.load(d.hca, Mlx5Ctl.STAT_PAGE_FAULTS), 0);
      // every move but the last is followed by an access to the moved MR, which must fault.
      expect(faults).toBeGreaterThanOrEqual(7);
      expect(h.kernel.iommu.faultLog.drain()).toEqual([]);
    });
  }

  it('mlx5 - while the fault waits for a pending KERNEL fence the responder answers RNR; rnr_retry 1 gives RNR_RETRY_EXC_ERR, rnr_retry 7 completes once it signals', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0], { rnrRetry: 7, minRnrTimer: 1 });
    const [c, d] = await rcPair(h.ctxs[0], h.ctxs[0], { rnrRetry: 1, minRnrTimer: 1 });
    const src = mmapAnonymous(h.proc, 8192);
    src.bytes.set(pattern(8192, 3));
    const amr = ibvRegMr(a.pd, src.addr, 8192, ALL_ACCESS);
    const cmr = ibvRegMr(c.pd, src.addr, 8192, ALL_ACCESS);
    const B = mockBuf(h, 64 << 10);
    const bmr = await withDeadline(ibvRegDmabufMr(b.pd, 0, 64 << 10, DST_IOVA, B.fd, ALL_ACCESS), MS, 'reg');
    const dmr = await withDeadline(ibvRegDmabufMr(d.pd, 0, 64 << 10, DST_IOVA, B.fd, ALL_ACCESS), MS, 'reg');
    // a GPU job still reading the buffer: the exporter's copy (its KERNEL fence) waits for it.
    const tl = new DmaFenceTimeline('test-gpu', 'ring0');
    const job = tl.emit();
    const resv = B.exp.dmabuf.resv;
    await dmaResvLock(resv, null);
    dmaResvReserveFences(resv, 1);
    dmaResvAddFence(resv, job, DmaResvUsage.BOOKKEEP);
    dmaResvUnlock(resv);
    const kernelFence = await B.exp.move();
    ibvPostSend(c.qp, write(9, cmr.lkey, src.addr, dmr.rkey, DST_IOVA, 4096));
    expect((await pollN(c.cq, 1))[0].status).toBe(S.IBV_WC_RNR_RETRY_EXC_ERR);
    ibvPostSend(a.qp, write(1, amr.lkey, src.addr, bmr.rkey, DST_IOVA, 8192));
    expect(await pollN(a.cq, 1, 30).catch((e) => e.code)).toBe('ETIMEDOUT');
    expect(kernelFence.signaledFlag).toBe(false);
    expect(Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_RNR_NAKS)).toBeGreaterThan(2);
    tl.signal(job);
    expect((await pollN(a.cq, 1))[0]).toMatchObject({ wr_id: 1, status: S.IBV_WC_SUCCESS });
    expect(kernelFence.signaledFlag).toBe(true);
    expect(firstDiff(B.read(0, 8192), src.bytes)).toBe(-1);
  });

  it('mlx5 - a faulting ODP source stalls the requester (no RNR count) until re-mapped; READ into a moved ODP target works too', async () => {
    const h = await rdmaHost({ nics: 2 });
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[1], { rnrRetry: 0 });
    const A = mockBuf(h, 256 << 10);
    A.exp.pages.write(0, pattern(256 << 10, 9));
    const dst = mmapAnonymous(h.proc, 256 << 10);
    const amr = await withDeadline(ibvRegDmabufMr(a.pd, 0, 256 << 10, SRC_IOVA, A.fd, ALL_ACCESS), MS, 'reg');
    const dmr = ibvRegMr(b.pd, dst.addr, dst.length, ALL_ACCESS);
    await A.exp.move();
    ibvPostSend(a.qp, write(1, amr.lkey, SRC_IOVA, dmr.rkey, dst.addr, 256 << 10));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    expect(firstDiff(dst.bytes, pattern(256 << 10, 9))).toBe(-1);
    dst.bytes.set(pattern(256 << 10, 4));
    await A.exp.move();
    ibvPostSend(a.qp, {
      wr_id: 2,
      opcode: IbvWrOpcode.IBV_WR_RDMA_READ,
      send_flags: SIG,
      sg_list: [{ addr: SRC_IOVA, length: 256 << 10, lkey: amr.lkey }],
      wr: { rdma: { remote_addr: dst.addr, rkey: dmr.rkey } },
    });
    expect((await pollN(a.cq, 1))[0]).toMatchObject({ wr_id: 2, status: S.IBV_WC_SUCCESS });
    expect(firstDiff(A.read(0, 256 << 10), pattern(256 << 10, 4))).toBe(-1);
    expect(Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_PAGE_FAULTS)).toBeGreaterThanOrEqual(2);
  });

  it('mlx5 - an ODP MR of a revoked exporter fails REM_ACCESS_ERR; after un-revoke the same MR faults back in and works', async () => {
    const h = await rdmaHost();
    const src = mmapAnonymous(h.proc, 4096);
    src.bytes.fill(0x42);
    const B = mockBuf(h, 64 << 10);
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]); // loopback pairs share one PD
    const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
    const dmr = await withDeadline(ibvRegDmabufMr(b.pd, 0, 64 << 10, DST_IOVA, B.fd, ALL_ACCESS), MS, 'reg');
    await withDeadline(B.exp.revoke({ waitUnmap: true }), MS, 'revoke');
    ibvPostSend(a.qp, write(1, smr.lkey, src.addr, dmr.rkey, DST_IOVA, 4096));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_REM_ACCESS_ERR);
    expect(B.read(0, 4096).every((x) => x === 0)).toBe(true);
    await B.exp.unrevoke();
    const c = await qpEnd(h.ctxs[0], 16, a.pd);
    const d = await qpEnd(h.ctxs[0], 16, a.pd);
    await connect(c, d);
    await connect(d, c);
    ibvPostSend(c.qp, write(2, smr.lkey, src.addr, dmr.rkey, DST_IOVA, 4096));
    expect((await pollN(c.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    expect(B.read(0, 4096).every((x) => x === 0x42)).toBe(true);
  });
});

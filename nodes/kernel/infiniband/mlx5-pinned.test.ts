// Pinned dma-buf MRs (kernel-semantics §7.2 rules 4-6, §1.3 rules 11, 27-28): the plain pinned
// MR (mlx5dv DATA_DIRECT) registers the unsupported-invalidate sentinel, so it is not revocable
// and the exporter cannot move it; the pinned-revocable MR is revoked for good by an
// invalidate, and accesses after that fail (REM_ACCESS_ERR remotely, LOC_PROT_ERR locally)
// without a byte landing.
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { err } from '../../../common/errno.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { dmaBufAttachRevocable, dmaBufIsPinned } from '../dma-buf/dma-buf.ts';
import type { MockExporter } from '../dma-buf/mock-exporter.ts';
import {
  IbvSendFlags,
  type IbvSendWr,
  IbvWcStatus as S,
  IbvWrOpcode,
  ibvDeregMr,
  ibvPostSend,
  ibvRegDmabufMr,
  ibvRegMr,
  Mlx5dvRegDmabufAccess as A,
  mlx5dvRegDmabufMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  ALL_ACCESS,
  connect,
  MS,
  mockBuf,
  qpEnd,
  pattern,
  pollN,
  rcPair,
  rdmaHost,
  rdmaTeardown,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

const SIG = IbvSendFlags.IBV_SEND_SIGNALED;
const IOVA = 0x4000_0000;

/** An exporter that, like VFIO, revokes only when every importer is revocable (rule 28). */
async function revokeRevocableOnly(exp: MockExporter): Promise<void> {
  const stuck = exp.dmabuf.attachments.filter((a) => !dmaBufAttachRevocable(a));
  if (stuck.length > 0) throw err('EBUSY', `revoke: ${stuck.length} importer(s) are not revocable`);
  await exp.revoke({ waitUnmap: true, timeoutMs: MS });
}

function write(id: number, lkey: number, laddr: number, rkey: number, raddr: number, len: number): IbvSendWr {
  return {
    wr_id: id,
    opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
    send_flags: SIG,
    sg_list: [{ addr: laddr, length: len, lkey }],
    wr: { rdma: { remote_addr: raddr, rkey } },
  };
}

describe('mlx5 pinned dma-buf MRs', () => {
  it('mlx5 - a pinned (DATA_DIRECT) MR is not revocable: the exporter cannot move it and a revocable-only revoke is refused', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const B = mockBuf(h, 64 << 10);
    const mr = await withDeadline(
      mlx5dvRegDmabufMr(b.pd, 0, 64 << 10, IOVA, B.fd, ALL_ACCESS, A.MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT),
      MS,
      'reg',
    );
    const [attach] = B.exp.dmabuf.attachments;
    expect(dmaBufAttachRevocable(attach)).toBe(false);
    expect(dmaBufIsPinned(B.exp.dmabuf)).toBe(true);
    await expectCode(B.exp.move(), 'EBUSY');
    await expectCode(revokeRevocableOnly(B.exp), 'EBUSY');
    const src = mmapAnonymous(h.proc, 4096);
    src.bytes.set(pattern(4096, 2));
    const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
    ibvPostSend(a.qp, write(1, smr.lkey, src.addr, mr.rkey, IOVA + 4096, 4096));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    expect(B.read(4096, 4096)).toStrictEqual(pattern(4096, 2));
    await ibvDeregMr(mr);
    expect(B.exp.dmabuf.attachments).toHaveLength(0);
    expect(dmaBufIsPinned(B.exp.dmabuf)).toBe(false);
  });

  it('mlx5 - only a real invalidate op counts as revocable: ODP and pinned-revocable MRs yes, pinned no', async () => {
    const h = await rdmaHost();
    const [a] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const B = mockBuf(h, 64 << 10);
    await withDeadline(ibvRegDmabufMr(a.pd, 0, 4096, IOVA, B.fd, ALL_ACCESS), MS, 'odp');
    await withDeadline(
      mlx5dvRegDmabufMr(a.pd, 0, 4096, IOVA, B.fd, ALL_ACCESS, A.P2PEMU_PINNED_REVOCABLE),
      MS,
      'rev',
    );
    expect(B.exp.dmabuf.attachments.map((x) => dmaBufAttachRevocable(x))).toEqual([true, true]);
    await withDeadline(
      mlx5dvRegDmabufMr(a.pd, 0, 4096, IOVA, B.fd, ALL_ACCESS, A.MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT),
      MS,
      'pin',
    );
    expect(B.exp.dmabuf.attachments.map((x) => dmaBufAttachRevocable(x))).toEqual([true, true, false]);
  });

  for (const nics of [1, 2]) {
    it(`mlx5 - ${nics === 1 ? 'loopback' : 'two HCAs'}: a pinned-revocable target revoked during a WRITE stream fails REM_ACCESS_ERR and nothing lands after the revoke`, async () => {
      const h = await rdmaHost({ nics });
      const [a, b] = await rcPair(h.ctxs[0], h.ctxs[nics - 1], { depth: 128 });
      const size = 2 << 20;
      const src = mmapAnonymous(h.proc, size);
      src.bytes.set(pattern(size, 5));
      const smr = ibvRegMr(a.pd, src.addr, size, ALL_ACCESS);
      const B = mockBuf(h, size);
      const dmr = await withDeadline(
        mlx5dvRegDmabufMr(b.pd, 0, size, IOVA, B.fd, ALL_ACCESS, A.P2PEMU_PINNED_REVOCABLE),
        MS,
        'reg',
      );
      const n = 32;
      const chunk = size / n;
      const wrs = (from: number, to: number) =>
        Array.from({ length: to - from }, (_, k) =>
          write(
            from + k,
            smr.lkey,
            src.addr + (from + k) * chunk,
            dmr.rkey,
            IOVA + (from + k) * chunk,
            chunk,
          ),
        );
      ibvPostSend(a.qp, wrs(0, 16));
      await withDeadline(revokeRevocableOnly(B.exp), MS, 'revoke');
      const snapshot = B.read(0, size);
      expect(dmaBufIsPinned(B.exp.dmabuf)).toBe(false);
      expect(B.exp.mappedCount).toBe(0);
      ibvPostSend(a.qp, wrs(16, n));
      const wcs = await pollN(a.cq, n);
      const ok = wcs.filter((w) => w.status === S.IBV_WC_SUCCESS).length;
      // in order: the WRs before the revoke succeeded, one failed, the rest were flushed.
      expect(ok).toBeLessThanOrEqual(16);
      expect(wcs.map((w) => w.status)).toEqual([
        ...Array(ok).fill(S.IBV_WC_SUCCESS),
        S.IBV_WC_REM_ACCESS_ERR,
        ...Array(n - ok - 1).fill(S.IBV_WC_WR_FLUSH_ERR),
      ]);
      expect(wcs.map((w) => w.wr_id)).toEqual(Array.from({ length: n }, (_, i) => i));
      const final = B.read(0, size);
      expect(Buffer.compare(final, snapshot)).toBe(0); // no byte after the revoke
      const want = pattern(size, 5);
      for (let i = 0; i < ok; i++) {
        expect(
          Buffer.compare(
            final.subarray(i * chunk, (i + 1) * chunk),
            want.subarray(i * chunk, (i + 1) * chunk),
          ),
        ).toBe(0);
      }
      // what a failed WR left behind is its own data or untouched zeroes, never foreign bytes.
      for (let i = ok * chunk; i < size; i++)
        if (final[i] !== 0 && final[i] !== want[i]) throw new Error(`byte ${i} corrupted`);
    });
  }

  it('mlx5 - a pinned-revocable source revoked before a WRITE fails LOC_PROT_ERR at the requester', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const A0 = mockBuf(h, 64 << 10);
    const smr = await withDeadline(
      mlx5dvRegDmabufMr(a.pd, 0, 64 << 10, IOVA, A0.fd, ALL_ACCESS, A.P2PEMU_PINNED_REVOCABLE),
      MS,
      'reg',
    );
    const dst = mmapAnonymous(h.proc, 64 << 10);
    const dmr = ibvRegMr(b.pd, dst.addr, dst.length, ALL_ACCESS);
    await withDeadline(revokeRevocableOnly(A0.exp), MS, 'revoke');
    ibvPostSend(a.qp, write(1, smr.lkey, IOVA, dmr.rkey, dst.addr, 4096));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_LOC_PROT_ERR);
    // revoked for good: un-revoking the exporter does not bring a pinned-revocable MR back.
    await A0.exp.unrevoke();
    const c = await qpEnd(h.ctxs[0], 16, a.pd);
    const d = await qpEnd(h.ctxs[0], 16, a.pd);
    await connect(c, d);
    await connect(d, c);
    ibvPostSend(c.qp, write(2, smr.lkey, IOVA, dmr.rkey, dst.addr, 4096));
    expect((await pollN(c.cq, 1))[0].status).toBe(S.IBV_WC_LOC_PROT_ERR);
  });
});

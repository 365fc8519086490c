// Every completion error status of kernel-semantics §7 rules 16-19 on real HCA workers: local
// checks (LOC_PROT_ERR, LOC_LEN_ERR), responder checks on rkey, PD, bounds and access flags
// (REM_ACCESS_ERR, also after dereg), receive-side errors (REM_INV_REQ_ERR / LOC_LEN_ERR,
// REM_OP_ERR / LOC_PROT_ERR), RNR (retried, or RNR_RETRY_EXC_ERR), transport retries
// (RETRY_EXC_ERR), and the flush of everything else (WR_FLUSH_ERR) with both QPs in ERR.
import { afterEach, describe, expect, it } from 'vitest';
import { Mlx5Ctl } from '../../fabric/mlx5-layout.ts';
import {
  IbvAccess,
  IbvQpState,
  IbvSendFlags,
  type IbvSendWr,
  IbvWcOpcode,
  IbvWcStatus as S,
  IbvWrOpcode,
  ibvAllocPd,
  ibvDeregMr,
  ibvPostRecv,
  ibvPostSend,
  ibvQueryQp,
  ibvRegMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  ALL_ACCESS,
  MS,
  pollN,
  type QpEnd,
  qpEnd,
  connect,
  rcPair,
  rdmaHost,
  rdmaTeardown,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

const SIG = IbvSendFlags.IBV_SEND_SIGNALED;

/**
 * Two fresh QPs (loopback, or across two HCAs when `nics` is 2) on host `host` (a new one with
 * `nics` HCAs if absent), a 64 KiB user buffer registered on each side.
 */
async function rig(
  nics = 1,
  o: Parameters<typeof rcPair>[2] = {},
  host?: Awaited<ReturnType<typeof rdmaHost>>,
) {
  const h = host ?? (await rdmaHost({ nics }));
  const [a, b] = await rcPair(h.ctxs[0], h.ctxs[nics - 1], o);
  const src = mmapAnonymous(h.proc, 64 << 10);
  const dst = mmapAnonymous(h.proc, 64 << 10);
  src.bytes.fill(0x11);
  const smr = ibvRegMr(a.pd, src.addr, src.length, ALL_ACCESS);
  const dmr = ibvRegMr(b.pd, dst.addr, dst.length, ALL_ACCESS);
  const wr = (id: number, op: number, len: number, over: Partial<IbvSendWr> = {}): IbvSendWr => ({
    wr_id: id,
    opcode: op,
    send_flags: SIG,
    sg_list: [{ addr: src.addr, length: len, lkey: smr.lkey }],
    wr: { rdma: { remote_addr: dst.addr, rkey: dmr.rkey } },
    ...over,
  });
  return { h, a, b, src, dst, smr, dmr, wr };
}

/** The requester's error completion, then WR_FLUSH_ERR for what was posted after it, QP in ERR. */
async function expectFatal(a: QpEnd, status: number, flushed: number) {
  const wcs = await pollN(a.cq, 1 + flushed);
  expect(wcs.map((w) => w.status)).toEqual([status, ...Array(flushed).fill(S.IBV_WC_WR_FLUSH_ERR)]);
  expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_ERR);
  return wcs;
}

describe('mlx5 completion errors', () => {
  it('mlx5 - LOC_PROT_ERR: an unknown lkey, an lkey of another PD, a READ into an MR without LOCAL_WRITE', async () => {
    const h = await rdmaHost();
    for (const bad of ['lkey', 'pd', 'local-write'] as const) {
      const r = await rig(1, {}, h);
      let lkey = r.smr.lkey + 1;
      if (bad === 'pd') lkey = ibvRegMr(ibvAllocPd(r.h.ctxs[0]), r.src.addr, 4096, ALL_ACCESS).lkey;
      if (bad === 'local-write')
        lkey = ibvRegMr(r.a.pd, r.src.addr, 4096, IbvAccess.IBV_ACCESS_REMOTE_READ).lkey;
      const op = bad === 'local-write' ? IbvWrOpcode.IBV_WR_RDMA_READ : IbvWrOpcode.IBV_WR_RDMA_WRITE;
      ibvPostSend(r.a.qp, [
        r.wr(1, op, 64, { sg_list: [{ addr: r.src.addr, length: 64, lkey }] }),
        r.wr(2, IbvWrOpcode.IBV_WR_RDMA_WRITE, 64, { send_flags: 0 }),
      ]);
      const [e] = await expectFatal(r.a, S.IBV_WC_LOC_PROT_ERR, 1);
      expect(e.wr_id).toBe(1);
    }
  });

  it('mlx5 - LOC_LEN_ERR: a message over max_msg_sz fails at the requester before any DMA', async () => {
    const { a, wr } = await rig();
    ibvPostSend(a.qp, wr(1, IbvWrOpcode.IBV_WR_RDMA_WRITE, 2 ** 31 + 4096));
    await expectFatal(a, S.IBV_WC_LOC_LEN_ERR, 0);
  });

  it('mlx5 - REM_ACCESS_ERR for a bad rkey, an rkey of another PD, out of bounds, no REMOTE_WRITE, a QP without remote read; both QPs enter ERR', async () => {
    const h = await rdmaHost({ nics: 2 });
    const cases = ['rkey', 'pd', 'bounds', 'mr-access', 'qp-access'] as const;
    for (const c of cases) {
      for (const nics of [1, 2]) {
        const r = await rig(
          nics,
          c === 'qp-access'
            ? { access: IbvAccess.IBV_ACCESS_LOCAL_WRITE | IbvAccess.IBV_ACCESS_REMOTE_WRITE }
            : {},
          h,
        );
        let rkey = r.dmr.rkey;
        let raddr = r.dst.addr;
        let op: number = IbvWrOpcode.IBV_WR_RDMA_WRITE;
        if (c === 'rkey') rkey ^= 0x100;
        if (c === 'pd') rkey = ibvRegMr(ibvAllocPd(r.h.ctxs[nics - 1]), r.dst.addr, 4096, ALL_ACCESS).rkey;
        if (c === 'bounds') raddr += (64 << 10) - 32;
        if (c === 'mr-access')
          rkey = ibvRegMr(r.b.pd, r.dst.addr, 4096, IbvAccess.IBV_ACCESS_LOCAL_WRITE).rkey;
        if (c === 'qp-access') op = IbvWrOpcode.IBV_WR_RDMA_READ;
        ibvPostSend(r.a.qp, [
          r.wr(1, op, 64, { wr: { rdma: { remote_addr: raddr, rkey } } }),
          r.wr(2, IbvWrOpcode.IBV_WR_SEND, 8),
        ]);
        await expectFatal(r.a, S.IBV_WC_REM_ACCESS_ERR, 1);
        expect(ibvQueryQp(r.b.qp).qp_state, `${c} on ${nics} HCA(s)`).toBe(IbvQpState.IBV_QPS_ERR);
        expect(r.dst.bytes.every((x) => x === 0)).toBe(true);
      }
    }
  });

  it('mlx5 - a stale rkey after ibv_dereg_mr fails with REM_ACCESS_ERR', async () => {
    const { a, dmr, wr } = await rig(2);
    ibvPostSend(a.qp, wr(1, IbvWrOpcode.IBV_WR_RDMA_WRITE, 64));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    await ibvDeregMr(dmr);
    ibvPostSend(a.qp, wr(2, IbvWrOpcode.IBV_WR_RDMA_WRITE, 64));
    await expectFatal(a, S.IBV_WC_REM_ACCESS_ERR, 0);
  });

  it('mlx5 - a receive buffer too small: the receive completes LOC_LEN_ERR, the sender REM_INV_REQ_ERR', async () => {
    const h = await rdmaHost({ nics: 2 });
    for (const nics of [1, 2]) {
      const { a, b, dst, dmr, wr } = await rig(nics, {}, h);
      ibvPostRecv(b.qp, [
        { wr_id: 10, sg_list: [{ addr: dst.addr, length: 100, lkey: dmr.lkey }] },
        { wr_id: 11, sg_list: [{ addr: dst.addr, length: 100, lkey: dmr.lkey }] },
      ]);
      ibvPostSend(a.qp, wr(1, IbvWrOpcode.IBV_WR_SEND, 101));
      await expectFatal(a, S.IBV_WC_REM_INV_REQ_ERR, 0);
      const rc = await pollN(b.cq, 2);
      expect(rc.map((w) => [w.wr_id, w.status, w.opcode])).toEqual([
        [10, S.IBV_WC_LOC_LEN_ERR, IbvWcOpcode.IBV_WC_RECV],
        [11, S.IBV_WC_WR_FLUSH_ERR, IbvWcOpcode.IBV_WC_RECV],
      ]);
    }
  });

  it('mlx5 - a receive with a bad lkey: the receive completes LOC_PROT_ERR, the sender REM_OP_ERR', async () => {
    const { a, b, dst, dmr, wr } = await rig();
    ibvPostRecv(b.qp, { wr_id: 10, sg_list: [{ addr: dst.addr, length: 100, lkey: dmr.lkey + 1 }] });
    ibvPostSend(a.qp, wr(1, IbvWrOpcode.IBV_WR_SEND, 50));
    await expectFatal(a, S.IBV_WC_REM_OP_ERR, 0);
    expect((await pollN(b.cq, 1))[0]).toMatchObject({ wr_id: 10, status: S.IBV_WC_LOC_PROT_ERR });
  });

  it('mlx5 - RNR: a SEND without a posted receive is retried until one is posted (rnr_retry 7), or fails RNR_RETRY_EXC_ERR', async () => {
    const h = await rdmaHost({ nics: 2 });
    for (const nics of [1, 2]) {
      const r = await rig(nics, { rnrRetry: 7, minRnrTimer: 1 }, h);
      ibvPostSend(r.a.qp, r.wr(1, IbvWrOpcode.IBV_WR_SEND, 32));
      // it is being NAKed and retried now; a receive posted later lets it through.
      await new Promise((resolve) => setImmediate(resolve));
      expect(await pollN(r.a.cq, 1, 20).catch((e) => e.code)).toBe('ETIMEDOUT');
      // the responder NAKed it RNR at least once (loopback: the HCA counts on its only port).
      expect(Atomics.load(h.nics[nics - 1].hca, Mlx5Ctl.STAT_RNR_NAKS)).toBeGreaterThan(0);
      ibvPostRecv(r.b.qp, { wr_id: 5, sg_list: [{ addr: r.dst.addr, length: 64, lkey: r.dmr.lkey }] });
      expect((await pollN(r.a.cq, 1))[0]).toMatchObject({ wr_id: 1, status: S.IBV_WC_SUCCESS });
      expect((await pollN(r.b.cq, 1))[0]).toMatchObject({ wr_id: 5, byte_len: 32 });
      const f = await rig(nics, { rnrRetry: 2, minRnrTimer: 1 }, h);
      ibvPostSend(f.a.qp, [
        f.wr(1, IbvWrOpcode.IBV_WR_RDMA_WRITE_WITH_IMM, 32),
        f.wr(2, IbvWrOpcode.IBV_WR_SEND, 8),
      ]);
      await expectFatal(f.a, S.IBV_WC_RNR_RETRY_EXC_ERR, 1);
    }
  });

  it('mlx5 - RETRY_EXC_ERR: a peer QP that never answers (left in INIT) exhausts retry_cnt', async () => {
    const h = await rdmaHost({ nics: 2 });
    for (const nics of [1, 2]) {
      const a = await qpEnd(h.ctxs[0]);
      const b = await qpEnd(h.ctxs[nics - 1], 64, nics === 1 ? a.pd : undefined);
      await connect(a, b, { timeout: 8, retryCnt: 2 }); // 1 ms ACK timeout, 3 tries
      await connect(b, a, { upTo: IbvQpState.IBV_QPS_INIT });
      const buf = mmapAnonymous(h.proc, 4096);
      const mr = ibvRegMr(a.pd, buf.addr, 4096, ALL_ACCESS);
      ibvPostSend(a.qp, {
        wr_id: 1,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
        send_flags: SIG,
        sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
        wr: { rdma: { remote_addr: 0, rkey: 0 } },
      });
      await expectFatal(a, S.IBV_WC_RETRY_EXC_ERR, 0);
    }
  });

  it('mlx5 - in ERR every outstanding and later-posted send and receive completes WR_FLUSH_ERR, in order', async () => {
    const { a, b, dst, dmr, wr } = await rig();
    ibvPostRecv(
      a.qp,
      [1, 2].map((i) => ({ wr_id: 100 + i, sg_list: [{ addr: dst.addr, length: 8, lkey: dmr.lkey }] })),
    );
    ibvPostSend(a.qp, wr(1, IbvWrOpcode.IBV_WR_RDMA_WRITE, 8, { wr: { rdma: { remote_addr: 0, rkey: 0 } } }));
    await expectFatal(a, S.IBV_WC_REM_ACCESS_ERR, 2);
    ibvPostSend(a.qp, [
      wr(7, IbvWrOpcode.IBV_WR_SEND, 8, { send_flags: 0 }),
      wr(8, IbvWrOpcode.IBV_WR_RDMA_READ, 8),
    ]);
    ibvPostRecv(a.qp, { wr_id: 103 });
    const wcs = await pollN(a.cq, 3, MS);
    expect(wcs.map((w) => [w.wr_id, w.status])).toEqual([
      [7, S.IBV_WC_WR_FLUSH_ERR],
      [8, S.IBV_WC_WR_FLUSH_ERR],
      [103, S.IBV_WC_WR_FLUSH_ERR],
    ]);
    expect(ibvQueryQp(b.qp).qp_state).toBe(IbvQpState.IBV_QPS_ERR);
  });
});

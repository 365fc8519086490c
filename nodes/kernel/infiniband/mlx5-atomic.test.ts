// RDMA atomics between two QPs of one HCA (kernel-semantics §7 rules 15-16, IBA 9.4.5):
// IBV_WR_ATOMIC_CMP_AND_SWP and IBV_WR_ATOMIC_FETCH_AND_ADD on a u64 of the responder's MR, the
// original value returned into the requester's 8-byte buffer, the responder checks and their
// completion statuses, atomicity between QPs of the HCA (IBV_ATOMIC_HCA), and ODP faults on
// either side, after which the atomic still runs exactly once.
import { afterEach, describe, expect, it } from 'vitest';
import {
  IbvAtomicCap,
  IbvWcStatus as S,
  IbvWrOpcode,
  ibvPostSend,
  ibvQueryDevice,
  ibvRegMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import { ALL_ACCESS, connect, pollN, qpEnd, rcPair, rdmaHost, rdmaTeardown } from './fixtures/rdma-host.ts';
import {
  ATOMIC_ACCESS,
  atomic,
  atomicRig,
  atomicRoundTrip,
  setU64,
  u64,
  atomicOdpMoves,
} from './fixtures/atomics.ts';

afterEach(rdmaTeardown);

const { IBV_WR_ATOMIC_CMP_AND_SWP: CAS, IBV_WR_ATOMIC_FETCH_AND_ADD: FAA } = IbvWrOpcode;

const loopback = () => atomicRig(1);

describe('mlx5 RDMA atomics (loopback)', () => {
  it('mlx5 - FETCH_AND_ADD and CMP_AND_SWP modify the remote u64 and return its original value (carry into the high word, compare unequal writes nothing)', async () => {
    const r = await loopback();
    expect(ibvQueryDevice(r.h.ctxs[0]).atomic_cap).toBe(IbvAtomicCap.IBV_ATOMIC_HCA);
    await atomicRoundTrip(r);
  });

  it('mlx5 - atomics from two QPs of one HCA on one u64 never interleave (IBV_ATOMIC_HCA): 2 x 200 FETCH_AND_ADDs sum exactly', async () => {
    const h = await rdmaHost();
    const ctx = h.ctxs[0];
    const t = await qpEnd(ctx, 64);
    const q1 = await qpEnd(ctx, 256, t.pd);
    const q2 = await qpEnd(ctx, 256, t.pd);
    const t2 = await qpEnd(ctx, 64, t.pd);
    // two responder QPs, one target MR: q1 -> t, q2 -> t2.
    const o = { access: ATOMIC_ACCESS };
    await connect(q1, t, o);
    await connect(t, q1, o);
    await connect(q2, t2, o);
    await connect(t2, q2, o);
    const tgt = mmapAnonymous(h.proc, 4096);
    const res = mmapAnonymous(h.proc, 8 * 400);
    const tmr = ibvRegMr(t.pd, tgt.addr, tgt.length, ATOMIC_ACCESS);
    const rmr = ibvRegMr(t.pd, res.addr, res.length, ATOMIC_ACCESS);
    const R = { addr: tgt.addr, rkey: tmr.rkey };
    const wrs = (qp: number) =>
      Array.from({ length: 200 }, (_, i) =>
        atomic(i, FAA, { addr: res.addr + 8 * (qp * 200 + i), lkey: rmr.lkey }, R, 3),
      );
    ibvPostSend(q1.qp, wrs(0));
    ibvPostSend(q2.qp, wrs(1));
    const done = [...(await pollN(q1.cq, 200)), ...(await pollN(q2.cq, 200))];
    expect(done.every((w) => w.status === S.IBV_WC_SUCCESS)).toBe(true);
    expect(u64(tgt, 0)).toBe(1200n);
    // every original value 0, 3, ..., 1197 was returned exactly once.
    const seen = Array.from({ length: 400 }, (_, i) => Number(u64(res, 8 * i))).sort((x, y) => x - y);
    expect(seen).toEqual(Array.from({ length: 400 }, (_, i) => 3 * i));
  });

  it('mlx5 - atomic responder and local checks: misaligned REM_INV_REQ_ERR, no REMOTE_ATOMIC on the rkey or the QP REM_ACCESS_ERR, length LOC_LEN_ERR, read-only result buffer LOC_PROT_ERR', async () => {
    const cases: [string, number][] = [
      ['misaligned', S.IBV_WC_REM_INV_REQ_ERR],
      ['rkey without REMOTE_ATOMIC', S.IBV_WC_REM_ACCESS_ERR],
      ['qp without REMOTE_ATOMIC', S.IBV_WC_REM_ACCESS_ERR],
      ['sge length 4', S.IBV_WC_LOC_LEN_ERR],
      ['result buffer without LOCAL_WRITE', S.IBV_WC_LOC_PROT_ERR],
      ['out of the MR', S.IBV_WC_REM_ACCESS_ERR],
    ];
    const noAtomic = ALL_ACCESS;
    for (const [what, status] of cases) {
      const h = await rdmaHost();
      const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0], {
        access: what === 'qp without REMOTE_ATOMIC' ? noAtomic : ATOMIC_ACCESS,
      });
      const res = mmapAnonymous(h.proc, 4096);
      const tgt = mmapAnonymous(h.proc, 4096);
      setU64(tgt, 0, 7n);
      const rmr = ibvRegMr(a.pd, res.addr, 4096, what.startsWith('result') ? 0 : ATOMIC_ACCESS);
      const tmr = ibvRegMr(b.pd, tgt.addr, 4096, what.startsWith('rkey') ? noAtomic : ATOMIC_ACCESS);
      const raddr = tgt.addr + (what === 'misaligned' ? 4 : what === 'out of the MR' ? 4096 : 0);
      const local = { addr: res.addr, lkey: rmr.lkey, length: what === 'sge length 4' ? 4 : 8 };
      ibvPostSend(a.qp, atomic(1, FAA, local, { addr: raddr, rkey: tmr.rkey }, 1));
      expect((await pollN(a.cq, 1))[0], what).toMatchObject({ wr_id: 1, status });
      expect(u64(tgt, 0), what).toBe(7n);
      expect(u64(res, 0), what).toBe(0n);
      await rdmaTeardown();
    }
  });

  it('mlx5 - ibv_post_send refuses an atomic without its one sg entry or with a non-integer operand (EINVAL naming the field)', async () => {
    const { a, res, tgt, rmr, tmr } = await loopback();
    const wr = atomic(1, CAS, { addr: res.addr, lkey: rmr.lkey }, { addr: tgt.addr, rkey: tmr.rkey }, 1, 2);
    expect(() => ibvPostSend(a.qp, { ...wr, sg_list: [] })).toThrow(/EINVAL.*wr\[0\].*one sg_list entry/);
    expect(() =>
      ibvPostSend(a.qp, {
        ...wr,
        wr: { atomic: { remote_addr: tgt.addr, rkey: tmr.rkey, compare_add: 1.5 } },
      }),
    ).toThrow(/EINVAL.*compare_add/);
    expect(() => ibvPostSend(a.qp, { ...wr, wr: {} })).toThrow(/EINVAL.*wr\.atomic/);
  });

  it('mlx5 - an atomic on a moved ODP target faults and runs once after the re-map; a faulting ODP result buffer stalls and gets the saved value without a second run', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0], { rnrRetry: 7, access: ATOMIC_ACCESS });
    await atomicOdpMoves(h, a, b, 0, 0, false);
  });
});

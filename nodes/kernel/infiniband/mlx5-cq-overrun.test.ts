// CQ overrun (IB spec 11.4.2.1, mlx5 CQ error) on real HCA workers: a completion that finds its
// CQ full is lost, the CQ overruns for good (IBV_EVENT_CQ_ERR), the QP that needed the CQE
// enters ERR (IBV_EVENT_QP_FATAL), the CQEs written before stay pollable, and later completions
// into that CQ are dropped. A CQ that never fills raises nothing.
import { afterEach, describe, expect, it } from 'vitest';
import { err } from '../../../common/errno.ts';
import {
  type IbvAsyncEvent,
  type IbvContext,
  IbvEventType as E,
  IbvQpState,
  IbvQpType,
  IbvSendFlags,
  type IbvSendWr,
  type IbvWc,
  IbvWcStatus as S,
  IbvWrOpcode,
  ibvAckAsyncEvent,
  ibvAllocPd,
  ibvCloseDevice,
  ibvCreateCq,
  ibvCreateQp,
  ibvGetAsyncEvent,
  ibvPollCq,
  ibvPostRecv,
  ibvPostSend,
  ibvQueryQp,
  ibvRegMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  ALL_ACCESS,
  connect,
  MS,
  pollN,
  type QpEnd,
  qpEnd,
  rdmaHost,
  rdmaTeardown,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

const SIG = IbvSendFlags.IBV_SEND_SIGNALED;
/** CQ entries of the CQ under test (a power of two: the ring holds exactly this many). */
const N = 4;
/** Work requests past N. */
const K = 3;
const SLOT = 256;

/** The next `n` async events of `ctx` (acknowledged), ETIMEDOUT after `ms`. */
async function events(ctx: IbvContext, n: number, ms = MS): Promise<IbvAsyncEvent[]> {
  const out: IbvAsyncEvent[] = [];
  const end = performance.now() + ms;
  while (out.length < n) {
    const left = end - performance.now();
    const ev = left > 0 ? await ibvGetAsyncEvent(ctx, left) : null;
    if (ev === null) throw err('ETIMEDOUT', `async events: ${out.length} of ${n} within ${ms} ms`);
    ibvAckAsyncEvent(ev);
    out.push(ev);
  }
  return out;
}

/** An end whose send and receive CQs are separate, of `sendCqe` and `recvCqe` entries. */
async function splitEnd(ctx: IbvContext, sendCqe: number, recvCqe: number, depth = 16, pd = ibvAllocPd(ctx)) {
  const cq = await ibvCreateCq(ctx, sendCqe);
  const rcq = await ibvCreateCq(ctx, recvCqe);
  const qp = await ibvCreateQp(pd, {
    send_cq: cq,
    recv_cq: rcq,
    qp_type: IbvQpType.IBV_QPT_RC,
    cap: { max_send_wr: depth, max_recv_wr: depth },
  });
  const end: QpEnd = { ctx, pd, cq, qp };
  return { end, rcq };
}

/** Post `wr` on `qp`, waiting (up to `ms`) while the SQ is full (ENOMEM). */
async function postWhenRoom(qp: QpEnd['qp'], wr: IbvSendWr, ms = MS): Promise<void> {
  const end = performance.now() + ms;
  for (;;) {
    try {
      ibvPostSend(qp, wr);
      return;
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOMEM' || performance.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

describe('mlx5 CQ overrun', () => {
  it('mlx5 - send CQ overrun: N of N+k signalled WRITEs complete, CQ_ERR and QP_FATAL arrive, the QP is in ERR and later WRs complete nowhere', async () => {
    const h = await rdmaHost({ nics: 2 });
    for (const nics of [1, 2]) {
      const ctxA = h.ctxs[0];
      const { end: a } = await splitEnd(ctxA, N, 64);
      const b = await qpEnd(h.ctxs[nics - 1], 16, nics === 1 ? a.pd : undefined);
      await connect(a, b);
      await connect(b, a);
      const src = mmapAnonymous(h.proc, (N + K) * SLOT);
      const dst = mmapAnonymous(h.proc, (N + K) * SLOT);
      for (let i = 0; i < N + K; i++) src.bytes.fill(i + 1, i * SLOT, (i + 1) * SLOT);
      const smr = ibvRegMr(a.pd, src.addr, src.length, ALL_ACCESS);
      const dmr = ibvRegMr(b.pd, dst.addr, dst.length, ALL_ACCESS);
      const write = (i: number): IbvSendWr => ({
        wr_id: i + 1,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
        send_flags: SIG,
        sg_list: [{ addr: src.addr + i * SLOT, length: SLOT, lkey: smr.lkey }],
        wr: { rdma: { remote_addr: dst.addr + i * SLOT, rkey: dmr.rkey } },
      });
      ibvPostSend(
        a.qp,
        Array.from({ length: N + K }, (_, i) => write(i)),
      );
      const evs = await events(ctxA, 2);
      expect(evs.map((e) => e.event_type).sort()).toEqual([E.IBV_EVENT_CQ_ERR, E.IBV_EVENT_QP_FATAL]);
      expect(evs.find((e) => e.event_type === E.IBV_EVENT_CQ_ERR)!.cq).toBe(a.cq);
      expect(evs.find((e) => e.event_type === E.IBV_EVENT_QP_FATAL)!.qp).toBe(a.qp);
      expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_ERR);
      // the CQEs written before the overrun, and nothing after them.
      const wcs = await pollN(a.cq, N);
      expect(wcs.map((w) => [w.wr_id, w.status])).toEqual(
        Array.from({ length: N }, (_, i) => [i + 1, S.IBV_WC_SUCCESS]),
      );
      // WRITE N+1 executed (its completion was the overrun). In loopback the rest were flushed
      // unexecuted; over the wire they were already sent (in flight) and landed.
      expect(dst.bytes[N * SLOT]).toBe(N + 1);
      if (nics === 1) for (let i = N + 1; i < N + K; i++) expect(dst.bytes[i * SLOT]).toBe(0);
      // later posts are accepted in ERR and flushed into the overrun CQ: retired, no CQE. Two
      // queue-fulls of them fit only if the device retires them.
      for (let i = 0; i < 32; i++) await postWhenRoom(a.qp, { ...write(0), wr_id: 100 + i });
      await new Promise((r) => setTimeout(r, 20));
      const wc: IbvWc[] = [];
      expect(ibvPollCq(a.cq, 8, wc)).toBe(0);
      // no second event for the same CQ or QP; the peer is untouched.
      expect(await ibvGetAsyncEvent(ctxA, 30)).toBeNull();
      expect(ibvQueryQp(b.qp).qp_state).toBe(IbvQpState.IBV_QPS_RTS);
    }
  });

  it('mlx5 - recv CQ overrun: a SEND into a responder whose recv CQ is full raises CQ_ERR and QP_FATAL there; N receives complete', async () => {
    const h = await rdmaHost({ nics: 2 });
    for (const nics of [1, 2]) {
      const ctxB = h.ctxs[nics - 1];
      const a = await qpEnd(h.ctxs[0], 16);
      const { end: b, rcq } = await splitEnd(ctxB, 64, N, 16, nics === 1 ? a.pd : undefined);
      // 67 ms ACK timeout, 2 tries: the requester gives up once the responder is in ERR, but a
      // busy 2-core machine (a full suite, workers descheduled for 10 ms) does not time out the
      // SENDs before it (a 1 ms timeout did, flakily).
      await connect(a, b, { timeout: 14, retryCnt: 1 });
      await connect(b, a);
      const src = mmapAnonymous(h.proc, 4096);
      const dst = mmapAnonymous(h.proc, (N + K) * SLOT);
      const smr = ibvRegMr(a.pd, src.addr, src.length, ALL_ACCESS);
      const dmr = ibvRegMr(b.pd, dst.addr, dst.length, ALL_ACCESS);
      ibvPostRecv(
        b.qp,
        Array.from({ length: N + K }, (_, i) => ({
          wr_id: 200 + i,
          sg_list: [{ addr: dst.addr + i * SLOT, length: SLOT, lkey: dmr.lkey }],
        })),
      );
      ibvPostSend(
        a.qp,
        Array.from({ length: N + K }, (_, i) => ({
          wr_id: i + 1,
          opcode: IbvWrOpcode.IBV_WR_SEND,
          send_flags: SIG,
          sg_list: [{ addr: src.addr, length: 64, lkey: smr.lkey }],
        })),
      );
      const evs = await events(ctxB, 2);
      expect(evs.map((e) => e.event_type).sort()).toEqual([E.IBV_EVENT_CQ_ERR, E.IBV_EVENT_QP_FATAL]);
      expect(evs.find((e) => e.event_type === E.IBV_EVENT_CQ_ERR)!.cq).toBe(rcq);
      expect(evs.find((e) => e.event_type === E.IBV_EVENT_QP_FATAL)!.qp).toBe(b.qp);
      expect(ibvQueryQp(b.qp).qp_state).toBe(IbvQpState.IBV_QPS_ERR);
      const recvs = await pollN(rcq, N);
      expect(recvs.map((w) => [w.wr_id, w.status, w.byte_len])).toEqual(
        Array.from({ length: N }, (_, i) => [200 + i, S.IBV_WC_SUCCESS, 64]),
      );
      // the requester: SEND N+1 was placed and acknowledged, the next one is never answered by
      // the responder in ERR (RETRY_EXC_ERR), the rest are flushed; its own CQ is fine.
      const sends = await pollN(a.cq, N + K);
      expect(sends.map((w) => w.status)).toEqual([
        ...Array(N + 1).fill(S.IBV_WC_SUCCESS),
        S.IBV_WC_RETRY_EXC_ERR,
        ...Array(K - 2).fill(S.IBV_WC_WR_FLUSH_ERR),
      ]);
      expect(ibvPollCq(rcq, 8, [])).toBe(0);
      if (nics === 2) expect(await ibvGetAsyncEvent(h.ctxs[0], 30)).toBeNull();
    }
  });

  it('mlx5 - a CQ that never fills raises no event; an overrun elsewhere names only its own CQ', async () => {
    const h = await rdmaHost();
    const ctx = h.ctxs[0];
    const { end: a } = await splitEnd(ctx, N, 64);
    const b = await qpEnd(ctx, 16, a.pd);
    await connect(a, b);
    await connect(b, a);
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(a.pd, buf.addr, buf.length, ALL_ACCESS);
    const write = (id: number, qp: QpEnd): void =>
      ibvPostSend(qp.qp, {
        wr_id: id,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
        send_flags: SIG,
        sg_list: [{ addr: buf.addr, length: 64, lkey: mr.lkey }],
        wr: { rdma: { remote_addr: buf.addr + 2048, rkey: mr.rkey } },
      });
    // 5 rounds of N signalled WRITEs, each polled before the next: 5N completions through N slots.
    for (let r = 0; r < 5; r++) {
      for (let i = 0; i < N; i++) write(r * N + i, a);
      const wcs = await pollN(a.cq, N);
      expect(wcs.every((w) => w.status === S.IBV_WC_SUCCESS)).toBe(true);
    }
    expect(await ibvGetAsyncEvent(ctx, 50)).toBeNull();
    expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_RTS);
    // a second pair on a CQ of N overruns; the events name it, not a's CQ or QP.
    const { end: c } = await splitEnd(ctx, N, 64, 16, a.pd);
    const d = await qpEnd(ctx, 16, a.pd);
    await connect(c, d);
    await connect(d, c);
    for (let i = 0; i < N + 1; i++) write(i, c);
    const evs = await events(ctx, 2);
    expect(evs.find((e) => e.event_type === E.IBV_EVENT_CQ_ERR)!.cq).toBe(c.cq);
    expect(evs.find((e) => e.event_type === E.IBV_EVENT_QP_FATAL)!.qp).toBe(c.qp);
    write(99, a);
    expect((await pollN(a.cq, 1))[0].wr_id).toBe(99);
    expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_RTS);
  });

  it('mlx5 - a full event queue delays CQ and QP error events, it loses none', async () => {
    const h = await rdmaHost({ nic: { eqSize: 2 } });
    const ctx = h.ctxs[0];
    const pd = ibvAllocPd(ctx);
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(pd, buf.addr, buf.length, ALL_ACCESS);
    const pairs: QpEnd[] = [];
    for (let i = 0; i < 3; i++) {
      const { end: a } = await splitEnd(ctx, 2, 64, 16, pd);
      const b = await qpEnd(ctx, 16, pd);
      await connect(a, b);
      await connect(b, a);
      pairs.push(a);
    }
    // six events at once into an EQ of two: the device holds the rest until the kernel drains.
    for (const a of pairs)
      ibvPostSend(
        a.qp,
        [1, 2, 3].map((id) => ({
          wr_id: id,
          opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
          send_flags: SIG,
          sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
          wr: { rdma: { remote_addr: buf.addr + 2048, rkey: mr.rkey } },
        })),
      );
    const evs = await events(ctx, 6);
    const cqs = evs.filter((e) => e.event_type === E.IBV_EVENT_CQ_ERR).map((e) => e.cq);
    const qps = evs.filter((e) => e.event_type === E.IBV_EVENT_QP_FATAL).map((e) => e.qp);
    expect(new Set(cqs)).toEqual(new Set(pairs.map((a) => a.cq)));
    expect(new Set(qps)).toEqual(new Set(pairs.map((a) => a.qp)));
  });

  it('mlx5 - async events: wait without an event is null at the deadline, an event is acknowledged once, closing the context wakes a reader', async () => {
    const h = await rdmaHost();
    const ctx = h.ctxs[0];
    const t0 = performance.now();
    expect(await ibvGetAsyncEvent(ctx, 0)).toBeNull();
    expect(await ibvGetAsyncEvent(ctx, 20)).toBeNull();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(15);
    const { end: a } = await splitEnd(ctx, 2, 64);
    const b = await qpEnd(ctx, 16, a.pd);
    await connect(a, b);
    await connect(b, a);
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(a.pd, buf.addr, buf.length, ALL_ACCESS);
    // a reader already waiting gets the event as it is raised.
    const waiting = ibvGetAsyncEvent(ctx, MS);
    ibvPostSend(
      a.qp,
      [1, 2, 3].map((id) => ({
        wr_id: id,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
        send_flags: SIG,
        sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
        wr: { rdma: { remote_addr: buf.addr + 2048, rkey: mr.rkey } },
      })),
    );
    const ev = await waiting;
    expect(ev?.event_type).toBe(E.IBV_EVENT_CQ_ERR);
    ibvAckAsyncEvent(ev!);
    expect(() => ibvAckAsyncEvent(ev!)).toThrow(/ibv_ack_async_event: event/);
    const [fatal] = await events(ctx, 1);
    expect(fatal.event_type).toBe(E.IBV_EVENT_QP_FATAL);
    const reader = ibvGetAsyncEvent(ctx, MS);
    await ibvCloseDevice(ctx);
    expect(await reader).toBeNull();
  });
});

// Completion channels (kernel-semantics §7 rule 20): ibv_create_comp_channel, ibv_req_notify_cq
// (next / solicited only), ibv_get_cq_event, ibv_ack_cq_events; one arm gives at most one event,
// a solicited-only arm fires for a SEND with IBV_SEND_SOLICITED (loopback and over the wire) or an
// error completion and not for the others, and unacknowledged events keep the CQ alive.
import { afterEach, describe, expect, it } from 'vitest';
import { CrashMode, DeviceOp } from '../../fabric/device-queue-layout.ts';
import { DoorbellWord, doorbellRead } from '../../fabric/doorbell.ts';
import { hcaCqBase, MLX5_MAX_CQ, Mlx5CqArm, Mlx5CqCtx } from '../../fabric/mlx5-layout.ts';
import {
  type IbvContext,
  type IbvCq,
  type IbvPd,
  IbvQpType,
  IbvSendFlags,
  type IbvSendWr,
  IbvWcStatus as S,
  IbvWrOpcode,
  ibvAckCqEvents,
  ibvAllocPd,
  ibvCreateCompChannel,
  ibvCreateCq,
  ibvCreateQp,
  ibvDestroyCompChannel,
  ibvDestroyCq,
  ibvGetCqEvent,
  ibvPostRecv,
  ibvPostSend,
  ibvRegMr,
  ibvReqNotifyCq,
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
  START_MS,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

const SIG = IbvSendFlags.IBV_SEND_SIGNALED;

// A CQ as its number (a failed expectation then prints a number, not the CQ's object graph).
const cqnOf = (cq: IbvCq | null): number | null => (cq === null ? null : cq.cq.cqn);

// Resolve once the device has rung `cq`'s doorbell past `seen`: its notify() for the batch ran,
// so any event of that batch is counted (CqHw.notify counts EVENTS before it rings).
async function doorbellPast(cq: IbvCq, seen: number): Promise<void> {
  const h = cq.context.hca;
  const db = hcaCqBase(cq.cq.cqn) + Mlx5CqCtx.DB;
  const end = performance.now() + MS;
  while (doorbellRead(h, db) === seen) {
    const left = end - performance.now();
    if (left <= 0) throw new Error(`cq ${cq.cq.cqn}: no doorbell within ${MS} ms`);
    Atomics.store(h, db + DoorbellWord.NEED_WAKEUP, 1);
    const r = Atomics.waitAsync(h, db, seen, left);
    if (r.async) await r.value;
  }
}

// A completion channel, a CQ on it, and a connected loopback pair whose end `a` completes into
// that CQ (`b` has its own CQ, without a channel).
async function loopbackOnChannel(ctx: IbvContext) {
  const ch = ibvCreateCompChannel(ctx);
  const cq = await ibvCreateCq(ctx, 64, ch);
  const b = await qpEnd(ctx, 16);
  const a = await qpOn(b.pd, cq);
  await connect(a, b);
  await connect(b, a);
  return { ch, cq, a, b };
}

// An RC QP end whose send and receive completions go to `cq` (qpEnd makes a CQ of its own).
async function qpOn(pd: IbvPd, cq: IbvCq): Promise<QpEnd> {
  const qp = await ibvCreateQp(pd, {
    send_cq: cq,
    recv_cq: cq,
    qp_type: IbvQpType.IBV_QPT_RC,
    cap: { max_send_wr: 16, max_recv_wr: 16, max_inline_data: 0 },
  });
  return { ctx: pd.context, pd, cq, qp };
}

describe('verbs completion channel', () => {
  it('verbs - an armed CQ raises one completion event on its channel; no second one until re-armed', async () => {
    const h = await rdmaHost();
    const ctx = h.ctxs[0];
    const { ch, cq, a, b } = await loopbackOnChannel(ctx);
    expect(() => ibvReqNotifyCq(b.cq)).toThrow(/EINVAL.*no completion channel/);
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(b.pd, buf.addr, 4096, ALL_ACCESS);
    const write = (id: number): IbvSendWr => ({
      wr_id: id,
      opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
      send_flags: SIG,
      sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
      wr: { rdma: { remote_addr: buf.addr + 64, rkey: mr.rkey } },
    });
    const qp = a.qp;
    ibvReqNotifyCq(cq);
    ibvPostSend(qp, write(1));
    expect(cqnOf(await ibvGetCqEvent(ch, MS))).toBe(cq.cq.cqn);
    expect((await pollN(cq, 1))[0]).toMatchObject({ wr_id: 1, status: S.IBV_WC_SUCCESS });
    // not re-armed: this completion raises nothing.
    ibvPostSend(qp, write(2));
    expect((await pollN(cq, 1))[0].wr_id).toBe(2);
    ibvReqNotifyCq(cq);
    ibvPostSend(qp, write(3));
    expect(cqnOf(await ibvGetCqEvent(ch, MS))).toBe(cq.cq.cqn);
    expect((await pollN(cq, 1))[0].wr_id).toBe(3);
    // two events taken, none pending: WR 2 made none.
    expect(cqnOf(await ibvGetCqEvent(ch, 0))).toBeNull();
    expect(cq.eventsUnacked).toBe(2);
    await expect(ibvDestroyCq(cq)).rejects.toThrow(/EBUSY.*not acknowledged/);
    expect(() => ibvAckCqEvents(cq, 3)).toThrow(/EINVAL.*n 3/);
    ibvAckCqEvents(cq, 2);
    expect(() => ibvDestroyCompChannel(ch)).toThrow(/EBUSY/);
  });

  it('verbs - a new CQ starts unarmed with no events, whatever the context of its number held before', async () => {
    const h = await rdmaHost();
    const ctx = h.ctxs[0];
    // what a destroyed CQ can leave behind in any CQ context: armed, events counted.
    for (let cqn = 0; cqn < MLX5_MAX_CQ; cqn++) {
      Atomics.store(ctx.hca, hcaCqBase(cqn) + Mlx5CqCtx.ARM, Mlx5CqArm.NEXT);
      Atomics.store(ctx.hca, hcaCqBase(cqn) + Mlx5CqCtx.EVENTS, 3);
    }
    const { ch, cq, a, b } = await loopbackOnChannel(ctx);
    expect(cqnOf(await ibvGetCqEvent(ch, 0))).toBeNull();
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(b.pd, buf.addr, 4096, ALL_ACCESS);
    const seen = doorbellRead(ctx.hca, hcaCqBase(cq.cq.cqn) + Mlx5CqCtx.DB);
    ibvPostSend(a.qp, {
      wr_id: 1,
      opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
      send_flags: SIG,
      sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
      wr: { rdma: { remote_addr: buf.addr + 64, rkey: mr.rkey } },
    });
    expect((await pollN(cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    // never armed: its completion raised no event.
    await doorbellPast(cq, seen);
    expect(cqnOf(await ibvGetCqEvent(ch, 0))).toBeNull();
  });

  it('verbs - a device that dies wakes a reader of an armed CQ with its completion event; poll_cq then flushes', async () => {
    const h = await rdmaHost({ nic: { testHooks: true } });
    const ctx = h.ctxs[0];
    const { ch, cq, a } = await loopbackOnChannel(ctx);
    ibvPostRecv(a.qp, { wr_id: 7 });
    ibvReqNotifyCq(cq);
    const ev = ibvGetCqEvent(ch, START_MS);
    h.nics[0].host.submit({ opcode: DeviceOp.CRASH, arg0: CrashMode.THROW });
    h.nics[0].kick();
    expect(cqnOf(await ev)).toBe(cq.cq.cqn);
    expect((await pollN(cq, 1))[0]).toMatchObject({ wr_id: 7, status: S.IBV_WC_WR_FLUSH_ERR });
    ibvAckCqEvents(cq, 1);
  });

  for (const nics of [1, 2]) {
    it(`verbs - ${nics === 1 ? 'loopback' : 'two HCAs'}: a solicited-only arm fires for a SEND with IBV_SEND_SOLICITED, not for one without it`, async () => {
      const h = await rdmaHost({ nics });
      const ctxB = h.ctxs[nics - 1];
      const ch = ibvCreateCompChannel(ctxB);
      const rcq = await ibvCreateCq(ctxB, 64, ch);
      const a = await qpEnd(h.ctxs[0], 16);
      const b = await qpOn(nics === 1 ? a.pd : ibvAllocPd(ctxB), rcq);
      const pdB = b.pd;
      const qpB = b.qp;
      await connect(a, b);
      await connect(b, a);
      const src = mmapAnonymous(h.proc, 4096);
      const dst = mmapAnonymous(h.proc, 4096);
      const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
      const dmr = ibvRegMr(pdB, dst.addr, 4096, ALL_ACCESS);
      const recv = (id: number) => ({
        wr_id: id,
        sg_list: [{ addr: dst.addr, length: 4096, lkey: dmr.lkey }],
      });
      const send = (id: number, flags: number): IbvSendWr => ({
        wr_id: id,
        opcode: IbvWrOpcode.IBV_WR_SEND,
        send_flags: SIG | flags,
        sg_list: [{ addr: src.addr, length: 100, lkey: smr.lkey }],
      });
      ibvPostRecv(qpB, [recv(10), recv(11)]);
      ibvReqNotifyCq(rcq, true);
      const seen = doorbellRead(ctxB.hca, hcaCqBase(rcq.cq.cqn) + Mlx5CqCtx.DB);
      ibvPostSend(a.qp, send(1, 0));
      expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
      expect((await pollN(rcq, 1))[0].wr_id).toBe(10);
      // the receive completed without SE: once the device is past that batch, no event.
      await doorbellPast(rcq, seen);
      expect(cqnOf(await ibvGetCqEvent(ch, 0))).toBeNull();
      ibvPostSend(a.qp, send(2, IbvSendFlags.IBV_SEND_SOLICITED));
      expect(cqnOf(await ibvGetCqEvent(ch, MS))).toBe(rcq.cq.cqn);
      expect((await pollN(rcq, 1))[0].wr_id).toBe(11);
      ibvAckCqEvents(rcq, 1);
    });
  }
});

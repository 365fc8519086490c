// The verbs uapi (nodes/uapi/verbs.ts) on a real HCA: open/query, PD/CQ/QP creation, the RC
// QP state machine (RESET -> INIT -> RTR -> RTS, ERR, back to RESET) and its refusals, posting in
// the wrong state, MR registration rules (§7.5 scenario 6), and errno errors naming the argument.
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { dmaHeapAlloc } from '../../uapi/dma-buf.ts';
import {
  IbvAccess,
  IbvQpAttrMask as M,
  IbvQpState,
  IbvQpType,
  IbvSendFlags,
  IbvWrOpcode,
  ibvAllocPd,
  ibvCreateCq,
  ibvCreateQp,
  ibvDeallocPd,
  ibvDeregMr,
  ibvGetDeviceList,
  ibvModifyQp,
  ibvOpenDevice,
  ibvPostRecv,
  ibvPostSend,
  ibvQueryDevice,
  ibvQueryPort,
  ibvQueryQp,
  ibvRegDmabufMr,
  ibvRegMr,
  Mlx5dvRegDmabufAccess,
  mlx5dvRegDmabufMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  ALL_ACCESS,
  connect,
  MS,
  mockBuf,
  pollN,
  qpEnd,
  rcPair,
  rdmaHost,
  rdmaTeardown,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

describe('verbs', () => {
  it('verbs - device list, open, query device and port; an unknown device is ENODEV', async () => {
    const h = await rdmaHost({ nics: 2 });
    expect(ibvGetDeviceList(h.proc)).toEqual(['mlx5_0', 'mlx5_1']);
    const attr = ibvQueryDevice(h.ctxs[0]);
    expect(attr).toMatchObject({ max_sge: 1, max_inline_data: 24, odp: true });
    const [p0, p1] = h.ctxs.map((c) => ibvQueryPort(c, 1));
    expect(p0).toMatchObject({ state: 'ACTIVE', max_msg_sz: 2 ** 31 });
    expect(p0.lid).not.toBe(p1.lid);
    await expectCode(() => ibvOpenDevice(h.proc, 'mlx5_9'), 'ENODEV');
    await expectCode(() => ibvQueryPort(h.ctxs[0], 2), 'EINVAL');
  });

  it('verbs - PD, CQ and QP creation refuse bad arguments by name; a PD in use cannot be deallocated', async () => {
    const h = await rdmaHost({ nics: 2 });
    const ctx = h.ctxs[0];
    const pd = ibvAllocPd(ctx);
    expect((await expectCode(ibvCreateCq(ctx, 0), 'EINVAL')).message).toMatch(/cqe 0/);
    const cq = await withDeadline(ibvCreateCq(ctx, 16), MS, 'cq');
    const other = await withDeadline(ibvCreateCq(h.ctxs[1], 16), MS, 'cq');
    const init = {
      send_cq: cq,
      recv_cq: cq,
      qp_type: IbvQpType.IBV_QPT_RC,
      cap: { max_send_wr: 8, max_recv_wr: 8 },
    };
    await expectCode(ibvCreateQp(pd, { ...init, qp_type: IbvQpType.IBV_QPT_UD }), 'EOPNOTSUPP');
    expect(
      (await expectCode(ibvCreateQp(pd, { ...init, cap: { max_send_wr: 0, max_recv_wr: 8 } }), 'EINVAL'))
        .message,
    ).toMatch(/max_send_wr/);
    expect(
      (await expectCode(ibvCreateQp(pd, { ...init, cap: { ...init.cap, max_send_sge: 2 } }), 'EINVAL'))
        .message,
    ).toMatch(/max_send_sge/);
    expect(
      (await expectCode(ibvCreateQp(pd, { ...init, cap: { ...init.cap, max_inline_data: 64 } }), 'EINVAL'))
        .message,
    ).toMatch(/max_inline_data/);
    expect((await expectCode(ibvCreateQp(pd, { ...init, recv_cq: other }), 'EINVAL')).message).toMatch(
      /recv_cq/,
    );
    const qp = await withDeadline(ibvCreateQp(pd, init), MS, 'qp');
    expect(ibvQueryQp(qp).qp_state).toBe(IbvQpState.IBV_QPS_RESET);
    await expectCode(() => ibvDeallocPd(pd), 'EBUSY');
  });

  it('verbs - the QP state machine: wrong transitions and missing or extra attributes are EINVAL; ERR and RESET are reachable from anywhere', async () => {
    const h = await rdmaHost();
    const a = await qpEnd(h.ctxs[0]);
    const b = await qpEnd(h.ctxs[0], 64, a.pd);
    const rtr = { qp_state: IbvQpState.IBV_QPS_RTR };
    expect((await expectCode(ibvModifyQp(a.qp, rtr, M.IBV_QP_STATE), 'EINVAL')).message).toMatch(
      /RESET -> IBV_QPS_RTR/,
    );
    await expectCode(ibvModifyQp(a.qp, { qp_state: IbvQpState.IBV_QPS_INIT }, M.IBV_QP_STATE), 'EINVAL');
    const init = {
      qp_state: IbvQpState.IBV_QPS_INIT,
      pkey_index: 0,
      port_num: 1,
      qp_access_flags: ALL_ACCESS,
    };
    const initMask = M.IBV_QP_STATE | M.IBV_QP_PKEY_INDEX | M.IBV_QP_PORT | M.IBV_QP_ACCESS_FLAGS;
    await expectCode(ibvModifyQp(a.qp, init, initMask | M.IBV_QP_SQ_PSN), 'EINVAL');
    expect(
      (await expectCode(ibvModifyQp(a.qp, { ...init, port_num: 2 }, initMask), 'EINVAL')).message,
    ).toMatch(/port_num 2/);
    await expectCode(ibvModifyQp(a.qp, init, M.IBV_QP_PORT), 'EINVAL');
    await ibvModifyQp(a.qp, init, initMask);
    expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_INIT);
    await expectCode(ibvModifyQp(a.qp, { qp_state: IbvQpState.IBV_QPS_RTS }, M.IBV_QP_STATE), 'EINVAL');
    await connect(a, b);
    expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_RTS);
    await expectCode(
      ibvModifyQp(a.qp, { qp_state: IbvQpState.IBV_QPS_ERR, sq_psn: 1 }, M.IBV_QP_STATE | M.IBV_QP_SQ_PSN),
      'EINVAL',
    );
    await ibvModifyQp(a.qp, { qp_state: IbvQpState.IBV_QPS_ERR }, M.IBV_QP_STATE);
    expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_ERR);
    await expectCode(ibvModifyQp(a.qp, init, initMask), 'EINVAL');
    await ibvModifyQp(a.qp, { qp_state: IbvQpState.IBV_QPS_RESET }, M.IBV_QP_STATE);
    await connect(a, b);
    expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_RTS);
  });

  it('verbs - posting in the wrong state: sends need RTS, receives need at least INIT', async () => {
    const h = await rdmaHost();
    const a = await qpEnd(h.ctxs[0]);
    const b = await qpEnd(h.ctxs[0], 64, a.pd);
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(a.pd, buf.addr, 4096, ALL_ACCESS);
    const send = {
      wr_id: 1,
      opcode: IbvWrOpcode.IBV_WR_SEND,
      sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
    };
    const recv = { wr_id: 2, sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }] };
    expect((await expectCode(() => ibvPostRecv(a.qp, recv), 'EINVAL')).message).toMatch(/RESET/);
    await expectCode(() => ibvPostSend(a.qp, send), 'EINVAL');
    await connect(a, b, { upTo: IbvQpState.IBV_QPS_INIT });
    ibvPostRecv(a.qp, recv);
    await expectCode(() => ibvPostSend(a.qp, send), 'EINVAL');
    await ibvModifyQp(a.qp, { qp_state: IbvQpState.IBV_QPS_RESET }, M.IBV_QP_STATE);
    await connect(a, b, { upTo: IbvQpState.IBV_QPS_RTR });
    await expectCode(() => ibvPostSend(a.qp, send), 'EINVAL');
  });

  it('verbs - post_send checks each WR, posts the ones before a bad one (bad_wr) and reports a full send queue as ENOMEM', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0], { depth: 4 });
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(a.pd, buf.addr, 4096, ALL_ACCESS);
    const w = (id: number) => ({
      wr_id: id,
      opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
      send_flags: IbvSendFlags.IBV_SEND_SIGNALED,
      sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
      wr: { rdma: { remote_addr: buf.addr + 8, rkey: mr.rkey } },
    });
    const e = await expectCode(
      () => ibvPostSend(a.qp, [w(1), { ...w(2), opcode: 8 /* IBV_WR_BIND_MW: not supported */ }]),
      'EINVAL',
    );
    expect(e.message).toMatch(/wr\[1\]\.opcode/);
    expect((e as unknown as { badWr: number }).badWr).toBe(1);
    expect((await pollN(a.cq, 1))[0].wr_id).toBe(1);
    await expectCode(
      () => ibvPostSend(a.qp, { ...w(3), sg_list: [w(3).sg_list[0], w(3).sg_list[0]] }),
      'EINVAL',
    );
    await expectCode(() => ibvPostSend(a.qp, { ...w(3), wr: undefined }), 'EINVAL');
    await expectCode(
      () =>
        ibvPostSend(a.qp, {
          ...w(3),
          send_flags: IbvSendFlags.IBV_SEND_INLINE,
          sg_list: [{ addr: 1, length: 8, lkey: 0 }],
        }),
      'EFAULT',
    );
    // RNR-stalled SENDs keep the 4 slots: the fifth post finds the queue full.
    const send = (id: number) => ({
      wr_id: id,
      opcode: IbvWrOpcode.IBV_WR_SEND,
      sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
    });
    const full = await expectCode(() => ibvPostSend(a.qp, [4, 5, 6, 7, 8].map(send)), 'ENOMEM');
    expect((full as unknown as { badWr: number }).badWr).toBe(4);
    void b;
  });

  it('verbs - reg_mr: REMOTE_WRITE needs LOCAL_WRITE, unmapped memory is EFAULT, ODP of host memory is EOPNOTSUPP', async () => {
    const h = await rdmaHost();
    const pd = ibvAllocPd(h.ctxs[0]);
    const buf = mmapAnonymous(h.proc, 8192);
    expect(
      (await expectCode(() => ibvRegMr(pd, buf.addr, 4096, IbvAccess.IBV_ACCESS_REMOTE_WRITE), 'EINVAL'))
        .message,
    ).toMatch(/LOCAL_WRITE/);
    await expectCode(() => ibvRegMr(pd, buf.addr, 4096, IbvAccess.IBV_ACCESS_REMOTE_ATOMIC), 'EINVAL');
    await expectCode(() => ibvRegMr(pd, buf.addr, 8193, ALL_ACCESS), 'EFAULT');
    await expectCode(() => ibvRegMr(pd, 0x1000, 4096, ALL_ACCESS), 'EFAULT');
    await expectCode(() => ibvRegMr(pd, buf.addr, 0, ALL_ACCESS), 'EINVAL');
    await expectCode(
      () => ibvRegMr(pd, buf.addr, 4096, ALL_ACCESS | IbvAccess.IBV_ACCESS_ON_DEMAND),
      'EOPNOTSUPP',
    );
    await expectCode(() => ibvRegMr(pd, buf.addr, 4096, 1 << 12), 'EINVAL');
    const mr = ibvRegMr(pd, buf.addr + 100, 5000, ALL_ACCESS);
    expect(mr).toMatchObject({ addr: buf.addr + 100, length: 5000 });
    expect(mr.lkey).toBe(mr.rkey);
    await ibvDeregMr(mr);
    await ibvDeregMr(mr); // idempotent
    ibvDeallocPd(pd);
  });

  it('verbs - reg_dmabuf_mr: window past the buffer, iova/offset page-offset mismatch, bad fd, bad mlx5 access; ODP needs device support', async () => {
    const h = await rdmaHost({ nics: 2, nic: { odp: false } });
    const pd = ibvAllocPd(h.ctxs[0]);
    const B = mockBuf(h, 64 << 10);
    const DD = Mlx5dvRegDmabufAccess.MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT;
    expect(
      (await expectCode(mlx5dvRegDmabufMr(pd, 4096, 64 << 10, 0x1000, B.fd, ALL_ACCESS, DD), 'EINVAL'))
        .message,
    ).toMatch(/runs past/);
    expect(
      (await expectCode(ibvRegDmabufMr(pd, 100, 4096, 0x1000, B.fd, ALL_ACCESS), 'EINVAL')).message,
    ).toMatch(/page offset/);
    await expectCode(ibvRegDmabufMr(pd, 0, 4096, 0x1000, 99, ALL_ACCESS), 'EBADF');
    await expectCode(mlx5dvRegDmabufMr(pd, 0, 4096, 0x1000, B.fd, ALL_ACCESS, 7), 'EINVAL');
    await expectCode(ibvRegDmabufMr(pd, 0, 4096, 0x1000, B.fd, ALL_ACCESS), 'EOPNOTSUPP');
    const fd = dmaHeapAlloc(h.proc, 'system', { len: 8192 });
    const mr = await withDeadline(
      mlx5dvRegDmabufMr(pd, 100, 5000, 0x2064, fd, ALL_ACCESS, DD),
      MS,
      'pinned reg',
    );
    expect(mr).toMatchObject({ addr: 0x2064, length: 5000 });
    expect(B.exp.dmabuf.attachments).toHaveLength(0); // the refused registrations left nothing attached
  });
});

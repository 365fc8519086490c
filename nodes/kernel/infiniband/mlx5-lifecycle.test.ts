// HCA lifecycle: a crashed NIC worker leaves no caller waiting (outstanding work requests
// complete WR_FLUSH_ERR from poll_cq, the peer over the wire gives up with RETRY_EXC_ERR, new
// commands fail ENODEV), and removal leaves no worker, port, attachment or pinned page behind.
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { CrashMode, DeviceOp } from '../../fabric/device-queue-layout.ts';
import { Mlx5Ctl } from '../../fabric/mlx5-layout.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import {
  IbvQpAttrMask,
  IbvQpState,
  IbvQpType,
  IbvSendFlags,
  IbvWcStatus as S,
  IbvWrOpcode,
  ibvAllocPd,
  ibvCloseDevice,
  ibvCreateCq,
  ibvCreateQp,
  ibvDestroyCq,
  ibvDestroyQp,
  ibvGetDeviceList,
  ibvModifyQp,
  ibvOpenDevice,
  ibvPollCq,
  ibvPostRecv,
  ibvPostSend,
  ibvQueryQp,
  ibvRegDmabufMr,
  ibvRegMr,
  mmapAnonymous,
  munmap,
} from '../../uapi/verbs.ts';
import {
  ALL_ACCESS,
  MS,
  mockBuf,
  pollN,
  rcPair,
  rdmaHost,
  rdmaTeardown,
  START_MS,
} from './fixtures/rdma-host.ts';
import { mlx5Remove } from './mlx5/mlx5-ib.ts';
import { dmaHeapAlloc } from '../../uapi/dma-buf.ts';
import { dmaBufFromFd } from '../dma-buf/dma-buf-file.ts';
import { processExit } from '../../uapi/process.ts';

afterEach(rdmaTeardown);

const SIG = IbvSendFlags.IBV_SEND_SIGNALED;

function crash(h: Awaited<ReturnType<typeof rdmaHost>>, nic: number): void {
  h.nics[nic].host.submit({ opcode: DeviceOp.CRASH, arg0: CrashMode.THROW });
  h.nics[nic].kick();
}

describe('mlx5 lifecycle', () => {
  it('verbs - process exit closes the contexts it left open: QPs, MRs (dma-buf detached) and its memory are all released', async () => {
    const h = await rdmaHost();
    const free0 = h.kernel.ramAlloc.freePages;
    const [a] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const user = mmapAnonymous(h.proc, 16 << 10);
    ibvRegMr(a.pd, user.addr, user.length, ALL_ACCESS);
    const fd = dmaHeapAlloc(h.proc, 'system', { len: 64 << 10 });
    const buf = dmaBufFromFd(h.proc.fdt, fd, 'test');
    await withDeadline(ibvRegDmabufMr(a.pd, 0, 64 << 10, 0, fd, ALL_ACCESS), MS, 'reg dmabuf mr');
    expect(buf.attachments).toHaveLength(1);
    await withDeadline(processExit(h.proc), START_MS, 'process exit'); // nothing was closed by hand
    expect(buf.attachments).toHaveLength(0);
    expect(h.kernel.ramAlloc.freePages).toBe(free0);
  });

  it('mlx5 - a crashed HCA worker: outstanding sends and receives complete WR_FLUSH_ERR from poll_cq, commands fail ENODEV', async () => {
    const h = await rdmaHost({ nic: { testHooks: true } });
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0], { rnrRetry: 7, minRnrTimer: 14 });
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(a.pd, buf.addr, 4096, ALL_ACCESS);
    ibvPostRecv(a.qp, [{ wr_id: 50 }, { wr_id: 51 }]);
    // b has no receive posted: the SEND is NAKed RNR forever, the WRITEs queue behind it.
    ibvPostSend(a.qp, [
      {
        wr_id: 1,
        opcode: IbvWrOpcode.IBV_WR_SEND,
        send_flags: SIG,
        sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
      },
      ...[2, 3, 4].map((id) => ({
        wr_id: id,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
        sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
        wr: { rdma: { remote_addr: buf.addr, rkey: mr.rkey } },
      })),
    ]);
    expect(ibvPollCq(a.cq, 8, [])).toBe(0);
    crash(h, 0);
    const exit = await withDeadline(h.nics[0].host.exited, START_MS, 'worker exit');
    expect(exit.crashed).toBe(true);
    expect(Atomics.load(h.nics[0].hca, Mlx5Ctl.FATAL)).toBe(1);
    const wcs = await pollN(a.cq, 6);
    expect(wcs.map((w) => [w.wr_id, w.status])).toEqual([
      [1, S.IBV_WC_WR_FLUSH_ERR],
      [2, S.IBV_WC_WR_FLUSH_ERR],
      [3, S.IBV_WC_WR_FLUSH_ERR],
      [4, S.IBV_WC_WR_FLUSH_ERR],
      [50, S.IBV_WC_WR_FLUSH_ERR],
      [51, S.IBV_WC_WR_FLUSH_ERR],
    ]);
    expect(ibvPollCq(b.cq, 4, [])).toBe(0);
    await expectCode(ibvCreateCq(h.ctxs[0], 4), 'ENODEV');
    // tearing the objects down after the crash does not wait on the dead device.
    await withDeadline(ibvCloseDevice(h.ctxs[0]), MS, 'close device');
  });

  it("mlx5 - closing a context whose QP used another context's CQ: a later software flush of that CQ leaves the freed rings (now another QP's) alone", async () => {
    const h = await rdmaHost({ nic: { testHooks: true } });
    const ctx1 = h.ctxs[0];
    const ctx0 = ibvOpenDevice(h.proc, h.nics[0].name);
    const cq = await ibvCreateCq(ctx1, 16);
    const cap = { max_send_wr: 8, max_recv_wr: 8 };
    const rc = IbvQpType.IBV_QPT_RC;
    await ibvCreateQp(ibvAllocPd(ctx0), { send_cq: cq, recv_cq: cq, qp_type: rc, cap });
    await ibvCloseDevice(ctx0); // its QP is destroyed, its rings go back to the arena
    const qp = await ibvCreateQp(ibvAllocPd(ctx1), { send_cq: cq, recv_cq: cq, qp_type: rc, cap });
    const M = IbvQpAttrMask;
    await ibvModifyQp(
      qp,
      { qp_state: IbvQpState.IBV_QPS_INIT, pkey_index: 0, port_num: 1, qp_access_flags: 0 },
      M.IBV_QP_STATE | M.IBV_QP_PKEY_INDEX | M.IBV_QP_PORT | M.IBV_QP_ACCESS_FLAGS,
    );
    ibvPostRecv(qp, [{ wr_id: 777 }, { wr_id: 778 }]);
    crash(h, 0);
    await withDeadline(h.nics[0].host.exited, START_MS, 'worker exit');
    const wcs = await pollN(cq, 2);
    expect(wcs.map((w) => [w.qp_num, w.wr_id, w.status])).toEqual([
      [qp.qp_num, 777, S.IBV_WC_WR_FLUSH_ERR],
      [qp.qp_num, 778, S.IBV_WC_WR_FLUSH_ERR],
    ]);
    expect(ibvPollCq(cq, 4, [])).toBe(0);
  });

  it('mlx5 - two HCAs: when the peer HCA crashes, the surviving requester exhausts retry_cnt (RETRY_EXC_ERR)', async () => {
    const h = await rdmaHost({ nics: 2, nic: { testHooks: true } });
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[1], { timeout: 8, retryCnt: 2 });
    const buf = mmapAnonymous(h.proc, 4096);
    const amr = ibvRegMr(a.pd, buf.addr, 4096, ALL_ACCESS);
    const bmr = ibvRegMr(b.pd, buf.addr, 4096, ALL_ACCESS);
    crash(h, 1);
    expect((await withDeadline(h.nics[1].host.exited, START_MS, 'worker exit')).crashed).toBe(true);
    ibvPostSend(a.qp, {
      wr_id: 1,
      opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
      send_flags: SIG,
      sg_list: [{ addr: buf.addr, length: 8, lkey: amr.lkey }],
      wr: { rdma: { remote_addr: buf.addr, rkey: bmr.rkey } },
    });
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_RETRY_EXC_ERR);
    expect(ibvQueryQp(a.qp).qp_state).toBe(IbvQpState.IBV_QPS_ERR);
  });

  it('mlx5 - removal with objects still open leaves no worker, port, dma-buf attachment or pinned page behind', async () => {
    const before = process
      .getActiveResourcesInfo()
      .filter((r) => r === 'MessagePort' || r === 'Worker').length;
    const h = await rdmaHost({ nics: 2 });
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[1]);
    const buf = mmapAnonymous(h.proc, 8192);
    ibvRegMr(a.pd, buf.addr, 8192, ALL_ACCESS);
    const B = mockBuf(h, 64 << 10);
    await withDeadline(ibvRegDmabufMr(b.pd, 0, 64 << 10, 0x10000, B.fd, ALL_ACCESS), MS, 'reg');
    expect(() => munmap(h.proc, buf.addr)).toThrow(/pinned/);
    for (const n of h.nics) await withDeadline(mlx5Remove(n), START_MS, 'remove');
    for (const n of h.nics) expect(await n.host.exited).toMatchObject({ code: 0, crashed: false });
    expect(ibvGetDeviceList(h.proc)).toEqual([]);
    expect(B.exp.dmabuf.attachments).toHaveLength(0);
    munmap(h.proc, buf.addr); // the MR's pin is gone with the device
    const after = process
      .getActiveResourcesInfo()
      .filter((r) => r === 'MessagePort' || r === 'Worker').length;
    expect(after).toBeLessThanOrEqual(before);
  });

  it('mlx5 - destroy: a CQ in use is EBUSY; a QP destroyed with work outstanding produces no completion', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0], { rnrRetry: 7 });
    const buf = mmapAnonymous(h.proc, 4096);
    const mr = ibvRegMr(a.pd, buf.addr, 4096, ALL_ACCESS);
    await expectCode(ibvDestroyCq(a.cq), 'EBUSY');
    ibvPostSend(a.qp, {
      wr_id: 1,
      opcode: IbvWrOpcode.IBV_WR_SEND,
      send_flags: SIG,
      sg_list: [{ addr: buf.addr, length: 8, lkey: mr.lkey }],
    });
    await withDeadline(ibvDestroyQp(a.qp), MS, 'destroy qp');
    await withDeadline(ibvDestroyCq(a.cq), MS, 'destroy cq');
    expect(ibvPollCq(b.cq, 4, [])).toBe(0);
  });
});

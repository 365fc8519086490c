// The success path of every data verb on real HCA workers: RDMA WRITE (signalled or not),
// WRITE_WITH_IMM, SEND, SEND_WITH_IMM, inline SEND, RDMA READ; loopback between two QPs of one
// HCA and between two HCAs of one host (over the shared-memory wire, multi-segment messages),
// host memory and dma-buf MRs (system heap, MockExporter VRAM) on either side.
import { afterEach, describe, expect, it } from 'vitest';
import { Placement } from '../dma-buf/mock-exporter.ts';
import { withDeadline } from '../../../common/deadline.ts';
import { dmaHeapAlloc, dmaBufMmap } from '../../uapi/dma-buf.ts';
import {
  IbvSendFlags,
  IbvWcFlags,
  IbvWcOpcode,
  IbvWcStatus,
  IbvWrOpcode,
  ibvPollCq,
  ibvPostRecv,
  ibvPostSend,
  ibvRegDmabufMr,
  ibvRegMr,
  mlx5dvRegDmabufMr,
  Mlx5dvRegDmabufAccess,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  ALL_ACCESS,
  busBuf,
  firstDiff,
  MS,
  mockBuf,
  pattern,
  pollN,
  rcPair,
  rdmaHost,
  rdmaTeardown,
} from './fixtures/rdma-host.ts';

afterEach(rdmaTeardown);

const SIG = IbvSendFlags.IBV_SEND_SIGNALED;

describe('mlx5 data path', () => {
  it('mlx5 - loopback RDMA WRITE lands; an unsignalled WRITE makes no CQE, the signalled one after it does', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const src = mmapAnonymous(h.proc, 16 << 10);
    const dst = mmapAnonymous(h.proc, 16 << 10);
    src.bytes.set(pattern(16 << 10, 3));
    const smr = ibvRegMr(a.pd, src.addr, src.length, ALL_ACCESS);
    const dmr = ibvRegMr(b.pd, dst.addr, dst.length, ALL_ACCESS);
    const write = (id: number, off: number, len: number, flags: number) => ({
      wr_id: id,
      opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
      send_flags: flags,
      sg_list: [{ addr: src.addr + off, length: len, lkey: smr.lkey }],
      wr: { rdma: { remote_addr: dst.addr + off, rkey: dmr.rkey } },
    });
    ibvPostSend(a.qp, [write(1, 0, 5000, 0), write(2, 5000, 11384, SIG)]);
    const wcs = await pollN(a.cq, 1);
    expect(wcs[0]).toMatchObject({
      wr_id: 2,
      status: IbvWcStatus.IBV_WC_SUCCESS,
      opcode: IbvWcOpcode.IBV_WC_RDMA_WRITE,
    });
    expect(firstDiff(dst.bytes, src.bytes)).toBe(-1);
    expect(ibvPollCq(a.cq, 4, [])).toBe(0); // nothing for the unsignalled one, nothing at the responder
  });

  it('mlx5 - SEND, SEND_WITH_IMM and inline SEND consume receives in order; WRITE_WITH_IMM reports its immediate', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const src = mmapAnonymous(h.proc, 8192);
    const dst = mmapAnonymous(h.proc, 8192);
    src.bytes.set(pattern(8192, 9));
    const smr = ibvRegMr(a.pd, src.addr, 8192, ALL_ACCESS);
    const dmr = ibvRegMr(b.pd, dst.addr, 8192, ALL_ACCESS);
    ibvPostRecv(
      b.qp,
      [0, 1, 2, 3].map((i) => ({
        wr_id: 100 + i,
        sg_list: [{ addr: dst.addr + i * 2048, length: 2048, lkey: dmr.lkey }],
      })),
    );
    ibvPostSend(a.qp, [
      {
        wr_id: 1,
        opcode: IbvWrOpcode.IBV_WR_SEND,
        send_flags: SIG,
        sg_list: [{ addr: src.addr, length: 1000, lkey: smr.lkey }],
      },
      {
        wr_id: 2,
        opcode: IbvWrOpcode.IBV_WR_SEND_WITH_IMM,
        send_flags: SIG,
        imm_data: 0xabcd,
        sg_list: [{ addr: src.addr + 1000, length: 2048, lkey: smr.lkey }],
      },
      {
        wr_id: 3,
        opcode: IbvWrOpcode.IBV_WR_SEND,
        send_flags: SIG | IbvSendFlags.IBV_SEND_INLINE,
        sg_list: [{ addr: src.addr + 4000, length: 24, lkey: 0 }],
      },
      {
        wr_id: 4,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE_WITH_IMM,
        send_flags: SIG,
        imm_data: 77,
        sg_list: [{ addr: src.addr + 5000, length: 100, lkey: smr.lkey }],
        wr: { rdma: { remote_addr: dst.addr + 7000, rkey: dmr.rkey } },
      },
    ]);
    const req = await pollN(a.cq, 4, MS, 'send completions');
    const rcv = await pollN(b.cq, 4, MS, 'receive completions');
    expect(req.map((w) => [w.wr_id, w.status])).toEqual([
      [1, 0],
      [2, 0],
      [3, 0],
      [4, 0],
    ]);
    expect(rcv.map((w) => [w.wr_id, w.opcode, w.byte_len, w.imm_data, w.wc_flags])).toEqual([
      [100, IbvWcOpcode.IBV_WC_RECV, 1000, 0, 0],
      [101, IbvWcOpcode.IBV_WC_RECV, 2048, 0xabcd, IbvWcFlags.IBV_WC_WITH_IMM],
      [102, IbvWcOpcode.IBV_WC_RECV, 24, 0, 0],
      [103, IbvWcOpcode.IBV_WC_RECV_RDMA_WITH_IMM, 100, 77, IbvWcFlags.IBV_WC_WITH_IMM],
    ]);
    expect(firstDiff(dst.bytes.subarray(0, 1000), src.bytes.subarray(0, 1000))).toBe(-1);
    expect(firstDiff(dst.bytes.subarray(2048, 4096), src.bytes.subarray(1000, 3048))).toBe(-1);
    expect(firstDiff(dst.bytes.subarray(4096, 4120), src.bytes.subarray(4000, 4024))).toBe(-1);
    expect(firstDiff(dst.bytes.subarray(7000, 7100), src.bytes.subarray(5000, 5100))).toBe(-1);
  });

  it('mlx5 - RDMA READ from a system-heap dma-buf MR into host memory reports its length', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const fd = dmaHeapAlloc(h.proc, 'system', { len: 64 << 10 });
    const view = dmaBufMmap(h.proc, fd, 0, 16);
    view.write(0, pattern(64 << 10, 5));
    const rmr = await withDeadline(
      mlx5dvRegDmabufMr(
        b.pd,
        0,
        64 << 10,
        0x10000,
        fd,
        ALL_ACCESS,
        Mlx5dvRegDmabufAccess.MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT,
      ),
      MS,
      'reg',
    );
    const dst = mmapAnonymous(h.proc, 64 << 10);
    const lmr = ibvRegMr(a.pd, dst.addr, dst.length, ALL_ACCESS);
    ibvPostSend(a.qp, {
      wr_id: 9,
      opcode: IbvWrOpcode.IBV_WR_RDMA_READ,
      send_flags: SIG,
      sg_list: [{ addr: dst.addr + 10, length: 60_000, lkey: lmr.lkey }],
      wr: { rdma: { remote_addr: 0x10000 + 100, rkey: rmr.rkey } },
    });
    const [wc] = await pollN(a.cq, 1);
    expect(wc).toMatchObject({ wr_id: 9, status: 0, opcode: IbvWcOpcode.IBV_WC_RDMA_READ, byte_len: 60_000 });
    expect(firstDiff(dst.bytes.subarray(10, 60_010), pattern(64 << 10, 5).subarray(100, 60_100))).toBe(-1);
  });

  it('mlx5 - a dma-buf MR over a window at an unaligned offset maps its iova to that offset (ODP and pinned)', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const src = mmapAnonymous(h.proc, 16 << 10);
    src.bytes.set(pattern(16 << 10, 8));
    const smr = ibvRegMr(a.pd, src.addr, src.length, ALL_ACCESS);
    const B = mockBuf(h, 64 << 10, Placement.SYSTEM);
    // window [5000, +20000) of the buffer at iova 0x7000 + 5000 % 4096 (same page offset).
    const odp = await withDeadline(
      ibvRegDmabufMr(b.pd, 5000, 20_000, 0x7000 + 904, B.fd, ALL_ACCESS),
      MS,
      'odp',
    );
    const pin = await withDeadline(
      mlx5dvRegDmabufMr(
        b.pd,
        5000,
        20_000,
        0x9_0000 + 904,
        B.fd,
        ALL_ACCESS,
        Mlx5dvRegDmabufAccess.MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT,
      ),
      MS,
      'pinned',
    );
    const wr = (id: number, rkey: number, raddr: number, off: number, len: number) => ({
      wr_id: id,
      opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
      send_flags: SIG,
      sg_list: [{ addr: src.addr + off, length: len, lkey: smr.lkey }],
      wr: { rdma: { remote_addr: raddr, rkey } },
    });
    ibvPostSend(a.qp, [
      wr(1, odp.rkey, 0x7000 + 904, 0, 10_000),
      wr(2, pin.rkey, 0x9_0000 + 904 + 10_000, 10_000, 6000),
    ]);
    expect((await pollN(a.cq, 2)).map((w) => w.status)).toEqual([0, 0]);
    expect(firstDiff(B.read(5000, 16_000), src.bytes.subarray(0, 16_000))).toBe(-1);
    expect(B.read(4999, 1)[0]).toBe(0);
    expect(B.read(21_000, 1)[0]).toBe(0);
  });

  it('mlx5 - MRs over peer memory by PCI bus address (P2PDMA BUS_ADDR) are reached without the IOMMU, ODP and pinned', async () => {
    const h = await rdmaHost({ nics: 2 });
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[1]);
    const P = busBuf(h, 256 << 10);
    const Q = busBuf(h, 256 << 10);
    P.bytes.set(pattern(256 << 10, 6));
    const pmr = await withDeadline(
      ibvRegDmabufMr(a.pd, 0, 256 << 10, 0x10_0000, P.fd, ALL_ACCESS),
      MS,
      'odp',
    );
    const qmr = await withDeadline(
      mlx5dvRegDmabufMr(
        b.pd,
        0,
        256 << 10,
        0x20_0000,
        Q.fd,
        ALL_ACCESS,
        Mlx5dvRegDmabufAccess.MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT,
      ),
      MS,
      'pinned',
    );
    ibvPostSend(a.qp, {
      wr_id: 1,
      opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
      send_flags: SIG,
      sg_list: [{ addr: 0x10_0000, length: 256 << 10, lkey: pmr.lkey }],
      wr: { rdma: { remote_addr: 0x20_0000, rkey: qmr.rkey } },
    });
    expect((await pollN(a.cq, 1))[0].status).toBe(0);
    expect(firstDiff(Q.bytes, P.bytes)).toBe(-1);
    expect(h.kernel.iommu.faultLog.drain()).toEqual([]);
  });

  it('mlx5 - two HCAs: WRITE, READ and SEND of multi-segment messages between VRAM dma-buf MRs arrive intact over the wire', async () => {
    const h = await rdmaHost({ nics: 2 });
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[1]);
    const size = 3 << 20; // three 1 MiB wire segments per message
    const A = mockBuf(h, 4 << 20);
    const B = mockBuf(h, 4 << 20);
    const data = pattern(size, 11);
    A.exp.pages.write(0, data);
    const amr = await withDeadline(ibvRegDmabufMr(a.pd, 0, 4 << 20, 0x100000, A.fd, ALL_ACCESS), MS, 'reg a');
    const bmr = await withDeadline(ibvRegDmabufMr(b.pd, 0, 4 << 20, 0x200000, B.fd, ALL_ACCESS), MS, 'reg b');
    ibvPostSend(a.qp, {
      wr_id: 1,
      opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
      send_flags: SIG,
      sg_list: [{ addr: 0x100000, length: size, lkey: amr.lkey }],
      wr: { rdma: { remote_addr: 0x200000 + 4096, rkey: bmr.rkey } },
    });
    expect((await pollN(a.cq, 1))[0]).toMatchObject({ wr_id: 1, status: 0 });
    expect(firstDiff(B.read(4096, size), data)).toBe(-1);
    // READ it back into A at an offset, then SEND a piece to a posted receive.
    ibvPostSend(a.qp, {
      wr_id: 2,
      opcode: IbvWrOpcode.IBV_WR_RDMA_READ,
      send_flags: SIG,
      sg_list: [{ addr: 0x100000 + size, length: 1 << 20, lkey: amr.lkey }],
      wr: { rdma: { remote_addr: 0x200000 + 4096, rkey: bmr.rkey } },
    });
    expect((await pollN(a.cq, 1))[0]).toMatchObject({ wr_id: 2, status: 0, byte_len: 1 << 20 });
    expect(firstDiff(A.read(size, 1 << 20), data.subarray(0, 1 << 20))).toBe(-1);
    ibvPostRecv(b.qp, { wr_id: 50, sg_list: [{ addr: 0x200000, length: 4096, lkey: bmr.lkey }] });
    ibvPostSend(a.qp, {
      wr_id: 3,
      opcode: IbvWrOpcode.IBV_WR_SEND,
      send_flags: SIG,
      sg_list: [{ addr: 0x100000 + 8, length: 4000, lkey: amr.lkey }],
    });
    expect((await pollN(a.cq, 1))[0]).toMatchObject({ wr_id: 3, status: 0 });
    expect((await pollN(b.cq, 1))[0]).toMatchObject({
      wr_id: 50,
      status: 0,
      byte_len: 4000,
      opcode: IbvWcOpcode.IBV_WC_RECV,
    });
    expect(firstDiff(B.read(0, 4000), data.subarray(8, 4008))).toBe(-1);
    expect(h.kernel.iommu.faultLog.drain()).toEqual([]);
  });

  it('mlx5 - requests on one QP execute in order: a WRITE is placed before the SEND that follows it is received', async () => {
    const h = await rdmaHost({ nics: 2 });
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[1]);
    const src = mmapAnonymous(h.proc, 1 << 20);
    const dst = mmapAnonymous(h.proc, 1 << 20);
    src.bytes.set(pattern(1 << 20, 1));
    const smr = ibvRegMr(a.pd, src.addr, src.length, ALL_ACCESS);
    const dmr = ibvRegMr(b.pd, dst.addr, dst.length, ALL_ACCESS);
    ibvPostRecv(b.qp, { wr_id: 7, sg_list: [{ addr: dst.addr, length: 64, lkey: dmr.lkey }] });
    ibvPostSend(a.qp, [
      {
        wr_id: 1,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
        sg_list: [{ addr: src.addr, length: 1 << 20, lkey: smr.lkey }],
        wr: { rdma: { remote_addr: dst.addr, rkey: dmr.rkey } },
      },
      {
        wr_id: 2,
        opcode: IbvWrOpcode.IBV_WR_SEND,
        sg_list: [{ addr: src.addr, length: 64, lkey: smr.lkey }],
      },
    ]);
    const [r] = await pollN(b.cq, 1);
    expect(r).toMatchObject({ wr_id: 7, status: 0 });
    // the receive completed, so every byte of the earlier WRITE is already there.
    expect(firstDiff(dst.bytes, src.bytes)).toBe(-1);
  });

  for (const nics of [1, 2]) {
    it(`mlx5 - ${nics === 1 ? 'loopback' : 'two HCAs'}: a WRITE with IBV_SEND_FENCE after a READ into its source sends the bytes the READ brought`, async () => {
      const h = await rdmaHost({ nics });
      const [a, b] = await rcPair(h.ctxs[0], h.ctxs[nics - 1]);
      const local = mmapAnonymous(h.proc, 64 << 10);
      const remote = mmapAnonymous(h.proc, 128 << 10);
      local.bytes.set(pattern(64 << 10, 1));
      remote.bytes.set(pattern(64 << 10, 2));
      const lmr = ibvRegMr(a.pd, local.addr, local.length, ALL_ACCESS);
      const rmr = ibvRegMr(b.pd, remote.addr, remote.length, ALL_ACCESS);
      // READ remote[0, 64K) into local, then WRITE local to remote[64K, 128K): without the fence
      // the WRITE may read `local` before the READ's response has landed there (IBA 9.7.5.2.1).
      ibvPostSend(a.qp, [
        {
          wr_id: 1,
          opcode: IbvWrOpcode.IBV_WR_RDMA_READ,
          sg_list: [{ addr: local.addr, length: 64 << 10, lkey: lmr.lkey }],
          wr: { rdma: { remote_addr: remote.addr, rkey: rmr.rkey } },
        },
        {
          wr_id: 2,
          opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
          send_flags: SIG | IbvSendFlags.IBV_SEND_FENCE,
          sg_list: [{ addr: local.addr, length: 64 << 10, lkey: lmr.lkey }],
          wr: { rdma: { remote_addr: remote.addr + (64 << 10), rkey: rmr.rkey } },
        },
      ]);
      expect((await pollN(a.cq, 1))[0]).toMatchObject({ wr_id: 2, status: 0 });
      expect(firstDiff(remote.bytes.subarray(64 << 10), pattern(64 << 10, 2))).toBe(-1);
    });
  }
});

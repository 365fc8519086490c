// The HCA's wasm data path (nodes/devices/mlx5/mlx5-fast.ts): loopback RDMA WRITEs whose
// translations are cached run in one wasm call per doorbell. What it does must be what the
// JavaScript path does (bytes, CQEs, SQ room), it must leave every other case to that path (NAKs,
// faults), a zap must stop it using a translation, and its binary must be its text compiled.
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { mlx5FastCompile } from '../../devices/mlx5/mlx5-fast-build.ts';
import { MLX5_FAST_WASM_BASE64 } from '../../devices/mlx5/mlx5-fast-wasm.ts';
import { doorbellRing } from '../../fabric/doorbell.ts';
import { hcaMkeyBase, Mlx5Ctl, Mlx5Mkey, Mlx5Xlt, mlx5KeyIndex } from '../../fabric/mlx5-layout.ts';
import { SendWqe } from '../../fabric/mlx5-wqe.ts';
import { mlx5MkeyZap } from './mlx5/mlx5-mr.ts';
import { Placement } from '../dma-buf/mock-exporter.ts';
import {
  IbvAccess,
  IbvSendFlags,
  type IbvSendWr,
  IbvWcOpcode,
  IbvWrOpcode,
  IbvWcStatus as S,
  ibvDestroyCq,
  ibvDestroyQp,
  ibvPollCq,
  ibvPostSend,
  ibvRegDmabufMr,
  ibvRegMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  ALL_ACCESS,
  firstDiff,
  MS,
  mkeyWord,
  mockBuf,
  pattern,
  pollN,
  type RdmaHost,
  rcPair,
  rdmaHost,
  rdmaTeardown,
  rdmaWr,
  connect,
  qpEnd,
} from './fixtures/rdma-host.ts';
import { expectErr } from '../../../test/support/expect-errno.ts';

afterEach(rdmaTeardown);

const fastWqes = (h: RdmaHost): number => Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_FAST_WQES);

const write = (id: number, lk: number, la: number, rk: number, ra: number, len: number, flags: number) =>
  rdmaWr('write', id, lk, la, rk, ra, len, flags);

/** A loopback pair, a patterned user MR of `size` bytes as source, an ODP dma-buf MR (VRAM) at `iova` as target. */
async function odpTarget(size: number, iova: number, seed: number) {
  const h = await rdmaHost();
  const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
  const src = mmapAnonymous(h.proc, size);
  src.bytes.set(pattern(size, seed));
  const smr = ibvRegMr(a.pd, src.addr, size, ALL_ACCESS);
  const B = mockBuf(h, size, Placement.VRAM);
  const dmr = await withDeadline(ibvRegDmabufMr(b.pd, 0, size, iova, B.fd, ALL_ACCESS), MS, 'reg');
  return { h, a, src, smr, B, dmr };
}

describe('mlx5 wasm data path', () => {
  it('mlx5 - cached loopback WRITEs run on the wasm path: the same bytes, CQEs and SQ room as the JavaScript path', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0], { depth: 64 });
    const src = mmapAnonymous(h.proc, 4096);
    const dst = mmapAnonymous(h.proc, 4096);
    src.bytes.set(pattern(4096, 5));
    const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
    const dmr = ibvRegMr(b.pd, dst.addr, 4096, ALL_ACCESS);
    // the first WRITE (64 bytes) fills the translation cache on the JavaScript path, with each
    // side's whole contiguous run (the page), so WRITEs anywhere in it follow on the wasm path.
    ibvPostSend(a.qp, write(0, smr.lkey, src.addr, dmr.rkey, dst.addr, 64, IbvSendFlags.IBV_SEND_SIGNALED));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    const before = fastWqes(h);
    // three laps of a 64-slot SQ in batches of 16, every 8th signalled: the ring wraps under it.
    let id = 1;
    for (let lap = 0; lap < 12; lap++) {
      const wrs: IbvSendWr[] = [];
      for (let k = 0; k < 16; k++, id++) {
        const off = 64 + ((id * 56) % 3968);
        const sig = id % 8 === 0 ? IbvSendFlags.IBV_SEND_SIGNALED : 0;
        wrs.push(write(id, smr.lkey, src.addr + off, dmr.rkey, dst.addr + off, 1 + (id % 56), sig));
      }
      ibvPostSend(a.qp, wrs);
      const wcs = await pollN(a.cq, 2, MS, `lap ${lap}`);
      for (const [i, wc] of wcs.entries()) {
        expect(wc).toMatchObject({
          wr_id: lap * 16 + 8 * (i + 1),
          status: S.IBV_WC_SUCCESS,
          opcode: IbvWcOpcode.IBV_WC_RDMA_WRITE,
          qp_num: a.qp.qp_num,
          byte_len: 0,
          imm_data: 0,
          wc_flags: 0,
        });
      }
    }
    expect(ibvPollCq(a.cq, 4, [])).toBe(0);
    expect(fastWqes(h) - before).toBe(192);
    for (let i = 1; i < id; i++) {
      const off = 64 + ((i * 56) % 3968);
      const len = 1 + (i % 56);
      expect(firstDiff(dst.bytes.subarray(off, off + len), src.bytes.subarray(off, off + len))).toBe(-1);
    }
  });

  it('mlx5 - inline WRITEs take the wasm path too: the bytes come from the WQE, only the destination is cached', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const src = mmapAnonymous(h.proc, 4096);
    src.bytes.set(pattern(4096, 6));
    const dst = mmapAnonymous(h.proc, 4096);
    const dmr = ibvRegMr(b.pd, dst.addr, 4096, ALL_ACCESS);
    const inline = (id: number, off: number, len: number): IbvSendWr => ({
      ...write(id, 0, src.addr + off, dmr.rkey, dst.addr + off, len, IbvSendFlags.IBV_SEND_SIGNALED),
      send_flags: IbvSendFlags.IBV_SEND_SIGNALED | IbvSendFlags.IBV_SEND_INLINE,
    });
    // a plain WRITE-sized inline first caches [0, 24) of the destination; 1..24 bytes inside it follow.
    ibvPostSend(a.qp, inline(0, 0, 24));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    src.bytes.set(pattern(4096, 9));
    const before = fastWqes(h);
    const lens = [1, 7, 8, 16, 17, 24];
    ibvPostSend(
      a.qp,
      lens.map((len, i) => inline(i + 1, 24 - len, len)),
    );
    const wcs = await pollN(a.cq, lens.length);
    expect(wcs.map((w) => [w.wr_id, w.status])).toEqual(lens.map((_, i) => [i + 1, S.IBV_WC_SUCCESS]));
    expect(fastWqes(h) - before).toBe(lens.length);
    // the last WR wrote all 24 bytes from the second pattern.
    expect(firstDiff(dst.bytes.subarray(0, 24), src.bytes.subarray(0, 24))).toBe(-1);
    expect(dst.bytes[24]).toBe(0);
  });

  it('mlx5 - the wasm path leaves a WRITE it does not cover to the JavaScript path: an rkey without REMOTE_WRITE NAKs after fast WRITEs', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const src = mmapAnonymous(h.proc, 4096);
    const dst = mmapAnonymous(h.proc, 8192);
    const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
    const dmr = ibvRegMr(b.pd, dst.addr, 4096, ALL_ACCESS);
    const ro = ibvRegMr(b.pd, dst.addr + 4096, 4096, IbvAccess.IBV_ACCESS_LOCAL_WRITE);
    const sig = IbvSendFlags.IBV_SEND_SIGNALED;
    ibvPostSend(
      a.qp,
      [1, 2, 3].map((i) => write(i, smr.lkey, src.addr, dmr.rkey, dst.addr, 8, sig)),
    );
    expect((await pollN(a.cq, 3)).map((w) => w.status)).toEqual([0, 0, 0]);
    const fast = fastWqes(h);
    expect(fast).toBeGreaterThanOrEqual(2);
    // b READs src into the read-only MR (LOCAL_WRITE is enough for that): now the translation
    // cache holds exactly the two ranges the WRITE below names, so only the access check stops it.
    ibvPostSend(b.qp, { ...rdmaWr('read', 9, ro.lkey, dst.addr + 4096, smr.rkey, src.addr, 8) });
    expect((await pollN(b.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    ibvPostSend(a.qp, write(4, smr.lkey, src.addr, ro.rkey, dst.addr + 4096, 8, sig));
    const [wc] = await pollN(a.cq, 1);
    expect(wc).toMatchObject({ wr_id: 4, status: S.IBV_WC_REM_ACCESS_ERR });
    expect(fastWqes(h)).toBe(fast);
  });

  it('mlx5 - a move between two fast WRITEs zaps the mkey; the next WRITE does not use the cached translation and lands in the new placement', async () => {
    const IOVA = 0x800_0000;
    const { h, a, src, smr, B, dmr } = await odpTarget(8192, IOVA, 2);
    const sig = IbvSendFlags.IBV_SEND_SIGNALED;
    ibvPostSend(
      a.qp,
      // the first (the JavaScript path) caches [0, 320) of both sides; the second is inside it.
      [
        write(0, smr.lkey, src.addr, dmr.rkey, IOVA, 320, sig),
        write(1, smr.lkey, src.addr + 64, dmr.rkey, IOVA + 64, 64, sig),
      ],
    );
    expect((await pollN(a.cq, 2)).map((w) => w.status)).toEqual([0, 0]);
    const fast = fastWqes(h);
    expect(fast).toBe(1);
    const fence = await B.exp.move(Placement.SYSTEM);
    expect(mkeyWord(h, dmr.rkey, Mlx5Mkey.XLT)).toBe(Mlx5Xlt.ZAPPED);
    ibvPostSend(a.qp, write(2, smr.lkey, src.addr + 128, dmr.rkey, IOVA + 128, 64, sig));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    expect(fence.signaledFlag).toBe(true);
    expect(Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_PAGE_FAULTS)).toBeGreaterThanOrEqual(1);
    expect(fastWqes(h)).toBe(fast);
    expect(B.exp.placement).toBe(Placement.SYSTEM);
    expect(firstDiff(B.read(0, 192), src.bytes.subarray(0, 192))).toBe(-1);
    // WR 3 (the JavaScript path) caches the re-mapped translation, and the wasm path resumes.
    ibvPostSend(a.qp, [
      write(3, smr.lkey, src.addr, dmr.rkey, IOVA, 320, sig),
      write(4, smr.lkey, src.addr + 256, dmr.rkey, IOVA + 256, 64, sig),
    ]);
    expect((await pollN(a.cq, 2)).map((w) => w.status)).toEqual([0, 0]);
    expect(fastWqes(h)).toBeGreaterThan(fast);
    expect(firstDiff(B.read(0, 320), src.bytes.subarray(0, 320))).toBe(-1);
  });

  it('mlx5 - a zap alone (no move, no IOMMU unmap) stops the wasm path: the next WRITE to the zapped mkey faults and is re-mapped first', async () => {
    const IOVA = 0x900_0000;
    const { h, a, src, smr, B, dmr } = await odpTarget(4096, IOVA, 4);
    const sig = IbvSendFlags.IBV_SEND_SIGNALED;
    ibvPostSend(a.qp, [
      write(0, smr.lkey, src.addr, dmr.rkey, IOVA, 256, sig),
      write(1, smr.lkey, src.addr, dmr.rkey, IOVA, 256, sig),
    ]);
    expect((await pollN(a.cq, 2)).map((w) => w.status)).toEqual([0, 0]);
    const fast = fastWqes(h);
    expect(fast).toBe(1);
    const faults = Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_PAGE_FAULTS);
    // what invalidate_mappings does first: XLT_GEN and DevCtx INVAL stay as they were, so only
    // the XLT word tells the device that its cached translation must not be used.
    mlx5MkeyZap(h.nics[0], h.nics[0].mrs.get(mlx5KeyIndex(dmr.rkey))!, 'zap');
    ibvPostSend(a.qp, write(2, smr.lkey, src.addr, dmr.rkey, IOVA, 256, sig));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    expect(Atomics.load(h.nics[0].hca, Mlx5Ctl.STAT_PAGE_FAULTS)).toBe(faults + 1);
    expect(fastWqes(h)).toBe(fast);
    expect(firstDiff(B.read(0, 256), src.bytes.subarray(0, 256))).toBe(-1);
  });

  it('mlx5 - what the wasm path checks per WQE: the lkey bounds, DevCtx INVAL and XLT_GEN each send the WQE to the JavaScript path', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const page = mmapAnonymous(h.proc, 4096);
    page.bytes.set(pattern(4096, 3));
    const dst = mmapAnonymous(h.proc, 4096);
    // the source MR is the page's first half: the cached run (the page) reaches past it.
    const smr = ibvRegMr(a.pd, page.addr, 2048, ALL_ACCESS);
    const dmr = ibvRegMr(b.pd, dst.addr, 4096, ALL_ACCESS);
    const sig = IbvSendFlags.IBV_SEND_SIGNALED;
    const w = (id: number, off: number) =>
      write(id, smr.lkey, page.addr + off, dmr.rkey, dst.addr + off, 64, sig);
    const once = async (id: number, off: number) => {
      ibvPostSend(a.qp, w(id, off));
      return (await pollN(a.cq, 1))[0].status;
    };
    expect(await once(0, 0)).toBe(S.IBV_WC_SUCCESS);
    expect(await once(1, 64)).toBe(S.IBV_WC_SUCCESS);
    let fast = fastWqes(h);
    expect(fast).toBe(1);
    // 1. outside the lkey's MR, inside the cached run: the local check fails it (rule 16).
    expect(await once(2, 3000)).toBe(S.IBV_WC_LOC_PROT_ERR);
    expect(fastWqes(h)).toBe(fast);
    // a's QP is in the error state now: a new pair on the same PD (the MRs stay).
    const c = await qpEnd(h.ctxs[0], 64, a.pd);
    const d = await qpEnd(h.ctxs[0], 64, a.pd);
    await connect(c, d);
    await connect(d, c);
    const w2 = (id: number, off: number) =>
      write(id, smr.lkey, page.addr + off, dmr.rkey, dst.addr + off, 64, sig);
    const again = async (id: number, off: number) => {
      ibvPostSend(c.qp, w2(id, off));
      return (await pollN(c.cq, 1))[0].status;
    };
    expect(await again(3, 128)).toBe(S.IBV_WC_SUCCESS);
    fast = fastWqes(h);
    // 2. a phys map change invalidates every device's IOTLB (DevCtx INVAL): the next WRITE re-walks.
    h.kernel.addDeviceMemory('late-bar', 65536);
    expect(await again(4, 192)).toBe(S.IBV_WC_SUCCESS);
    expect(fastWqes(h)).toBe(fast);
    expect(await again(5, 256)).toBe(S.IBV_WC_SUCCESS);
    expect(fastWqes(h)).toBe(fast + 1);
    // 3. the kernel re-programs the destination's MTT (zap, new generation, present again; the
    // same pages, INVAL untouched): the cached translation is stale by its generation alone.
    const hca = h.nics[0].hca;
    const mb = hcaMkeyBase(mlx5KeyIndex(dmr.rkey));
    Atomics.store(hca, mb + Mlx5Mkey.XLT, Mlx5Xlt.ZAPPED);
    hca[mb + Mlx5Mkey.XLT_GEN] = (hca[mb + Mlx5Mkey.XLT_GEN] + 1) | 0;
    Atomics.store(hca, mb + Mlx5Mkey.XLT, Mlx5Xlt.PRESENT);
    expect(await again(6, 320)).toBe(S.IBV_WC_SUCCESS);
    expect(fastWqes(h)).toBe(fast + 1);
    expect(firstDiff(dst.bytes.subarray(128, 384), page.bytes.subarray(128, 384))).toBe(-1);
  });

  it('mlx5 - overlapping source and destination in one MR copy as memmove on the wasm path', async () => {
    const h = await rdmaHost();
    const [a] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const buf = mmapAnonymous(h.proc, 4096);
    buf.bytes.set(pattern(4096, 1));
    const model = buf.bytes.slice();
    const mr = ibvRegMr(a.pd, buf.addr, 4096, ALL_ACCESS);
    const sig = IbvSendFlags.IBV_SEND_SIGNALED;
    for (const [id, from, to] of [
      [0, 0, 8],
      [1, 0, 8],
      [2, 40, 16],
    ]) {
      ibvPostSend(a.qp, write(id, mr.lkey, buf.addr + from, mr.rkey, buf.addr + to, 64, sig));
      expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
      model.copyWithin(to, from, from + 64);
    }
    expect(fastWqes(h)).toBe(2);
    expect(firstDiff(buf.bytes, model)).toBe(-1);
  });

  it('mlx5 - a WQE written straight into the SQ with a remote address near 2^64 is NAKed, not wrapped into other memory', async () => {
    const h = await rdmaHost();
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[0]);
    const src = mmapAnonymous(h.proc, 4096);
    const dst = mmapAnonymous(h.proc, 4096);
    const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
    const dmr = ibvRegMr(b.pd, dst.addr, 4096, ALL_ACCESS);
    const sig = IbvSendFlags.IBV_SEND_SIGNALED;
    ibvPostSend(a.qp, write(0, smr.lkey, src.addr, dmr.rkey, dst.addr, 64, sig));
    expect((await pollN(a.cq, 1))[0].status).toBe(S.IBV_WC_SUCCESS);
    src.bytes.fill(0xee);
    // a user-level driver may write its SQ as it likes (verbs would refuse this address):
    // RADDR = 2^64 - 8 for 16 bytes, the source inside the cached run.
    const sq = a.qp.sq;
    const s = sq.claim();
    const words = sq.words;
    for (let i = 0; i < 15; i++) words[s + i] = 0;
    words[s + SendWqe.OPCODE] = IbvWrOpcode.IBV_WR_RDMA_WRITE;
    words[s + SendWqe.FLAGS] = sig;
    words[s + SendWqe.WRID_LO] = 2;
    words[s + SendWqe.RADDR_LO] = 0xfffffff8 | 0;
    words[s + SendWqe.RADDR_HI] = -1;
    words[s + SendWqe.RKEY] = dmr.rkey;
    words[s + SendWqe.NSGE] = 1;
    words[s + SendWqe.SGE_ADDR_LO] = src.addr % 2 ** 32;
    words[s + SendWqe.SGE_ADDR_HI] = Math.floor(src.addr / 2 ** 32);
    words[s + SendWqe.SGE_LEN] = 16;
    words[s + SendWqe.SGE_LKEY] = smr.lkey;
    sq.commit();
    sq.flush();
    doorbellRing(a.ctx.hca, Mlx5Ctl.UAR_DB);
    const [wc] = await pollN(a.cq, 1);
    expect(wc).toMatchObject({ wr_id: 2, status: S.IBV_WC_REM_ACCESS_ERR });
    expect(Atomics.load(a.ctx.hca, Mlx5Ctl.FATAL)).toBe(0);
    expect(dst.bytes.subarray(0, 64).every((x) => x !== 0xee)).toBe(true);
  });

  it('mlx5 - a destroyed QP and CQ give their rings back to the arena (the next ones reuse them); post and poll on them are EINVAL', async () => {
    const h = await rdmaHost();
    const a = await qpEnd(h.ctxs[0]);
    const at = [a.qp.qp.sq, a.qp.qp.rq, a.cq.cq.ring].map((m) => (m as Int32Array).byteOffset);
    expect(at.every((o) => o > 0)).toBe(true); // windows of the arena, not SABs of their own
    await ibvDestroyQp(a.qp);
    await ibvDestroyCq(a.cq);
    expectErr(() => ibvPostSend(a.qp, rdmaWr('write', 1, 0, 0, 0, 0, 0)), 'EINVAL', /destroyed/);
    expectErr(() => ibvPollCq(a.cq, 1, []), 'EINVAL', /destroyed/);
    const b = await qpEnd(h.ctxs[0], 64, a.pd);
    const again = [b.qp.qp.sq, b.qp.qp.rq, b.cq.cq.ring].map((m) => (m as Int32Array).byteOffset);
    expect(new Set(again)).toEqual(new Set(at));
    // and they work: a connected pair on the reused rings moves data on the wasm path.
    const c = await qpEnd(h.ctxs[0], 64, a.pd);
    await connect(b, c);
    await connect(c, b);
    const src = mmapAnonymous(h.proc, 4096);
    src.bytes.set(pattern(4096, 8));
    const dst = mmapAnonymous(h.proc, 4096);
    const smr = ibvRegMr(a.pd, src.addr, 4096, ALL_ACCESS);
    const dmr = ibvRegMr(a.pd, dst.addr, 4096, ALL_ACCESS);
    const sig = IbvSendFlags.IBV_SEND_SIGNALED;
    ibvPostSend(
      b.qp,
      [0, 1].map((i) => write(i, smr.lkey, src.addr, dmr.rkey, dst.addr, 4096, sig)),
    );
    expect((await pollN(b.cq, 2)).map((w) => w.status)).toEqual([0, 0]);
    expect(fastWqes(h)).toBe(1);
    expect(firstDiff(dst.bytes, src.bytes)).toBe(-1);
  });

  it('mlx5 - the committed wasm binary is mlx5-fast-wat.ts compiled (run mlx5-fast-build.ts after changing it)', async () => {
    const built = await mlx5FastCompile();
    expect(Buffer.from(built).toString('base64')).toBe(MLX5_FAST_WASM_BASE64);
  });
});

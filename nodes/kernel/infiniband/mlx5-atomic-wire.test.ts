// RDMA atomics between QPs on two HCAs, over the wire (fabric/wire.ts ATOMIC_REQ / ATOMIC_RESP;
// IBA 9.4.5): IBV_WR_ATOMIC_CMP_AND_SWP and IBV_WR_ATOMIC_FETCH_AND_ADD modify the responder's
// u64 and return its original value, many in flight through the max_rd_atomic window run
// exactly once each, the responder and local checks complete with their statuses, ODP faults
// on either side are retried without a second run, and a duplicate request (its response lost)
// is answered from the responder's saved response instead of running again.
import { afterEach, describe, expect, it } from 'vitest';
import { IbvQpState } from '../../fabric/mlx5-ib-abi.ts';
import {
  shmWireCreatePair,
  WIRE_FIRST,
  WIRE_LAST,
  WireAtomicReq,
  WireAtomicResp,
  WireOp,
  WirePkt,
  wireLinkOpen,
} from '../../fabric/wire.ts';
import type { MkeyEngine } from '../../devices/mlx5/mlx5-mkey.ts';
import { Xfer } from '../../devices/mlx5/mlx5-mkey.ts';
import { ATOMIC_SAVED, type QpHw } from '../../devices/mlx5/mlx5-qp.ts';
import type { Link } from '../../devices/mlx5/mlx5-wire-requester.ts';
import { wireReceive } from '../../devices/mlx5/mlx5-wire-responder.ts';
import {
  IbvSendFlags,
  type IbvSendWr,
  IbvWcStatus as S,
  IbvWrOpcode,
  ibvPostSend,
  ibvRegMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import { ALL_ACCESS, pollN, rcPair, rdmaHost, rdmaTeardown } from './fixtures/rdma-host.ts';
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

const SIG = IbvSendFlags.IBV_SEND_SIGNALED;
const { IBV_WR_ATOMIC_FETCH_AND_ADD: FAA } = IbvWrOpcode;

/** Requester QP a on mlx5_0, responder QP b on mlx5_1, a result buffer and a target. */
const twoHcas = (resBytes = 4096) => atomicRig(2, resBytes);

describe('mlx5 RDMA atomics over the wire (two HCAs)', () => {
  it('mlx5 - two HCAs: FETCH_AND_ADD and CMP_AND_SWP modify the remote u64 and return its original value (carry into the high word, compare unequal writes nothing)', async () => {
    await atomicRoundTrip(await twoHcas());
  });

  it('mlx5 - two HCAs: 64 FETCH_AND_ADDs in flight from one QP, behind a WRITE and around a READ, each run exactly once (max_rd_atomic window)', async () => {
    const { a, res, tgt, rmr, tmr } = await twoHcas(8 * 64 + 4096);
    const R = { addr: tgt.addr, rkey: tmr.rkey };
    setU64(res, 8 * 64, 0x1000n);
    const wrs: IbvSendWr[] = [
      // a WRITE of 1000 into the target first: every atomic after it sees it.
      {
        wr_id: 1000,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
        send_flags: SIG,
        sg_list: [{ addr: res.addr + 8 * 64, length: 8, lkey: rmr.lkey }],
        wr: { rdma: { remote_addr: tgt.addr, rkey: tmr.rkey } },
      },
    ];
    for (let i = 0; i < 64; i++) {
      wrs.push(atomic(i, FAA, { addr: res.addr + 8 * i, lkey: rmr.lkey }, R, 3));
      if (i === 31) {
        // a READ shares the max_rd_atomic window with the atomics.
        wrs.push({
          wr_id: 2000,
          opcode: IbvWrOpcode.IBV_WR_RDMA_READ,
          send_flags: SIG,
          sg_list: [{ addr: res.addr + 8 * 64 + 8, length: 8, lkey: rmr.lkey }],
          wr: { rdma: { remote_addr: tgt.addr, rkey: tmr.rkey } },
        });
      }
    }
    ibvPostSend(a.qp, wrs);
    const done = await pollN(a.cq, wrs.length);
    expect(done.map((w) => w.wr_id)).toEqual(wrs.map((w) => w.wr_id)); // in order
    expect(done.every((w) => w.status === S.IBV_WC_SUCCESS)).toBe(true);
    expect(u64(tgt, 0)).toBe(0x1000n + 64n * 3n);
    // atomic i ran i-th: original 0x1000 + 3i; the READ saw the 32 atomics before it.
    for (let i = 0; i < 64; i++) expect(u64(res, 8 * i), `atomic ${i}`).toBe(0x1000n + 3n * BigInt(i));
    expect(u64(res, 8 * 64 + 8)).toBe(0x1000n + 32n * 3n);
  });

  it('mlx5 - two HCAs: atomic checks over the wire: misaligned REM_INV_REQ_ERR, rkey without REMOTE_ATOMIC REM_ACCESS_ERR, sge length 4 LOC_LEN_ERR; nothing is written', async () => {
    const cases: [string, number][] = [
      ['misaligned', S.IBV_WC_REM_INV_REQ_ERR],
      ['rkey without REMOTE_ATOMIC', S.IBV_WC_REM_ACCESS_ERR],
      ['qp without REMOTE_ATOMIC', S.IBV_WC_REM_ACCESS_ERR],
      ['sge length 4', S.IBV_WC_LOC_LEN_ERR],
    ];
    const h = await rdmaHost({ nics: 2 });
    for (const [what, status] of cases) {
      const [a, b] = await rcPair(h.ctxs[0], h.ctxs[1], {
        access: what === 'qp without REMOTE_ATOMIC' ? ALL_ACCESS : ATOMIC_ACCESS,
      });
      const res = mmapAnonymous(h.proc, 4096);
      const tgt = mmapAnonymous(h.proc, 4096);
      setU64(tgt, 0, 7n);
      const rmr = ibvRegMr(a.pd, res.addr, 4096, ATOMIC_ACCESS);
      const tmr = ibvRegMr(b.pd, tgt.addr, 4096, what.startsWith('rkey') ? ALL_ACCESS : ATOMIC_ACCESS);
      const raddr = tgt.addr + (what === 'misaligned' ? 4 : 0);
      const local = { addr: res.addr, lkey: rmr.lkey, length: what === 'sge length 4' ? 4 : 8 };
      ibvPostSend(a.qp, atomic(1, FAA, local, { addr: raddr, rkey: tmr.rkey }, 1));
      expect((await pollN(a.cq, 1))[0], what).toMatchObject({ wr_id: 1, status });
      expect(u64(tgt, 0), what).toBe(7n);
      expect(u64(res, 0), what).toBe(0n);
    }
  });

  it('mlx5 - two HCAs: an atomic on a moved ODP target is RNR NAKed and runs once after the re-map; a faulting ODP result buffer holds the response and gets the value without a second run', async () => {
    const h = await rdmaHost({ nics: 2 });
    const [a, b] = await rcPair(h.ctxs[0], h.ctxs[1], { rnrRetry: 7, access: ATOMIC_ACCESS });
    await atomicOdpMoves(h, a, b, 1, 0, true);
  });
});

/**
 * The wire responder driven directly (no worker): a shared-memory link, a responder QP and an
 * mkey engine reduced to what an atomic touches (one 8-byte target behind rkey 0x77). The only
 * way to lose a response on the shm wire is to never read it, which is what this does.
 */
function responderRig() {
  const wake = () => ({ sab: new SharedArrayBuffer(8), index: 0 });
  const [dReq, dResp] = shmWireCreatePair(wake(), wake());
  const reqEnd = wireLinkOpen(dReq);
  const l = { kind: 'wire', link: wireLinkOpen(dResp) } as unknown as Link;
  const mem = new BigUint64Array(1);
  const memBytes = new Uint8Array(mem.buffer);
  const RKEY = 0x77;
  const RADDR = 0x1000;
  let runs = 0;
  const eng = {
    hca: new Int32Array(128),
    check: (key: number, _pd: number, iova: number, len: number) =>
      key === RKEY && iova === RADDR && len === 8,
    mrToBytes(key: number, iova: number, dst: Uint8Array, off: number, len: number) {
      runs++;
      if (key !== RKEY || iova !== RADDR) return Xfer.DST_ERR;
      dst.set(memBytes.subarray(0, len), off);
      return Xfer.OK;
    },
    bytesToMr(src: Uint8Array, off: number, key: number, iova: number, len: number) {
      if (key !== RKEY || iova !== RADDR) return Xfer.DST_ERR;
      memBytes.set(src.subarray(off, off + len), 0);
      return Xfer.OK;
    },
  } as unknown as MkeyEngine;
  const qp = {
    qpn: 9,
    pd: 1,
    state: IbvQpState.IBV_QPS_RTS,
    epsn: 100,
    readPsn: -1,
    ackPending: -1,
    attrs: { accessFlags: ATOMIC_ACCESS },
    atomicRespPsn: new Float64Array(ATOMIC_SAVED).fill(-1),
    atomicRespVal: new Uint32Array(2 * ATOMIC_SAVED),
    atomicRespNext: 0,
    atomicRespHeld: -1,
  } as unknown as QpHw;
  /** Send a FETCH_AND_ADD of `add` at `psn` to the responder and let it run. */
  function fetchAdd(psn: number, add: number): void {
    const s = reqEnd.txClaim(0);
    const w = reqEnd.txWords;
    w[s + WirePkt.OP] = WireOp.ATOMIC_REQ;
    w[s + WirePkt.PSN] = psn;
    w[s + WirePkt.FLAGS] = WIRE_FIRST | WIRE_LAST;
    w[s + WirePkt.RADDR_LO] = RADDR;
    w[s + WirePkt.RADDR_HI] = 0;
    w[s + WirePkt.RKEY] = RKEY;
    w[s + WirePkt.MSG_LEN] = 8;
    w[s + WireAtomicReq.ATOMIC_OP] = FAA;
    w[s + WireAtomicReq.COMPARE_ADD_LO] = add;
    w[s + WireAtomicReq.COMPARE_ADD_HI] = 0;
    reqEnd.txCommit();
    wireReceive(eng, qp, l, 0);
  }
  /** The responses the requester end received since the last call: [op, psn, orig]. */
  function responses(): [number, number, bigint][] {
    const out: [number, number, bigint][] = [];
    for (let s = reqEnd.rxPeek(); s >= 0; s = reqEnd.rxPeek()) {
      const w = reqEnd.rxWords;
      const orig =
        (BigInt(w[s + WireAtomicResp.ORIG_HI] >>> 0) << 32n) | BigInt(w[s + WireAtomicResp.ORIG_LO] >>> 0);
      out.push([w[s + WirePkt.OP], w[s + WirePkt.PSN], orig]);
      reqEnd.rxRelease();
    }
    return out;
  }
  /** Fill the responder's transmit ring with ACKs until it has no room; returns how many. */
  function fillLink(): number {
    let n = 0;
    for (let s = l.link.txClaim(0); s >= 0; s = l.link.txClaim(0), n++) {
      l.link.txWords[s + WirePkt.OP] = WireOp.ACK;
      l.link.txWords[s + WirePkt.PSN] = -1;
      l.link.txCommit();
    }
    return n;
  }
  return { qp, mem, fetchAdd, responses, fillLink, poll: () => wireReceive(eng, qp, l, 0), runs: () => runs };
}

describe('mlx5 wire responder: duplicate atomic requests', () => {
  it('mlx5 - a duplicate ATOMIC_REQ (its response lost) is answered from the saved response and not run again; one whose save was overwritten is dropped', () => {
    const r = responderRig();
    r.mem[0] = 40n;
    r.fetchAdd(100, 2);
    expect(r.responses()).toEqual([[WireOp.ATOMIC_RESP, 100, 40n]]);
    expect(r.mem[0]).toBe(42n);
    expect(r.qp.epsn).toBe(101);
    expect(r.runs()).toBe(1);
    // the requester timed out (response lost) and asks again: same answer, no second add.
    r.fetchAdd(100, 2);
    expect(r.responses()).toEqual([[WireOp.ATOMIC_RESP, 100, 40n]]);
    expect(r.mem[0]).toBe(42n);
    expect(r.qp.epsn).toBe(101);
    expect(r.runs()).toBe(1);
    // ATOMIC_SAVED more atomics later the save of PSN 100 is gone: its duplicate gets no answer
    // (and still does not run).
    for (let i = 0; i < ATOMIC_SAVED; i++) r.fetchAdd(101 + i, 1);
    expect(r.responses().map(([op, psn]) => [op, psn])).toEqual(
      Array.from({ length: ATOMIC_SAVED }, (_, i) => [WireOp.ATOMIC_RESP, 101 + i]),
    );
    expect(r.mem[0]).toBe(42n + BigInt(ATOMIC_SAVED));
    r.fetchAdd(100, 2);
    expect(r.responses()).toEqual([]);
    expect(r.mem[0]).toBe(42n + BigInt(ATOMIC_SAVED));
    // an atomic ahead of epsn (a gap) is dropped until the requester goes back.
    r.fetchAdd(200, 2);
    expect(r.responses()).toEqual([]);
    expect(r.qp.epsn).toBe(101 + ATOMIC_SAVED);
  });

  it('mlx5 - an atomic response the link has no room for is held, not dropped: it goes out first once there is room, before any later request is answered', () => {
    const r = responderRig();
    r.mem[0] = 5n;
    expect(r.fillLink()).toBeGreaterThan(0);
    r.fetchAdd(100, 1); // runs; its response has no room
    r.fetchAdd(101, 1); // must wait behind it (not run, not answered)
    expect(r.mem[0]).toBe(6n);
    expect(r.runs()).toBe(1);
    const acks = r.responses(); // the filler; the link has room again
    expect(acks.every(([op]) => op === WireOp.ACK)).toBe(true);
    r.poll();
    expect(r.responses()).toEqual([
      [WireOp.ATOMIC_RESP, 100, 5n],
      [WireOp.ATOMIC_RESP, 101, 6n],
    ]);
    expect(r.mem[0]).toBe(7n);
    expect(r.runs()).toBe(2);
  });
});

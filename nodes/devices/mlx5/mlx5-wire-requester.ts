/**
 * RC over a wire (fabric/wire.ts), requester half: a QP whose peer sits on another NIC sends
 * its messages as segments of at most link.maxPayload bytes, one PSN each (RDMA READ: one
 * request, one response PSN per segment; an atomic: one request, one ATOMIC_RESP with the
 * original value), keeps every WQE in the SQ until its last segment is acknowledged (or its
 * READ data or atomic result is placed; READs and atomics in flight together are limited to
 * max_rd_atomic), completes in order, goes back to a NAKed PSN after
 * an RNR NAK (rnr_retry times, 7 = forever: else IBV_WC_RNR_RETRY_EXC_ERR), and on its local ACK
 * timeout goes back to the oldest unacknowledged PSN, retry_cnt times at most
 * (IBV_WC_RETRY_EXC_ERR): that is also how a dead peer NIC shows up. The responder half and the
 * receive loop are in mlx5-wire-responder.ts.
 *
 * Runs in the device worker.
 */
import {
  IB_RNR_RETRY_INFINITE,
  IbvQpState,
  IbvSendFlags,
  IbvWcStatus,
  IbvWrOpcode,
  ibAckTimeoutMs,
  ibRnrTimerMs,
  ibvWrIsAtomic,
} from '../../fabric/mlx5-ib-abi.ts';
import { Mlx5Ctl } from '../../fabric/mlx5-layout.ts';
import { ATOMIC_BYTES, SendWqe } from '../../fabric/mlx5-wqe.ts';
import { ringGetU64, ringPutU64 } from '../../fabric/ring-layout.ts';
import {
  WIRE_FIRST,
  WIRE_LAST,
  WIRE_SOLICITED,
  WireAtomicReq,
  WireAtomicResp,
  WireNak,
  WireOp,
  WirePkt,
} from '../../fabric/wire.ts';
import { atomicResultBytes } from './mlx5-atomic.ts';
import { type MkeyEngine, Xfer } from './mlx5-mkey.ts';
import type { QpHw } from './mlx5-qp.ts';
import { decodeSend, failTail } from './mlx5-requester.ts';
import { type LocalReq, newLocalReq } from './mlx5-responder.ts';

export type Link = NonNullable<QpHw['peer']> & { kind: 'wire' };
const STALL_RECHECK_MS = 2;
const req: LocalReq = newLocalReq();
const origWords = new Uint32Array(2);

const wireOpOf = [WireOp.WRITE, WireOp.WRITE_IMM, WireOp.SEND, WireOp.SEND_IMM];
const nakStatus: number[] = [];
nakStatus[WireNak.REM_ACCESS] = IbvWcStatus.IBV_WC_REM_ACCESS_ERR;
nakStatus[WireNak.REM_INV_REQ] = IbvWcStatus.IBV_WC_REM_INV_REQ_ERR;
nakStatus[WireNak.REM_OP] = IbvWcStatus.IBV_WC_REM_OP_ERR;

/** Send as many segments of the SQ as the link takes. Returns WQEs completed (local errors). */
export function wireRequester(eng: MkeyEngine, qp: QpHw, l: Link, now: number): number {
  if (now < qp.retryAt && !(qp.stalled && eng.faultSettled(qp.stallIdx))) return 0;
  qp.stalled = false;
  const link = l.link;
  const seg = link.maxPayload;
  const w = link.txWords;
  let n = 0;
  while (qp.pendingErr < 0) {
    const base = qp.sqAt(qp.sqNext);
    if (base < 0) break;
    const st = decodeSend(eng, qp, base, req);
    if (st !== IbvWcStatus.IBV_WC_SUCCESS) {
      qp.pendingErr = qp.sqNext;
      qp.pendingStatus = st;
      break;
    }
    const slot = qp.sqNext & qp.sqMask;
    if (qp.sqNext === qp.sqTail && qp.segOff === 0) qp.lastProgress = now; // the ACK timer starts
    // a fenced WR of any kind waits until every earlier READ and atomic has its response.
    if ((qp.sq[base + SendWqe.FLAGS] & IbvSendFlags.IBV_SEND_FENCE) !== 0 && qp.outReads > 0) break;
    const atomic = ibvWrIsAtomic(req.op);
    if (atomic || req.op === IbvWrOpcode.IBV_WR_RDMA_READ) {
      // READs and atomics share max_rd_atomic: both wait for a response (IBA 9.4.4, 9.4.5).
      if (qp.outReads >= Math.max(1, qp.attrs.maxRdAtomic)) break;
      const s = link.txClaim(0);
      if (s < 0) break;
      if (atomic) atomicHeader(w, s, qp.npsn, req);
      else header(w, s, WireOp.READ_REQ, qp.npsn, WIRE_FIRST | WIRE_LAST, req, 0);
      link.txCommit();
      const span = atomic ? 1 : Math.max(1, Math.ceil(req.len / seg));
      qp.wqeFirstPsn[slot] = qp.npsn;
      qp.wqeLastPsn[slot] = qp.npsn + span - 1;
      qp.wqeReadGot[slot] = 0;
      qp.npsn += span;
      qp.outReads++;
      qp.sqNext = (qp.sqNext + 1) | 0;
      continue;
    }
    const off = qp.segOff;
    const m = Math.min(seg, req.len - off);
    const s = link.txClaim(m);
    if (s < 0) break;
    if (m > 0) {
      if (req.inline !== null) link.txData.set(req.inline.subarray(off, off + m), link.txDataOff);
      else {
        const x = eng.mrToBytes(req.lkey, req.laddr + off, link.txData, link.txDataOff, m, qp.qpn, true);
        if (x === Xfer.SRC_FAULT) {
          qp.stalled = true;
          qp.stallIdx = eng.faultIdx;
          qp.retryAt = now + STALL_RECHECK_MS;
          break;
        }
        if (x !== Xfer.OK) {
          qp.pendingErr = qp.sqNext;
          qp.pendingStatus = IbvWcStatus.IBV_WC_LOC_PROT_ERR;
          break;
        }
      }
    }
    const last = off + m >= req.len;
    const se = last && req.solicited ? WIRE_SOLICITED : 0;
    header(
      w,
      s,
      wireOpOf[req.op],
      qp.npsn,
      (off === 0 ? WIRE_FIRST : 0) | (last ? WIRE_LAST : 0) | se,
      req,
      off,
    );
    link.txCommit();
    if (off === 0) qp.wqeFirstPsn[slot] = qp.npsn;
    qp.npsn++;
    if (last) {
      qp.wqeLastPsn[slot] = qp.npsn - 1;
      qp.sqNext = (qp.sqNext + 1) | 0;
      qp.segOff = 0;
    } else qp.segOff = off + m;
  }
  n += retire(qp);
  return n;
}

function header(
  w: Int32Array,
  s: number,
  op: number,
  psn: number,
  flags: number,
  r: LocalReq,
  off: number,
): void {
  w[s + WirePkt.OP] = op;
  w[s + WirePkt.PSN] = psn;
  w[s + WirePkt.FLAGS] = flags;
  ringPutU64(w, s + WirePkt.RADDR_LO, r.raddr);
  w[s + WirePkt.RKEY] = r.rkey;
  w[s + WirePkt.IMM] = r.imm;
  w[s + WirePkt.MSG_LEN] = r.len;
  w[s + WirePkt.MSG_OFF] = off;
  w[s + WirePkt.SYNDROME] = 0;
}

/** An ATOMIC_REQ for the decoded atomic `r` (fabric/wire.ts WireAtomicReq). */
function atomicHeader(w: Int32Array, s: number, psn: number, r: LocalReq): void {
  header(w, s, WireOp.ATOMIC_REQ, psn, WIRE_FIRST | WIRE_LAST, r, 0);
  w[s + WireAtomicReq.ATOMIC_OP] = r.op;
  w[s + WireAtomicReq.COMPARE_ADD_LO] = r.cmpLo;
  w[s + WireAtomicReq.COMPARE_ADD_HI] = r.cmpHi;
  w[s + WireAtomicReq.SWAP_LO] = r.swpLo;
  w[s + WireAtomicReq.SWAP_HI] = r.swpHi;
}

/**
 * True for a WQE the responder answers with a response (RDMA READ, atomics): it is done when
 * wqeReadGot is -1, not when its PSN is acknowledged, and it counts against max_rd_atomic.
 */
function answered(op: number): boolean {
  return op === IbvWrOpcode.IBV_WR_RDMA_READ || ibvWrIsAtomic(op);
}

/** Complete, in order, every WQE whose segments are acknowledged (or response placed). */
function retire(qp: QpHw): number {
  let n = 0;
  while (qp.sqTail !== qp.sqNext || qp.pendingErr === qp.sqTail) {
    const base = qp.sqAt(qp.sqTail);
    if (base < 0) break;
    if (qp.pendingErr === qp.sqTail) {
      failTail(qp, base, qp.pendingStatus);
      qp.pendingErr = -1;
      n++;
      break;
    }
    const slot = qp.sqTail & qp.sqMask;
    const op = qp.sq[base + SendWqe.OPCODE];
    const resp = answered(op);
    if (resp ? qp.wqeReadGot[slot] >= 0 : qp.wqeLastPsn[slot] > qp.ackedPsn) break;
    if (resp) qp.outReads--;
    n++;
    // a CQE the CQ has no room for is a CQ overrun: the QP is in ERR now, nothing more retires.
    qp.completeSend(base, IbvWcStatus.IBV_WC_SUCCESS, resp ? byteLen(qp, base, op) : 0);
    if (qp.state === IbvQpState.IBV_QPS_ERR) break;
  }
  return n;
}

/** byte_len of a READ's or atomic's completion: the bytes placed in the local buffer. */
function byteLen(qp: QpHw, base: number, op: number): number {
  // an atomic's NSGE word carries an operand (AtomicWqe); its SGE is always ATOMIC_BYTES.
  return ibvWrIsAtomic(op) ? ATOMIC_BYTES : sgeLen(qp, base);
}

/** Bytes of the send WQE at `base` (its one SGE, or none). */
function sgeLen(qp: QpHw, base: number): number {
  return qp.sq[base + SendWqe.NSGE] === 1 ? qp.sq[base + SendWqe.SGE_LEN] >>> 0 : 0;
}

/** SQ position (in [sqTail, sqNext]) of the WQE that sent `psn`, or -1. */
function posOfPsn(qp: QpHw, psn: number): number {
  for (let p = qp.sqTail; ; p = (p + 1) | 0) {
    const slot = p & qp.sqMask;
    if (p === qp.sqNext) return qp.segOff > 0 && psn >= qp.wqeFirstPsn[slot] ? p : -1;
    if (psn <= qp.wqeLastPsn[slot]) return p;
  }
}

/** Go back to `psn`: everything from there is sent again (go-back-N). */
function rewind(qp: QpHw, l: Link, psn: number): void {
  const p = posOfPsn(qp, psn);
  if (p < 0) return;
  const slot = p & qp.sqMask;
  // a READ or atomic is asked again as a whole (an atomic the responder already ran is
  // answered from its saved response, not run again).
  const resp = answered(qp.sq[qp.sqAt(p) + SendWqe.OPCODE]);
  const first = qp.wqeFirstPsn[slot];
  qp.sqNext = p;
  if (resp) qp.wqeReadGot[slot] = 0;
  qp.segOff = resp ? 0 : (Math.max(psn, first) - first) * l.link.maxPayload;
  qp.npsn = resp ? first : Math.max(psn, first);
  let reads = 0;
  for (let q = qp.sqTail; q !== p; q = (q + 1) | 0) {
    if (answered(qp.sq[qp.sqAt(q) + SendWqe.OPCODE]) && qp.wqeReadGot[q & qp.sqMask] >= 0) reads++;
  }
  qp.outReads = reads;
}

/**
 * The requester's ACK timer: with segments outstanding and no progress for the local ACK
 * timeout, go back to the oldest unacknowledged PSN; after retry_cnt tries,
 * IBV_WC_RETRY_EXC_ERR. Returns the next time the timer needs a look (ms, performance.now()).
 */
export function wireTimers(eng: MkeyEngine, qp: QpHw, l: Link, now: number): number {
  if (qp.state !== IbvQpState.IBV_QPS_RTS || (qp.sqNext === qp.sqTail && qp.segOff === 0))
    return Number.POSITIVE_INFINITY;
  if (now < qp.retryAt) return qp.retryAt;
  const due = qp.lastProgress + Math.min(ibAckTimeoutMs(qp.attrs.timeout), 60_000);
  if (now < due) return due;
  if (qp.retryCount >= qp.attrs.retryCnt) {
    const base = qp.sqAt(qp.sqTail);
    if (base >= 0) failTail(qp, base, IbvWcStatus.IBV_WC_RETRY_EXC_ERR);
    return Number.POSITIVE_INFINITY;
  }
  qp.retryCount++;
  qp.lastProgress = now;
  rewind(qp, l, qp.ackedPsn + 1);
  Atomics.add(eng.hca, Mlx5Ctl.STAT_RETRIES, 1);
  return now;
}

export function response(eng: MkeyEngine, qp: QpHw, l: Link, s: number, now: number): boolean {
  if (qp.state !== IbvQpState.IBV_QPS_RTS) return true;
  const w = l.link.rxWords;
  const op = w[s + WirePkt.OP];
  const psn = w[s + WirePkt.PSN];
  if (op === WireOp.ACK) {
    if (psn > qp.ackedPsn) progress(qp, psn, now);
  } else if (op === WireOp.NAK) {
    if (psn - 1 > qp.ackedPsn) progress(qp, psn - 1, now);
    retire(qp);
    const p = posOfPsn(qp, psn);
    if (p < 0) return true;
    const syn = w[s + WirePkt.SYNDROME];
    if (syn === WireNak.RNR) {
      const limit = qp.attrs.rnrRetry;
      if (limit !== IB_RNR_RETRY_INFINITE && qp.rnrCount >= limit) {
        qp.pendingErr = p;
        qp.pendingStatus = IbvWcStatus.IBV_WC_RNR_RETRY_EXC_ERR;
      } else {
        qp.rnrCount++;
        rewind(qp, l, psn);
        qp.retryAt = now + ibRnrTimerMs(w[s + WirePkt.IMM]);
        qp.lastProgress = qp.retryAt;
      }
    } else {
      qp.pendingErr = p;
      qp.pendingStatus = nakStatus[syn] ?? IbvWcStatus.IBV_WC_REM_OP_ERR;
      qp.sqNext = p; // nothing after the failed WQE is sent; it is all flushed
      qp.segOff = 0;
    }
  } else if (op === WireOp.ATOMIC_RESP) {
    if (!atomicResponse(eng, qp, l, s, psn, now)) return false;
  } else if (!readResponse(eng, qp, l, s, psn, now)) return false;
  retire(qp);
  return true;
}

function progress(qp: QpHw, psn: number, now: number): void {
  qp.ackedPsn = psn;
  qp.lastProgress = now;
  qp.retryCount = 0;
  qp.rnrCount = 0;
}

/**
 * Place `len` response bytes (`buf` at `off`) into the local buffer of the WQE at SQ position `p`
 * (slot word `base`), `at` bytes in. 1: placed; -1: our MR refused them (the WQE completes
 * LOC_PROT_ERR); 0: our ODP MR is faulting: the requester stalls, hold the packet and retry.
 */
function placeLocal(
  eng: MkeyEngine,
  qp: QpHw,
  p: number,
  base: number,
  at: number,
  buf: Uint8Array,
  off: number,
  len: number,
): number {
  const laddr = ringGetU64(qp.sq, base + SendWqe.SGE_ADDR_LO);
  const x = eng.bytesToMr(buf, off, qp.sq[base + SendWqe.SGE_LKEY], laddr + at, len, qp.qpn, true);
  if (x === Xfer.OK) return 1;
  if (x === Xfer.DST_FAULT) {
    qp.stalled = true;
    qp.stallIdx = eng.faultIdx;
    return 0;
  }
  qp.pendingErr = p;
  qp.pendingStatus = IbvWcStatus.IBV_WC_LOC_PROT_ERR;
  return -1;
}

function readResponse(eng: MkeyEngine, qp: QpHw, l: Link, s: number, psn: number, now: number): boolean {
  const p = posOfPsn(qp, psn);
  if (p < 0 || p === qp.sqNext) return true;
  const base = qp.sqAt(p);
  const slot = p & qp.sqMask;
  const w = l.link.rxWords;
  const got = qp.wqeReadGot[slot];
  const seg = l.link.maxPayload;
  if (qp.sq[base + SendWqe.OPCODE] !== IbvWrOpcode.IBV_WR_RDMA_READ || got < 0) return true;
  if (psn !== qp.wqeFirstPsn[slot] + Math.floor(got / seg)) return true; // duplicate or gap: drop
  const len = w[s + WirePkt.LEN];
  if (len > 0) {
    const placed = placeLocal(eng, qp, p, base, got, l.link.rxData, w[s + WirePkt.DATA_OFF], len);
    if (placed <= 0) return placed !== 0; // -1: consumed (the WQE fails), 0: held
  }
  const total = sgeLen(qp, base);
  qp.wqeReadGot[slot] = got + len >= total ? -1 : got + len;
  qp.lastProgress = now;
  qp.retryCount = 0;
  return true;
}

/**
 * An ATOMIC_RESP: the original value into the atomic's local buffer. A duplicate (the WQE is
 * done, or the PSN is not the one it asked with) is dropped. False: our MR is faulting, hold
 * the packet and retry (as readResponse).
 */
function atomicResponse(eng: MkeyEngine, qp: QpHw, l: Link, s: number, psn: number, now: number): boolean {
  const p = posOfPsn(qp, psn);
  if (p < 0 || p === qp.sqNext) return true;
  const base = qp.sqAt(p);
  const slot = p & qp.sqMask;
  if (!ibvWrIsAtomic(qp.sq[base + SendWqe.OPCODE]) || qp.wqeReadGot[slot] < 0) return true;
  if (psn !== qp.wqeFirstPsn[slot]) return true;
  const w = l.link.rxWords;
  origWords[0] = w[s + WireAtomicResp.ORIG_LO];
  origWords[1] = w[s + WireAtomicResp.ORIG_HI];
  const placed = placeLocal(eng, qp, p, base, 0, atomicResultBytes(origWords), 0, ATOMIC_BYTES);
  if (placed <= 0) return placed !== 0; // -1: consumed (the WQE fails), 0: held
  qp.wqeReadGot[slot] = -1;
  // the responder runs requests in PSN order: its response acknowledges every PSN up to this one.
  if (psn > qp.ackedPsn) progress(qp, psn, now);
  return true;
}

/**
 * RC over a wire (fabric/wire.ts): the requester and responder halves for a QP whose peer sits
 * on another NIC. Messages travel as segments of at most link.maxPayload bytes, one PSN each
 * (RDMA READ: one request, one response PSN per segment). The responder executes a segment
 * only when its PSN is the expected one (epsn), ACKs in batches, NAKs an error, and answers RNR
 * (no receive posted, or its ODP MR is faulting); later segments are dropped until the
 * requester goes back to the NAKed PSN (go-back-N). The requester keeps every WQE in the SQ
 * until its last segment is acknowledged (or its READ data is placed), completes in order, and
 * on its local ACK timeout goes back to the oldest unacknowledged PSN, retry_cnt times at most
 * (IBV_WC_RETRY_EXC_ERR): that is also how a dead peer NIC shows up.
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
} from '../../fabric/mlx5-ib-abi.ts';
import { Mlx5Ctl } from '../../fabric/mlx5-layout.ts';
import { RecvWqe, SendWqe } from '../../fabric/mlx5-wqe.ts';
import { ringGetU64, ringPutU64 } from '../../fabric/ring-layout.ts';
import { WIRE_FIRST, WIRE_LAST, WireNak, WireOp, WirePkt } from '../../fabric/wire.ts';
import { type MkeyEngine, Xfer } from './mlx5-mkey.ts';
import type { QpHw } from './mlx5-qp.ts';
import { decodeSend, failTail } from './mlx5-requester.ts';
import {
  type LocalReq,
  Resp,
  rdmaCheck,
  recvCheck,
  recvComplete,
  recvFail,
  respFatal,
  responderReady,
} from './mlx5-responder.ts';

type Link = NonNullable<QpHw['peer']> & { kind: 'wire' };
const STALL_RECHECK_MS = 2;
const req: LocalReq = { op: 0, raddr: 0, rkey: 0, imm: 0, len: 0, lkey: 0, laddr: 0, inline: null };

const wireOpOf = [WireOp.WRITE, WireOp.WRITE_IMM, WireOp.SEND, WireOp.SEND_IMM];
const nakOf: number[] = [];
nakOf[Resp.NAK_ACCESS] = WireNak.REM_ACCESS;
nakOf[Resp.NAK_INV_REQ] = WireNak.REM_INV_REQ;
nakOf[Resp.NAK_OP] = WireNak.REM_OP;
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
    if (req.op === IbvWrOpcode.IBV_WR_RDMA_READ) {
      if (qp.outReads >= Math.max(1, qp.attrs.maxRdAtomic)) break;
      const s = link.txClaim(0);
      if (s < 0) break;
      header(w, s, WireOp.READ_REQ, qp.npsn, WIRE_FIRST | WIRE_LAST, req, 0);
      link.txCommit();
      const span = Math.max(1, Math.ceil(req.len / seg));
      qp.wqeFirstPsn[slot] = qp.npsn;
      qp.wqeLastPsn[slot] = qp.npsn + span - 1;
      qp.wqeReadGot[slot] = 0;
      qp.npsn += span;
      qp.outReads++;
      qp.sqNext = (qp.sqNext + 1) | 0;
      continue;
    }
    if ((qp.sq[base + SendWqe.FLAGS] & IbvSendFlags.IBV_SEND_FENCE) !== 0 && qp.outReads > 0) break;
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
    header(w, s, wireOpOf[req.op], qp.npsn, (off === 0 ? WIRE_FIRST : 0) | (last ? WIRE_LAST : 0), req, off);
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

/** Complete, in order, every WQE whose segments are acknowledged (or READ data placed). */
function retire(qp: QpHw): number {
  let n = 0;
  while (qp.sqTail !== qp.sqNext || qp.pendingErr === qp.sqTail) {
    const base = qp.sqAt(qp.sqTail);
    if (base < 0) break;
    if (qp.pendingErr === qp.sqTail) {
      if (failTail(qp, base, qp.pendingStatus)) n++;
      qp.pendingErr = -1;
      break;
    }
    const slot = qp.sqTail & qp.sqMask;
    const read = qp.sq[base + SendWqe.OPCODE] === IbvWrOpcode.IBV_WR_RDMA_READ;
    if (read ? qp.wqeReadGot[slot] >= 0 : qp.wqeLastPsn[slot] > qp.ackedPsn) break;
    if (!qp.completeSend(base, IbvWcStatus.IBV_WC_SUCCESS, read ? sgeLen(qp, base) : 0)) break;
    if (read) qp.outReads--;
    n++;
  }
  return n;
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
  const read = qp.sq[qp.sqAt(p) + SendWqe.OPCODE] === IbvWrOpcode.IBV_WR_RDMA_READ;
  const first = qp.wqeFirstPsn[slot];
  qp.sqNext = p;
  if (read) qp.wqeReadGot[slot] = 0;
  qp.segOff = read ? 0 : (Math.max(psn, first) - first) * l.link.maxPayload;
  qp.npsn = read ? first : Math.max(psn, first);
  let reads = 0;
  for (let q = qp.sqTail; q !== p; q = (q + 1) | 0) {
    if (
      qp.sq[qp.sqAt(q) + SendWqe.OPCODE] === IbvWrOpcode.IBV_WR_RDMA_READ &&
      qp.wqeReadGot[q & qp.sqMask] >= 0
    )
      reads++;
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

/** Process received packets: requests (responder) and responses (requester). Returns packets. */
export function wireReceive(eng: MkeyEngine, qp: QpHw, l: Link, now: number): number {
  const link = l.link;
  const w = link.rxWords;
  let n = 0;
  for (;;) {
    if (qp.readPsn >= 0 && !serveRead(eng, qp, l)) break;
    const s = link.rxPeek();
    if (s < 0) break;
    const op = w[s + WirePkt.OP];
    if (op >= WireOp.READ_RESP) {
      if (!response(eng, qp, l, s, now)) break; // held: our MR is faulting
    } else request(eng, qp, l, s);
    link.rxRelease();
    n++;
  }
  if (qp.ackPending >= 0) {
    const s = link.txClaim(0);
    if (s >= 0) {
      control(link.txWords, s, WireOp.ACK, qp.ackPending, 0, 0);
      link.txCommit();
      qp.ackPending = -1;
    }
  }
  return n;
}

function control(w: Int32Array, s: number, op: number, psn: number, syndrome: number, imm: number): void {
  w[s + WirePkt.OP] = op;
  w[s + WirePkt.PSN] = psn;
  w[s + WirePkt.FLAGS] = WIRE_FIRST | WIRE_LAST;
  w[s + WirePkt.SYNDROME] = syndrome;
  w[s + WirePkt.IMM] = imm;
  w[s + WirePkt.MSG_LEN] = 0;
  w[s + WirePkt.MSG_OFF] = 0;
}

function nak(eng: MkeyEngine, qp: QpHw, l: Link, psn: number, r: Resp): void {
  if (r === Resp.RNR) Atomics.add(eng.hca, Mlx5Ctl.STAT_RNR_NAKS, 1);
  const s = l.link.txClaim(0);
  if (s < 0) return; // no room: the requester's ACK timer recovers
  const syndrome = r === Resp.RNR ? WireNak.RNR : nakOf[r];
  control(l.link.txWords, s, WireOp.NAK, psn, syndrome, qp.attrs.minRnrTimer);
  l.link.txCommit();
}

function request(eng: MkeyEngine, qp: QpHw, l: Link, s: number): void {
  const w = l.link.rxWords;
  if (!responderReady(qp)) return; // dropped: the requester times out
  const psn = w[s + WirePkt.PSN];
  const op = w[s + WirePkt.OP];
  if (psn !== qp.epsn) {
    if (psn < qp.epsn) {
      if (op === WireOp.READ_REQ) startRead(qp, w, s, true);
      else qp.ackPending = Math.max(qp.ackPending, qp.epsn - 1);
    }
    return; // ahead of epsn: dropped until the requester goes back
  }
  const flags = w[s + WirePkt.FLAGS];
  const len = w[s + WirePkt.LEN];
  const msgLen = w[s + WirePkt.MSG_LEN] >>> 0;
  const off = w[s + WirePkt.MSG_OFF];
  const raddr = ringGetU64(w, s + WirePkt.RADDR_LO);
  const rkey = w[s + WirePkt.RKEY];
  let r: Resp = Resp.ACK;
  if (op === WireOp.READ_REQ) {
    r = rdmaCheck(eng, qp, false, raddr, rkey, msgLen);
    if (r === Resp.ACK) startRead(qp, w, s, false);
  } else if (op === WireOp.WRITE || op === WireOp.WRITE_IMM) {
    if ((flags & WIRE_FIRST) !== 0) r = rdmaCheck(eng, qp, true, raddr, rkey, msgLen);
    if (
      r === Resp.ACK &&
      op === WireOp.WRITE_IMM &&
      (flags & WIRE_LAST) !== 0 &&
      (qp.rqHead() < 0 || !qp.recvCq.hasSpace())
    )
      r = Resp.RNR;
    if (r === Resp.ACK && len > 0) r = place(eng, qp, l, s, rkey, raddr + off, len, true);
    if (r === Resp.ACK && op === WireOp.WRITE_IMM && (flags & WIRE_LAST) !== 0)
      recvComplete(qp, IbvWrOpcode.IBV_WR_RDMA_WRITE_WITH_IMM, msgLen, w[s + WirePkt.IMM]);
  } else {
    if ((flags & WIRE_FIRST) !== 0 && !qp.recvBusy) r = recvCheck(eng, qp, msgLen);
    const b = qp.rqHead();
    if (r === Resp.ACK && len > 0 && b >= 0) {
      r = place(
        eng,
        qp,
        l,
        s,
        qp.rq[b + RecvWqe.LKEY],
        ringGetU64(qp.rq, b + RecvWqe.ADDR_LO) + off,
        len,
        false,
      );
    }
    if (r === Resp.ACK) {
      qp.recvBusy = true;
      if ((flags & WIRE_LAST) !== 0) {
        recvComplete(
          qp,
          op === WireOp.SEND ? IbvWrOpcode.IBV_WR_SEND : IbvWrOpcode.IBV_WR_SEND_WITH_IMM,
          msgLen,
          w[s + WirePkt.IMM],
        );
        qp.recvBusy = false;
      }
    }
  }
  if (r === Resp.ACK) {
    if (op !== WireOp.READ_REQ) {
      qp.epsn++;
      qp.ackPending = psn;
    }
    return;
  }
  nak(eng, qp, l, psn, respFatal(qp, r));
}

// Place one segment's payload into an MR (RDMA WRITE target or receive buffer).
function place(
  eng: MkeyEngine,
  qp: QpHw,
  l: Link,
  s: number,
  key: number,
  addr: number,
  len: number,
  write: boolean,
): Resp {
  const x = eng.bytesToMr(l.link.rxData, l.link.rxWords[s + WirePkt.DATA_OFF], key, addr, len, qp.qpn, false);
  if (x === Xfer.OK) return Resp.ACK;
  if (x === Xfer.DST_FAULT) return Resp.RNR;
  if (write) return Resp.NAK_ACCESS;
  recvFail(qp, IbvWcStatus.IBV_WC_LOC_PROT_ERR);
  return Resp.NAK_OP;
}

function startRead(qp: QpHw, w: Int32Array, s: number, dup: boolean): void {
  if (qp.readPsn >= 0) return;
  qp.readPsn = w[s + WirePkt.PSN];
  qp.readDup = dup;
  qp.readOff = 0;
  qp.readLen = w[s + WirePkt.MSG_LEN] >>> 0;
  qp.readAddr = ringGetU64(w, s + WirePkt.RADDR_LO);
  qp.readKey = w[s + WirePkt.RKEY];
}

/** Send READ response segments; true once the READ is fully answered (or failed). */
function serveRead(eng: MkeyEngine, qp: QpHw, l: Link): boolean {
  const link = l.link;
  const seg = link.maxPayload;
  const span = Math.max(1, Math.ceil(qp.readLen / seg));
  while (qp.readOff < qp.readLen || (qp.readLen === 0 && qp.readOff === 0)) {
    const m = Math.min(seg, qp.readLen - qp.readOff);
    const s = link.txClaim(m);
    if (s < 0) return false;
    if (m > 0) {
      const x = eng.mrToBytes(
        qp.readKey,
        qp.readAddr + qp.readOff,
        link.txData,
        link.txDataOff,
        m,
        qp.qpn,
        false,
      );
      if (x !== Xfer.OK) {
        const psn = qp.readPsn;
        qp.readPsn = -1;
        nak(eng, qp, l, psn, x === Xfer.SRC_FAULT ? Resp.RNR : respFatal(qp, Resp.NAK_ACCESS));
        return true;
      }
    }
    const i = Math.floor(qp.readOff / seg);
    const w = link.txWords;
    control(w, s, WireOp.READ_RESP, qp.readPsn + i, 0, 0);
    w[s + WirePkt.FLAGS] = (i === 0 ? WIRE_FIRST : 0) | (i === span - 1 ? WIRE_LAST : 0);
    w[s + WirePkt.MSG_LEN] = qp.readLen;
    w[s + WirePkt.MSG_OFF] = qp.readOff;
    link.txCommit();
    if (m === 0) break;
    qp.readOff += m;
  }
  if (!qp.readDup) qp.epsn = qp.readPsn + span;
  qp.readPsn = -1;
  return true;
}

// A response to one of our requests. False: hold the packet (our MR is faulting), retry later.
function response(eng: MkeyEngine, qp: QpHw, l: Link, s: number, now: number): boolean {
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
    const laddr = ringGetU64(qp.sq, base + SendWqe.SGE_ADDR_LO);
    const x = eng.bytesToMr(
      l.link.rxData,
      w[s + WirePkt.DATA_OFF],
      qp.sq[base + SendWqe.SGE_LKEY],
      laddr + got,
      len,
      qp.qpn,
      true,
    );
    if (x === Xfer.DST_FAULT) {
      qp.stalled = true;
      qp.stallIdx = eng.faultIdx;
      return false;
    }
    if (x !== Xfer.OK) {
      qp.pendingErr = p;
      qp.pendingStatus = IbvWcStatus.IBV_WC_LOC_PROT_ERR;
      return true;
    }
  }
  const total = sgeLen(qp, base);
  qp.wqeReadGot[slot] = got + len >= total ? -1 : got + len;
  qp.lastProgress = now;
  qp.retryCount = 0;
  return true;
}

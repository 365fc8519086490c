/**
 * RC over a wire (fabric/wire.ts), responder half and the receive loop: a segment is executed
 * only when its PSN is the expected one (epsn); ACKs go out in batches; an error is NAKed (the
 * responder QP enters ERR); RNR is answered when no receive is posted or the target ODP MR is
 * faulting, and later segments are dropped until the requester goes back to the NAKed PSN
 * (go-back-N). RDMA READ responses are streamed as the link has room. An atomic runs once: its
 * response is saved (the last ATOMIC_SAVED), and a duplicate request gets the saved value back;
 * a response the link has no room for is held, like READ responses, so no later ACK overtakes it. Responses to our own
 * requests are handed to the requester half (mlx5-wire-requester.ts).
 *
 * Runs in the device worker.
 */
import { IbvWcStatus, IbvWrOpcode } from '../../fabric/mlx5-ib-abi.ts';
import { Mlx5Ctl } from '../../fabric/mlx5-layout.ts';
import { RecvWqe } from '../../fabric/mlx5-wqe.ts';
import { ringGetU64 } from '../../fabric/ring-layout.ts';
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
import { type AtomicOperands, atomicCheck, atomicExecute } from './mlx5-atomic.ts';
import { type MkeyEngine, Xfer } from './mlx5-mkey.ts';
import { ATOMIC_SAVED, type QpHw } from './mlx5-qp.ts';
import {
  Resp,
  rdmaCheck,
  recvCheck,
  recvComplete,
  recvFail,
  respFatal,
  responderReady,
} from './mlx5-responder.ts';
import { type Link, response } from './mlx5-wire-requester.ts';

const ops: AtomicOperands = { op: 0, cmpLo: 0, cmpHi: 0, swpLo: 0, swpHi: 0 };
const orig = new Uint32Array(2);
const nakOf: number[] = [];
nakOf[Resp.NAK_ACCESS] = WireNak.REM_ACCESS;
nakOf[Resp.NAK_INV_REQ] = WireNak.REM_INV_REQ;
nakOf[Resp.NAK_OP] = WireNak.REM_OP;

/** Process received packets: requests (responder) and responses (requester). Returns packets. */
export function wireReceive(eng: MkeyEngine, qp: QpHw, l: Link, now: number): number {
  const link = l.link;
  const w = link.rxWords;
  let n = 0;
  for (;;) {
    if (qp.readPsn >= 0 && !serveRead(eng, qp, l)) break;
    if (qp.atomicRespHeld >= 0 && !atomicRespondHeld(qp, l)) break;
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
      else if (op === WireOp.ATOMIC_REQ) atomicReplay(qp, l, psn);
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
  } else if (op === WireOp.ATOMIC_REQ) {
    r = atomicRequest(eng, qp, l, s, raddr, rkey);
  } else if (op === WireOp.WRITE || op === WireOp.WRITE_IMM) {
    if ((flags & WIRE_FIRST) !== 0) r = rdmaCheck(eng, qp, true, raddr, rkey, msgLen);
    if (r === Resp.ACK && op === WireOp.WRITE_IMM && (flags & WIRE_LAST) !== 0 && qp.rqHead() < 0)
      r = Resp.RNR;
    if (r === Resp.ACK && len > 0) r = place(eng, qp, l, s, rkey, raddr + off, len, true);
    if (r === Resp.ACK && op === WireOp.WRITE_IMM && (flags & WIRE_LAST) !== 0)
      recvComplete(
        qp,
        IbvWrOpcode.IBV_WR_RDMA_WRITE_WITH_IMM,
        msgLen,
        w[s + WirePkt.IMM],
        (flags & WIRE_SOLICITED) !== 0,
      );
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
          (flags & WIRE_SOLICITED) !== 0,
        );
        qp.recvBusy = false;
      }
    }
  }
  if (r === Resp.ACK) {
    if (op === WireOp.ATOMIC_REQ)
      qp.epsn++; // its ATOMIC_RESP is the acknowledgement
    else if (op !== WireOp.READ_REQ) {
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

/**
 * An ATOMIC_REQ at epsn: the checks, then the atomic, run once; its original value is saved by
 * PSN (for a duplicate request) and sent back in an ATOMIC_RESP. RNR (the target ODP MR is
 * faulting): nothing ran, the requester asks again. A response the link has no room for is
 * lost like a dropped packet: the requester times out and its duplicate is answered from the
 * saved value.
 */
function atomicRequest(eng: MkeyEngine, qp: QpHw, l: Link, s: number, raddr: number, rkey: number): Resp {
  const r = atomicCheck(eng, qp, raddr, rkey);
  if (r !== Resp.ACK) return r;
  const w = l.link.rxWords;
  ops.op = w[s + WireAtomicReq.ATOMIC_OP];
  ops.cmpLo = w[s + WireAtomicReq.COMPARE_ADD_LO] >>> 0;
  ops.cmpHi = w[s + WireAtomicReq.COMPARE_ADD_HI] >>> 0;
  ops.swpLo = w[s + WireAtomicReq.SWAP_LO] >>> 0;
  ops.swpHi = w[s + WireAtomicReq.SWAP_HI] >>> 0;
  const x = atomicExecute(eng, qp.qpn, rkey, raddr, ops, orig);
  if (x !== Resp.ACK) return x;
  const slot = qp.atomicRespNext;
  qp.atomicRespNext = (slot + 1) & (ATOMIC_SAVED - 1);
  qp.atomicRespPsn[slot] = w[s + WirePkt.PSN];
  qp.atomicRespVal[2 * slot] = orig[0];
  qp.atomicRespVal[2 * slot + 1] = orig[1];
  // a response the link has no room for is held, not dropped: nothing after it is answered (or
  // ACKed) before it, so no later ACK can tell the requester it was done (as READ responses).
  qp.atomicRespHeld = slot;
  atomicRespondHeld(qp, l);
  return Resp.ACK;
}

/** Send the held atomic response. False while the link has no room. */
function atomicRespondHeld(qp: QpHw, l: Link): boolean {
  const slot = qp.atomicRespHeld;
  if (!atomicRespond(l, qp.atomicRespPsn[slot], qp.atomicRespVal[2 * slot], qp.atomicRespVal[2 * slot + 1]))
    return false;
  qp.atomicRespHeld = -1;
  return true;
}

/**
 * A duplicate ATOMIC_REQ (PSN below epsn: our response was lost or late): answered with the
 * saved original value, never run again (IBA 9.4.5). Without a saved response (overwritten by
 * ATOMIC_SAVED later atomics) it is dropped, like a duplicate READ we cannot serve now.
 */
function atomicReplay(qp: QpHw, l: Link, psn: number): void {
  const slot = qp.atomicRespPsn.indexOf(psn);
  if (slot < 0) return;
  // held like a first response: the duplicates after it must not be ACKed before it.
  qp.atomicRespHeld = slot;
  atomicRespondHeld(qp, l);
}

/** One ATOMIC_RESP; false if the link had no room (nothing sent). */
function atomicRespond(l: Link, psn: number, lo: number, hi: number): boolean {
  const s = l.link.txClaim(0);
  if (s < 0) return false;
  const w = l.link.txWords;
  control(w, s, WireOp.ATOMIC_RESP, psn, 0, 0);
  w[s + WireAtomicResp.ORIG_LO] = lo;
  w[s + WireAtomicResp.ORIG_HI] = hi;
  l.link.txCommit();
  return true;
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

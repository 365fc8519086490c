/**
 * RC responder checks and placement (kernel-semantics §7 rules 16-17): the checks an incoming
 * RDMA WRITE/READ or SEND must pass at the responding QP, and the loopback execution of one
 * request between two QPs of this HCA (zero copy: one dmaCopy between the two MRs).
 *
 *  - the responder QP must be in RTR or RTS, else the request is dropped (the requester times
 *    out: IBV_WC_RETRY_EXC_ERR);
 *  - RDMA WRITE/READ: the QP's qp_access_flags allow it, and the rkey is valid, of the QP's PD,
 *    covers [raddr, raddr + len) and grants REMOTE_WRITE/REMOTE_READ; else NAK: the requester
 *    completes IBV_WC_REM_ACCESS_ERR and both QPs enter the error state;
 *  - SEND and WRITE_WITH_IMM consume a receive WQE; none posted: RNR NAK (retried per rnr_retry);
 *    a receive buffer too small: the receive completes IBV_WC_LOC_LEN_ERR and the requester
 *    IBV_WC_REM_INV_REQ_ERR; a bad receive lkey: IBV_WC_LOC_PROT_ERR and IBV_WC_REM_OP_ERR;
 *  - an ODP MR that is faulting answers RNR (§7 rule 13) while the kernel re-maps it;
 *  - a receive completion that finds the recv CQ full is a CQ overrun: the message was placed
 *    and is acknowledged, its CQE is lost, and the responder QP enters the error state.
 *
 * Runs in the device worker.
 */
import {
  IbvAccess,
  IbvQpState,
  IbvWcFlags,
  IbvWcOpcode,
  IbvWcStatus,
  IbvWrOpcode,
} from '../../fabric/mlx5-ib-abi.ts';
import { RecvWqe } from '../../fabric/mlx5-wqe.ts';
import { ringGetU64 } from '../../fabric/ring-layout.ts';
import { type MkeyEngine, Xfer } from './mlx5-mkey.ts';
import type { QpHw } from './mlx5-qp.ts';

/** What the responder answers (a loopback request's result, or the packet sent back). */
export const Resp = {
  ACK: 0,
  RNR: 1,
  NAK_ACCESS: 2,
  NAK_INV_REQ: 3,
  NAK_OP: 4,
  /** No answer at all (responder not ready): the requester's ACK timer runs out. */
  DROP: 5,
  /** Loopback only: the requester's own MR is faulting; stall and retry. */
  LOCAL_FAULT: 6,
  /** Loopback only: the requester's own MR failed (revoked, fault not resolved, IOMMU). */
  LOCAL_ERR: 7,
} as const;
export type Resp = (typeof Resp)[keyof typeof Resp];

/** Responder side accepts requests in RTR and RTS only. */
export function responderReady(qp: QpHw | undefined): qp is QpHw {
  return qp !== undefined && (qp.state === IbvQpState.IBV_QPS_RTR || qp.state === IbvQpState.IBV_QPS_RTS);
}

/** The rkey and QP access checks of an RDMA WRITE (`write`) or READ. */
export function rdmaCheck(
  eng: MkeyEngine,
  qp: QpHw,
  write: boolean,
  raddr: number,
  rkey: number,
  len: number,
): Resp {
  const need = write ? IbvAccess.IBV_ACCESS_REMOTE_WRITE : IbvAccess.IBV_ACCESS_REMOTE_READ;
  if ((qp.attrs.accessFlags & need) === 0) return Resp.NAK_ACCESS;
  // a zero-length RDMA op carries no rkey to check (IBA 9.4.4/9.4.5).
  if (len > 0 && !eng.check(rkey, qp.pd, raddr, len, need)) return Resp.NAK_ACCESS;
  return Resp.ACK;
}

/**
 * Check the receive WQE at the responder's RQ head for a `len`-byte message. Returns ACK, RNR
 * (none posted), or the NAK after completing the receive with its error. The CQ's room is not
 * looked at: a receive completion that finds it full is a CQ overrun (recvComplete).
 */
export function recvCheck(eng: MkeyEngine, qp: QpHw, len: number): Resp {
  const b = qp.rqHead();
  if (b < 0) return Resp.RNR;
  const w = qp.rq;
  const nsge = w[b + RecvWqe.NSGE];
  const cap = nsge > 0 ? w[b + RecvWqe.LEN] >>> 0 : 0;
  if (len > cap) {
    recvFail(qp, IbvWcStatus.IBV_WC_LOC_LEN_ERR);
    return Resp.NAK_INV_REQ;
  }
  if (len > 0) {
    const addr = ringGetU64(w, b + RecvWqe.ADDR_LO);
    if (!eng.check(w[b + RecvWqe.LKEY], qp.pd, addr, len, IbvAccess.IBV_ACCESS_LOCAL_WRITE)) {
      recvFail(qp, IbvWcStatus.IBV_WC_LOC_PROT_ERR);
      return Resp.NAK_OP;
    }
  }
  return Resp.ACK;
}

/**
 * Complete the receive at the RQ head with an error and put the QP in the error state (a CQE
 * the CQ has no room for is lost: CQ overrun).
 */
export function recvFail(qp: QpHw, status: number): void {
  const b = qp.rqHead();
  if (b >= 0) {
    const id = ringGetU64(qp.rq, b + RecvWqe.WRID_LO);
    qp.rqRetire();
    if (!qp.recvCq.post(id, status, IbvWcOpcode.IBV_WC_RECV, 0, 0, qp.qpn, 0)) qp.cqeLost();
  }
  qp.toError();
}

/**
 * Complete the receive at the RQ head successfully for a SEND (`imm` with SEND_IMM) or WRITE_IMM;
 * `solicited`: the sender set IBV_SEND_SOLICITED (an armed SOLICITED CQ raises its event).
 */
export function recvComplete(qp: QpHw, wrOp: number, len: number, imm: number, solicited = false): void {
  const b = qp.rqHead();
  const withImm = wrOp !== IbvWrOpcode.IBV_WR_SEND;
  const opcode =
    wrOp === IbvWrOpcode.IBV_WR_RDMA_WRITE_WITH_IMM
      ? IbvWcOpcode.IBV_WC_RECV_RDMA_WITH_IMM
      : IbvWcOpcode.IBV_WC_RECV;
  const id = ringGetU64(qp.rq, b + RecvWqe.WRID_LO);
  // free the slot first (a poster counting completions finds the room).
  qp.rqRetire();
  const ok = qp.recvCq.post(
    id,
    IbvWcStatus.IBV_WC_SUCCESS,
    opcode,
    len,
    withImm ? imm : 0,
    qp.qpn,
    withImm ? IbvWcFlags.IBV_WC_WITH_IMM : 0,
    solicited,
  );
  // the data is placed, its completion lost: CQ overrun, the responder QP enters ERR.
  if (!ok) qp.cqeLost();
}

/** A failed responder check puts the responder QP in the error state as well (rule 16). */
export function respFatal(qp: QpHw, r: Resp): Resp {
  if (r === Resp.NAK_ACCESS || r === Resp.NAK_INV_REQ || r === Resp.NAK_OP) qp.toError();
  return r;
}

/** One loopback request as the requester decoded it. */
export interface LocalReq {
  op: number;
  raddr: number;
  rkey: number;
  imm: number;
  len: number;
  /** Local buffer (lkey/addr), or inline bytes (the first `len` of `inline`) when it is set. */
  lkey: number;
  laddr: number;
  inline: Uint8Array | null;
  /** IBV_SEND_SOLICITED was set (the receive completion it makes is solicited). */
  solicited: boolean;
  /** Atomics: the u64 operands as u32 halves (mlx5-atomic.ts AtomicOperands). */
  cmpLo: number;
  cmpHi: number;
  swpLo: number;
  swpHi: number;
}

/** A zeroed LocalReq (each requester keeps one and decodes into it). */
export function newLocalReq(): LocalReq {
  return {
    op: 0,
    raddr: 0,
    rkey: 0,
    imm: 0,
    len: 0,
    lkey: 0,
    laddr: 0,
    inline: null,
    solicited: false,
    cmpLo: 0,
    cmpHi: 0,
    swpLo: 0,
    swpHi: 0,
  };
}

/**
 * Execute `req` of requester QP `rq` at responder QP `qp` of the same HCA: checks, then the
 * data moves MR to MR. Called by: the loopback requester, once per attempt of a WQE.
 */
export function respondLocal(eng: MkeyEngine, rqQpn: number, req: LocalReq, qp: QpHw | undefined): Resp {
  if (!responderReady(qp)) return Resp.DROP;
  const op = req.op;
  const len = req.len;
  if (op === IbvWrOpcode.IBV_WR_RDMA_READ) {
    const c = rdmaCheck(eng, qp, false, req.raddr, req.rkey, len);
    if (c !== Resp.ACK) return respFatal(qp, c);
    if (len === 0) return Resp.ACK;
    const x = eng.mrToMr(req.rkey, req.raddr, req.lkey, req.laddr, len, rqQpn);
    if (x === Xfer.OK) return Resp.ACK;
    if (x === Xfer.SRC_FAULT) return Resp.RNR;
    if (x === Xfer.DST_FAULT) return Resp.LOCAL_FAULT;
    if (x === Xfer.SRC_ERR) return respFatal(qp, Resp.NAK_ACCESS);
    return Resp.LOCAL_ERR;
  }
  const write = op === IbvWrOpcode.IBV_WR_RDMA_WRITE || op === IbvWrOpcode.IBV_WR_RDMA_WRITE_WITH_IMM;
  const consumes = op !== IbvWrOpcode.IBV_WR_RDMA_WRITE;
  let dkey = req.rkey;
  let daddr = req.raddr;
  if (write) {
    const c = rdmaCheck(eng, qp, true, req.raddr, req.rkey, len);
    if (c !== Resp.ACK) return respFatal(qp, c);
    if (consumes && qp.rqHead() < 0) return Resp.RNR;
  } else {
    const c = recvCheck(eng, qp, len);
    if (c !== Resp.ACK) return respFatal(qp, c);
    const b = qp.rqHead();
    dkey = qp.rq[b + RecvWqe.LKEY];
    daddr = ringGetU64(qp.rq, b + RecvWqe.ADDR_LO);
  }
  if (len > 0) {
    const x =
      req.inline !== null
        ? eng.bytesToMr(req.inline, 0, dkey, daddr, len, qp.qpn, false)
        : eng.mrToMr(req.lkey, req.laddr, dkey, daddr, len, rqQpn);
    if (x === Xfer.SRC_FAULT) return Resp.LOCAL_FAULT;
    if (x === Xfer.DST_FAULT) return Resp.RNR;
    if (x === Xfer.DST_ERR) {
      if (write) return respFatal(qp, Resp.NAK_ACCESS);
      recvFail(qp, IbvWcStatus.IBV_WC_LOC_PROT_ERR);
      return Resp.NAK_OP;
    }
    if (x !== Xfer.OK) return Resp.LOCAL_ERR;
  }
  if (consumes) recvComplete(qp, op, len, req.imm, req.solicited);
  return Resp.ACK;
}

/**
 * RC requester, loopback flavour: both QPs on this HCA. Each send WQE is executed whole at the
 * responder in one step (responder.ts respondLocal: checks, then one MR-to-MR dmaCopy), so no
 * packet, PSN or ACK is needed; what the wire path does with NAKs and timers happens here with
 * the result of that step:
 *
 *  - ACK: complete (a CQE if signaled), retire, next WQE; a CQE that finds the CQ full is a CQ
 *    overrun: lost, and the QP enters the error state (QpHw.cqeLost);
 *  - RNR: wait min_rnr_timer of the responder, retry; beyond rnr_retry (7 = forever):
 *    IBV_WC_RNR_RETRY_EXC_ERR and the error state;
 *  - DROP (responder absent or not ready): wait the local ACK timeout, retry; beyond retry_cnt:
 *    IBV_WC_RETRY_EXC_ERR;
 *  - LOCAL_FAULT: our own ODP MR is being re-mapped: stall until its fault is resolved;
 *  - NAKs and local errors: complete with the status (§7 rules 16, 19) and enter the error state.
 * Requests execute in order, so a WRITE's data is placed before a later SEND (rule 18).
 *
 * Local checks first (rule 16): lkey valid, of the QP's PD, covering the SGE and, for an RDMA
 * READ destination, LOCAL_WRITE: else IBV_WC_LOC_PROT_ERR; a message over max_msg_sz or an
 * inline size over MLX5_MAX_INLINE: IBV_WC_LOC_LEN_ERR.
 *
 * Runs in the device worker.
 */
import {
  IB_MAX_MSG_SZ,
  IB_RNR_RETRY_INFINITE,
  IbvAccess,
  IbvQpState,
  IbvSendFlags,
  IbvWcStatus,
  IbvWrOpcode,
  ibAckTimeoutMs,
  ibRnrTimerMs,
  ibvWrIsAtomic,
} from '../../fabric/mlx5-ib-abi.ts';
import { Mlx5Ctl } from '../../fabric/mlx5-layout.ts';
import { ATOMIC_BYTES, AtomicWqe, MLX5_MAX_INLINE, SEND_WQE_INLINE, SendWqe } from '../../fabric/mlx5-wqe.ts';
import { ringGetU64 } from '../../fabric/ring-layout.ts';
import { type MkeyEngine, Xfer } from './mlx5-mkey.ts';
import type { QpHw } from './mlx5-qp.ts';
import { atomicCheck, atomicExecute, atomicResultBytes } from './mlx5-atomic.ts';
import {
  type LocalReq,
  newLocalReq,
  Resp,
  respFatal,
  respondLocal,
  responderReady,
} from './mlx5-responder.ts';

/** How long a stalled requester waits before re-checking its faulting MR without a doorbell. */
const STALL_RECHECK_MS = 2;

const req: LocalReq = newLocalReq();
const inlineBuf = new Uint8Array(MLX5_MAX_INLINE);
const inlineWords = new Int32Array(inlineBuf.buffer);

/**
 * Decode the send WQE at `base` into `out` and run the local checks. Returns
 * IBV_WC_SUCCESS or the local error status. Shared with the wire requester.
 */
export function decodeSend(eng: MkeyEngine, qp: QpHw, base: number, out: LocalReq): number {
  const w = qp.sq;
  out.op = w[base + SendWqe.OPCODE];
  out.raddr = ringGetU64(w, base + SendWqe.RADDR_LO);
  out.rkey = w[base + SendWqe.RKEY];
  out.imm = w[base + SendWqe.IMM];
  out.inline = null;
  const flags = w[base + SendWqe.FLAGS];
  const nsge = w[base + SendWqe.NSGE];
  out.solicited = (flags & IbvSendFlags.IBV_SEND_SOLICITED) !== 0;
  if (ibvWrIsAtomic(out.op)) {
    // one 8-byte SGE, implied (its NSGE word carries an operand: fabric/mlx5-wqe.ts AtomicWqe).
    out.imm = 0;
    out.cmpLo = w[base + AtomicWqe.COMPARE_ADD_LO] >>> 0;
    out.cmpHi = w[base + AtomicWqe.COMPARE_ADD_HI] >>> 0;
    out.swpLo = w[base + AtomicWqe.SWAP_LO] >>> 0;
    out.swpHi = w[base + AtomicWqe.SWAP_HI] >>> 0;
    out.len = w[base + SendWqe.SGE_LEN] >>> 0;
    out.lkey = w[base + SendWqe.SGE_LKEY];
    out.laddr = ringGetU64(w, base + SendWqe.SGE_ADDR_LO);
    if (out.len !== ATOMIC_BYTES) return IbvWcStatus.IBV_WC_LOC_LEN_ERR;
    // the original value is written into the local buffer.
    if (!eng.check(out.lkey, qp.pd, out.laddr, ATOMIC_BYTES, IbvAccess.IBV_ACCESS_LOCAL_WRITE))
      return IbvWcStatus.IBV_WC_LOC_PROT_ERR;
    return IbvWcStatus.IBV_WC_SUCCESS;
  }
  if (out.op < IbvWrOpcode.IBV_WR_RDMA_WRITE || out.op > IbvWrOpcode.IBV_WR_RDMA_READ) {
    return IbvWcStatus.IBV_WC_LOC_QP_OP_ERR; // unknown opcodes
  }
  if ((flags & IbvSendFlags.IBV_SEND_INLINE) !== 0 && out.op !== IbvWrOpcode.IBV_WR_RDMA_READ) {
    if (nsge < 0 || nsge > MLX5_MAX_INLINE) return IbvWcStatus.IBV_WC_LOC_LEN_ERR;
    // only the words the bytes occupy (the rest of inlineBuf is not read: LocalReq.inline's len bytes)
    for (let i = 0, n = (nsge + 3) >> 2; i < n; i++) inlineWords[i] = w[base + SEND_WQE_INLINE + i];
    out.len = nsge;
    out.inline = inlineBuf; // its first out.len bytes (no subarray per WQE)
    out.lkey = 0;
    out.laddr = 0;
    return IbvWcStatus.IBV_WC_SUCCESS;
  }
  if (nsge === 0) {
    out.len = 0;
    out.lkey = 0;
    out.laddr = 0;
    return IbvWcStatus.IBV_WC_SUCCESS;
  }
  if (nsge !== 1) return IbvWcStatus.IBV_WC_LOC_LEN_ERR;
  out.len = w[base + SendWqe.SGE_LEN] >>> 0;
  out.lkey = w[base + SendWqe.SGE_LKEY];
  out.laddr = ringGetU64(w, base + SendWqe.SGE_ADDR_LO);
  if (out.len > IB_MAX_MSG_SZ) return IbvWcStatus.IBV_WC_LOC_LEN_ERR;
  const need = out.op === IbvWrOpcode.IBV_WR_RDMA_READ ? IbvAccess.IBV_ACCESS_LOCAL_WRITE : 0;
  if (out.len > 0 && !eng.check(out.lkey, qp.pd, out.laddr, out.len, need))
    return IbvWcStatus.IBV_WC_LOC_PROT_ERR;
  return IbvWcStatus.IBV_WC_SUCCESS;
}

/**
 * An atomic of requester QP `rq` (its WQE at sqTail, decoded in `req`) at responder QP `qp` of
 * the same HCA: checks and the read-modify-write (mlx5-atomic.ts), then the original value into
 * the requester's local buffer. The atomic runs once per WQE: a local fault after it keeps the
 * value in rq.atomicOrig for the retry (a responder's saved atomic response, IBA 9.4.5).
 */
function respondAtomic(eng: MkeyEngine, rq: QpHw, req: LocalReq, qp: QpHw | undefined): Resp {
  if (rq.atomicPos !== rq.sqTail) {
    // (a retry after the atomic ran needs no responder: its response is in hand.)
    if (!responderReady(qp)) return Resp.DROP;
    const c = atomicCheck(eng, qp, req.raddr, req.rkey);
    if (c !== Resp.ACK) return respFatal(qp, c);
    const r = atomicExecute(eng, qp.qpn, req.rkey, req.raddr, req, rq.atomicOrig);
    if (r !== Resp.ACK) return r === Resp.RNR ? r : respFatal(qp, r);
    rq.atomicPos = rq.sqTail;
  }
  const x = eng.bytesToMr(
    atomicResultBytes(rq.atomicOrig),
    0,
    req.lkey,
    req.laddr,
    ATOMIC_BYTES,
    rq.qpn,
    true,
  );
  if (x === Xfer.DST_FAULT) return Resp.LOCAL_FAULT;
  rq.atomicPos = -1;
  return x === Xfer.OK ? Resp.ACK : Resp.LOCAL_ERR;
}

/** Complete the WQE at sqTail with an error and enter the error state. */
export function failTail(qp: QpHw, base: number, status: number): void {
  qp.completeSend(base, status, 0);
  qp.toError();
}

const respStatus: number[] = [];
respStatus[Resp.NAK_ACCESS] = IbvWcStatus.IBV_WC_REM_ACCESS_ERR;
respStatus[Resp.NAK_INV_REQ] = IbvWcStatus.IBV_WC_REM_INV_REQ_ERR;
respStatus[Resp.NAK_OP] = IbvWcStatus.IBV_WC_REM_OP_ERR;
respStatus[Resp.LOCAL_ERR] = IbvWcStatus.IBV_WC_LOC_PROT_ERR;

/** The ibv_wc_status a fatal responder answer completes the WQE with. */
export function statusOfResp(r: Resp): number {
  return respStatus[r] ?? IbvWcStatus.IBV_WC_GENERAL_ERR;
}

/**
 * Run the SQ of loopback QP `qp` (state RTS) against `peer` as far as it goes now. Returns
 * WQEs retired; sets qp.retryAt when it must wait (RNR, timeout, stall). `clock` is
 * performance.now() if the caller read it, else 0 (read here only when a timer is pending).
 * Called by: the HCA loop, device worker.
 */
export function requesterLoopback(eng: MkeyEngine, qp: QpHw, peer: QpHw | undefined, clock: number): number {
  let n = 0;
  let now = clock;
  for (;;) {
    // the common case in one wasm call (mlx5-fast.ts); it leaves the first other WQE to the code below.
    const fast = eng.fast;
    if (
      fast !== null &&
      qp.fast &&
      qp.retryAt === 0 &&
      !qp.stalled &&
      qp.rnrCount === 0 &&
      qp.retryCount === 0 &&
      !qp.sendCq.overrun &&
      eng.dma.hook === null &&
      responderReady(peer)
    ) {
      n += fast.loopback(qp, peer, eng.seq);
      eng.seq = fast.fastSeq;
    }
    const base = qp.sqAt(qp.sqTail);
    if (base < 0) break;
    if (qp.retryAt !== 0) {
      if (now === 0) now = performance.now();
      // a stalled requester retries as soon as its fault settled (the kernel rang the doorbell).
      if (now < qp.retryAt && !(qp.stalled && eng.faultSettled(qp.stallIdx))) break;
      qp.retryAt = 0;
    }
    // no look at the CQ first: a WQE executes, and a completion that finds its CQ full is a CQ
    // overrun (the CQE is lost, the QP enters ERR: QpHw.cqeLost), not back-pressure.
    const local = decodeSend(eng, qp, base, req);
    if (local !== IbvWcStatus.IBV_WC_SUCCESS) {
      failTail(qp, base, local);
      n++;
      break;
    }
    const atomic = ibvWrIsAtomic(req.op);
    const r = atomic ? respondAtomic(eng, qp, req, peer) : respondLocal(eng, qp.qpn, req, peer);
    if (r === Resp.ACK) {
      qp.completeSend(
        base,
        IbvWcStatus.IBV_WC_SUCCESS,
        atomic || req.op === IbvWrOpcode.IBV_WR_RDMA_READ ? req.len : 0,
      );
      qp.rnrCount = 0;
      qp.retryCount = 0;
      qp.stalled = false;
      n++;
      if (qp.state === IbvQpState.IBV_QPS_ERR) break; // its CQE was lost (CQ overrun)
      continue;
    }
    if (r === Resp.RNR) {
      const limit = qp.attrs.rnrRetry;
      if (limit !== IB_RNR_RETRY_INFINITE && qp.rnrCount >= limit) {
        failTail(qp, base, IbvWcStatus.IBV_WC_RNR_RETRY_EXC_ERR);
        n++;
        break;
      }
      qp.rnrCount++;
      Atomics.add(eng.hca, Mlx5Ctl.STAT_RNR_NAKS, 1);
      // the responder's min_rnr_timer tells the requester how long to back off.
      qp.retryAt = performance.now() + ibRnrTimerMs(peer!.attrs.minRnrTimer);
      break;
    }
    if (r === Resp.DROP) {
      if (qp.retryCount >= qp.attrs.retryCnt) {
        failTail(qp, base, IbvWcStatus.IBV_WC_RETRY_EXC_ERR);
        n++;
        break;
      }
      qp.retryCount++;
      Atomics.add(eng.hca, Mlx5Ctl.STAT_RETRIES, 1);
      qp.retryAt = performance.now() + Math.min(ibAckTimeoutMs(qp.attrs.timeout), 60_000);
      break;
    }
    if (r === Resp.LOCAL_FAULT) {
      qp.stalled = true;
      qp.stallIdx = eng.faultIdx;
      qp.retryAt = performance.now() + STALL_RECHECK_MS;
      break;
    }
    failTail(qp, base, statusOfResp(r));
    n++;
    break;
  }
  return n;
}

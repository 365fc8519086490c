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
} from '../../fabric/mlx5-ib-abi.ts';
import { Mlx5Ctl } from '../../fabric/mlx5-layout.ts';
import { MLX5_MAX_INLINE, SEND_WQE_INLINE, SendWqe } from '../../fabric/mlx5-wqe.ts';
import { ringGetU64 } from '../../fabric/ring-layout.ts';
import type { MkeyEngine } from './mlx5-mkey.ts';
import type { QpHw } from './mlx5-qp.ts';
import { type LocalReq, Resp, respondLocal } from './mlx5-responder.ts';

/** How long a stalled requester waits before re-checking its faulting MR without a doorbell. */
const STALL_RECHECK_MS = 2;

const req: LocalReq = { op: 0, raddr: 0, rkey: 0, imm: 0, len: 0, lkey: 0, laddr: 0, inline: null };
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
  if (out.op < IbvWrOpcode.IBV_WR_RDMA_WRITE || out.op > IbvWrOpcode.IBV_WR_RDMA_READ) {
    return IbvWcStatus.IBV_WC_LOC_QP_OP_ERR; // atomics and unknown opcodes: not supported
  }
  if ((flags & IbvSendFlags.IBV_SEND_INLINE) !== 0 && out.op !== IbvWrOpcode.IBV_WR_RDMA_READ) {
    if (nsge < 0 || nsge > MLX5_MAX_INLINE) return IbvWcStatus.IBV_WC_LOC_LEN_ERR;
    for (let i = 0; i < MLX5_MAX_INLINE / 4; i++) inlineWords[i] = w[base + SEND_WQE_INLINE + i];
    out.len = nsge;
    out.inline = inlineBuf.subarray(0, nsge);
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
    const r = respondLocal(eng, qp.qpn, req, peer);
    if (r === Resp.ACK) {
      qp.completeSend(
        base,
        IbvWcStatus.IBV_WC_SUCCESS,
        req.op === IbvWrOpcode.IBV_WR_RDMA_READ ? req.len : 0,
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

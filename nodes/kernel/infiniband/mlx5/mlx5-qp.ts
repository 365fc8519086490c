/**
 * mlx5_ib CQs and QPs (cq.c, qp.c, reduced): allocate the rings userspace and the device share,
 * and tell the device with CREATE/MODIFY/DESTROY firmware commands. The QP's state word lives
 * in the HCA context: the device publishes every transition it makes (including its own move to
 * IBV_QPS_ERR after an error completion), so the kernel and userspace read the same state.
 *
 * Thread: kernel.
 */
import { err } from '../../../../common/errno.ts';
import { trace } from '../../../../common/trace.ts';
import { IbvEventType, IbvQpState } from '../../../fabric/mlx5-ib-abi.ts';
import {
  hcaCqBase,
  hcaQpBase,
  MLX5_MAX_CQ,
  MLX5_MAX_QP,
  Mlx5Cmd,
  Mlx5CqCtx,
  Mlx5CqState,
  Mlx5QpCtx,
} from '../../../fabric/mlx5-layout.ts';
import { physArenaCtlFree } from '../../../fabric/phys-arena.ts';
import { type RingMem, ringCreate } from '../../../fabric/ring-layout.ts';
import { IbCq, type IbDevice, ibDispatchEvent, type IbPd, IbQp } from '../ib-core.ts';
import { ibFabricConnect, ibFabricDisconnect } from '../ib-fabric.ts';
import type { Mlx5Dev } from './mlx5-ib.ts';

/** Largest ring the HCA takes for an SQ, RQ or CQ. */
export const MLX5_MAX_WQ = 1 << 15;

/** Slots for `n` entries: the next power of two, at least 2. */
export function ringSlotsFor(n: number): number {
  return Math.max(2, 2 ** Math.ceil(Math.log2(Math.max(1, n))));
}

function allocNumber(d: Mlx5Dev, kind: 'cq' | 'qp'): number {
  const max = kind === 'cq' ? MLX5_MAX_CQ : MLX5_MAX_QP;
  const lo = kind === 'cq' ? 1 : 2;
  const used = kind === 'cq' ? d.cqns : d.qpns;
  for (let i = 0; i < max - lo; i++) {
    const n = lo + (((kind === 'cq' ? d.nextCqn : d.nextQpn) - lo + i) % (max - lo));
    if (!used.has(n)) {
      used.add(n);
      if (kind === 'cq') d.nextCqn = n + 1;
      else d.nextQpn = n + 1;
      return n;
    }
  }
  throw err('ENOMEM', `${d.name}: no free ${kind === 'cq' ? 'CQ' : 'QP'} number`);
}

/**
 * Ring memory of a destroyed CQ or QP back to the host arena: the device dropped it with the
 * DESTROY command (or is dead), and userspace refuses to post or poll on a destroyed object
 * (verbs.ts), as its buffers are gone with it in libmlx5. A failed create keeps its ring: the
 * device may still act on a command that timed out.
 */
function ringFree(d: Mlx5Dev, mem: RingMem): void {
  if (d.kernel.arena !== null && mem instanceof Int32Array) physArenaCtlFree(d.kernel.arena, mem);
}

/** mlx5_ib_create_cq. Throws: ENOMEM (no CQN), the command's errors. */
export async function mlx5CreateCq(d: Mlx5Dev, ib: IbDevice, cqe: number): Promise<IbCq> {
  const cqn = allocNumber(d, 'cq');
  const ring = ringCreate(ringSlotsFor(cqe), d.kernel.arena);
  try {
    await d.cmd(Mlx5Cmd.CREATE_CQ, { kind: 'cq', cqn, ring });
  } catch (e) {
    d.cqns.delete(cqn);
    throw e;
  }
  const cq = new IbCq(ib, cqn, ring, cqe);
  d.cqObjs.set(cqn, cq);
  return cq;
}

/** mlx5_ib_destroy_cq. A dead device has nothing to tell. */
export async function mlx5DestroyCq(d: Mlx5Dev, cq: IbCq): Promise<void> {
  if (d.alive) await d.cmd(Mlx5Cmd.DESTROY_CQ, undefined, cq.cqn);
  ringFree(d, cq.ring);
  d.cqns.delete(cq.cqn);
  d.cqObjs.delete(cq.cqn);
}

/** mlx5_ib_create_qp (RC). Throws: ENOMEM (no QPN), the command's errors. */
export async function mlx5CreateQp(
  d: Mlx5Dev,
  pd: IbPd,
  init: { send: IbCq; recv: IbCq; cap: IbQp['cap'] },
): Promise<IbQp> {
  const qpn = allocNumber(d, 'qp');
  // in the host arena, beside the HCA context: the device's wasm data path reads them there.
  const sq = ringCreate(ringSlotsFor(init.cap.max_send_wr), d.kernel.arena);
  const rq = ringCreate(ringSlotsFor(init.cap.max_recv_wr), d.kernel.arena);
  try {
    await d.cmd(Mlx5Cmd.CREATE_QP, {
      kind: 'qp',
      qpn,
      pd: pd.pdn,
      sq,
      rq,
      sendCqn: init.send.cqn,
      recvCqn: init.recv.cqn,
    });
  } catch (e) {
    d.qpns.delete(qpn);
    throw e;
  }
  const qp = new IbQp(pd.dev, qpn, pd, init, { sq, rq }, init.cap);
  d.qpObjs.set(qpn, qp);
  return qp;
}

/** The QP state as the device published it. */
export function mlx5QpState(d: Mlx5Dev, qp: IbQp): number {
  if (qp.dead) return IbvQpState.IBV_QPS_RESET;
  return Atomics.load(d.hca, hcaQpBase(qp.qpn) + Mlx5QpCtx.STATE);
}

/**
 * mlx5_ib_modify_qp: send qp.attr (validated and merged by the ib core) to the device. Entering
 * RTR resolves the path to the destination (loopback or a wire link, ib-fabric.ts).
 */
export async function mlx5ModifyQp(d: Mlx5Dev, qp: IbQp, prev: number): Promise<void> {
  const a = qp.attr;
  const next = a.qp_state;
  let peer: unknown = null;
  if (next === IbvQpState.IBV_QPS_RTR && prev !== IbvQpState.IBV_QPS_RTR) {
    peer = ibFabricConnect(d.kernel, d.lid, qp.qpn, a.ah_attr.dlid, a.dest_qp_num);
  }
  if (next === IbvQpState.IBV_QPS_RESET) ibFabricDisconnect(d.kernel, d.lid, qp.qpn);
  await d.cmd(Mlx5Cmd.MODIFY_QP, {
    kind: 'modify',
    qpn: qp.qpn,
    peer,
    attrs: {
      state: next,
      accessFlags: a.qp_access_flags,
      destQpn: a.dest_qp_num,
      rqPsn: a.rq_psn,
      sqPsn: a.sq_psn,
      minRnrTimer: a.min_rnr_timer,
      timeout: a.timeout,
      retryCnt: a.retry_cnt,
      rnrRetry: a.rnr_retry,
      maxRdAtomic: a.max_rd_atomic,
    },
  });
  trace('rdmaQpModify', () => ({ dev: d.name, qpn: qp.qpn, from: prev, to: next }));
}

/** mlx5_ib_destroy_qp: outstanding work requests are dropped without completions. */
export async function mlx5DestroyQp(d: Mlx5Dev, qp: IbQp): Promise<void> {
  ibFabricDisconnect(d.kernel, d.lid, qp.qpn);
  if (d.alive) await d.cmd(Mlx5Cmd.DESTROY_QP, undefined, qp.qpn);
  ringFree(d, qp.sq);
  ringFree(d, qp.rq);
  d.qpns.delete(qp.qpn);
  d.qpObjs.delete(qp.qpn);
}

/**
 * mlx5_eq_cq_event for MLX5_EVENT_TYPE_CQ_ERROR: CQ `cqn` overran (a completion found it
 * full). IBV_EVENT_CQ_ERR to its owner, unless the CQ is gone or was re-created since (its
 * context's STATE is no longer OVERRUN). Called by: the EQ handler, kernel thread.
 */
export function mlx5CqError(d: Mlx5Dev, cqn: number): void {
  const cq = d.cqObjs.get(cqn);
  const overrun = Atomics.load(d.hca, hcaCqBase(cqn) + Mlx5CqCtx.STATE) === Mlx5CqState.OVERRUN;
  trace('rdmaAsyncEvent', () => ({
    dev: d.name,
    event: 'IBV_EVENT_CQ_ERR',
    cqn,
    delivered: !!cq && overrun,
  }));
  if (cq === undefined || !overrun) return;
  ibDispatchEvent({ type: IbvEventType.IBV_EVENT_CQ_ERR, cq });
}

/**
 * mlx5_eq_qp_event for a QP error (MLX5_EVENT_TYPE_WQ_CATAS_ERROR): QP `qpn` entered ERR
 * because a completion it needed was lost. IBV_EVENT_QP_FATAL to its owner, unless the QP is
 * gone or has left ERR since. Called by: the EQ handler, kernel thread.
 */
export function mlx5QpError(d: Mlx5Dev, qpn: number): void {
  const qp = d.qpObjs.get(qpn);
  const inErr = qp !== undefined && mlx5QpState(d, qp) === IbvQpState.IBV_QPS_ERR;
  trace('rdmaAsyncEvent', () => ({ dev: d.name, event: 'IBV_EVENT_QP_FATAL', qpn, delivered: inErr }));
  if (qp === undefined || !inErr) return;
  ibDispatchEvent({ type: IbvEventType.IBV_EVENT_QP_FATAL, qp });
}

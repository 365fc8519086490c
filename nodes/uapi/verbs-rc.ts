/**
 * RC connection set-up for userspace (what perftest and librdmacm do on top of verbs): a PD, a CQ
 * and an RC QP per end, driven through INIT, RTR and RTS towards the peer. Used by the demo, the
 * benchmarks and the tests; plain verbs underneath, so every error is the verbs call's.
 */
import {
  IbvAccess,
  type IbvContext,
  type IbvCq,
  type IbvPd,
  type IbvQp,
  IbvQpAttrMask as M,
  IbvQpState,
  IbvQpType,
  ibvAllocPd,
  ibvCreateCq,
  ibvCreateQp,
  ibvModifyQp,
  ibvQueryPort,
} from './verbs.ts';

export interface QpEnd {
  ctx: IbvContext;
  pd: IbvPd;
  cq: IbvCq;
  qp: IbvQp;
}

/** A PD, one CQ for both directions and an RC QP in RESET. */
export async function qpEnd(ctx: IbvContext, depth = 64, pd?: IbvPd): Promise<QpEnd> {
  const p = pd ?? ibvAllocPd(ctx);
  const cq = await ibvCreateCq(ctx, 2 * depth);
  const qp = await ibvCreateQp(p, {
    send_cq: cq,
    recv_cq: cq,
    qp_type: IbvQpType.IBV_QPT_RC,
    cap: { max_send_wr: depth, max_recv_wr: depth, max_inline_data: 24 },
  });
  return { ctx, pd: p, cq, qp };
}

export interface ConnectOpts {
  access?: number;
  minRnrTimer?: number;
  rnrRetry?: number;
  retryCnt?: number;
  timeout?: number;
  /** Stop at this state (INIT or RTR) instead of RTS. */
  upTo?: number;
}

export const ALL_ACCESS =
  IbvAccess.IBV_ACCESS_LOCAL_WRITE | IbvAccess.IBV_ACCESS_REMOTE_WRITE | IbvAccess.IBV_ACCESS_REMOTE_READ;

/** Drive `a` through INIT, RTR (towards `b`) and RTS, the way perftest does after exchanging QP info. */
export async function connect(a: QpEnd, b: QpEnd, o: ConnectOpts = {}): Promise<void> {
  await ibvModifyQp(
    a.qp,
    {
      qp_state: IbvQpState.IBV_QPS_INIT,
      pkey_index: 0,
      port_num: 1,
      qp_access_flags: o.access ?? ALL_ACCESS,
    },
    M.IBV_QP_STATE | M.IBV_QP_PKEY_INDEX | M.IBV_QP_PORT | M.IBV_QP_ACCESS_FLAGS,
  );
  if (o.upTo === IbvQpState.IBV_QPS_INIT) return;
  await ibvModifyQp(
    a.qp,
    {
      qp_state: IbvQpState.IBV_QPS_RTR,
      path_mtu: 5,
      dest_qp_num: b.qp.qp_num,
      rq_psn: 100,
      max_dest_rd_atomic: 4,
      min_rnr_timer: o.minRnrTimer ?? 1,
      ah_attr: { dlid: ibvQueryPort(b.ctx, 1).lid, port_num: 1 },
    },
    M.IBV_QP_STATE |
      M.IBV_QP_AV |
      M.IBV_QP_PATH_MTU |
      M.IBV_QP_DEST_QPN |
      M.IBV_QP_RQ_PSN |
      M.IBV_QP_MAX_DEST_RD_ATOMIC |
      M.IBV_QP_MIN_RNR_TIMER,
  );
  if (o.upTo === IbvQpState.IBV_QPS_RTR) return;
  await ibvModifyQp(
    a.qp,
    {
      qp_state: IbvQpState.IBV_QPS_RTS,
      sq_psn: 100,
      // 67 ms x 8 tries: two busy cores can stall a NIC worker for tens of ms; tests of
      // RETRY_EXC_ERR set their own short timeout.
      timeout: o.timeout ?? 14,
      retry_cnt: o.retryCnt ?? 7,
      rnr_retry: o.rnrRetry ?? 7,
      max_rd_atomic: 4,
    },
    M.IBV_QP_STATE |
      M.IBV_QP_SQ_PSN |
      M.IBV_QP_TIMEOUT |
      M.IBV_QP_RETRY_CNT |
      M.IBV_QP_RNR_RETRY |
      M.IBV_QP_MAX_QP_RD_ATOMIC,
  );
}

/** Two RC QPs connected to each other (on one context for loopback, or two). */
export async function rcPair(
  ctxA: IbvContext,
  ctxB: IbvContext,
  o: ConnectOpts & { depth?: number } = {},
): Promise<[QpEnd, QpEnd]> {
  const a = await qpEnd(ctxA, o.depth);
  const b = await qpEnd(ctxB, o.depth, ctxA === ctxB ? a.pd : undefined);
  await connect(a, b, o);
  await connect(b, a, o);
  return [a, b];
}

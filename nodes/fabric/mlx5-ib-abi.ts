/**
 * The verbs ABI every side of the RDMA path agrees on (rdma/ib_user_verbs.h and
 * infiniband/verbs.h values): work request opcodes, completion opcodes and statuses, access
 * flags, QP states and attribute masks. The userspace provider (nodes/uapi/verbs.ts), the ib
 * core (nodes/kernel/infiniband/) and the NIC model (nodes/devices/mlx5/) all import these; the
 * numbers are libibverbs' so that a trace or a test reads like an rdma-core one.
 */

/** enum ibv_wr_opcode. */
export const IbvWrOpcode = {
  IBV_WR_RDMA_WRITE: 0,
  IBV_WR_RDMA_WRITE_WITH_IMM: 1,
  IBV_WR_SEND: 2,
  IBV_WR_SEND_WITH_IMM: 3,
  IBV_WR_RDMA_READ: 4,
  IBV_WR_ATOMIC_CMP_AND_SWP: 5,
  IBV_WR_ATOMIC_FETCH_AND_ADD: 6,
} as const;
export type IbvWrOpcode = (typeof IbvWrOpcode)[keyof typeof IbvWrOpcode];

/** enum ibv_send_flags. */
export const IbvSendFlags = {
  IBV_SEND_FENCE: 1,
  IBV_SEND_SIGNALED: 2,
  IBV_SEND_SOLICITED: 4,
  IBV_SEND_INLINE: 8,
} as const;

/** enum ibv_wc_opcode (receive opcodes have bit 7 set, IBV_WC_RECV = 1 << 7). */
export const IbvWcOpcode = {
  IBV_WC_SEND: 0,
  IBV_WC_RDMA_WRITE: 1,
  IBV_WC_RDMA_READ: 2,
  IBV_WC_COMP_SWAP: 3,
  IBV_WC_FETCH_ADD: 4,
  IBV_WC_RECV: 128,
  IBV_WC_RECV_RDMA_WITH_IMM: 129,
} as const;
export type IbvWcOpcode = (typeof IbvWcOpcode)[keyof typeof IbvWcOpcode];

/** enum ibv_wc_status. */
/** enum ibv_atomic_cap. */
export const IbvAtomicCap = {
  IBV_ATOMIC_NONE: 0,
  /** Atomic with respect to other atomics through the same HCA (not to CPUs or other HCAs). */
  IBV_ATOMIC_HCA: 1,
  IBV_ATOMIC_GLOB: 2,
} as const;

/** True for IBV_WR_ATOMIC_CMP_AND_SWP and IBV_WR_ATOMIC_FETCH_AND_ADD. */
export function ibvWrIsAtomic(op: number): boolean {
  return op === IbvWrOpcode.IBV_WR_ATOMIC_CMP_AND_SWP || op === IbvWrOpcode.IBV_WR_ATOMIC_FETCH_AND_ADD;
}

export const IbvWcStatus = {
  IBV_WC_SUCCESS: 0,
  IBV_WC_LOC_LEN_ERR: 1,
  IBV_WC_LOC_QP_OP_ERR: 2,
  IBV_WC_LOC_EEC_OP_ERR: 3,
  IBV_WC_LOC_PROT_ERR: 4,
  IBV_WC_WR_FLUSH_ERR: 5,
  IBV_WC_MW_BIND_ERR: 6,
  IBV_WC_BAD_RESP_ERR: 7,
  IBV_WC_LOC_ACCESS_ERR: 8,
  IBV_WC_REM_INV_REQ_ERR: 9,
  IBV_WC_REM_ACCESS_ERR: 10,
  IBV_WC_REM_OP_ERR: 11,
  IBV_WC_RETRY_EXC_ERR: 12,
  IBV_WC_RNR_RETRY_EXC_ERR: 13,
  IBV_WC_LOC_RDD_VIOL_ERR: 14,
  IBV_WC_REM_INV_RD_REQ_ERR: 15,
  IBV_WC_REM_ABORT_ERR: 16,
  IBV_WC_INV_EECN_ERR: 17,
  IBV_WC_INV_EEC_STATE_ERR: 18,
  IBV_WC_FATAL_ERR: 19,
  IBV_WC_RESP_TIMEOUT_ERR: 20,
  IBV_WC_GENERAL_ERR: 21,
} as const;
export type IbvWcStatus = (typeof IbvWcStatus)[keyof typeof IbvWcStatus];

const wcStatusNames = Object.fromEntries(Object.entries(IbvWcStatus).map(([k, v]) => [v, k]));

/** ibv_wc_status_str(): the enum name ("IBV_WC_REM_ACCESS_ERR"), or "IBV_WC_<n>" if unknown. */
export function ibvWcStatusStr(status: number): string {
  return wcStatusNames[status] ?? `IBV_WC_${status}`;
}

/** enum ibv_wc_flags. */
export const IbvWcFlags = { IBV_WC_GRH: 1, IBV_WC_WITH_IMM: 2 } as const;

/** enum ibv_access_flags. */
export const IbvAccess = {
  IBV_ACCESS_LOCAL_WRITE: 1,
  IBV_ACCESS_REMOTE_WRITE: 2,
  IBV_ACCESS_REMOTE_READ: 4,
  IBV_ACCESS_REMOTE_ATOMIC: 8,
  IBV_ACCESS_MW_BIND: 16,
  IBV_ACCESS_ZERO_BASED: 32,
  IBV_ACCESS_ON_DEMAND: 64,
  IBV_ACCESS_RELAXED_ORDERING: 1 << 20,
} as const;
/** Every access bit the emulated HCA accepts at registration. */
export const IBV_ACCESS_SUPPORTED =
  IbvAccess.IBV_ACCESS_LOCAL_WRITE |
  IbvAccess.IBV_ACCESS_REMOTE_WRITE |
  IbvAccess.IBV_ACCESS_REMOTE_READ |
  IbvAccess.IBV_ACCESS_REMOTE_ATOMIC |
  IbvAccess.IBV_ACCESS_ON_DEMAND |
  IbvAccess.IBV_ACCESS_RELAXED_ORDERING;

/** enum ibv_qp_state. */
export const IbvQpState = {
  IBV_QPS_RESET: 0,
  IBV_QPS_INIT: 1,
  IBV_QPS_RTR: 2,
  IBV_QPS_RTS: 3,
  IBV_QPS_SQD: 4,
  IBV_QPS_SQE: 5,
  IBV_QPS_ERR: 6,
} as const;
export type IbvQpState = (typeof IbvQpState)[keyof typeof IbvQpState];

/** enum ibv_event_type (libibverbs numbering). Affiliated events carry the CQ or QP. */
export const IbvEventType = {
  IBV_EVENT_CQ_ERR: 0,
  IBV_EVENT_QP_FATAL: 1,
  IBV_EVENT_QP_REQ_ERR: 2,
  IBV_EVENT_QP_ACCESS_ERR: 3,
  IBV_EVENT_COMM_EST: 4,
  IBV_EVENT_SQ_DRAINED: 5,
  IBV_EVENT_PATH_MIG: 6,
  IBV_EVENT_PATH_MIG_ERR: 7,
  IBV_EVENT_DEVICE_FATAL: 8,
  IBV_EVENT_PORT_ACTIVE: 9,
  IBV_EVENT_PORT_ERR: 10,
  IBV_EVENT_LID_CHANGE: 11,
  IBV_EVENT_PKEY_CHANGE: 12,
  IBV_EVENT_SM_CHANGE: 13,
  IBV_EVENT_SRQ_ERR: 14,
  IBV_EVENT_SRQ_LIMIT_REACHED: 15,
  IBV_EVENT_QP_LAST_WQE_REACHED: 16,
  IBV_EVENT_CLIENT_REREGISTER: 17,
  IBV_EVENT_GID_CHANGE: 18,
  IBV_EVENT_WQ_FATAL: 19,
} as const;
export type IbvEventType = (typeof IbvEventType)[keyof typeof IbvEventType];

/** enum ibv_qp_attr_mask. */
export const IbvQpAttrMask = {
  IBV_QP_STATE: 1 << 0,
  IBV_QP_CUR_STATE: 1 << 1,
  IBV_QP_EN_SQD_ASYNC_NOTIFY: 1 << 2,
  IBV_QP_ACCESS_FLAGS: 1 << 3,
  IBV_QP_PKEY_INDEX: 1 << 4,
  IBV_QP_PORT: 1 << 5,
  IBV_QP_QKEY: 1 << 6,
  IBV_QP_AV: 1 << 7,
  IBV_QP_PATH_MTU: 1 << 8,
  IBV_QP_TIMEOUT: 1 << 9,
  IBV_QP_RETRY_CNT: 1 << 10,
  IBV_QP_RNR_RETRY: 1 << 11,
  IBV_QP_RQ_PSN: 1 << 12,
  IBV_QP_MAX_QP_RD_ATOMIC: 1 << 13,
  IBV_QP_ALT_PATH: 1 << 14,
  IBV_QP_MIN_RNR_TIMER: 1 << 15,
  IBV_QP_SQ_PSN: 1 << 16,
  IBV_QP_MAX_DEST_RD_ATOMIC: 1 << 17,
  IBV_QP_PATH_MIG_STATE: 1 << 18,
  IBV_QP_CAP: 1 << 19,
  IBV_QP_DEST_QPN: 1 << 20,
} as const;

/** enum ibv_qp_type (only RC is modelled). */
export const IbvQpType = { IBV_QPT_RC: 2, IBV_QPT_UC: 3, IBV_QPT_UD: 4 } as const;

/** enum ibv_mtu. */
export const IbvMtu = {
  IBV_MTU_256: 1,
  IBV_MTU_512: 2,
  IBV_MTU_1024: 3,
  IBV_MTU_2048: 4,
  IBV_MTU_4096: 5,
} as const;

/** Bytes of an ibv_mtu value (256 << (mtu - 1)). */
export function ibvMtuToBytes(mtu: number): number {
  return 256 << (mtu - 1);
}

/**
 * IB min_rnr_timer encoding (IBA table 45) in milliseconds: 0 is 655.36 ms, 1..31 grow from
 * 0.01 ms to 491.52 ms.
 */
const RNR_TIMER_MS = [
  655.36, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32, 0.48, 0.64, 0.96, 1.28, 1.92, 2.56,
  3.84, 5.12, 7.68, 10.24, 15.36, 20.48, 30.72, 40.96, 61.44, 81.92, 122.88, 163.84, 245.76, 327.68, 491.52,
];

/** Milliseconds of an encoded min_rnr_timer (0..31). */
export function ibRnrTimerMs(code: number): number {
  return RNR_TIMER_MS[code & 31];
}

/**
 * Local ACK timeout of an encoded `timeout` attribute: 4.096 us * 2^timeout, in ms; 0 means
 * infinite (returns Infinity).
 */
export function ibAckTimeoutMs(code: number): number {
  return code === 0 ? Number.POSITIVE_INFINITY : 4.096e-3 * 2 ** code;
}

/** rnr_retry = 7 means "retry forever" (IBA 9.7.5.2.8). */
export const IB_RNR_RETRY_INFINITE = 7;

/** Largest message one work request may carry (ibv_port_attr.max_msg_sz of the emulated port). */
export const IB_MAX_MSG_SZ = 2 ** 31;

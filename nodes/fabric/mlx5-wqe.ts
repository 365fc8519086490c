/**
 * Work queue and completion queue entries of the mlx5-style HCA, and the work-queue ring rules
 * the userspace provider and the device share (mlx5's WQE/CQE formats reduced to one 64-byte
 * ring slot each, ring-layout.ts supplying ownership).
 *
 * DOC: kernel bypass
 * Userspace (nodes/uapi/verbs.ts) writes send and receive WQEs straight into the QP's SQ/RQ
 * rings, publishes them with the slot's SEQ word and rings the HCA's UAR doorbell once per
 * batch; the device writes CQEs into the CQ ring that userspace polls. No kernel call is on
 * that path, as with libmlx5.
 *
 * DOC: work-queue slots stay posted until completed
 * Unlike the device queue of device-runtime.ts, the device does not hand an SQ/RQ slot back
 * when it reads it: it may read ahead (several requests in flight on the wire) and stores the
 * ring's TAIL only when the WQE is retired, just before its completion is published (or
 * silently when unsignaled), so a poster that counts completions finds that room free, as
 * libmlx5 frees SQ space from CQEs. The slots between TAIL and the producer's position are the
 * outstanding work requests, which is what a software flush needs after the device died (a
 * device dying between the two stores loses that one completion).
 */
import { RingHdr, RingSlot, ringGetU64, ringPutU64, ringSlotBase } from './ring-layout.ts';
import { layoutCheck } from './layout.ts';

/** Send WQE (SQ slot). With IBV_SEND_INLINE, INLINE_LEN and the data words replace the SGE. */
export const SendWqe = {
  OPCODE: 0,
  FLAGS: 1,
  WRID_LO: 2,
  WRID_HI: 3,
  RADDR_LO: 4,
  RADDR_HI: 5,
  RKEY: 6,
  IMM: 7,
  /** Number of SGEs (0 or 1), or the inline byte count when FLAGS has IBV_SEND_INLINE. */
  NSGE: 8,
  SGE_ADDR_LO: 9,
  SGE_ADDR_HI: 10,
  SGE_LEN: 11,
  SGE_LKEY: 12,
  RING_SEQ: RingSlot.SEQ,
} as const;
/** First word of inline data (6 words: MLX5_MAX_INLINE bytes). */
export const SEND_WQE_INLINE = 9;
export const MLX5_MAX_INLINE = 24;
/** SGEs per WQE the emulated HCA supports (max_send_sge / max_recv_sge). */
export const MLX5_MAX_SGE = 1;

/**
 * The operands of an atomic send WQE (IBV_WR_ATOMIC_CMP_AND_SWP / _FETCH_AND_ADD), in the words
 * IMM, NSGE and the two after SGE_LKEY: an atomic always has exactly one 8-byte SGE (the local
 * buffer the original value is returned into), so its NSGE word is free. Each operand is a u64
 * as two u32 words, low first. FETCH_AND_ADD uses COMPARE_ADD only.
 */
export const AtomicWqe = {
  COMPARE_ADD_LO: 7,
  COMPARE_ADD_HI: 8,
  SWAP_LO: 13,
  SWAP_HI: 14,
} as const;
/** Bytes an atomic operates on (and returns into its local SGE). */
export const ATOMIC_BYTES = 8;

/** Receive WQE (RQ slot). */
export const RecvWqe = {
  WRID_LO: 0,
  WRID_HI: 1,
  NSGE: 2,
  ADDR_LO: 3,
  ADDR_HI: 4,
  LEN: 5,
  LKEY: 6,
  RING_SEQ: RingSlot.SEQ,
} as const;

/** Completion entry (CQ slot): struct ibv_wc's fields. */
export const Cqe64 = {
  WRID_LO: 0,
  WRID_HI: 1,
  /** IbvWcStatus. */
  STATUS: 2,
  /** IbvWcOpcode. */
  OPCODE: 3,
  BYTE_LEN: 4,
  IMM: 5,
  QPN: 6,
  WC_FLAGS: 7,
  VENDOR_ERR: 8,
  SRC_QP: 9,
  RING_SEQ: RingSlot.SEQ,
} as const;

layoutCheck('SendWqe', SendWqe, 16, 64);
layoutCheck('RecvWqe', RecvWqe, 16, 64);
layoutCheck('Cqe64', Cqe64, 16, 64);

/** struct ibv_wc as poll_cq returns it. */
export interface IbvWc {
  wr_id: number;
  status: number;
  opcode: number;
  vendor_err: number;
  byte_len: number;
  imm_data: number;
  qp_num: number;
  src_qp: number;
  wc_flags: number;
}

/** Decode the CQE at word `base` into `wc` (plain reads: the ring's SEQ load came first). */
export function cqeRead(w: Int32Array, base: number, wc: IbvWc): void {
  wc.wr_id = ringGetU64(w, base + Cqe64.WRID_LO);
  wc.status = w[base + Cqe64.STATUS];
  wc.opcode = w[base + Cqe64.OPCODE];
  wc.vendor_err = w[base + Cqe64.VENDOR_ERR];
  wc.byte_len = w[base + Cqe64.BYTE_LEN] >>> 0;
  wc.imm_data = w[base + Cqe64.IMM] >>> 0;
  wc.qp_num = w[base + Cqe64.QPN];
  wc.src_qp = w[base + Cqe64.SRC_QP];
  wc.wc_flags = w[base + Cqe64.WC_FLAGS];
}

/** Encode a CQE at word `base`; the caller commits the slot. */
export function cqeWrite(
  w: Int32Array,
  base: number,
  wrId: number,
  status: number,
  opcode: number,
  byteLen: number,
  imm: number,
  qpn: number,
  wcFlags: number,
): void {
  ringPutU64(w, base + Cqe64.WRID_LO, wrId);
  w[base + Cqe64.STATUS] = status;
  w[base + Cqe64.OPCODE] = opcode;
  w[base + Cqe64.BYTE_LEN] = byteLen | 0;
  w[base + Cqe64.IMM] = imm | 0;
  w[base + Cqe64.QPN] = qpn;
  w[base + Cqe64.WC_FLAGS] = wcFlags;
  w[base + Cqe64.VENDOR_ERR] = 0;
  w[base + Cqe64.SRC_QP] = 0;
}

/**
 * Slot word index of work-queue position `pos` if it holds a posted WQE, else -1. Any position
 * from the consumer's TAIL onwards may be asked (read-ahead). `mask` is slots - 1.
 */
export function wqPeekAt(w: Int32Array, mask: number, pos: number): number {
  const base = ringSlotBase(pos & mask);
  // acquire: SEQ first; the WQE words read after this load are the poster's.
  return Atomics.load(w, base + RingSlot.SEQ) === ((pos + 1) | 0) ? base : -1;
}

/** Retire every position before `tail`: the producer may reuse those slots. */
export function wqRetire(w: Int32Array, tail: number): void {
  // release: the WQE's words were read (and its completion written) before this store.
  Atomics.store(w, RingHdr.TAIL, tail | 0);
}

/** The consumer's TAIL (first position not yet retired). */
export function wqTail(w: Int32Array): number {
  return Atomics.load(w, RingHdr.TAIL) | 0;
}

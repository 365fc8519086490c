/**
 * RDMA atomics at the responder (IBA 9.4.5; kernel-semantics §7 rules 15-16):
 * IBV_WR_ATOMIC_CMP_AND_SWP and IBV_WR_ATOMIC_FETCH_AND_ADD on one naturally aligned u64 of an
 * MR, in host byte order (ConnectX-4 and later on a little-endian host; Connect-IB's big-endian
 * reply is not modelled). The original value goes back to the requester, which writes it into
 * its 8-byte local buffer.
 *
 * Atomicity is IBV_ATOMIC_HCA, as mlx5 reports it: one worker runs every atomic of this HCA, one
 * after the other, so no two of them interleave; CPU stores and other HCAs are not ordered with
 * them, as on hardware. The read and the write-back are two announced accesses (mlx5-mkey.ts
 * DOC: zap): a zap between them makes the write fault, nothing is written, and the whole atomic
 * runs again after the re-map (the value read first is not used).
 *
 * Checks (atomicCheck), in this order: the responder QP's qp_access_flags grant REMOTE_ATOMIC
 * (else NAK access); the address is 8-byte aligned (else NAK invalid request: the requester
 * completes IBV_WC_REM_INV_REQ_ERR); the rkey is valid, of the QP's PD, covers the 8 bytes and
 * grants REMOTE_ATOMIC (else NAK access: IBV_WC_REM_ACCESS_ERR).
 *
 * Runs in the device worker.
 */
import { IbvAccess, IbvWrOpcode } from '../../fabric/mlx5-ib-abi.ts';
import { ATOMIC_BYTES } from '../../fabric/mlx5-wqe.ts';
import { type MkeyEngine, Xfer } from './mlx5-mkey.ts';
import type { QpHw } from './mlx5-qp.ts';
import { Resp } from './mlx5-responder.ts';

/** An atomic request: the opcode and its u64 operands as u32 halves (FETCH_AND_ADD: cmp is the addend). */
export interface AtomicOperands {
  op: number;
  cmpLo: number;
  cmpHi: number;
  swpLo: number;
  swpHi: number;
}

const REMOTE_ATOMIC = IbvAccess.IBV_ACCESS_REMOTE_ATOMIC;
const cur = new Uint8Array(ATOMIC_BYTES);
const curW = new Uint32Array(cur.buffer);
const next = new Uint8Array(ATOMIC_BYTES);
const nextW = new Uint32Array(next.buffer);
const res = new Uint8Array(ATOMIC_BYTES);
const resW = new Uint32Array(res.buffer);

/** The responder checks of an atomic at `raddr` through `rkey` on responder QP `qp`. */
export function atomicCheck(eng: MkeyEngine, qp: QpHw, raddr: number, rkey: number): Resp {
  if ((qp.attrs.accessFlags & REMOTE_ATOMIC) === 0) return Resp.NAK_ACCESS;
  if (raddr % ATOMIC_BYTES !== 0) return Resp.NAK_INV_REQ;
  if (!eng.check(rkey, qp.pd, raddr, ATOMIC_BYTES, REMOTE_ATOMIC)) return Resp.NAK_ACCESS;
  return Resp.ACK;
}

/**
 * Read, modify and write the u64 at (`rkey`, `raddr`) for responder QP `qpn`; the original value
 * goes to `orig` (lo, hi). Checked by atomicCheck first. Returns ACK; RNR when the MR is faulting
 * (nothing was written: run it again later); NAK_ACCESS when the MR cannot be reached.
 */
export function atomicExecute(
  eng: MkeyEngine,
  qpn: number,
  rkey: number,
  raddr: number,
  a: AtomicOperands,
  orig: Uint32Array,
): Resp {
  let x = eng.mrToBytes(rkey, raddr, cur, 0, ATOMIC_BYTES, qpn, false);
  if (x !== Xfer.OK) return x === Xfer.SRC_FAULT ? Resp.RNR : Resp.NAK_ACCESS;
  const lo = curW[0];
  const hi = curW[1];
  orig[0] = lo;
  orig[1] = hi;
  if (a.op === IbvWrOpcode.IBV_WR_ATOMIC_FETCH_AND_ADD) {
    const sum = lo + a.cmpLo; // u32 + u32: exact in a double
    nextW[0] = sum >>> 0;
    nextW[1] = (hi + a.cmpHi + (sum > 0xffffffff ? 1 : 0)) >>> 0;
  } else {
    // a compare that fails writes nothing.
    if (lo !== a.cmpLo || hi !== a.cmpHi) return Resp.ACK;
    nextW[0] = a.swpLo;
    nextW[1] = a.swpHi;
  }
  x = eng.bytesToMr(next, 0, rkey, raddr, ATOMIC_BYTES, qpn, false);
  if (x === Xfer.OK) return Resp.ACK;
  return x === Xfer.DST_FAULT ? Resp.RNR : Resp.NAK_ACCESS;
}

/** `orig` (lo, hi) as the 8 bytes the requester writes into its local buffer. */
export function atomicResultBytes(orig: Uint32Array): Uint8Array {
  resW[0] = orig[0];
  resW[1] = orig[1];
  return res;
}

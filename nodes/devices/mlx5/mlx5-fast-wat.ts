/**
 * The source of the HCA's wasm data path (mlx5-fast.ts): the WebAssembly text of one function,
 * `loopback(icm)`, that runs a loopback QP's send queue as far as every WQE is the common case,
 * with the layout constants of fabric/ interpolated so the text cannot drift from them.
 * scripts/build-wasm.ts compiles it (wabt) into mlx5-fast-wasm.ts; a test checks that the
 * committed binary is this text compiled.
 *
 * The common case, each condition checked here exactly as the JavaScript path checks it
 * (mlx5-requester.ts decodeSend, mlx5-responder.ts respondLocal, mlx5-mkey.ts check/usable/hit):
 *  - an RDMA WRITE, one SGE of 1..MLX5_DMA_CHUNK bytes or 1..MLX5_MAX_INLINE bytes inline;
 *  - lkey (not inline): valid, of the QP's PD, covering the SGE; rkey: valid, of the responder's PD, covering
 *    [raddr, raddr + len) with REMOTE_WRITE, and the responder QP allows REMOTE_WRITE;
 *  - a signalled WQE finds room in its CQ;
 *  - inside the announced access (ACTIVE store, DOC: zap): both mkeys (the destination's only,
 *    inline) XLT = PRESENT with the same key, no TPH on either, and the translation-cache entries (ICM words, mirrored by
 *    MkeyEngine) hold the range under the current XLT_GEN and DevCtx INVAL.
 * The first WQE that is not the common case stops the loop with nothing of it done (an ACTIVE
 * store and clear aside), and the JavaScript path takes it from there: faults, NAKs, errors, CQ
 * overrun, RNR and every other opcode stay there.
 *
 * Memory: everything named is in the host arena (the function's only memory): the HCA context,
 * the SQ and CQ rings, the ICM block, and both MRs' bytes. Atomics are wasm's (sequentially
 * consistent, like Atomics.*); plain loads of the WQE after its SEQ load, plain CQE stores before
 * the CQE's SEQ store, as the JavaScript path does.
 */
import { IbvAccess, IbvSendFlags, IbvWcOpcode, IbvWrOpcode } from '../../fabric/mlx5-ib-abi.ts';
import {
  CacheEntry,
  hcaMkeyBase,
  Mlx5Icm,
  MLX5_DMA_CHUNK,
  MLX5_MAX_MKEY,
  Mlx5Ctl,
  Mlx5Mkey,
  Mlx5MkeyState,
  Mlx5Xlt,
} from '../../fabric/mlx5-layout.ts';
import { Cqe64, MLX5_MAX_INLINE, SEND_WQE_INLINE, SendWqe } from '../../fabric/mlx5-wqe.ts';
import { RING_HDR_WORDS, RingHdr, RingSlot } from '../../fabric/ring-layout.ts';

const W = 4; // bytes per word

/** The module's text. */
export function mlx5FastWat(): string {
  const mk0 = hcaMkeyBase(0) * W;
  const mkStride = (hcaMkeyBase(1) - hcaMkeyBase(0)) * W;
  const slot0 = RING_HDR_WORDS * W;
  const seq = RingSlot.SEQ * W;
  const icm = (w: number): string => `offset=${w * W}`;
  const mk = (w: number): string => `offset=${w * W}`;
  const wqe = (w: number): string => `offset=${w * W}`;
  const cqe = (w: number): string => `offset=${w * W}`;
  return `(module
  (import "e" "m" (memory 0 65536 shared))

  ;; mkey check (MkeyEngine.check): 1 if key is valid, of pd, grants access, covers [iova, iova+len)
  (func $check (param $hca i32) (param $key i32) (param $pd i32) (param $iova i64) (param $len i64)
      (param $access i32) (result i32)
    (local $idx i32) (local $mb i32) (local $start i64)
    (local.set $idx (i32.and (i32.shr_u (local.get $key) (i32.const 8)) (i32.const 0xffffff)))
    (if (i32.or (i32.eqz (local.get $idx)) (i32.ge_u (local.get $idx) (i32.const ${MLX5_MAX_MKEY})))
      (then (return (i32.const 0))))
    (local.set $mb (i32.add (local.get $hca)
      (i32.add (i32.const ${mk0}) (i32.mul (local.get $idx) (i32.const ${mkStride})))))
    (if (i32.ne (i32.load ${mk(Mlx5Mkey.STATE)} (local.get $mb)) (i32.const ${Mlx5MkeyState.VALID}))
      (then (return (i32.const 0))))
    (if (i32.ne (i32.load ${mk(Mlx5Mkey.KEY)} (local.get $mb)) (local.get $key)) (then (return (i32.const 0))))
    (if (i32.ne (i32.load ${mk(Mlx5Mkey.PD)} (local.get $mb)) (local.get $pd)) (then (return (i32.const 0))))
    (if (i32.ne (i32.and (i32.load ${mk(Mlx5Mkey.ACCESS)} (local.get $mb)) (local.get $access)) (local.get $access))
      (then (return (i32.const 0))))
    (local.set $start (i64.load ${mk(Mlx5Mkey.IOVA_LO)} (local.get $mb)))
    (if (i64.lt_u (local.get $iova) (local.get $start)) (then (return (i32.const 0))))
    (i64.le_u (i64.add (local.get $iova) (local.get $len))
      (i64.add (local.get $start) (i64.load ${mk(Mlx5Mkey.LEN_LO)} (local.get $mb)))))

  ;; usable (MkeyEngine.usable, its first test): XLT = PRESENT and the same key; inside the access.
  ;; And no TPH (MkeyEngine.tphOf is 0 when TPH_EN is 0).
  (func $usable (param $mb i32) (param $key i32) (result i32)
    (if (i32.ne (i32.atomic.load ${mk(Mlx5Mkey.XLT)} (local.get $mb)) (i32.const ${Mlx5Xlt.PRESENT}))
      (then (return (i32.const 0))))
    (if (i32.ne (i32.load ${mk(Mlx5Mkey.KEY)} (local.get $mb)) (local.get $key)) (then (return (i32.const 0))))
    (i32.eqz (i32.load ${mk(Mlx5Mkey.TPH_EN)} (local.get $mb))))

  ;; translation cache hit (MkeyEngine.hit): the arena address of iova, or -1
  (func $hit (param $c i32) (param $mb i32) (param $idx i32) (param $iova i64) (param $len i64)
      (param $inval i32) (result i32)
    (local $i0 i64)
    (if (i32.ne (i32.load offset=${CacheEntry.IDX * W} (local.get $c)) (local.get $idx)) (then (return (i32.const -1))))
    (local.set $i0 (i64.load offset=${CacheEntry.I0_LO * W} (local.get $c)))
    (if (i64.lt_u (local.get $iova) (local.get $i0)) (then (return (i32.const -1))))
    (if (i64.gt_u (i64.add (local.get $iova) (local.get $len)) (i64.load offset=${CacheEntry.I1_LO * W} (local.get $c)))
      (then (return (i32.const -1))))
    (if (i32.ne (i32.load offset=${CacheEntry.INVAL * W} (local.get $c)) (local.get $inval)) (then (return (i32.const -1))))
    (if (i32.ne (i32.load ${mk(Mlx5Mkey.XLT_GEN)} (local.get $mb)) (i32.load offset=${CacheEntry.GEN * W} (local.get $c)))
      (then (return (i32.const -1))))
    (i32.add (i32.load offset=${CacheEntry.OFF * W} (local.get $c)) (i32.wrap_i64 (i64.sub (local.get $iova) (local.get $i0)))))

  ;; the copy (fabric/dma.ts dmaCopyBytes): up to 16 bytes in ascending order; beyond, one
  ;; memmove and then the last 16 bytes again unless the ranges overlap (a poller of the last
  ;; byte sees the whole message)
  (func $copy (param $d i32) (param $s i32) (param $n i32)
    (local $i i32)
    (if (i32.le_u (local.get $n) (i32.const 16))
      (then
        (block $done (loop $byte
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (i32.store8 (i32.add (local.get $d) (local.get $i)) (i32.load8_u (i32.add (local.get $s) (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $byte)))
        (return)))
    ;; overlap: either difference, taken unsigned, is below n
    (if (i32.or (i32.lt_u (i32.sub (local.get $d) (local.get $s)) (local.get $n))
                (i32.lt_u (i32.sub (local.get $s) (local.get $d)) (local.get $n)))
      (then (memory.copy (local.get $d) (local.get $s) (local.get $n)) (return)))
    (local.set $i (i32.sub (local.get $n) (i32.const 16)))
    (memory.copy (local.get $d) (local.get $s) (local.get $i))
    (i64.store (i32.add (local.get $d) (local.get $i)) (i64.load (i32.add (local.get $s) (local.get $i))))
    (i64.store offset=8 (i32.add (local.get $d) (local.get $i)) (i64.load offset=8 (i32.add (local.get $s) (local.get $i)))))

  ;; Run the SQ described by the ICM block at byte address $icm; returns WQEs retired.
  (func (export "loopback") (param $icm i32) (result i32)
    (local $sq i32) (local $mask i32) (local $tail i32) (local $cq i32) (local $cqmask i32)
    (local $head i32) (local $tailc i32) (local $hca i32) (local $pd i32) (local $rpd i32)
    (local $seq i32) (local $inval i32) (local $n i32) (local $cqes i32) (local $b i32)
    (local $flags i32) (local $len i32) (local $lkey i32) (local $rkey i32) (local $laddr i64)
    (local $raddr i64) (local $si i32) (local $di i32) (local $ms i32) (local $md i32)
    (local $so i32) (local $do i32) (local $cb i32) (local $inl i32) (local $invalAt i32) (local $wrid i64)
    (local.set $sq (i32.load ${icm(Mlx5Icm.SQ)} (local.get $icm)))
    (local.set $mask (i32.load ${icm(Mlx5Icm.SQ_MASK)} (local.get $icm)))
    (local.set $tail (i32.load ${icm(Mlx5Icm.SQ_TAIL)} (local.get $icm)))
    (local.set $cq (i32.load ${icm(Mlx5Icm.CQ)} (local.get $icm)))
    (local.set $cqmask (i32.load ${icm(Mlx5Icm.CQ_MASK)} (local.get $icm)))
    (local.set $head (i32.load ${icm(Mlx5Icm.CQ_HEAD)} (local.get $icm)))
    (local.set $tailc (i32.load ${icm(Mlx5Icm.CQ_TAILC)} (local.get $icm)))
    (local.set $hca (i32.load ${icm(Mlx5Icm.HCA)} (local.get $icm)))
    (local.set $pd (i32.load ${icm(Mlx5Icm.PD)} (local.get $icm)))
    (local.set $rpd (i32.load ${icm(Mlx5Icm.R_PD)} (local.get $icm)))
    (local.set $seq (i32.load ${icm(Mlx5Icm.SEQ)} (local.get $icm)))
    (local.set $invalAt (i32.load ${icm(Mlx5Icm.INVAL_AT)} (local.get $icm)))
    ;; a responder QP without REMOTE_WRITE NAKs every WRITE: the JavaScript path's business
    (if (i32.eqz (i32.and (i32.load ${icm(Mlx5Icm.R_ACCESS)} (local.get $icm)) (i32.const ${IbvAccess.IBV_ACCESS_REMOTE_WRITE})))
      (then (return (i32.const 0))))
    (block $stop (loop $next
      (local.set $b (i32.add (local.get $sq) (i32.add (i32.const ${slot0}) (i32.shl (i32.and (local.get $tail) (local.get $mask)) (i32.const 6)))))
      ;; acquire: SEQ first (wqPeekAt)
      (br_if $stop (i32.ne (i32.atomic.load offset=${seq} (local.get $b)) (i32.add (local.get $tail) (i32.const 1))))
      (br_if $stop (i32.ne (i32.load ${wqe(SendWqe.OPCODE)} (local.get $b)) (i32.const ${IbvWrOpcode.IBV_WR_RDMA_WRITE})))
      (local.set $flags (i32.load ${wqe(SendWqe.FLAGS)} (local.get $b)))
      (local.set $inl (i32.and (local.get $flags) (i32.const ${IbvSendFlags.IBV_SEND_INLINE})))
      (if (local.get $inl)
        (then
          ;; inline data: NSGE is its byte count, the bytes follow in the WQE (decodeSend)
          (local.set $len (i32.load ${wqe(SendWqe.NSGE)} (local.get $b)))
          (br_if $stop (i32.or (i32.eqz (local.get $len)) (i32.gt_u (local.get $len) (i32.const ${MLX5_MAX_INLINE}))))
          (local.set $si (i32.const -1)))
        (else
          (br_if $stop (i32.ne (i32.load ${wqe(SendWqe.NSGE)} (local.get $b)) (i32.const 1)))
          (local.set $len (i32.load ${wqe(SendWqe.SGE_LEN)} (local.get $b)))
          (br_if $stop (i32.or (i32.eqz (local.get $len)) (i32.gt_u (local.get $len) (i32.const ${MLX5_DMA_CHUNK}))))
          (local.set $lkey (i32.load ${wqe(SendWqe.SGE_LKEY)} (local.get $b)))
          (local.set $laddr (i64.load ${wqe(SendWqe.SGE_ADDR_LO)} (local.get $b)))
          ;; an address the JavaScript path holds as a double only (>= 2^53) is its business;
          ;; below it, iova + len cannot wrap in 64 bits
          (br_if $stop (i64.ne (i64.shr_u (local.get $laddr) (i64.const 53)) (i64.const 0)))
          (br_if $stop (i32.eqz (call $check (local.get $hca) (local.get $lkey) (local.get $pd) (local.get $laddr)
            (i64.extend_i32_u (local.get $len)) (i32.const 0))))
          (local.set $si (i32.and (i32.shr_u (local.get $lkey) (i32.const 8)) (i32.const 0xffffff)))))
      (local.set $rkey (i32.load ${wqe(SendWqe.RKEY)} (local.get $b)))
      (local.set $raddr (i64.load ${wqe(SendWqe.RADDR_LO)} (local.get $b)))
      (br_if $stop (i64.ne (i64.shr_u (local.get $raddr) (i64.const 53)) (i64.const 0)))
      ;; so is a wr_id of 2^53 or more (ringGetU64 rounds it; a CQE here would copy it exactly)
      (br_if $stop (i64.ne (i64.shr_u (i64.load ${wqe(SendWqe.WRID_LO)} (local.get $b)) (i64.const 53)) (i64.const 0)))
      (br_if $stop (i32.eqz (call $check (local.get $hca) (local.get $rkey) (local.get $rpd) (local.get $raddr)
        (i64.extend_i32_u (local.get $len)) (i32.const ${IbvAccess.IBV_ACCESS_REMOTE_WRITE}))))
      ;; a signalled WQE needs CQ room (RingProducer.claim); a full CQ is the overrun path's
      (if (i32.and (local.get $flags) (i32.const ${IbvSendFlags.IBV_SEND_SIGNALED}))
        (then
          (if (i32.gt_u (i32.sub (local.get $head) (local.get $tailc)) (local.get $cqmask))
            (then
              (local.set $tailc (i32.atomic.load offset=${RingHdr.TAIL * W} (local.get $cq)))
              (br_if $stop (i32.gt_u (i32.sub (local.get $head) (local.get $tailc)) (local.get $cqmask)))))))
      (local.set $di (i32.and (i32.shr_u (local.get $rkey) (i32.const 8)) (i32.const 0xffffff)))
      (local.set $ms (i32.add (local.get $hca) (i32.add (i32.const ${mk0}) (i32.mul (local.get $si) (i32.const ${mkStride})))))
      (local.set $md (i32.add (local.get $hca) (i32.add (i32.const ${mk0}) (i32.mul (local.get $di) (i32.const ${mkStride})))))
      ;; announce the access (mlx5ActiveWord; an inline WRITE names no source: si + 1 = 0), then
      ;; the translation state (DOC: zap)
      (i32.atomic.store offset=${Mlx5Ctl.ACTIVE * W} (local.get $hca)
        (i32.or (i32.shl (i32.and (local.get $seq) (i32.const 63)) (i32.const 26))
          (i32.or (i32.shl (i32.add (local.get $di) (i32.const 1)) (i32.const 13)) (i32.add (local.get $si) (i32.const 1)))))
      (local.set $seq (i32.add (local.get $seq) (i32.const 1)))
      ;; DevCtx INVAL inside the access, per WQE (MkeyEngine.copyMr): the IOTLB's rule
      (local.set $inval (i32.atomic.load (local.get $invalAt)))
      (local.set $so (i32.const -1))
      (local.set $do (i32.const -1))
      (if (call $usable (local.get $md) (local.get $rkey))
        (then
          (if (local.get $inl)
            (then (local.set $so (i32.add (local.get $b) (i32.const ${SEND_WQE_INLINE * W}))))
            (else (if (call $usable (local.get $ms) (local.get $lkey))
              (then (local.set $so (call $hit (i32.add (local.get $icm) (i32.const ${Mlx5Icm.CACHE_SRC * W}))
                (local.get $ms) (local.get $si) (local.get $laddr) (i64.extend_i32_u (local.get $len)) (local.get $inval)))))))
          (if (i32.ne (local.get $so) (i32.const -1))
            (then (local.set $do (call $hit (i32.add (local.get $icm) (i32.const ${Mlx5Icm.CACHE_DST * W})) (local.get $md)
              (local.get $di) (local.get $raddr) (i64.extend_i32_u (local.get $len)) (local.get $inval)))))))
      (if (i32.ne (local.get $do) (i32.const -1))
        (then (call $copy (local.get $do) (local.get $so) (local.get $len))))
      ;; the access is over: a waiting zap may return now
      (i32.atomic.store offset=${Mlx5Ctl.ACTIVE * W} (local.get $hca) (i32.const 0))
      (br_if $stop (i32.eq (local.get $do) (i32.const -1)))
      ;; retire (wqRetire), then the CQE if signalled (QpHw.completeSend, cqeWrite, commit); the
      ;; wr_id is read first: once TAIL moves, the poster may reuse the slot
      (local.set $wrid (i64.load ${wqe(SendWqe.WRID_LO)} (local.get $b)))
      (local.set $tail (i32.add (local.get $tail) (i32.const 1)))
      (i32.atomic.store offset=${RingHdr.TAIL * W} (local.get $sq) (local.get $tail))
      (if (i32.and (local.get $flags) (i32.const ${IbvSendFlags.IBV_SEND_SIGNALED}))
        (then
          (local.set $cb (i32.add (local.get $cq) (i32.add (i32.const ${slot0}) (i32.shl (i32.and (local.get $head) (local.get $cqmask)) (i32.const 6)))))
          (i64.store ${cqe(Cqe64.WRID_LO)} (local.get $cb) (local.get $wrid))
          (i32.store ${cqe(Cqe64.STATUS)} (local.get $cb) (i32.const 0))
          (i32.store ${cqe(Cqe64.OPCODE)} (local.get $cb) (i32.const ${IbvWcOpcode.IBV_WC_RDMA_WRITE}))
          (i32.store ${cqe(Cqe64.BYTE_LEN)} (local.get $cb) (i32.const 0))
          (i32.store ${cqe(Cqe64.IMM)} (local.get $cb) (i32.const 0))
          (i32.store ${cqe(Cqe64.QPN)} (local.get $cb) (i32.load ${icm(Mlx5Icm.QPN)} (local.get $icm)))
          (i32.store ${cqe(Cqe64.WC_FLAGS)} (local.get $cb) (i32.const 0))
          (i32.store ${cqe(Cqe64.VENDOR_ERR)} (local.get $cb) (i32.const 0))
          (i32.store ${cqe(Cqe64.SRC_QP)} (local.get $cb) (i32.const 0))
          (local.set $head (i32.add (local.get $head) (i32.const 1)))
          ;; publish: the CQE's words were plain stores (RingProducer.commit)
          (i32.atomic.store offset=${seq} (local.get $cb) (local.get $head))
          (local.set $cqes (i32.add (local.get $cqes) (i32.const 1)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $next)))
    (i32.store ${icm(Mlx5Icm.SQ_TAIL)} (local.get $icm) (local.get $tail))
    (i32.store ${icm(Mlx5Icm.CQ_HEAD)} (local.get $icm) (local.get $head))
    (i32.store ${icm(Mlx5Icm.CQ_TAILC)} (local.get $icm) (local.get $tailc))
    (i32.store ${icm(Mlx5Icm.SEQ)} (local.get $icm) (local.get $seq))
    (i32.store ${icm(Mlx5Icm.CQES)} (local.get $icm) (local.get $cqes))
    (if (local.get $n)
      (then (drop (i32.atomic.rmw.add offset=${Mlx5Ctl.STAT_FAST_WQES * W} (local.get $hca) (local.get $n)))))
    (local.get $n))
)
`;
}

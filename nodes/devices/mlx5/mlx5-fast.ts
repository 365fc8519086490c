/**
 * The HCA's wasm data path: a loopback QP's common-case RDMA WRITEs run in one wasm call
 * (mlx5-fast-wat.ts says which, and why each check matches the JavaScript path), where V8 makes
 * every atomic an inline instruction instead of a builtin call. Measured on this project's
 * machines: the per-WQE work of decode, key checks, ACTIVE announce, copy and CQE written from
 * JavaScript cost 0.2-0.4 us more per round trip than the same protocol from wasm.
 *
 * Available when the host has an arena holding the HCA context, the QP's SQ, its send CQ and the
 * ICM block (the kernel puts them there: mlx5-ib.ts), because a wasm function reaches one memory
 * only. Otherwise, or for anything but the common case, the JavaScript path runs unchanged.
 *
 * State: the JavaScript objects (QpHw, CqHw's ring, MkeyEngine) stay the owners. loopback()
 * copies what the call needs into the ICM block and takes the results back; the translation
 * cache is mirrored into the ICM as MkeyEngine fills it (cacheSet/cacheClear). All on the device
 * worker's thread.
 */
import { DevCtx } from '../../fabric/iommu-layout.ts';
import { CacheEntry, MLX5_ICM_WORDS, Mlx5Ctl, Mlx5Icm } from '../../fabric/mlx5-layout.ts';
import { type PhysArenaDescriptor, physArenaCopy, type PhysArenaCopy } from '../../fabric/phys-arena.ts';
import { RING_IN_ARENA, RingHdr } from '../../fabric/ring-layout.ts';
import { MLX5_FAST_WASM_BASE64 } from './mlx5-fast-wasm.ts';
import type { CqHw, QpHw } from './mlx5-qp.ts';

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
const TWO32 = 2 ** 32;

let fastModule: object | null = null;

/** Which translation-cache side an entry mirrors (MkeyEngine's cs / cd). */
export const FastSide = { SRC: Mlx5Icm.CACHE_SRC, DST: Mlx5Icm.CACHE_DST } as const;
export type FastSide = (typeof FastSide)[keyof typeof FastSide];

export class Mlx5Fast {
  /** The arena's copy function on this thread: a cache entry mirrors only regions of this arena. */
  readonly copy: PhysArenaCopy;
  private readonly icm: Int32Array;
  private readonly icmAt: number;
  private readonly run: (icm: number) => number;
  /** The QP of the last loopback() call (its constant ICM words are in place). */
  private last: QpHw | null = null;

  private constructor(arena: PhysArenaDescriptor, hca: Int32Array, icm: Int32Array, devCtx: Int32Array) {
    fastModule ??= new Wasm.Module(Buffer.from(MLX5_FAST_WASM_BASE64, 'base64'));
    const inst = new Wasm.Instance(fastModule, { e: { m: arena.memory } });
    this.run = inst.exports.loopback as (icm: number) => number;
    this.copy = physArenaCopy(arena);
    this.icm = icm;
    this.icmAt = icm.byteOffset;
    icm[Mlx5Icm.HCA] = hca.byteOffset;
    icm[Mlx5Icm.INVAL_AT] = devCtx.byteOffset + DevCtx.INVAL * 4;
    this.cacheClear(FastSide.SRC);
    this.cacheClear(FastSide.DST);
  }

  /**
   * The wasm path for an HCA whose context, ICM and IOMMU device entry (`devCtx`, its INVAL word)
   * are in `arena`, or null (no arena, one of them outside it, or an ICM too small).
   * Called by: INIT_HCA, device worker.
   */
  static create(
    arena: PhysArenaDescriptor | null,
    hca: Int32Array,
    icm: Int32Array | null,
    devCtx: Int32Array,
  ): Mlx5Fast | null {
    if (arena === null || icm === null || icm.length < MLX5_ICM_WORDS) return null;
    if (Atomics.load(hca, Mlx5Ctl.IN_ARENA) !== 1 || devCtx[DevCtx.IN_ARENA] !== 1) return null;
    return new Mlx5Fast(arena, hca, icm, devCtx);
  }

  /** May QP `qp` (its SQ and send CQ) use the wasm path? Decided once, at CREATE_QP. */
  static reaches(qp: QpHw): boolean {
    return qp.sq[RingHdr.FLAGS] === RING_IN_ARENA && qp.sendCq.ring.words[RingHdr.FLAGS] === RING_IN_ARENA;
  }

  /**
   * Mirror a translation-cache entry (DOC: translation cache in mlx5-mkey.ts): iova [i0, i1) of
   * mkey `idx` is arena byte `at` onwards, under XLT_GEN `gen` and DevCtx INVAL `inval`.
   */
  cacheSet(
    side: FastSide,
    idx: number,
    gen: number,
    inval: number,
    at: number,
    i0: number,
    i1: number,
  ): void {
    const w = this.icm;
    w[side + CacheEntry.IDX] = idx;
    w[side + CacheEntry.GEN] = gen;
    w[side + CacheEntry.INVAL] = inval;
    w[side + CacheEntry.OFF] = at;
    w[side + CacheEntry.I0_LO] = i0 % TWO32;
    w[side + CacheEntry.I0_LO + 1] = Math.floor(i0 / TWO32);
    w[side + CacheEntry.I1_LO] = i1 % TWO32;
    w[side + CacheEntry.I1_LO + 1] = Math.floor(i1 / TWO32);
  }

  /** The entry is empty (or names memory outside the arena). */
  cacheClear(side: FastSide): void {
    this.icm[side + CacheEntry.IDX] = -1;
  }

  /**
   * Run loopback QP `qp` (RTS, nothing pending: no retry timer, stall or counts; its send CQ not
   * overrun) against responder `peer` (RTR or RTS) as far as the common case goes. Returns WQEs
   * retired; the caller's JavaScript path continues from qp.sqTail. `seq` is the engine's ACTIVE
   * sequence; the new one is fastSeq afterwards.
   */
  loopback(qp: QpHw, peer: QpHw, seq: number): number {
    const w = this.icm;
    const cq: CqHw = qp.sendCq;
    const ring = cq.ring;
    if (qp !== this.last) {
      // what does not change while a QP lives: written when the QP differs from the last call's
      this.last = qp;
      w[Mlx5Icm.SQ] = qp.sq.byteOffset;
      w[Mlx5Icm.SQ_MASK] = qp.sqMask;
      w[Mlx5Icm.CQ] = ring.words.byteOffset;
      w[Mlx5Icm.CQ_MASK] = ring.slots - 1;
      w[Mlx5Icm.QPN] = qp.qpn;
      w[Mlx5Icm.PD] = qp.pd;
    }
    w[Mlx5Icm.SQ_TAIL] = qp.sqTail;
    w[Mlx5Icm.CQ_HEAD] = ring.position;
    w[Mlx5Icm.CQ_TAILC] = ring.cachedTail;
    w[Mlx5Icm.R_PD] = peer.pd;
    w[Mlx5Icm.R_ACCESS] = peer.attrs.accessFlags;
    w[Mlx5Icm.SEQ] = seq;
    w[Mlx5Icm.CQES] = 0;
    const n = this.run(this.icmAt);
    if (n === 0) return 0;
    qp.sqTail = w[Mlx5Icm.SQ_TAIL];
    qp.sqNext = qp.sqTail;
    if (w[Mlx5Icm.CQES] > 0) {
      ring.resume(w[Mlx5Icm.CQ_HEAD], w[Mlx5Icm.CQ_TAILC]);
      cq.posted();
    }
    return n;
  }

  /** The ACTIVE sequence after the last loopback() call. */
  get fastSeq(): number {
    return this.icm[Mlx5Icm.SEQ];
  }
}

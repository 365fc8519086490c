/**
 * Queue pairs and completion queues as the HCA holds them: the QP context (state, attributes,
 * requester and responder progress), its SQ/RQ rings (read ahead, retired in order, see
 * fabric/mlx5-wqe.ts) and the CQ rings the device produces completions into.
 *
 * Runs in the device worker; imports only fabric/ and common/.
 */
import { doorbellRing } from '../../fabric/doorbell.ts';
import { IbvQpState, IbvWcOpcode, IbvWcStatus, IbvWrOpcode } from '../../fabric/mlx5-ib-abi.ts';
import {
  hcaCqBase,
  hcaQpBase,
  Mlx5CqArm,
  Mlx5CqCtx,
  Mlx5CqState,
  Mlx5Ctl,
  Mlx5Eqe,
  Mlx5EqeType,
  Mlx5QpCtx,
} from '../../fabric/mlx5-layout.ts';
import { cqeWrite, RecvWqe, SendWqe, wqPeekAt, wqRetire } from '../../fabric/mlx5-wqe.ts';
import { RingProducer } from '../../fabric/ring.ts';
import { type RingMem, ringCheck, ringGetU64, ringWords } from '../../fabric/ring-layout.ts';
import type { WireLink } from '../../fabric/wire.ts';

/** Atomic responses a wire responder keeps for duplicates (>= max_qp_rd_atom). */
export const ATOMIC_SAVED = 16;

/** QP attributes as MODIFY_QP delivers them (the kernel keeps the full set and sends it all). */
export interface QpAttrs {
  state: number;
  accessFlags: number;
  destQpn: number;
  rqPsn: number;
  sqPsn: number;
  /** Encoded min_rnr_timer (what this QP, as responder, asks requesters to wait). */
  minRnrTimer: number;
  /** Encoded local ACK timeout. */
  timeout: number;
  retryCnt: number;
  rnrRetry: number;
  maxRdAtomic: number;
}

/**
 * The event queue as the CQ/QP error paths produce into it (page faults: mlx5-mkey.ts, on the
 * same ring). An event the EQ has no room for waits here and is posted again by retry(), which
 * the HCA loop calls every pass (a full EQ drops nothing for good: at most one event per CQ
 * and one per QP transition wait).
 */
export class EqHw {
  private readonly ring: RingProducer;
  private readonly hca: Int32Array;
  /** Events still to post, as (type, number) pairs in order. */
  private readonly waiting: number[] = [];

  constructor(hca: Int32Array, ring: RingProducer) {
    this.hca = hca;
    this.ring = ring;
  }

  /** Events waiting for EQ room. */
  get pending(): number {
    return this.waiting.length >> 1;
  }

  /** Raise a CQ_ERROR (num = cqn) or QP_ERROR (num = qpn) event, now or when the EQ has room. */
  raise(type: number, num: number): void {
    if (this.waiting.length > 0 || !this.post(type, num)) this.waiting.push(type, num);
  }

  /** Post waiting events as far as the EQ has room. Returns events posted. */
  retry(): number {
    let n = 0;
    while (this.waiting.length > 0 && this.post(this.waiting[0], this.waiting[1])) {
      this.waiting.splice(0, 2);
      n++;
    }
    return n;
  }

  private post(type: number, num: number): boolean {
    const eq = this.ring;
    const s = eq.claim();
    if (s < 0) return false;
    const w = eq.words;
    for (let i = 0; i <= Mlx5Eqe.CQN; i++) w[s + i] = 0;
    w[s + Mlx5Eqe.TYPE] = type;
    if (type === Mlx5EqeType.CQ_ERROR) w[s + Mlx5Eqe.CQN] = num;
    else w[s + Mlx5Eqe.QPN] = num;
    eq.commit();
    eq.flush();
    // the interrupt: the EQE above is published before it.
    doorbellRing(this.hca, Mlx5Ctl.EQ_DB);
    return true;
  }
}

/**
 * A completion queue: the device is its only producer. A CQE that finds it full is a CQ
 * overrun (IB spec 11.4.2.1, mlx5 CQ error): the CQ enters OVERRUN for good, its CQ_ERROR event
 * is raised, and every later CQE for it is dropped. The CQEs written before stay pollable.
 *
 * Completion events (ibv_req_notify_cq, kernel-semantics §7 rule 20): once per batch, notify()
 * looks at the CQ's ARM word; armed NEXT, or SOLICITED with a solicited or error CQE in the
 * batch, it disarms it and counts one event before ringing the doorbell. One arm, at most one
 * event: userspace re-arms, then polls again for what came in between.
 */
export class CqHw {
  readonly cqn: number;
  readonly ring: RingProducer;
  private readonly hca: Int32Array;
  private readonly eq: EqHw;
  private dirty = false;
  /** A solicited or error CQE was written since the last notify(). */
  private solicited = false;
  overrun = false;

  constructor(cqn: number, ring: RingMem, hca: Int32Array, eq: EqHw) {
    this.cqn = cqn;
    this.ring = new RingProducer(ring);
    this.hca = hca;
    this.eq = eq;
  }

  /**
   * Write one CQE; false if it was lost (nothing written): the CQ overran now or before. The
   * caller moves the QP whose completion it was to the error state (QpHw.cqeLost).
   */
  post(
    wrId: number,
    status: number,
    opcode: number,
    byteLen: number,
    imm: number,
    qpn: number,
    flags: number,
    solicited = false,
  ): boolean {
    if (this.overrun) return false;
    const s = this.ring.claim();
    if (s < 0) {
      this.overrun = true;
      Atomics.store(this.hca, hcaCqBase(this.cqn) + Mlx5CqCtx.STATE, Mlx5CqState.OVERRUN);
      this.eq.raise(Mlx5EqeType.CQ_ERROR, this.cqn);
      return false;
    }
    cqeWrite(this.ring.words, s, wrId, status, opcode, byteLen, imm, qpn, flags);
    this.ring.commit();
    this.dirty = true;
    if (solicited || status !== IbvWcStatus.IBV_WC_SUCCESS) this.solicited = true;
    return true;
  }

  /** CQEs were written past this object (the wasm data path, mlx5-fast.ts): notify() publishes. */
  posted(): void {
    this.dirty = true;
  }

  /** Publish HEAD, raise the completion event if armed, ring the CQ's doorbell: once per batch. */
  notify(): void {
    if (!this.dirty) return;
    this.dirty = false;
    this.ring.flush();
    const h = this.hca;
    const base = hcaCqBase(this.cqn);
    const arm = Atomics.load(h, base + Mlx5CqCtx.ARM);
    if (
      (arm === Mlx5CqArm.NEXT || (arm === Mlx5CqArm.SOLICITED && this.solicited)) &&
      Atomics.compareExchange(h, base + Mlx5CqCtx.ARM, arm, Mlx5CqArm.NONE) === arm
    )
      Atomics.add(h, base + Mlx5CqCtx.EVENTS, 1);
    this.solicited = false;
    doorbellRing(h, base + Mlx5CqCtx.DB);
  }
}

/** The local peer of a loopback QP, or the link of a remote one. */
export type QpPeer = { kind: 'local' } | { kind: 'wire'; link: WireLink & { maxPayload: number } };

export class QpHw {
  readonly qpn: number;
  readonly pd: number;
  readonly sq: Int32Array;
  readonly sqMask: number;
  readonly rq: Int32Array;
  readonly rqMask: number;
  readonly sendCq: CqHw;
  readonly recvCq: CqHw;
  private readonly hca: Int32Array;
  private readonly eq: EqHw;
  attrs: QpAttrs;
  peer: QpPeer | null = null;
  // requester: first SQ position not retired / next to start; the retry clock.
  sqTail = 0;
  sqNext = 0;
  /** Bytes of the WQE at sqNext already sent (wire segmentation). */
  segOff = 0;
  retryAt = 0;
  rnrCount = 0;
  retryCount = 0;
  lastProgress = 0;
  /** The SQ and send CQ are in the host arena: loopback WRITEs may take the wasm path (mlx5-fast.ts). */
  fast = false;
  /** Set while a local page fault stalls the requester (cleared by the next attempt). */
  stalled = false;
  /** mkey index whose page fault stalls the requester. */
  stallIdx = 0;
  // wire requester: PSNs
  npsn = 0;
  ackedPsn = -1;
  outReads = 0;
  /** SQ position of a WQE that must complete with pendingStatus when it reaches the tail. */
  pendingErr = -1;
  pendingStatus = 0;
  readonly wqeFirstPsn: Float64Array;
  readonly wqeLastPsn: Float64Array;
  /** Response bytes received for an outstanding READ. */
  readonly wqeReadGot: Float64Array;
  /**
   * Loopback requester: the SQ position whose atomic already ran at the responder, and the
   * original value it returned (lo, hi), kept until the value is in the local buffer so a retry
   * after a local fault does not run the atomic twice. -1: none.
   */
  atomicPos = -1;
  readonly atomicOrig = new Uint32Array(2);
  /**
   * Wire responder: the responses of the last ATOMIC_SAVED atomics it ran (request PSN and the
   * original value), in a ring whose next slot is atomicRespNext, so a duplicate atomic request
   * is answered with the saved value instead of running again (IBA 9.4.5: the responder keeps as
   * many as max_dest_rd_atomic; a requester has at most max_rd_atomic <= ATOMIC_SAVED READs and
   * atomics outstanding, so every one it may still ask for is here). PSN -1: empty.
   */
  readonly atomicRespPsn = new Float64Array(ATOMIC_SAVED).fill(-1);
  readonly atomicRespVal = new Uint32Array(2 * ATOMIC_SAVED);
  atomicRespNext = 0;
  /** Saved slot of an atomic response the link had no room for yet (sent before anything else). */
  atomicRespHeld = -1;
  // responder
  rqTail = 0;
  epsn = 0;
  /** A multi-segment SEND/WRITE_IMM in progress holds the RQ WQE at rqTail. */
  recvBusy = false;
  /** READ responses still to send: READ request PSN, next response offset. */
  readPsn = -1;
  readOff = 0;
  readLen = 0;
  readAddr = 0;
  readKey = 0;
  /** The READ being answered is a duplicate: epsn does not move when it is done. */
  readDup = false;
  ackPending = -1;

  constructor(
    qpn: number,
    pd: number,
    sq: RingMem,
    rq: RingMem,
    sendCq: CqHw,
    recvCq: CqHw,
    hca: Int32Array,
    eq: EqHw,
  ) {
    this.qpn = qpn;
    this.pd = pd;
    const sqSlots = ringCheck(sq);
    this.sq = ringWords(sq);
    this.sqMask = sqSlots - 1;
    this.rq = ringWords(rq);
    this.rqMask = ringCheck(rq) - 1;
    this.sendCq = sendCq;
    this.recvCq = recvCq;
    this.hca = hca;
    this.eq = eq;
    this.wqeFirstPsn = new Float64Array(sqSlots);
    this.wqeLastPsn = new Float64Array(sqSlots);
    this.wqeReadGot = new Float64Array(sqSlots);
    this.attrs = {
      state: IbvQpState.IBV_QPS_RESET,
      accessFlags: 0,
      destQpn: 0,
      rqPsn: 0,
      sqPsn: 0,
      minRnrTimer: 0,
      timeout: 0,
      retryCnt: 0,
      rnrRetry: 0,
      maxRdAtomic: 1,
    };
    this.publishState(IbvQpState.IBV_QPS_RESET);
  }

  get state(): number {
    return this.attrs.state;
  }

  /** Store the state where userspace and the kernel read it. */
  publishState(state: number): void {
    this.attrs.state = state;
    Atomics.store(this.hca, hcaQpBase(this.qpn) + Mlx5QpCtx.STATE, state);
  }

  /** Move to the error state (an error completion or a fatal NAK): everything left is flushed. */
  toError(): void {
    if (this.attrs.state === IbvQpState.IBV_QPS_ERR) return;
    this.publishState(IbvQpState.IBV_QPS_ERR);
    // nothing in flight survives: the flush below retires from sqTail.
    this.sqNext = this.sqTail;
    this.segOff = 0;
    this.readPsn = -1;
    this.recvBusy = false;
    this.outReads = 0;
    this.pendingErr = -1;
    this.atomicPos = -1;
  }

  /**
   * A CQE of this QP was lost (its CQ overran): the QP enters the error state, and if it was
   * not there yet, its QP_ERROR event (IBV_EVENT_QP_FATAL) is raised.
   */
  cqeLost(): void {
    if (this.attrs.state === IbvQpState.IBV_QPS_ERR) return;
    this.toError();
    this.eq.raise(Mlx5EqeType.QP_ERROR, this.qpn);
  }

  /** Send WQE slot at position `pos`, or -1 if nothing is posted there. */
  sqAt(pos: number): number {
    return wqPeekAt(this.sq, this.sqMask, pos);
  }

  /** Receive WQE slot at rqTail, or -1. */
  rqHead(): number {
    return wqPeekAt(this.rq, this.rqMask, this.rqTail);
  }

  /** Retire the send WQE at sqTail. */
  sqRetire(): void {
    this.sqTail = (this.sqTail + 1) | 0;
    if (this.sqNext === ((this.sqTail - 1) | 0)) this.sqNext = this.sqTail;
    wqRetire(this.sq, this.sqTail);
  }

  /** Retire the receive WQE at rqTail. */
  rqRetire(): void {
    this.rqTail = (this.rqTail + 1) | 0;
    wqRetire(this.rq, this.rqTail);
  }

  /**
   * Complete the send WQE at sqTail with `status` (a CQE if signaled or failed) and retire it.
   * A CQE its CQ has no room for is lost and puts the QP in the error state (cqeLost): check
   * the state afterwards.
   */
  completeSend(base: number, status: number, byteLen: number): void {
    const w = this.sq;
    const signaled = (w[base + SendWqe.FLAGS] & 2) !== 0; // IBV_SEND_SIGNALED
    if (!signaled && status === IbvWcStatus.IBV_WC_SUCCESS) {
      this.sqRetire();
      return;
    }
    const id = ringGetU64(w, base + SendWqe.WRID_LO);
    const wc = wcOpcodeOf(w[base + SendWqe.OPCODE]);
    // the slot is free before its completion is visible: a poster counting completions finds
    // the room they announce (as libmlx5 frees SQ space from the CQE).
    this.sqRetire();
    if (!this.sendCq.post(id, status, wc, byteLen, 0, this.qpn, 0)) this.cqeLost();
  }

  /**
   * Flush (IBV_WC_WR_FLUSH_ERR) every posted send and receive WQE. A flush CQE that finds its
   * CQ full overruns it like any other (the QP is in the error state already); into an overrun
   * CQ the WQEs retire without a completion. Called by: the HCA loop while the QP is in the
   * error state. Returns WQEs flushed.
   */
  flush(): number {
    let n = 0;
    const flushErr = IbvWcStatus.IBV_WC_WR_FLUSH_ERR;
    for (let b = this.sqAt(this.sqTail); b >= 0; b = this.sqAt(this.sqTail)) {
      const wc = wcOpcodeOf(this.sq[b + SendWqe.OPCODE]);
      const id = ringGetU64(this.sq, b + SendWqe.WRID_LO);
      this.sqRetire();
      this.sendCq.post(id, flushErr, wc, 0, 0, this.qpn, 0);
      n++;
    }
    for (let b = this.rqHead(); b >= 0; b = this.rqHead()) {
      const id = ringGetU64(this.rq, b + RecvWqe.WRID_LO);
      this.rqRetire();
      this.recvCq.post(id, flushErr, IbvWcOpcode.IBV_WC_RECV, 0, 0, this.qpn, 0);
      n++;
    }
    this.sqNext = this.sqTail;
    return n;
  }

  /** RESET: drop every posted WQE without a completion and forget all progress. */
  reset(): void {
    while (this.sqAt(this.sqTail) >= 0) this.sqRetire();
    while (this.rqHead() >= 0) this.rqRetire();
    this.sqNext = this.sqTail;
    this.segOff = 0;
    this.retryAt = 0;
    this.rnrCount = 0;
    this.retryCount = 0;
    this.stalled = false;
    this.outReads = 0;
    this.readPsn = -1;
    this.recvBusy = false;
    this.ackPending = -1;
    this.pendingErr = -1;
    this.atomicPos = -1;
    this.atomicRespPsn.fill(-1);
    this.atomicRespHeld = -1;
    this.peer = null;
  }
}

/** The ibv_wc_opcode of a send WQE's ibv_wr_opcode. */
export function wcOpcodeOf(wr: number): number {
  switch (wr) {
    case IbvWrOpcode.IBV_WR_RDMA_WRITE:
    case IbvWrOpcode.IBV_WR_RDMA_WRITE_WITH_IMM:
      return IbvWcOpcode.IBV_WC_RDMA_WRITE;
    case IbvWrOpcode.IBV_WR_RDMA_READ:
      return IbvWcOpcode.IBV_WC_RDMA_READ;
    case IbvWrOpcode.IBV_WR_ATOMIC_CMP_AND_SWP:
      return IbvWcOpcode.IBV_WC_COMP_SWAP;
    case IbvWrOpcode.IBV_WR_ATOMIC_FETCH_AND_ADD:
      return IbvWcOpcode.IBV_WC_FETCH_ADD;
    default:
      return IbvWcOpcode.IBV_WC_SEND;
  }
}

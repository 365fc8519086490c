/**
 * The mlx5-style HCA model: one worker per NIC. Its firmware command queue is the generic
 * device queue (device-runtime.ts: INIT_HCA, CREATE/DESTROY_CQ, CREATE/MODIFY/DESTROY_QP,
 * fabric/mlx5-layout.ts Mlx5Cmd); its data path is kernel bypass: it polls every QP's SQ/RQ
 * ring, every wire link, and writes CQEs that userspace polls (fabric/mlx5-wqe.ts).
 *
 * Shared memory too large or too structured for a descriptor (rings, the HCA context, a wire
 * link) reaches the worker the way DMA contexts do: the driver posts it on the worker's port
 * first and then submits the command naming it (a token); the command drains the port with
 * receiveMessageOnPort, so the payload is there when the command runs.
 *
 * DOC: main loop (DeviceRuntime's loop, extended)
 *   1. load the UAR doorbell count (or, before INIT_HCA, the command doorbell), then STOP;
 *   2. every QP: error-state flushes, wire receive, the requester (loopback or wire), ACK
 *      timers; then CQ events and wire doorbells, once each, and CQ/QP error EQEs that found the
 *      EQ full (mlx5-qp.ts EqHw); then pending firmware commands (a command's effect is seen by
 *      the next pass);
 *   3. nothing done: a DRAIN stop ends the loop; otherwise spin briefly, then sleep on the UAR
 *      doorbell until it moves, a QP timer is due, or WAIT_SLICE_MS passed.
 * Userspace, the driver (after each command and stop request) and peer NICs ring the UAR.
 *
 * Imports only fabric/, common/ and the device runtime.
 */
import { parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { Errno } from '../../../common/errno.ts';
import { DeviceState, DeviceStop, DevCtl } from '../../fabric/device-queue-layout.ts';
import { doorbellRead, doorbellWait } from '../../fabric/doorbell.ts';
import { IbvQpState } from '../../fabric/mlx5-ib-abi.ts';
import {
  hcaCheck,
  hcaCqBase,
  hcaQpBase,
  MLX5_MAX_CQ,
  MLX5_MAX_QP,
  Mlx5Cmd,
  Mlx5CqArm,
  Mlx5CqCtx,
  Mlx5CqState,
  Mlx5Ctl,
  Mlx5QpCtx,
} from '../../fabric/mlx5-layout.ts';
import type { PhysArenaDescriptor } from '../../fabric/phys-arena.ts';
import { RingProducer } from '../../fabric/ring.ts';
import type { RingMem } from '../../fabric/ring-layout.ts';
import { type ShmWireEndDesc, wireLinkOpen } from '../../fabric/wire.ts';
import {
  type DeviceCommand,
  type DeviceModel,
  type DeviceRuntime,
  WAIT_SLICE_MS,
} from '../device-runtime.ts';
import { Mlx5Fast } from './mlx5-fast.ts';
import { MkeyEngine } from './mlx5-mkey.ts';
import { CqHw, EqHw, type QpAttrs, QpHw } from './mlx5-qp.ts';
import { wireRequester, wireTimers } from './mlx5-wire-requester.ts';
import { wireReceive } from './mlx5-wire-responder.ts';
import { requesterLoopback } from './mlx5-requester.ts';

/** Command payloads, posted on the worker's port before the command (token = cmd.arg0). */
export type Mlx5Payload =
  | {
      token: number;
      kind: 'init';
      hca: Int32Array;
      mtt: SharedArrayBuffer;
      eq: SharedArrayBuffer;
      /** The host arena holding `hca` and the rings (null: none, no wasm data path). */
      arena: PhysArenaDescriptor | null;
      /** The firmware's private memory in that arena (mlx5-fast-wat.ts Mlx5Icm), or null. */
      icm: Int32Array | null;
    }
  | { token: number; kind: 'cq'; cqn: number; ring: RingMem }
  | {
      token: number;
      kind: 'qp';
      qpn: number;
      pd: number;
      sq: RingMem;
      rq: RingMem;
      sendCqn: number;
      recvCqn: number;
    }
  | {
      token: number;
      kind: 'modify';
      qpn: number;
      attrs: QpAttrs;
      peer: null | { kind: 'local' } | ShmWireEndDesc;
    };

const DEFAULT_SPIN_US = 50;
/** How soon a CQ/QP error event waiting for EQ room is tried again. */
const EQ_RETRY_MS = 1;

export class Mlx5Hca implements DeviceModel {
  readonly name = 'mlx5';
  private readonly rt: DeviceRuntime;
  private hca: Int32Array | null = null;
  private eng: MkeyEngine | null = null;
  private eq: EqHw | null = null;
  private readonly qps: (QpHw | undefined)[] = [];
  private live: QpHw[] = [];
  private readonly cqs: (CqHw | undefined)[] = [];
  private liveCqs: CqHw[] = [];
  private readonly payloads = new Map<number, Mlx5Payload>();
  private readonly spinMs: number;
  private nextTimer = Number.POSITIVE_INFINITY;
  private clocked = true;

  constructor(rt: DeviceRuntime) {
    this.rt = rt;
    const spin = rt.params.spinUs;
    this.spinMs = (typeof spin === 'number' && spin >= 0 ? spin : DEFAULT_SPIN_US) / 1000;
  }

  /** The device loop (DOC: main loop). Returns on a stop request; throws only via CRASH. */
  run(): void {
    const ctl = this.rt.ctl;
    // publish: the loop is about to poll; the driver's ready() waits on STATE.
    Atomics.store(ctl, DevCtl.STATE, DeviceState.RUNNING);
    Atomics.notify(ctl, DevCtl.STATE);
    for (;;) {
      const hca = this.hca;
      // load the count before working: a ring after this load makes the wait return at once.
      const seen = hca !== null ? doorbellRead(hca, Mlx5Ctl.UAR_DB) : doorbellRead(ctl, DevCtl.SQ_DB);
      const stop = Atomics.load(ctl, DevCtl.STOP);
      if (stop === DeviceStop.ABORT) break;
      // the data path before firmware commands: a WQE that rang the UAR waits for no command peek.
      if (this.poll() + this.rt.drain(this) > 0) continue;
      if (stop === DeviceStop.DRAIN) break;
      if (this.spin(seen)) continue;
      const left = Math.max(0, Math.min(WAIT_SLICE_MS, this.nextTimer - performance.now()));
      if (left === 0) continue;
      if (hca !== null) doorbellWait(hca, Mlx5Ctl.UAR_DB, seen, left);
      else doorbellWait(ctl, DevCtl.SQ_DB, seen, left);
    }
    this.rt.dma.close();
    // publish: exit code 0 with STATE = STOPPED is a clean stop for the driver.
    Atomics.store(ctl, DevCtl.STATE, DeviceState.STOPPED);
    Atomics.notify(ctl, DevCtl.STATE);
  }

  // Busy-poll for new work before sleeping (a latency-bound poster rarely pays a futex wake).
  private spin(seen: number): boolean {
    if (this.spinMs <= 0) return false;
    const hca = this.hca;
    // the clock (40-50 ns here) costs more than a doorbell look: read it every 64 turns, the
    // first time only after 64 (a poster that rings within them costs the loop no clock read).
    let end = 0;
    for (let i = 1; ; i++) {
      // the UAR first: a poster's doorbell is the latency-bound case, a command is not.
      if (hca !== null && doorbellRead(hca, Mlx5Ctl.UAR_DB) !== seen) return true;
      // the command queue every 8th turn: a command is not latency-bound, and each look delays
      // seeing the UAR move by one more Atomics call.
      if ((i & 7) === 0 && this.rt.sq.peek() >= 0) return true;
      if ((i & 63) === 0) {
        const now = performance.now();
        if (end === 0) end = now + this.spinMs;
        else if (now >= end) return false;
      }
    }
  }

  /** One pass over every QP. Returns units of work done (0: idle). */
  poll(): number {
    const eng = this.eng;
    if (eng === null) return 0;
    // the clock is read only when some QP has a timer or a wire (a loopback fast path has none).
    const now = this.clocked ? performance.now() : 0;
    let clocked = false;
    let work = 0;
    let timer = Number.POSITIVE_INFINITY;
    for (const qp of this.live) {
      const peer = qp.peer;
      if (qp.state === IbvQpState.IBV_QPS_ERR) {
        work += qp.flush();
        if (peer?.kind === 'wire') {
          while (peer.link.rxPeek() >= 0) {
            peer.link.rxRelease();
            work++;
          }
        }
        continue;
      }
      if (peer === null) continue;
      if (qp.retryAt !== 0) clocked = true;
      if (peer.kind === 'wire') {
        clocked = true;
        work += wireReceive(eng, qp, peer, now);
        if (qp.state === IbvQpState.IBV_QPS_RTS) {
          work += wireRequester(eng, qp, peer, now);
          timer = Math.min(timer, wireTimers(eng, qp, peer, now));
        }
        peer.link.txFlush();
      } else if (qp.state === IbvQpState.IBV_QPS_RTS) {
        work += requesterLoopback(eng, qp, this.qps[qp.attrs.destQpn], now);
        if (qp.retryAt !== 0) clocked = true;
      }
      if (qp.retryAt > now) timer = Math.min(timer, qp.retryAt);
    }
    for (const cq of this.liveCqs) cq.notify();
    // CQ/QP error events the EQ had no room for: again every pass, and soon if still waiting.
    const eq = this.eq!;
    if (eq.pending > 0) {
      eq.retry();
      if (eq.pending > 0) timer = Math.min(timer, performance.now() + EQ_RETRY_MS);
    }
    if (work > 0) Atomics.add(this.hca!, Mlx5Ctl.STAT_WQES, work);
    this.nextTimer = timer;
    // a QP that started waiting during this pass needs the clock on the next one.
    this.clocked = clocked;
    return work;
  }

  /** Firmware commands. Called by: DeviceRuntime.drain(), device worker. */
  execute(_rt: DeviceRuntime, cmd: DeviceCommand): number {
    if (cmd.opcode !== Mlx5Cmd.INIT_HCA && this.hca === null) return -Errno.EIO;
    switch (cmd.opcode) {
      case Mlx5Cmd.INIT_HCA: {
        const p = this.payload(cmd.arg0, 'init');
        if (p === null || this.hca !== null) return -Errno.EINVAL;
        this.hca = hcaCheck(p.hca);
        const eq = new RingProducer(p.eq);
        this.eng = new MkeyEngine(this.hca, p.mtt, this.rt.dma, eq);
        this.eng.fast = Mlx5Fast.create(p.arena, this.hca, p.icm, this.rt.dma.devCtx);
        this.eq = new EqHw(this.hca, eq);
        return 0;
      }
      case Mlx5Cmd.CREATE_CQ: {
        const p = this.payload(cmd.arg0, 'cq');
        if (p === null || p.cqn < 0 || p.cqn >= MLX5_MAX_CQ || this.cqs[p.cqn]) return -Errno.EINVAL;
        const cq = new CqHw(p.cqn, p.ring, this.hca!, this.eq!);
        this.cqs[p.cqn] = cq;
        this.liveCqs.push(cq);
        // a reused CQ number starts unarmed and with no events (userspace counts from 0).
        Atomics.store(this.hca!, hcaCqBase(p.cqn) + Mlx5CqCtx.ARM, Mlx5CqArm.NONE);
        Atomics.store(this.hca!, hcaCqBase(p.cqn) + Mlx5CqCtx.EVENTS, 0);
        Atomics.store(this.hca!, hcaCqBase(p.cqn) + Mlx5CqCtx.STATE, Mlx5CqState.OK);
        Atomics.store(this.hca!, hcaCqBase(p.cqn) + Mlx5CqCtx.VALID, 1);
        return 0;
      }
      case Mlx5Cmd.DESTROY_CQ: {
        const cq = this.cqs[cmd.arg0];
        if (!cq) return -Errno.EINVAL;
        if (this.live.some((q) => q.sendCq === cq || q.recvCq === cq)) return -Errno.EBUSY;
        this.cqs[cmd.arg0] = undefined;
        this.liveCqs = this.liveCqs.filter((c) => c !== cq);
        Atomics.store(this.hca!, hcaCqBase(cmd.arg0) + Mlx5CqCtx.VALID, 0);
        return 0;
      }
      case Mlx5Cmd.CREATE_QP:
        return this.createQp(cmd.arg0);
      case Mlx5Cmd.MODIFY_QP:
        return this.modifyQp(cmd.arg0);
      case Mlx5Cmd.DESTROY_QP: {
        const qp = this.qps[cmd.arg0];
        if (!qp) return -Errno.EINVAL;
        this.qps[cmd.arg0] = undefined;
        this.live = this.live.filter((q) => q !== qp);
        Atomics.store(this.hca!, hcaQpBase(qp.qpn) + Mlx5QpCtx.VALID, 0);
        return 0;
      }
      default:
        return -Errno.EOPNOTSUPP;
    }
  }

  private createQp(token: number): number {
    const p = this.payload(token, 'qp');
    if (p === null || p.qpn < 2 || p.qpn >= MLX5_MAX_QP || this.qps[p.qpn]) return -Errno.EINVAL;
    const scq = this.cqs[p.sendCqn];
    const rcq = this.cqs[p.recvCqn];
    if (!scq || !rcq) return -Errno.EINVAL;
    const qp = new QpHw(p.qpn, p.pd, p.sq, p.rq, scq, rcq, this.hca!, this.eq!);
    qp.fast = this.eng?.fast != null && Mlx5Fast.reaches(qp);
    this.qps[p.qpn] = qp;
    this.live.push(qp);
    Atomics.store(this.hca!, hcaQpBase(p.qpn) + Mlx5QpCtx.VALID, 1);
    return 0;
  }

  private modifyQp(token: number): number {
    const p = this.payload(token, 'modify');
    const qp = p === null ? undefined : this.qps[p.qpn];
    if (p === null || qp === undefined) return -Errno.EINVAL;
    const next = p.attrs.state;
    if (next === IbvQpState.IBV_QPS_SQD || next === IbvQpState.IBV_QPS_SQE) return -Errno.EOPNOTSUPP;
    const prev = qp.state;
    qp.attrs = { ...p.attrs };
    if (next === IbvQpState.IBV_QPS_RESET) qp.reset();
    if (next === IbvQpState.IBV_QPS_ERR) {
      qp.attrs.state = prev; // toError() publishes ERR and drops what is in flight
      qp.toError();
      return 0;
    }
    if (next === IbvQpState.IBV_QPS_RTR && prev !== IbvQpState.IBV_QPS_RTR) {
      qp.epsn = p.attrs.rqPsn;
      qp.peer =
        p.peer === null
          ? null
          : p.peer.kind === 'local'
            ? { kind: 'local' }
            : { kind: 'wire', link: wireLinkOpen(p.peer) };
    }
    if (next === IbvQpState.IBV_QPS_RTS && prev !== IbvQpState.IBV_QPS_RTS) {
      qp.npsn = p.attrs.sqPsn;
      qp.ackedPsn = p.attrs.sqPsn - 1;
      qp.lastProgress = performance.now();
    }
    qp.publishState(next);
    return 0;
  }

  // The payload of a command: already received, or still queued on the port.
  private payload<K extends Mlx5Payload['kind']>(
    token: number,
    kind: K,
  ): Extract<Mlx5Payload, { kind: K }> | null {
    let p = this.payloads.get(token);
    if (p === undefined && parentPort !== null) {
      for (let m = receiveMessageOnPort(parentPort); m !== undefined; m = receiveMessageOnPort(parentPort)) {
        const msg = m.message as Mlx5Payload;
        this.payloads.set(msg.token, msg);
        if (msg.token === token) break;
      }
      p = this.payloads.get(token);
    }
    this.payloads.delete(token);
    return p !== undefined && p.kind === kind ? (p as Extract<Mlx5Payload, { kind: K }>) : null;
  }
}

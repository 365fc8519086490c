/**
 * The ib core (drivers/infiniband/core, reduced): the objects a verbs consumer holds (PD, CQ,
 * QP, MR), the device registry, and the QP state machine rules (ib_modify_qp_is_ok) every
 * driver gets checked against before its modify hook runs.
 *
 * DOC: who calls what
 * nodes/uapi/verbs.ts (uverbs) calls the ib* functions here and in ib-verbs.ts; they check
 * arguments (EINVAL naming the argument), reference counts (EBUSY) and the state machine, then
 * call the device's IbDeviceOps (the mlx5 driver). The data path (post_send, post_recv,
 * poll_cq) never comes here: it is kernel bypass (fabric/mlx5-wqe.ts).
 *
 * Thread: kernel (main thread). Lock: none of its own; dma-buf locks are the driver's business.
 */
import { err } from '../../../common/errno.ts';
import { IbvQpAttrMask as M, IbvQpState as S } from '../../fabric/mlx5-ib-abi.ts';
import type { RingMem } from '../../fabric/ring-layout.ts';
import type { DmaBuf } from '../dma-buf/dma-buf.ts';
import type { HostKernel } from '../kernel.ts';
import type { UserPages } from './umem.ts';

/** ibv_device_attr, the part the emulated HCA reports. */
export interface IbDeviceAttr {
  max_mr_size: number;
  max_qp: number;
  max_qp_wr: number;
  max_sge: number;
  max_cq: number;
  max_cqe: number;
  max_mr: number;
  max_pd: number;
  max_qp_rd_atom: number;
  /** IbvAtomicCap: the scope in which RDMA atomics are atomic. */
  atomic_cap: number;
  max_inline_data: number;
  /** IBV_ODP_SUPPORT: dma-buf MRs may be registered unpinned (on demand). */
  odp: boolean;
}

/** ibv_port_attr, reduced. */
export interface IbPortAttr {
  state: 'ACTIVE' | 'DOWN';
  lid: number;
  max_mtu: number;
  active_mtu: number;
  max_msg_sz: number;
}

/** struct ib_qp_attr as modify_qp takes it (the fields the emulated RC QP uses). */
export interface IbQpAttr {
  qp_state?: number;
  qp_access_flags?: number;
  pkey_index?: number;
  port_num?: number;
  path_mtu?: number;
  dest_qp_num?: number;
  rq_psn?: number;
  sq_psn?: number;
  max_dest_rd_atomic?: number;
  max_rd_atomic?: number;
  min_rnr_timer?: number;
  timeout?: number;
  retry_cnt?: number;
  rnr_retry?: number;
  ah_attr?: { dlid: number; port_num?: number };
}

export class IbPd {
  readonly dev: IbDevice;
  readonly pdn: number;
  /** Objects (QPs, MRs) made on this PD: dealloc is EBUSY while > 0. */
  usecnt = 0;
  dead = false;
  constructor(dev: IbDevice, pdn: number) {
    this.dev = dev;
    this.pdn = pdn;
  }
}

/**
 * struct ib_event, affiliated: `type` is an IbvEventType (enum ib_event_type has the same
 * numbering); a CQ event carries the CQ, a QP event the QP.
 */
export interface IbEvent {
  type: number;
  cq?: IbCq;
  qp?: IbQp;
}

/** An object's event_handler (uverbs queues the event on the owning context's async file). */
export type IbEventHandler = (ev: IbEvent) => void;

export class IbCq {
  readonly dev: IbDevice;
  readonly cqn: number;
  /** CQ ring (fabric/ring-layout.ts), consumed by userspace. */
  readonly ring: RingMem;
  readonly cqe: number;
  usecnt = 0;
  dead = false;
  /** ib_cq.event_handler: IBV_EVENT_CQ_ERR (CQ overrun). */
  eventHandler: IbEventHandler | null = null;
  constructor(dev: IbDevice, cqn: number, ring: RingMem, cqe: number) {
    this.dev = dev;
    this.cqn = cqn;
    this.ring = ring;
    this.cqe = cqe;
  }
}

export class IbQp {
  readonly dev: IbDevice;
  readonly qpn: number;
  readonly pd: IbPd;
  readonly sendCq: IbCq;
  readonly recvCq: IbCq;
  readonly sq: RingMem;
  readonly rq: RingMem;
  readonly cap: {
    max_send_wr: number;
    max_recv_wr: number;
    max_send_sge: number;
    max_recv_sge: number;
    max_inline_data: number;
  };
  /** Every attribute as last modified (the driver sends the full set). */
  attr: Required<Omit<IbQpAttr, 'ah_attr'>> & { ah_attr: { dlid: number; port_num: number } };
  dead = false;
  /** ib_qp.event_handler: IBV_EVENT_QP_FATAL. */
  eventHandler: IbEventHandler | null = null;
  constructor(
    dev: IbDevice,
    qpn: number,
    pd: IbPd,
    cqs: { send: IbCq; recv: IbCq },
    rings: { sq: RingMem; rq: RingMem },
    cap: IbQp['cap'],
  ) {
    this.dev = dev;
    this.qpn = qpn;
    this.pd = pd;
    this.sendCq = cqs.send;
    this.recvCq = cqs.recv;
    this.sq = rings.sq;
    this.rq = rings.rq;
    this.cap = cap;
    this.attr = {
      qp_state: S.IBV_QPS_RESET,
      qp_access_flags: 0,
      pkey_index: 0,
      port_num: 1,
      path_mtu: 5,
      dest_qp_num: 0,
      rq_psn: 0,
      sq_psn: 0,
      max_dest_rd_atomic: 1,
      max_rd_atomic: 1,
      min_rnr_timer: 0,
      timeout: 0,
      retry_cnt: 0,
      rnr_retry: 0,
      ah_attr: { dlid: 0, port_num: 1 },
    };
  }

  /** The current state as the device published it (it moves a QP to ERR on its own). */
  get state(): number {
    return this.dev.ops.qpState(this);
  }
}

/** MR registration modes (how the memory is held). */
export const IbMrMode = {
  HOST: 'host',
  ODP: 'odp',
  PINNED: 'pinned',
  PINNED_REVOCABLE: 'pinned-revocable',
} as const;
export type IbMrMode = (typeof IbMrMode)[keyof typeof IbMrMode];

export class IbMr {
  readonly dev: IbDevice;
  readonly pd: IbPd;
  readonly lkey: number;
  readonly rkey: number;
  readonly iova: number;
  readonly length: number;
  readonly access: number;
  readonly mode: IbMrMode;
  /** Driver MR (mlx5: its mkey state). */
  readonly priv: unknown;
  dead = false;
  constructor(
    pd: IbPd,
    key: number,
    r: { iova: number; length: number; access: number; mode: IbMrMode; priv: unknown },
  ) {
    this.dev = pd.dev;
    this.pd = pd;
    this.lkey = key;
    this.rkey = key;
    this.iova = r.iova;
    this.length = r.length;
    this.access = r.access;
    this.mode = r.mode;
    this.priv = r.priv;
  }
}

/** What a driver implements (struct ib_device_ops, reduced). Thread: kernel. */
export interface IbDeviceOps {
  /** Device attributes (ibv_query_device). */
  queryDevice(): IbDeviceAttr;
  queryPort(): IbPortAttr;
  allocPd(): number;
  deallocPd(pdn: number): void;
  /** Create a CQ of at least `cqe` entries; the device learns about it before this resolves. */
  createCq(dev: IbDevice, cqe: number): Promise<IbCq>;
  destroyCq(cq: IbCq): Promise<void>;
  createQp(pd: IbPd, init: { send: IbCq; recv: IbCq; cap: IbQp['cap'] }): Promise<IbQp>;
  /** Apply qp.attr (already validated and merged) to the device. */
  modifyQp(qp: IbQp, prevState: number): Promise<void>;
  destroyQp(qp: IbQp): Promise<void>;
  qpState(qp: IbQp): number;
  /** ibv_reg_mr of user pages: pin and map [addr, addr + length) of `mem`, IOVA `addr`. */
  regUserMr(pd: IbPd, mem: UserPages, addr: number, length: number, access: number): IbMr;
  /** ibv_reg_dmabuf_mr / mlx5dv_reg_dmabuf_mr: `mode` is ODP, PINNED or PINNED_REVOCABLE. */
  regDmabufMr(
    pd: IbPd,
    dmabuf: DmaBuf,
    r: { offset: number; length: number; iova: number; access: number; mode: IbMrMode },
  ): Promise<IbMr>;
  deregMr(mr: IbMr): Promise<void>;
}

export class IbDevice {
  readonly name: string;
  readonly kernel: HostKernel;
  readonly ops: IbDeviceOps;
  /** The HCA context SAB userspace maps (doorbells, QP/CQ contexts): the UAR page. */
  /** The device's context words (its UAR page among them; mlx5-layout.ts hcaCreate). */
  readonly uar: Int32Array;
  dead = false;
  constructor(name: string, kernel: HostKernel, ops: IbDeviceOps, uar: Int32Array) {
    this.name = name;
    this.kernel = kernel;
    this.ops = ops;
    this.uar = uar;
  }
}

/**
 * Deliver an affiliated asynchronous event to its object's handler (ib_cq/ib_qp event_handler);
 * events of destroyed objects are dropped. Called by: drivers' EQ handlers, kernel thread.
 */
export function ibDispatchEvent(ev: IbEvent): void {
  const o = ev.cq ?? ev.qp;
  if (o === undefined || o.dead) return;
  o.eventHandler?.(ev);
}

const registries = new WeakMap<HostKernel, Map<string, IbDevice>>();

/** ib_register_device. Throws: EEXIST if the name is taken on this host. */
export function ibRegisterDevice(dev: IbDevice): void {
  let m = registries.get(dev.kernel);
  if (!m) registries.set(dev.kernel, (m = new Map()));
  if (m.has(dev.name)) throw err('EEXIST', `ibRegisterDevice: ${dev.name} exists on ${dev.kernel.name}`);
  m.set(dev.name, dev);
}

/** ib_unregister_device: later opens fail ENODEV. Idempotent. */
export function ibUnregisterDevice(dev: IbDevice): void {
  dev.dead = true;
  const m = registries.get(dev.kernel);
  if (m?.get(dev.name) === dev) m.delete(dev.name);
}

/** Devices of `kernel`, in registration order (ibv_get_device_list). */
export function ibDevices(kernel: HostKernel): IbDevice[] {
  return [...(registries.get(kernel)?.values() ?? [])];
}

// ib_modify_qp_is_ok for RC: required and optional attributes per transition.
const STATE = M.IBV_QP_STATE;
const rules: Record<string, { req: number; opt: number }> = {
  [`${S.IBV_QPS_RESET}>${S.IBV_QPS_INIT}`]: {
    req: STATE | M.IBV_QP_PKEY_INDEX | M.IBV_QP_PORT | M.IBV_QP_ACCESS_FLAGS,
    opt: 0,
  },
  [`${S.IBV_QPS_INIT}>${S.IBV_QPS_INIT}`]: {
    req: STATE,
    opt: M.IBV_QP_PKEY_INDEX | M.IBV_QP_PORT | M.IBV_QP_ACCESS_FLAGS,
  },
  [`${S.IBV_QPS_INIT}>${S.IBV_QPS_RTR}`]: {
    req:
      STATE |
      M.IBV_QP_AV |
      M.IBV_QP_PATH_MTU |
      M.IBV_QP_DEST_QPN |
      M.IBV_QP_RQ_PSN |
      M.IBV_QP_MAX_DEST_RD_ATOMIC |
      M.IBV_QP_MIN_RNR_TIMER,
    opt: M.IBV_QP_ACCESS_FLAGS | M.IBV_QP_PKEY_INDEX,
  },
  [`${S.IBV_QPS_RTR}>${S.IBV_QPS_RTS}`]: {
    req:
      STATE |
      M.IBV_QP_SQ_PSN |
      M.IBV_QP_TIMEOUT |
      M.IBV_QP_RETRY_CNT |
      M.IBV_QP_RNR_RETRY |
      M.IBV_QP_MAX_QP_RD_ATOMIC,
    opt: M.IBV_QP_ACCESS_FLAGS | M.IBV_QP_MIN_RNR_TIMER,
  },
  [`${S.IBV_QPS_RTS}>${S.IBV_QPS_RTS}`]: { req: STATE, opt: M.IBV_QP_ACCESS_FLAGS | M.IBV_QP_MIN_RNR_TIMER },
};

/**
 * ib_modify_qp_is_ok: may a QP in `cur` go to `next` with attributes `mask`? Any state may go to
 * RESET or ERR (with only IBV_QP_STATE); other transitions need exactly the IBA's required
 * attributes and allow its optional ones. Returns null if fine, else what is wrong.
 */
export function ibModifyQpIsOk(cur: number, next: number, mask: number): string | null {
  if ((mask & STATE) === 0) return 'attr_mask lacks IBV_QP_STATE';
  if (next === S.IBV_QPS_RESET || next === S.IBV_QPS_ERR) {
    return mask === STATE ? null : `only IBV_QP_STATE may be set to enter state ${next}`;
  }
  const r = rules[`${cur}>${next}`];
  if (!r) return `transition ${stateName(cur)} -> ${stateName(next)} is not allowed`;
  if ((mask & r.req) !== r.req)
    return `${stateName(cur)} -> ${stateName(next)} needs attr_mask 0x${r.req.toString(16)}`;
  if ((mask & ~(r.req | r.opt)) !== 0) {
    return `${stateName(cur)} -> ${stateName(next)} does not take attr_mask bits 0x${(mask & ~(r.req | r.opt)).toString(16)}`;
  }
  return null;
}

/** "IBV_QPS_RTS" for 3. */
export function stateName(s: number): string {
  return Object.entries(S).find(([, v]) => v === s)?.[0] ?? `state ${s}`;
}

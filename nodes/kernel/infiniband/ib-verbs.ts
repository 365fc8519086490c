/**
 * ib core verbs (drivers/infiniband/core/verbs.c and the uverbs command checks): the kernel
 * entry points behind nodes/uapi/verbs.ts. Each checks its arguments once, naming the bad one
 * (EINVAL), keeps the object references (EBUSY while in use), and calls the driver.
 *
 * Thread: kernel. Called by: verbs.ts inside syscall() (one task per call).
 */
import { err } from '../../../common/errno.ts';
import { IBV_ACCESS_SUPPORTED, IbvAccess, IbvQpAttrMask as M, IbvQpType } from '../../fabric/mlx5-ib-abi.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import type { DmaBuf } from '../dma-buf/dma-buf.ts';
import {
  type IbCq,
  type IbDevice,
  IbMr,
  IbMrMode,
  IbPd,
  type IbQp,
  type IbQpAttr,
  ibModifyQpIsOk,
} from './ib-core.ts';
import type { UserPages } from './umem.ts';

function alive(fn: string, dev: IbDevice): void {
  if (dev.dead) throw err('ENODEV', `${fn}: device ${dev.name} is gone`);
}

function inRange(fn: string, name: string, v: unknown, lo: number, hi: number): number {
  if (!(Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi)) {
    throw err('EINVAL', `${fn}: ${name} ${String(v)} must be an integer in [${lo}, ${hi}]`);
  }
  return v as number;
}

/** ib_alloc_pd. */
export function ibAllocPd(dev: IbDevice): IbPd {
  alive('ibv_alloc_pd', dev);
  return new IbPd(dev, dev.ops.allocPd());
}

/** ib_dealloc_pd. Throws: EBUSY while QPs or MRs use it. Idempotent. */
export function ibDeallocPd(pd: IbPd): void {
  if (pd.dead) return;
  if (pd.usecnt > 0) throw err('EBUSY', `ibv_dealloc_pd: pd ${pd.pdn} is used by ${pd.usecnt} QP(s)/MR(s)`);
  pd.dead = true;
  pd.dev.ops.deallocPd(pd.pdn);
}

/** ib_create_cq with `cqe` entries. Throws: EINVAL naming cqe; ENODEV. */
export async function ibCreateCq(dev: IbDevice, cqe: number): Promise<IbCq> {
  alive('ibv_create_cq', dev);
  inRange('ibv_create_cq', 'cqe', cqe, 1, dev.ops.queryDevice().max_cqe);
  return dev.ops.createCq(dev, cqe);
}

/** ib_destroy_cq. Throws: EBUSY while a QP uses it. Idempotent. */
export async function ibDestroyCq(cq: IbCq): Promise<void> {
  if (cq.dead) return;
  if (cq.usecnt > 0) throw err('EBUSY', `ibv_destroy_cq: cq ${cq.cqn} is used by ${cq.usecnt} QP(s)`);
  cq.dead = true;
  await cq.dev.ops.destroyCq(cq);
}

/** struct ibv_qp_init_attr (RC only). */
export interface IbQpInitAttr {
  send_cq: IbCq;
  recv_cq: IbCq;
  qp_type: number;
  cap: {
    max_send_wr: number;
    max_recv_wr: number;
    max_send_sge?: number;
    max_recv_sge?: number;
    max_inline_data?: number;
  };
}

/** ib_create_qp. Throws: EINVAL naming the attribute; EOPNOTSUPP for a type other than RC. */
export async function ibCreateQp(pd: IbPd, init: IbQpInitAttr): Promise<IbQp> {
  const fn = 'ibv_create_qp';
  alive(fn, pd.dev);
  if (pd.dead) throw err('EINVAL', `${fn}: pd was deallocated`);
  if (!init || typeof init !== 'object') throw err('EINVAL', `${fn}: init_attr missing`);
  if (init.qp_type !== IbvQpType.IBV_QPT_RC)
    throw err('EOPNOTSUPP', `${fn}: init_attr.qp_type ${init.qp_type}: only IBV_QPT_RC`);
  for (const k of ['send_cq', 'recv_cq'] as const) {
    const cq = init[k];
    if (!cq || typeof cq !== 'object' || cq.dev !== pd.dev || cq.dead) {
      throw err('EINVAL', `${fn}: init_attr.${k} is not a live CQ of ${pd.dev.name}`);
    }
  }
  const a = pd.dev.ops.queryDevice();
  const c = init.cap ?? ({} as IbQpInitAttr['cap']);
  const cap = {
    max_send_wr: inRange(fn, 'init_attr.cap.max_send_wr', c.max_send_wr, 1, a.max_qp_wr),
    max_recv_wr: inRange(fn, 'init_attr.cap.max_recv_wr', c.max_recv_wr, 1, a.max_qp_wr),
    max_send_sge: inRange(fn, 'init_attr.cap.max_send_sge', c.max_send_sge ?? 1, 0, a.max_sge),
    max_recv_sge: inRange(fn, 'init_attr.cap.max_recv_sge', c.max_recv_sge ?? 1, 0, a.max_sge),
    max_inline_data: inRange(
      fn,
      'init_attr.cap.max_inline_data',
      c.max_inline_data ?? 0,
      0,
      a.max_inline_data,
    ),
  };
  const qp = await pd.dev.ops.createQp(pd, { send: init.send_cq, recv: init.recv_cq, cap });
  pd.usecnt++;
  init.send_cq.usecnt++;
  init.recv_cq.usecnt++;
  return qp;
}

const ATTR_CHECKS: [number, keyof IbQpAttr, number, number][] = [
  [M.IBV_QP_PKEY_INDEX, 'pkey_index', 0, 0],
  [M.IBV_QP_PORT, 'port_num', 1, 1],
  [M.IBV_QP_PATH_MTU, 'path_mtu', 1, 5],
  [M.IBV_QP_DEST_QPN, 'dest_qp_num', 0, 0xffffff],
  [M.IBV_QP_RQ_PSN, 'rq_psn', 0, 0xffffff],
  [M.IBV_QP_SQ_PSN, 'sq_psn', 0, 0xffffff],
  [M.IBV_QP_MAX_DEST_RD_ATOMIC, 'max_dest_rd_atomic', 0, 16],
  [M.IBV_QP_MAX_QP_RD_ATOMIC, 'max_rd_atomic', 0, 16],
  [M.IBV_QP_MIN_RNR_TIMER, 'min_rnr_timer', 0, 31],
  [M.IBV_QP_TIMEOUT, 'timeout', 0, 31],
  [M.IBV_QP_RETRY_CNT, 'retry_cnt', 0, 7],
  [M.IBV_QP_RNR_RETRY, 'rnr_retry', 0, 7],
];

const QP_ACCESS =
  IbvAccess.IBV_ACCESS_REMOTE_WRITE | IbvAccess.IBV_ACCESS_REMOTE_READ | IbvAccess.IBV_ACCESS_REMOTE_ATOMIC;

/**
 * ib_modify_qp: check the transition (ibModifyQpIsOk) and every attribute in `mask`, merge
 * them into qp.attr, then apply through the driver (restoring qp.attr if it fails).
 * Throws: EINVAL naming the attribute or the transition; the driver's errors.
 */
export async function ibModifyQp(qp: IbQp, attr: IbQpAttr, mask: number): Promise<void> {
  const fn = 'ibv_modify_qp';
  alive(fn, qp.dev);
  if (qp.dead) throw err('EINVAL', `${fn}: qp ${qp.qpn} was destroyed`);
  if (!attr || typeof attr !== 'object') throw err('EINVAL', `${fn}: attr missing`);
  if (!Number.isInteger(mask) || mask < 0) throw err('EINVAL', `${fn}: attr_mask ${mask}`);
  const cur = qp.state;
  const next = (mask & M.IBV_QP_STATE) !== 0 ? inRange(fn, 'attr.qp_state', attr.qp_state, 0, 6) : cur;
  const why = ibModifyQpIsOk(cur, next, mask);
  if (why !== null) throw err('EINVAL', `${fn}: qp ${qp.qpn}: ${why}`);
  for (const [bit, name, lo, hi] of ATTR_CHECKS)
    if (mask & bit) inRange(fn, `attr.${name}`, attr[name], lo, hi);
  if (mask & M.IBV_QP_ACCESS_FLAGS) {
    const f = inRange(fn, 'attr.qp_access_flags', attr.qp_access_flags, 0, 0xffff);
    if (f & ~(QP_ACCESS | IbvAccess.IBV_ACCESS_LOCAL_WRITE))
      throw err('EINVAL', `${fn}: attr.qp_access_flags 0x${f.toString(16)} has unknown bits`);
  }
  if (mask & M.IBV_QP_AV) {
    if (!attr.ah_attr || typeof attr.ah_attr !== 'object') throw err('EINVAL', `${fn}: attr.ah_attr missing`);
    inRange(fn, 'attr.ah_attr.dlid', attr.ah_attr.dlid, 1, 0xbfff);
  }
  const saved = { ...qp.attr, ah_attr: { ...qp.attr.ah_attr } };
  const a = qp.attr as unknown as Record<string, unknown>;
  for (const [bit, name] of ATTR_CHECKS) if (mask & bit) a[name] = attr[name];
  if (mask & M.IBV_QP_ACCESS_FLAGS) qp.attr.qp_access_flags = attr.qp_access_flags!;
  if (mask & M.IBV_QP_AV)
    qp.attr.ah_attr = { dlid: attr.ah_attr!.dlid, port_num: attr.ah_attr!.port_num ?? 1 };
  qp.attr.qp_state = next;
  try {
    await qp.dev.ops.modifyQp(qp, cur);
  } catch (e) {
    qp.attr = saved;
    throw e;
  }
}

/** ib_destroy_qp: drops its outstanding work requests (no completions). Idempotent. */
export async function ibDestroyQp(qp: IbQp): Promise<void> {
  if (qp.dead) return;
  qp.dead = true;
  qp.pd.usecnt--;
  qp.sendCq.usecnt--;
  qp.recvCq.usecnt--;
  await qp.dev.ops.destroyQp(qp);
}

function checkAccess(fn: string, access: number): void {
  if (!Number.isInteger(access) || (access & ~IBV_ACCESS_SUPPORTED) !== 0) {
    throw err('EINVAL', `${fn}: access 0x${Number(access).toString(16)} has unsupported bits`);
  }
  // IBA: remote write or atomic access needs local write (ib_check_mr_access).
  const needsLocal = IbvAccess.IBV_ACCESS_REMOTE_WRITE | IbvAccess.IBV_ACCESS_REMOTE_ATOMIC;
  if (access & needsLocal && !(access & IbvAccess.IBV_ACCESS_LOCAL_WRITE)) {
    throw err(
      'EINVAL',
      `${fn}: access 0x${access.toString(16)}: REMOTE_WRITE/REMOTE_ATOMIC need IBV_ACCESS_LOCAL_WRITE`,
    );
  }
}

function checkPd(fn: string, pd: IbPd): void {
  if (!(pd instanceof IbPd) || pd.dead) throw err('EINVAL', `${fn}: pd is not a live protection domain`);
  alive(fn, pd.dev);
}

/** ib_reg_user_mr over user pages. Throws: EINVAL (length, access), EOPNOTSUPP (ON_DEMAND), EFAULT. */
export function ibRegUserMr(pd: IbPd, mem: UserPages, addr: number, length: number, access: number): IbMr {
  const fn = 'ibv_reg_mr';
  checkPd(fn, pd);
  inRange(fn, 'length', length, 1, pd.dev.ops.queryDevice().max_mr_size);
  checkAccess(fn, access);
  if (access & IbvAccess.IBV_ACCESS_ON_DEMAND)
    throw err('EOPNOTSUPP', `${fn}: access: ODP of host memory is not modelled`);
  const mr = pd.dev.ops.regUserMr(pd, mem, addr, length, access);
  pd.usecnt++;
  return mr;
}

/**
 * ib_reg_user_mr_dmabuf: `mode` ODP (ibv_reg_dmabuf_mr), PINNED or PINNED_REVOCABLE.
 * Throws: EINVAL (length, access, iova/offset page offsets differ), EOPNOTSUPP (ODP without
 * device support), umem/exporter errors.
 */
export async function ibRegDmabufMr(
  pd: IbPd,
  dmabuf: DmaBuf,
  r: { offset: number; length: number; iova: number; access: number; mode: IbMrMode },
): Promise<IbMr> {
  const fn = 'ibv_reg_dmabuf_mr';
  checkPd(fn, pd);
  inRange(fn, 'offset', r.offset, 0, Number.MAX_SAFE_INTEGER);
  inRange(fn, 'length', r.length, 1, pd.dev.ops.queryDevice().max_mr_size);
  inRange(fn, 'iova', r.iova, 0, 2 ** 52);
  checkAccess(fn, r.access);
  if (r.iova % PAGE_SIZE !== r.offset % PAGE_SIZE) {
    throw err('EINVAL', `${fn}: iova 0x${r.iova.toString(16)} and offset ${r.offset} differ in page offset`);
  }
  if (!Object.values(IbMrMode).includes(r.mode) || r.mode === IbMrMode.HOST)
    throw err('EINVAL', `${fn}: mode ${r.mode}`);
  if (r.mode === IbMrMode.ODP && !pd.dev.ops.queryDevice().odp) {
    throw err('EOPNOTSUPP', `${fn}: ${pd.dev.name} has no ODP support for unpinned dma-buf MRs`);
  }
  const mr = await pd.dev.ops.regDmabufMr(pd, dmabuf, r);
  pd.usecnt++;
  return mr;
}

/** ib_dereg_mr: its keys become invalid (remote users then fail REM_ACCESS_ERR). Idempotent. */
export async function ibDeregMr(mr: IbMr): Promise<void> {
  if (!(mr instanceof IbMr)) throw err('EINVAL', 'ibv_dereg_mr: mr is not a memory region');
  if (mr.dead) return;
  mr.dead = true;
  mr.pd.usecnt--;
  await mr.dev.ops.deregMr(mr);
}

/**
 * mlx5_ib's struct ib_device_ops: what the ib core calls (ib-core.ts IbDeviceOps), routed to
 * the CQ/QP (mlx5-qp.ts) and MR (mlx5-mr.ts) halves of the driver.
 *
 * Thread: kernel.
 */
import { IB_MAX_MSG_SZ, IbvAtomicCap, IbvMtu } from '../../../fabric/mlx5-ib-abi.ts';
import { MLX5_MAX_CQ, MLX5_MAX_MKEY, MLX5_MAX_QP } from '../../../fabric/mlx5-layout.ts';
import { MLX5_MAX_INLINE, MLX5_MAX_SGE } from '../../../fabric/mlx5-wqe.ts';
import type { IbDeviceOps, IbMr } from '../ib-core.ts';
import type { Mlx5Dev } from './mlx5-ib.ts';
import { type Mlx5Mr, mlx5DeregMr, mlx5RegDmabufMr, mlx5RegUserMr } from './mlx5-mr.ts';
import {
  MLX5_MAX_WQ,
  mlx5CreateCq,
  mlx5CreateQp,
  mlx5DestroyCq,
  mlx5DestroyQp,
  mlx5ModifyQp,
  mlx5QpState,
} from './mlx5-qp.ts';

/** The ops table of HCA `d`. Called by: mlx5Probe. */
export function mlx5IbOps(d: Mlx5Dev): IbDeviceOps {
  return {
    queryDevice: () => ({
      max_mr_size: 2 ** 40,
      max_qp: MLX5_MAX_QP - 2,
      max_qp_wr: MLX5_MAX_WQ,
      max_sge: MLX5_MAX_SGE,
      max_cq: MLX5_MAX_CQ - 1,
      max_cqe: MLX5_MAX_WQ,
      max_mr: MLX5_MAX_MKEY - 1,
      max_pd: 1 << 24,
      max_qp_rd_atom: 16,
      // one worker executes every atomic of this HCA in turn (mlx5-atomic.ts).
      atomic_cap: IbvAtomicCap.IBV_ATOMIC_HCA,
      max_inline_data: MLX5_MAX_INLINE,
      odp: d.odp,
    }),
    queryPort: () => ({
      state: d.alive ? 'ACTIVE' : 'DOWN',
      lid: d.lid,
      max_mtu: IbvMtu.IBV_MTU_4096,
      active_mtu: IbvMtu.IBV_MTU_4096,
      max_msg_sz: IB_MAX_MSG_SZ,
    }),
    allocPd: () => d.nextPdn++,
    deallocPd: () => {},
    createCq: (ib, cqe) => mlx5CreateCq(d, ib, cqe),
    destroyCq: (cq) => mlx5DestroyCq(d, cq),
    createQp: (pd, init) => mlx5CreateQp(d, pd, init),
    modifyQp: (qp, prev) => mlx5ModifyQp(d, qp, prev),
    destroyQp: (qp) => mlx5DestroyQp(d, qp),
    qpState: (qp) => mlx5QpState(d, qp),
    regUserMr: (pd, mem, addr, length, access) => mlx5RegUserMr(d, pd, mem, addr, length, access),
    regDmabufMr: (pd, dmabuf, r) => mlx5RegDmabufMr(d, pd, dmabuf, r),
    deregMr: (mr: IbMr) => mlx5DeregMr(d, mr.priv as Mlx5Mr),
  };
}

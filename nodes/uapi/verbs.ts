/**
 * The verbs uapi (libibverbs + the libmlx5 provider): what userspace calls to use an RDMA HCA.
 *
 * Control path (open, PD, CQ, QP, modify, MR registration, destroy) goes through syscall() into
 * the ib core (nodes/kernel/infiniband/ib-verbs.ts); calls that wait for the device's firmware
 * return promises. The data path is kernel bypass, as with mlx5: ibvPostSend/ibvPostRecv write
 * WQEs into the QP's rings and ring the UAR doorbell once per call, and ibvPollCq reads CQEs
 * from the CQ ring (fabric/mlx5-wqe.ts). None of them enters the kernel.
 *
 * Asynchronous events (ibvGetAsyncEvent / ibvAckAsyncEvent): each context has its own queue;
 * the kernel's CQ and QP event handlers (set here at creation, as uverbs does) append to it. The
 * HCA raises IBV_EVENT_CQ_ERR when a CQ overruns and IBV_EVENT_QP_FATAL for the QP whose
 * completion was lost (docs/rdma.md).
 *
 * Objects are per process (a WeakMap keyed by the Process); ibvCloseDevice destroys what the
 * context still owns, and process exit closes every context the process left open. User memory for ibvRegMr comes from mmapAnonymous (the emulator has no
 * process address space yet): it returns the mapping's address and a CPU view of its bytes.
 *
 * Errors: EmuError with an errno naming the argument (EINVAL), ENODEV (device gone), ENOMEM
 * (work queue full, as ibv_post_send returns it), EFAULT (address not mapped), EBUSY (in use),
 * EOPNOTSUPP. A post that fails part-way has posted the work requests before the bad one
 * (ibverbs' bad_wr): the error's message names `wr[i]` and `badWr` carries i.
 */
import { err } from '../../common/errno.ts';
import { doorbellRead, doorbellRing } from '../fabric/doorbell.ts';
import {
  IbvQpState,
  IbvSendFlags,
  IbvWcOpcode,
  IbvWcStatus,
  IbvWrOpcode,
  ibvWrIsAtomic,
} from '../fabric/mlx5-ib-abi.ts';
import { hcaCqBase, Mlx5CqArm, Mlx5CqCtx, Mlx5Ctl } from '../fabric/mlx5-layout.ts';
import {
  ATOMIC_BYTES,
  AtomicWqe,
  type IbvWc,
  MLX5_MAX_INLINE,
  RecvWqe,
  SEND_WQE_INLINE,
  SendWqe,
  cqeRead,
  wqPeekAt,
  wqRetire,
  wqTail,
} from '../fabric/mlx5-wqe.ts';
import { RingConsumer, RingProducer } from '../fabric/ring.ts';
import { ringGetU64, ringPutU64 } from '../fabric/ring-layout.ts';
import { dmaBufGet } from '../kernel/dma-buf/dma-buf-file.ts';
import { dmaBufPut } from '../kernel/dma-buf/dma-buf.ts';
import {
  type IbCq,
  type IbDevice,
  type IbDeviceAttr,
  ibDevices,
  type IbMr,
  IbMrMode,
  type IbPd,
  type IbPortAttr,
  type IbQp,
  type IbQpAttr,
} from '../kernel/infiniband/ib-core.ts';
import {
  ibAllocPd,
  ibCreateCq,
  ibCreateQp,
  ibDeallocPd,
  ibDeregMr,
  ibDestroyCq,
  ibDestroyQp,
  ibModifyQp,
  ibRegDmabufMr,
  ibRegUserMr,
} from '../kernel/infiniband/ib-verbs.ts';
import { type UserPages, userPagesAlloc, userPagesFree } from '../kernel/infiniband/umem.ts';
import { type Process, syscall } from './process.ts';

export * from '../fabric/mlx5-ib-abi.ts';
export type { IbvWc } from '../fabric/mlx5-wqe.ts';
export type { IbQpAttr as IbvQpAttr } from '../kernel/infiniband/ib-core.ts';

/** mlx5dv_reg_dmabuf_mr access: DATA_DIRECT pins (not revocable); PINNED_REVOCABLE is p2pemu's 2026 pinned-revocable path. */
export const Mlx5dvRegDmabufAccess = {
  MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT: 1,
  P2PEMU_PINNED_REVOCABLE: 2,
} as const;

export interface IbvContext {
  readonly proc: Process;
  readonly device: IbDevice;
  readonly hca: Int32Array;
  readonly objs: Set<IbvPd | IbvCq | IbvQp | IbvMr>;
  /** The async event file: events not read yet, and readers waiting for one. */
  readonly asyncEvents: IbvAsyncEvent[];
  readonly asyncWaiters: Set<(ev: IbvAsyncEvent | null) => void>;
  closed: boolean;
}
/**
 * struct ibv_async_event: `event_type` is an IbvEventType; an affiliated event carries its
 * object (`cq` for IBV_EVENT_CQ_ERR, `qp` for IBV_EVENT_QP_FATAL). Acknowledge each with
 * ibvAckAsyncEvent.
 */
export interface IbvAsyncEvent {
  readonly event_type: number;
  readonly cq?: IbvCq;
  readonly qp?: IbvQp;
}
export interface IbvPd {
  readonly context: IbvContext;
  readonly pd: IbPd;
}
/**
 * struct ibv_comp_channel: where the completion events of its CQs are read
 * (ibvGetCqEvent). A CQ joins it at ibvCreateCq and leaves when destroyed.
 */
export interface IbvCompChannel {
  readonly context: IbvContext;
  readonly cqs: Set<IbvCq>;
}
export interface IbvCq {
  readonly context: IbvContext;
  readonly cq: IbCq;
  /** The completion channel its events go to (null: none; ibvReqNotifyCq is EINVAL). */
  readonly channel: IbvCompChannel | null;
  /** Completion events handed out by ibvGetCqEvent, and those not acknowledged yet. */
  eventsTaken: number;
  eventsUnacked: number;
  readonly ring: RingConsumer;
  /** QPs that complete into this CQ (for software flushes after a fatal error). */
  readonly qps: Set<IbvQp>;
}
export interface IbvQp {
  readonly context: IbvContext;
  readonly pd: IbvPd;
  readonly qp: IbQp;
  readonly qp_num: number;
  readonly send_cq: IbvCq;
  readonly recv_cq: IbvCq;
  readonly sq: RingProducer;
  readonly rq: RingProducer;
}
export interface IbvMr {
  readonly context: IbvContext;
  readonly pd: IbvPd;
  readonly mr: IbMr;
  readonly lkey: number;
  readonly rkey: number;
  /** The MR's IOVA (ibv_mr.addr). */
  readonly addr: number;
  readonly length: number;
}
/** struct ibv_sge. */
export interface IbvSge {
  addr: number;
  length: number;
  lkey: number;
}
/** struct ibv_send_wr (one element; pass arrays for a list). */
export interface IbvSendWr {
  wr_id: number;
  opcode: number;
  send_flags?: number;
  sg_list?: IbvSge[];
  imm_data?: number;
  wr?: {
    rdma?: { remote_addr: number; rkey: number };
    /**
     * IBV_WR_ATOMIC_*: the u64 at remote_addr (8-byte aligned) is compared with compare_add and
     * replaced by swap if equal (CMP_AND_SWP), or has compare_add added (FETCH_AND_ADD); its
     * original value lands in sg_list[0] (exactly one entry, 8 bytes, LOCAL_WRITE). Operands are
     * u64: a bigint, or a safe integer; either is taken modulo 2^64 (so -1n adds 2^64 - 1).
     */
    atomic?: { remote_addr: number; compare_add: bigint | number; swap?: bigint | number; rkey: number };
  };
}
/** struct ibv_recv_wr. */
export interface IbvRecvWr {
  wr_id: number;
  sg_list?: IbvSge[];
}
/** Anonymous user memory (mmapAnonymous). */
export interface UserMem {
  readonly addr: number;
  readonly length: number;
  /** The CPU's view of the mapping. */
  readonly bytes: Uint8Array;
}

interface ProcVerbs {
  contexts: Set<IbvContext>;
  maps: Map<number, UserPages>;
  /** The mapping `mapping()` found last (checked against `maps` before use). */
  lastMap?: UserPages;
}
const procs = new WeakMap<Process, ProcVerbs>();

function state(proc: Process): ProcVerbs {
  let s = procs.get(proc);
  if (!s) {
    const st: ProcVerbs = { contexts: new Set(), maps: new Map() };
    procs.set(proc, (s = st));
    // Exit closes every context (its QPs, MRs, CQs, PDs) and unmaps the process's memory, as
    // the uverbs file release does when a process dies without cleaning up.
    proc.atExit(async () => {
      for (const ctx of [...st.contexts]) await ibvCloseDevice(ctx);
      for (const m of st.maps.values()) userPagesFree(proc.kernel, m);
      st.maps.clear();
    });
  }
  return s;
}

function live(fn: string, ctx: IbvContext): void {
  if (!ctx || typeof ctx !== 'object' || !ctx.device)
    throw err('EINVAL', `${fn}: context is not an ibv_context`);
  if (ctx.closed) throw err('EINVAL', `${fn}: context was closed`);
  if (ctx.proc.exited) throw err('ESRCH', `${fn}: process ${ctx.proc} has exited`);
}

/** ibv_get_device_list: names of the host's RDMA devices. */
export function ibvGetDeviceList(proc: Process): string[] {
  return syscall(proc, 'ibv_get_device_list', () => ibDevices(proc.kernel).map((d) => d.name));
}

/** ibv_open_device by name. Throws: ENODEV naming the device. */
export function ibvOpenDevice(proc: Process, name: string): IbvContext {
  return syscall(proc, 'ibv_open_device', () => {
    const device = ibDevices(proc.kernel).find((d) => d.name === name);
    if (!device) throw err('ENODEV', `ibv_open_device: no RDMA device named ${JSON.stringify(name)}`);
    const ctx: IbvContext = {
      proc,
      device,
      hca: device.uar,
      objs: new Set(),
      asyncEvents: [],
      asyncWaiters: new Set(),
      closed: false,
    };
    state(proc).contexts.add(ctx);
    return ctx;
  });
}

/** ibv_close_device: destroys every QP, MR, CQ and PD the context still owns, then closes it. */
export async function ibvCloseDevice(ctx: IbvContext): Promise<void> {
  if (!ctx || ctx.closed) return;
  const objs = [...ctx.objs];
  const order = [objs.filter(isQp), objs.filter(isMr), objs.filter(isCq), objs.filter(isPd)];
  await syscall(ctx.proc, 'ibv_close_device', async () => {
    for (const q of order[0]) {
      const qp = q as IbvQp;
      await ibDestroyQp(qp.qp);
      // as ibv_destroy_qp does: a CQ of another context must not flush the freed rings.
      qp.send_cq.qps.delete(qp);
      qp.recv_cq.qps.delete(qp);
    }
    for (const m of order[1]) await ibDeregMr((m as IbvMr).mr);
    for (const c of order[2]) await ibDestroyCq((c as IbvCq).cq);
    for (const p of order[3]) ibDeallocPd((p as IbvPd).pd);
  });
  ctx.objs.clear();
  ctx.closed = true;
  state(ctx.proc).contexts.delete(ctx);
  // the async event file is gone: readers get null, unread events are dropped.
  ctx.asyncEvents.length = 0;
  for (const wake of [...ctx.asyncWaiters]) wake(null);
}
const isQp = (o: object): boolean => 'qp_num' in o;
const isMr = (o: object): boolean => 'lkey' in o;
const isCq = (o: object): boolean => 'ring' in o;
const isPd = (o: object): boolean => !isQp(o) && !isMr(o) && !isCq(o);

/** ibv_query_device. */
export function ibvQueryDevice(ctx: IbvContext): IbDeviceAttr {
  live('ibv_query_device', ctx);
  return ctx.device.ops.queryDevice();
}

/** ibv_query_port (port 1 only). Throws: EINVAL naming port_num. */
export function ibvQueryPort(ctx: IbvContext, port: number): IbPortAttr {
  live('ibv_query_port', ctx);
  if (port !== 1) throw err('EINVAL', `ibv_query_port: port_num ${port} (the HCA has port 1)`);
  return ctx.device.ops.queryPort();
}

/** ibv_alloc_pd. */
export function ibvAllocPd(ctx: IbvContext): IbvPd {
  live('ibv_alloc_pd', ctx);
  const pd: IbvPd = { context: ctx, pd: syscall(ctx.proc, 'ibv_alloc_pd', () => ibAllocPd(ctx.device)) };
  ctx.objs.add(pd);
  return pd;
}

/** ibv_dealloc_pd. Throws: EBUSY while QPs or MRs use it. */
export function ibvDeallocPd(pd: IbvPd): void {
  syscall(pd.context.proc, 'ibv_dealloc_pd', () => ibDeallocPd(pd.pd));
  pd.context.objs.delete(pd);
}

/** ibv_create_cq with at least `cqe` entries. */
export async function ibvCreateCq(
  ctx: IbvContext,
  cqe: number,
  channel: IbvCompChannel | null = null,
): Promise<IbvCq> {
  live('ibv_create_cq', ctx);
  if (channel !== null && (channel?.context !== ctx || !(channel.cqs instanceof Set)))
    throw err('EINVAL', 'ibv_create_cq: channel is not a completion channel of this context');
  const cq = await syscall(ctx.proc, 'ibv_create_cq', () => ibCreateCq(ctx.device, cqe));
  const o: IbvCq = {
    context: ctx,
    cq,
    ring: new RingConsumer(cq.ring),
    qps: new Set(),
    channel,
    eventsTaken: 0,
    eventsUnacked: 0,
  };
  cq.eventHandler = (ev) => asyncEventQueue(ctx, { event_type: ev.type, cq: o });
  ctx.objs.add(o);
  channel?.cqs.add(o);
  return o;
}

/**
 * ibv_destroy_cq. Throws: EBUSY while a QP uses it, or while completion events of it are not
 * acknowledged (libibverbs blocks there until they are; a call that may never return is worse).
 */
export async function ibvDestroyCq(cq: IbvCq): Promise<void> {
  if (cq.eventsUnacked > 0)
    throw err(
      'EBUSY',
      `ibv_destroy_cq: ${cq.eventsUnacked} completion event(s) of cq ${cq.cq.cqn} not acknowledged (ibv_ack_cq_events)`,
    );
  await syscall(cq.context.proc, 'ibv_destroy_cq', () => ibDestroyCq(cq.cq));
  cq.context.objs.delete(cq);
  cq.channel?.cqs.delete(cq);
}

/** struct ibv_qp_init_attr. */
export interface IbvQpInitAttr {
  send_cq: IbvCq;
  recv_cq: IbvCq;
  qp_type: number;
  cap: {
    max_send_wr: number;
    max_recv_wr: number;
    max_send_sge?: number;
    max_recv_sge?: number;
    max_inline_data?: number;
  };
}

/** ibv_create_qp (RC). The QP starts in IBV_QPS_RESET. */
export async function ibvCreateQp(pd: IbvPd, init: IbvQpInitAttr): Promise<IbvQp> {
  live('ibv_create_qp', pd.context);
  if (!init || typeof init !== 'object') throw err('EINVAL', 'ibv_create_qp: init_attr missing');
  const cqOf = (c: IbvCq, k: string) => {
    if (!c || typeof c !== 'object' || !c.cq)
      throw err('EINVAL', `ibv_create_qp: init_attr.${k} is not a CQ`);
    return c.cq;
  };
  const qp = await syscall(pd.context.proc, 'ibv_create_qp', () =>
    ibCreateQp(pd.pd, {
      ...init,
      send_cq: cqOf(init.send_cq, 'send_cq'),
      recv_cq: cqOf(init.recv_cq, 'recv_cq'),
    }),
  );
  const o: IbvQp = {
    context: pd.context,
    pd,
    qp,
    qp_num: qp.qpn,
    send_cq: init.send_cq,
    recv_cq: init.recv_cq,
    sq: new RingProducer(qp.sq),
    rq: new RingProducer(qp.rq),
  };
  init.send_cq.qps.add(o);
  init.recv_cq.qps.add(o);
  qp.eventHandler = (ev) => asyncEventQueue(pd.context, { event_type: ev.type, qp: o });
  pd.context.objs.add(o);
  return o;
}

/** ibv_modify_qp(qp, attr, attr_mask). Throws: EINVAL naming the attribute or transition. */
export async function ibvModifyQp(qp: IbvQp, attr: IbQpAttr, mask: number): Promise<void> {
  live('ibv_modify_qp', qp.context);
  await syscall(qp.context.proc, 'ibv_modify_qp', () => ibModifyQp(qp.qp, attr, mask));
}

/** ibv_query_qp, reduced to the state (which the device may have moved to IBV_QPS_ERR). */
export function ibvQueryQp(qp: IbvQp): { qp_state: number } {
  return { qp_state: qp.qp.state };
}

/** ibv_destroy_qp: outstanding work requests are dropped (no completions). */
export async function ibvDestroyQp(qp: IbvQp): Promise<void> {
  await syscall(qp.context.proc, 'ibv_destroy_qp', () => ibDestroyQp(qp.qp));
  qp.send_cq.qps.delete(qp);
  qp.recv_cq.qps.delete(qp);
  qp.context.objs.delete(qp);
}

/** mmap(MAP_ANONYMOUS): `length` bytes of zeroed, resident user memory. */
export function mmapAnonymous(proc: Process, length: number): UserMem {
  return syscall(proc, 'mmap', () => {
    const m = userPagesAlloc(proc.kernel, length);
    state(proc).maps.set(m.va, m);
    return { addr: m.va, length: m.length, bytes: m.bytes };
  });
}

/** munmap of a whole mmapAnonymous mapping. Throws: EINVAL (not a mapping), EBUSY (MR pins it). */
export function munmap(proc: Process, addr: number): void {
  syscall(proc, 'munmap', () => {
    const m = state(proc).maps.get(addr);
    if (!m) throw err('EINVAL', `munmap: addr 0x${Number(addr).toString(16)} is not a mapping`);
    userPagesFree(proc.kernel, m);
    const st = state(proc);
    st.maps.delete(addr);
    if (st.lastMap?.va === addr) st.lastMap = undefined;
  });
}

function mapping(proc: Process, addr: number, length: number): UserPages | undefined {
  const st = state(proc);
  const maps = st.maps;
  // posts keep using one buffer: look at the last mapping found first (if still mapped).
  const c = st.lastMap;
  if (c !== undefined && addr >= c.va && addr + length <= c.va + c.length && maps.get(c.va) === c) return c;
  for (const m of maps.values())
    if (addr >= m.va && addr + length <= m.va + m.length) {
      st.lastMap = m;
      return m;
    }
  return undefined;
}

/** ibv_reg_mr over user memory at `addr` (IOVA = addr). Throws: EFAULT (not mapped), EINVAL. */
export function ibvRegMr(pd: IbvPd, addr: number, length: number, access: number): IbvMr {
  const ctx = pd.context;
  live('ibv_reg_mr', ctx);
  const mr = syscall(ctx.proc, 'ibv_reg_mr', () => {
    const m = mapping(ctx.proc, addr, Number.isInteger(length) ? length : 0);
    if (!m)
      throw err('EFAULT', `ibv_reg_mr: addr 0x${Number(addr).toString(16)} length ${length} is not mapped`);
    return ibRegUserMr(pd.pd, m, addr, length, access);
  });
  return wrapMr(pd, mr);
}

function wrapMr(pd: IbvPd, mr: IbMr): IbvMr {
  const o: IbvMr = {
    context: pd.context,
    pd,
    mr,
    lkey: mr.lkey,
    rkey: mr.rkey,
    addr: mr.iova,
    length: mr.length,
  };
  pd.context.objs.add(o);
  return o;
}

/**
 * ibv_reg_dmabuf_mr(pd, offset, length, iova, fd, access): an unpinned (ODP) MR over the dma-buf
 * behind `fd`. Throws: EBADF, EINVAL (window, page offsets, access), EOPNOTSUPP (no ODP).
 */
export function ibvRegDmabufMr(
  pd: IbvPd,
  offset: number,
  length: number,
  iova: number,
  fd: number,
  access: number,
): Promise<IbvMr> {
  return regDmabuf('ibv_reg_dmabuf_mr', pd, { offset, length, iova, access, mode: IbMrMode.ODP }, fd);
}

/**
 * mlx5dv_reg_dmabuf_mr: with MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT a pinned MR (not revocable);
 * with P2PEMU_PINNED_REVOCABLE a pinned MR the exporter may revoke (then it fails for good).
 */
export function mlx5dvRegDmabufMr(
  pd: IbvPd,
  offset: number,
  length: number,
  iova: number,
  fd: number,
  access: number,
  mlx5Access: number,
): Promise<IbvMr> {
  const A = Mlx5dvRegDmabufAccess;
  const mode =
    mlx5Access === A.MLX5DV_REG_DMABUF_ACCESS_DATA_DIRECT
      ? IbMrMode.PINNED
      : mlx5Access === A.P2PEMU_PINNED_REVOCABLE
        ? IbMrMode.PINNED_REVOCABLE
        : null;
  if (mode === null) return Promise.reject(err('EINVAL', `mlx5dv_reg_dmabuf_mr: mlx5_access ${mlx5Access}`));
  return regDmabuf('mlx5dv_reg_dmabuf_mr', pd, { offset, length, iova, access, mode }, fd);
}

async function regDmabuf(
  fn: string,
  pd: IbvPd,
  r: { offset: number; length: number; iova: number; access: number; mode: IbMrMode },
  fd: number,
): Promise<IbvMr> {
  live(fn, pd.context);
  const proc = pd.context.proc;
  const mr = await syscall(proc, fn, async () => {
    const dmabuf = dmaBufGet(proc.fdt, fd);
    try {
      return await ibRegDmabufMr(pd.pd, dmabuf, r);
    } finally {
      dmaBufPut(dmabuf); // the umem holds its own reference
    }
  });
  return wrapMr(pd, mr);
}

/** ibv_dereg_mr: its lkey/rkey stop working (later remote use: IBV_WC_REM_ACCESS_ERR). */
export async function ibvDeregMr(mr: IbvMr): Promise<void> {
  await syscall(mr.context.proc, 'ibv_dereg_mr', () => ibDeregMr(mr.mr));
  mr.context.objs.delete(mr);
}

function postErr(fn: string, i: number, what: string): Error {
  return Object.assign(err('EINVAL', `${fn}: wr[${i}]${what}`), { badWr: i });
}

function checkSge(fn: string, i: number, list: IbvSge[] | undefined, max: number): IbvSge | null {
  if (list === undefined || list.length === 0) return null;
  if (!Array.isArray(list) || list.length > max)
    throw postErr(fn, i, `.sg_list has ${list.length} entries (max ${max})`);
  const s = list[0];
  if (!s || !Number.isSafeInteger(s.addr) || s.addr < 0) throw postErr(fn, i, '.sg_list[0].addr');
  if (!Number.isInteger(s.length) || s.length < 0 || s.length >= 2 ** 32)
    throw postErr(fn, i, '.sg_list[0].length');
  if (!Number.isInteger(s.lkey) || s.lkey < 0 || s.lkey >= 2 ** 32) throw postErr(fn, i, '.sg_list[0].lkey');
  return s;
}

// Scratch for inline data: the WQE carries it as words (no allocation per post).
const inlineBytes = new Uint8Array(MLX5_MAX_INLINE);
const inlineWords = new Int32Array(inlineBytes.buffer);

// The send opcodes the HCA executes are 0..IBV_WR_ATOMIC_FETCH_AND_ADD, without gaps: a range
// check per post instead of a Set lookup (measured ~10 ns).
const kLastSendOp = IbvWrOpcode.IBV_WR_ATOMIC_FETCH_AND_ADD;
function sendOp(op: unknown): boolean {
  return typeof op === 'number' && Number.isInteger(op) && op >= 0 && op <= kLastSendOp;
}

// A u64 operand of an atomic WR as its (lo, hi) u32 words, or null if it is no integer.
function u64Words(v: unknown): [number, number] | null {
  let b: bigint;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
  else return null;
  const u = BigInt.asUintN(64, b);
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
}

/**
 * ibv_post_send: write the WQEs, ring the doorbell once. The QP must be in RTS (or ERR, where
 * the requests are flushed). Throws: EINVAL naming wr[i] or the QP state; ENOMEM when the SQ
 * is full; EFAULT for inline data not in user memory.
 */
export function ibvPostSend(qp: IbvQp, wrs: IbvSendWr | readonly IbvSendWr[]): void {
  const fn = 'ibv_post_send';
  // one WR is not wrapped in an array (an allocation per post on the latency path)
  const many = Array.isArray(wrs);
  const count = many ? (wrs as readonly IbvSendWr[]).length : 1;
  const st = qp.qp.state;
  if ((st !== IbvQpState.IBV_QPS_RTS && st !== IbvQpState.IBV_QPS_ERR) || qp.qp.dead) {
    const what = qp.qp.dead ? 'destroyed' : `in state ${st}, not RTS`;
    throw Object.assign(err('EINVAL', `${fn}: qp ${qp.qp_num} is ${what}`), { badWr: 0 });
  }
  const sq = qp.sq;
  const w = sq.words;
  let posted = 0;
  try {
    for (let i = 0; i < count; i++) {
      const wr = many ? (wrs as readonly IbvSendWr[])[i] : (wrs as IbvSendWr);
      if (!wr || !Number.isSafeInteger(wr.wr_id) || wr.wr_id < 0) throw postErr(fn, i, '.wr_id');
      if (!sendOp(wr.opcode)) throw postErr(fn, i, `.opcode ${wr.opcode} is not supported`);
      const flags = wr.send_flags ?? 0;
      const sge = checkSge(fn, i, wr.sg_list, qp.qp.cap.max_send_sge);
      const inline =
        (flags & IbvSendFlags.IBV_SEND_INLINE) !== 0 &&
        wr.opcode !== IbvWrOpcode.IBV_WR_RDMA_READ &&
        !ibvWrIsAtomic(wr.opcode);
      let data: UserPages | null = null;
      if (inline && sge !== null) {
        if (sge.length > qp.qp.cap.max_inline_data)
          throw postErr(fn, i, `: inline ${sge.length} bytes > max_inline_data`);
        const m = mapping(qp.context.proc, sge.addr, sge.length);
        if (!m) throw Object.assign(err('EFAULT', `${fn}: wr[${i}] inline data is not mapped`), { badWr: i });
        data = m;
      }
      const atomic = ibvWrIsAtomic(wr.opcode) ? wr.wr?.atomic : undefined;
      let operands: [number, number, number, number] | null = null;
      if (ibvWrIsAtomic(wr.opcode)) {
        if (!atomic || !Number.isSafeInteger(atomic.remote_addr) || !Number.isInteger(atomic.rkey))
          throw postErr(fn, i, '.wr.atomic (remote_addr, rkey) missing');
        if (sge === null)
          throw postErr(fn, i, `: an atomic needs one sg_list entry (its ${ATOMIC_BYTES}-byte result)`);
        const cmp = u64Words(atomic.compare_add);
        const swp = u64Words(atomic.swap ?? 0);
        if (cmp === null) throw postErr(fn, i, '.wr.atomic.compare_add is not an integer');
        if (swp === null) throw postErr(fn, i, '.wr.atomic.swap is not an integer');
        operands = [cmp[0], cmp[1], swp[0], swp[1]];
      }
      const rdma = atomic ?? wr.wr?.rdma;
      const needsRemote =
        wr.opcode <= IbvWrOpcode.IBV_WR_RDMA_WRITE_WITH_IMM || wr.opcode === IbvWrOpcode.IBV_WR_RDMA_READ;
      if (needsRemote && (!rdma || !Number.isSafeInteger(rdma.remote_addr) || !Number.isInteger(rdma.rkey))) {
        throw postErr(fn, i, '.wr.rdma (remote_addr, rkey) missing');
      }
      const s = sq.claim();
      if (s < 0)
        throw Object.assign(err('ENOMEM', `${fn}: wr[${i}]: send queue of qp ${qp.qp_num} is full`), {
          badWr: i,
        });
      w[s + SendWqe.OPCODE] = wr.opcode;
      w[s + SendWqe.FLAGS] = flags;
      ringPutU64(w, s + SendWqe.WRID_LO, wr.wr_id);
      ringPutU64(w, s + SendWqe.RADDR_LO, rdma?.remote_addr ?? 0);
      w[s + SendWqe.RKEY] = rdma?.rkey ?? 0;
      w[s + SendWqe.IMM] = (wr.imm_data ?? 0) | 0;
      if (data !== null && sge !== null) {
        // the bytes into the WQE (a loop: no subarray per post for at most MLX5_MAX_INLINE bytes),
        // only the words they occupy (the HCA reads NSGE bytes); the last word's tail is zeroed.
        const n = sge.length;
        const src = data.bytes;
        const at = sge.addr - data.va;
        const words = (n + 3) >> 2;
        w[s + SendWqe.NSGE] = n;
        if (words > 0) inlineWords[words - 1] = 0;
        for (let k = 0; k < n; k++) inlineBytes[k] = src[at + k];
        for (let k = 0; k < words; k++) w[s + SEND_WQE_INLINE + k] = inlineWords[k];
      } else if (sge === null) w[s + SendWqe.NSGE] = 0;
      else {
        w[s + SendWqe.NSGE] = 1;
        ringPutU64(w, s + SendWqe.SGE_ADDR_LO, sge.addr);
        w[s + SendWqe.SGE_LEN] = sge.length | 0;
        w[s + SendWqe.SGE_LKEY] = sge.lkey | 0;
      }
      if (operands !== null) {
        // after the SGE words: COMPARE_ADD_HI takes the NSGE word (fabric/mlx5-wqe.ts AtomicWqe).
        w[s + AtomicWqe.COMPARE_ADD_LO] = operands[0] | 0;
        w[s + AtomicWqe.COMPARE_ADD_HI] = operands[1] | 0;
        w[s + AtomicWqe.SWAP_LO] = operands[2] | 0;
        w[s + AtomicWqe.SWAP_HI] = operands[3] | 0;
      }
      sq.commit();
      posted++;
    }
  } finally {
    if (posted > 0) ring(qp, qp.sq);
  }
}

/** ibv_post_recv: the QP must be past RESET. Throws: EINVAL naming wr[i]; ENOMEM when full. */
export function ibvPostRecv(qp: IbvQp, wrs: IbvRecvWr | readonly IbvRecvWr[]): void {
  const fn = 'ibv_post_recv';
  const many = Array.isArray(wrs);
  const count = many ? (wrs as readonly IbvRecvWr[]).length : 1;
  if (qp.qp.state === IbvQpState.IBV_QPS_RESET || qp.qp.dead) {
    const what = qp.qp.dead ? 'destroyed' : 'in RESET';
    throw Object.assign(err('EINVAL', `${fn}: qp ${qp.qp_num} is ${what}`), { badWr: 0 });
  }
  const rq = qp.rq;
  const w = rq.words;
  let posted = 0;
  try {
    for (let i = 0; i < count; i++) {
      const wr = many ? (wrs as readonly IbvRecvWr[])[i] : (wrs as IbvRecvWr);
      if (!wr || !Number.isSafeInteger(wr.wr_id) || wr.wr_id < 0) throw postErr(fn, i, '.wr_id');
      const sge = checkSge(fn, i, wr.sg_list, qp.qp.cap.max_recv_sge);
      const s = rq.claim();
      if (s < 0)
        throw Object.assign(err('ENOMEM', `${fn}: wr[${i}]: receive queue of qp ${qp.qp_num} is full`), {
          badWr: i,
        });
      ringPutU64(w, s + RecvWqe.WRID_LO, wr.wr_id);
      w[s + RecvWqe.NSGE] = sge === null ? 0 : 1;
      ringPutU64(w, s + RecvWqe.ADDR_LO, sge?.addr ?? 0);
      w[s + RecvWqe.LEN] = (sge?.length ?? 0) | 0;
      w[s + RecvWqe.LKEY] = (sge?.lkey ?? 0) | 0;
      rq.commit();
      posted++;
    }
  } finally {
    if (posted > 0) ring(qp, qp.rq);
  }
}

// The doorbell: publish the queue's producer position (doorbell record), then one UAR ring for
// the whole batch.
function ring(qp: IbvQp, q: IbvQp['sq']): void {
  q.flush();
  doorbellRing(qp.context.hca, Mlx5Ctl.UAR_DB);
}

function newWc(): IbvWc {
  return {
    wr_id: 0,
    status: 0,
    opcode: 0,
    vendor_err: 0,
    byte_len: 0,
    imm_data: 0,
    qp_num: 0,
    src_qp: 0,
    wc_flags: 0,
  };
}

/**
 * ibv_poll_cq: up to `n` completions into wc[0..] (entries are created if missing). Never
 * blocks. After a fatal device error, work requests still outstanding complete here with
 * IBV_WC_WR_FLUSH_ERR (software completions). Returns the number written.
 */
export function ibvPollCq(cq: IbvCq, n: number, wc: IbvWc[]): number {
  // its ring went back to the host arena with it (another CQ's may be there now).
  if (cq.cq.dead) throw err('EINVAL', `ibv_poll_cq: cq ${cq.cq.cqn} is destroyed`);
  const r = cq.ring;
  const w = r.words;
  let i = 0;
  for (; i < n; i++) {
    const s = r.peek();
    if (s < 0) break;
    wc[i] ??= newWc();
    cqeRead(w, s, wc[i]);
    r.release();
  }
  if (i < n && Atomics.load(cq.context.hca, Mlx5Ctl.FATAL) !== 0) i = swFlush(cq, n, wc, i);
  return i;
}

// mlx5_ib_poll_sw_comp: the device is dead, so userspace owns the work queue tails now.
function swFlush(cq: IbvCq, n: number, wc: IbvWc[], i: number): number {
  for (const qp of cq.qps) {
    if (qp.qp.dead) continue; // its rings went back to the arena with it
    for (const [q, recv] of [
      [qp.sq, false],
      [qp.rq, true],
    ] as const) {
      if ((recv ? qp.recv_cq : qp.send_cq) !== cq) continue;
      const w = q.words;
      const mask = q.slots - 1;
      for (let t = wqTail(w); i < n; t = (t + 1) | 0) {
        const b = wqPeekAt(w, mask, t);
        if (b < 0) break;
        const c = (wc[i] ??= newWc());
        c.wr_id = ringGetU64(w, b + (recv ? RecvWqe.WRID_LO : SendWqe.WRID_LO));
        c.status = IbvWcStatus.IBV_WC_WR_FLUSH_ERR;
        c.opcode = recv ? IbvWcOpcode.IBV_WC_RECV : IbvWcOpcode.IBV_WC_SEND;
        c.byte_len = 0;
        c.imm_data = 0;
        c.wc_flags = 0;
        c.vendor_err = 0;
        c.src_qp = 0;
        c.qp_num = qp.qp_num;
        wqRetire(w, (t + 1) | 0);
        i++;
      }
    }
  }
  return i;
}

// ---------------------------------------------------------------------------------------------
// Completion channels (kernel-semantics §7 rule 20): ibv_create_comp_channel, ibv_req_notify_cq,
// ibv_get_cq_event, ibv_ack_cq_events. The device raises an event for an armed CQ
// (nodes/devices/mlx5/mlx5-qp.ts CqHw.notify): it counts it in the CQ's EVENTS word and rings the
// CQ doorbell. One arm, at most one event; the usual loop is get event, ack, re-arm, poll to empty.

/** ibv_create_comp_channel. Throws: EINVAL naming the context; ESRCH after process exit. */
export function ibvCreateCompChannel(ctx: IbvContext): IbvCompChannel {
  live('ibv_create_comp_channel', ctx);
  return { context: ctx, cqs: new Set() };
}

/** ibv_destroy_comp_channel. Throws: EBUSY while a CQ still uses it. */
export function ibvDestroyCompChannel(channel: IbvCompChannel): void {
  if (channel.cqs.size > 0)
    throw err('EBUSY', `ibv_destroy_comp_channel: ${channel.cqs.size} CQ(s) still use the channel`);
}

/**
 * ibv_req_notify_cq: the next completion written to `cq` (with `solicitedOnly`: the next
 * solicited receive or error completion) raises one event on its channel. Arming again before
 * it fired keeps the stronger request. Throws: EINVAL when the CQ has no channel.
 */
export function ibvReqNotifyCq(cq: IbvCq, solicitedOnly = false): void {
  if (cq.channel === null)
    throw err('EINVAL', `ibv_req_notify_cq: cq ${cq.cq.cqn} has no completion channel`);
  const h = cq.context.hca;
  const at = hcaCqBase(cq.cq.cqn) + Mlx5CqCtx.ARM;
  // a NEXT arm is not weakened to SOLICITED; the device may disarm (NONE) at any time meanwhile.
  if (!solicitedOnly) Atomics.store(h, at, Mlx5CqArm.NEXT);
  else Atomics.compareExchange(h, at, Mlx5CqArm.NONE, Mlx5CqArm.SOLICITED);
}

/**
 * ibv_get_cq_event: the CQ of the channel's next completion event, or null if none came within
 * `timeoutMs` (libibverbs blocks without limit; every wait here has one). Each event returned
 * must be acknowledged with ibvAckCqEvents before its CQ can be destroyed. Never blocks the
 * thread. Throws (rejects): EINVAL naming timeoutMs.
 */
export async function ibvGetCqEvent(channel: IbvCompChannel, timeoutMs: number): Promise<IbvCq | null> {
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0)
    throw err('EINVAL', `ibv_get_cq_event: timeoutMs ${String(timeoutMs)} must be a number >= 0`);
  const end = performance.now() + timeoutMs;
  // one wait per CQ at a time: a wait that did not settle carries over to the next pass.
  const waiting = new Map<IbvCq, Promise<unknown>>();
  for (;;) {
    const left = end - performance.now();
    for (const cq of channel.cqs) {
      const h = cq.context.hca;
      const base = hcaCqBase(cq.cq.cqn);
      const seen = doorbellRead(h, base + Mlx5CqCtx.DB);
      // the device counts EVENTS before it rings DB: an event after this load moves DB first.
      if (Atomics.load(h, base + Mlx5CqCtx.EVENTS) !== cq.eventsTaken) {
        cq.eventsTaken++;
        cq.eventsUnacked++;
        return cq;
      }
      if (left > 0 && !waiting.has(cq)) {
        Atomics.store(h, base + Mlx5CqCtx.DB_NEED_WAKEUP, 1);
        const r = Atomics.waitAsync(h, base + Mlx5CqCtx.DB, seen, left);
        if (r.async)
          waiting.set(
            cq,
            r.value.then(() => waiting.delete(cq)),
          );
      }
    }
    if (left <= 0 || channel.cqs.size === 0) return null;
    // a doorbell moved or a wait timed out: look again. NEED_WAKEUP stays set: it only costs
    // the device a futex wake per batch while a reader may be waiting.
    if (waiting.size > 0) await Promise.race(waiting.values());
  }
}

/** ibv_ack_cq_events: acknowledge `n` events of `cq`. Throws: EINVAL naming n. */
export function ibvAckCqEvents(cq: IbvCq, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > cq.eventsUnacked)
    throw err(
      'EINVAL',
      `ibv_ack_cq_events: n ${n}: cq ${cq.cq.cqn} has ${cq.eventsUnacked} unacknowledged event(s)`,
    );
  cq.eventsUnacked -= n;
}

/**
 * Not a verb: resolve true once `cq` has an entry to poll (or the device died), false after
 * `timeoutMs`, without arming anything. Tests and benchmarks wait with it. Never blocks the thread.
 */
export async function ibvCqWaitEntry(cq: IbvCq, timeoutMs: number): Promise<boolean> {
  const h = cq.context.hca;
  const db = hcaCqBase(cq.cq.cqn) + Mlx5CqCtx.DB;
  const end = performance.now() + timeoutMs;
  for (;;) {
    const seen = doorbellRead(h, db);
    if (cq.ring.peek() >= 0 || Atomics.load(h, Mlx5Ctl.FATAL) !== 0) return true;
    const left = end - performance.now();
    if (left <= 0) return false;
    // ask for a notify, then wait while the count is unchanged (doorbell.ts protocol).
    Atomics.store(h, db + Mlx5CqCtx.DB_NEED_WAKEUP - Mlx5CqCtx.DB, 1);
    const r = Atomics.waitAsync(h, db, seen, left);
    if (r.async) await r.value;
    Atomics.store(h, db + Mlx5CqCtx.DB_NEED_WAKEUP - Mlx5CqCtx.DB, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Asynchronous events (the context's async event file: ibv_get_async_event / ibv_ack_async_event)

/** Events handed out by ibvGetAsyncEvent and not acknowledged yet. */
const unacked = new WeakSet<IbvAsyncEvent>();

// uverbs' event handler: queue `ev` on the context's async file, or hand it to a waiting reader.
function asyncEventQueue(ctx: IbvContext, ev: IbvAsyncEvent): void {
  if (ctx.closed) return;
  const wake = ctx.asyncWaiters.values().next();
  if (!wake.done) wake.value(ev);
  else ctx.asyncEvents.push(ev);
}

/**
 * ibv_get_async_event: the context's next asynchronous event (IBV_EVENT_CQ_ERR for a CQ that
 * overran, IBV_EVENT_QP_FATAL for a QP the device moved to ERR because a completion of it was
 * lost), or null after `timeoutMs` (Infinity: no limit) or when the context is closed. Never
 * blocks the thread. Every event returned must be acknowledged (ibvAckAsyncEvent).
 * Throws (rejects): EINVAL naming context or timeoutMs; ESRCH after process exit.
 */
export async function ibvGetAsyncEvent(ctx: IbvContext, timeoutMs: number): Promise<IbvAsyncEvent | null> {
  const fn = 'ibv_get_async_event';
  live(fn, ctx);
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0)
    throw err('EINVAL', `${fn}: timeoutMs ${String(timeoutMs)} must be a number >= 0`);
  let ev = ctx.asyncEvents.shift() ?? null;
  if (ev === null && timeoutMs > 0) {
    ev = await new Promise<IbvAsyncEvent | null>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const wake = (e: IbvAsyncEvent | null): void => {
        ctx.asyncWaiters.delete(wake);
        if (timer !== undefined) clearTimeout(timer);
        resolve(e);
      };
      ctx.asyncWaiters.add(wake);
      if (timeoutMs !== Number.POSITIVE_INFINITY) timer = setTimeout(() => wake(null), timeoutMs);
    });
  }
  if (ev !== null) unacked.add(ev);
  return ev;
}

/**
 * ibv_ack_async_event: acknowledge an event ibvGetAsyncEvent returned. (libibverbs makes
 * ibv_destroy_cq/qp wait for the acknowledgements of their events; that wait is not modelled.)
 * Throws: EINVAL naming event when it is not an event returned and not yet acknowledged.
 */
export function ibvAckAsyncEvent(event: IbvAsyncEvent): void {
  if (!event || typeof event !== 'object' || !unacked.has(event))
    throw err('EINVAL', 'ibv_ack_async_event: event is not an unacknowledged async event');
  unacked.delete(event);
}

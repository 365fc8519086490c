/**
 * mlx5_ib, the driver half of the mlx5-style HCA (the hardware half is nodes/devices/mlx5/).
 *
 * DOC: probe and firmware commands
 * mlx5Probe() adds the PCI function behind the IOMMU, allocates the HCA context (UAR doorbell,
 * QP/CQ/mkey tables), the MTT and the event queue, starts the device worker through DeviceHost
 * (fabric/device-queue-layout.ts, its firmware command queue) and sends INIT_HCA. Commands that
 * carry shared memory post it on the worker's port first and name it by token (mlx5Cmd). Every
 * command also rings the UAR doorbell, the one word the device sleeps on.
 *
 * TPH: probe gives the function its PCI TPH state and, when it can, enables TPH in
 * device-specific mode (mlx5-st.ts DOC: TPH on the HCA); dma-buf MRs then carry the exporter's
 * steering tag in their mkey (mlx5-mr.ts).
 *
 * DOC: event queue
 * The device raises page faults, CQ overruns (CQ_ERROR) and QP errors (QP_ERROR) on the EQ and
 * rings its doorbell; one Atomics.waitAsync watcher drains it and runs, per entry, the ODP fault
 * handler (mlx5-mr.ts mlx5PageFault) or the CQ/QP event handler (mlx5-qp.ts), which delivers
 * IBV_EVENT_CQ_ERR / IBV_EVENT_QP_FATAL to the object's owner (ib-core.ts ibDispatchEvent).
 *
 * DOC: device death
 * If the worker crashes (or is destroyed), the driver marks the HCA FATAL in the context so the
 * userspace provider flushes every outstanding work request in software
 * (IBV_WC_WR_FLUSH_ERR, mlx5_ib's sw completions), fails pending faults, and refuses new
 * commands (ENODEV).
 *
 * Thread: kernel (main thread); nothing here blocks except the bounded zap wait of mlx5-mr.ts.
 */
import { err, errnoName } from '../../../../common/errno.ts';
import { trace } from '../../../../common/trace.ts';
import {
  doorbellDisarm,
  doorbellKick,
  doorbellRead,
  doorbellRing,
  doorbellWaitAsync,
} from '../../../fabric/doorbell.ts';
import {
  hcaCqBase,
  hcaCreate,
  MLX5_ICM_WORDS,
  Mlx5Cmd,
  Mlx5CqArm,
  Mlx5CqCtx,
  Mlx5Ctl,
  Mlx5Eqe,
  Mlx5EqeType,
  mttCreate,
} from '../../../fabric/mlx5-layout.ts';
import { type PhysArenaDescriptor, physArenaCtlAlloc } from '../../../fabric/phys-arena.ts';
import { RingConsumer } from '../../../fabric/ring.ts';
import { ringCreate } from '../../../fabric/ring-layout.ts';
import type { Device } from '../../device.ts';
import { type DeviceCompletion, type DeviceHost, deviceHostSpawn } from '../../drivers/device-host.ts';
import type { HostKernel } from '../../kernel.ts';
import type { PciTphCap, PciTphReqType } from '../../pci/tph.ts';
import { type IbCq, IbDevice, type IbQp, ibRegisterDevice, ibUnregisterDevice } from '../ib-core.ts';
import { ibFabricAddPort, ibFabricRemovePort } from '../ib-fabric.ts';
import { type Mlx5Mr, mlx5MrReleaseAll, mlx5PageFault } from './mlx5-mr.ts';
import { mlx5IbOps } from './mlx5-ops.ts';
import { type Mlx5St, mlx5HcaTphMirror, mlx5StCreate, mlx5StDestroy } from './mlx5-st.ts';
import { mlx5CqError, mlx5QpError } from './mlx5-qp.ts';

/** The device model's worker entry (a file reference: kernel/ never imports devices/). */
const MLX5_WORKER = new URL('../../../devices/mlx5/mlx5-worker.ts', import.meta.url);

export interface Mlx5Options {
  /** Firmware command queue depth (power of two); default 64. */
  queueDepth?: number;
  /** Enable DeviceOp.CRASH / DeviceOp.STALL on the command queue (tests). */
  testHooks?: boolean;
  hangTimeoutMs?: number;
  /** Device busy-poll before sleeping, in microseconds (default 50). */
  spinUs?: number;
  /** IBV_ODP_SUPPORT (default true): without it, unpinned dma-buf MRs are EOPNOTSUPP. */
  odp?: boolean;
  /** Event queue entries (power of two); default 256. */
  eqSize?: number;
  /** PCI identity (topology device key) for exporters' P2PDMA decisions about this HCA. */
  pciId?: string;
  /**
   * The function's TPH Requester capability (topology `tph`); absent or null: none. With
   * device-specific mode and a capability-located ST table, probe enables TPH (mlx5-st.ts).
   */
  tph?: PciTphCap | null;
  /**
   * TPH Completer Supported of the root port above the HCA (the topology does not describe it).
   * Default EXT_TPH: a root port completing 8-bit and extended tags.
   */
  tphCompleter?: PciTphReqType;
}

/** One probed HCA. */
export class Mlx5Dev {
  readonly kernel: HostKernel;
  readonly name: string;
  readonly dev: Device;
  readonly host: DeviceHost;
  readonly hca: Int32Array;
  readonly mttSab: SharedArrayBuffer;
  readonly eq: RingConsumer;
  readonly odp: boolean;
  readonly lid: number;
  ibdev!: IbDevice;
  alive = true;
  /** Registered MRs by mkey index (page-fault lookup). */
  readonly mrs = new Map<number, Mlx5Mr>();
  /** mkey variant per index: a re-used index gets a new key, so stale rkeys fail. */
  readonly variants = new Uint8Array(4096);
  /** Free MTT ranges [start, count], first fit. */
  mttFree: [number, number][] = [];
  mttTop = 0;
  nextPdn = 1;
  readonly cqns = new Set<number>();
  readonly qpns = new Set<number>();
  /** Live CQs and QPs by number (the EQ handler's lookup for CQ/QP error events). */
  readonly cqObjs = new Map<number, IbCq>();
  readonly qpObjs = new Map<number, IbQp>();
  nextCqn = 1;
  nextQpn = 2;
  nextMkey = 1;
  /** The ST table indices in use; null while TPH is off on this HCA (mlx5-st.ts). */
  st: Mlx5St | null = null;
  /** What INIT_HCA hands the device. */
  readonly initPayload: {
    hca: Int32Array;
    mtt: SharedArrayBuffer;
    eq: SharedArrayBuffer;
    arena: PhysArenaDescriptor | null;
    icm: Int32Array | null;
  };
  private nextToken = 1;
  private eqSeen = 0;
  private eqArmed = false;

  constructor(kernel: HostKernel, name: string, opts: Mlx5Options) {
    this.kernel = kernel;
    this.name = name;
    this.odp = opts.odp ?? true;
    this.dev = kernel.addDevice(name, { pciId: opts.pciId });
    // in the host arena: the device's wasm data path (mlx5-fast.ts) reaches only that memory.
    this.hca = hcaCreate(kernel.arena);
    this.mttSab = mttCreate();
    const eqSab = ringCreate(opts.eqSize ?? 256);
    this.eq = new RingConsumer(eqSab);
    this.host = deviceHostSpawn({
      name,
      entry: MLX5_WORKER,
      iommu: kernel.iommu,
      iommuId: this.dev.iommuId!,
      queueDepth: opts.queueDepth ?? 64,
      testHooks: opts.testHooks,
      hangTimeoutMs: opts.hangTimeoutMs,
      params: opts.spinUs === undefined ? {} : { spinUs: opts.spinUs },
    });
    this.lid = ibFabricAddPort(kernel, {
      sab: this.hca.buffer as SharedArrayBuffer,
      index: this.hca.byteOffset / 4 + Mlx5Ctl.UAR_DB,
    });
    this.host.exited.then(() => this.onExit());
    // the firmware's private pages (ICM), beside the context: the wasm data path's arguments.
    const icm = kernel.arena !== null ? physArenaCtlAlloc(kernel.arena, MLX5_ICM_WORDS * 4) : null;
    this.initPayload = { hca: this.hca, mtt: this.mttSab, eq: eqSab, arena: kernel.arena, icm };
  }

  /** Ring the UAR doorbell: the device re-polls its queues now. */
  kick(): void {
    doorbellRing(this.hca, Mlx5Ctl.UAR_DB, true);
  }

  /**
   * Run one firmware command; `payload` (shared memory) is posted on the worker's port first.
   * Resolves when the device completed it. Throws: ENODEV when the device is gone; the
   * command's errno (EINVAL, EBUSY, EOPNOTSUPP, EIO) naming the command.
   */
  async cmd(opcode: Mlx5Cmd, payload?: object, arg0?: number): Promise<void> {
    if (!this.alive) throw err('ENODEV', `${this.name}: device is dead`);
    const token = this.nextToken++;
    if (payload) this.host.worker.postMessage({ ...payload, token });
    const done = new Promise<DeviceCompletion>((resolve) => {
      this.host.submit({ opcode, arg0: arg0 ?? token }, resolve);
    });
    this.kick();
    const c = await done;
    if (c.status < 0) {
      const name = Object.entries(Mlx5Cmd).find(([, v]) => v === opcode)?.[0] ?? opcode;
      throw err(errnoName(c.status) ?? 'EIO', `${this.name}: firmware command ${name} failed (${c.status})`);
    }
  }

  /** Arm the EQ watcher (the interrupt). */
  armEq(): void {
    if (this.eqArmed || !this.alive) return;
    this.eqArmed = true;
    const p = doorbellWaitAsync(this.hca, Mlx5Ctl.EQ_DB, this.eqSeen);
    if (p === null) queueMicrotask(this.onEq);
    else p.then(this.onEq);
  }

  private readonly onEq = (): void => {
    this.eqArmed = false;
    doorbellDisarm(this.hca, Mlx5Ctl.EQ_DB);
    if (!this.alive) return;
    // load the count before draining: an event raised after this load re-arms at once.
    this.eqSeen = doorbellRead(this.hca, Mlx5Ctl.EQ_DB);
    const eq = this.eq;
    const w = eq.words;
    for (let s = eq.peek(); s >= 0; s = eq.peek()) {
      const type = w[s + Mlx5Eqe.TYPE];
      const idx = w[s + Mlx5Eqe.MKEY_INDEX];
      const qpn = w[s + Mlx5Eqe.QPN];
      const cqn = w[s + Mlx5Eqe.CQN];
      eq.release();
      if (type === Mlx5EqeType.PAGE_FAULT) mlx5PageFault(this, idx);
      else if (type === Mlx5EqeType.CQ_ERROR) mlx5CqError(this, cqn);
      else if (type === Mlx5EqeType.QP_ERROR) mlx5QpError(this, qpn);
    }
    this.armEq();
  };

  private onExit(): void {
    if (!this.alive) return;
    this.alive = false;
    // userspace flushes in software from now on (poll_cq reads FATAL).
    Atomics.store(this.hca, Mlx5Ctl.FATAL, 1);
    trace('rdmaDeviceFatal', () => ({ dev: this.name }));
    if (this.eqArmed) doorbellKick(this.hca, Mlx5Ctl.EQ_DB);
    // wake completion waiters: their poll_cq now flushes in software. An armed CQ gets its
    // completion event (mlx5_ib_handle_internal_error calls the comp handler of armed CQs).
    for (const cqn of this.cqns) {
      const base = hcaCqBase(cqn);
      if (Atomics.exchange(this.hca, base + Mlx5CqCtx.ARM, Mlx5CqArm.NONE) !== Mlx5CqArm.NONE)
        Atomics.add(this.hca, base + Mlx5CqCtx.EVENTS, 1);
      doorbellKick(this.hca, base + Mlx5CqCtx.DB);
    }
  }
}

/**
 * Probe an HCA named `name` on `kernel`: device, worker, INIT_HCA, ib device registration.
 * Called by: host boot, tests. Throws: EEXIST/EINVAL (name), ENODEV (worker), EIO (INIT_HCA).
 */
export async function mlx5Probe(
  kernel: HostKernel,
  name = 'mlx5_0',
  opts: Mlx5Options = {},
): Promise<Mlx5Dev> {
  const d = new Mlx5Dev(kernel, name, opts);
  try {
    d.st = mlx5StCreate(kernel, d.dev, opts.tph ?? null, opts.tphCompleter, mlx5HcaTphMirror(d.hca));
    await d.cmd(Mlx5Cmd.INIT_HCA, { kind: 'init', ...d.initPayload });
  } catch (e) {
    mlx5StDestroy(d.dev);
    await d.host.destroy();
    ibFabricRemovePort(kernel, d.lid);
    throw e;
  }
  d.ibdev = new IbDevice(name, kernel, mlx5IbOps(d), d.hca);
  ibRegisterDevice(d.ibdev);
  d.armEq();
  return d;
}

/**
 * Remove the HCA: unregister, stop the worker (drain its command queue), then release every MR
 * still registered (their dma-buf attachments and IOMMU mappings). Idempotent.
 */
export async function mlx5Remove(d: Mlx5Dev): Promise<void> {
  if (d.ibdev) ibUnregisterDevice(d.ibdev);
  const closing = d.host.close();
  d.kick(); // the device sleeps on the UAR, not on the command doorbell: wake it for the stop
  await closing;
  d.alive = false;
  doorbellKick(d.hca, Mlx5Ctl.EQ_DB);
  await mlx5MrReleaseAll(d);
  mlx5StDestroy(d.dev);
  d.st = null;
  ibFabricRemovePort(d.kernel, d.lid);
}

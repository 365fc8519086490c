/**
 * The driver half of a queue-based device (shared memory contract in
 * fabric/device-queue-layout.ts; the hardware half is nodes/devices/device-runtime.ts).
 *
 * DOC: overview
 * deviceHostSpawn() builds one control block, an SQ and a CQ of `queueDepth` slots, a hardware
 * fence timeline (DmaFenceSharedTimeline) and the device's DMA context (iommuDeviceDmaCtx), and
 * starts the device worker with them. submit() writes one descriptor, emits the job's DmaFence
 * and rings the doorbell; submitBatch() writes N and rings once. One Atomics.waitAsync watcher
 * on the CQ doorbell (the device's interrupt) reaps completion entries, delivers each to its
 * job's callback, then lets the timeline signal the fences the device stored; poll() does the
 * same synchronously. Contract and protocol: docs/device-contract.md.
 *
 * DOC: capacity
 * At most queueDepth jobs are in flight (posted, completion not yet reaped); submit() beyond
 * that throws EBUSY and posts nothing (callers check `space`). The CQ is as large as the SQ, so
 * the device never finds the CQ full while the kernel keeps up.
 *
 * DOC: lifecycle and failure
 *  - close(): refuse new jobs (ENODEV), wait for in-flight ones, ask the device to stop (DRAIN),
 *    join the worker (terminate() if it does not leave in time). Idempotent.
 *  - destroy(error): refuse new jobs, ask the device to stop at once (ABORT), fail every job in
 *    flight with `error`, join. Idempotent; the failing happens before the first await.
 *  - crash: the worker exits without being asked (uncaught throw, process.exit, startup
 *    error). On 'exit', every completion the device did write is delivered as written, with
 *    its fence signalled to match (replayed from the CQ entry if the device died before storing
 *    the seqno), and every other job gets a completion and a fence with -EIO.
 *  - hang: no completion for hangTimeoutMs while jobs are in flight: destroy(-ETIMEDOUT), the
 *    dma-fence contract's "a hung fence is force-signalled with an error".
 * In every case each submitted job gets exactly one completion callback and its fence signals.
 *
 * Thread: kernel (main thread) only; nothing here blocks.
 */
import type { Worker } from 'node:worker_threads';
import { Errno, err, isNegErrno } from '../../../common/errno.ts';
import { spawnWorker } from '../../../common/worker.ts';
import {
  type DeviceInit,
  DeviceState,
  DeviceStop,
  DevCtl,
  devCtlCreate,
} from '../../fabric/device-queue-layout.ts';
import {
  doorbellDisarm,
  doorbellKick,
  doorbellRead,
  doorbellRing,
  doorbellWaitAsync,
} from '../../fabric/doorbell.ts';
import { RingConsumer, RingProducer } from '../../fabric/ring.ts';
import { ringCreate } from '../../fabric/ring-layout.ts';
import type { DmaFence } from '../dma-buf/dma-fence.ts';
import { DmaFenceSharedTimeline } from '../dma-buf/dma-fence-shared.ts';
import { type DmaCtxHandoff, iommuDeviceDmaCtx } from '../iommu/iommu.ts';
import { DeviceJobs } from './device-host-jobs.ts';
import {
  checkDeviceCmd,
  checkHostOptions,
  type DeviceCmd,
  type DeviceCompletionFn,
  type DeviceExit,
  type DeviceHostOptions,
  writeSqe,
} from './device-host-types.ts';

export type {
  DeviceCmd,
  DeviceCompletion,
  DeviceCompletionFn,
  DeviceExit,
  DeviceHostOptions,
} from './device-host-types.ts';

/** Default time close() lets in-flight jobs finish, and a stopped worker takes to exit. */
export const DEVICE_CLOSE_TIMEOUT_MS = 5_000;
/** Default hang detection: no completion for this long with jobs in flight. */
export const DEVICE_HANG_TIMEOUT_MS = 10_000;
/** How long destroy() lets an aborted worker leave on its own before terminate(). */
const DESTROY_GRACE_MS = 1_000;

const HostState = { OPEN: 0, CLOSING: 1, STOPPING: 2, DEAD: 3 } as const;
type HostState = (typeof HostState)[keyof typeof HostState];

/** Kernel side of one device queue. Build with deviceHostSpawn(). */
export class DeviceHost {
  readonly name: string;
  readonly worker: Worker;
  readonly depth: number;
  readonly timeline: DmaFenceSharedTimeline;
  /** Resolves once the worker has exited; never rejects. */
  readonly exited: Promise<DeviceExit>;
  /** Interrupts handled (diagnostics). */
  irqs = 0;
  private readonly ctl: Int32Array;
  private readonly sq: RingProducer;
  private readonly jobs: DeviceJobs;
  private readonly handoff: DmaCtxHandoff;
  private readonly hangTimeoutMs: number;
  private state: HostState = HostState.OPEN;
  private armed = false;
  private irqSeen = 0;
  private hangTimer: NodeJS.Timeout | null = null;
  private workerError: Error | null = null;
  private exitCode: number | null = null;
  private stopRequested = false;
  private destroyed = false;
  private closing: Promise<void> | null = null;
  private destroying: Promise<void> | null = null;
  private resolveExit!: (e: DeviceExit) => void;

  /** Spawns the worker: use deviceHostSpawn(). Throws: EINVAL naming a bad option. */
  constructor(opts: DeviceHostOptions) {
    checkHostOptions(opts);
    this.name = opts.name;
    this.depth = opts.queueDepth ?? 256;
    this.hangTimeoutMs = opts.hangTimeoutMs ?? DEVICE_HANG_TIMEOUT_MS;
    const ctl = devCtlCreate();
    const sq = ringCreate(this.depth);
    const cq = ringCreate(this.depth);
    this.ctl = new Int32Array(ctl);
    this.sq = new RingProducer(sq);
    // emit() refuses beyond ringSize unprocessed fences: up to `depth` jobs in flight plus up to
    // one device batch (`depth`) whose completions are reaped before its seqno is stored.
    this.timeline = new DmaFenceSharedTimeline(this.name, `${this.name}.q0`, {
      ringSize: Math.max(64, 2 * this.depth),
    });
    this.jobs = new DeviceJobs(this.depth, new RingConsumer(cq), this.timeline);
    this.handoff = iommuDeviceDmaCtx(opts.iommu, opts.iommuId);
    this.exited = new Promise((resolve) => {
      this.resolveExit = resolve;
    });
    const init: DeviceInit = {
      name: this.name,
      ctl,
      sq,
      cq,
      fence: this.timeline.desc,
      dma: this.handoff.desc,
      testHooks: opts.testHooks === true,
      params: opts.params,
    };
    try {
      this.worker = spawnWorker(opts.entry, { workerData: init, transferList: this.handoff.transferList });
    } catch (e) {
      this.handoff.release();
      this.timeline.destroy(-Errno.ENODEV);
      throw err('ENODEV', `deviceHostSpawn(${this.name}): worker did not start`, { cause: e });
    }
    // Without an 'error' listener a worker's uncaught exception would crash the kernel thread.
    this.worker.on('error', (e) => {
      this.workerError = e;
    });
    this.worker.once('exit', this.onExit);
  }

  /** Jobs posted whose completion has not been reaped yet. */
  get inFlight(): number {
    return this.jobs.count;
  }

  /** Completion entries that matched no job in flight (a device bug); ignored. */
  get badCompletions(): number {
    return this.jobs.badCompletions;
  }

  /** Jobs submit() accepts right now (0 once closing or dead). */
  get space(): number {
    return this.state === HostState.OPEN ? this.depth - this.jobs.count : 0;
  }

  /** False once the device crashed, was destroyed or stopped. */
  get alive(): boolean {
    return this.state !== HostState.DEAD;
  }

  /**
   * Resolve once the device loop runs (DevCtl.STATE = RUNNING). Submitting earlier is fine (the
   * jobs wait in the SQ); this is for callers that time things.
   * Throws: ETIMEDOUT after `ms`; ENODEV if the worker exited first.
   */
  async ready(ms = 10_000): Promise<void> {
    const end = performance.now() + ms;
    for (;;) {
      const st = Atomics.load(this.ctl, DevCtl.STATE);
      if (st === DeviceState.RUNNING) return;
      if (st === DeviceState.STOPPED || this.exitCode !== null) {
        throw err('ENODEV', `${this.name}.ready: the device worker exited`, { cause: this.workerError });
      }
      const left = end - performance.now();
      if (left <= 0) throw err('ETIMEDOUT', `${this.name}.ready: device not running within ${ms} ms`);
      const r = Atomics.waitAsync(this.ctl, DevCtl.STATE, st, left);
      if (r.async) await Promise.race([r.value, this.exited]);
    }
  }

  /**
   * Reap the CQ now instead of waiting for the interrupt watcher (NAPI-style polling): delivers
   * every completion the device has written (callbacks run inside this call) and signals the
   * fences it stored. Returns completions delivered. A fence can signal before its completion is
   * reaped, so a caller that waited for a fence and needs its slot back polls.
   * Called by: drivers, kernel thread; not from inside a completion callback.
   */
  poll(): number {
    if (this.state === HostState.DEAD) return 0;
    const n = this.jobs.reap(false);
    this.timeline.process();
    return n;
  }

  /**
   * Post one job and ring the doorbell. Returns the job's fence; `onComplete` gets its
   * completion (exactly once, also when the device dies). Called by: drivers, kernel thread.
   * Throws: ENODEV when closing or dead; EBUSY with queueDepth jobs in flight; EINVAL naming a
   * field of `cmd` that does not fit its descriptor word.
   */
  submit(cmd: DeviceCmd, onComplete?: DeviceCompletionFn): DmaFence {
    this.checkSubmit('submit', 1);
    checkDeviceCmd(`${this.name}.submit`, cmd);
    const f = this.post(cmd, onComplete);
    this.kick();
    return f;
  }

  /**
   * Post every job of `cmds`, then ring the doorbell once. All or nothing: nothing is posted
   * if one command is invalid or they do not all fit. Same throws as submit().
   */
  submitBatch(cmds: readonly DeviceCmd[], onComplete?: DeviceCompletionFn): DmaFence[] {
    if (!Array.isArray(cmds)) throw err('EINVAL', `${this.name}.submitBatch: cmds must be an array`);
    this.checkSubmit('submitBatch', cmds.length);
    for (let i = 0; i < cmds.length; i++) checkDeviceCmd(`${this.name}.submitBatch: cmds[${i}]`, cmds[i]);
    const fences = cmds.map((c) => this.post(c, onComplete));
    if (fences.length > 0) this.kick();
    return fences;
  }

  /** Drain and stop (see DOC: lifecycle). Idempotent: returns the same promise. */
  close(timeoutMs = DEVICE_CLOSE_TIMEOUT_MS): Promise<void> {
    if (this.destroying) return this.destroying;
    if (!this.closing) this.closing = this.drainAndStop(timeoutMs);
    return this.closing;
  }

  /**
   * Fail everything in flight with `error` (a negative errno, default -ECANCELED) and stop the
   * worker. Idempotent. Throws: EINVAL if `error` is not a negative errno.
   */
  destroy(error: number = -Errno.ECANCELED): Promise<void> {
    if (this.destroying) return this.destroying;
    if (!isNegErrno(error))
      throw err('EINVAL', `${this.name}.destroy: error ${error} is not a negative errno`);
    this.destroyed = true;
    if (this.state === HostState.DEAD) {
      this.destroying = this.exited.then(() => {});
      return this.destroying;
    }
    this.state = HostState.DEAD;
    this.requestStop(DeviceStop.ABORT);
    this.jobs.failAll(error);
    this.destroying = this.join(DESTROY_GRACE_MS);
    return this.destroying;
  }

  private checkSubmit(fn: string, n: number): void {
    if (this.state !== HostState.OPEN) {
      throw err(
        'ENODEV',
        `${this.name}.${fn}: device ${this.state === HostState.DEAD ? 'is dead' : 'is closing'}`,
      );
    }
    if (this.jobs.count + n > this.depth) {
      throw err(
        'EBUSY',
        `${this.name}.${fn}: ${this.jobs.count} of ${this.depth} jobs in flight, ${n} more do not fit`,
      );
    }
  }

  private post(cmd: DeviceCmd, cb: DeviceCompletionFn | undefined): DmaFence {
    // cannot fail: SQ occupancy <= jobs in flight < depth == SQ slots.
    const s = this.sq.claim();
    if (s < 0) throw err('EBUSY', `${this.name}: submission ring full`);
    const fence = this.timeline.emit();
    writeSqe(this.sq.words, s, cmd, fence.seqno);
    this.sq.commit();
    this.jobs.add(fence, cb, cmd.opcode);
    return fence;
  }

  private kick(): void {
    this.sq.flush();
    doorbellRing(this.ctl, DevCtl.SQ_DB);
    this.arm();
    if (this.hangTimer === null && Number.isFinite(this.hangTimeoutMs)) {
      this.hangTimer = setTimeout(this.onHangTimer, this.hangTimeoutMs).unref();
    }
  }

  private requestStop(mode: DeviceStop): void {
    this.stopRequested = true;
    Atomics.store(this.ctl, DevCtl.STOP, mode);
    // wake the device wherever it sleeps: on STOP (full CQ) or on the SQ doorbell (idle, STALL).
    Atomics.notify(this.ctl, DevCtl.STOP);
    doorbellRing(this.ctl, DevCtl.SQ_DB, true);
  }

  private async drainAndStop(timeoutMs: number): Promise<void> {
    if (this.state === HostState.OPEN) this.state = HostState.CLOSING;
    // this.alive, not this.state: a crash or destroy() may end the device during the await.
    if (this.jobs.count > 0 && this.alive && !(await this.jobs.whenIdle(timeoutMs))) {
      if (this.alive) return this.destroy(-Errno.ETIMEDOUT);
    }
    if (this.alive) {
      this.state = HostState.STOPPING;
      this.requestStop(DeviceStop.DRAIN);
    }
    await this.join(timeoutMs);
  }

  // Wait for the worker to exit by itself for up to `ms`, then terminate it.
  private async join(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), ms);
    });
    const r = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (r === 'late') await this.worker.terminate();
    await this.exited;
  }

  // Queue the one interrupt watcher while jobs are in flight.
  private arm(): void {
    if (this.armed || this.state === HostState.DEAD || this.jobs.count === 0) return;
    this.armed = true;
    const p = doorbellWaitAsync(this.ctl, DevCtl.CQ_DB, this.irqSeen);
    // the count moved since the last reap: handle it, but not inside submit().
    if (p === null) queueMicrotask(this.onIrq);
    else p.then(this.onIrq);
  }

  private readonly onIrq = (): void => {
    this.armed = false;
    doorbellDisarm(this.ctl, DevCtl.CQ_DB);
    if (this.state === HostState.DEAD) return;
    this.irqs++;
    // load the count before reaping: an interrupt raised after this load re-arms at once.
    this.irqSeen = doorbellRead(this.ctl, DevCtl.CQ_DB);
    try {
      this.jobs.reap(false);
      // the device stored the seqnos before ringing: signal those fences now, not on a poll.
      this.timeline.process();
    } finally {
      this.arm();
    }
  };

  // Hang check, and the fallback poll for a lost interrupt: one timer while jobs are in flight.
  private readonly onHangTimer = (): void => {
    this.hangTimer = null;
    if (this.state === HostState.DEAD || this.jobs.count === 0) return;
    if (this.jobs.reap(false) > 0) this.timeline.process();
    if (this.jobs.count === 0) return;
    const idle = performance.now() - this.jobs.lastProgress;
    if (idle >= this.hangTimeoutMs) {
      void this.destroy(-Errno.ETIMEDOUT);
      return;
    }
    this.hangTimer = setTimeout(this.onHangTimer, this.hangTimeoutMs - idle).unref();
  };

  private readonly onExit = (code: number): void => {
    this.exitCode = code;
    const clean =
      code === 0 &&
      this.stopRequested &&
      this.workerError === null &&
      Atomics.load(this.ctl, DevCtl.STATE) === DeviceState.STOPPED;
    if (this.state !== HostState.DEAD) {
      this.state = HostState.DEAD;
      // the device is gone: what it wrote is final, everything else failed with -EIO.
      this.jobs.failAll(-Errno.EIO);
    }
    if (this.hangTimer !== null) clearTimeout(this.hangTimer);
    this.hangTimer = null;
    this.handoff.release();
    // release a queued interrupt watcher; it sees DEAD and stops.
    if (this.armed) doorbellKick(this.ctl, DevCtl.CQ_DB);
    this.jobs.wakeIdle();
    this.resolveExit({ code, crashed: !clean && !this.destroyed, error: this.workerError });
  };
}

/**
 * Start a device: queue memory, fence timeline, DMA context and worker (see DOC: overview).
 * Called by: device drivers' probe (edu.ts), kernel thread.
 * Throws: EINVAL naming a bad option; ENODEV if the worker cannot be created.
 */
export function deviceHostSpawn(opts: DeviceHostOptions): DeviceHost {
  return new DeviceHost(opts);
}

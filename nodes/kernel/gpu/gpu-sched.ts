/**
 * The GPU job scheduler (drivers/gpu/drm/scheduler, reduced): jobs wait for their dependency
 * fences in the kernel, and only a job whose dependencies have all signalled goes on the
 * device's ring. The hardware therefore never waits for a fence of another device, and a job
 * on the ring always makes progress.
 *
 * DOC: entities
 * Two entities, each a FIFO with its own fence timeline (the drm_sched "finished" fences):
 *  - KERNEL: the driver's own copies (buffer moves). Their dependencies are waited before they
 *    are queued (dma-buf-move.ts), so they never block, and they are never stuck behind a user
 *    job that waits for the very move they perform;
 *  - USER: fill/checksum/copy jobs from userspace and other drivers.
 * A job's finished fence is returned at push() time, so callers publish it in a dma_resv before
 * the job runs; it signals when the job's last descriptor completed, with the first error.
 *
 * DOC: failure
 *  - a dependency that does not signal within `depTimeoutMs`: the job is sent as a NOP and its
 *    fence signals -ETIMEDOUT. Going through the ring keeps each entity's fences in order;
 *  - a dependency that signalled with an error: the job is sent as a NOP and its fence carries
 *    that error (kernel-semantics §2.2 rule 11), so a chain of jobs after a failure does not run;
 *  - the device dies (crash, destroy, hang): jobs on the ring get the device's error from their
 *    completion (-EIO, -ETIMEDOUT, ...), queued jobs -ENODEV;
 *  - close(): refuse new jobs (ENODEV), run what is queued, wait until idle.
 * Every pushed job's fence signals exactly once.
 *
 * Thread: kernel (main thread). Nothing here takes a dma_resv lock.
 */
import { Errno, err } from '../../../common/errno.ts';
import { DeviceOp } from '../../fabric/device-queue-layout.ts';
import {
  type DmaFence,
  type DmaFenceCb,
  DmaFenceTimeline,
  dmaFenceAddCallback,
  dmaFenceIsSignaled,
  dmaFenceRemoveCallback,
} from '../dma-buf/dma-fence.ts';
import type { DeviceCmd, DeviceCompletion, DeviceHost } from '../drivers/device-host.ts';
import { checkDeviceCmd } from '../drivers/device-host-types.ts';

/** The scheduler's entities, in the order it serves them. */
export const GpuEntity = { KERNEL: 0, USER: 1 } as const;
export type GpuEntity = (typeof GpuEntity)[keyof typeof GpuEntity];

/** What a job reports when its fence signals. */
export interface GpuJobResult {
  /** 0, or the first negative errno of its descriptors (or the scheduler's). */
  status: number;
  /** Cqe.RESULT of the job's last descriptor (CHECKSUM: the CRC-32). */
  result: number;
}

/** A pushed job: its finished fence, and its result (`done` never rejects). */
export interface GpuJob {
  fence: DmaFence;
  done: Promise<GpuJobResult>;
}

interface SchedJob {
  cmds: readonly DeviceCmd[];
  deps: readonly DmaFence[];
  fence: DmaFence;
  timeline: DmaFenceTimeline;
  /** Descriptors still on the ring. */
  left: number;
  status: number;
  result: number;
  /** Error decided before the job ran (dependency timeout): sent as a NOP. */
  forced: number;
  waitCb: DmaFenceCb | null;
  waitOn: DmaFence | null;
  timer: NodeJS.Timeout | null;
  resolve: (r: GpuJobResult) => void;
}

export class GpuSched {
  readonly name: string;
  /** Jobs whose dependency timed out (diagnostics). */
  depTimeouts = 0;
  private readonly host: DeviceHost;
  private readonly depTimeoutMs: number;
  private readonly timelines: DmaFenceTimeline[];
  private readonly queues: SchedJob[][] = [[], []];
  private onRing = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(host: DeviceHost, depTimeoutMs: number) {
    this.host = host;
    this.name = host.name;
    this.depTimeoutMs = depTimeoutMs;
    this.timelines = [
      new DmaFenceTimeline(host.name, `${host.name}.kernel`),
      new DmaFenceTimeline(host.name, `${host.name}.user`),
    ];
    // A crash with nothing on the ring still has to fail what waits in the queues.
    void host.exited.then(() => this.run());
  }

  /** Jobs queued or on the ring. */
  get pending(): number {
    return this.queues[0].length + this.queues[1].length + this.onRing;
  }

  /**
   * Queue a job of 1..queueDepth descriptors behind `deps` on `entity`; returns its finished
   * fence at once. Called by: the GPU driver (gpu-jobs.ts, moves), kernel thread; may be called
   * with dma_resv locks held. Throws: ENODEV once closed or the device is dead; EINVAL naming a
   * descriptor field or a bad descriptor count.
   */
  push(entity: GpuEntity, cmds: readonly DeviceCmd[], deps: readonly DmaFence[] = []): GpuJob {
    if (this.closed || !this.host.alive) throw err('ENODEV', `${this.name}: GPU is closed or dead`);
    if (!(cmds.length >= 1 && cmds.length <= this.host.depth)) {
      throw err('EINVAL', `${this.name}.push: ${cmds.length} descriptors, must be 1..${this.host.depth}`);
    }
    for (let i = 0; i < cmds.length; i++) checkDeviceCmd(`${this.name}.push: cmds[${i}]`, cmds[i]);
    const timeline = this.timelines[entity];
    let resolve!: (r: GpuJobResult) => void;
    const done = new Promise<GpuJobResult>((r) => {
      resolve = r;
    });
    const job: SchedJob = {
      cmds,
      deps: [...deps],
      fence: timeline.emit(),
      timeline,
      left: 0,
      status: 0,
      result: 0,
      forced: 0,
      waitCb: null,
      waitOn: null,
      timer: null,
      resolve,
    };
    this.queues[entity].push(job);
    this.run();
    return { fence: job.fence, done };
  }

  /** Refuse new jobs, let queued ones run; resolves true once idle, false after `ms`. Idempotent. */
  close(ms: number): Promise<boolean> {
    this.closed = true;
    this.run();
    if (this.pending === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Fail every queued job with `error` (the ring's jobs get their completions). */
  failQueued(error: number): void {
    this.closed = true;
    for (const q of this.queues) for (const job of q.splice(0)) this.finish(job, error, 0);
    this.checkIdle();
  }

  // Move every job whose dependencies signalled onto the ring, each entity in order.
  private run(): void {
    if (!this.host.alive) {
      this.failQueued(-Errno.ENODEV);
      return;
    }
    for (const q of this.queues) {
      while (q.length > 0) {
        const job = q[0];
        if (job.forced === 0 && !this.depsReady(job)) break;
        // A failed dependency fails the job without running it (drm_sched propagates the error).
        if (job.forced === 0) job.forced = job.deps.find((f) => f.error < 0)?.error ?? 0;
        const cmds = job.forced !== 0 ? [{ opcode: DeviceOp.NOP }] : job.cmds;
        // No room: a job on the ring will complete and run us again.
        if (this.host.space < cmds.length) return;
        q.shift();
        this.disarm(job);
        job.left = cmds.length;
        try {
          this.host.submitBatch(cmds, (c) => this.complete(job, c));
        } catch {
          // the device died or is closing between the check and the post
          this.finish(job, -Errno.ENODEV, 0);
          this.failQueued(-Errno.ENODEV);
          return;
        }
        this.onRing++;
      }
    }
  }

  // True if every dependency signalled; otherwise wait on the first one left (and arm the
  // dependency deadline once).
  private depsReady(job: SchedJob): boolean {
    const dep = job.deps.find((f) => !dmaFenceIsSignaled(f));
    if (dep === undefined) return true;
    if (job.waitOn === dep) return false;
    if (job.waitCb !== null && job.waitOn !== null) dmaFenceRemoveCallback(job.waitOn, job.waitCb);
    const cb: DmaFenceCb = {
      // runs in a signalling section: only schedule the run.
      func: () => queueMicrotask(() => this.run()),
    };
    job.waitCb = cb;
    job.waitOn = dep;
    if (dmaFenceAddCallback(dep, cb) !== 0) {
      job.waitCb = null;
      job.waitOn = null;
      return this.depsReady(job);
    }
    job.timer ??= setTimeout(() => {
      job.timer = null;
      if (job.left !== 0 || !this.queues.some((q) => q.includes(job))) return;
      this.depTimeouts++;
      job.forced = -Errno.ETIMEDOUT;
      this.run();
    }, this.depTimeoutMs).unref();
    return false;
  }

  private disarm(job: SchedJob): void {
    if (job.waitCb !== null && job.waitOn !== null) dmaFenceRemoveCallback(job.waitOn, job.waitCb);
    job.waitCb = null;
    job.waitOn = null;
    if (job.timer !== null) clearTimeout(job.timer);
    job.timer = null;
  }

  private complete(job: SchedJob, c: DeviceCompletion): void {
    if (c.status < 0 && job.status === 0) job.status = c.status;
    job.result = c.result;
    if (--job.left > 0) return;
    this.onRing--;
    this.finish(job, job.forced !== 0 ? job.forced : job.status, job.status < 0 ? 0 : job.result);
    // room on the ring: the next job may go (not from inside the completion callback).
    queueMicrotask(() => this.run());
    this.checkIdle();
  }

  private finish(job: SchedJob, status: number, result: number): void {
    this.disarm(job);
    job.timeline.signal(job.fence, status < 0 ? status : 0);
    job.resolve({ status: status < 0 ? status : 0, result });
  }

  private checkIdle(): void {
    if (this.pending !== 0) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

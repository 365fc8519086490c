/**
 * Device runtime: the hardware half of every queue-based device, run inside its worker (the
 * SimBricks Runner to a model's Device callbacks). It owns the queue memory, the DMA context
 * and the fence timeline; a DeviceModel only executes one decoded descriptor at a time and never
 * touches rings, doorbells or fences itself.
 *
 * DOC: main loop
 *   1. load the SQ doorbell count, then the STOP word;
 *   2. drain: for each published submission, decode it, hand the slot back, execute it, write
 *      its completion; then store the fence seqno of the batch's last job (a job that failed is
 *      signalled at once, with its error) and ring the CQ doorbell (the interrupt) once;
 *   3. nothing drained: a DRAIN stop request ends the loop; otherwise spin briefly, then sleep
 *      on the SQ doorbell for at most WAIT_SLICE_MS (bounded, so stop requests and terminate()
 *      always get through even if a notify is missed).
 * Per job the order is: completion entry, then fence seqno, then interrupt; so a kernel that
 * sees a fence signalled finds its completion already in the CQ.
 *
 * DOC: misprogramming
 * Nothing the kernel writes into a descriptor can throw out of the worker. Unknown opcodes
 * complete with -EOPNOTSUPP, bad lengths with -EINVAL (models check), bad addresses with the DMA
 * status (fabric/dma.ts also appends an IOMMU fault record), a model that throws with -EIO. The
 * only deliberate exits are the test hooks (DeviceOp.CRASH), enabled by DeviceInit.testHooks.
 *
 * DOC: stop
 * DRAIN: finish everything posted, mark STATE = STOPPED, close the DMA context and return, so
 * the worker exits 0. ABORT: stop at the next descriptor boundary (a STALL ends early) and write
 * no completion and no fence value after seeing it: the kernel has already failed that work.
 *
 * Imports only fabric/ and common/ (devices never import the kernel).
 */
import { Errno } from '../../common/errno.ts';
import {
  CrashMode,
  Cqe,
  DEVICE_OP_MODEL_MAX,
  type DeviceInit,
  DeviceOp,
  DeviceState,
  DeviceStop,
  DevCtl,
  devCtlCheck,
  Sqe,
} from '../fabric/device-queue-layout.ts';
import { DmaCtx } from '../fabric/dma.ts';
import { doorbellRead, doorbellRing, doorbellWait } from '../fabric/doorbell.ts';
import { HwFenceTimeline } from '../fabric/fence/hw-fence.ts';
import { RingConsumer, RingProducer } from '../fabric/ring.ts';
import { ringGetU64, ringPutU64 } from '../fabric/ring-layout.ts';

/** Longest single sleep of the device loop (and of a stalled CQ, and of STALL). */
export const WAIT_SLICE_MS = 50;
/** Default busy-poll before sleeping, in microseconds (params.spinUs overrides). */
export const DEFAULT_SPIN_US = 20;

/** One decoded submission. The runtime reuses a single object: models must not keep it. */
export interface DeviceCommand {
  opcode: number;
  flags: number;
  /** Fence seqno of the job (u32). */
  seqno: number;
  /** Bytes (u32). */
  len: number;
  src: number;
  dst: number;
  arg0: number;
  arg1: number;
  /** Value for Cqe.RESULT (a safe integer >= 0); 0 unless the model sets it. */
  result: number;
}

/** A device model: the upcalls the runtime makes (SimBricks' Runner::Device). */
export interface DeviceModel {
  readonly name: string;
  /**
   * Execute one descriptor (opcode in 1..DEVICE_OP_MODEL_MAX).
   * Called by: the runtime, device worker, one descriptor at a time in submission order.
   * Returns 0 or a negative errno for the completion; set cmd.result to report a value.
   * Must not throw: a throw (a model bug) completes the job with -EIO and the device goes on.
   */
  execute(rt: DeviceRuntime, cmd: DeviceCommand): number;
}

export class DeviceRuntime {
  readonly name: string;
  readonly ctl: Int32Array;
  readonly sq: RingConsumer;
  readonly cq: RingProducer;
  readonly fence: HwFenceTimeline;
  /** The only way this device reaches memory (fabric/dma.ts). */
  readonly dma: DmaCtx;
  readonly testHooks: boolean;
  readonly params: Readonly<Record<string, number | string | boolean>>;
  private readonly cmd: DeviceCommand = {
    opcode: 0,
    flags: 0,
    seqno: 0,
    len: 0,
    src: 0,
    dst: 0,
    arg0: 0,
    arg1: 0,
    result: 0,
  };
  private readonly spinMs: number;
  private done = 0;
  private errors = 0;

  /** Attach to the queue memory in `init`. Throws: RangeError for bad shared memory (setup bug). */
  constructor(init: DeviceInit) {
    this.name = init.name;
    this.ctl = devCtlCheck(init.ctl);
    this.sq = new RingConsumer(init.sq);
    this.cq = new RingProducer(init.cq);
    if (this.cq.slots < this.sq.slots) throw new RangeError(`${init.name}: cq smaller than sq`);
    this.fence = new HwFenceTimeline(init.fence);
    this.dma = new DmaCtx(init.dma);
    this.testHooks = init.testHooks === true;
    this.params = init.params ?? {};
    const spin = this.params.spinUs;
    this.spinMs = (typeof spin === 'number' && spin >= 0 ? spin : DEFAULT_SPIN_US) / 1000;
  }

  /** True once the kernel asked for ABORT: stop now, write nothing more. */
  get aborted(): boolean {
    return Atomics.load(this.ctl, DevCtl.STOP) === DeviceStop.ABORT;
  }

  /**
   * Run the main loop until a stop request (see DOC: main loop). Called once by the worker
   * entry. Returns normally on stop; throws only through the CRASH test hook.
   */
  run(model: DeviceModel): void {
    const ctl = this.ctl;
    // publish: the loop is about to poll the SQ; the kernel's ready() waits on STATE.
    Atomics.store(ctl, DevCtl.STATE, DeviceState.RUNNING);
    Atomics.notify(ctl, DevCtl.STATE);
    for (;;) {
      // load the count before draining: a ring after this load changes it, so the wait below
      // returns at once instead of sleeping on work it did not see.
      const seen = doorbellRead(ctl, DevCtl.SQ_DB);
      const stop = Atomics.load(ctl, DevCtl.STOP);
      if (stop === DeviceStop.ABORT) break;
      if (this.drain(model) > 0) continue;
      // stop was loaded before the drain: everything posted before the request has completed.
      if (stop === DeviceStop.DRAIN) break;
      if (this.spin()) continue;
      doorbellWait(ctl, DevCtl.SQ_DB, seen, WAIT_SLICE_MS);
    }
    this.dma.close();
    // publish: the kernel treats exit code 0 with STATE = STOPPED as a clean stop.
    Atomics.store(ctl, DevCtl.STATE, DeviceState.STOPPED);
    Atomics.notify(ctl, DevCtl.STATE);
  }

  /**
   * Execute every published submission (at most one ring's worth per call, so fences and the
   * interrupt are not held back by a producer that never stops). Returns descriptors completed.
   * Called by: run(); tests may call it on any thread with a model that does not block.
   */
  drain(model: DeviceModel): number {
    const sq = this.sq;
    const w = sq.words;
    const cmd = this.cmd;
    let n = 0;
    let pendingSeqno = 0;
    let pending = false; // a successful job whose fence seqno is not yet stored
    while (n < sq.slots) {
      if (this.aborted) return n; // ABORT: no completion, fence value or interrupt after this
      const s = sq.peek();
      if (s < 0) break;
      cmd.opcode = w[s + Sqe.OPCODE] >>> 0;
      cmd.flags = w[s + Sqe.FLAGS];
      cmd.seqno = w[s + Sqe.SEQNO] >>> 0;
      cmd.len = w[s + Sqe.LEN] >>> 0;
      cmd.src = ringGetU64(w, s + Sqe.SRC_LO);
      cmd.dst = ringGetU64(w, s + Sqe.DST_LO);
      cmd.arg0 = w[s + Sqe.ARG0];
      cmd.arg1 = w[s + Sqe.ARG1];
      cmd.result = 0;
      // the descriptor is copied out: the slot can go back to the kernel before the work runs.
      sq.release();
      const status = this.exec(model, cmd);
      if (this.aborted || !this.complete(cmd, status)) return n;
      n++;
      if (status < 0) {
        this.errors++;
        // an error needs its own ring entry; the store also completes every earlier job.
        this.fence.signal(cmd.seqno, status);
        pending = false;
      } else {
        pendingSeqno = cmd.seqno;
        pending = true;
      }
    }
    if (n === 0) return 0;
    if (pending) this.fence.signal(pendingSeqno, 0);
    this.done += n;
    Atomics.store(this.ctl, DevCtl.DONE, this.done);
    Atomics.store(this.ctl, DevCtl.ERRORS, this.errors);
    // the interrupt: completions and fence values above are published before it.
    doorbellRing(this.ctl, DevCtl.CQ_DB);
    return n;
  }

  private exec(model: DeviceModel, cmd: DeviceCommand): number {
    const op = cmd.opcode;
    if (op === DeviceOp.NOP) return 0;
    if (op === DeviceOp.STALL) return this.testHooks ? this.stall(cmd.arg0) : -Errno.EOPNOTSUPP;
    if (op === DeviceOp.CRASH) {
      if (!this.testHooks) return -Errno.EOPNOTSUPP;
      if (cmd.arg0 === CrashMode.EXIT) process.exit(cmd.arg1 || 7);
      // deliberately uncaught: this is the crash the kernel must survive.
      throw new Error(`${this.name}: crash test hook (DeviceOp.CRASH)`);
    }
    if (op > DEVICE_OP_MODEL_MAX) return -Errno.EOPNOTSUPP;
    let status: number;
    try {
      status = model.execute(this, cmd);
    } catch {
      return -Errno.EIO;
    }
    // a model returning something that is not 0 or a negative integer is a model bug.
    if (!Number.isInteger(status) || status > 0) return -Errno.EIO;
    if (!(Number.isSafeInteger(cmd.result) && cmd.result >= 0)) return -Errno.EIO;
    return status;
  }

  // Write one completion entry. The CQ has as many slots as the SQ and the kernel keeps no more
  // jobs in flight than that, so a full CQ means the kernel is slow to reap: wait for it in
  // bounded slices, and give up only on ABORT (false: nothing written).
  private complete(cmd: DeviceCommand, status: number): boolean {
    const cq = this.cq;
    let s = cq.claim();
    while (s < 0) {
      const stop = Atomics.load(this.ctl, DevCtl.STOP);
      if (stop === DeviceStop.ABORT) return false;
      // a 1 ms nap: reaping is not notified; a stop request notifies STOP and ends it early.
      Atomics.wait(this.ctl, DevCtl.STOP, stop, 1);
      s = cq.claim();
    }
    const w = cq.words;
    w[s + Cqe.SEQNO] = cmd.seqno | 0;
    w[s + Cqe.STATUS] = status;
    ringPutU64(w, s + Cqe.RESULT_LO, status < 0 ? 0 : cmd.result);
    w[s + Cqe.OPCODE] = cmd.opcode | 0;
    cq.commit();
    return true;
  }

  // STALL test hook: busy for `ms`, sleeping on the SQ doorbell count, which a stop request
  // rings with force (ordinary submissions do not wake us: NEED_WAKEUP stays clear).
  private stall(ms: number): number {
    const end = performance.now() + Math.max(0, ms);
    for (;;) {
      if (this.aborted) return -Errno.ECANCELED;
      const left = end - performance.now();
      if (left <= 0) return 0;
      const count = doorbellRead(this.ctl, DevCtl.SQ_DB);
      Atomics.wait(this.ctl, DevCtl.SQ_DB, count, Math.min(left, WAIT_SLICE_MS));
    }
  }

  // Busy-poll the SQ for spinMs before sleeping: a kernel posting in bursts then rarely has to
  // pay for a futex wake-up. True if work arrived.
  private spin(): boolean {
    if (this.spinMs <= 0) return false;
    const end = performance.now() + this.spinMs;
    do {
      if (this.sq.peek() >= 0) return true;
    } while (performance.now() < end);
    return false;
  }
}

/**
 * Worker entry helper: attach to `init` (the worker's workerData) and run `model` until stopped.
 * Called by: each device's *-worker.ts entry, once, on the device thread.
 */
export function runDevice(model: DeviceModel, init: DeviceInit): void {
  new DeviceRuntime(init).run(model);
}

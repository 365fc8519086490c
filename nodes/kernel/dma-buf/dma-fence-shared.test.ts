// Hardware fences in shared memory: real device workers signal and wait through the fabric API
// (fixtures/fence-device.ts), the kernel side is DmaFenceSharedTimeline on the test thread.
// Tests that need no second thread drive the shared word from the test thread with the same
// (non-blocking) HwFenceTimeline.signal a device uses.
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { Latch, withDeadline } from '../../../common/deadline.ts';
import { Errno, EmuError } from '../../../common/errno.ts';
import { onTrace } from '../../../common/trace.ts';
import { spawnWorker } from '../../../common/worker.ts';
import { createHwFenceMemory, FenceSlotHdr, hwFenceSlotBase } from '../../fabric/fence/hw-fence-layout.ts';
import { HwFenceTimeline } from '../../fabric/fence/hw-fence.ts';
import {
  type DmaFence,
  dmaFenceAddCallback,
  dmaFenceGetStatus,
  dmaFenceIsSignaled,
  dmaFenceWaitTimeout,
  ktimeGetNs,
  OrderPolicy,
} from './dma-fence.ts';
import { DmaFenceSharedTimeline } from './dma-fence-shared.ts';
import type { FenceDeviceCmd, FenceDeviceReply } from './fixtures/fence-device.ts';

const MS = 1_500; // per-expectation deadline: well under the 2 s budget of a test
// Starting a worker from TypeScript sources (tsx in the thread) takes ~0.3 s, more when the
// two cores are busy with other test files: a startup gets its own, looser deadline.
const START_MS = 5_000;
// Tests that count watcher wake-ups keep the fallback poll out of the way.
const NO_FALLBACK = 60_000;

/** A fence-device worker with a mailbox: replies are awaited by op, each with a deadline. */
class Device {
  readonly worker: Worker;
  private readonly inbox: FenceDeviceReply[] = [];
  private waiter: (() => void) | null = null;
  private failure: Error | null = null;

  constructor() {
    this.worker = spawnWorker(new URL('./fixtures/fence-device.ts', import.meta.url));
    this.worker.on('message', (m: FenceDeviceReply) => {
      this.inbox.push(m);
      this.waiter?.();
    });
    this.worker.on('error', (e) => {
      this.failure = e;
      this.waiter?.();
    });
  }

  send(cmd: FenceDeviceCmd): void {
    this.worker.postMessage(cmd);
  }

  /** Next reply with `op` (an 'error' reply or a worker crash rejects). */
  next<O extends FenceDeviceReply['op']>(op: O, ms = MS): Promise<Extract<FenceDeviceReply, { op: O }>> {
    const take = async (): Promise<Extract<FenceDeviceReply, { op: O }>> => {
      for (;;) {
        if (this.failure) throw this.failure;
        const i = this.inbox.findIndex((m) => m.op === op || m.op === 'error');
        if (i >= 0) {
          const m = this.inbox.splice(i, 1)[0];
          if (m.op === 'error') throw new Error(`device: ${m.message}`);
          return m as Extract<FenceDeviceReply, { op: O }>;
        }
        await new Promise<void>((r) => {
          this.waiter = r;
        });
        this.waiter = null;
      }
    };
    return withDeadline(take(), ms, `device reply ${op}`);
  }
}

const devices: Device[] = [];
const timelines: DmaFenceSharedTimeline[] = [];
/** A started device (its 'ready' received); terminated after the test. */
async function device(): Promise<Device> {
  const d = new Device();
  devices.push(d);
  await d.next('ready', START_MS);
  return d;
}
function timeline(name: string, opts: ConstructorParameters<typeof DmaFenceSharedTimeline>[2] = {}) {
  const tl = new DmaFenceSharedTimeline('test-gpu', name, opts);
  timelines.push(tl);
  return tl;
}

afterEach(async () => {
  for (const tl of timelines.splice(0)) tl.destroy();
  await Promise.all(devices.splice(0).map((d) => d.worker.terminate()));
});

/** Resolves when `f` signals (callback), with a deadline. */
function signalled(f: DmaFence, what: string): Promise<void> {
  return withDeadline(
    new Promise<void>((resolve) => {
      if (dmaFenceAddCallback(f, { func: () => resolve() }) !== 0) resolve();
    }),
    MS,
    what,
  );
}

async function expectErrno(fn: () => unknown, code: string): Promise<void> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EmuError);
    expect((e as EmuError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('dma-fence-shared with device workers', () => {
  it('dma-fence-shared - worker signals while the kernel awaits dmaFenceWaitTimeout', async () => {
    const dev = await device();
    const tl = timeline('ring0', { fallbackMs: NO_FALLBACK });
    const f = tl.emit();
    const before = ktimeGetNs();
    const wait = dmaFenceWaitTimeout(f, MS);
    expect(tl.watcherArmed).toBe(true);
    dev.send({ op: 'signal', desc: tl.desc, seqno: f.seqno });
    expect(await withDeadline(wait, MS + 500, 'kernel wait')).toBeGreaterThan(0);
    expect(dmaFenceGetStatus(f)).toBe(1);
    // The timestamp is the device's completion time (same monotonic clock as ktimeGetNs).
    expect(f.timestamp).toBeGreaterThanOrEqual(before);
    expect(f.timestamp).toBeLessThanOrEqual(ktimeGetNs());
    expect(tl.irqs).toBe(1);
    // Nothing left enabled: the watcher is not re-armed.
    expect(tl.watcherArmed).toBe(false);
    await dev.next('signal');
  });

  it('dma-fence-shared - an error signalled by the device surfaces as a negative status', async () => {
    const dev = await device();
    const tl = timeline('ring0');
    const [f1, f2] = [tl.emit(), tl.emit()];
    const done = Promise.all([signalled(f1, 'f1'), signalled(f2, 'f2')]);
    dev.send({
      op: 'signal-seq',
      desc: tl.desc,
      list: [
        [f1.seqno, -Errno.EIO],
        [f2.seqno, 0],
      ],
    });
    await done;
    expect(dmaFenceGetStatus(f1)).toBe(-Errno.EIO);
    expect(dmaFenceGetStatus(f2)).toBe(1);
    await dev.next('signal-seq');
  });

  it('dma-fence-shared - one seqno store completes several fences in seqno order', async () => {
    const dev = await device();
    const tl = timeline('ring0', { order: OrderPolicy.THROW, fallbackMs: NO_FALLBACK });
    const fences = Array.from({ length: 5 }, () => tl.emit());
    const order: number[] = [];
    const latch = new Latch(fences.length, MS, 'five callbacks');
    for (const f of fences) {
      dmaFenceAddCallback(f, {
        func: (g) => {
          order.push(g.seqno);
          latch.unlock();
        },
      });
    }
    dev.send({ op: 'signal', desc: tl.desc, seqno: 5 });
    await latch.done;
    expect(order).toEqual([1, 2, 3, 4, 5]);
    expect(fences.map(dmaFenceGetStatus)).toEqual([1, 1, 1, 1, 1]);
    // One store, one irq; the earlier fences carry the covering store's device timestamp.
    expect(tl.irqs).toBe(1);
    expect(new Set(fences.map((f) => f.timestamp)).size).toBe(1);
    expect(tl.violations).toBe(0);
    await dev.next('signal');
  });

  it('dma-fence-shared - worker-to-worker wait through the fabric sees the signaller and its error', async () => {
    const [waiter, signaller] = await Promise.all([device(), device()]);
    const mem = createHwFenceMemory(1);
    const desc = { sab: mem, index: 0 };
    waiter.send({ op: 'wait', desc, seqno: 3, timeoutMs: MS });
    await waiter.next('waiting');
    signaller.send({
      op: 'signal-seq',
      desc,
      list: [
        [1, 0],
        [2, 0],
        [3, -Errno.EIO],
      ],
    });
    const r = await waiter.next('wait');
    expect(r).toEqual({ op: 'wait', result: 'ok', error: -Errno.EIO, forced: false });
    await signaller.next('signal-seq');
    // And a wait nobody satisfies times out, as a value.
    waiter.send({ op: 'wait', desc, seqno: 4, timeoutMs: 20 });
    expect((await waiter.next('wait')).result).toBe('timed-out');
  });

  it('dma-fence-shared - race signal vs add_callback across two workers loses no wake-up (test_race_signal_callback)', async () => {
    const [devA, devB] = await Promise.all([device(), device()]);
    const ta = timeline('race-a');
    const tb = timeline('race-b');
    const go = new Int32Array(new SharedArrayBuffer(4));
    const rounds = 200;
    const common = { go: go.buffer as SharedArrayBuffer, rounds, ownBase: 0, peerBase: 0, timeoutMs: MS };
    devA.send({ op: 'race', own: ta.desc, peer: tb.desc, ...common });
    devB.send({ op: 'race', own: tb.desc, peer: ta.desc, ...common });
    let misses = 0;
    const publish = (r: number) => {
      Atomics.store(go, 0, r);
      Atomics.notify(go, 0);
    };
    for (let r = 1; r <= rounds; r++) {
      const fences = [ta.emit(), tb.emit()];
      const latch = new Latch(2, MS, `round ${r} callbacks`);
      const add = () => {
        for (const f of fences) {
          // -ENOENT: the device already signalled it; the callback is "seen" by the caller.
          if (dmaFenceAddCallback(f, { func: () => latch.unlock() }) !== 0) {
            misses++;
            latch.unlock();
          }
        }
      };
      // Vary the window: add before the devices may signal, right after, or a turn later.
      if (r % 3 === 0) {
        add();
        publish(r);
      } else if (r % 3 === 1) {
        publish(r);
        add();
      } else {
        publish(r);
        await new Promise<void>((resolve) => setImmediate(resolve));
        add();
      }
      await latch.done;
      expect(fences.map(dmaFenceGetStatus)).toEqual([1, 1]);
    }
    const [ra, rb] = await Promise.all([devA.next('race'), devB.next('race')]);
    expect([ra.lost, rb.lost, ra.stalled, rb.stalled]).toEqual([0, 0, 0, 0]);
    expect(misses).toBeLessThanOrEqual(2 * rounds);
  });

  it('dma-fence-shared - forceComplete of a hung timeline completes every fence with the error and frees device waiters', async () => {
    const waiter = await device();
    const tl = timeline('hung');
    const fences = [tl.emit(), tl.emit(), tl.emit()];
    const waits = fences.map((f) => dmaFenceWaitTimeout(f, MS));
    waiter.send({ op: 'wait', desc: tl.desc, seqno: 3, timeoutMs: MS });
    await waiter.next('waiting');
    // Nobody will signal: the driver's timeout handler recovers.
    expect(tl.forceComplete(-Errno.ETIMEDOUT)).toBe(3);
    for (const w of waits) expect(await withDeadline(w, MS, 'forced wait')).toBeGreaterThan(0);
    expect(fences.map(dmaFenceGetStatus)).toEqual([-Errno.ETIMEDOUT, -Errno.ETIMEDOUT, -Errno.ETIMEDOUT]);
    expect(await waiter.next('wait')).toEqual({
      op: 'wait',
      result: 'ok',
      error: -Errno.ETIMEDOUT,
      forced: true,
    });
    expect(tl.forceComplete(-Errno.ETIMEDOUT)).toBe(0);
    // The queued waitAsync resolves on the event loop at a time V8 chooses; close() is what
    // guarantees no watcher is left behind.
    await withDeadline(tl.close(), MS, 'close after force');
    expect(tl.watcherArmed).toBe(false);
  });
});

describe('dma-fence-shared on the kernel thread', () => {
  it('dma-fence-shared - ops.signaled polls the shared word without arming the watcher', () => {
    const tl = timeline('poll');
    const f = tl.emit();
    expect(dmaFenceIsSignaled(f)).toBe(false);
    tl.hw.signal(f.seqno, -Errno.EFAULT);
    expect(tl.watcherArmed).toBe(false);
    expect(dmaFenceGetStatus(f)).toBe(-Errno.EFAULT);
    expect(f.signaledFlag).toBe(true);
  });

  it('dma-fence-shared - enable_signaling on a completed fence signals it at once and add_callback fails', () => {
    const tl = timeline('late');
    const f = tl.emit();
    tl.hw.signal(f.seqno, -Errno.EIO);
    let ran = false;
    expect(dmaFenceAddCallback(f, { func: () => (ran = true) })).toBe(-Errno.ENOENT);
    expect([ran, dmaFenceGetStatus(f), tl.watcherArmed]).toEqual([false, -Errno.EIO, false]);
  });

  it('dma-fence-shared - the watcher re-arms while enabled fences remain and stops after', async () => {
    const tl = timeline('rearm', { fallbackMs: NO_FALLBACK });
    const [f1, f2] = [tl.emit(), tl.emit()];
    const both = Promise.all([signalled(f1, 'f1'), signalled(f2, 'f2')]);
    tl.hw.signal(1);
    await signalled(f1, 'f1 only');
    expect([f2.signaledFlag, tl.watcherArmed]).toEqual([false, true]);
    tl.hw.signal(2);
    await both;
    expect(tl.watcherArmed).toBe(false);
    expect(tl.irqs).toBe(2);
  });

  it('dma-fence-shared - arming after an unprocessed store handles that store first (no lost wake-up)', async () => {
    const tl = timeline('stale', { fallbackMs: NO_FALLBACK });
    const [f1, f2] = [tl.emit(), tl.emit()];
    // The device completes f1 while nothing is armed: the kernel has not seen this store.
    tl.hw.signal(f1.seqno);
    const done2 = signalled(f2, 'f2');
    // Arming found the word moved since the last process(): f1 is handled on the next microtask,
    // not inside this add_callback.
    expect([f1.signaledFlag, tl.irqs]).toEqual([false, 0]);
    // Microtasks run in FIFO order: this one runs after the handler queued by add_callback.
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    expect([f1.signaledFlag, f2.signaledFlag, tl.irqs, tl.watcherArmed]).toEqual([true, false, 1, true]);
    tl.hw.signal(f2.seqno);
    await done2;
    expect(tl.watcherArmed).toBe(false);
  });

  it('dma-fence-shared - the watcher falls back to polling when the device stores without notifying', async () => {
    const tl = timeline('quiet', { fallbackMs: 20 });
    const f = tl.emit();
    const done = signalled(f, 'fallback');
    // A device that forgets Atomics.notify (amdgpu_fence_fallback covers lost irqs).
    Atomics.store(tl.hw.i32, tl.hw.seqnoWord, f.seqno);
    await done;
    expect(dmaFenceGetStatus(f)).toBe(1);
  });

  it('dma-fence-shared - an armed watcher holds no event-loop handle or timer', () => {
    const before = process.getActiveResourcesInfo().length;
    const tl = timeline('idle');
    dmaFenceAddCallback(tl.emit(), { func: () => {} });
    expect([tl.watcherArmed, tl.fallbackArmed]).toEqual([true, true]);
    // The waitAsync holds nothing; the fallback poll is an unref'd interval.
    expect(process.getActiveResourcesInfo().length).toBe(before);
    tl.destroy();
    expect([tl.watcherArmed, tl.fallbackArmed]).toEqual([false, false]);
  });

  it('dma-fence-shared - seqnos wrap at 2^32 on the shared word', async () => {
    const tl = timeline('wrap', { start: 0xffff_fffe });
    const fences = [tl.emit(), tl.emit(), tl.emit()];
    expect(fences.map((f) => f.seqno)).toEqual([0xffff_ffff, 0, 1]);
    const first = Promise.all([signalled(fences[0], 'wrap 0'), signalled(fences[1], 'wrap 1')]);
    tl.hw.signal(0);
    await first;
    expect(fences[2].signaledFlag).toBe(false);
    expect(tl.hw.read()).toBe(0);
    tl.hw.signal(1);
    expect(dmaFenceIsSignaled(fences[2])).toBe(true);
    expect(tl.violations).toBe(0);
  });

  it('dma-fence-shared - emit refuses with EBUSY while ringSize fences are in flight', async () => {
    const tl = timeline('small', { ringSize: 4 });
    const fences = Array.from({ length: 4 }, () => tl.emit());
    await expectErrno(() => tl.emit(), 'EBUSY');
    tl.hw.signal(fences[1].seqno);
    expect(tl.emit().seqno).toBe(5);
    expect(tl.inFlight).toBe(3);
    expect(dmaFenceGetStatus(fences[0])).toBe(1);
  });

  it('dma-fence-shared - a device error that is not a negative errno is reported as -EIO and traced', () => {
    const seen: unknown[] = [];
    const off = onTrace('fenceContractViolation', (m) => seen.push(m));
    try {
      const tl = timeline('bad');
      const f = tl.emit();
      tl.hw.signal(f.seqno, -99_999);
      expect(dmaFenceGetStatus(f)).toBe(-Errno.EIO);
      expect(seen).toHaveLength(1);
    } finally {
      off();
    }
  });

  it('dma-fence-shared - close drains in-flight fences, then leaves no watcher and no timer', async () => {
    const tl = timeline('drain');
    const f = tl.emit();
    const resources = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const closing = tl.close(MS);
    expect(tl.closed).toBe(true);
    await expectErrno(() => tl.emit(), 'ENODEV');
    tl.hw.signal(f.seqno);
    await withDeadline(closing, MS + 500, 'close');
    expect(dmaFenceGetStatus(f)).toBe(1);
    expect([tl.watcherArmed, tl.fallbackArmed]).toEqual([false, false]);
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(resources);
    expect(tl.close()).toBe(closing);
    tl.destroy();
  });

  it('dma-fence-shared - close forces fences still in flight at its deadline with -ETIMEDOUT', async () => {
    const tl = timeline('stuck');
    const f = tl.emit();
    await withDeadline(tl.close(10), MS, 'close with deadline');
    expect(dmaFenceGetStatus(f)).toBe(-Errno.ETIMEDOUT);
    expect(tl.hw.forced).toBe(true);
    expect(tl.watcherArmed).toBe(false);
  });

  it('dma-fence-shared - destroy fails in-flight fences with -ECANCELED and is idempotent', async () => {
    const tl = timeline('gone');
    const [f1, f2] = [tl.emit(), tl.emit()];
    tl.hw.signal(f1.seqno);
    dmaFenceAddCallback(f2, { func: () => {} });
    let emitError: unknown = null;
    dmaFenceAddCallback(f2, {
      func: () => {
        try {
          tl.emit();
        } catch (e) {
          emitError = e;
        }
      },
    });
    tl.destroy();
    tl.destroy(-Errno.EIO);
    expect([dmaFenceGetStatus(f1), dmaFenceGetStatus(f2)]).toEqual([1, -Errno.ECANCELED]);
    // A callback run by the forced signal cannot queue new work on the dying timeline.
    expect((emitError as EmuError).code).toBe('ENODEV');
    expect(tl.inFlight).toBe(0);
    expect(tl.watcherArmed).toBe(false);
    await expectErrno(() => tl.emit(), 'ENODEV');
    await withDeadline(tl.close(), MS, 'close after destroy');
  });

  it('dma-fence-shared - bad options and errors are EINVAL naming the argument', async () => {
    await expectErrno(() => new DmaFenceSharedTimeline('d', 'n', { ringSize: 3 }), 'EINVAL');
    await expectErrno(() => new DmaFenceSharedTimeline('d', 'n', { start: -1 }), 'EINVAL');
    await expectErrno(() => new DmaFenceSharedTimeline('d', 'n', { fallbackMs: 0 }), 'EINVAL');
    await expectErrno(() => new DmaFenceSharedTimeline('d', 'n', { fallbackMs: Infinity }), 'EINVAL');
    const junk = { sab: new SharedArrayBuffer(256), index: 0 };
    await expectErrno(() => new DmaFenceSharedTimeline('d', 'n', { memory: junk }), 'EINVAL');
    const tl = timeline('args');
    await expectErrno(() => tl.forceComplete(5), 'EINVAL');
    expect(() => tl.forceComplete(0)).toThrow(/forceComplete: error 0/);
  });

  it('dma-fence-shared - a timeline on a shared slot re-initialises only its own slot', () => {
    const sab = createHwFenceMemory(2, 8);
    const other = new HwFenceTimeline({ sab, index: 1 });
    other.signal(7);
    const tl = timeline('slot0', { memory: { sab, index: 0 }, start: 100 });
    expect([tl.hw.read(), other.read(), tl.emit().seqno]).toEqual([100, 7, 101]);
    const i32 = new Int32Array(sab);
    expect(Atomics.load(i32, hwFenceSlotBase(8, 0) + FenceSlotHdr.SEQNO)).toBe(100);
  });
});

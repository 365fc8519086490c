// dma-fence core: st-dma-fence.c ported 1:1 (kernel-semantics §8.1), then the §2.2 rules the core
// owns (1-10, 12, 13 and ops detachment). Fences here are software fences on the test thread;
// shared-memory fences with real workers are in dma-fence-shared.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { Latch, withDeadline } from '../../../common/deadline.ts';
import { Errno, EmuError } from '../../../common/errno.ts';
import { onTrace } from '../../../common/trace.ts';
import {
  DmaFence,
  type DmaFenceCb,
  DmaFenceFlag,
  type DmaFenceOps,
  DmaFenceTimeline,
  dmaFenceAddCallback,
  dmaFenceAllocatePrivateStub,
  dmaFenceBeginSignalling,
  dmaFenceContextAlloc,
  dmaFenceEnableSwSignaling,
  dmaFenceEndSignalling,
  dmaFenceGet,
  dmaFenceGetStatus,
  dmaFenceGetStub,
  dmaFenceInSignallingSection,
  dmaFenceIsLater,
  dmaFenceIsLaterOrSame,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceRemoveCallback,
  dmaFenceSetDeadline,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceSignalTimestamp,
  dmaFenceWait,
  dmaFenceWaitAnyTimeout,
  dmaFenceWaitTimeout,
  fenceWaitResult,
  ktimeGetNs,
  OrderPolicy,
} from './dma-fence.ts';

// The selftest's mock_fence: a software fence with only the mandatory ops.
const mockOps = (): DmaFenceOps => ({ getDriverName: () => 'mock', getTimelineName: () => 'mock' });
const mockFence = (seqno = 0, ops: DmaFenceOps = mockOps()) =>
  new DmaFence(ops, dmaFenceContextAlloc(1), seqno);

async function expectErrno(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(EmuError);
    expect((e as EmuError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

const timers: NodeJS.Timeout[] = [];
afterEach(() => {
  for (const t of timers.splice(0)) clearTimeout(t);
});

describe('st-dma-fence', () => {
  it('dma-fence - sanitycheck', () => {
    const f = mockFence();
    dmaFenceEnableSwSignaling(f);
    expect(dmaFenceSignal(f)).toBe(true);
    dmaFencePut(f);
    expect(f.refcount).toBe(0);
  });

  it('dma-fence - signaling: unsignalled at creation, signalled after, ops cleared', () => {
    const f = mockFence();
    dmaFenceEnableSwSignaling(f);
    expect(dmaFenceIsSignaled(f)).toBe(false);
    // 2026 dma_fence_check_and_signal(): the first signal reports "was not signalled"
    // (dmaFenceSignal returns true for that transition).
    expect(dmaFenceSignal(f)).toBe(true);
    expect(dmaFenceIsSignaled(f)).toBe(true);
    expect(f.signaledFlag).toBe(true);
    expect(f.ops).toBeNull();
  });

  it('dma-fence - add callback runs on signal', () => {
    const f = mockFence();
    let seen = false;
    expect(dmaFenceAddCallback(f, { func: () => (seen = true) })).toBe(0);
    expect(seen).toBe(false);
    dmaFenceSignal(f);
    expect(seen).toBe(true);
  });

  it('dma-fence - late add callback fails and never runs', () => {
    const f = mockFence();
    dmaFenceEnableSwSignaling(f);
    dmaFenceSignal(f);
    let seen = false;
    expect(dmaFenceAddCallback(f, { func: () => (seen = true) })).toBe(-Errno.ENOENT);
    dmaFenceSignal(f);
    expect(seen).toBe(false);
  });

  it('dma-fence - removed callback does not run', () => {
    const f = mockFence();
    let seen = false;
    const cb: DmaFenceCb = { func: () => (seen = true) };
    expect(dmaFenceAddCallback(f, cb)).toBe(0);
    expect(dmaFenceRemoveCallback(f, cb)).toBe(true);
    dmaFenceSignal(f);
    expect(seen).toBe(false);
  });

  it('dma-fence - late remove callback returns false after it ran', () => {
    const f = mockFence();
    let runs = 0;
    const cb: DmaFenceCb = { func: () => runs++ };
    expect(dmaFenceAddCallback(f, cb)).toBe(0);
    dmaFenceSignal(f);
    expect(dmaFenceRemoveCallback(f, cb)).toBe(false);
    expect(runs).toBe(1);
  });

  it('dma-fence - status is 0 before signal and non-zero after', () => {
    const f = mockFence();
    dmaFenceEnableSwSignaling(f);
    expect(dmaFenceGetStatus(f)).toBe(0);
    dmaFenceSignal(f);
    expect(dmaFenceGetStatus(f)).toBe(1);
  });

  it('dma-fence - error set before signal is hidden until signal, then -EIO', () => {
    const f = mockFence();
    dmaFenceSetError(f, -Errno.EIO);
    expect(f.error).toBe(-Errno.EIO);
    expect(dmaFenceGetStatus(f)).toBe(0);
    dmaFenceSignal(f);
    expect(dmaFenceGetStatus(f)).toBe(-Errno.EIO);
  });

  it('dma-fence - wait(0) returns 0 before signal and 1 after', async () => {
    const f = mockFence();
    dmaFenceEnableSwSignaling(f);
    expect(await withDeadline(dmaFenceWaitTimeout(f, 0), 1_000, 'wait(0) unsignalled')).toBe(0);
    dmaFenceSignal(f);
    expect(await withDeadline(dmaFenceWaitTimeout(f, 0), 1_000, 'wait(0) signalled')).toBe(1);
  });

  it('dma-fence - wait_timeout times out, then succeeds when a timer signals within the wait', async () => {
    const f = mockFence();
    dmaFenceEnableSwSignaling(f);
    // The timer is the signaller under test (the selftest's wait_timer), not synchronisation.
    timers.push(setTimeout(() => dmaFenceSignal(f), 20));
    expect(await withDeadline(dmaFenceWaitTimeout(f, 1), 1_000, 'short wait')).toBe(0);
    const left = await withDeadline(dmaFenceWaitTimeout(f, 1_000), 2_000, 'long wait');
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(1_000);
  });

  it('dma-fence - stub: 64 gets are all signalled', () => {
    const stubs: DmaFence[] = [];
    for (let i = 0; i < 64; i++) stubs.push(dmaFenceGetStub());
    for (const s of stubs) {
      expect(dmaFenceIsSignaled(s)).toBe(true);
      dmaFencePut(s);
    }
  });

  // Two flows ("threads") each publish a fence, take the other's, add a callback to it and
  // signal their own before or after the add. Every callback must be observed, directly or by
  // waiting for the fence. The cross-worker version is in dma-fence-shared.test.ts.
  for (const before of [true, false]) {
    it(`dma-fence - race signal vs callback, signal ${before ? 'before' : 'after'} add_callback`, async () => {
      const slots: (DmaFence | null)[] = [null, null];
      const passes = 200;
      const thread = async (id: number): Promise<number> => {
        let misses = 0;
        for (let pass = 0; pass < passes; pass++) {
          const f1 = mockFence(pass);
          slots[id] = f1;
          let f2: DmaFence | null = null;
          while (!(f2 = slots[1 - id]) || f2.seqno !== pass) await new Promise<void>((r) => setImmediate(r));
          if (before) dmaFenceSignal(f1);
          let seen = false;
          if (dmaFenceAddCallback(f2, { func: () => (seen = true) }) !== 0) {
            misses++;
            seen = true;
          }
          if (!before) dmaFenceSignal(f1);
          if (!seen) await dmaFenceWaitTimeout(f2, 1_000);
          expect(seen, `callback not seen on thread ${id}, pass ${pass}`).toBe(true);
          await new Promise<void>((r) => setImmediate(r));
        }
        return misses;
      };
      const misses = await withDeadline(Promise.all([thread(0), thread(1)]), 5_000, 'race threads');
      expect(misses.every((m) => m >= 0 && m <= passes)).toBe(true);
    });
  }
});

describe('dma-fence rules (kernel-semantics §2.2)', () => {
  it('dma-fence - init requires getDriverName and getTimelineName (rule 1)', async () => {
    const ctx = dmaFenceContextAlloc(1);
    await expectErrno(
      () => new DmaFence({ getDriverName: () => 'x' } as unknown as DmaFenceOps, ctx, 1),
      'EINVAL',
    );
    await expectErrno(() => new DmaFence(null as unknown as DmaFenceOps, ctx, 1), 'EINVAL');
    await expectErrno(() => new DmaFence(mockOps(), -1, 1), 'EINVAL');
    await expectErrno(() => new DmaFence(mockOps(), ctx, 1.5), 'EINVAL');
    const f = new DmaFence(mockOps(), ctx, 7);
    expect([f.driverName, f.timelineName, f.context, f.seqno]).toEqual(['mock', 'mock', ctx, 7]);
  });

  it('dma-fence - contexts are allocated consecutively and num must be >= 1', async () => {
    const a = dmaFenceContextAlloc(3);
    expect(dmaFenceContextAlloc(1)).toBe(a + 3);
    await expectErrno(() => dmaFenceContextAlloc(0), 'EINVAL');
  });

  it('dma-fence - signalling twice is a no-op and keeps the first timestamp (rule 2)', () => {
    const f = mockFence();
    let runs = 0;
    dmaFenceAddCallback(f, { func: () => runs++ });
    expect(dmaFenceSignalTimestamp(f, 1234)).toBe(true);
    expect(f.flags & DmaFenceFlag.TIMESTAMP).toBeTruthy();
    expect(f.timestamp).toBe(1234);
    expect(dmaFenceSignal(f)).toBe(false);
    expect(dmaFenceSignalTimestamp(f, 99)).toBe(false);
    expect(f.timestamp).toBe(1234);
    expect(runs).toBe(1);
    const g = mockFence();
    const before = ktimeGetNs();
    dmaFenceSignal(g);
    expect(g.timestamp).toBeGreaterThanOrEqual(before);
    expect(g.timestamp).toBeLessThanOrEqual(ktimeGetNs());
  });

  it('dma-fence - timeline detects a fence signalled after a later one (rule 3)', () => {
    const events: unknown[] = [];
    const off = onTrace('fenceContractViolation', (m) => events.push(m));
    try {
      const tl = new DmaFenceTimeline('test', 'warn');
      const [f1, f2] = [tl.emit(), tl.emit()];
      expect([f1.seqno, f2.seqno]).toEqual([1, 2]);
      tl.signal(f2);
      tl.signal(f1);
      expect(tl.violations).toBe(1);
      expect(events).toHaveLength(1);
      expect(dmaFenceGetStatus(f1)).toBe(1);

      const strict = new DmaFenceTimeline('test', 'throw', { order: OrderPolicy.THROW });
      const [g1, g2] = [strict.emit(), strict.emit()];
      strict.signal(g2);
      expect(() => strict.signal(g1)).toThrow(/rule 3/);
      expect(() => strict.signal(mockFence())).toThrow(EmuError);
      // In order, with an error: fine, and the error is reported.
      const ok = new DmaFenceTimeline('test', 'ok');
      const [h1, h2] = [ok.emit(), ok.emit()];
      ok.signal(h1, -Errno.EIO);
      ok.signal(h2);
      expect([ok.violations, dmaFenceGetStatus(h1), dmaFenceGetStatus(h2)]).toEqual([0, -Errno.EIO, 1]);
    } finally {
      off();
    }
  });

  it('dma-fence - is_later uses 32-bit wrap-around near 2^31 (rule 4)', async () => {
    const ctx = dmaFenceContextAlloc(1);
    const f = (s: number, seqno64 = false) => new DmaFence(mockOps(), ctx, s, { seqno64 });
    expect(dmaFenceIsLater(f(0x8000_0000), f(0x7fff_ffff))).toBe(true);
    expect(dmaFenceIsLater(f(0), f(0xffff_ffff))).toBe(true);
    // Numerically smaller, yet later: 0 is 2^31 - 1 past 0x80000001 modulo 2^32.
    expect(dmaFenceIsLater(f(0), f(0x8000_0001))).toBe(true);
    expect(dmaFenceIsLater(f(0x8000_0001), f(0))).toBe(false);
    // Exactly 2^31 apart: (s32)(a - b) is INT_MIN both ways, so neither is later.
    expect(dmaFenceIsLater(f(0x8000_0001), f(1))).toBe(false);
    expect(dmaFenceIsLater(f(1), f(0x8000_0001))).toBe(false);
    // 64-bit fences compare plainly.
    expect(dmaFenceIsLater(f(0x8000_0001, true), f(1, true))).toBe(true);
    expect(dmaFenceIsLaterOrSame(f(5), f(5))).toBe(true);
    expect(dmaFenceIsLater(f(5), f(5))).toBe(false);
    await expectErrno(() => dmaFenceIsLater(f(2), mockFence(1)), 'EINVAL');
  });

  it('dma-fence - add_callback enables signalling once and runs func exactly once (rule 5)', async () => {
    let enables = 0;
    const f = mockFence(0, { ...mockOps(), enableSignaling: () => ++enables > 0 });
    let runs = 0;
    const a: DmaFenceCb = { func: () => runs++ };
    const b: DmaFenceCb = { func: () => runs++ };
    expect(dmaFenceAddCallback(f, a)).toBe(0);
    expect(dmaFenceAddCallback(f, b)).toBe(0);
    await expectErrno(() => dmaFenceAddCallback(f, a), 'EBUSY');
    expect(enables).toBe(1);
    expect(f.flags & DmaFenceFlag.ENABLE_SIGNAL).toBeTruthy();
    dmaFenceSignal(f);
    dmaFenceSignal(f);
    expect(runs).toBe(2);
    await expectErrno(() => dmaFenceAddCallback(mockFence(), { func: undefined as never }), 'EINVAL');
  });

  it('dma-fence - enable_signaling returning false signals the fence and add_callback fails (rule 5)', () => {
    const f = mockFence(0, { ...mockOps(), enableSignaling: () => false });
    let seen = false;
    expect(dmaFenceAddCallback(f, { func: () => (seen = true) })).toBe(-Errno.ENOENT);
    expect(f.signaledFlag).toBe(true);
    expect(seen).toBe(false);
  });

  it('dma-fence - callbacks run inside a signalling section where waits are refused (rule 6)', async () => {
    const f = mockFence();
    const other = mockFence();
    let inside = false;
    let waitRefusal: Promise<number> | null = null;
    dmaFenceAddCallback(f, {
      func: () => {
        inside = dmaFenceInSignallingSection();
        waitRefusal = dmaFenceWaitTimeout(other, 10);
      },
    });
    expect(dmaFenceInSignallingSection()).toBe(false);
    dmaFenceSignal(f);
    expect(inside).toBe(true);
    expect(dmaFenceInSignallingSection()).toBe(false);
    await expectErrno(waitRefusal!, 'EDEADLK');
  });

  it('dma-fence - signalling sections nest and must close innermost first', async () => {
    const outer = dmaFenceBeginSignalling();
    const inner = dmaFenceBeginSignalling();
    expect(dmaFenceInSignallingSection()).toBe(true);
    await expectErrno(() => dmaFenceEndSignalling(outer), 'EINVAL');
    dmaFenceEndSignalling(inner);
    dmaFenceEndSignalling(outer);
    expect(dmaFenceInSignallingSection()).toBe(false);
  });

  it('dma-fence - remove_callback is true only while the callback is pending (rule 7)', () => {
    const f = mockFence();
    const g = mockFence();
    const cb: DmaFenceCb = { func: () => {} };
    expect(dmaFenceRemoveCallback(f, cb)).toBe(false);
    dmaFenceAddCallback(f, cb);
    expect(dmaFenceRemoveCallback(g, cb)).toBe(false);
    expect(dmaFenceRemoveCallback(f, cb)).toBe(true);
    expect(dmaFenceRemoveCallback(f, cb)).toBe(false);
    expect(f.pendingCallbacks).toBe(0);
    // Reusable after removal.
    expect(dmaFenceAddCallback(g, cb)).toBe(0);
  });

  it('dma-fence - wait_timeout returns remaining time, 0 on timeout, EINVAL for a negative timeout (rule 8)', async () => {
    const f = mockFence();
    await expectErrno(dmaFenceWaitTimeout(f, -1), 'EINVAL');
    await expectErrno(dmaFenceWaitTimeout(f, Number.NaN), 'EINVAL');
    expect(await withDeadline(dmaFenceWaitTimeout(f, 5), 1_000, 'timeout')).toBe(0);
    expect(await withDeadline(fenceWaitResult(f, 0), 1_000, 'result')).toBe('timed-out');
    queueMicrotask(() => dmaFenceSignal(f));
    const left = await withDeadline(dmaFenceWaitTimeout(f, 500), 1_000, 'signalled wait');
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(500);
    expect(await dmaFenceWaitTimeout(f, 0)).toBe(1);
    expect(await dmaFenceWaitTimeout(f, 300)).toBe(300);
    expect(await fenceWaitResult(f, 0)).toBe('signaled');
    expect(await dmaFenceWait(f)).toBe(0);
  });

  it('dma-fence - an aborted wait rejects ERESTARTSYS and leaves no callback queued (rule 8)', async () => {
    const f = mockFence();
    const ac = new AbortController();
    const w = dmaFenceWaitTimeout(f, 1_000, { signal: ac.signal });
    expect(f.pendingCallbacks).toBe(1);
    ac.abort();
    await expectErrno(withDeadline(w, 1_000, 'aborted wait'), 'ERESTARTSYS');
    expect(f.pendingCallbacks).toBe(0);
    await expectErrno(dmaFenceWaitTimeout(f, 10, { signal: ac.signal }), 'ERESTARTSYS');
  });

  it('dma-fence - wait_any reports the first signalled index or -1 on timeout (rule 8)', async () => {
    const fs = [mockFence(), mockFence(), mockFence()];
    await expectErrno(dmaFenceWaitAnyTimeout([], 10), 'EINVAL');
    await expectErrno(dmaFenceWaitAnyTimeout(fs, -1), 'EINVAL');
    expect(await withDeadline(dmaFenceWaitAnyTimeout(fs, 5), 1_000, 'any timeout')).toEqual({
      remaining: 0,
      index: -1,
    });
    queueMicrotask(() => dmaFenceSignal(fs[2]));
    const r = await withDeadline(dmaFenceWaitAnyTimeout(fs, 1_000), 2_000, 'any');
    expect(r.index).toBe(2);
    expect(r.remaining).toBeGreaterThan(0);
    expect(fs.map((f) => f.pendingCallbacks)).toEqual([0, 0, 0]);
    expect((await dmaFenceWaitAnyTimeout(fs, 0)).index).toBe(2);
  });

  it('dma-fence - is_signaled asks ops.signaled and signals; the raw flag does not (rule 9)', () => {
    let done = false;
    let asked = 0;
    const f = mockFence(0, { ...mockOps(), signaled: () => ++asked > 0 && done });
    let runs = 0;
    dmaFenceAddCallback(f, { func: () => runs++ });
    expect(dmaFenceIsSignaled(f)).toBe(false);
    done = true;
    expect(f.signaledFlag).toBe(false);
    expect(asked).toBe(1);
    expect(dmaFenceIsSignaled(f)).toBe(true);
    expect(f.signaledFlag).toBe(true);
    expect(runs).toBe(1);
    expect(dmaFenceIsSignaled(f)).toBe(true);
    expect(asked).toBe(2);
  });

  it('dma-fence - errors must be negative errnos set before signal (rule 10)', async () => {
    const f = mockFence();
    await expectErrno(() => dmaFenceSetError(f, 5), 'EINVAL');
    await expectErrno(() => dmaFenceSetError(f, -99999), 'EINVAL');
    await expectErrno(() => dmaFenceSetError(f, 0), 'EINVAL');
    dmaFenceSetError(f, -Errno.ETIMEDOUT);
    expect(dmaFenceGetStatus(f)).toBe(0);
    dmaFenceSignal(f);
    expect(dmaFenceGetStatus(f)).toBe(-Errno.ETIMEDOUT);
    await expectErrno(() => dmaFenceSetError(f, -Errno.EIO), 'EINVAL');
    expect(f.error).toBe(-Errno.ETIMEDOUT);
  });

  it('dma-fence - stub fences are always signalled and shared; private stubs are new (rule 12)', () => {
    const a = dmaFenceGetStub();
    const b = dmaFenceGetStub();
    expect(a).toBe(b);
    expect(dmaFenceGetStatus(a)).toBe(1);
    expect(dmaFenceAddCallback(a, { func: () => {} })).toBe(-Errno.ENOENT);
    const p = dmaFenceAllocatePrivateStub(42);
    expect(p).not.toBe(a);
    expect([p.signaledFlag, p.timestamp]).toEqual([true, 42]);
    expect(p.context).not.toBe(dmaFenceAllocatePrivateStub().context);
  });

  it('dma-fence - deadline hint is forwarded to ops.setDeadline while unsignalled (rule 13)', () => {
    const hints: number[] = [];
    const f = mockFence(0, { ...mockOps(), setDeadline: (_f, ms) => hints.push(ms) });
    dmaFenceSetDeadline(f, 123.5);
    dmaFenceSignal(f);
    dmaFenceSetDeadline(f, 456);
    expect(hints).toEqual([123.5]);
    // No setDeadline op: a hint is silently dropped.
    dmaFenceSetDeadline(mockFence(), 1);
  });

  it('dma-fence - ops are detached at signal and never called again; names survive', () => {
    let calls = 0;
    const ops: DmaFenceOps = {
      getDriverName: () => 'drv',
      getTimelineName: () => 'tl',
      signaled: () => ++calls < 0,
      setDeadline: () => calls++,
    };
    const f = new DmaFence(ops, dmaFenceContextAlloc(1), 1);
    dmaFenceSignal(f);
    const before = calls;
    expect(f.ops).toBeNull();
    dmaFenceIsSignaled(f);
    dmaFenceSetDeadline(f, 1);
    dmaFenceGetStatus(f);
    expect(calls).toBe(before);
    expect([f.driverName, f.timelineName]).toEqual(['drv', 'tl']);
  });

  it('dma-fence - the last put calls release once; over-put is EINVAL', async () => {
    let released = 0;
    const f = mockFence(0, { ...mockOps(), release: () => released++ });
    expect(dmaFenceGet(f)).toBe(f);
    dmaFencePut(f);
    expect(released).toBe(0);
    dmaFencePut(f);
    expect(released).toBe(1);
    await expectErrno(() => dmaFencePut(f), 'EINVAL');
    dmaFencePut(null);
  });

  it('dma-fence - callbacks run in the order they were added, each exactly once', async () => {
    const f = mockFence();
    const order: number[] = [];
    const latch = new Latch(3, 1_000, 'callbacks');
    for (const i of [0, 1, 2])
      dmaFenceAddCallback(f, {
        func: () => {
          order.push(i);
          latch.unlock();
        },
      });
    dmaFenceSignal(f);
    await latch.done;
    expect(order).toEqual([0, 1, 2]);
  });
});

describe('dma-fence references', () => {
  const counted = () => {
    const released: DmaFence[] = [];
    const ops = {
      getDriverName: () => 'ref',
      getTimelineName: () => 'ref',
      release: (f: DmaFence) => released.push(f),
    };
    return { f: new DmaFence(ops, dmaFenceContextAlloc(1), 1), released };
  };

  it('dma-fence - ops.release still runs at the last put of a signalled fence (ops detached)', () => {
    const { f, released } = counted();
    dmaFenceSignal(f);
    expect(f.ops).toBeNull();
    dmaFencePut(f);
    expect(released).toEqual([f]);
    expect(() => dmaFencePut(f)).toThrow(/already released/);
  });

  it("dma-fence - a wait holds its own reference: dropping the caller's mid-wait does not release the fence", async () => {
    const { f, released } = counted();
    const waiting = dmaFenceWaitTimeout(f, 2_000);
    dmaFencePut(f); // the caller's reference goes while the wait is pending
    expect(released).toHaveLength(0);
    dmaFenceSignal(f);
    expect(await withDeadline(waiting, 2_000, 'wait')).toBeGreaterThan(0);
    expect(released).toEqual([f]);
  });
});

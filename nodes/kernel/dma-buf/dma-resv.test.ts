import { describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import type { EmuError } from '../../../common/errno.ts';
import { runInTask } from '../locking/task.ts';
import { WwAcquireCtx } from '../locking/ww-mutex.ts';
import {
  DmaFence,
  type DmaFenceCb,
  dmaFenceAddCallback,
  dmaFenceContextAlloc,
  dmaFenceSignal,
} from './dma-fence.ts';
import {
  DmaResv,
  DmaResvIter,
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvAssertHeld,
  dmaResvForEachFence,
  dmaResvGetFences,
  dmaResvLock,
  dmaResvLockSlow,
  dmaResvReplaceFences,
  dmaResvReserveFences,
  dmaResvTestSignaled,
  dmaResvTrylock,
  dmaResvUnlock,
  dmaResvUsageName,
  dmaResvUsageRw,
  dmaResvUsages,
  dmaResvWaitTimeout,
} from './dma-resv.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';

const mockOps = { getDriverName: () => 'mock', getTimelineName: () => 'mock' };
const mockFence = (ctx = dmaFenceContextAlloc(1), seqno = 1) => new DmaFence(mockOps, ctx, seqno);

async function withLocked<T>(obj: DmaResv, fn: () => T): Promise<T> {
  await dmaResvLock(obj, null);
  try {
    return fn();
  } finally {
    dmaResvUnlock(obj);
  }
}

async function addFence(obj: DmaResv, f: DmaFence, usage: DmaResvUsage): Promise<void> {
  await withLocked(obj, () => {
    dmaResvReserveFences(obj, 1);
    dmaResvAddFence(obj, f, usage);
  });
}

describe('dma-resv (st-dma-resv)', () => {
  it('dma-resv - sanitycheck: init, lock, unlock', async () => {
    const obj = new DmaResv();
    expect(dmaResvTrylock(obj)).toBe(true);
    expect(dmaResvTrylock(obj)).toBe(false);
    dmaResvUnlock(obj);
    await dmaResvLock(obj, null);
    dmaResvUnlock(obj);
    expect(obj.lock.isLocked).toBe(false);
  });

  for (const usage of dmaResvUsages) {
    const name = dmaResvUsageName(usage);

    it(`dma-resv - test_signaling ${name}: not signalled until the fence signals`, async () => {
      const obj = new DmaResv();
      const f = mockFence();
      await addFence(obj, f, usage);
      expect(dmaResvTestSignaled(obj, usage)).toBe(false);
      dmaFenceSignal(f);
      expect(dmaResvTestSignaled(obj, usage)).toBe(true);
    });

    it(`dma-resv - test_for_each ${name}: locked iteration sees exactly the fence with its usage`, async () => {
      const obj = new DmaResv();
      const f = mockFence();
      await addFence(obj, f, usage);
      const seen = await withLocked(obj, () => [...dmaResvForEachFence(obj, DmaResvUsage.BOOKKEEP)]);
      expect(seen).toEqual([{ fence: f, usage }]);
    });

    it(`dma-resv - test_for_each_unlocked ${name}: a racing writer forces a detected restart`, async () => {
      const obj = new DmaResv();
      const f = mockFence();
      await addFence(obj, f, usage);
      const it = new DmaResvIter(obj, DmaResvUsage.BOOKKEEP);
      const first = it.next();
      expect(first?.fence).toBe(f);
      expect(first?.usage).toBe(usage);
      expect(it.isRestarted()).toBe(true);
      obj.seq++; // perturb the sequence count as the kernel test does
      const again = it.next();
      expect(again?.fence).toBe(f);
      expect(it.isRestarted()).toBe(true);
      expect(it.next()).toBeNull();
    });

    it(`dma-resv - test_get_fences ${name}: returns exactly that fence`, async () => {
      const obj = new DmaResv();
      const f = mockFence();
      await addFence(obj, f, usage);
      expect(dmaResvGetFences(obj, usage)).toEqual([f]);
    });
  }
});

describe('dma-resv rules', () => {
  it('dma-resv - usage inclusion matrix: each query includes every lower usage (rule 21)', async () => {
    const obj = new DmaResv();
    const fences = dmaResvUsages.map(() => mockFence());
    for (const u of dmaResvUsages) await addFence(obj, fences[u], u);
    for (const q of dmaResvUsages) {
      expect(dmaResvGetFences(obj, q)).toEqual(fences.slice(0, q + 1));
    }
    // Signal KERNEL first, then WRITE, ...: test_signaled(q) is true once every usage <= q is done.
    for (const u of dmaResvUsages) {
      dmaFenceSignal(fences[u]);
      for (const q of dmaResvUsages) expect(dmaResvTestSignaled(obj, q)).toBe(q <= u);
    }
  });

  it('dma-resv - usage_rw: a write waits for READ, a read for WRITE (rule 22)', () => {
    expect(dmaResvUsageRw(true)).toBe(DmaResvUsage.READ);
    expect(dmaResvUsageRw(false)).toBe(DmaResvUsage.WRITE);
  });

  it('dma-resv - later fence of the same context replaces the earlier one (rule 20)', async () => {
    const obj = new DmaResv();
    const ctx = dmaFenceContextAlloc(1);
    await addFence(obj, mockFence(ctx, 1), DmaResvUsage.WRITE);
    const f2 = mockFence(ctx, 2);
    await addFence(obj, f2, DmaResvUsage.WRITE);
    expect(dmaResvGetFences(obj, DmaResvUsage.BOOKKEEP)).toEqual([f2]);
  });

  it('dma-resv - BOOKKEEP fence is promoted to READ by re-adding (rule 20)', async () => {
    const obj = new DmaResv();
    const f = mockFence();
    await addFence(obj, f, DmaResvUsage.BOOKKEEP);
    await addFence(obj, f, DmaResvUsage.READ);
    expect(obj.numFences).toBe(1);
    expect(dmaResvGetFences(obj, DmaResvUsage.READ)).toEqual([f]);
  });

  it('dma-resv - WRITE fence is never demoted: re-adding as READ appends (rule 20)', async () => {
    const obj = new DmaResv();
    const f = mockFence();
    await addFence(obj, f, DmaResvUsage.WRITE);
    await addFence(obj, f, DmaResvUsage.READ);
    expect(obj.numFences).toBe(2);
    expect(dmaResvGetFences(obj, DmaResvUsage.WRITE)).toEqual([f]);
  });

  it('dma-resv - a signalled entry is reused for an unrelated fence (rule 20)', async () => {
    const obj = new DmaResv();
    const f1 = mockFence();
    await addFence(obj, f1, DmaResvUsage.READ);
    dmaFenceSignal(f1);
    const f2 = mockFence();
    await addFence(obj, f2, DmaResvUsage.WRITE);
    expect(dmaResvGetFences(obj, DmaResvUsage.BOOKKEEP)).toEqual([f2]);
  });

  it('dma-resv - add without a reserved slot fails ENOSPC; reservations do not survive unlock (rule 19)', async () => {
    const obj = new DmaResv();
    await dmaResvLock(obj, null);
    await expectCode(() => dmaResvAddFence(obj, mockFence(), DmaResvUsage.READ), 'ENOSPC');
    dmaResvReserveFences(obj, 1);
    dmaResvUnlock(obj);
    await dmaResvLock(obj, null);
    await expectCode(() => dmaResvAddFence(obj, mockFence(), DmaResvUsage.READ), 'ENOSPC');
    dmaResvUnlock(obj);
  });

  it('dma-resv - writers must hold the lock: add, reserve, replace, locked iteration fail EPERM (rule 18)', async () => {
    const obj = new DmaResv();
    const f = mockFence();
    for (const call of [
      () => dmaResvReserveFences(obj, 1),
      () => dmaResvAddFence(obj, f, DmaResvUsage.READ),
      () => dmaResvReplaceFences(obj, f.context, f, DmaResvUsage.READ),
      () => [...dmaResvForEachFence(obj, DmaResvUsage.READ)],
      () => dmaResvAssertHeld(obj, 'test'),
    ]) {
      const e = await expectCode(call, 'EPERM');
      expect(e.message).toMatch(/lock must be held/);
    }
  });

  it('dma-resv - replace_fences swaps every fence of a context (rule 23)', async () => {
    const obj = new DmaResv();
    const f = mockFence();
    const other = mockFence();
    await addFence(obj, f, DmaResvUsage.BOOKKEEP);
    await addFence(obj, other, DmaResvUsage.READ);
    const repl = mockFence();
    await withLocked(obj, () => dmaResvReplaceFences(obj, f.context, repl, DmaResvUsage.BOOKKEEP));
    expect(dmaResvGetFences(obj, DmaResvUsage.BOOKKEEP)).toEqual([repl, other]);
  });

  it('dma-resv - wait_timeout: 0 on timeout, > 0 once signalled, EINVAL on negative (rule 24)', async () => {
    const obj = new DmaResv();
    const f = mockFence();
    await addFence(obj, f, DmaResvUsage.WRITE);
    expect(await dmaResvWaitTimeout(obj, DmaResvUsage.WRITE, 0)).toBe(0);
    expect(await dmaResvWaitTimeout(obj, DmaResvUsage.KERNEL, 0)).toBeGreaterThan(0);
    const timer = setTimeout(() => dmaFenceSignal(f), 5);
    expect(
      await withDeadline(dmaResvWaitTimeout(obj, DmaResvUsage.WRITE, 5_000), 5_000, 'resv wait'),
    ).toBeGreaterThan(0);
    clearTimeout(timer);
    await expectCode(dmaResvWaitTimeout(obj, DmaResvUsage.WRITE, -1), 'EINVAL');
    await expectCode(dmaResvWaitTimeout(obj, 7 as DmaResvUsage, 1), 'EINVAL');
  });

  it('dma-resv - wait also covers fences added while waiting', async () => {
    const obj = new DmaResv();
    const f1 = mockFence();
    const f2 = mockFence();
    await addFence(obj, f1, DmaResvUsage.READ);
    const waiting = dmaResvWaitTimeout(obj, DmaResvUsage.READ, 5_000);
    await addFence(obj, f2, DmaResvUsage.READ);
    dmaFenceSignal(f1);
    let settled = false;
    void waiting.then(() => (settled = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(settled).toBe(false);
    dmaFenceSignal(f2);
    expect(await withDeadline(waiting, 5_000, 'resv wait')).toBeGreaterThan(0);
  });

  it('dma-resv - implicit sync: writer waits for readers, reader waits only for the writer (scenario 6)', async () => {
    const obj = new DmaResv();
    const writer = mockFence();
    const reader = mockFence();
    await addFence(obj, writer, DmaResvUsage.WRITE);
    await addFence(obj, reader, DmaResvUsage.READ);
    dmaFenceSignal(writer);
    expect(dmaResvTestSignaled(obj, dmaResvUsageRw(false))).toBe(true); // new read: only the writer mattered
    expect(dmaResvTestSignaled(obj, dmaResvUsageRw(true))).toBe(false); // new write: still the reader
  });

  it('dma-resv - oversync: a BOOKKEEP teardown fence never delays an implicit read, but eviction waits for it (§2.3)', async () => {
    const shared = new DmaResv('shared-bo');
    const tlbFlush = mockFence(); // process A exits: page-table teardown published as BOOKKEEP
    await addFence(shared, tlbFlush, DmaResvUsage.BOOKKEEP);
    // Process B's implicit read waits for WRITE usage only: ready now.
    expect(await dmaResvWaitTimeout(shared, dmaResvUsageRw(false), 0)).toBeGreaterThan(0);
    // Eviction honours every usage: must wait for the teardown.
    expect(dmaResvTestSignaled(shared, DmaResvUsage.BOOKKEEP)).toBe(false);
    dmaFenceSignal(tlbFlush);
    expect(dmaResvTestSignaled(shared, DmaResvUsage.BOOKKEEP)).toBe(true);
  });

  it('dma-resv - lock from a fence callback is refused with EDEADLK (rules 6, 15)', async () => {
    const obj = new DmaResv();
    const f = mockFence();
    let seen: unknown;
    const cb: DmaFenceCb = {
      func: () => {
        try {
          dmaResvTrylock(obj);
        } catch (e) {
          seen = e;
        }
      },
    };
    expect(dmaFenceAddCallback(f, cb)).toBe(0);
    dmaFenceSignal(f);
    expect((seen as EmuError).code).toBe('EDEADLK');
    expect(obj.lock.isLocked).toBe(false);
  });
});

describe('dma-resv ww_mutex', () => {
  it('ww_mutex - same ctx locking twice gets EALREADY', async () => {
    const obj = new DmaResv();
    const ctx = new WwAcquireCtx('t');
    await dmaResvLock(obj, ctx);
    await expectCode(dmaResvLock(obj, ctx), 'EALREADY');
    dmaResvUnlock(obj);
    ctx.acquireFini();
  });

  it('ww_mutex - recursive locking in one task is EDEADLK, not a hang (scenario 1.5.4)', async () => {
    const obj = new DmaResv();
    await runInTask('recursive', async () => {
      await dmaResvLock(obj, null);
      const e = await expectCode(withDeadline(dmaResvLock(obj, null), 2_000, 'second lock'), 'EDEADLK');
      expect(e.message).toMatch(/recursive/);
      dmaResvUnlock(obj);
    });
  });

  it('ww_mutex - another task waits for the holder and gets the lock on unlock', async () => {
    const obj = new DmaResv();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const a = runInTask('a', async () => {
      await dmaResvLock(obj, null);
      await held;
      dmaResvUnlock(obj);
    });
    await Promise.resolve();
    const b = runInTask('b', async () => {
      await dmaResvLock(obj, null);
      dmaResvAssertHeld(obj, 'b');
      dmaResvUnlock(obj);
      return 'b done';
    });
    release();
    await withDeadline(a, 2_000, 'task a');
    expect(await withDeadline(b, 2_000, 'task b')).toBe('b done');
  });

  it('ww_mutex - assert_held from a task that does not hold the lock fails EPERM', async () => {
    const obj = new DmaResv();
    await runInTask('holder', () => dmaResvLock(obj, null));
    await runInTask('other', async () => {
      await expectCode(() => dmaResvAssertHeld(obj, 'dmaBufMapAttachment'), 'EPERM');
    });
    dmaResvUnlock(obj);
  });

  it('ww_mutex - two transactions lock {A,B} in opposite order: the younger backs off with EDEADLK and both finish (scenario 5)', async () => {
    const A = new DmaResv('A');
    const B = new DmaResv('B');
    const log: string[] = [];
    let go!: () => void;
    const gate = new Promise<void>((r) => (go = r));

    // Kernel-style transaction: lock all, retry on EDEADLK after dropping everything.
    async function lockAll(name: string, objs: DmaResv[]): Promise<void> {
      const ctx = new WwAcquireCtx(name);
      let contended: DmaResv | null = null;
      for (;;) {
        const held: DmaResv[] = [];
        try {
          if (contended) {
            await dmaResvLockSlow(contended, ctx);
            held.push(contended);
          }
          for (const o of objs) {
            if (o === contended) continue;
            await dmaResvLock(o, ctx);
            held.push(o);
            await gate; // both transactions hold their first lock before going on
          }
          break;
        } catch (e) {
          if ((e as EmuError).code !== 'EDEADLK') throw e;
          log.push(`${name} backoff`);
          for (const o of held) dmaResvUnlock(o);
          contended = objs.find((o) => o.lock.isLocked && o.lock.ctx !== ctx && !held.includes(o)) ?? null;
        }
      }
      ctx.acquireDone();
      log.push(`${name} locked`);
      for (const o of objs) dmaResvUnlock(o);
      ctx.acquireFini();
    }

    const older = runInTask('older', () => lockAll('older', [A, B]));
    const younger = runInTask('younger', () => lockAll('younger', [B, A]));
    go();
    await withDeadline(Promise.all([older, younger]), 5_000, 'both transactions');
    expect(log).toContain('younger backoff');
    expect(log).not.toContain('older backoff');
    expect(log.filter((l) => l.endsWith('locked')).sort()).toEqual(['older locked', 'younger locked']);
    expect(A.lock.isLocked || B.lock.isLocked).toBe(false);
  });

  it('ww_mutex - interruptible lock aborts with ERESTARTSYS', async () => {
    const obj = new DmaResv();
    await runInTask('holder', () => dmaResvLock(obj, null));
    const ac = new AbortController();
    const p = runInTask('waiter', () => dmaResvLock(obj, null, { signal: ac.signal }));
    ac.abort();
    await expectCode(withDeadline(p, 2_000, 'interrupted lock'), 'ERESTARTSYS');
    dmaResvUnlock(obj);
    expect(obj.lock.isLocked).toBe(false);
  });

  it('ww_mutex - acquire_fini with locks held is EBUSY; unlock of an unlocked resv is EPERM', async () => {
    const obj = new DmaResv();
    const ctx = new WwAcquireCtx('t');
    await dmaResvLock(obj, ctx);
    await expectCode(() => ctx.acquireFini(), 'EBUSY');
    dmaResvUnlock(obj);
    ctx.acquireFini();
    await expectCode(() => dmaResvUnlock(obj), 'EPERM');
  });
});

// Ports of igt syncobj_basic, syncobj_wait and syncobj_timeline, plus the dmabuf_sync_file
// snapshot rules that need no dma-buf (kernel-semantics §8.2, rules 33-36). igt threads and
// timers become promises and setTimeout; igt's 100 ms "short" timeouts are 5 ms here.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { EmuError } from '../../../common/errno.ts';
import { Rng } from '../../../common/random.ts';
import { swSyncCreateFence, swSyncGetDeadline, swSyncInc, swSyncTimelineCreate } from './sw-sync.ts';
import { FdTable } from '../fs/file.ts';
import { syncFileInfo } from './sync-file.ts';
import {
  DRM_SYNCOBJ_CREATE_FLAGS,
  DRM_SYNCOBJ_QUERY_FLAGS,
  DRM_SYNCOBJ_WAIT_FLAGS as W,
  DrmSyncobjTable,
  syncobjCreate,
  syncobjDestroy,
  syncobjExportSyncFile,
  syncobjFdToHandle,
  syncobjHandleToFd,
  syncobjImportSyncFile,
  syncobjQuery,
  syncobjReset,
  syncobjSignal,
  syncobjTimelineSignal,
} from './syncobj.ts';
import { syncobjTransfer, syncobjWait } from './syncobj-wait.ts';

const EINVAL = -22;
const ENOENT = -2;
const ETIME = -62;
const ERESTARTSYS = -512;
const SHORT = 5;
const LONG = 1000;

interface Ctx {
  fdt: FdTable;
  file: DrmSyncobjTable;
}
const ctx = (): Ctx => {
  const fdt = new FdTable();
  return { fdt, file: new DrmSyncobjTable(fdt) };
};
const errnoOf = (e: unknown) => {
  if (e instanceof EmuError) return e.errno;
  throw e;
};
const errno = (p: Promise<unknown>) => p.then(() => 0, errnoOf);
const errnoSync = (fn: () => unknown) => {
  try {
    fn();
    return 0;
  } catch (e) {
    return errnoOf(e);
  }
};
const wait = (c: Ctx, hs: number[], pts: number[] | null, ms: number, flags = 0) =>
  errno(withDeadline(syncobjWait(c.file, hs, pts, ms, flags), ms + LONG, 'syncobjWait'));

// igt syncobj_attach_sw_sync: a pending sw_sync fence at `point` (0: binary import); returns the
// timeline fd that signals it.
async function attach(c: Ctx, handle: number, point: number): Promise<number> {
  const timeline = swSyncTimelineCreate(c.fdt);
  const fence = swSyncCreateFence(c.fdt, timeline, 1);
  if (point === 0) {
    syncobjImportSyncFile(c.file, handle, fence);
  } else {
    const tmp = syncobjCreate(c.file);
    syncobjImportSyncFile(c.file, tmp, fence);
    await syncobjTransfer(c.file, { srcHandle: tmp, dstHandle: handle, dstPoint: point });
    syncobjDestroy(c.file, tmp);
  }
  c.fdt.close(fence);
  return timeline;
}
async function trigger(c: Ctx, handle: number, point: number): Promise<void> {
  const timeline = await attach(c, handle, point);
  swSyncInc(c.fdt, timeline, 1);
  c.fdt.close(timeline);
}
const query = (c: Ctx, h: number, flags = 0) => syncobjQuery(c.file, [h], flags)[0];

describe('syncobj_basic', () => {
  it('syncobj_basic - bad-destroy, bad-destroy-pad and bad-create-flags are EINVAL', () => {
    const c = ctx();
    expect(errnoSync(() => syncobjDestroy(c.file, 0xdeadbeef))).toBe(EINVAL);
    const h = syncobjCreate(c.file);
    expect(errnoSync(() => syncobjDestroy(c.file, h, 0xdeadbeef))).toBe(EINVAL);
    syncobjDestroy(c.file, h);
    expect(errnoSync(() => syncobjCreate(c.file, 0xdeadbeef))).toBe(EINVAL);
  });

  it('syncobj_basic - bad handle, fd, flags and pad for handle<->fd are EINVAL', () => {
    const c = ctx();
    expect(errnoSync(() => syncobjHandleToFd(c.file, { handle: 0xdeadbeef }))).toBe(EINVAL);
    expect(errnoSync(() => syncobjFdToHandle(c.file, { fd: -1 }))).toBe(EINVAL);
    expect(errnoSync(() => syncobjHandleToFd(c.file, { handle: 0, flags: 0xdeadbeef }))).toBe(EINVAL);
    expect(errnoSync(() => syncobjFdToHandle(c.file, { fd: 0, flags: 0xdeadbeef }))).toBe(EINVAL);
    expect(errnoSync(() => syncobjHandleToFd(c.file, { handle: 0, pad: 0xdeadbeef }))).toBe(EINVAL);
    expect(errnoSync(() => syncobjFdToHandle(c.file, { fd: 0, pad: 0xdeadbeef }))).toBe(EINVAL);
    const notSyncobj = swSyncTimelineCreate(c.fdt); // illegal-fd-to-handle: an fd of another kind
    expect(errnoSync(() => syncobjFdToHandle(c.file, { fd: notSyncobj }))).toBe(EINVAL);
    expect(errnoSync(() => syncobjExportSyncFile(c.file, 0xdead))).toBe(ENOENT);
    expect(errnoSync(() => syncobjExportSyncFile(c.file, syncobjCreate(c.file)))).toBe(EINVAL);
  });

  it('syncobj_basic - create-signaled waits at once', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file, DRM_SYNCOBJ_CREATE_FLAGS.SIGNALED);
    expect(await wait(c, [h], null, 0)).toBe(0);
  });

  it('syncobj_basic - test-valid-cycle import makes a new handle to the same object', async () => {
    const c = ctx();
    const first = syncobjCreate(c.file);
    const fd = syncobjHandleToFd(c.file, { handle: first });
    const second = syncobjFdToHandle(c.file, { fd });
    c.fdt.close(fd);
    expect(second).not.toBe(first);
    syncobjSignal(c.file, [first]);
    expect(await wait(c, [second], null, 0)).toBe(0); // same object behind both handles
    syncobjDestroy(c.file, first);
    syncobjDestroy(c.file, second);
  });
});

// igt test-flag bits (syncobj_timeline numbering) and the expected result of each combination.
const T = { FOR_SUBMIT: 1, ALL: 2, AVAILABLE: 4, UNSUBMITTED: 8, SUBMITTED: 16, SIGNALED: 32 } as const;
const MODES = T.UNSUBMITTED | T.SUBMITTED | T.SIGNALED;
const kflags = (tf: number) =>
  (tf & T.FOR_SUBMIT ? W.WAIT_FOR_SUBMIT : 0) |
  (tf & T.AVAILABLE ? W.WAIT_AVAILABLE : 0) |
  (tf & T.ALL ? W.WAIT_ALL : 0);
const popcount = (x: number) => x.toString(2).replace(/0/g, '').length;

function expectSingle(tf: number): number {
  if (tf & T.UNSUBMITTED && !(tf & T.FOR_SUBMIT)) return EINVAL;
  if (!(tf & T.SIGNALED) && !(tf & T.SUBMITTED && tf & T.AVAILABLE)) return ETIME;
  return 0;
}
function expectMulti(tf: number): number {
  if (tf & T.UNSUBMITTED && !(tf & T.FOR_SUBMIT)) return EINVAL;
  if (tf & T.ALL) {
    if (!(tf & T.UNSUBMITTED) && tf & T.SUBMITTED && tf & T.AVAILABLE) return 0;
    return tf & (T.UNSUBMITTED | T.SUBMITTED) ? ETIME : 0;
  }
  return !(tf & T.SIGNALED) && !(tf & T.SUBMITTED && tf & T.AVAILABLE) ? ETIME : 0;
}
function caseName(kind: string, tf: number, err: number): string {
  const parts = [
    [T.ALL, '-all'],
    [T.FOR_SUBMIT, '-for-submit'],
    [T.AVAILABLE, '-available'],
    [T.UNSUBMITTED, '-unsubmitted'],
    [T.SUBMITTED, '-submitted'],
    [T.SIGNALED, '-signaled'],
  ] as const;
  const prefix = err === EINVAL ? 'invalid-' : err === ETIME ? 'etime-' : '';
  return `${prefix}${kind}${parts.map(([bit, s]) => (tf & bit ? s : '')).join('')}`;
}
function matrix(timeline: boolean, multi: boolean): [string, number, number][] {
  const rows: [string, number, number][] = [];
  for (let tf = 0; tf < 64; tf++) {
    if (!timeline && tf & T.AVAILABLE) continue;
    const modes = popcount(tf & MODES);
    if (multi ? modes === 0 : modes !== 1) continue;
    const err = multi ? expectMulti(tf) : expectSingle(tf);
    rows.push([caseName(multi ? 'multi-wait' : 'single-wait', tf, err), tf, err]);
  }
  return rows;
}

// test_single_wait / test_multi_wait: 0, short and (unless ETIME) long timeouts all agree.
async function runMatrixCase(timeline: boolean, tf: number, expected: number, multi: boolean) {
  const c = ctx();
  const rng = new Rng(tf);
  const points = multi ? [1 + rng.below(1000), 0, 1 + rng.below(1000), 1 + rng.below(1000), 0] : [1];
  const pts = timeline ? points : points.map(() => 0);
  const handles = pts.map(() => syncobjCreate(c.file));
  let modes = tf & MODES;
  for (let i = 0; i < handles.length; i++) {
    const mode = modes & -modes; // lowest mode bit; the last one left covers the rest
    if (modes & ~mode) modes &= ~mode;
    if (mode & (T.SUBMITTED | T.SIGNALED)) {
      const tl = await attach(c, handles[i], pts[i]);
      if (mode & T.SIGNALED) swSyncInc(c.fdt, tl, 1);
    }
  }
  const p = timeline ? pts : null;
  expect(await wait(c, handles, p, 0, kflags(tf))).toBe(expected);
  expect(await wait(c, handles, p, SHORT, kflags(tf))).toBe(expected);
  if (expected !== ETIME) expect(await wait(c, handles, p, LONG, kflags(tf))).toBe(expected);
}

for (const timeline of [false, true]) {
  const area = timeline ? 'syncobj_timeline' : 'syncobj_wait';
  const point = timeline ? 1 : 0;
  const pts = (n: number) => (timeline ? new Array<number>(n).fill(1) : null);

  describe(area, () => {
    it.each(matrix(timeline, false))(`${area} - %s`, (_n, tf, e) => runMatrixCase(timeline, tf, e, false));
    it.each(matrix(timeline, true))(`${area} - %s`, (_n, tf, e) => runMatrixCase(timeline, tf, e, true));

    it(`${area} - invalid-wait-bad-flags, invalid-wait-zero-handles, invalid-wait-illegal-handle`, async () => {
      const c = ctx();
      const h = syncobjCreate(c.file);
      expect(await wait(c, [h], pts(1), 0, 0xdeadbeef)).toBe(EINVAL);
      expect(await wait(c, [], timeline ? [] : null, 0)).toBe(EINVAL);
      expect(await wait(c, [0], pts(1), 0)).toBe(ENOENT);
      if (!timeline) expect(await wait(c, [h], null, 0, W.WAIT_AVAILABLE)).toBe(EINVAL);
    });

    it(`${area} - reset and signal reject zero handles, bad pad and illegal handles untouched`, async () => {
      const c = ctx();
      const good = [syncobjCreate(c.file), syncobjCreate(c.file)];
      syncobjSignal(c.file, good);
      for (const op of [syncobjReset, syncobjSignal]) {
        expect(errnoSync(() => op(c.file, []))).toBe(EINVAL);
        expect(errnoSync(() => op(c.file, [0]))).toBe(ENOENT);
        expect(errnoSync(() => op(c.file, [good[0], 0, good[1]]))).toBe(ENOENT);
        expect(errnoSync(() => op(c.file, good, 0xdeadbeef))).toBe(EINVAL);
      }
      expect(await wait(c, good, null, 0, W.WAIT_ALL)).toBe(0); // the failed reset left them
    });

    it(`${area} - reset-unsignaled, reset-signaled and reset-multiple-signaled`, async () => {
      const c = ctx();
      const h = syncobjCreate(c.file);
      expect(await wait(c, [h], pts(1), 0)).toBe(EINVAL);
      syncobjReset(c.file, [h]);
      expect(await wait(c, [h], pts(1), 0)).toBe(EINVAL);
      const hs = [0, 1, 2].map(() => syncobjCreate(c.file));
      for (const x of hs) await trigger(c, x, point);
      expect(await wait(c, hs, pts(3), 0)).toBe(0);
      syncobjReset(c.file, hs);
      for (const x of hs) expect(await wait(c, [x], pts(1), 0)).toBe(EINVAL);
    });

    it(`${area} - reset-during-wait-for-submit a reset mid-wait is a no-op`, async () => {
      const c = ctx();
      const h = syncobjCreate(c.file);
      setTimeout(() => {
        syncobjReset(c.file, [h]);
        void trigger(c, h, point);
      }, SHORT);
      expect(await wait(c, [h], pts(1), LONG, W.WAIT_FOR_SUBMIT)).toBe(0);
    });

    it(`${area} - signal wait is EINVAL, wait-for-submit ETIME, then both succeed`, async () => {
      const c = ctx();
      const h = syncobjCreate(c.file);
      expect(await wait(c, [h], pts(1), 0)).toBe(EINVAL);
      expect(await wait(c, [h], pts(1), 0, W.WAIT_FOR_SUBMIT)).toBe(ETIME);
      if (timeline) syncobjTimelineSignal(c.file, [h], [1]);
      else syncobjSignal(c.file, [h]);
      expect(await wait(c, [h], pts(1), 0)).toBe(0);
      expect(await wait(c, [h], pts(1), 0, W.WAIT_FOR_SUBMIT)).toBe(0);
    });

    it.each([
      ['wait-delayed-signal', 0],
      ['wait-for-submit-delayed-submit', T.FOR_SUBMIT],
      ['wait-all-delayed-signal', T.ALL],
      ['wait-all-for-submit-delayed-submit', T.ALL | T.FOR_SUBMIT],
    ])(`${area} - %s`, async (_n, tf) => {
      const c = ctx();
      const h = syncobjCreate(c.file);
      if (tf & T.FOR_SUBMIT) {
        setTimeout(() => void trigger(c, h, point), SHORT);
      } else {
        const tl = await attach(c, h, point);
        setTimeout(() => swSyncInc(c.fdt, tl, 1), SHORT);
      }
      expect(await wait(c, [h], pts(1), LONG, kflags(tf))).toBe(0);
    });

    it.each([
      ['wait-any-snapshot', 0],
      ['wait-all-snapshot', T.ALL],
      ['wait-for-submit-snapshot', T.FOR_SUBMIT],
      ['wait-all-for-submit-snapshot', T.ALL | T.FOR_SUBMIT],
    ])(`${area} - %s a wait keeps the fences it saw`, async (_n, tf) => {
      const c = ctx();
      const hs = [syncobjCreate(c.file), syncobjCreate(c.file)];
      const tls = [-1, -1];
      if (!(tf & T.FOR_SUBMIT)) for (let i = 0; i < 2; i++) tls[i] = await attach(c, hs[i], point);
      const waiter = withDeadline(syncobjWait(c.file, hs, pts(2), LONG, kflags(tf)), LONG * 2, 'snapshot');
      if (tf & T.ALL) {
        if (tls[0] === -1) await trigger(c, hs[0], point);
        else swSyncInc(c.fdt, tls[0], 1);
      } else if (tf & T.FOR_SUBMIT) {
        tls[0] = await attach(c, hs[0], point);
      }
      syncobjReset(c.file, [hs[0]]);
      await attach(c, hs[0], point); // never signalled: picking it up would time out
      if (tls[1] === -1) await trigger(c, hs[1], point);
      else swSyncInc(c.fdt, tls[1], 1);
      const first = await waiter;
      if (!(tf & T.ALL)) expect(first).toBe(1);
    });

    it.each([
      ['wait-any-complex', 0],
      ['wait-all-complex', T.ALL],
      ['wait-for-submit-complex', T.FOR_SUBMIT],
      ['wait-all-for-submit-complex', T.ALL | T.FOR_SUBMIT],
    ])(`${area} - %s staged submit/signal/reset/resubmit`, async (_n, tf) => {
      const shuffled = [
        2, 0, 6, 1, 1, 4, 5, 2, 0, 7, 1, 7, 6, 3, 4, 5, 0, 2, 7, 3, 5, 4, 0, 6, 7, 3, 2, 5, 6, 1, 4, 3,
      ];
      const c = ctx();
      const hs = Array.from({ length: 8 }, () => syncobjCreate(c.file));
      const stage = new Array<number>(8).fill(0);
      const tls = new Array<number>(8).fill(-1);
      if (!(tf & T.FOR_SUBMIT)) for (let i = 0; i < 8; i++) tls[i] = await attach(c, hs[i], point);
      // As igt: the waiter watches the first two syncobjs only.
      const waiter = withDeadline(
        syncobjWait(c.file, hs.slice(0, 2), pts(2), LONG, kflags(tf)),
        LONG * 2,
        'complex',
      );
      let firstSignaled = -1;
      let numSignaled = 0;
      for (const i of shuffled) {
        switch (stage[i]++) {
          case 0:
            if (tf & T.FOR_SUBMIT) tls[i] = await attach(c, hs[i], point);
            break;
          case 1:
            swSyncInc(c.fdt, tls[i], 1);
            c.fdt.close(tls[i]);
            tls[i] = -1;
            if (numSignaled++ === 0) firstSignaled = i;
            break;
          case 2:
            syncobjReset(c.file, [hs[i]]);
            break;
          case 3:
            tls[i] = await attach(c, hs[i], point);
            break;
          default:
            throw new Error('should not reach this stage');
        }
        if (tf & T.ALL ? numSignaled === 8 : numSignaled > 0) break;
      }
      const first = await waiter;
      if (tf & T.ALL) expect(numSignaled).toBe(8);
      else expect([numSignaled, first]).toEqual([1, firstSignaled]);
    });

    it.each([
      ['wait-any-interrupted', 0],
      ['wait-all-interrupted', T.ALL],
    ])(`${area} - %s a signal interrupts, the restarted wait times out`, async (_n, tf) => {
      const c = ctx();
      const h = syncobjCreate(c.file);
      await attach(c, h, point);
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 1);
      const first = syncobjWait(c.file, [h], pts(1), LONG, kflags(tf), { signal: ac.signal });
      expect(await errno(withDeadline(first, LONG * 2, 'interrupted'))).toBe(ERESTARTSYS);
      expect(await wait(c, [h], pts(1), SHORT, kflags(tf))).toBe(ETIME);
    });

    it(`${area} - wait deadline flag forwards the hint to the fences`, async () => {
      const c = ctx();
      const h = syncobjCreate(c.file);
      const tl = swSyncTimelineCreate(c.fdt);
      const fenceFd = swSyncCreateFence(c.fdt, tl, 1);
      syncobjImportSyncFile(c.file, h, fenceFd, point);
      const waiter = syncobjWait(c.file, [h], pts(1), 0, W.WAIT_DEADLINE, { deadlineMs: 77 });
      expect(await errno(waiter)).toBe(ETIME);
      expect(swSyncGetDeadline(c.fdt, tl, fenceFd)).toBe(77);
    });
  });
}

describe('syncobj_timeline', () => {
  it('syncobj_timeline - invalid query and signal arguments', () => {
    const c = ctx();
    const hs = [syncobjCreate(c.file), 0, syncobjCreate(c.file)];
    syncobjTimelineSignal(c.file, [hs[0], hs[2]], [1, 1]);
    expect(errnoSync(() => syncobjQuery(c.file, []))).toBe(EINVAL);
    expect(errnoSync(() => syncobjQuery(c.file, [0]))).toBe(ENOENT);
    expect(errnoSync(() => syncobjQuery(c.file, hs))).toBe(ENOENT);
    expect(errnoSync(() => syncobjQuery(c.file, [0], 0xdeadbeef))).toBe(EINVAL);
    expect(errnoSync(() => syncobjTimelineSignal(c.file, [], null))).toBe(EINVAL);
    expect(errnoSync(() => syncobjTimelineSignal(c.file, [0], null))).toBe(ENOENT);
    expect(errnoSync(() => syncobjTimelineSignal(c.file, [99], [0]))).toBe(ENOENT); // illegal-point
    expect(errnoSync(() => syncobjTimelineSignal(c.file, hs, [1, 1, 1]))).toBe(ENOENT);
    expect(errnoSync(() => syncobjTimelineSignal(c.file, [0], null, 0xdeadbeef))).toBe(EINVAL);
  });

  it('syncobj_timeline - signal-array and signal-point-0 work with timeline and binary waits', async () => {
    const c = ctx();
    const hs = [0, 1, 2, 3].map(() => syncobjCreate(c.file));
    syncobjTimelineSignal(c.file, hs, [1, 1, 1, 0]);
    expect(await wait(c, hs.slice(0, 3), [1, 1, 1], 0)).toBe(0);
    expect(await wait(c, [hs[3]], null, 0)).toBe(0);
    const h = syncobjCreate(c.file);
    syncobjTimelineSignal(c.file, [h], [0]);
    expect(await wait(c, [h], [0], 0)).toBe(0);
    expect(await wait(c, [h], null, 0, W.WAIT_FOR_SUBMIT)).toBe(0);
  });

  it('syncobj_timeline - invalid transfer: illegal handle ENOENT, bad pad EINVAL, existing point ok', async () => {
    const c = ctx();
    expect(await errno(syncobjTransfer(c.file, { srcHandle: 0, srcPoint: 1, dstHandle: 0 }))).toBe(ENOENT);
    expect(await errno(syncobjTransfer(c.file, { srcHandle: 0, dstHandle: 0, pad: 0xdeadbeef }))).toBe(
      EINVAL,
    );
    const h = syncobjCreate(c.file);
    syncobjTimelineSignal(c.file, [h], [63]);
    expect(
      await errno(syncobjTransfer(c.file, { srcHandle: h, srcPoint: 63, dstHandle: h, dstPoint: 74 })),
    ).toBe(0);
    expect(
      await errno(syncobjTransfer(c.file, { srcHandle: h, srcPoint: 80, dstHandle: h, dstPoint: 90 })),
    ).toBe(EINVAL);
  });

  it('syncobj_timeline - transfer-timeline-point moves a point within a timeline', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const tl = await attach(c, h, 1);
    expect(query(c, h)).toBe(0);
    expect(await wait(c, [h], [1], 0, W.WAIT_ALL)).toBe(ETIME);
    swSyncInc(c.fdt, tl, 1);
    expect(query(c, h)).toBe(1);
    expect(await wait(c, [h], [1], 0, W.WAIT_ALL)).toBe(0);
    syncobjTimelineSignal(c.file, [h], [2]);
    await syncobjTransfer(c.file, { srcHandle: h, srcPoint: 2, dstHandle: h, dstPoint: 3 });
    expect(query(c, h)).toBe(3);
  });

  it('syncobj_timeline - transfer with WAIT_FOR_SUBMIT waits for the source point', async () => {
    const c = ctx();
    const [src, dst] = [syncobjCreate(c.file), syncobjCreate(c.file)];
    const transfer = syncobjTransfer(c.file, {
      srcHandle: src,
      srcPoint: 4,
      dstHandle: dst,
      flags: W.WAIT_FOR_SUBMIT,
    });
    syncobjTimelineSignal(c.file, [src], [4]);
    await withDeadline(transfer, LONG, 'transfer');
    expect(await wait(c, [dst], null, 0)).toBe(0);
    expect(await errno(syncobjTransfer(c.file, { srcHandle: src, dstHandle: dst, flags: W.WAIT_ALL }))).toBe(
      EINVAL,
    );
  });

  describe('with fake timers', () => {
    afterEach(() => {
      vi.useRealTimers();
    });
    it('syncobj_timeline - transfer WAIT_FOR_SUBMIT gives up with ETIME after 5 s', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const c = ctx();
      const [src, dst] = [syncobjCreate(c.file), syncobjCreate(c.file)];
      const transfer = errno(
        syncobjTransfer(c.file, { srcHandle: src, srcPoint: 1, dstHandle: dst, flags: W.WAIT_FOR_SUBMIT }),
      );
      await vi.advanceTimersByTimeAsync(5000);
      expect(await transfer).toBe(ETIME);
    });
  });

  it('syncobj_timeline - WAIT_AVAILABLE with WAIT_FOR_SUBMIT wakes when the point is submitted, unsignalled', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const waiter = wait(c, [h], [3], LONG, W.WAIT_FOR_SUBMIT | W.WAIT_AVAILABLE);
    await attach(c, h, 3);
    expect(await waiter).toBe(0);
    expect(await wait(c, [h], [3], 0)).toBe(ETIME);
  });

  it('syncobj_timeline - host-signal-points the value follows each host point', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const rng = new Rng(100);
    let value = 0;
    for (let i = 0; i < 100; i++) {
      value += rng.nextU32() >>> 1;
      syncobjTimelineSignal(c.file, [h], [value]);
      expect(query(c, h)).toBe(value);
      expect(await wait(c, [h], [value], 0, W.WAIT_FOR_SUBMIT)).toBe(0);
      expect(await wait(c, [h], [value - 1], 0, W.WAIT_ALL)).toBe(0);
    }
  });

  // Points fed by sw_sync fences of one timeline, created with values `values[i]` at `points[i]`.
  async function feed(c: Ctx, h: number, points: number[], values: number[]): Promise<number> {
    const tl = swSyncTimelineCreate(c.fdt);
    for (let i = 0; i < points.length; i++) {
      const fence = swSyncCreateFence(c.fdt, tl, values[i]);
      const tmp = syncobjCreate(c.file);
      syncobjImportSyncFile(c.file, tmp, fence);
      await syncobjTransfer(c.file, { srcHandle: tmp, dstHandle: h, dstPoint: points[i] });
      syncobjDestroy(c.file, tmp);
      c.fdt.close(fence);
    }
    return tl;
  }

  it('syncobj_timeline - device-signal-unordered the value still grows monotonically', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const pointIndices = [0, 2, 1, 4, 3];
    const values: number[] = [];
    pointIndices.forEach((p, i) => {
      values[p] = i + 1;
    });
    const tl = await feed(c, h, [1, 2, 3, 4, 5], values);
    const signaled = new Array<boolean>(5).fill(false);
    let value = 0;
    for (let i = 0; i < 5; i++) {
      swSyncInc(c.fdt, tl, 1);
      signaled[pointIndices[i]] = true;
      const minValue = signaled.indexOf(false) === -1 ? 5 : signaled.indexOf(false);
      const q = query(c, h);
      expect(q).toBeGreaterThanOrEqual(minValue);
      expect(q).toBeGreaterThanOrEqual(value);
      value = Math.max(value, q);
      expect(await wait(c, [h], [q], 0, W.WAIT_FOR_SUBMIT)).toBe(0);
      expect(await wait(c, [h], [q], 0, W.WAIT_ALL)).toBe(0);
    }
  });

  it('syncobj_timeline - device-submit-unordered an unordered point does not break the timeline', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const tl = await feed(c, h, [1, 5, 3, 6, 7], [1, 2, 3, 4, 5]);
    swSyncInc(c.fdt, tl, 3);
    expect(query(c, h)).toBe(5);
    expect(query(c, h, DRM_SYNCOBJ_QUERY_FLAGS.LAST_SUBMITTED)).toBe(7);
    expect(await wait(c, [h], [5], 0, W.WAIT_FOR_SUBMIT)).toBe(0);
    expect(await wait(c, [h], [5], 0, W.WAIT_ALL)).toBe(0);
  });

  it('syncobj_timeline - an unordered point ends the query walk, so it may report 0 (the kernel warns)', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const tl = await feed(c, h, [1, 5], [1, 2]);
    swSyncInc(c.fdt, tl, 1);
    expect(query(c, h)).toBe(1);
    syncobjTimelineSignal(c.file, [h], [3]); // not above 5: new context, seqno 5
    expect(query(c, h, DRM_SYNCOBJ_QUERY_FLAGS.LAST_SUBMITTED)).toBe(5);
    expect(query(c, h)).toBe(0);
    swSyncInc(c.fdt, tl, 1);
    expect(query(c, h)).toBe(5);
  });

  it('syncobj_timeline - host-signal-ordered a host point waits for earlier device points', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const tl = await feed(c, h, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]);
    swSyncInc(c.fdt, tl, 3);
    expect(query(c, h)).toBe(3);
    syncobjTimelineSignal(c.file, [h], [8]);
    expect(query(c, h)).toBe(3);
    swSyncInc(c.fdt, tl, 5);
    expect(query(c, h)).toBe(8);
  });

  it('syncobj_timeline - 32bits-limit points across 2^31 and 2^32 stay ordered and monotonic', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const limitDiff = 2 ** 31 - 1;
    const points = [1, 5, limitDiff + 5, limitDiff + 6, limitDiff * 2];
    let running = true;
    let checkerLast = 0;
    let checks = 0;
    const checker = (async () => {
      while (running) {
        const v = query(c, h);
        expect(v).toBeGreaterThanOrEqual(checkerLast);
        checkerLast = v;
        checks++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    const tl = await feed(c, h, points, [1, 2, 3, 4, 5]);
    let last = 0;
    for (let i = 0; i < points.length; i++) {
      swSyncInc(c.fdt, tl, 1);
      const v = query(c, h);
      expect(v).toBe(points[i]); // one context: the timeline is ordered past the s32 boundary
      expect(v).toBeGreaterThanOrEqual(last);
      last = v;
      await new Promise((r) => setImmediate(r));
    }
    running = false;
    await withDeadline(checker, LONG, 'checker');
    expect(checks).toBeGreaterThan(0);
  });
});

describe('dmabuf_sync_file', () => {
  it('dmabuf_sync_file - an exported sync_file is a snapshot: later reset or signal does not change it', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const tl = await attach(c, h, 0);
    const exported = syncobjExportSyncFile(c.file, h);
    syncobjSignal(c.file, [h]);
    expect(syncFileInfo(c.fdt, exported).status).toBe(0); // still the pending sw_sync fence
    syncobjReset(c.file, [h]);
    swSyncInc(c.fdt, tl, 1);
    expect(syncFileInfo(c.fdt, exported).status).toBe(1);
  });

  it('dmabuf_sync_file - export-wait-after-attach the snapshot ignores fences attached later', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const first = await attach(c, h, 0);
    const exported = syncobjExportSyncFile(c.file, h);
    await attach(c, h, 0); // a later, never-signalled fence
    swSyncInc(c.fdt, first, 1);
    expect(syncFileInfo(c.fdt, exported).status).toBe(1);
    expect(await wait(c, [h], null, 0)).toBe(ETIME);
  });

  it('dmabuf_sync_file - import-basic importing sets the payload; the sync_file is unaffected by reset', async () => {
    const c = ctx();
    const h = syncobjCreate(c.file);
    const tl = swSyncTimelineCreate(c.fdt);
    const fd = swSyncCreateFence(c.fdt, tl, 1);
    syncobjImportSyncFile(c.file, h, fd);
    expect(await wait(c, [h], null, 0)).toBe(ETIME);
    syncobjReset(c.file, [h]);
    swSyncInc(c.fdt, tl, 1);
    expect(syncFileInfo(c.fdt, fd).status).toBe(1);
    expect(await wait(c, [h], null, 0)).toBe(EINVAL);
  });

  // The dma-buf forms of igt dmabuf_sync_file are in dma-buf-file.test.ts.
});

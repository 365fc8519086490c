// DeviceHost lifecycle with a real device worker (the edu engine, test hooks on): capacity,
// close (drain) and destroy (fail), a worker that throws or exits mid-queue, a hung job, and the
// argument checks. Every wait has a deadline; every worker is terminated in afterEach.
import { afterEach, describe, expect, it } from 'vitest';
import { Latch, withDeadline } from '../../../common/deadline.ts';
import { Errno } from '../../../common/errno.ts';
import { CrashMode, DeviceOp } from '../../fabric/device-queue-layout.ts';
import { type DmaFence, dmaFenceGetStatus, dmaFenceWaitTimeout } from '../dma-buf/dma-fence.ts';
import { HostKernel } from '../kernel.ts';
import { type DeviceCompletion, deviceHostSpawn } from './device-host.ts';
import { checkDeviceCmd } from './device-host-types.ts';
import { EduOp, eduCopy, eduFill, eduSubmit } from './edu.ts';
import { eduHost, eduHostsTeardown, MS, START_MS } from './fixtures/edu-host.ts';

afterEach(eduHostsTeardown);

/** Resolve once every fence has signalled (each with its own deadline). */
async function settled(fences: DmaFence[], ms = MS): Promise<number[]> {
  for (const f of fences) expect(await dmaFenceWaitTimeout(f, ms)).toBeGreaterThan(0);
  return fences.map((f) => dmaFenceGetStatus(f));
}

describe('device-host', () => {
  it('device-host - a full queue refuses submit with EBUSY and posts nothing; space returns as jobs complete', async () => {
    const { edu } = eduHost({ queueDepth: 4 });
    await edu.host.ready(START_MS);
    let reaped = 0;
    const fences = [0, 1, 2, 3].map(() => edu.host.submit({ opcode: DeviceOp.NOP }, () => reaped++));
    expect(edu.host.space).toBe(0);
    expect(() => edu.host.submit({ opcode: DeviceOp.NOP })).toThrow(/EBUSY/);
    expect(() => edu.host.submitBatch([{ opcode: DeviceOp.NOP }])).toThrow(/EBUSY/);
    expect(edu.host.inFlight).toBe(4);
    expect(await settled(fences)).toEqual([1, 1, 1, 1]);
    // a fence can signal before the interrupt watcher reaps its completion; poll() reaps now
    // (the device wrote every completion before the seqnos that signalled the fences).
    edu.host.poll();
    expect(reaped).toBe(4);
    expect(edu.host.space).toBe(4);
    const again = edu.host.submitBatch([0, 1, 2, 3].map(() => ({ opcode: DeviceOp.NOP })));
    expect(await settled(again)).toEqual([1, 1, 1, 1]);
  });

  it('device-host - close drains in-flight jobs, the worker exits 0 and no thread is left', async () => {
    const { edu, iova, bytes } = eduHost();
    await edu.host.ready(START_MS);
    const latch = new Latch(50, MS, 'completions before close resolves');
    const statuses: number[] = [];
    for (let i = 0; i < 50; i++) {
      edu.host.submit({ opcode: EduOp.FILL, dst: iova + i, len: 1, arg0: i + 1 }, (c) => {
        statuses.push(c.status);
        latch.unlock();
      });
    }
    const closing = edu.host.close();
    expect(edu.host.close()).toBe(closing);
    expect(() => eduFill(edu, iova, 1, 1)).toThrow(/ENODEV/);
    await withDeadline(closing, START_MS, 'close');
    await latch.done;
    expect(statuses).toEqual(new Array(50).fill(0));
    expect(bytes[49]).toBe(50);
    const exit = await edu.host.exited;
    expect(exit).toEqual({ code: 0, crashed: false, error: null });
    expect(edu.host.worker.threadId).toBe(-1);
    expect(edu.host.alive).toBe(false);
    await withDeadline(edu.host.destroy(), MS, 'destroy after close');
  });

  for (const mode of [CrashMode.THROW, CrashMode.EXIT]) {
    const how = mode === CrashMode.THROW ? 'throws' : 'calls process.exit';
    it(`device-host - a worker that ${how} mid-queue fails its in-flight fences with -EIO, never hangs`, async () => {
      const { edu, iova } = eduHost({ testHooks: true });
      await edu.host.ready(START_MS);
      const done: DeviceCompletion[] = [];
      const before = eduCopy(edu, iova, iova + 4096, 4096);
      const jobs = [
        eduSubmit(edu, { opcode: DeviceOp.CRASH, arg0: mode, arg1: 42 }),
        eduCopy(edu, iova, iova + 8192, 4096),
        eduFill(edu, iova, 64, 1),
      ];
      for (const j of [before, ...jobs]) void j.done.then((c) => done.push(c));
      const statuses = await settled([before.fence, ...jobs.map((j) => j.fence)]);
      expect(statuses[0]).toBe(1); // completed before the crash: the device's own completion
      expect(statuses.slice(1)).toEqual([-Errno.EIO, -Errno.EIO, -Errno.EIO]);
      const exit = await withDeadline(edu.host.exited, MS, 'exit');
      expect(exit.crashed).toBe(true);
      if (mode === CrashMode.THROW) {
        expect(exit.code).toBe(1);
        expect(exit.error?.message).toMatch(/crash test hook/);
      } else {
        expect(exit).toMatchObject({ code: 42, error: null });
      }
      await withDeadline(Promise.all(jobs.map((j) => j.done)), MS, 'synthetic completions');
      expect(done.map((c) => [c.status, c.synthetic])).toEqual([
        [0, false],
        [-Errno.EIO, true],
        [-Errno.EIO, true],
        [-Errno.EIO, true],
      ]);
      expect(() => eduFill(edu, iova, 1, 1)).toThrow(/ENODEV/);
      expect(edu.host.worker.threadId).toBe(-1);
    });
  }

  it('device-host - destroy(err) fails in-flight work with err before it returns and joins the worker', async () => {
    const { edu, iova } = eduHost({ testHooks: true });
    await edu.host.ready(START_MS);
    const jobs = [
      eduSubmit(edu, { opcode: DeviceOp.STALL, arg0: 10_000 }),
      eduCopy(edu, iova, iova + 4096, 4096),
      eduFill(edu, iova, 64, 1),
    ];
    const destroying = edu.host.destroy(-Errno.ECANCELED);
    expect(edu.host.destroy(-Errno.EIO)).toBe(destroying);
    // synchronous: every fence is signalled with the error when destroy() returns.
    expect(jobs.map((j) => dmaFenceGetStatus(j.fence))).toEqual(new Array(3).fill(-Errno.ECANCELED));
    const done = await withDeadline(Promise.all(jobs.map((j) => j.done)), MS, 'completions');
    expect(done.every((c) => c.status === -Errno.ECANCELED && c.synthetic)).toBe(true);
    await withDeadline(destroying, MS, 'destroy joins the worker');
    // the aborted worker left by itself (STALL ends on ABORT): exit 0, and not counted as a crash.
    expect(await edu.host.exited).toMatchObject({ code: 0, crashed: false });
    expect(edu.host.worker.threadId).toBe(-1);
  });

  it('device-host - a job that never completes is failed with -ETIMEDOUT by the hang timer', async () => {
    const { edu } = eduHost({ testHooks: true, hangTimeoutMs: 200 });
    await edu.host.ready(START_MS);
    const hung = eduSubmit(edu, { opcode: DeviceOp.STALL, arg0: 60_000 });
    expect(await settled([hung.fence])).toEqual([-Errno.ETIMEDOUT]);
    expect((await withDeadline(hung.done, MS, 'completion')).status).toBe(-Errno.ETIMEDOUT);
    await withDeadline(edu.host.exited, MS, 'worker stopped after the hang');
  });

  it('device-host - a worker that fails to start fails queued jobs with -EIO and ready() rejects', async () => {
    const kernel = new HostKernel({ ramBytes: 1 << 20 });
    const dev = kernel.addDevice('broken0');
    const host = deviceHostSpawn({
      name: 'broken0',
      entry: new URL('./fixtures/no-such-worker.ts', import.meta.url),
      iommu: kernel.iommu,
      iommuId: dev.iommuId!,
    });
    try {
      const queued = host.submit({ opcode: DeviceOp.NOP });
      await expect(host.ready(START_MS)).rejects.toThrow(/ENODEV/);
      expect(await settled([queued], START_MS)).toEqual([-Errno.EIO]);
      const exit = await withDeadline(host.exited, MS, 'exit');
      expect(exit.crashed).toBe(true);
      expect(exit.error).not.toBeNull();
    } finally {
      await host.worker.terminate();
      kernel.close();
    }
  });

  it('device-host - options and descriptor fields are checked, naming the argument', () => {
    const kernel = new HostKernel({ ramBytes: 1 << 20 });
    try {
      const entry = new URL('../../devices/edu/edu-worker.ts', import.meta.url);
      const base = { name: 'x', entry, iommu: kernel.iommu, iommuId: 1 };
      expect(() => deviceHostSpawn({ ...base, name: '' })).toThrow(/opts.name/);
      expect(() => deviceHostSpawn({ ...base, queueDepth: 3 })).toThrow(/opts.queueDepth 3/);
      expect(() => deviceHostSpawn({ ...base, hangTimeoutMs: 0 })).toThrow(/opts.hangTimeoutMs/);
      expect(() => deviceHostSpawn({ ...base, iommuId: 0 })).toThrow(/opts.iommuId/);
      expect(() => checkDeviceCmd('t', { opcode: -1 })).toThrow(/cmd.opcode -1/);
      expect(() => checkDeviceCmd('t', { opcode: 1, len: 2 ** 32 })).toThrow(/cmd.len/);
      expect(() => checkDeviceCmd('t', { opcode: 1, src: 2 ** 53 })).toThrow(/cmd.src/);
      expect(() => checkDeviceCmd('t', { opcode: 1, arg1: 1.5 })).toThrow(/cmd.arg1/);
      expect(() => checkDeviceCmd('t', { opcode: 1, src: 2 ** 52, arg0: -1 })).not.toThrow();
    } finally {
      kernel.close();
    }
  });
});

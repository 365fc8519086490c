import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { spawnWorker } from '../../../common/worker.ts';
import { DmaStatus } from '../../fabric/dma.ts';
import { DmaAccess, IommuFaultReason } from '../../fabric/iommu-layout.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { MemRegionKind, memRegionCreate } from '../mm/region.ts';
import { BYTE_A, BYTE_B, CTL_WORDS, Cmd, Ctl } from './fixtures/dma-device-protocol.ts';
import { testHost } from './fixtures/host.ts';
import {
  type DmaCtxHandoff,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuDomainType,
  iommuAttachDevice,
  iommuDeviceDmaCtx,
  iommuDomainAlloc,
  iommuMap,
  iommuUnmap,
} from './iommu.ts';

const DEV = 0x0300;
const IOVA = 0x40000;
const RW = IOMMU_READ | IOMMU_WRITE;

/** Wait (async, with a deadline) until ctl[word] differs from `old`. */
async function waitWord(ctl: Int32Array, word: number, old: number, ms: number, what: string): Promise<void> {
  const r = Atomics.waitAsync(ctl, word, old, ms);
  const v = r.async ? await withDeadline(r.value, ms + 1000, what) : r.value;
  if (v === 'timed-out') throw new Error(`${what}: timed out after ${ms} ms`);
}

/** Run one fixture command and return its status. */
async function command(ctl: Int32Array, cmd: number, a0 = 0, a1 = 0, a2 = 0, ms = 10_000): Promise<number> {
  const ack = Atomics.load(ctl, Ctl.ACK_SEQ);
  ctl[Ctl.CMD] = cmd;
  ctl[Ctl.ARG0] = (a0 % 2 ** 32) | 0;
  ctl[Ctl.ARG_HI] = Math.floor(a0 / 2 ** 32);
  ctl[Ctl.ARG1] = a1;
  ctl[Ctl.ARG2] = a2;
  // publish the command after its arguments; the worker waits on CMD_SEQ.
  Atomics.add(ctl, Ctl.CMD_SEQ, 1);
  Atomics.notify(ctl, Ctl.CMD_SEQ);
  await waitWord(ctl, Ctl.ACK_SEQ, ack, ms, `device command ${cmd}`);
  return Atomics.load(ctl, Ctl.STATUS);
}

describe('iommu with a device worker', () => {
  let worker: Worker | undefined;
  let handoff: DmaCtxHandoff | undefined;
  afterEach(async () => {
    await worker?.terminate();
    handoff?.release();
    worker = undefined;
    handoff = undefined;
  });

  function start(host: ReturnType<typeof testHost>) {
    const ctl = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
    const out = new Uint8Array(new SharedArrayBuffer(1 << 16));
    handoff = iommuDeviceDmaCtx(host.iommu, DEV);
    worker = spawnWorker(new URL('./fixtures/dma-device.ts', import.meta.url), {
      workerData: { dma: handoff.desc, ctlSab: ctl.buffer, outSab: out.buffer },
      transferList: handoff.transferList,
    });
    return { ctl, out };
  }

  it('iommu - a worker DMAs through shared tables, faults are logged, late BAR windows reach it', async () => {
    const host = testHost(1 << 20);
    const dom = iommuDomainAlloc(host.iommu, IommuDomainType.UNMANAGED);
    iommuAttachDevice(dom, DEV);
    const { ctl, out } = start(host);
    const page = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    iommuMap(dom, IOVA, page, PAGE_SIZE, RW);

    expect(await command(ctl, Cmd.WRITE, IOVA + 8, 100, 0x11)).toBe(DmaStatus.OK);
    expect(host.ram.bytes[page + 8]).toBe(0x11);
    expect(host.ram.bytes[page + 107]).toBe(0x11);

    // read-only now. The test's main thread then blocks in Atomics.wait on purpose: the worker
    // has to translate, fault and log without the main thread's event loop running.
    expect(iommuUnmap(dom, IOVA, PAGE_SIZE)).toBe(PAGE_SIZE);
    iommuMap(dom, IOVA, page, PAGE_SIZE, IOMMU_READ);
    const ack = Atomics.load(ctl, Ctl.ACK_SEQ);
    ctl[Ctl.CMD] = Cmd.WRITE;
    ctl[Ctl.ARG0] = IOVA;
    ctl[Ctl.ARG_HI] = 0;
    ctl[Ctl.ARG1] = 16;
    ctl[Ctl.ARG2] = 0x22;
    Atomics.add(ctl, Ctl.CMD_SEQ, 1);
    Atomics.notify(ctl, Ctl.CMD_SEQ);
    expect(Atomics.wait(ctl, Ctl.ACK_SEQ, ack, 5_000)).not.toBe('timed-out');
    expect(Atomics.load(ctl, Ctl.STATUS)).toBe(DmaStatus.EFAULT);
    expect(host.iommu.faultLog.pending()).toBe(true);
    expect(host.iommu.faultLog.drain()).toEqual([
      {
        deviceId: DEV,
        domainId: dom.id,
        address: IOVA,
        access: DmaAccess.WRITE,
        bus: false,
        reason: IommuFaultReason.PERM,
        length: 16,
      },
    ]);
    expect(host.ram.bytes[page]).toBe(0);

    expect(await command(ctl, Cmd.READ, IOVA + 8, 4)).toBe(DmaStatus.OK);
    expect([...out.subarray(0, 4)]).toEqual([0x11, 0x11, 0x11, 0x11]);

    expect(iommuUnmap(dom, IOVA, PAGE_SIZE)).toBe(PAGE_SIZE);
    const faulted = host.iommu.faultLog.waitForFault(5_000);
    expect(await command(ctl, Cmd.READ, IOVA, 4)).toBe(DmaStatus.EFAULT);
    expect(await withDeadline(faulted, 6_000, 'fault record')).toBe('fault');
    expect(host.iommu.faultLog.drain()).toEqual([
      expect.objectContaining({
        address: IOVA,
        access: DmaAccess.READ,
        reason: IommuFaultReason.NOT_PRESENT,
      }),
    ]);

    // a BAR window added after the worker started: it learns it from its port on first use.
    const vram = memRegionCreate('vram-late', MemRegionKind.VRAM, 64 * PAGE_SIZE);
    const bar = host.physMap.addBar(vram);
    iommuMap(dom, 0x80000, bar.phys + 2 * PAGE_SIZE, PAGE_SIZE, RW);
    expect(await command(ctl, Cmd.WRITE, 0x80000, 32, 0x33)).toBe(DmaStatus.OK);
    expect(vram.bytes[2 * PAGE_SIZE + 31]).toBe(0x33);
    // P2P by raw bus address into the same BAR; host RAM is not reachable that way.
    expect(await command(ctl, Cmd.WRITE_BUS, bar.phys + bar.busOffset + 5 * PAGE_SIZE, 8, 0x44)).toBe(
      DmaStatus.OK,
    );
    expect(vram.bytes[5 * PAGE_SIZE]).toBe(0x44);
    expect(await command(ctl, Cmd.WRITE_BUS, page, 8, 0x55)).toBe(DmaStatus.EIO);
    expect(host.iommu.faultLog.drain()).toEqual([
      expect.objectContaining({
        bus: true,
        domainId: 0,
        address: page,
        reason: IommuFaultReason.UNSUPPORTED_REQUEST,
      }),
    ]);
  });

  it('iommu - concurrent map/unmap never gives a worker a torn translation and every fault is counted', async () => {
    const host = testHost(1 << 20, 64);
    const dom = iommuDomainAlloc(host.iommu, IommuDomainType.UNMANAGED);
    iommuAttachDevice(dom, DEV);
    const pageA = host.pages.allocContigPages(1).pfn * PAGE_SIZE;
    host.ram.bytes.fill(BYTE_A, pageA, pageA + PAGE_SIZE);
    // page B sits above 2^45: its PTE differs from A's in both words.
    const vram = memRegionCreate('vram-b', MemRegionKind.VRAM, 16 * PAGE_SIZE);
    vram.bytes.fill(BYTE_B);
    const pageB = host.physMap.addBar(vram).phys + 3 * PAGE_SIZE;
    iommuMap(dom, IOVA, pageA, PAGE_SIZE, IOMMU_READ);
    const { ctl } = start(host);
    expect(await command(ctl, Cmd.STRESS, IOVA)).toBe(0);

    const log = host.iommu.faultLog;
    const drained: ReturnType<typeof log.drain> = [];
    let step = 0; // even: mapped -> unmap; odd: unmapped -> map A or B
    const toggle = () => {
      const i = step++;
      if (i % 2 === 0) iommuUnmap(dom, IOVA, PAGE_SIZE);
      else iommuMap(dom, IOVA, i % 4 === 1 ? pageB : pageA, PAGE_SIZE, IOMMU_READ);
    };
    for (let i = 0; i < 40; i++) {
      // odd rounds: a burst of back-to-back remaps racing the worker's walks; even: one step.
      if (i % 2 === 1) for (let j = 0; j < 400; j++) toggle();
      toggle();
      // let the worker make a few passes over this state (no sleeps: wait on its ITER word).
      const target = Atomics.load(ctl, Ctl.ITER) + 3;
      for (let it = Atomics.load(ctl, Ctl.ITER); it < target; it = Atomics.load(ctl, Ctl.ITER)) {
        await waitWord(ctl, Ctl.ITER, it, 5_000, 'worker progress');
      }
      if (i % 8 === 0) drained.push(...log.drain());
    }
    const done = Atomics.load(ctl, Ctl.DONE);
    Atomics.store(ctl, Ctl.STOP, 1);
    if (done === 0) await waitWord(ctl, Ctl.DONE, 0, 5_000, 'stress stop');
    drained.push(...log.drain());

    expect(Atomics.load(ctl, Ctl.TORN)).toBe(0);
    expect(Atomics.load(ctl, Ctl.OK_A)).toBeGreaterThan(0);
    expect(Atomics.load(ctl, Ctl.OK_B)).toBeGreaterThan(0);
    const faults = Atomics.load(ctl, Ctl.FAULTS);
    expect(faults).toBeGreaterThan(0);
    expect(drained.length + log.overflow).toBe(faults);
    expect(drained.every((f) => f.reason === IommuFaultReason.NOT_PRESENT && f.address === IOVA)).toBe(true);
    expect(
      drained.every((f) => f.deviceId === DEV && f.domainId === dom.id && f.access === DmaAccess.READ),
    ).toBe(true);
  });
});

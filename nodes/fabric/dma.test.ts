import { describe, expect, it } from 'vitest';
import {
  DmaCtx,
  type DmaCtxDescriptor,
  dmaFill,
  DmaOp,
  dmaRead,
  dmaReadBus,
  DmaStatus,
  dmaWrite,
  dmaWriteBus,
} from './dma.ts';
import { faultRingCreate, faultRingPop } from './iommu-fault-ring.ts';
import { DEV_CTX_WORDS, IommuFaultReason } from './iommu-layout.ts';
import { PAGE_SIZE } from './page.ts';
import { MemRegionKind, PHYS_MAP_CTL_BYTES, PhysMapCtl, PhysWindowKind } from './phys-map-layout.ts';

const BAR_BUS = 2 ** 45;

/** A device ctx over hand-built shared memory: 4 pages of RAM at 0, a 2-page BAR at 2^45. */
function rig() {
  const ctl = new SharedArrayBuffer(PHYS_MAP_CTL_BYTES);
  Atomics.store(new Int32Array(ctl), PhysMapCtl.GEN, 1);
  const ram = {
    id: 1,
    name: 'ram',
    kind: MemRegionKind.RAM,
    size: 4 * PAGE_SIZE,
    sab: new SharedArrayBuffer(4 * PAGE_SIZE),
  };
  const bar = {
    id: 2,
    name: 'bar',
    kind: MemRegionKind.BAR,
    size: 4 * PAGE_SIZE,
    sab: new SharedArrayBuffer(4 * PAGE_SIZE),
  };
  const faultRing = faultRingCreate(8);
  const desc: DmaCtxDescriptor = {
    deviceId: 9,
    devCtx: new SharedArrayBuffer(DEV_CTX_WORDS * 4),
    phys: {
      ctl,
      gen: 1,
      regions: [ram, bar],
      windows: [
        {
          name: 'ram',
          kind: PhysWindowKind.RAM,
          phys: 0,
          size: ram.size,
          busOffset: 0,
          regionId: 1,
          regionOffset: 0,
        },
        // the window exposes BAR region bytes [PAGE_SIZE, 3 * PAGE_SIZE)
        {
          name: 'bar',
          kind: PhysWindowKind.BAR,
          phys: BAR_BUS,
          size: 2 * PAGE_SIZE,
          busOffset: 0,
          regionId: 2,
          regionOffset: PAGE_SIZE,
        },
      ],
    },
    domains: [],
    faultRing,
    port: null,
  };
  const ring = new Int32Array(faultRing);
  const drain = () => {
    const out = [];
    for (let r = faultRingPop(ring); r !== null; r = faultRingPop(ring)) out.push(r);
    return out;
  };
  return {
    ctx: new DmaCtx(structuredClone(desc)),
    ram: new Uint8Array(ram.sab),
    bar: new Uint8Array(bar.sab),
    drain,
  };
}

describe('dma', () => {
  it('dma - bus-address P2P writes and reads reach a BAR window at its region offset', () => {
    const { ctx, bar, drain } = rig();
    const src = Uint8Array.from({ length: 300 }, (_, i) => i);
    expect(dmaWriteBus(ctx, BAR_BUS + PAGE_SIZE - 100, src, 0, 300)).toBe(DmaStatus.OK);
    expect(bar.subarray(2 * PAGE_SIZE - 100, 2 * PAGE_SIZE + 200)).toEqual(src);
    const dst = new Uint8Array(310);
    expect(dmaReadBus(ctx, BAR_BUS + PAGE_SIZE - 100, 300, dst, 10)).toBe(DmaStatus.OK);
    expect(dst.subarray(10)).toEqual(src);
    expect(drain()).toEqual([]);
  });

  it('dma - a bus access running off the BAR window lands its first part, then faults as UR', () => {
    const { ctx, bar, drain } = rig();
    const src = new Uint8Array(64).fill(3);
    expect(dmaWriteBus(ctx, BAR_BUS + 2 * PAGE_SIZE - 16, src, 0, 64)).toBe(DmaStatus.EIO);
    expect(bar[3 * PAGE_SIZE - 1]).toBe(3);
    expect(bar[3 * PAGE_SIZE]).toBe(0);
    expect(drain()).toEqual([
      {
        deviceId: 9,
        domainId: 0,
        address: BAR_BUS + 2 * PAGE_SIZE,
        access: 1,
        bus: true,
        reason: IommuFaultReason.UNSUPPORTED_REQUEST,
        length: 48,
      },
    ]);
  });

  it('dma - host RAM is not reachable by raw bus address (no IOMMU bypass)', () => {
    const { ctx, ram, drain } = rig();
    expect(dmaWriteBus(ctx, 0x100, new Uint8Array(4).fill(1), 0, 4)).toBe(DmaStatus.EIO);
    expect(ram[0x100]).toBe(0);
    expect(dmaReadBus(ctx, 2 ** 50, 4, new Uint8Array(4))).toBe(DmaStatus.EIO);
    expect(drain().map((f) => [f.address, f.reason, f.access])).toEqual([
      [0x100, IommuFaultReason.UNSUPPORTED_REQUEST, 1],
      [2 ** 50, IommuFaultReason.UNSUPPORTED_REQUEST, 0],
    ]);
    expect(ctx.faultCount).toBe(2);
  });

  it('dma - an IOVA access with no domain attached faults BLOCKED and moves no data', () => {
    const { ctx, ram, drain } = rig();
    expect(dmaFill(ctx, 0x10, 7, 4)).toBe(DmaStatus.EFAULT);
    expect(dmaRead(ctx, 0x10, 4, new Uint8Array(4))).toBe(DmaStatus.EFAULT);
    expect(ram[0x10]).toBe(0);
    expect(drain().map((f) => [f.reason, f.bus, f.domainId])).toEqual([
      [IommuFaultReason.BLOCKED, false, 0],
      [IommuFaultReason.BLOCKED, false, 0],
    ]);
  });

  it('dma - bad arguments return EINVAL, never throw and record nothing', () => {
    const { ctx, drain } = rig();
    const buf = new Uint8Array(16);
    expect(dmaWrite(ctx, 0, buf, 0, -1)).toBe(DmaStatus.EINVAL);
    expect(dmaWrite(ctx, 0.5, buf, 0, 1)).toBe(DmaStatus.EINVAL);
    expect(dmaWrite(ctx, 2 ** 52 - 1, buf, 0, 2)).toBe(DmaStatus.EINVAL);
    expect(dmaWrite(ctx, 0, buf, 8, 9)).toBe(DmaStatus.EINVAL);
    expect(dmaRead(ctx, 0, 4, buf, -1)).toBe(DmaStatus.EINVAL);
    expect(dmaReadBus(ctx, BAR_BUS, 17, buf)).toBe(DmaStatus.EINVAL);
    expect(dmaFill(ctx, Number.NaN, 0, 1)).toBe(DmaStatus.EINVAL);
    expect(dmaWrite(ctx, 0, buf, 0, 0)).toBe(DmaStatus.OK); // zero length: nothing to route
    expect(drain()).toEqual([]);
  });

  it('dma - the routing hook sees each run with its address and target, and can veto it', () => {
    const { ctx, bar } = rig();
    const seen: [number, number, number, number, boolean][] = [];
    ctx.hook = (_c, op, addr, phys, len, bus) => {
      seen.push([op, addr, phys, len, bus]);
      return addr >= BAR_BUS + PAGE_SIZE ? -1 : 0;
    };
    expect(dmaWriteBus(ctx, BAR_BUS + 8, new Uint8Array(8).fill(2), 0, 8)).toBe(0);
    expect(dmaWriteBus(ctx, BAR_BUS + PAGE_SIZE, new Uint8Array(8).fill(2), 0, 8)).toBe(-1);
    expect(seen).toEqual([
      [DmaOp.WRITE, BAR_BUS + 8, BAR_BUS + 8, 8, true],
      [DmaOp.WRITE, BAR_BUS + PAGE_SIZE, BAR_BUS + PAGE_SIZE, 8, true],
    ]);
    expect(bar[PAGE_SIZE + 8]).toBe(2);
    expect(bar[2 * PAGE_SIZE]).toBe(0);
  });
});

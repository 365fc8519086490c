import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { DmaCtx, dmaCopy, DmaStatus } from '../../fabric/dma.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import {
  physArenaAlloc,
  physArenaCopy,
  physArenaCreate,
  physArenaCtlAlloc,
  physArenaCtlFree,
} from '../../fabric/phys-arena.ts';
import { memRegionBytes } from '../../fabric/phys-map-layout.ts';
import { Iommu, iommuDeviceDmaCtx } from '../iommu/iommu.ts';
import { HostKernel } from '../kernel.ts';
import { PhysMap } from './phys-map.ts';
import { MemRegionKind, memRegionCreate } from './region.ts';

/** Two BARs in an arena with room for just them, one with a SAB of its own; a device ctx over them. */
function rig() {
  const arena = physArenaCreate(2 * 65536);
  const physMap = new PhysMap();
  const a = memRegionCreate('a', MemRegionKind.VRAM, 16 * PAGE_SIZE, arena);
  const b = memRegionCreate('b', MemRegionKind.VRAM, 16 * PAGE_SIZE, arena);
  const own = memRegionCreate('own', MemRegionKind.VRAM, 16 * PAGE_SIZE, arena);
  const wa = physMap.addBar(a);
  const wb = physMap.addBar(b);
  const wo = physMap.addBar(own);
  const iommu = new Iommu(physMap);
  const h = iommuDeviceDmaCtx(iommu, 1);
  const ctx = new DmaCtx(h.desc);
  return {
    a,
    b,
    own,
    wa,
    wb,
    wo,
    ctx,
    close() {
      ctx.close();
      h.release();
    },
  };
}

function pattern(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 31 + seed) & 0xff;
  return p;
}

describe('phys-arena', () => {
  it('phys-arena - a host kernel places its RAM and device memory side by side in one zeroed arena', () => {
    const k = new HostKernel({ name: 'arena-host', ramBytes: 1 << 20 });
    try {
      const { region: vram } = k.addDeviceMemory('vram', 4 * PAGE_SIZE);
      expect(k.arena).not.toBeNull();
      expect(k.ram.arena).toBe(k.arena);
      expect(vram.arena).toBe(k.arena);
      expect(vram.sab.byteLength).toBeGreaterThanOrEqual(vram.offset + vram.size);
      expect(vram.offset).toBeGreaterThanOrEqual(k.ram.offset + k.ram.size);
      expect(vram.bytes.length).toBe(4 * PAGE_SIZE);
      expect(vram.bytes.every((x) => x === 0)).toBe(true);
      // the descriptor a worker receives views exactly the region's bytes
      const d = structuredClone(vram.descriptor());
      memRegionBytes(d)[5] = 0x42;
      expect(vram.bytes[5]).toBe(0x42);
      expect(k.ram.bytes.every((x) => x === 0)).toBe(true);
    } finally {
      k.close();
    }
  });

  it('phys-arena - DMA between two arena regions lands exactly the bytes asked, at any offset and length', () => {
    const r = rig();
    try {
      expect(r.a.arena).not.toBeNull();
      const pv = r.ctx.phys;
      const ia = pv.findBus(r.wa.phys);
      const ib = pv.findBus(r.wb.phys);
      expect(pv.arena[ia]).not.toBeNull();
      expect(pv.arena[ia]).toBe(pv.arena[ib]);
      for (const [so, dOff, n] of [
        [0, 0, 17],
        [3, 4097, 5000],
        [PAGE_SIZE - 1, 7, 3 * PAGE_SIZE + 1],
        [0, 0, 16 * PAGE_SIZE],
      ]) {
        r.a.bytes.set(pattern(16 * PAGE_SIZE, so));
        r.b.bytes.fill(0xee);
        expect(dmaCopy(r.ctx, r.wa.phys + so, true, r.ctx, r.wb.phys + dOff, true, n)).toBe(DmaStatus.OK);
        const want = pattern(16 * PAGE_SIZE, so).subarray(so, so + n);
        expect(Buffer.compare(r.b.bytes.subarray(dOff, dOff + n), want)).toBe(0);
        // not a byte before or after
        if (dOff > 0) expect(r.b.bytes[dOff - 1]).toBe(0xee);
        if (dOff + n < r.b.size) expect(r.b.bytes[dOff + n]).toBe(0xee);
      }
      // an overlapping copy inside one region behaves like memmove, either way round
      r.a.bytes.set(pattern(16 * PAGE_SIZE, 9));
      expect(dmaCopy(r.ctx, r.wa.phys, true, r.ctx, r.wa.phys + 100, true, 1000)).toBe(DmaStatus.OK);
      expect(
        Buffer.compare(r.a.bytes.subarray(100, 1100), pattern(16 * PAGE_SIZE, 9).subarray(0, 1000)),
      ).toBe(0);
      r.a.bytes.set(pattern(16 * PAGE_SIZE, 4));
      expect(dmaCopy(r.ctx, r.wa.phys + 100, true, r.ctx, r.wa.phys, true, 1000)).toBe(DmaStatus.OK);
      const moved = pattern(16 * PAGE_SIZE, 4).subarray(100, 1100);
      expect(Buffer.compare(r.a.bytes.subarray(0, 1000), moved)).toBe(0);
    } finally {
      r.close();
    }
  });

  it('phys-arena - the copy cache does not keep a dropped arena alive', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const make = () => {
      const arena = physArenaCreate(65536)!;
      expect(physArenaAlloc(arena, 65536)).not.toBeNull();
      physArenaCopy(arena)(0, 8, 8); // cached for this thread
      return new WeakRef(arena.memory);
    };
    const ref = make();
    // a WeakRef's target lives to the end of the job that made or deref()ed it: collect in later jobs
    const tick = () => new Promise<void>((r) => setImmediate(r));
    await tick();
    gc();
    await tick();
    gc();
    await tick();
    expect(ref.deref()).toBeUndefined();
  });

  it('phys-arena - a region the arena has no room for gets its own SAB, and DMA to and from it still lands', () => {
    const r = rig();
    try {
      expect(r.own.arena).toBeNull();
      expect(r.own.offset).toBe(0);
      expect(r.own.sab).not.toBe(r.a.sab);
      const pv = r.ctx.phys;
      expect(pv.arena[pv.findBus(r.wo.phys)]).toBeNull();
      r.a.bytes.set(pattern(16 * PAGE_SIZE, 1));
      expect(dmaCopy(r.ctx, r.wa.phys + 10, true, r.ctx, r.wo.phys + 20, true, 9000)).toBe(DmaStatus.OK);
      expect(Buffer.compare(r.own.bytes.subarray(20, 9020), r.a.bytes.subarray(10, 9010))).toBe(0);
      r.own.bytes.set(pattern(16 * PAGE_SIZE, 2));
      expect(dmaCopy(r.ctx, r.wo.phys, true, r.ctx, r.wb.phys + 1, true, 4096)).toBe(DmaStatus.OK);
      expect(Buffer.compare(r.b.bytes.subarray(1, 4097), r.own.bytes.subarray(0, 4096))).toBe(0);
    } finally {
      r.close();
    }
  });

  it('phys-arena - control blocks are 64-byte aligned windows, reused zeroed by exact size after a free, null when the arena is full', () => {
    const arena = physArenaCreate(2 * 65536)!;
    const a = physArenaCtlAlloc(arena, 100)!;
    const b = physArenaCtlAlloc(arena, 100)!;
    expect([a.byteOffset % 64, b.byteOffset % 64, a.byteLength]).toEqual([0, 0, 128]);
    expect(b.byteOffset).toBeGreaterThanOrEqual(a.byteOffset + 128);
    a.fill(7);
    physArenaCtlFree(arena, a);
    physArenaCtlFree(arena, a); // a double free is ignored: the block is handed out once
    const c = physArenaCtlAlloc(arena, 128)!;
    expect(c.byteOffset).toBe(a.byteOffset);
    expect(physArenaCtlAlloc(arena, 128)!.byteOffset).toBeGreaterThan(b.byteOffset);
    expect(c.every((w) => w === 0)).toBe(true);
    // more than the arena's two 64 KiB pages: none; what fits the chunk's rest goes there; the
    // next chunk is the last page; after that the arena is full.
    expect(physArenaCtlAlloc(arena, 2 * 65536)).toBeNull();
    expect(physArenaCtlAlloc(arena, 65000)!.byteOffset).toBe(384);
    expect(physArenaCtlAlloc(arena, 65536)!.byteOffset).toBe(65536);
    expect(physArenaCtlAlloc(arena, 64)).toBeNull();
  });
});

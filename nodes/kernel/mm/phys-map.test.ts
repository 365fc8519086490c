import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { PhysMapView } from '../../fabric/phys-map.ts';
import { HostLayout, memRegionBytes } from '../../fabric/phys-map-layout.ts';
import { PhysMap, PhysWindowKind } from './phys-map.ts';
import { MemRegionKind, memRegionCreate } from './region.ts';
import { expectErr } from '../../../test/support/expect-errno.ts';

function host() {
  const map = new PhysMap();
  const ram = memRegionCreate('ram0', MemRegionKind.RAM, 64 * PAGE_SIZE);
  const vram = memRegionCreate('vram0', MemRegionKind.VRAM, 32 * PAGE_SIZE);
  map.addRam(ram);
  return { map, ram, vram };
}

describe('phys-map', () => {
  it('phys-map - RAM and BAR windows resolve to (region, offset)', () => {
    const { map, ram, vram } = host();
    // a small BAR: only the first 16 pages of VRAM are visible, from page 4 on.
    const bar = map.addBar(vram, { name: 'gpu0-bar2', size: 16 * PAGE_SIZE, regionOffset: 4 * PAGE_SIZE });
    expect(bar.phys).toBe(HostLayout.MMIO_BASE);
    expect(map.resolve(0x1234)).toMatchObject({ offset: 0x1234, remaining: 64 * PAGE_SIZE - 0x1234 });
    expect(map.resolve(0x1234)?.region.id).toBe(ram.id);
    const r = map.resolve(bar.phys + 0x2010);
    expect(r?.region.name).toBe('vram0');
    expect(r?.offset).toBe(4 * PAGE_SIZE + 0x2010);
    expect(map.resolve(64 * PAGE_SIZE)).toBeNull(); // just past RAM
    expect(map.resolve(bar.phys + 16 * PAGE_SIZE)).toBeNull(); // past the BAR window
    expect(map.regionToPhys(vram, 4 * PAGE_SIZE + 8)).toBe(bar.phys + 8);
    expect(map.regionToPhys(vram, 0)).toBeNull(); // not exposed by the small BAR
    expect(map.generation).toBe(2);
  });

  it('phys-map - bus addresses add the window busOffset', () => {
    const { map, vram } = host();
    const w = map.addWindow({ kind: PhysWindowKind.BAR, phys: 2 ** 46, region: vram, busOffset: -(2 ** 45) });
    expect(map.resolveBus(2 ** 45 + 0x10)?.offset).toBe(0x10);
    expect(map.resolveBus(2 ** 46)).toBeNull();
    expect(map.resolve(w.phys + 0x10)?.offset).toBe(0x10);
  });

  it('phys-map - overlapping windows are EEXIST naming the window in the way', () => {
    const { map, vram } = host();
    expectErr(
      () => map.addWindow({ kind: PhysWindowKind.BAR, phys: 60 * PAGE_SIZE, region: vram }),
      'EEXIST',
      /overlaps window ram0/,
    );
    map.addWindow({ kind: PhysWindowKind.BAR, phys: 2 ** 45, region: vram, name: 'b0' });
    expectErr(
      () => map.addWindow({ kind: PhysWindowKind.BAR, phys: 2 ** 46, region: vram, busOffset: -(2 ** 45) }),
      'EEXIST',
      /overlaps window b0/,
    );
  });

  it('phys-map - bad window arguments are EINVAL naming the argument', () => {
    const { map, vram } = host();
    const bar = (o: object) => () =>
      map.addWindow({ kind: PhysWindowKind.BAR, phys: 2 ** 45, region: vram, ...o });
    expectErr(bar({ phys: 2 ** 45 + 1 }), 'EINVAL', /phys \d+ must be page aligned/);
    expectErr(bar({ phys: 2 ** 52 }), 'EINVAL', /phys/);
    expectErr(bar({ size: 100 }), 'EINVAL', /size 100 must be a positive page multiple/);
    expectErr(bar({ regionOffset: 10 }), 'EINVAL', /regionOffset 10 must be a page-aligned offset/);
    expectErr(
      bar({ regionOffset: PAGE_SIZE, size: 32 * PAGE_SIZE }),
      'EINVAL',
      /regionOffset \+ size exceeds region vram0/,
    );
    expectErr(bar({ busOffset: 3 }), 'EINVAL', /busOffset 3/);
    expectErr(bar({ kind: 5 }), 'EINVAL', /kind must be a PhysWindowKind/);
    expectErr(() => map.removeWindow(0x5000), 'ENOENT', /no window starts at 0x5000/);
  });

  it('phys-map - a view built from a cloned descriptor resolves like the kernel, without it', () => {
    const { map, vram } = host();
    const bar = map.addBar(vram);
    const desc = structuredClone(map.descriptor());
    const view = new PhysMapView(desc);
    vram.bytes[0x3008] = 0x7e; // the SAB is shared, not copied
    const r = view.resolve(bar.phys + 0x3008)!;
    expect(memRegionBytes(r.region)[r.offset]).toBe(0x7e);
    expect(view.regionBytes(vram.id)?.[0x3008]).toBe(0x7e);
    expect(view.findPhys(2 ** 44)).toBe(-1);
    expect(view.stale).toBe(false);
  });

  it('phys-map - a BAR added later reaches a subscribed view via its port and generation word', () => {
    const { map, vram } = host();
    const { port1, port2 } = new MessageChannel();
    try {
      const view = new PhysMapView(map.descriptor(), port2);
      map.subscribe(port1);
      const bar = map.addBar(vram);
      expect(view.stale).toBe(true); // one Atomics.load tells the reader
      expect(view.resolve(bar.phys)).toBeNull();
      expect(view.sync()).toBe(true); // receiveMessageOnPort: no main-thread round trip
      expect(view.stale).toBe(false);
      expect(view.resolve(bar.phys)?.region.name).toBe('vram0');
      map.removeWindow(bar.phys);
      expect(view.sync()).toBe(true);
      expect(view.resolve(bar.phys)).toBeNull();
      map.unsubscribe(port1);
      map.addBar(memRegionCreate('v2', MemRegionKind.BAR, PAGE_SIZE));
      expect(view.sync()).toBe(false); // unsubscribed: nothing queued, the view stays stale
      expect(view.stale).toBe(true);
    } finally {
      port1.close();
      port2.close();
    }
  });
});

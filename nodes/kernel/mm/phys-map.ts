/**
 * PhysMap: the kernel's authoritative physical/bus address map of one host (RAM and BAR
 * windows over MemRegions), and the publisher of its updates to device workers.
 *
 * Overview: the kernel adds windows (host boot: RAM; PCI/GPU/vfio drivers: BARs, also later at
 * run time). Each change makes a new generation. Workers hold a PhysMapView built from
 * descriptor() and subscribe a MessagePort (normally the device's DMA ctx port): publish()
 * posts the new snapshot to every subscribed port first, then stores the generation word, so a
 * worker that sees the new generation drains its port synchronously (phys-map-layout.ts).
 *
 * Locking convention: kernel (main thread) only; there is no lock because nothing else writes.
 * Addresses are safe integers below 2^52 (fabric/page.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import { err } from '../../../common/errno.ts';
import { hex, isAddrRange, isPageAligned, PAGE_SIZE } from '../../fabric/page.ts';
import { PhysMapView, type PhysResolution } from '../../fabric/phys-map.ts';
import {
  HostLayout,
  PHYS_MAP_CTL_BYTES,
  TPH_STATS_BYTES,
  PhysMapCtl,
  type PhysMapDescriptor,
  type PhysMapUpdate,
  type PhysWindowDescriptor,
  PhysWindowKind,
} from '../../fabric/phys-map-layout.ts';
import { MemRegion } from './region.ts';

export { PhysWindowKind } from '../../fabric/phys-map-layout.ts';
export type { PhysResolution } from '../../fabric/phys-map.ts';

/** Arguments of PhysMap.addWindow(). */
export interface PhysWindowSpec {
  name?: string;
  kind: PhysWindowKind;
  phys: number;
  region: MemRegion;
  /** Default: the rest of the region from regionOffset. */
  size?: number;
  regionOffset?: number;
  busOffset?: number;
  /** Hint statistics block (fabric/phys-map-layout.ts DOC: TPH hints); absent: not counted. */
  tphStats?: SharedArrayBuffer;
}

export class PhysMap {
  readonly ctlSab = new SharedArrayBuffer(PHYS_MAP_CTL_BYTES);
  private readonly ctl = new Int32Array(this.ctlSab);
  private gen = 0;
  private readonly regions = new Map<number, MemRegion>();
  private windows: PhysWindowDescriptor[] = [];
  private readonly ports = new Set<MessagePort>();
  private readonly listeners: (() => void)[] = [];
  private ramEnd: number = HostLayout.RAM_BASE;
  private mmioNext: number = HostLayout.MMIO_BASE;
  /** The kernel's own resolver, always current. */
  readonly view: PhysMapView;

  constructor() {
    this.view = new PhysMapView(this.descriptor());
  }

  /** Current generation (0 = empty map). */
  get generation(): number {
    return this.gen;
  }

  /**
   * Place [regionOffset, regionOffset + size) of `region` at physical `phys`.
   * Called by: host boot, PCI/GPU/vfio drivers. Thread: kernel.
   * Throws: EINVAL naming phys/size/regionOffset/busOffset/kind; EEXIST naming the window a
   * new one overlaps (physical or bus range).
   */
  addWindow(spec: PhysWindowSpec): PhysWindowDescriptor {
    if (!(spec?.region instanceof MemRegion))
      throw err('EINVAL', 'PhysMap.addWindow: spec.region is not a MemRegion');
    const { region, phys, kind } = spec;
    const regionOffset = spec.regionOffset ?? 0;
    const size = spec.size ?? region.size - regionOffset;
    const busOffset = spec.busOffset ?? 0;
    const name = spec.name ?? region.name;
    if (kind !== PhysWindowKind.RAM && kind !== PhysWindowKind.BAR) {
      throw err('EINVAL', `PhysMap.addWindow(${name}): kind must be a PhysWindowKind, got ${String(kind)}`);
    }
    if (!Number.isInteger(regionOffset) || regionOffset < 0 || regionOffset % PAGE_SIZE !== 0) {
      throw err(
        'EINVAL',
        `PhysMap.addWindow(${name}): regionOffset ${regionOffset} must be a page-aligned offset`,
      );
    }
    if (!isPageAligned(phys))
      throw err('EINVAL', `PhysMap.addWindow(${name}): phys ${phys} must be page aligned, < 2^52`);
    if (!Number.isInteger(size) || size <= 0 || size % PAGE_SIZE !== 0 || !isAddrRange(phys, size)) {
      throw err(
        'EINVAL',
        `PhysMap.addWindow(${name}): size ${size} must be a positive page multiple ending below 2^52`,
      );
    }
    if (regionOffset + size > region.size) {
      throw err(
        'EINVAL',
        `PhysMap.addWindow(${name}): regionOffset + size exceeds region ${region.name} (${hex(region.size)})`,
      );
    }
    if (!Number.isInteger(busOffset) || busOffset % PAGE_SIZE !== 0 || !isAddrRange(phys + busOffset, size)) {
      throw err(
        'EINVAL',
        `PhysMap.addWindow(${name}): busOffset ${busOffset} must keep the bus range page aligned, < 2^52`,
      );
    }
    const tphStats = spec.tphStats;
    if (tphStats !== undefined) checkTphStats(`PhysMap.addWindow(${name})`, tphStats);
    for (const w of this.windows) {
      const physHit = phys < w.phys + w.size && w.phys < phys + size;
      const busHit =
        phys + busOffset < w.phys + w.busOffset + w.size && w.phys + w.busOffset < phys + busOffset + size;
      if (physHit || busHit) {
        throw err(
          'EEXIST',
          `PhysMap.addWindow(${name}): [${hex(phys)}, +${hex(size)}) overlaps window ${w.name}`,
        );
      }
    }
    const win: PhysWindowDescriptor = {
      name,
      kind,
      phys,
      size,
      busOffset,
      regionId: region.id,
      regionOffset,
    };
    if (tphStats !== undefined) win.tphStats = tphStats;
    this.regions.set(region.id, region);
    this.windows = [...this.windows, win];
    if (kind === PhysWindowKind.RAM) this.ramEnd = Math.max(this.ramEnd, phys + size);
    this.publish();
    return win;
  }

  /** Place all of `region` as RAM right after the RAM added so far. Returns its window. */
  addRam(region: MemRegion): PhysWindowDescriptor {
    return this.addWindow({ kind: PhysWindowKind.RAM, phys: this.ramEnd, region });
  }

  /**
   * Place a BAR window over `region` (default: all of it) at a naturally aligned address in the
   * MMIO range. This is the emulator's resource assignment; PCI may pass explicit addresses to
   * addWindow() instead. Throws: as addWindow, and ENOSPC when the MMIO range is exhausted.
   */
  addBar(
    region: MemRegion,
    opts: { name?: string; size?: number; regionOffset?: number } = {},
  ): PhysWindowDescriptor {
    if (!(region instanceof MemRegion)) throw err('EINVAL', 'PhysMap.addBar: region is not a MemRegion');
    const size = opts.size ?? region.size - (opts.regionOffset ?? 0);
    if (!Number.isInteger(size) || size <= 0)
      throw err('EINVAL', `PhysMap.addBar(${region.name}): size ${size} invalid`);
    const align = 2 ** Math.ceil(Math.log2(size));
    let phys = Math.ceil(this.mmioNext / align) * align;
    while (this.windows.some((w) => phys < w.phys + w.size && w.phys < phys + size)) phys += align;
    if (phys + size > HostLayout.MMIO_END) {
      throw err('ENOSPC', `PhysMap.addBar(${region.name}): no room for ${hex(size)} bytes in the MMIO range`);
    }
    const win = this.addWindow({ ...opts, kind: PhysWindowKind.BAR, phys, region, size });
    this.mmioNext = phys + size;
    return win;
  }

  /**
   * Remove the window that starts at `phys` (BAR disabled, device removed). Accesses in flight
   * on a worker that has not synced yet may still land (like posted writes).
   * Throws: ENOENT naming phys.
   */
  removeWindow(phys: number): void {
    const i = this.windows.findIndex((w) => w.phys === phys);
    if (i < 0) throw err('ENOENT', `PhysMap.removeWindow: no window starts at ${hex(phys)}`);
    this.windows = this.windows.filter((_, j) => j !== i);
    this.publish();
  }

  /**
   * Give the window that starts at `phys` a hint statistics block (null: take it away), so the
   * routing point counts the runs that land in it. Publishes a new generation.
   * Called by: drivers of TPH completers (vfio-pci). Throws: ENOENT naming phys; EINVAL (not a
   * statistics block).
   */
  setWindowTphStats(phys: number, tphStats: SharedArrayBuffer | null): void {
    const fn = 'PhysMap.setWindowTphStats';
    const i = this.windows.findIndex((w) => w.phys === phys);
    if (i < 0) throw err('ENOENT', `${fn}: no window starts at ${hex(phys)}`);
    if (tphStats !== null) checkTphStats(fn, tphStats);
    const { tphStats: _old, ...rest } = this.windows[i];
    const win: PhysWindowDescriptor = tphStats === null ? rest : { ...rest, tphStats };
    this.windows = this.windows.map((w, j) => (j === i ? win : w));
    this.publish();
  }

  /** Resolve a physical address to (region, offset), or null. */
  resolve(phys: number): PhysResolution | null {
    return this.view.resolve(phys);
  }

  /** Resolve a bus address to (region, offset), or null. */
  resolveBus(bus: number): PhysResolution | null {
    return this.view.resolveBus(bus);
  }

  /** Physical address of byte `offset` of `region` (first window covering it), or null. */
  regionToPhys(region: MemRegion, offset: number): number | null {
    for (const w of this.windows) {
      if (w.regionId === region.id && offset >= w.regionOffset && offset < w.regionOffset + w.size) {
        return w.phys + (offset - w.regionOffset);
      }
    }
    return null;
  }

  /** Structured-cloneable snapshot for a worker (pass with workerData; SABs are shared). */
  descriptor(): PhysMapDescriptor {
    const used = new Set(this.windows.map((w) => w.regionId));
    const regions = [...this.regions.values()].filter((r) => used.has(r.id)).map((r) => r.descriptor());
    return { ctl: this.ctlSab, gen: this.gen, regions, windows: [...this.windows] };
  }

  /**
   * Send future updates to `port` (the kernel-side end of a worker's channel). The caller
   * hands the other end to the worker together with descriptor().
   */
  subscribe(port: MessagePort): void {
    this.ports.add(port);
  }

  /** Stop sending updates to `port`. */
  unsubscribe(port: MessagePort): void {
    this.ports.delete(port);
  }

  /**
   * Call `fn` after every published change, once the update is queued on every subscribed port
   * and the generation word moved (the IOMMU invalidates device IOTLBs here). Thread: kernel.
   */
  onPublish(fn: () => void): void {
    this.listeners.push(fn);
  }

  private publish(): void {
    this.gen++;
    const map = this.descriptor();
    this.view.apply(map);
    const msg: PhysMapUpdate = { type: 'phys-map', map };
    for (const p of this.ports) p.postMessage(msg);
    Atomics.store(this.ctl, PhysMapCtl.WINDOWS, map.windows.length);
    // publish: the update is queued on every port before readers can see the new generation.
    Atomics.store(this.ctl, PhysMapCtl.GEN, this.gen);
    for (const fn of this.listeners) fn();
  }
}

function checkTphStats(fn: string, sab: unknown): void {
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength !== TPH_STATS_BYTES)
    throw err('EINVAL', `${fn}: tphStats is not a TPH statistics block (${TPH_STATS_BYTES} byte SAB)`);
}

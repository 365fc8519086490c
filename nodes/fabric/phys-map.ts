/**
 * PhysMapView: resolve a physical or bus address to (region, offset) on any thread.
 *
 * Built from a PhysMapDescriptor (see phys-map-layout.ts). The kernel's PhysMap keeps one for
 * itself; a device worker builds one from the descriptor in its workerData and refreshes it from
 * its update port when the shared generation word moves. Lookups are a last-hit check plus a
 * binary search over sorted windows and allocate nothing (findPhys/findBus return a window
 * index; the per-window arrays are public for the DMA hot loop).
 *
 * Thread: a view belongs to the thread that built it; it is not itself shared.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import {
  type MemRegionDescriptor,
  PhysMapCtl,
  type PhysMapDescriptor,
  type PhysMapUpdate,
  type PhysWindowDescriptor,
  type PhysWindowKind,
  memRegionBytes,
} from './phys-map-layout.ts';
import { type PhysArenaCopy, physArenaCopy } from './phys-arena.ts';

// module-local copy: an imported binding may be a getter under a CJS transpile (see dma.ts).
const kGenWord = PhysMapCtl.GEN;

/** Result of a resolve(): where an address lands. */
export interface PhysResolution {
  region: MemRegionDescriptor;
  /** Byte offset inside the region. */
  offset: number;
  /** Bytes from `offset` to the end of the window. */
  remaining: number;
  window: PhysWindowDescriptor;
}

export class PhysMapView {
  /** Generation of the snapshot this view holds; -1 before the first apply. */
  gen = -1;
  readonly ctl: Int32Array;
  /** Number of windows. Per-window arrays below are sorted by physical address. */
  count = 0;
  start: number[] = [];
  end: number[] = [];
  /** phys - bus for window i is -busOffset; bus lookups use busStart/busEnd. */
  busStart: number[] = [];
  busEnd: number[] = [];
  kind: PhysWindowKind[] = [];
  /** Region bytes of window i and the region offset that window start maps to. */
  bytes: Uint8Array[] = [];
  regionOffset: number[] = [];
  /**
   * This thread's memory.copy for the arena window i's region lives in (null: a region with a SAB
   * of its own). Two windows with the same copier are in one arena: copy between them with it, at
   * bytes[i].byteOffset + offset.
   */
  arena: (PhysArenaCopy | null)[] = [];
  /** Hint statistics block of window i (TphStat words), null when the window does not count. */
  tphStats: (Int32Array | null)[] = [];
  windows: PhysWindowDescriptor[] = [];
  private regions = new Map<number, MemRegionDescriptor>();
  private views = new Map<number, Uint8Array>();
  /** Window indices sorted by bus address. */
  private busOrder: number[] = [];
  private lastPhys = 0;
  private lastBus = 0;
  private readonly port: MessagePort | undefined;

  /**
   * Called by: the kernel's PhysMap (own view), device workers at start. `port` (optional)
   * receives PhysMapUpdate messages; without it, sync() cannot refresh a stale view.
   */
  constructor(desc: PhysMapDescriptor, port?: MessagePort) {
    this.ctl = new Int32Array(desc.ctl);
    this.port = port;
    this.apply(desc);
  }

  /** True when the kernel has published a newer map than this view holds (one Atomics.load). */
  get stale(): boolean {
    return Atomics.load(this.ctl, kGenWord) !== this.gen;
  }

  /**
   * Replace the snapshot with `desc` if it is newer. Returns true if applied.
   * Called by: sync(), dmaCtxSync() for updates arriving on a shared port, PhysMap.
   */
  apply(desc: PhysMapDescriptor): boolean {
    if (desc.gen <= this.gen) return false;
    for (const r of desc.regions) {
      if (!this.views.has(r.id)) this.views.set(r.id, memRegionBytes(r));
      this.regions.set(r.id, r);
    }
    const ws = [...desc.windows].sort((a, b) => a.phys - b.phys);
    this.windows = ws;
    this.count = ws.length;
    this.start = ws.map((w) => w.phys);
    this.end = ws.map((w) => w.phys + w.size);
    this.busStart = ws.map((w) => w.phys + w.busOffset);
    this.busEnd = ws.map((w) => w.phys + w.busOffset + w.size);
    this.kind = ws.map((w) => w.kind);
    this.regionOffset = ws.map((w) => w.regionOffset);
    this.tphStats = ws.map((w) => (w.tphStats ? new Int32Array(w.tphStats) : null));
    this.arena = ws.map((w) => {
      const a = this.regions.get(w.regionId)?.arena;
      return a ? physArenaCopy(a) : null;
    });
    this.bytes = ws.map((w) => {
      const v = this.views.get(w.regionId);
      if (!v)
        throw new Error(`phys map gen ${desc.gen}: window ${w.name} names unknown region ${w.regionId}`);
      return v;
    });
    this.busOrder = ws.map((_, i) => i).sort((a, b) => this.busStart[a] - this.busStart[b]);
    this.lastPhys = 0;
    this.lastBus = 0;
    this.gen = desc.gen;
    return true;
  }

  /**
   * Drain this view's own port and apply the newest map. Returns true if the view changed.
   * Called by: worker code that resolves outside the DMA path. Never waits.
   */
  sync(): boolean {
    if (!this.port) return false;
    let changed = false;
    for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) {
      const msg = m.message as PhysMapUpdate;
      if (msg?.type === 'phys-map') changed = this.apply(msg.map) || changed;
    }
    return changed;
  }

  /** Index of the window containing physical `addr`, or -1. */
  findPhys(addr: number): number {
    const i = this.lastPhys;
    if (i < this.count && addr >= this.start[i] && addr < this.end[i]) return i;
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (addr < this.start[mid]) hi = mid - 1;
      else if (addr >= this.end[mid]) lo = mid + 1;
      else return (this.lastPhys = mid);
    }
    return -1;
  }

  /** Index of the window containing bus `addr`, or -1. */
  findBus(addr: number): number {
    const c = this.lastBus;
    if (c < this.count && addr >= this.busStart[c] && addr < this.busEnd[c]) return c;
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const i = this.busOrder[mid];
      if (addr < this.busStart[i]) hi = mid - 1;
      else if (addr >= this.busEnd[i]) lo = mid + 1;
      else return (this.lastBus = i);
    }
    return -1;
  }

  /** Resolve a physical address, or null if no window claims it. Allocates: not for hot loops. */
  resolve(addr: number): PhysResolution | null {
    const i = this.findPhys(addr);
    return this.describe(i, addr - this.start[i]);
  }

  /** Resolve a bus address, or null if no window claims it. */
  resolveBus(addr: number): PhysResolution | null {
    const i = this.findBus(addr);
    return this.describe(i, addr - this.busStart[i]);
  }

  /** Region bytes by region id (the view's own Uint8Array over the SAB). */
  regionBytes(regionId: number): Uint8Array | undefined {
    return this.views.get(regionId);
  }

  private describe(i: number, inWindow: number): PhysResolution | null {
    if (i < 0) return null;
    const w = this.windows[i];
    const region = this.regions.get(w.regionId)!;
    return { region, offset: w.regionOffset + inWindow, remaining: w.size - inWindow, window: w };
  }
}

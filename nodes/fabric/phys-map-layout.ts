/**
 * Per-host physical address map: the structured-cloneable descriptor a worker receives, the
 * shared control word that tells it the descriptor is stale, and the host's default layout.
 *
 * A *region* is backing memory (one SharedArrayBuffer: host RAM, a GPU's VRAM, a device BAR).
 * A *window* places all or part of a region at a physical address: RAM at RAM_BASE, a BAR
 * window (which may expose only the first part of VRAM, like a small BAR) in the MMIO range.
 * The bus address of a window is `phys + busOffset` (0 on x86, kept for hosts that differ).
 *
 * Update protocol (kernel writes, any thread reads):
 *   kernel: post `{ type: 'phys-map', map }` to every subscribed port, then
 *           Atomics.store(ctl, GEN, map.gen)
 *   reader: Atomics.load(ctl, GEN) !== view.gen  =>  drain its port with receiveMessageOnPort
 * The post happens before the store, so a reader that sees the new generation finds the
 * message already queued: no round trip to the main thread.
 */
import { layoutCheck } from './layout.ts';

/** What a region's memory is. Only the owner of the region's page allocator allocates in it. */
export const MemRegionKind = { RAM: 0, VRAM: 1, BAR: 2 } as const;
export type MemRegionKind = (typeof MemRegionKind)[keyof typeof MemRegionKind];

/** How a window is reached: RAM through an IOMMU domain, BAR windows also by raw bus address (P2P). */
export const PhysWindowKind = { RAM: 0, BAR: 1 } as const;
export type PhysWindowKind = (typeof PhysWindowKind)[keyof typeof PhysWindowKind];

/** One region as it crosses to a worker (the SAB is shared, not copied). */
export interface MemRegionDescriptor {
  /** Unique per host, >= 1. */
  id: number;
  name: string;
  kind: MemRegionKind;
  /** Bytes, a multiple of PAGE_SIZE; equals sab.byteLength. */
  size: number;
  sab: SharedArrayBuffer;
}

/** One window: [phys, phys + size) maps to region bytes [regionOffset, regionOffset + size). */
export interface PhysWindowDescriptor {
  name: string;
  kind: PhysWindowKind;
  phys: number;
  size: number;
  /** bus address = phys + busOffset. */
  busOffset: number;
  regionId: number;
  regionOffset: number;
}

/** Snapshot of a host's map at generation `gen`. Structured-cloneable (SABs are shared). */
export interface PhysMapDescriptor {
  /** The shared control words (PhysMapCtl). */
  ctl: SharedArrayBuffer;
  gen: number;
  regions: MemRegionDescriptor[];
  windows: PhysWindowDescriptor[];
}

/** Message posted to subscribed ports before the generation word is bumped. */
export interface PhysMapUpdate {
  type: 'phys-map';
  map: PhysMapDescriptor;
}

/** Word offsets of the phys map control SAB. */
export const PhysMapCtl = {
  /** Generation of the newest map; written only by the kernel, after posting the update. */
  GEN: 0,
  /** Number of windows in the newest map (diagnostics only). */
  WINDOWS: 1,
} as const;
export const PHYS_MAP_CTL_WORDS = 4;
export const PHYS_MAP_CTL_BYTES = 16;
layoutCheck('PhysMapCtl', PhysMapCtl, PHYS_MAP_CTL_WORDS, PHYS_MAP_CTL_BYTES);

/** Default physical layout of an emulated host: RAM from 0, 64-bit BAR windows from 2^45. */
export const HostLayout = {
  /** Host RAM starts at physical 0 (no PCI hole is modelled). */
  RAM_BASE: 0,
  /** First address of the 64-bit MMIO range where BAR windows are placed. */
  MMIO_BASE: 2 ** 45,
  /** End (exclusive) of the MMIO range. */
  MMIO_END: 2 ** 47,
} as const;

/**
 * Per-host physical address map: the structured-cloneable descriptor a worker receives, the
 * shared control word that tells it the descriptor is stale, and the host's default layout.
 *
 * A *region* is backing memory (host RAM, a GPU's VRAM, a device BAR): a slice of the host's
 * physical memory arena, or a SharedArrayBuffer of its own (MemRegionDescriptor).
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
import type { PhysArenaDescriptor } from './phys-arena.ts';

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
  /** Bytes, a multiple of PAGE_SIZE. */
  size: number;
  /** Holds the region at `offset` (absent: 0): the host arena's buffer, or the region's own. */
  sab: SharedArrayBuffer;
  offset?: number;
  /** The host's physical memory arena when the region lives in one (fabric/phys-arena.ts). */
  arena?: PhysArenaDescriptor | null;
}

/** A thread's view of exactly the region's bytes. */
export function memRegionBytes(r: MemRegionDescriptor): Uint8Array {
  return new Uint8Array(r.sab, r.offset ?? 0, r.size);
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
  /**
   * Hint statistics block (TphStat words, TPH_STATS_BYTES) of a window whose device is a TPH
   * completer and asked to count; absent: DMAs into the window are not counted.
   */
  tphStats?: SharedArrayBuffer;
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

/*
 * DOC: TPH hints at the routing point (kernel-semantics §4.6 scenario 6)
 * A DMA carries a TLP Processing Hint as one small integer (0 = none, a plain field compare):
 *   bits 0-15 steering tag (8- or 16-bit namespace, never converted), bits 16-17 PH,
 *   bit 20 TH (always set in a hint, so a hint is never 0 even with ST 0 and PH 0).
 * A window with a statistics block counts every run that lands in it with Atomics.add: hinted
 * runs and bytes, per PH, per ST slot (ST modulo TPH_STATS_ST_SLOTS: a partition table of a
 * small completer; tags that differ by a multiple of it share a slot), and unhinted runs and
 * bytes. The unit is the emulator's run (a physically contiguous piece of one DMA inside one
 * window), not the TLP: a real completer sees one hint per TLP (a run of n bytes is about
 * ceil(n / MPS) TLPs). Run counters wrap at 2^32; byte counters are 64-bit (LO, HI words).
 */
const TPH_TH = 1 << 20;

/** The hint of a DMA with processing hint `ph` (0..3) and steering tag `st` (0..0xffff). */
export function dmaTph(ph: number, st: number): number {
  return TPH_TH | ((ph & 3) << 16) | (st & 0xffff);
}
/** No hint (TH = 0). */
export const DMA_TPH_NONE = 0;
/** PH of hint `h`. */
export function dmaTphPh(h: number): number {
  return (h >>> 16) & 3;
}
/** Steering tag of hint `h`. */
export function dmaTphSt(h: number): number {
  return h & 0xffff;
}

/** Number of per-ST counters of a statistics block. */
export const TPH_STATS_ST_SLOTS = 64;
/** Word offsets of a hint statistics block; each counter is RUNS, BYTES_LO, BYTES_HI. */
export const TphStat = {
  UNHINTED: 0,
  HINTED: 4,
  /** PH p at PH + 4p. */
  PH: 8,
  /** ST slot s (= tag % TPH_STATS_ST_SLOTS) at ST + 4s. */
  ST: 24,
} as const;
export const TPH_STATS_WORDS = TphStat.ST + 4 * TPH_STATS_ST_SLOTS;
export const TPH_STATS_BYTES = TPH_STATS_WORDS * 4;

// module-local copies (see dma.ts: an imported binding may be a getter under a CJS transpile).
const kUnhinted = TphStat.UNHINTED;
const kHinted = TphStat.HINTED;
const kPh = TphStat.PH;
const kSt = TphStat.ST;
const kSlotMask = TPH_STATS_ST_SLOTS - 1;
const TWO32 = 2 ** 32;

function count(w: Int32Array, at: number, n: number): void {
  Atomics.add(w, at, 1);
  const lo = n % TWO32;
  // each adder sees its own carry out of LO: concurrent adders never lose one.
  const old = Atomics.add(w, at + 1, lo | 0) >>> 0;
  const carry = (n - lo) / TWO32 + (old + lo >= TWO32 ? 1 : 0);
  if (carry !== 0) Atomics.add(w, at + 2, carry);
}

/**
 * Count one run of `n` bytes carrying hint `tph` (0: none) in statistics block `w`.
 * Called by: the routing point (fabric/dma.ts), any thread, for windows with a block only.
 */
export function tphStatsCount(w: Int32Array, tph: number, n: number): void {
  if (tph === 0) {
    count(w, kUnhinted, n);
    return;
  }
  count(w, kHinted, n);
  count(w, kPh + ((tph >>> 16) & 3) * 4, n);
  count(w, kSt + (tph & kSlotMask) * 4, n);
}

/** One counter of a snapshot. */
export interface TphCounter {
  runs: number;
  bytes: number;
}

/** A snapshot of a statistics block (tphStatsRead). */
export interface TphStatsSnapshot {
  unhinted: TphCounter;
  hinted: TphCounter;
  /** Index: PH 0..3. */
  ph: TphCounter[];
  /** Index: ST slot (tag % TPH_STATS_ST_SLOTS). */
  st: TphCounter[];
}

function read(w: Int32Array, at: number): TphCounter {
  let hi: number;
  let lo: number;
  // a carry between the two loads: read again.
  do {
    hi = Atomics.load(w, at + 2) >>> 0;
    lo = Atomics.load(w, at + 1) >>> 0;
  } while (Atomics.load(w, at + 2) >>> 0 !== hi);
  return { runs: Atomics.load(w, at) >>> 0, bytes: hi * TWO32 + lo };
}

/** A fresh zeroed statistics block. Called by: the kernel, for a TPH completer's BAR windows. */
export function tphStatsCreate(): SharedArrayBuffer {
  return new SharedArrayBuffer(TPH_STATS_BYTES);
}

/** Read every counter of a statistics block (any thread). Throws: RangeError (not a block). */
export function tphStatsRead(sab: SharedArrayBuffer): TphStatsSnapshot {
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength !== TPH_STATS_BYTES)
    throw new RangeError('tphStatsRead: not a TPH statistics block');
  const w = new Int32Array(sab);
  return {
    unhinted: read(w, kUnhinted),
    hinted: read(w, kHinted),
    ph: [0, 1, 2, 3].map((p) => read(w, kPh + 4 * p)),
    st: Array.from({ length: TPH_STATS_ST_SLOTS }, (_, i) => read(w, kSt + 4 * i)),
  };
}

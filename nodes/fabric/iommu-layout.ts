/**
 * IOMMU shared-memory layouts: the contract between the kernel (nodes/kernel/iommu, the only
 * writer of tables and context entries, the only consumer of the fault ring) and device workers
 * (fabric/dma.ts, which walk the tables and append faults). Nothing here imports kernel code.
 *
 * 1. Domain page table: one growable SharedArrayBuffer per domain.
 *      [header: PgtableHdr, 16 words][directory: DIR_WORDS words][leaf 1][leaf 2]...
 *    Directory slot d covers IOVA pages [d * 512, d * 512 + 512); it holds a 1-based leaf
 *    number (0 = no leaf). Leaves are never freed or moved, so a directory slot changes at most
 *    once (0 -> n). A leaf holds 512 PTEs of 2 words:
 *      word 0 CTL    PRESENT | READ | WRITE | pfn bits 32..39 | 21-bit sequence
 *      word 1 PFN_LO pfn bits 0..31
 *    A 40-bit pfn covers the whole 52-bit physical space. The sequence changes on every map
 *    and unmap, so a reader validates a two-word entry like a seqlock: load CTL, load PFN_LO,
 *    load CTL again, retry if it changed. The kernel grows the SAB before it publishes a
 *    directory slot that points past the old end, so a reader that sees the slot finds the
 *    leaf in sab.byteLength.
 * 2. Device context entry: a small SAB per device (VT-d context entry / AMD DTE) naming the
 *    domain the device is attached to (0 means none: every access is BLOCKED), and the
 *    invalidation word that flushes the device's IOTLB (fabric/iotlb.ts DOC: IOTLB).
 * 3. Fault ring: one bounded MPSC ring per IOMMU (Vyukov's bounded queue). Producers (device
 *    workers, or the kernel itself) claim a slot with compareExchange on HEAD and never wait:
 *    a full ring counts OVERFLOW and drops the record. The kernel is the single consumer.
 */
import { layoutCheck } from './layout.ts';

/** Domain types (Linux IOMMU_DOMAIN_*). Stored in PgtableHdr.TYPE. */
export const IommuDomainType = {
  /** All DMA is blocked and faults. */
  BLOCKED: 0,
  /** Passthrough: IOVA == physical address, read and write allowed, no table walk. */
  IDENTITY: 1,
  /** Paging domain whose IOVAs the owner (vfio/iommufd) chooses. */
  UNMANAGED: 2,
  /** Paging domain behind the kernel DMA API (IOVAs from the domain's allocator). */
  DMA: 3,
} as const;
export type IommuDomainType = (typeof IommuDomainType)[keyof typeof IommuDomainType];

/** Mapping permissions (Linux include/linux/iommu.h). Only READ and WRITE affect translation. */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PROT_ALL = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE | IOMMU_NOEXEC | IOMMU_MMIO;

/** Direction of a device access, as recorded in a fault. */
export const DmaAccess = { READ: 0, WRITE: 1 } as const;
export type DmaAccess = (typeof DmaAccess)[keyof typeof DmaAccess];

/** Why an access faulted. */
export const IommuFaultReason = {
  /** No PTE for the IOVA (never mapped, unmapped, or beyond the aperture). */
  NOT_PRESENT: 1,
  /** PTE present but lacks READ (device read) or WRITE (device write). */
  PERM: 2,
  /** The device is attached to no domain, or to a BLOCKED domain. */
  BLOCKED: 3,
  /** The translated (or raw bus) address hits no window: PCIe Unsupported Request. */
  UNSUPPORTED_REQUEST: 4,
} as const;
export type IommuFaultReason = (typeof IommuFaultReason)[keyof typeof IommuFaultReason];

// ---- 1. domain page table ------------------------------------------------------------------

export const PGTABLE_MAGIC = 0x494f5054; // 'IOPT'
export const PgtableHdr = {
  MAGIC: 0,
  TYPE: 1,
  DOMAIN_ID: 2,
  /** log2 of the IOVA aperture in bytes; IOVAs >= 2^APERTURE_BITS are NOT_PRESENT. */
  APERTURE_BITS: 3,
  DIR_WORDS: 4,
  /** Leaves allocated so far (kernel bookkeeping; readers use directory slots). */
  LEAF_COUNT: 5,
  /** Bumped after every map/unmap call (diagnostics). */
  MAP_SEQ: 6,
} as const;
export const PGTABLE_HDR_WORDS = 16;
layoutCheck('PgtableHdr', PgtableHdr, PGTABLE_HDR_WORDS, 64);

/** PTEs per leaf (a leaf covers 2 MiB of IOVA, like an x86 page-table page). */
export const LEAF_SHIFT = 9;
export const LEAF_ENTRIES = 1 << LEAF_SHIFT;
export const Pte = { CTL: 0, PFN_LO: 1 } as const;
export const PTE_WORDS = 2;
layoutCheck('Pte', Pte, PTE_WORDS, 8);
export const LEAF_WORDS = LEAF_ENTRIES * PTE_WORDS;
layoutCheck('Leaf', {}, LEAF_WORDS, 4096);

/** PTE CTL bits. READ/WRITE are IOMMU_READ/IOMMU_WRITE shifted left by one. */
export const PTE_PRESENT = 1 << 0;
export const PTE_READ = 1 << 1;
export const PTE_WRITE = 1 << 2;
export const PTE_PFN_HI_SHIFT = 3;
export const PTE_PFN_HI_MASK = 0xff;
export const PTE_SEQ_SHIFT = 11;
export const PTE_SEQ_MASK = 0x1fffff;
/** Apertures from 2^20 to 2^40 bytes: the directory stays <= 2^19 words. */
export const MIN_APERTURE_BITS = 20;
export const MAX_APERTURE_BITS = 40;

/** Word index of the first directory slot. */
export function pgtableDirBase(): number {
  return PGTABLE_HDR_WORDS;
}

/** Directory slots needed for an aperture of 2^bits bytes. */
export function pgtableDirWords(apertureBits: number): number {
  return 2 ** (apertureBits - 12 - LEAF_SHIFT);
}

/** Word index of PTE `index` in 1-based leaf `leaf`, given the directory size. */
export function pteWord(dirWords: number, leaf: number, index: number): number {
  return PGTABLE_HDR_WORDS + dirWords + (leaf - 1) * LEAF_WORDS + index * PTE_WORDS;
}

// ---- 2. device context entry ---------------------------------------------------------------

export const DevCtx = {
  /** Attached domain id; 0 = none (BLOCKED). Written by the kernel after posting the domain. */
  DOMAIN_ID: 0,
  /** Bumped on every attach/detach (diagnostics). */
  ATTACH_SEQ: 1,
  /** The requester id this entry belongs to. */
  DEVICE_ID: 2,
  /**
   * Invalidation sequence: bumped by the kernel after anything that can make a device's cached
   * view wrong (unmap in the attached domain, attach/detach, a phys map change). The device loads
   * it before each run it translates and flushes its IOTLB when it moved (fabric/iotlb.ts).
   */
  INVAL: 3,
  /**
   * 1 when this entry lives in the host's memory arena (phys-arena.ts control memory), where a
   * wasm device model can load INVAL itself (mlx5-fast.ts); 0 in a SAB of its own.
   */
  IN_ARENA: 4,
} as const;
export const DEV_CTX_WORDS = 8;
layoutCheck('DevCtx', DevCtx, DEV_CTX_WORDS, 32);

// ---- 3. fault ring ---------------------------------------------------------------------------

export const FAULT_RING_MAGIC = 0x464c5452; // 'FLTR'
export const FaultRingHdr = {
  MAGIC: 0,
  /** Slot count, a power of two. */
  CAPACITY: 1,
  /** Next position a producer claims (wraps at 2^32; compare with `(a - b) | 0`). */
  HEAD: 2,
  /** Next position the consumer reads. */
  TAIL: 3,
  /** Records dropped because the ring was full. */
  OVERFLOW: 4,
  /** Bumped and notified after each published record: the kernel waits on it. */
  SIGNAL: 5,
} as const;
export const FAULT_RING_HDR_WORDS = 16;
layoutCheck('FaultRingHdr', FaultRingHdr, FAULT_RING_HDR_WORDS, 64);

export const FaultSlot = {
  /** Vyukov sequence: == pos when free for position pos, == pos + 1 when published. */
  SEQ: 0,
  DEVICE_ID: 1,
  DOMAIN_ID: 2,
  ADDR_LO: 3,
  ADDR_HI: 4,
  /** Bit 0: write (DmaAccess.WRITE); bit 1: raw bus access (no IOMMU). */
  ACCESS: 5,
  REASON: 6,
  /** Length of the attempted access in bytes, saturated at 2^31 - 1. */
  LENGTH: 7,
} as const;
export const FAULT_SLOT_WORDS = 8;
layoutCheck('FaultSlot', FaultSlot, FAULT_SLOT_WORDS, 32);
export const FAULT_ACCESS_BUS = 1 << 1;

/** Bytes of a fault ring SAB with `capacity` slots. */
export function faultRingBytes(capacity: number): number {
  return (FAULT_RING_HDR_WORDS + capacity * FAULT_SLOT_WORDS) * 4;
}

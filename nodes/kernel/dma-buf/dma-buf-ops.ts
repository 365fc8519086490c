/**
 * The dma-buf contracts (include/linux/dma-buf.h): exporter callbacks, importer callbacks, and
 * the export info. Each member says who calls it, the resv lock state on entry, whether it is
 * optional, and what it may throw. The core (dma-buf.ts) asserts the lock rules on entry.
 *
 * DOC: locking convention (kernel-semantics §1.2)
 *
 * Importer-side API                                         | resv lock
 * ----------------------------------------------------------|-----------------------------------
 * dmaBufPin, dmaBufUnpin                                    | held
 * dmaBufMapAttachment, dmaBufUnmapAttachment                | held
 * dmaBufVmap, dmaBufVunmap                                  | held
 * dmaBufAttach, dmaBufDynamicAttach, dmaBufDetach           | not held (they take it)
 * dmaBufExport, dmaBufFd, dmaBufGet, dmaBufPut              | not held
 * dmaBufMmap, dmaBufBeginCpuAccess, dmaBufEndCpuAccess      | not held
 * dmaBufMapAttachmentUnlocked, ...UnmapAttachmentUnlocked,  | not held (they take it)
 * dmaBufVmapUnlocked, dmaBufVunmapUnlocked                  |
 * dmaBufGetTph                                              | not held
 *
 * Exporter callback                                         | resv lock on entry
 * ----------------------------------------------------------|-----------------------------------
 * attach, detach, release, beginCpuAccess, endCpuAccess,    | not held (may take it)
 * mmap, getTph                                              |
 * pin, unpin, mapDmaBuf, unmapDmaBuf, vmap, vunmap          | held (must not take it)
 * exporter calling dmaBufInvalidateMappings                 | must hold it
 * importer's invalidateMappings                             | called with it held
 *
 * A call in the wrong lock state fails: EPERM when the lock must be held and is not, EDEADLK
 * when the caller holds a lock the call would take.
 */
import type { Device } from '../device.ts';
import type { NegotiationContext, Offer } from '../../../topology/negotiate.ts';
import type { DmaBuf, DmaBufAttachment } from './dma-buf.ts';
import type { DmaResv } from './dma-resv.ts';
import type { DmaDataDirection, SgTable } from './scatterlist.ts';

type MaybePromise<T> = T | Promise<T>;

/** Exporter callbacks (struct dma_buf_ops). Only the dma-buf core calls these. */
export interface DmaBufOps {
  /**
   * Check that attach.dev can reach the buffer; may clear attach.peer2peer (never set it).
   * Called by: dmaBufAttach(), dmaBufDynamicAttach(). Lock: not held; may take it. Optional.
   * Throws: EBUSY (storage placed where the device cannot reach), EOPNOTSUPP (needs P2P),
   * ENODEV (revoked). On failure no attachment is left behind.
   */
  attach?(dmabuf: DmaBuf, attach: DmaBufAttachment): MaybePromise<void>;
  /** Called by: dmaBufDetach(), after the attachment left the list. Lock: not held. Optional. */
  detach?(dmabuf: DmaBuf, attach: DmaBufAttachment): MaybePromise<void>;
  /**
   * Keep the backing store where it is until unpin; memory must be usable when this returns
   * (wait for pending moves/clears, rule 10). Pick a placement every attachment can reach.
   * Called by: dmaBufPin(), and pin-on-map for static importers. Lock: held. Optional, but pin
   * and unpin come as a pair; a dynamic exporter is one that has them.
   * Throws: EBUSY if the buffer cannot be pinned where attach.dev can reach it; ENODEV if revoked.
   */
  pin?(attach: DmaBufAttachment): MaybePromise<void>;
  /** Undo one pin. Called by: dmaBufUnpin(), unmap for pin-on-map. Lock: held. Pairs with pin. */
  unpin?(attach: DmaBufAttachment): MaybePromise<void>;
  /**
   * Map the buffer for attach.dev: return a FRESH table each call (never cached, never shared),
   * entries PAGE_SIZE aligned, DMA side valid for attach.dev.
   * Called by: dmaBufMapAttachment(). Lock: held (for every exporter in 2026 semantics).
   * Mandatory. Throws: ENODEV (revoked), ENOMEM, EOPNOTSUPP, EINTR.
   */
  mapDmaBuf(attach: DmaBufAttachment, dir: DmaDataDirection): MaybePromise<SgTable>;
  /** Give a table back. Called by: dmaBufUnmapAttachment(). Lock: held. Mandatory. */
  unmapDmaBuf(attach: DmaBufAttachment, sgt: SgTable, dir: DmaDataDirection): MaybePromise<void>;
  /** Last reference gone: free everything. Called once by dmaBufPut(). Lock: not held. Mandatory. */
  release(dmabuf: DmaBuf): void;
  /** Make CPU access coherent. Called by: dmaBufBeginCpuAccess(). Lock: not held. Optional. */
  beginCpuAccess?(dmabuf: DmaBuf, dir: DmaDataDirection): MaybePromise<void>;
  /** End CPU access. Called by: dmaBufEndCpuAccess(). Lock: not held. Optional. */
  endCpuAccess?(dmabuf: DmaBuf, dir: DmaDataDirection): MaybePromise<void>;
  /**
   * CPU view of `pages` pages from page `pgoff`, resolved at each access so a move is seen.
   * Called by: dmaBufMmap() after the bounds check (rule 2). Lock: not held. Optional.
   */
  mmap?(dmabuf: DmaBuf, pgoff: number, pages: number): DmaBufCpuView;
  /**
   * The exporter's ordered list of interconnects it can provide to attach.dev (2025-26
   * "mapping types" proposal, unmerged): VRAM on a private link, a dma_addr_t for a device, a
   * PCI BAR slice, ... The core negotiates it against the importer's list at attach and records
   * the winner in attach.mapType. `ctx` supplies the policy and the topology the match steps use.
   * Called by: dmaBufAttach(), dmaBufDynamicAttach(), after ops.attach. Lock: not held. Optional:
   * without it (or without an importer list) no negotiation happens.
   */
  matchMapping?(attach: DmaBufAttachment): { offers: Offer[]; ctx?: NegotiationContext };
  /** Kernel CPU view of the whole buffer. Called by: dmaBufVmap() on first use. Lock: held. Optional. */
  vmap?(dmabuf: DmaBuf): DmaBufCpuView;
  /** Drop the vmap. Called by: dmaBufVunmap() when the count reaches 0. Lock: held. Optional. */
  vunmap?(dmabuf: DmaBuf, view: DmaBufCpuView): void;
  /**
   * TPH for peer-to-peer accesses to this buffer (2026 series "vfio/dma-buf: add TPH support for
   * peer-to-peer access", v3 `get_tph(dmabuf, *st, *ph, st_width)`, unmerged; kernel-semantics
   * §4.4, rule 12): the raw steering tag of the `stWidth`-bit namespace (8 or 16) and the 2-bit
   * processing hint. The exporter must never convert between the 8-bit and the 16-bit namespace.
   * Called by: dmaBufGetTph() only (importers such as mlx5 MR registration call that), which has
   * already checked stWidth. Lock: not held (the exporter takes its own). Optional: without it
   * the core answers EOPNOTSUPP.
   * Throws: EOPNOTSUPP (no tag, or none of that width); EINVAL (stWidth not 8 or 16).
   */
  getTph?(dmabuf: DmaBuf, stWidth: DmaBufStWidth): DmaBufTph;
}

/** Steering-tag width get_tph is asked for: the importer's requester type (TPH_ONLY 8, EXT_TPH 16). */
export type DmaBufStWidth = 8 | 16;

/** What get_tph returns: a steering tag of the requested width and a 2-bit processing hint. */
export interface DmaBufTph {
  steeringTag: number;
  ph: number;
}

/**
 * CPU access to buffer bytes (a vmap or an mmap'ed range). Each call resolves the current
 * backing store, so an access after a move reaches the new pages; coherency with devices holds
 * only inside begin/end cpu access (rules 29-30). Offsets are relative to the view.
 * Throws: EINVAL for a range outside the view.
 */
export interface DmaBufCpuView {
  readonly length: number;
  read(offset: number, dst: Uint8Array): void;
  write(offset: number, src: Uint8Array): void;
}

/** Importer callbacks (struct dma_buf_attach_ops). */
export interface DmaBufAttachOps {
  /** The importer can handle peer (MMIO, page-less) memory. Copied to attach.peer2peer. */
  allowPeer2peer: boolean;
  /**
   * The buffer moves or is revoked: stop using existing mappings and tear them down soon
   * (unmap may happen here or later; until unmap, reads may be speculative but no writes, rule 26).
   * Called by: dmaBufInvalidateMappings(), for every dynamic attachment, mapped or not.
   * Lock: held; must not take it. Mandatory for dynamic importers (the 2026 name of move_notify).
   */
  invalidateMappings?(attach: DmaBufAttachment): void;
  /** Pre-2026 name of invalidateMappings; accepted as an alias. */
  moveNotify?(attach: DmaBufAttachment): void;
  /**
   * The importer's ordered list of interconnects it can use (one entry per PCIe path for a
   * multipath device). Read once at attach, when the exporter has matchMapping. Optional.
   */
  mappingOffers?: readonly Offer[];
}

/**
 * Sentinel invalidate op for pinned importers that cannot honour an invalidate in bounded time
 * (RDMA's plain pinned MRs). Attaching with it counts as NOT revocable (rule 28).
 */
export function dmaBufUnsupportedInvalidateMappings(_attach: DmaBufAttachment): void {
  // Nothing an importer of this kind can do: the exporter should not have invalidated it.
}

/** struct dma_buf_export_info. */
export interface DmaBufExportInfo {
  expName: string;
  ops: DmaBufOps;
  size: number;
  /** Exporter data; mandatory (EINVAL without it). */
  priv: unknown;
  /** Share a reservation object (GEM-style); a new one is made when absent. */
  resv?: DmaResv;
  owner?: string;
  flags?: number;
}

/** The device an attachment is for (struct device); see device.ts. */
export type { Device };

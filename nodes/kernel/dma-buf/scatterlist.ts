/**
 * sg_table: what dma_buf_map_attachment hands an importer (include/linux/scatterlist.h).
 *
 * Only the DMA side (dmaAddress, dmaLength) is the importer's to use (rule 16). The CPU/page side
 * is the exporter's bookkeeping: absent for MMIO/P2P memory, and stripped from the copy the core
 * gives importers (CONFIG_DMABUF_DEBUG behaviour), so an importer that peeks at pages finds none.
 */
import { err } from '../../../common/errno.ts';
import { hex, PAGE_SIZE } from '../../fabric/page.ts';

export { hex, PAGE_SHIFT, PAGE_SIZE } from '../../fabric/page.ts';

/** enum dma_data_direction (kernel values). */
export const DmaDataDirection = { BIDIRECTIONAL: 0, TO_DEVICE: 1, FROM_DEVICE: 2, NONE: 3 } as const;
export type DmaDataDirection = (typeof DmaDataDirection)[keyof typeof DmaDataDirection];

/** True for a direction a mapping may use (valid_dma_direction). */
export function validDmaDirection(dir: number): dir is DmaDataDirection {
  return (
    dir === DmaDataDirection.BIDIRECTIONAL ||
    dir === DmaDataDirection.TO_DEVICE ||
    dir === DmaDataDirection.FROM_DEVICE
  );
}

/** One scatterlist entry. */
export interface SgEntry {
  /** sg_dma_address: the address attach.dev must use (IOVA, bus address or physical). */
  dmaAddress: number;
  /** sg_dma_len in bytes. */
  dmaLength: number;
  /** CPU side: physical address of the backing pages; undefined for MMIO/P2P or in importer copies. */
  phys?: number;
}

export interface SgTable {
  readonly entries: readonly SgEntry[];
  /** orig_nents: entries with a CPU side (0 for MMIO/P2P and for importer copies). */
  readonly origNents: number;
  /** Total mapped bytes. */
  readonly length: number;
}

/** Build a table; checks the PAGE_SIZE alignment rule 15 (EINVAL naming `who` and the entry). */
export function sgTableCreate(entries: SgEntry[], who: string): SgTable {
  let length = 0;
  let origNents = 0;
  entries.forEach((e, i) => {
    if (!Number.isSafeInteger(e.dmaAddress) || e.dmaAddress < 0 || e.dmaAddress % PAGE_SIZE !== 0) {
      throw err('EINVAL', `${who}: sg entry ${i} dma address ${hex(e.dmaAddress)} not PAGE_SIZE aligned`);
    }
    if (!Number.isSafeInteger(e.dmaLength) || e.dmaLength <= 0 || e.dmaLength % PAGE_SIZE !== 0) {
      throw err(
        'EINVAL',
        `${who}: sg entry ${i} dma length ${e.dmaLength} not a positive multiple of PAGE_SIZE`,
      );
    }
    length += e.dmaLength;
    if (e.phys !== undefined) origNents++;
  });
  return Object.freeze({
    entries: Object.freeze(entries.map((e) => Object.freeze({ ...e }))),
    origNents,
    length,
  });
}

/** The importer's copy: DMA side only (rule 16). */
export function sgTableImporterCopy(sgt: SgTable): SgTable {
  const entries = sgt.entries.map((e) => Object.freeze({ dmaAddress: e.dmaAddress, dmaLength: e.dmaLength }));
  return Object.freeze({ entries: Object.freeze(entries), origNents: 0, length: sgt.length });
}

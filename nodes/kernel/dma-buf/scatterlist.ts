/**
 * sg_table: what dma_buf_map_attachment hands an importer (include/linux/scatterlist.h).
 *
 * Two sides, as in Linux: `entries` is the DMA side (nents: what attach.dev must use), `cpu` the
 * page side (orig_nents: physical runs). They differ in count when an IOMMU merges runs into one
 * IOVA range. Only the DMA side is the importer's (rule 16): the page side is absent for
 * MMIO/P2P memory and stripped from the copy the core gives importers (CONFIG_DMABUF_DEBUG
 * behaviour), so an importer that peeks at pages finds none.
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

/** What the device does with a mapping in direction `dir`: TO_DEVICE reads memory, FROM_DEVICE writes it. */
export function dmaDirAccess(dir: DmaDataDirection): { read: boolean; write: boolean } {
  return { read: dir !== DmaDataDirection.FROM_DEVICE, write: dir !== DmaDataDirection.TO_DEVICE };
}

/** One DMA-side entry. */
export interface SgEntry {
  /** sg_dma_address: the address attach.dev must use (IOVA, bus address or physical). */
  dmaAddress: number;
  /** sg_dma_len in bytes. */
  dmaLength: number;
  /**
   * A PCI bus address (P2PDMA map type BUS_ADDR: peer memory reached through a common switch,
   * no IOMMU translation; the device uses dmaReadBus/dmaWriteBus). Absent: translated by the
   * device's IOMMU domain (system memory, or peer memory THRU_HOST_BRIDGE).
   */
  bus?: true;
}

/** One page-side run (physical address and length). */
export interface SgPage {
  phys: number;
  length: number;
}

export interface SgTable {
  /** DMA side (nents). */
  readonly entries: readonly SgEntry[];
  /** Page side (orig_nents runs); empty for MMIO/P2P and in importer copies. */
  readonly cpu: readonly SgPage[];
  readonly origNents: number;
  /** Total bytes of the DMA side. */
  readonly length: number;
}

/**
 * Build a table (exporters call this in mapDmaBuf). Checks rule 15: every DMA address and length
 * PAGE_SIZE aligned (EINVAL naming `who` and the entry).
 */
export function sgTableCreate(entries: readonly SgEntry[], cpu: readonly SgPage[], who: string): SgTable {
  let length = 0;
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
  });
  return Object.freeze({
    entries: Object.freeze(
      entries.map((e) =>
        Object.freeze(
          e.bus
            ? { dmaAddress: e.dmaAddress, dmaLength: e.dmaLength, bus: true as const }
            : { dmaAddress: e.dmaAddress, dmaLength: e.dmaLength },
        ),
      ),
    ),
    cpu: Object.freeze(cpu.map((p) => Object.freeze({ ...p }))),
    origNents: cpu.length,
    length,
  });
}

/** The importer's copy: DMA side only (rule 16). */
export function sgTableImporterCopy(sgt: SgTable): SgTable {
  return Object.freeze({ entries: sgt.entries, cpu: Object.freeze([]), origNents: 0, length: sgt.length });
}

/**
 * Visit the DMA segments covering [offset, offset + length) of `sgt`: `fn(dmaAddress, at, n, bus)`
 * gets each piece's DMA address, offset into the range, length, and whether it is a PCI bus
 * address (then the device uses the bus DMA path, not its IOMMU). Stops at the first
 * non-zero return and returns it (a DMA status), else 0. EINVAL if the range is outside the table.
 */
export function sgTableWalk(
  sgt: SgTable,
  offset: number,
  length: number,
  fn: (dmaAddress: number, at: number, n: number, bus: boolean) => number,
): number {
  if (
    !Number.isInteger(offset) ||
    offset < 0 ||
    !Number.isInteger(length) ||
    length < 0 ||
    offset + length > sgt.length
  ) {
    throw err('EINVAL', `sgTableWalk: [${offset}, +${length}) outside a ${sgt.length}-byte table`);
  }
  let skip = offset;
  let at = 0;
  for (const e of sgt.entries) {
    if (at === length) break;
    if (skip >= e.dmaLength) {
      skip -= e.dmaLength;
      continue;
    }
    const n = Math.min(e.dmaLength - skip, length - at);
    const status = fn(e.dmaAddress + skip, at, n, e.bus === true);
    if (status !== 0) return status;
    at += n;
    skip = 0;
  }
  return 0;
}

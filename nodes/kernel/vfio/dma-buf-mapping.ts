/**
 * MMIO scatterlists for exporters of PCI BAR memory (drivers/dma-buf/dma-buf-mapping.c on the
 * 2026 branch: dma_buf_phys_vec_to_sgt / dma_buf_free_sgt, kernel-semantics §3.2 rule 8). The
 * vfio-pci exporter is its only user so far; the functions take nothing vfio-specific, so they
 * can move next to the dma-buf core once a second exporter of MMIO (a GPU BAR) wants them.
 *
 * DOC: addressing per map type
 *  - BUS_ADDR: the importer's device reaches the provider through a common switch; each DMA
 *    address is the bus address (CPU physical + the provider's bus offset), no IOVA. Entries
 *    carry `bus: true` so the device uses dmaReadBus/dmaWriteBus.
 *  - THRU_HOST_BRIDGE: TLPs go up to the root complex, so the ranges are mapped through the
 *    importer's DMA API (its IOMMU domain) like any memory: one IOVA range (the dma_iova_link
 *    path; the MMIO attribute is not modelled, translation ignores it).
 *  - anything else (NOT_SUPPORTED, UNKNOWN): EINVAL.
 * Entries are split so none exceeds UINT_MAX bytes (sg_dma_len is an unsigned int); the page
 * side is empty (orig_nents 0): MMIO has no struct page.
 *
 * Thread: kernel. Lock: the buffer's resv lock is held by the caller (map/unmap callbacks).
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { P2pdmaMapType } from '../../../topology/p2pdma.ts';
import { hex, PAGE_SIZE } from '../../fabric/page.ts';
import type { DmaBufAttachment } from '../dma-buf/dma-buf.ts';
import {
  type DmaDataDirection,
  dmaDirAccess,
  type SgEntry,
  type SgTable,
  sgTableCreate,
} from '../dma-buf/scatterlist.ts';
import type { DmaSegment } from '../device.ts';

/** struct dma_buf_phys_vec: one CPU-physical range of the provider's BAR. */
export interface DmaBufPhysVec {
  paddr: number;
  len: number;
}

/** struct p2pdma_provider, reduced: who owns the memory and how its bus addresses are offset. */
export interface P2pdmaProvider {
  /** Device name, for messages. */
  readonly name: string;
  /** Bus address minus CPU physical address of the BAR window (0 on x86). */
  readonly busOffset: number;
}

/** Largest page-aligned entry length that fits sg_dma_len (an unsigned int). */
export const SG_MAX_ENTRY = 2 ** 32 - PAGE_SIZE;

// What each exporter table was mapped with, for the unmap (an IOVA mapping is undone with exactly
// the segments the DMA API returned, not with the split entries).
const iovaMappings = new WeakMap<SgTable, DmaSegment[]>();

function split(addr: number, len: number, bus: boolean, out: SgEntry[]): void {
  for (let off = 0; off < len; off += SG_MAX_ENTRY) {
    const n = Math.min(SG_MAX_ENTRY, len - off);
    out.push(
      bus ? { dmaAddress: addr + off, dmaLength: n, bus: true } : { dmaAddress: addr + off, dmaLength: n },
    );
  }
}

// sgTableCreate checks alignment (rule 15). The bus flag is what tells the importer's device how
// to reach an address, so the table must keep it; versions of sgTableCreate that copy only
// address and length get it put back here.
function mmioTable(entries: SgEntry[], who: string): SgTable {
  const checked = sgTableCreate(entries, [], who);
  if (checked.entries.every((e, i) => e.bus === entries[i].bus)) return checked;
  return Object.freeze({
    entries: Object.freeze(entries.map((e) => Object.freeze({ ...e }))),
    cpu: checked.cpu,
    origNents: 0,
    length: checked.length,
  });
}

/**
 * dma_buf_phys_vec_to_sgt(): a fresh table for attach.dev over `physVec` (see DOC).
 * Called by: exporters' mapDmaBuf (vfio_pci_dma_buf_map). Lock: resv held by the caller.
 * Throws: EINVAL for a map type other than BUS_ADDR/THRU_HOST_BRIDGE or an empty vector; ENODEV
 * when THRU_HOST_BRIDGE needs a DMA API attach.dev does not have; the DMA API's errors (ENOSPC).
 */
export function dmaBufPhysVecToSgt(
  attach: DmaBufAttachment,
  provider: P2pdmaProvider,
  physVec: readonly DmaBufPhysVec[],
  mapType: P2pdmaMapType,
  dir: DmaDataDirection,
): SgTable {
  const who = `dma_buf_phys_vec_to_sgt(${provider.name} -> ${attach.dev.name})`;
  if (physVec.length === 0) throw err('EINVAL', `${who}: empty physical range vector`);
  const entries: SgEntry[] = [];
  let sgt: SgTable;
  if (mapType === P2pdmaMapType.BUS_ADDR) {
    for (const v of physVec) split(v.paddr + provider.busOffset, v.len, true, entries);
    sgt = mmioTable(entries, who);
  } else if (mapType === P2pdmaMapType.THRU_HOST_BRIDGE) {
    const dma = attach.dev.dma;
    if (!dma) throw err('ENODEV', `${who}: ${attach.dev.name} has no DMA API to map through the host bridge`);
    const mapped = dma.mapSg(
      physVec.map((v) => ({ addr: v.paddr, length: v.len })),
      dmaDirAccess(dir),
    );
    for (const s of mapped) split(s.addr, s.length, false, entries);
    try {
      sgt = mmioTable(entries, who);
    } catch (e) {
      dma.unmapSg(mapped);
      throw e;
    }
    iovaMappings.set(sgt, mapped);
  } else {
    throw err('EINVAL', `${who}: P2PDMA map type ${mapType}: ${attach.dev.name} cannot reach this memory`);
  }
  trace('vfioMap', () => ({
    provider: provider.name,
    dev: attach.dev.name,
    mapType,
    nents: sgt.entries.length,
    first: hex(sgt.entries[0].dmaAddress),
  }));
  return sgt;
}

/**
 * dma_buf_free_sgt(): undo dmaBufPhysVecToSgt for `sgt` (IOVA unmapped; bus addresses need
 * nothing). Called by: exporters' unmapDmaBuf. Lock: resv held by the caller.
 * Throws: EINVAL if `sgt` is not a live table of this attachment's device (double unmap).
 */
export function dmaBufFreeSgt(attach: DmaBufAttachment, sgt: SgTable): void {
  const mapped = iovaMappings.get(sgt);
  if (mapped === undefined) return; // bus addresses: nothing was mapped
  iovaMappings.delete(sgt);
  if (!attach.dev.dma) throw err('EINVAL', `dma_buf_free_sgt: ${attach.dev.name} has no DMA API`);
  attach.dev.dma.unmapSg(mapped);
}

/**
 * struct device, reduced to what DMA mapping and the dma-buf core need: a name for messages, the
 * DMA API of the device (dma_map_sgtable through its IOMMU domain, or identity without one), and
 * its PCI identity for P2P decisions. Drivers extend it; the dma-buf core only reads these fields.
 */
import { IOMMU_READ, IOMMU_WRITE } from '../fabric/iommu-layout.ts';
import { type DmaSegment, iommuDmaMapSg, iommuDmaUnmapSg } from './iommu/dma-iommu.ts';
import type { IommuDomain } from './iommu/iommu.ts';

export type { DmaSegment };

/** What the device will do with a mapping: read memory (TO_DEVICE), write it, or both. */
export interface DmaMapAccess {
  read: boolean;
  write: boolean;
}

/**
 * The per-device DMA API (dma_map_sgtable / dma_unmap_sgtable). Called by exporters' mapDmaBuf
 * and drivers. Thread: kernel. Lock: none of its own.
 */
export interface DmaOps {
  /**
   * Map CPU-physical segments so the device can reach them; returns the device's DMA segments.
   * Throws: EINVAL naming a segment, ENOSPC when the IOVA space is exhausted.
   */
  mapSg(segs: readonly DmaSegment[], access: DmaMapAccess): DmaSegment[];
  /** Undo mapSg with exactly what it returned. EINVAL on a double unmap. */
  unmapSg(mapped: readonly DmaSegment[]): void;
}

export interface Device {
  /** dev_name(): unique on the host, used in every message about this device. */
  readonly name: string;
  /** The DMA API; absent for devices that cannot DMA. */
  readonly dma?: DmaOps;
  /** IOMMU requester id, when the device sits behind the host's IOMMU. */
  readonly iommuId?: number;
  /** PCI identity (topology node id), when the device is a PCI function. */
  readonly pciId?: string;
}

/** A device with no DMA translation: DMA addresses are CPU-physical (no IOMMU, passthrough). */
export function directDevice(name: string, pciId?: string): Device {
  return { name, pciId, dma: { mapSg: (segs) => segs.map((s) => ({ ...s })), unmapSg: () => {} } };
}

/** A device whose DMA goes through `domain` (a DMA or IDENTITY domain it is attached to). */
export function iommuDevice(name: string, iommuId: number, domain: IommuDomain, pciId?: string): Device {
  return {
    name,
    iommuId,
    pciId,
    dma: {
      mapSg: (segs, access) =>
        iommuDmaMapSg(domain, segs, (access.read ? IOMMU_READ : 0) | (access.write ? IOMMU_WRITE : 0)),
      unmapSg: (mapped) => iommuDmaUnmapSg(domain, mapped),
    },
  };
}

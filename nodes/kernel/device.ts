/**
 * struct device, reduced to what DMA mapping and the dma-buf core need: a name for messages, the
 * DMA translation the device's transactions go through, and its PCI identity for P2P decisions.
 * Drivers extend it; the dma-buf core only reads these fields.
 */
export interface Device {
  /** dev_name(): unique on the host, used in every message about this device. */
  readonly name: string;
  /**
   * Maps CPU-physical pages into this device's DMA address space (its IOMMU domain, or identity
   * when it has none). Called by exporters' mapDmaBuf. Absent for devices that cannot DMA.
   */
  readonly dma?: DmaOps;
  /** PCI identity (topology node id), when the device is a PCI function. */
  readonly pciId?: string;
}

/**
 * The per-device DMA mapping API (dma_map_page / dma_unmap_page analogue). Implementations live
 * with the IOMMU (kernel/iommu) and decide between an IOVA and a direct address.
 */
export interface DmaOps {
  /** Map `size` bytes at physical address `phys`; returns the DMA address. ENOMEM/ENOSPC on exhaustion. */
  mapPhys(phys: number, size: number, write: boolean): number;
  /** Unmap what mapPhys returned. EINVAL if `dmaAddress` was not mapped with that size. */
  unmap(dmaAddress: number, size: number): void;
}

/** A device with no DMA translation: DMA addresses are CPU-physical (no IOMMU, passthrough). */
export function directDevice(name: string, pciId?: string): Device {
  return {
    name,
    pciId,
    dma: {
      mapPhys: (phys) => phys,
      unmap: () => {},
    },
  };
}

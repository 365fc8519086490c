/**
 * The VFIO uAPI values and structures the vfio-pci core and its userspace share
 * (include/uapi/linux/vfio.h, include/uapi/linux/pci_regs.h). Kept apart from the core so the
 * dma-buf and TPH halves can use them without importing the core (no module cycle).
 *
 * Field names keep the kernel's snake_case: they are the ioctl structures userspace fills in.
 */

/** PCI_COMMAND register bits. */
export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;

/** VFIO region indices of a PCI device: BARs 0..5, then the ROM and config space. */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;

/** struct vfio_device_feature.flags: feature index in the low 16 bits, then the operation. */
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;

/** GET: export BAR ranges as a dma-buf; returns its fd (merged 2025). */
export const VFIO_DEVICE_FEATURE_DMA_BUF = 11;
/** SET: steering tag and processing hint for a dma-buf of this device (2026 series v2, unmerged). */
export const VFIO_DEVICE_FEATURE_DMA_BUF_TPH = 13;
/*
 * Matt Evans' proposals (Jun 2026, unmerged). Their numbers are not final: v3 of the revoke
 * series uses 13, which the TPH series above also claims, and 12 is MIG_PRECOPY_INFOv2
 * upstream; the emulator takes the next free numbers after TPH.
 */
/** SET: permanently revoke one dma-buf of this device (`{ dmabuf_fd }`), kernel-semantics §6.2 rule 11. */
export const VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE = 14;
/**
 * SET: memory attributes (NC / WC) for future mmaps of a dma-buf. Not implemented: the emulator has
 * no dma-buf mmap, so the feature is answered EOPNOTSUPP like any unknown one.
 */
export const VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR = 15;

/** struct vfio_region_dma_range. __u64 fields: a number (safe integer) or a bigint below 2^64. */
export interface VfioRegionDmaRange {
  offset: number | bigint;
  length: number | bigint;
}

/** struct vfio_device_feature_dma_buf (the feature's data). */
export interface VfioDeviceFeatureDmaBuf {
  region_index: number;
  /** Flags of the new fd: O_RDWR / O_CLOEXEC. */
  open_flags: number;
  /** Reserved: must be 0. */
  flags: number;
  nr_ranges: number;
  dma_ranges: readonly VfioRegionDmaRange[];
}

/** struct vfio_device_feature_dma_buf_tph (the feature's data). */
export interface VfioDeviceFeatureDmaBufTph {
  dmabuf_fd: number;
  steering_tag: number;
  /** 2-bit processing hint. */
  ph: number;
  /** Must be 0. */
  reserved?: number;
}

/** struct vfio_device_feature_dma_buf_revoke (the feature's data). */
export interface VfioDeviceFeatureDmaBufRevoke {
  /** A dma-buf fd this device exported with VFIO_DEVICE_FEATURE_DMA_BUF (__s32). */
  dmabuf_fd: number;
}

/**
 * TPH Completer Supported (DEVCAP2, PCI_EXP_DEVCAP2_TPH_COMP_MASK), same encoding as the
 * requester types: what steering tags this function understands when it is the target.
 */
export const PciTphCompleter = { NONE: 0, TPH_ONLY: 1, EXT_TPH: 3 } as const;
export type PciTphCompleter = (typeof PciTphCompleter)[keyof typeof PciTphCompleter];

/**
 * The vfio-dev model's command set: the "register header" shared by its model
 * (nodes/devices/vfio-dev/) and the kernel side that drives its queue (nodes/kernel/vfio/
 * vfio-dev.ts), as edu-layout.ts is for edu. Descriptors use the generic Sqe/Cqe words of
 * device-queue-layout.ts; this file only says what each word means per opcode.
 *
 *   FILL      ARG0 = BAR index, DST = byte offset in that BAR, LEN bytes of the byte ARG1 (0..255)
 *   CHECKSUM  ARG0 = BAR index, SRC = byte offset in that BAR, LEN bytes;
 *             Cqe.RESULT = CRC-32 (IEEE 802.3, zlib's crc32) of the bytes
 *
 * Both act on the device's own BAR memory. That memory is local to the device (a GPU's engines
 * reach VRAM the same way), so these are not DMAs and do not depend on the PCI command register:
 * memory decode only decides whether *peers* reach the BAR over PCIe.
 *
 * Every command completes with Cqe.STATUS 0, or -EINVAL for a BAR the device does not have, a
 * range that leaves the BAR, a LEN of 0 or above VFIO_DEV_MAX_LEN, or a FILL value above 255,
 * or -EOPNOTSUPP for an opcode the device does not know.
 *
 * DeviceInit.params: `bar<i>Region` (vfioDevBarParam(i)) is the MemRegion id of BAR i's backing
 * memory; the region itself is in DeviceInit.dma.phys.regions (the BAR is a window of the host's
 * phys map when the worker starts).
 */
import { DEVICE_OP_MODEL_MAX } from './device-queue-layout.ts';

export const VfioDevOp = {
  FILL: 1,
  CHECKSUM: 2,
} as const;
export type VfioDevOp = (typeof VfioDevOp)[keyof typeof VfioDevOp];

/** PCI_STD_NUM_BARS: BAR indices are 0..5. */
export const VFIO_DEV_NUM_BARS = 6;

/** Largest LEN one descriptor may carry: 1 GiB. */
export const VFIO_DEV_MAX_LEN = 1 << 30;

/** Name of the DeviceInit.params entry that carries BAR `index`'s region id. */
export function vfioDevBarParam(index: number): string {
  return `bar${index}Region`;
}

for (const v of Object.values(VfioDevOp)) {
  if (v < 1 || v > DEVICE_OP_MODEL_MAX)
    throw new Error(`vfio-dev-layout: opcode ${v} outside the model range`);
}

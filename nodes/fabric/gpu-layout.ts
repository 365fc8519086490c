/**
 * The GPU's command set: the "register header" its driver (nodes/kernel/gpu/) and its model
 * (nodes/devices/gpu/) share. Descriptors use the generic Sqe/Cqe words of
 * device-queue-layout.ts; this file says what each word means per opcode.
 *
 *   COPY      copy engine: SRC -> DST, LEN bytes
 *   FILL      compute: DST, LEN bytes of a repeating pattern: ARG0 holds the pattern (u32, its
 *             bytes taken little-endian), ARG1 its width in bytes (1, 2 or 4); byte i of the
 *             range is pattern byte (i % width), so the pattern is anchored at DST
 *   CHECKSUM  compute: SRC, LEN bytes; Cqe.RESULT = CRC-32 (IEEE 802.3, zlib's crc32)
 *
 * Addresses are GPU virtual addresses, which on this GPU are IOVAs of its own IOMMU domain
 * (the driver maps every buffer placement, VRAM or system memory, there), unless a FLAGS bit
 * says the address is a PCI bus address (peer-to-peer, P2PDMA BUS_ADDR: no translation, only
 * BAR windows answer). Either way every byte goes through fabric/dma.ts.
 *
 * Every command completes with Cqe.STATUS 0, or the DMA status (-EFAULT translation fault,
 * -EIO no target: both also leave an IOMMU fault record; -EINVAL address out of range), or
 * -EINVAL for a LEN of 0 or above GPU_MAX_LEN, a FILL width other than 1/2/4, or FLAGS bits the
 * opcode does not use, or -EOPNOTSUPP for an opcode the GPU does not know. Bytes of a failed
 * COPY/FILL before the fault have landed. COPY of overlapping ranges is undefined (the engine
 * copies forward in GPU_CHUNK pieces).
 */
import { DEVICE_OP_MODEL_MAX } from './device-queue-layout.ts';

export const GpuOp = {
  COPY: 1,
  FILL: 2,
  CHECKSUM: 3,
} as const;
export type GpuOp = (typeof GpuOp)[keyof typeof GpuOp];

/** Sqe.FLAGS bits: which addresses are PCI bus addresses instead of GPU VAs (IOVAs). */
export const GpuCmdFlag = {
  /** SRC is a bus address (COPY, CHECKSUM). */
  SRC_BUS: 1 << 0,
  /** DST is a bus address (COPY, FILL). */
  DST_BUS: 1 << 1,
} as const;
export type GpuCmdFlag = (typeof GpuCmdFlag)[keyof typeof GpuCmdFlag];

/** FLAGS bits each opcode accepts; any other bit is -EINVAL. */
export const GPU_OP_FLAGS: Readonly<Record<GpuOp, number>> = {
  [GpuOp.COPY]: GpuCmdFlag.SRC_BUS | GpuCmdFlag.DST_BUS,
  [GpuOp.FILL]: GpuCmdFlag.DST_BUS,
  [GpuOp.CHECKSUM]: GpuCmdFlag.SRC_BUS,
};

/** Largest LEN one descriptor may carry: 256 MiB. The driver splits longer copies. */
export const GPU_MAX_LEN = 256 << 20;

/** The engines' staging buffer: COPY, FILL and CHECKSUM move data in pieces of this. */
export const GPU_CHUNK = 64 << 10;

/** Widths FILL accepts for its pattern, in bytes. */
export const GPU_FILL_WIDTHS: readonly number[] = [1, 2, 4];

for (const v of Object.values(GpuOp)) {
  if (v < 1 || v > DEVICE_OP_MODEL_MAX) throw new Error(`gpu-layout: opcode ${v} outside the model range`);
}

/**
 * The edu DMA engine's command set: the "register header" its driver (nodes/kernel/drivers/
 * edu.ts) and its model (nodes/devices/edu/) share, as QEMU's hw/misc/edu.c and its Linux test
 * driver share the register map. Descriptors use the generic Sqe/Cqe words of
 * device-queue-layout.ts; this file only says what each word means per opcode.
 *
 *   COPY      SRC -> DST, LEN bytes (both IOVAs through the device's domain)
 *   FILL      DST, LEN bytes of the byte value ARG0 (0..255)
 *   CHECKSUM  SRC, LEN bytes; Cqe.RESULT = CRC-32 (IEEE 802.3, zlib's crc32) of the bytes
 *
 * Every command completes with Cqe.STATUS 0, or the DMA status (-EFAULT translation fault,
 * -EIO no target: both also leave an IOMMU fault record; -EINVAL address out of range), or
 * -EINVAL for a LEN of 0 or above EDU_MAX_LEN or a FILL value above 255, or -EOPNOTSUPP for an
 * opcode the engine does not know. Bytes of a failed COPY/FILL before the fault have landed.
 * COPY of overlapping ranges is undefined (the engine copies forward in EDU_CHUNK pieces).
 */
import { DEVICE_OP_MODEL_MAX } from './device-queue-layout.ts';

export const EduOp = {
  COPY: 1,
  FILL: 2,
  CHECKSUM: 3,
} as const;
export type EduOp = (typeof EduOp)[keyof typeof EduOp];

/** Largest LEN one descriptor may carry: 256 MiB. */
export const EDU_MAX_LEN = 256 << 20;

/** Size of the engine's internal bounce buffer: COPY and CHECKSUM move data in pieces of this. */
export const EDU_CHUNK = 64 << 10;

for (const v of Object.values(EduOp)) {
  if (v < 1 || v > DEVICE_OP_MODEL_MAX) throw new Error(`edu-layout: opcode ${v} outside the model range`);
}

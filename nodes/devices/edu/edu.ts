/**
 * edu: the smallest device with a DMA engine (QEMU's hw/misc/edu.c, reduced to its DMA block
 * and given a descriptor queue instead of one register set). Command set and errors in
 * fabric/edu-layout.ts.
 *
 * The engine owns one EDU_CHUNK bounce buffer, like edu's internal 4 KiB buffer: COPY reads a
 * piece from SRC into it and writes it to DST, CHECKSUM reads pieces and folds them into a
 * CRC-32. Every byte moves through fabric/dma.ts (dmaRead/dmaWrite/dmaFill), so translation,
 * faults and the routing-point hook are the IOMMU's business, as pci_dma_read/pci_dma_write are
 * in QEMU. Misprogramming returns an errno for the completion; nothing here throws.
 *
 * Runs inside the device worker; imports only fabric/ and the runtime.
 */
import { crc32 } from 'node:zlib';
import { Errno } from '../../../common/errno.ts';
import { DmaStatus, dmaFill, dmaRead, dmaWrite } from '../../fabric/dma.ts';
import { EDU_CHUNK, EDU_MAX_LEN, EduOp } from '../../fabric/edu-layout.ts';
import type { DeviceCommand, DeviceModel, DeviceRuntime } from '../device-runtime.ts';

/** Statistics a test or a trace consumer may read from the model (worker-local). */
export interface EduStats {
  copies: number;
  fills: number;
  checksums: number;
  bytes: number;
}

/** The edu DMA engine as a DeviceModel. One per worker (the bounce buffer is the engine's). */
export class EduModel implements DeviceModel {
  readonly name = 'edu';
  readonly stats: EduStats = { copies: 0, fills: 0, checksums: 0, bytes: 0 };
  private readonly bounce = new Uint8Array(EDU_CHUNK);

  /**
   * Execute one edu command. Called by: DeviceRuntime.drain(), device worker.
   * Returns 0 or the completion's negative errno (see fabric/edu-layout.ts).
   */
  execute(rt: DeviceRuntime, cmd: DeviceCommand): number {
    switch (cmd.opcode) {
      case EduOp.COPY:
        return this.copy(rt, cmd);
      case EduOp.FILL:
        return this.fill(rt, cmd);
      case EduOp.CHECKSUM:
        return this.checksum(rt, cmd);
      default:
        return -Errno.EOPNOTSUPP;
    }
  }

  private copy(rt: DeviceRuntime, cmd: DeviceCommand): number {
    if (!validLen(cmd.len)) return -Errno.EINVAL;
    const buf = this.bounce;
    for (let off = 0; off < cmd.len; off += EDU_CHUNK) {
      const n = Math.min(EDU_CHUNK, cmd.len - off);
      let s = dmaRead(rt.dma, cmd.src + off, n, buf, 0);
      if (s !== DmaStatus.OK) return s;
      s = dmaWrite(rt.dma, cmd.dst + off, buf, 0, n);
      if (s !== DmaStatus.OK) return s;
    }
    this.stats.copies++;
    this.stats.bytes += cmd.len;
    return 0;
  }

  private fill(rt: DeviceRuntime, cmd: DeviceCommand): number {
    if (!validLen(cmd.len) || cmd.arg0 < 0 || cmd.arg0 > 0xff) return -Errno.EINVAL;
    const s = dmaFill(rt.dma, cmd.dst, cmd.arg0, cmd.len);
    if (s !== DmaStatus.OK) return s;
    this.stats.fills++;
    this.stats.bytes += cmd.len;
    return 0;
  }

  private checksum(rt: DeviceRuntime, cmd: DeviceCommand): number {
    if (!validLen(cmd.len)) return -Errno.EINVAL;
    const buf = this.bounce;
    let crc = 0;
    for (let off = 0; off < cmd.len; off += EDU_CHUNK) {
      const n = Math.min(EDU_CHUNK, cmd.len - off);
      const s = dmaRead(rt.dma, cmd.src + off, n, buf, 0);
      if (s !== DmaStatus.OK) return s;
      crc = crc32(buf.subarray(0, n), crc);
    }
    cmd.result = crc >>> 0;
    this.stats.checksums++;
    this.stats.bytes += cmd.len;
    return 0;
  }
}

function validLen(len: number): boolean {
  return len > 0 && len <= EDU_MAX_LEN;
}

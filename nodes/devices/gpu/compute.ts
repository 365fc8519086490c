/**
 * The GPU's compute block, reduced to two fixed kernels the driver can launch: FILL (write a
 * repeating 1-, 2- or 4-byte pattern) and CHECKSUM (CRC-32 of a range, reported in the
 * completion). A real GPU runs these as shaders over its VM; here they are loops over one
 * staging buffer, and every byte still crosses fabric/dma.ts.
 *
 * Runs inside the device worker.
 */
import { crc32 } from 'node:zlib';
import { DmaStatus, dmaFill } from '../../fabric/dma.ts';
import { GPU_CHUNK, GpuCmdFlag } from '../../fabric/gpu-layout.ts';
import type { DeviceCommand, DeviceRuntime } from '../device-runtime.ts';
import { gpuDmaRead, gpuDmaWrite } from './copy-engine.ts';

/** The compute block's state: one staging buffer and counters. One per GPU model. */
export class GpuCompute {
  fills = 0;
  checksums = 0;
  bytes = 0;
  private readonly stage = new Uint8Array(GPU_CHUNK);

  /**
   * FILL: ARG0 = pattern, ARG1 = width (checked by the model). Called by: GpuModel.execute().
   * Returns 0 or the DMA status.
   */
  fill(rt: DeviceRuntime, cmd: DeviceCommand): number {
    const width = cmd.arg1;
    const bus = (cmd.flags & GpuCmdFlag.DST_BUS) !== 0;
    let s: number;
    if (width === 1 && !bus) {
      // One byte value: the routing point fills without a staging copy.
      s = dmaFill(rt.dma, cmd.dst, cmd.arg0 & 0xff, cmd.len);
    } else {
      const buf = this.stage;
      // GPU_CHUNK is a multiple of every width, so each piece starts at pattern byte 0.
      for (let i = 0; i < buf.length; i++) buf[i] = (cmd.arg0 >>> (8 * (i % width))) & 0xff;
      s = DmaStatus.OK;
      for (let off = 0; off < cmd.len && s === DmaStatus.OK; off += GPU_CHUNK) {
        s = gpuDmaWrite(rt, bus, cmd.dst + off, buf, Math.min(GPU_CHUNK, cmd.len - off));
      }
    }
    if (s !== DmaStatus.OK) return s;
    this.fills++;
    this.bytes += cmd.len;
    return 0;
  }

  /** CHECKSUM: cmd.result = CRC-32 of the range. Called by: GpuModel.execute(). */
  checksum(rt: DeviceRuntime, cmd: DeviceCommand): number {
    const bus = (cmd.flags & GpuCmdFlag.SRC_BUS) !== 0;
    const buf = this.stage;
    let crc = 0;
    for (let off = 0; off < cmd.len; off += GPU_CHUNK) {
      const n = Math.min(GPU_CHUNK, cmd.len - off);
      const s = gpuDmaRead(rt, bus, cmd.src + off, n, buf);
      if (s !== DmaStatus.OK) return s;
      crc = crc32(buf.subarray(0, n), crc);
    }
    cmd.result = crc >>> 0;
    this.checksums++;
    this.bytes += cmd.len;
    return 0;
  }
}

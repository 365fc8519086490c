/**
 * The GPU's copy engine (amdgpu's SDMA, a DMA engine separate from the shader cores): COPY
 * moves LEN bytes from SRC to DST, GPU_CHUNK at a time, each piece one memory-to-memory DMA
 * (dmaCopy: a memmove when both ends are in the host's memory arena, instead of two copies
 * through a staging buffer, each at `set` speed on shared memory). Either side
 * may be a GPU VA (an IOVA of the GPU's own IOMMU domain: its VRAM and the system pages the
 * driver mapped) or a PCI bus address of a peer's BAR (GpuCmdFlag.SRC_BUS / DST_BUS).
 *
 * Runs inside the device worker; reaches memory only through fabric/dma.ts.
 */
import { DmaStatus, dmaCopy, dmaRead, dmaReadBus, dmaWrite, dmaWriteBus } from '../../fabric/dma.ts';
import { GPU_CHUNK, GpuCmdFlag } from '../../fabric/gpu-layout.ts';
import type { DeviceCommand, DeviceRuntime } from '../device-runtime.ts';

/**
 * Read `n` bytes at `addr` (a GPU VA, or a bus address when `bus`) into `buf[0..n)`.
 * Called by: the GPU's engines, device worker. Returns the DMA status.
 */
export function gpuDmaRead(
  rt: DeviceRuntime,
  bus: boolean,
  addr: number,
  n: number,
  buf: Uint8Array,
): number {
  return bus ? dmaReadBus(rt.dma, addr, n, buf, 0) : dmaRead(rt.dma, addr, n, buf, 0);
}

/** Write `buf[0..n)` at `addr` (a GPU VA, or a bus address when `bus`). Returns the DMA status. */
export function gpuDmaWrite(
  rt: DeviceRuntime,
  bus: boolean,
  addr: number,
  buf: Uint8Array,
  n: number,
): number {
  return bus ? dmaWriteBus(rt.dma, addr, buf, 0, n) : dmaWrite(rt.dma, addr, buf, 0, n);
}

/** One copy engine. One per GPU model (per worker). */
export class GpuCopyEngine {
  copies = 0;
  bytes = 0;

  /**
   * Execute COPY (length and flags already checked by the model).
   * Called by: GpuModel.execute(), device worker. Returns 0 or the DMA status of the piece that
   * failed (earlier runs have landed, as completed TLPs do).
   */
  copy(rt: DeviceRuntime, cmd: DeviceCommand): number {
    const srcBus = (cmd.flags & GpuCmdFlag.SRC_BUS) !== 0;
    const dstBus = (cmd.flags & GpuCmdFlag.DST_BUS) !== 0;
    for (let off = 0; off < cmd.len; off += GPU_CHUNK) {
      const n = Math.min(GPU_CHUNK, cmd.len - off);
      const s = dmaCopy(rt.dma, cmd.src + off, srcBus, rt.dma, cmd.dst + off, dstBus, n);
      if (s !== DmaStatus.OK) return s;
    }
    this.copies++;
    this.bytes += cmd.len;
    return 0;
  }
}

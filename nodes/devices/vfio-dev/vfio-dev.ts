/**
 * vfio-dev: a simple PCI function with up to six memory BARs, the device a VFIO user exports as
 * a dma-buf (kernel side: nodes/kernel/vfio/). Its queue carries two commands over its own BAR
 * memory, FILL and CHECKSUM (fabric/vfio-dev-layout.ts), so a test can check what a peer (an
 * RDMA NIC, a GPU) wrote into the BAR without the kernel reading it for them.
 *
 * The BARs are the device's own memory: it reaches them locally, not by DMA, whatever the PCI
 * command register says (decode only governs peer access over PCIe). Peers reach the same bytes
 * through their translation or a P2P bus address at fabric/dma.ts's routing point.
 *
 * Misprogramming returns an errno for the completion; nothing here throws. Runs inside the
 * device worker; imports only fabric/, common/ and the runtime.
 */
import { crc32 } from 'node:zlib';
import { Errno } from '../../../common/errno.ts';
import type { DeviceInit } from '../../fabric/device-queue-layout.ts';
import { memRegionBytes, type TphStatsSnapshot, tphStatsRead } from '../../fabric/phys-map-layout.ts';
import {
  VFIO_DEV_MAX_LEN,
  VFIO_DEV_NUM_BARS,
  VfioDevOp,
  vfioDevBarParam,
} from '../../fabric/vfio-dev-layout.ts';
import type { DeviceCommand, DeviceModel, DeviceRuntime } from '../device-runtime.ts';

/** Statistics a test or a trace consumer may read from the model (worker-local). */
export interface VfioDevStats {
  fills: number;
  checksums: number;
  bytes: number;
}

/**
 * Find each BAR's backing memory in the phys map the worker was started with. A BAR whose
 * region is missing (bad params) is treated as absent: its commands complete with -EINVAL.
 */
function barsFromInit(init: DeviceInit): (Uint8Array | null)[] {
  const bars: (Uint8Array | null)[] = [];
  for (let i = 0; i < VFIO_DEV_NUM_BARS; i++) {
    const id = init.params?.[vfioDevBarParam(i)];
    const r = typeof id === 'number' ? init.dma.phys.regions.find((x) => x.id === id) : undefined;
    bars.push(r ? memRegionBytes(r) : null);
  }
  return bars;
}

/** The vfio-dev engine as a DeviceModel. One per worker. */
export class VfioDevModel implements DeviceModel {
  readonly name = 'vfio-dev';
  readonly stats: VfioDevStats = { fills: 0, checksums: 0, bytes: 0 };
  private readonly bars: (Uint8Array | null)[];
  private readonly init: DeviceInit;

  constructor(init: DeviceInit) {
    this.init = init;
    this.bars = barsFromInit(init);
  }

  /**
   * The TPH hints BAR `bar` received (a TPH completer's BAR has a statistics block in its phys
   * map window, updated by the routing point); null without one. Worker side of scenario 6.
   */
  tphStats(bar: number): TphStatsSnapshot | null {
    const id = this.init.params?.[vfioDevBarParam(bar)];
    const w = this.init.dma.phys.windows.find((x) => x.regionId === id && x.tphStats !== undefined);
    return w?.tphStats ? tphStatsRead(w.tphStats) : null;
  }

  /**
   * Execute one command. Called by: DeviceRuntime.drain(), device worker.
   * Returns 0 or the completion's negative errno (see fabric/vfio-dev-layout.ts).
   */
  execute(_rt: DeviceRuntime, cmd: DeviceCommand): number {
    switch (cmd.opcode) {
      case VfioDevOp.FILL:
        return this.fill(cmd);
      case VfioDevOp.CHECKSUM:
        return this.checksum(cmd);
      default:
        return -Errno.EOPNOTSUPP;
    }
  }

  // The BAR bytes [offset, offset + len), or null when the command names no such range.
  private range(bar: number, offset: number, len: number): Uint8Array | null {
    const mem = bar >= 0 && bar < VFIO_DEV_NUM_BARS ? this.bars[bar] : null;
    if (mem === null || len <= 0 || len > VFIO_DEV_MAX_LEN) return null;
    if (offset < 0 || offset + len > mem.length) return null;
    return mem.subarray(offset, offset + len);
  }

  private fill(cmd: DeviceCommand): number {
    const dst = this.range(cmd.arg0, cmd.dst, cmd.len);
    if (dst === null || cmd.arg1 < 0 || cmd.arg1 > 0xff) return -Errno.EINVAL;
    dst.fill(cmd.arg1);
    this.stats.fills++;
    this.stats.bytes += cmd.len;
    return 0;
  }

  private checksum(cmd: DeviceCommand): number {
    const src = this.range(cmd.arg0, cmd.src, cmd.len);
    if (src === null) return -Errno.EINVAL;
    cmd.result = crc32(src) >>> 0;
    this.stats.checksums++;
    this.stats.bytes += cmd.len;
    return 0;
  }
}

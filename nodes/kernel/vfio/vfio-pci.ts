/**
 * The vfio-pci driver (drivers/vfio/pci/vfio_pci.c): probe of a PCI function for VFIO use and its
 * removal. Probe gives the function a DMA requester behind the IOMMU, places each implemented BAR
 * as a window of the host's phys map (HostKernel.addDeviceMemory; decode on, as firmware left it)
 * and starts the device model's worker; remove is hot-unplug. Everything else a VFIO user does
 * goes through the core (vfio-pci-core.ts) via the device fd (nodes/uapi/vfio.ts).
 *
 * Thread: kernel (main thread).
 */
import { err } from '../../../common/errno.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { type TphStatsSnapshot, tphStatsCreate, tphStatsRead } from '../../fabric/phys-map-layout.ts';
import { VFIO_DEV_NUM_BARS } from '../../fabric/vfio-dev-layout.ts';
import type { HostKernel } from '../kernel.ts';
import { vfioDevSpawn } from './vfio-dev.ts';
import {
  type VfioPciBar,
  VfioPciCoreDevice,
  type VfioPciProbeOptions,
  vfioPciCoreCloseDevice,
} from './vfio-pci-core.ts';
import { PciTphCompleter } from './vfio-uapi.ts';

export type { VfioPciBar, VfioPciBarSpec, VfioPciProbeOptions } from './vfio-pci-core.ts';

// The functions probed on each host, by name (the vfio device list of /dev/vfio/devices).
const registry = new WeakMap<HostKernel, Map<string, VfioPciCoreDevice>>();

function checkBars(fn: string, bars: VfioPciProbeOptions['bars']): void {
  if (!Array.isArray(bars) || bars.length === 0 || bars.length > VFIO_DEV_NUM_BARS) {
    throw err('EINVAL', `${fn}: opts.bars must list 1 to ${VFIO_DEV_NUM_BARS} BARs`);
  }
  if (!bars.some((b) => b)) throw err('EINVAL', `${fn}: opts.bars has no implemented BAR`);
  bars.forEach((b, i) => {
    if (!b) return;
    const s = b.size;
    if (!(Number.isInteger(s) && s >= PAGE_SIZE && s <= 2 ** 32 && Number.isInteger(Math.log2(s)))) {
      throw err('EINVAL', `${fn}: opts.bars[${i}].size ${s} must be a power of two in [${PAGE_SIZE}, 2^32]`);
    }
  });
}

/**
 * Probe a vfio-pci function on `kernel`: a DMA requester behind the IOMMU, one BAR window per
 * implemented BAR (HostKernel.addDeviceMemory, decode on), and its device worker.
 * Called by: host boot, tests. Thread: kernel.
 * Throws: EINVAL naming an option; EEXIST if `name` is taken; ENOSPC (MMIO range); ENODEV.
 */
export function vfioPciProbe(kernel: HostKernel, name: string, opts: VfioPciProbeOptions): VfioPciCoreDevice {
  const fn = `vfioPciProbe(${name})`;
  if (!opts || typeof opts !== 'object') throw err('EINVAL', `${fn}: opts missing`);
  checkBars(fn, opts.bars);
  const dev = kernel.addDevice(name, { pciId: opts.pciId });
  const bars: (VfioPciBar | null)[] = [];
  for (let i = 0; i < VFIO_DEV_NUM_BARS; i++) {
    const spec = opts.bars[i];
    if (!spec) {
      bars.push(null);
      continue;
    }
    const { region } = kernel.addDeviceMemory(`${name}.bar${i}`, spec.size);
    const win = kernel.physMap.view.windows.find((w) => w.regionId === region.id);
    if (!win) throw err('ENODEV', `${fn}: BAR${i} window was not placed`);
    // a TPH completer counts the hints it receives per BAR (scenario 6; docs/tph.md).
    const tphStats =
      (opts.tphCompleter ?? PciTphCompleter.NONE) !== PciTphCompleter.NONE ? tphStatsCreate() : null;
    if (tphStats) kernel.physMap.setWindowTphStats(win.phys, tphStats);
    bars.push({
      tphStats,
      index: i,
      size: spec.size,
      mmap: spec.mmap !== false,
      region,
      phys: win.phys,
      busOffset: win.busOffset,
    });
  }
  const vdev = new VfioPciCoreDevice(kernel, name, dev, bars, opts);
  vdev.host = vfioDevSpawn(vdev, { queueDepth: opts.queueDepth, hangTimeoutMs: opts.hangTimeoutMs });
  let devices = registry.get(kernel);
  if (!devices) registry.set(kernel, (devices = new Map()));
  devices.set(name, vdev);
  return vdev;
}

/**
 * The TPH hints BAR `bar` of `vdev` received so far (kernel-semantics §4.6 scenario 6): DMA runs
 * and bytes that landed in the BAR, unhinted, hinted, per PH and per ST slot (tag modulo
 * TPH_STATS_ST_SLOTS). Counted per run at the routing point, not per TLP (docs/tph.md). The
 * device model reads the same block (VfioDevModel.tphStats). Tests and diagnostics; no uapi.
 * Throws: EINVAL (no such BAR); EOPNOTSUPP (the function is no TPH completer: nothing counted).
 */
export function vfioPciTphStats(vdev: VfioPciCoreDevice, bar: number): TphStatsSnapshot {
  const b = Number.isInteger(bar) && bar >= 0 ? vdev.bars[bar] : undefined;
  if (!b) throw err('EINVAL', `vfioPciTphStats: bar ${String(bar)}: ${vdev.name} has no such BAR`);
  if (!b.tphStats) throw err('EOPNOTSUPP', `vfioPciTphStats: ${vdev.name} is no TPH completer`);
  return tphStatsRead(b.tphStats);
}

/** The vfio-pci function `name` on `kernel`. Throws: ENODEV. */
export function vfioPciFind(kernel: HostKernel, name: string): VfioPciCoreDevice {
  const vdev = registry.get(kernel)?.get(name);
  if (!vdev) throw err('ENODEV', `vfio-pci: no device named ${JSON.stringify(name)} on ${kernel.name}`);
  return vdev;
}

/**
 * Hot-unplug: close the device if it is still open (permanent revoke of its buffers), stop its
 * worker and take its BARs off the bus. Idempotent. Later opens fail ENODEV; buffers still
 * held by userspace stay revoked and release cleanly when their fds close.
 * Called by: host teardown, tests (afterEach). Throws: ETIMEDOUT from the close's revoke (after
 * the device is gone).
 */
export async function vfioPciRemove(vdev: VfioPciCoreDevice): Promise<void> {
  if (vdev.removed) return;
  let closeError: unknown = null;
  if (vdev.openCount > 0) {
    vdev.openCount = 1;
    await vfioPciCoreCloseDevice(vdev).catch((e) => {
      closeError = e;
    });
  }
  vdev.removed = true;
  registry.get(vdev.kernel)?.delete(vdev.name);
  try {
    await vdev.host.close(1_000);
  } finally {
    if (vdev.host.alive) await vdev.host.destroy();
    await vdev.host.exited;
    vdev.syncWindows();
  }
  if (closeError) throw closeError;
}

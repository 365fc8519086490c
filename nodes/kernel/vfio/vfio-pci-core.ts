/**
 * vfio-pci core (drivers/vfio/pci/vfio_pci_core.c), reduced to what exporting BARs as dma-bufs
 * needs: the device state, open/close of its device fd, the PCI command register's MEMORY
 * decode bit, function-level reset, and VFIO_DEVICE_FEATURE dispatch. Probe and removal are
 * vfio-pci.ts; the dma-buf side is vfio-pci-dmabuf.ts (export), vfio-pci-revoke.ts (revoke) and
 * vfio-pci-tph.ts; the device's queue is vfio-dev.ts.
 *
 * DOC: BAR accessibility and revoke (kernel-semantics §6.2 rules 4, 7, 10)
 * Peers reach a BAR only while its memory decode is on: clearing PCI_COMMAND_MEMORY removes the
 * BAR windows from the host's phys map (a TLP to them is then an Unsupported Request), setting it
 * places them again at the same addresses. Every change that makes BARs unreachable first
 * revokes every exported dma-buf of the device (vfioPciDmaBufMove(vdev, true)); making them
 * reachable again un-revokes them:
 *  - decode off (command write) .... revoke; decode on .... un-revoke;
 *  - reset (VFIO_DEVICE_RESET, FLR) . revoke, reset, un-revoke if decode is on;
 *  - last close of the device fd .... permanent revoke of every buffer, which also leaves the
 *                                     device's list (vfioPciDmaBufCleanup);
 *  - VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE  permanent revoke of one buffer (BARs stay reachable).
 * A buffer revoked for good is never un-revoked (vfio-pci-revoke.ts, DOC: states).
 * A revoke that times out (an importer that never unmaps, a fence that never signals) does not
 * stop the state change: the command, reset or close completes, then rejects with ETIMEDOUT
 * naming the buffer (the kernel WARNs and goes on).
 *
 * DOC: locking
 * memory_lock (vdev.memoryLock; Linux: an rw_semaphore taken for write on these paths)
 * serialises every change of BAR accessibility with the device's dma-buf list: export adds under
 * it, revoke and cleanup walk the list under it. Order: memory_lock, then a buffer's resv lock.
 * The map path takes only the resv lock, so importers can unmap while a revoke waits for them.
 *
 * Thread: kernel (main thread).
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import type { Topology } from '../../../topology/model.ts';
import { P2pdmaMapCache, type P2pdmaClient, P2pdmaMapType } from '../../../topology/p2pdma.ts';
import { hex } from '../../fabric/page.ts';
import { PhysWindowKind } from '../../fabric/phys-map-layout.ts';
import type { Device } from '../device.ts';
import type { DeviceHost } from '../drivers/device-host.ts';
import type { FdTable } from '../fs/file.ts';
import type { HostKernel } from '../kernel.ts';
import { WwMutex } from '../locking/ww-mutex.ts';
import type { MemRegion } from '../mm/region.ts';
import {
  type VfioPciDmaBuf,
  vfioPciCoreFeatureDmaBuf,
  vfioPciCoreFeatureDmaBufRevoke,
} from './vfio-pci-dmabuf.ts';
import { vfioPciDmaBufCleanup, vfioPciDmaBufMove } from './vfio-pci-revoke.ts';
import { vfioPciCoreFeatureDmaBufTph } from './vfio-pci-tph.ts';
import {
  PCI_COMMAND_MEMORY,
  PciTphCompleter,
  VFIO_DEVICE_FEATURE_DMA_BUF,
  VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
  VFIO_DEVICE_FEATURE_DMA_BUF_TPH,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
} from './vfio-uapi.ts';

export * from './vfio-uapi.ts';

/** One BAR as probe is asked for it. `size`: a power of two >= PAGE_SIZE, at most 4 GiB. */
export interface VfioPciBarSpec {
  size: number;
  /** VFIO_REGION_INFO_FLAG_MMAP: may userspace (and a dma-buf) map it? Default true. */
  mmap?: boolean;
}

export interface VfioPciProbeOptions {
  /** BARs 0..5; null or absent entries are unimplemented BARs. At least one. */
  bars: readonly (VfioPciBarSpec | null | undefined)[];
  /** Topology node id of this function, for P2PDMA decisions. */
  pciId?: string;
  /** The host's PCIe tree; without it every importer gets `defaultMapType`. */
  topology?: Topology;
  /** Map type when no topology is given. Default THRU_HOST_BRIDGE (IOVA through the IOMMU). */
  defaultMapType?: P2pdmaMapType;
  /** TPH completer support of this function (DEVCAP2). Default NONE. */
  tphCompleter?: PciTphCompleter;
  /** Revoke: how long to wait for the buffer's fences (the kernel waits forever). Default 10 s. */
  revokeFenceTimeoutMs?: number;
  /** Revoke: how long to wait for importers to unmap (the kernel's 1 s). Default 1 s. */
  revokeUnmapTimeoutMs?: number;
  queueDepth?: number;
  hangTimeoutMs?: number;
}

/** A probed BAR: backing memory and where its window sits while decode is on. */
export interface VfioPciBar {
  readonly index: number;
  readonly size: number;
  readonly mmap: boolean;
  readonly region: MemRegion;
  /** CPU physical address of the BAR (pci_resource_start), fixed for the device's life. */
  readonly phys: number;
  readonly busOffset: number;
  /**
   * Hint statistics block of the BAR's window (a TPH completer's BARs only; null otherwise): the
   * routing point counts each DMA run that lands in the BAR, with its {PH, ST} (docs/tph.md).
   */
  readonly tphStats: SharedArrayBuffer | null;
}

/** struct vfio_pci_core_device, reduced. Build with vfioPciProbe() (vfio-pci.ts). */
export class VfioPciCoreDevice {
  readonly name: string;
  readonly kernel: HostKernel;
  /** The function as a DMA requester (its own IOMMU domain). */
  readonly dev: Device;
  readonly pciId: string | undefined;
  readonly bars: readonly (VfioPciBar | null)[];
  readonly tphCompleter: PciTphCompleter;
  readonly revokeFenceTimeoutMs: number;
  readonly revokeUnmapTimeoutMs: number;
  /** memory_lock (see DOC: locking). */
  readonly memoryLock: WwMutex;
  /** vdev->dmabufs: exported buffers not yet released or cleaned up. Changed under memoryLock. */
  readonly dmabufs = new Set<VfioPciDmaBuf>();
  /** The PCI command register. */
  command = PCI_COMMAND_MEMORY;
  /** Device fds open (open_count); open_device on 0 -> 1, close_device on 1 -> 0. */
  openCount = 0;
  /** vfio_device registration references held by dma-bufs (§6.2 rule 3). */
  registrations = 0;
  removed = false;
  /** A function-level reset is in progress: BARs do not decode whatever the command says. */
  inReset = false;
  /** The command register as open_device left it (pci_save_state), restored at close. */
  savedCommand = PCI_COMMAND_MEMORY;
  /** The device queue (vfio-dev.ts), started by probe. */
  host!: DeviceHost;
  private windowsPlaced = true;
  private readonly topology: Topology | undefined;
  private readonly defaultMapType: P2pdmaMapType;
  private readonly p2pCache = new P2pdmaMapCache();

  constructor(
    kernel: HostKernel,
    name: string,
    dev: Device,
    bars: (VfioPciBar | null)[],
    opts: VfioPciProbeOptions,
  ) {
    this.kernel = kernel;
    this.name = name;
    this.dev = dev;
    this.bars = bars;
    this.pciId = opts.pciId;
    this.topology = opts.topology;
    this.defaultMapType = opts.defaultMapType ?? P2pdmaMapType.THRU_HOST_BRIDGE;
    this.tphCompleter = opts.tphCompleter ?? PciTphCompleter.NONE;
    this.revokeFenceTimeoutMs = opts.revokeFenceTimeoutMs ?? 10_000;
    this.revokeUnmapTimeoutMs = opts.revokeUnmapTimeoutMs ?? 1_000;
    this.memoryLock = new WwMutex(`${name}:memory_lock`);
  }

  /** __vfio_pci_memory_enabled(): decode on and not in the middle of a reset. */
  memoryEnabled(): boolean {
    return (this.command & PCI_COMMAND_MEMORY) !== 0 && !this.inReset;
  }

  /** pci_p2pdma_map_type() for this function as provider and `client` (cached, §3.2 rule 6). */
  p2pdmaMapType(client: Device): P2pdmaMapType {
    if (!this.topology || !this.pciId) return this.defaultMapType;
    const c: P2pdmaClient = client.pciId ?? { kind: 'non-pci', name: client.name };
    return this.p2pCache.get(this.topology, this.pciId, c).mapType;
  }

  toString(): string {
    return `vfio-pci ${this.name}`;
  }

  /** Place or remove every BAR window so the phys map matches memoryEnabled(). */
  syncWindows(): void {
    const want = this.memoryEnabled() && !this.removed;
    if (want === this.windowsPlaced) return;
    const physMap = this.kernel.physMap;
    for (const b of this.bars) {
      if (!b) continue;
      if (want) {
        const name = `${this.name}.bar${b.index}`;
        physMap.addWindow({
          kind: PhysWindowKind.BAR,
          name,
          phys: b.phys,
          region: b.region,
          busOffset: b.busOffset,
          ...(b.tphStats ? { tphStats: b.tphStats } : {}),
        });
      } else physMap.removeWindow(b.phys);
    }
    this.windowsPlaced = want;
  }

  /** Run `fn` with memory_lock held (released on every exit path). */
  async withMemoryLock<T>(fn: () => Promise<T>): Promise<T> {
    await this.memoryLock.lock(null);
    try {
      return await fn();
    } finally {
      this.memoryLock.unlock();
    }
  }
}

/**
 * open_device: the first open enables the function (pci_enable_device: memory decode on) and
 * saves its command register for close. Called by: the device fd open (uapi). Throws: ENODEV
 * once the device is removed.
 */
export function vfioPciCoreOpenDevice(vdev: VfioPciCoreDevice): void {
  if (vdev.removed) throw err('ENODEV', `vfio_pci_core_open_device: ${vdev} was removed`);
  if (vdev.openCount++ > 0) return;
  vdev.command |= PCI_COMMAND_MEMORY;
  vdev.syncWindows();
  vdev.savedCommand = vdev.command;
}

/**
 * close_device on the last close: every exported buffer is permanently revoked and leaves the
 * device (vfio_pci_dma_buf_cleanup), then the command register saved at open is restored.
 * Called by: release of the last device fd. Lock: takes memory_lock.
 * Throws: EINVAL if the device is not open; ETIMEDOUT (after closing) naming a buffer whose
 * importers did not unmap or whose fences did not signal in time.
 */
export async function vfioPciCoreCloseDevice(vdev: VfioPciCoreDevice): Promise<void> {
  if (vdev.openCount === 0) {
    if (vdev.removed) return; // vfioPciRemove closed it already
    throw err('EINVAL', `vfio_pci_core_close_device: ${vdev} is not open`);
  }
  if (--vdev.openCount > 0) return;
  const errors = await vdev.withMemoryLock(async () => {
    const e = await vfioPciDmaBufCleanup(vdev);
    vdev.command = vdev.savedCommand;
    vdev.syncWindows();
    return e;
  });
  if (errors.length > 0) throw errors[0];
}

function requireOpen(fn: string, vdev: VfioPciCoreDevice): void {
  if (vdev.removed) throw err('ENODEV', `${fn}: ${vdev} was removed`);
  if (vdev.openCount === 0) throw err('ENODEV', `${fn}: ${vdev} is not open`);
}

/**
 * Config space write of PCI_COMMAND (vfio_basic_config_write): clearing MEMORY revokes every
 * buffer and then stops decode; setting it starts decode and un-revokes them (DOC above).
 * Called by: the device fd (uapi). Lock: takes memory_lock.
 * Throws: EINVAL naming `command` (not a u16); ENODEV if not open; ETIMEDOUT (after the write)
 * from a revoke that did not finish.
 */
export async function vfioPciCoreWriteCommand(vdev: VfioPciCoreDevice, command: number): Promise<void> {
  const fn = 'vfio_pci_core_write_command';
  if (!(Number.isInteger(command) && command >= 0 && command <= 0xffff)) {
    throw err('EINVAL', `${fn}: command ${command} must be a 16-bit register value`);
  }
  requireOpen(fn, vdev);
  const errors = await vdev.withMemoryLock(async () => {
    const old = vdev.command;
    const memOff = (old & PCI_COMMAND_MEMORY) !== 0 && (command & PCI_COMMAND_MEMORY) === 0;
    const memOn = (old & PCI_COMMAND_MEMORY) === 0 && (command & PCI_COMMAND_MEMORY) !== 0;
    // Revoke before decode goes off: importers stop while their addresses still work.
    const e = memOff ? await vfioPciDmaBufMove(vdev, true, 'memory decode off') : [];
    vdev.command = command;
    vdev.syncWindows();
    trace('vfioCommand', () => ({ dev: vdev.name, old: hex(old), command: hex(command) }));
    if (memOn) e.push(...(await vfioPciDmaBufMove(vdev, false, 'memory decode on')));
    return e;
  });
  if (errors.length > 0) throw errors[0];
}

/**
 * VFIO_DEVICE_RESET: function-level reset. Buffers are revoked for the duration (the BARs stop
 * decoding while the function resets) and un-revoked afterwards if decode is on; the command
 * register is restored (pci_reset_function saves and restores config space). BAR contents and
 * the device queue are left as they are.
 * Called by: the device fd (uapi). Lock: takes memory_lock.
 * Throws: ENODEV if not open; ETIMEDOUT (after the reset) from a revoke that did not finish.
 */
export async function vfioPciCoreReset(vdev: VfioPciCoreDevice): Promise<void> {
  requireOpen('VFIO_DEVICE_RESET', vdev);
  const errors = await vdev.withMemoryLock(async () => {
    const e = await vfioPciDmaBufMove(vdev, true, 'reset');
    vdev.inReset = true;
    vdev.syncWindows();
    trace('vfioReset', () => ({ dev: vdev.name, command: hex(vdev.command) }));
    vdev.inReset = false;
    vdev.syncWindows();
    if (vdev.memoryEnabled()) e.push(...(await vfioPciDmaBufMove(vdev, false, 'reset done')));
    return e;
  });
  if (errors.length > 0) throw errors[0];
}

/**
 * VFIO_DEVICE_FEATURE (vfio_ioctl_device_feature + vfio_pci_core_ioctl_feature): check the
 * flags, then dispatch: DMA_BUF (GET), DMA_BUF_TPH (SET), DMA_BUF_REVOKE (SET); DMA_BUF_MEMATTR is
 * not implemented (no dma-buf mmap) and is refused like an unknown feature. Returns 0 for PROBE
 * and SET, the new dma-buf fd for DMA_BUF GET.
 * Called by: the device fd (uapi); new fds go to `fdt`.
 * Throws: EINVAL naming `flags` (unknown bits, GET with SET, neither, an op the feature lacks);
 * EOPNOTSUPP for an unknown feature (the kernel's ENOTTY); ENODEV if not open; the feature's errors.
 */
export async function vfioPciCoreIoctlFeature(
  vdev: VfioPciCoreDevice,
  flags: number,
  data: unknown,
  fdt: FdTable,
): Promise<number> {
  const fn = 'VFIO_DEVICE_FEATURE';
  const ops = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
  if (!Number.isInteger(flags) || flags < 0 || flags & ~(VFIO_DEVICE_FEATURE_MASK | ops)) {
    throw err('EINVAL', `${fn}: flags 0x${Number(flags).toString(16)} has unknown bits`);
  }
  const get = (flags & VFIO_DEVICE_FEATURE_GET) !== 0;
  const set = (flags & VFIO_DEVICE_FEATURE_SET) !== 0;
  const probe = (flags & VFIO_DEVICE_FEATURE_PROBE) !== 0;
  if (!probe && get && set) throw err('EINVAL', `${fn}: flags has both GET and SET`);
  requireOpen(fn, vdev);
  const feature = flags & VFIO_DEVICE_FEATURE_MASK;
  let supported: number;
  if (feature === VFIO_DEVICE_FEATURE_DMA_BUF) supported = VFIO_DEVICE_FEATURE_GET;
  else if (feature === VFIO_DEVICE_FEATURE_DMA_BUF_TPH || feature === VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE)
    supported = VFIO_DEVICE_FEATURE_SET;
  else throw err('EOPNOTSUPP', `${fn}: feature ${feature} is not supported by ${vdev}`);
  // vfio_check_feature()
  if (flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) & ~supported) {
    throw err(
      'EINVAL',
      `${fn}: flags: feature ${feature} supports only ${supported === VFIO_DEVICE_FEATURE_GET ? 'GET' : 'SET'}`,
    );
  }
  if (probe) return 0;
  if (!get && !set) throw err('EINVAL', `${fn}: flags needs GET, SET or PROBE`);
  if (feature === VFIO_DEVICE_FEATURE_DMA_BUF) return vfioPciCoreFeatureDmaBuf(vdev, data, fdt);
  if (feature === VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE) await vfioPciCoreFeatureDmaBufRevoke(vdev, data, fdt);
  else await vfioPciCoreFeatureDmaBufTph(vdev, data, fdt);
  return 0;
}

/**
 * VFIO uapi: open a vfio-pci device (its /dev/vfio/devices/vfioN cdev), read/write its PCI
 * command register (config space), VFIO_DEVICE_RESET, VFIO_DEVICE_FEATURE (DMA_BUF: export BAR
 * ranges as a dma-buf fd; DMA_BUF_TPH; DMA_BUF_REVOKE: revoke one of them for good), region info,
 * close; and the device's own queue commands
 * (CHECKSUM / FILL of a BAR range). Fds are the process's; a dma-buf fd from here is an ordinary
 * dma-buf fd (nodes/uapi/dma-buf.ts closes it, test importers and NIC drivers import it).
 *
 * The last close of a device fd revokes its dma-bufs for good and waits for importers to let go
 * (kernel-semantics §6.2 rule 7): vfioDeviceClose resolves when that is done. A close that
 * happens implicitly (process exit, the last of several dup'd fds) runs the same work in the
 * background; vfioSettle() waits for it. That bookkeeping is the per-process state here.
 *
 * Errors: EBADF (fd not open), EINVAL (fd of another kind, or a bad argument, named), ENODEV
 * (no such device, removed), ETIMEDOUT (a revoke an importer did not finish), and the feature
 * errors of nodes/kernel/vfio/vfio-pci-dmabuf.ts.
 */
import { err, errnoName } from '../../common/errno.ts';
import type { FileObject } from '../kernel/fs/file.ts';
import { vfioDevChecksum, vfioDevFill } from '../kernel/vfio/vfio-dev.ts';
import {
  type VfioPciCoreDevice,
  vfioPciCoreCloseDevice,
  vfioPciCoreIoctlFeature,
  vfioPciCoreOpenDevice,
  vfioPciCoreReset,
  vfioPciCoreWriteCommand,
} from '../kernel/vfio/vfio-pci-core.ts';
import { vfioPciFind } from '../kernel/vfio/vfio-pci.ts';
import {
  VFIO_DEVICE_FEATURE_DMA_BUF,
  VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
  VFIO_DEVICE_FEATURE_DMA_BUF_TPH,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_SET,
  type VfioDeviceFeatureDmaBuf,
  type VfioDeviceFeatureDmaBufRevoke,
  type VfioDeviceFeatureDmaBufTph,
} from '../kernel/vfio/vfio-uapi.ts';
import { type Process, syscall } from './process.ts';

export { O_CLOEXEC, O_RDWR } from '../kernel/dma-buf/heaps/dma-heap.ts';
export * from '../kernel/vfio/vfio-uapi.ts';

/** The open file behind a device fd: one open_device, released (close_device) with the last fd. */
export class VfioDeviceFile implements FileObject {
  readonly kind = 'vfio-device';
  readonly vdev: VfioPciCoreDevice;
  private readonly owner: Process;
  /** close_device in progress or done; never rejects (the error is kept in closeError). */
  closing: Promise<void> | null = null;
  closeError: unknown = null;

  constructor(vdev: VfioPciCoreDevice, owner: Process) {
    this.vdev = vdev;
    this.owner = owner;
  }

  release(): void {
    this.closing = vfioPciCoreCloseDevice(this.vdev).catch((e) => {
      this.closeError = e;
    });
    const pending = procState(this.owner).closing;
    pending.add(this.closing);
    void this.closing.then(() => pending.delete(this.closing!));
  }
}

interface VfioProcState {
  /** close_device work started by releases of device files this process opened. */
  closing: Set<Promise<void>>;
}

const state = new WeakMap<Process, VfioProcState>();

function procState(proc: Process): VfioProcState {
  let s = state.get(proc);
  if (!s) state.set(proc, (s = { closing: new Set() }));
  return s;
}

function deviceFile(proc: Process, fd: number, who: string): VfioDeviceFile {
  return proc.fdt.getAs(fd, VfioDeviceFile, who);
}

/** Open vfio-pci device `name`: returns its device fd. ENODEV if there is none. */
export function vfioDeviceOpen(proc: Process, name: string): number {
  return syscall(proc, 'VFIO_DEVICE_OPEN', () => {
    if (typeof name !== 'string' || name === '') throw err('EINVAL', 'VFIO_DEVICE_OPEN: name missing');
    const vdev = vfioPciFind(proc.kernel, name);
    vfioPciCoreOpenDevice(vdev);
    return proc.fdt.install(new VfioDeviceFile(vdev, proc));
  });
}

/**
 * close(fd) of a device fd. When it is the last fd of the open file, resolves once close_device
 * finished: every dma-buf of the device permanently revoked and unmapped by its importers.
 * Throws: EBADF, EINVAL (not a device fd), ETIMEDOUT (an importer did not let go in time).
 */
export function vfioDeviceClose(proc: Process, fd: number): Promise<void> {
  return syscall(proc, 'close', async () => {
    const file = deviceFile(proc, fd, 'close');
    proc.fdt.close(fd);
    if (file.closing === null) return;
    await file.closing;
    if (file.closeError) throw file.closeError;
  });
}

/** Wait for device closes this process started implicitly (process exit, dup'd fds). */
export async function vfioSettle(proc: Process): Promise<void> {
  const s = state.get(proc);
  if (s) await Promise.all([...s.closing]);
}

/** VFIO_DEVICE_GET_INFO + GET_REGION_INFO, reduced: BARs, command register, open count. */
export function vfioDeviceInfo(
  proc: Process,
  fd: number,
): { name: string; command: number; bars: { index: number; size: number; mmap: boolean }[] } {
  return syscall(proc, 'VFIO_DEVICE_GET_INFO', () => {
    const { vdev } = deviceFile(proc, fd, 'VFIO_DEVICE_GET_INFO');
    const bars = vdev.bars.flatMap((b) => (b ? [{ index: b.index, size: b.size, mmap: b.mmap }] : []));
    return { name: vdev.name, command: vdev.command, bars };
  });
}

/** pread of PCI_COMMAND from the config region. */
export function vfioDeviceGetCommand(proc: Process, fd: number): number {
  return syscall(proc, 'VFIO_CONFIG_READ', () => deviceFile(proc, fd, 'VFIO_CONFIG_READ').vdev.command);
}

/**
 * pwrite of PCI_COMMAND to the config region: clearing PCI_COMMAND_MEMORY revokes the device's
 * dma-bufs, setting it restores them. Resolves after the revoke waited for importers.
 */
export function vfioDeviceSetCommand(proc: Process, fd: number, command: number): Promise<void> {
  return syscall(proc, 'VFIO_CONFIG_WRITE', () =>
    vfioPciCoreWriteCommand(deviceFile(proc, fd, 'VFIO_CONFIG_WRITE').vdev, command),
  );
}

/** VFIO_DEVICE_RESET: revoke, function-level reset, un-revoke if decode is on. */
export function vfioDeviceReset(proc: Process, fd: number): Promise<void> {
  return syscall(proc, 'VFIO_DEVICE_RESET', () =>
    vfioPciCoreReset(deviceFile(proc, fd, 'VFIO_DEVICE_RESET').vdev),
  );
}

/** VFIO_DEVICE_FEATURE with raw flags and data. Returns 0, or the new fd of a DMA_BUF GET. */
export function vfioDeviceFeature(proc: Process, fd: number, flags: number, data?: unknown): Promise<number> {
  return syscall(proc, 'VFIO_DEVICE_FEATURE', () =>
    vfioPciCoreIoctlFeature(deviceFile(proc, fd, 'VFIO_DEVICE_FEATURE').vdev, flags, data, proc.fdt),
  );
}

/** VFIO_DEVICE_FEATURE_DMA_BUF (GET): export BAR ranges; returns the dma-buf fd. */
export function vfioDeviceFeatureDmaBuf(
  proc: Process,
  fd: number,
  data: VfioDeviceFeatureDmaBuf,
): Promise<number> {
  return vfioDeviceFeature(proc, fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, data);
}

/** VFIO_DEVICE_FEATURE_DMA_BUF_TPH (SET): steering tag and PH for a dma-buf of this device. */
export async function vfioDeviceFeatureDmaBufTph(
  proc: Process,
  fd: number,
  data: VfioDeviceFeatureDmaBufTph,
): Promise<void> {
  await vfioDeviceFeature(proc, fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_TPH, data);
}

/**
 * VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE (SET, proposed): revoke dma-buf `dmabuf_fd` of this device
 * for good. Resolves once its importers were invalidated and unmapped; the dma-buf fd stays open.
 * Throws: EBADF, EINVAL (not a dma-buf fd), ENODEV (not this device's), ETIMEDOUT.
 */
export async function vfioDeviceFeatureDmaBufRevoke(
  proc: Process,
  fd: number,
  data: VfioDeviceFeatureDmaBufRevoke,
): Promise<void> {
  await vfioDeviceFeature(proc, fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE, data);
}

/** The device's CHECKSUM of `len` bytes at `offset` of BAR `bar`: their CRC-32. */
export function vfioDeviceChecksum(
  proc: Process,
  fd: number,
  bar: number,
  offset: number,
  len: number,
): Promise<number> {
  return syscall(proc, 'VFIO_DEV_CHECKSUM', async () => {
    const job = vfioDevChecksum(deviceFile(proc, fd, 'VFIO_DEV_CHECKSUM').vdev, bar, offset, len);
    const c = await job.done;
    if (c.status < 0) throw err(errnoName(c.status) ?? 'EIO', `VFIO_DEV_CHECKSUM: device status ${c.status}`);
    return c.result;
  });
}

/** The device's FILL of `len` bytes at `offset` of BAR `bar` with byte `value`. */
export function vfioDeviceFill(
  proc: Process,
  fd: number,
  bar: number,
  offset: number,
  len: number,
  value: number,
): Promise<void> {
  return syscall(proc, 'VFIO_DEV_FILL', async () => {
    const job = vfioDevFill(deviceFile(proc, fd, 'VFIO_DEV_FILL').vdev, bar, offset, len, value);
    const c = await job.done;
    if (c.status < 0) throw err(errnoName(c.status) ?? 'EIO', `VFIO_DEV_FILL: device status ${c.status}`);
  });
}

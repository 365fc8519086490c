/**
 * The queue of a vfio-pci function's device model (nodes/devices/vfio-dev/, command set
 * fabric/vfio-dev-layout.ts): started by vfioPciProbe, then driven the way a VFIO user drives
 * its device, one descriptor per command. FILL seeds a BAR range, CHECKSUM reports the CRC-32 of
 * one, so a test can check what a peer wrote into the BAR through the device itself.
 *
 * Every command returns a VfioDevJob: the job's DmaFence and a promise of its completion, which
 * always resolves (status < 0 on failure, -EIO/-ETIMEDOUT/the destroy error if the device died).
 *
 * Thread: kernel (main thread).
 */
import { err } from '../../../common/errno.ts';
import { VFIO_DEV_MAX_LEN, VfioDevOp, vfioDevBarParam } from '../../fabric/vfio-dev-layout.ts';
import type { DmaFence } from '../dma-buf/dma-fence.ts';
import {
  type DeviceCmd,
  type DeviceCompletion,
  type DeviceHost,
  deviceHostSpawn,
} from '../drivers/device-host.ts';
import type { VfioPciCoreDevice } from './vfio-pci-core.ts';

export { VFIO_DEV_MAX_LEN, VfioDevOp } from '../../fabric/vfio-dev-layout.ts';

/** The model's worker entry. A file reference, not an import: kernel/ never imports devices/. */
const VFIO_DEV_WORKER = new URL('../../devices/vfio-dev/vfio-dev-worker.ts', import.meta.url);

/** One submitted command. `done` never rejects. */
export interface VfioDevJob {
  fence: DmaFence;
  done: Promise<DeviceCompletion>;
}

/**
 * Start the device worker of `vdev` with its BAR regions in params.
 * Called by: vfioPciProbe, once. Throws: EINVAL naming an option; ENODEV.
 */
export function vfioDevSpawn(
  vdev: VfioPciCoreDevice,
  opts: { queueDepth?: number; hangTimeoutMs?: number },
): DeviceHost {
  if (vdev.dev.iommuId === undefined)
    throw err('ENODEV', `vfioDevSpawn(${vdev.name}): no IOMMU requester id`);
  const params: Record<string, number> = {};
  for (const b of vdev.bars) if (b) params[vfioDevBarParam(b.index)] = b.region.id;
  return deviceHostSpawn({
    name: vdev.name,
    entry: VFIO_DEV_WORKER,
    iommu: vdev.kernel.iommu,
    iommuId: vdev.dev.iommuId,
    queueDepth: opts.queueDepth,
    hangTimeoutMs: opts.hangTimeoutMs,
    params,
  });
}

/**
 * Submit any command (including deliberately bad ones) as a VfioDevJob.
 * Throws: as DeviceHost.submit (ENODEV when removed or dead, EBUSY, EINVAL naming a cmd field).
 */
export function vfioDevSubmit(vdev: VfioPciCoreDevice, cmd: DeviceCmd): VfioDevJob {
  let resolve!: (c: DeviceCompletion) => void;
  const done = new Promise<DeviceCompletion>((r) => {
    resolve = r;
  });
  const fence = vdev.host.submit(cmd, resolve);
  return { fence, done };
}

// The kernel refuses what it knows the device would refuse; raw misprogramming goes through
// vfioDevSubmit so the model's own checks stay testable.
function checkRange(fn: string, vdev: VfioPciCoreDevice, bar: number, offset: number, len: number): void {
  const b = Number.isInteger(bar) && bar >= 0 ? vdev.bars[bar] : undefined;
  if (!b) throw err('EINVAL', `${fn}: bar ${bar}: ${vdev.name} has no such BAR`);
  if (!(Number.isInteger(len) && len > 0 && len <= VFIO_DEV_MAX_LEN)) {
    throw err('EINVAL', `${fn}: len ${len} must be an integer in [1, ${VFIO_DEV_MAX_LEN}]`);
  }
  if (!(Number.isInteger(offset) && offset >= 0 && offset + len <= b.size)) {
    throw err('EINVAL', `${fn}: offset ${offset} + len ${len} must lie inside BAR${bar} (${b.size} bytes)`);
  }
}

/** FILL `len` bytes at `offset` of BAR `bar` with `value`. Throws: EINVAL naming an argument. */
export function vfioDevFill(
  vdev: VfioPciCoreDevice,
  bar: number,
  offset: number,
  len: number,
  value: number,
): VfioDevJob {
  checkRange('vfioDevFill', vdev, bar, offset, len);
  if (!(Number.isInteger(value) && value >= 0 && value <= 0xff)) {
    throw err('EINVAL', `vfioDevFill: value ${value} must be a byte (0..255)`);
  }
  return vfioDevSubmit(vdev, { opcode: VfioDevOp.FILL, arg0: bar, dst: offset, len, arg1: value });
}

/**
 * CHECKSUM `len` bytes at `offset` of BAR `bar`: the completion's `result` is their CRC-32
 * (zlib.crc32). Throws: EINVAL naming an argument; as vfioDevSubmit.
 */
export function vfioDevChecksum(
  vdev: VfioPciCoreDevice,
  bar: number,
  offset: number,
  len: number,
): VfioDevJob {
  checkRange('vfioDevChecksum', vdev, bar, offset, len);
  return vfioDevSubmit(vdev, { opcode: VfioDevOp.CHECKSUM, arg0: bar, src: offset, len });
}

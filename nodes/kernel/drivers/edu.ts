/**
 * Driver of the edu DMA engine (the device model is nodes/devices/edu/; the command set is
 * fabric/edu-layout.ts). The Linux analogue is a small PCI driver whose probe() enables the
 * function and sets up its queue, and whose commands map to one descriptor each.
 *
 * Buffers reach the engine the way they reach any device: map them through edu.dev's DMA API
 * (edu.dev.dma.mapSg, or a dma-buf attachment of edu.dev mapped with
 * dmaBufMapAttachmentUnlocked) and pass the resulting DMA addresses (IOVAs). The engine never
 * sees a buffer object, only addresses its IOMMU domain translates.
 *
 * Every command returns an EduJob: the job's DmaFence (signalled with the error the engine
 * reported, or with -EIO/-ETIMEDOUT/the destroy error if the engine died) and a promise of its
 * completion, which always resolves (status < 0 on failure; a refusal is a value).
 *
 * Thread: kernel (main thread).
 */
import { err } from '../../../common/errno.ts';
import { EDU_MAX_LEN, EduOp } from '../../fabric/edu-layout.ts';
import type { DmaFence } from '../dma-buf/dma-fence.ts';
import type { Device } from '../device.ts';
import type { HostKernel } from '../kernel.ts';
import { type DeviceCmd, type DeviceCompletion, type DeviceHost, deviceHostSpawn } from './device-host.ts';

export { EDU_MAX_LEN, EduOp } from '../../fabric/edu-layout.ts';

/** The device model's worker entry. A file reference, not an import: kernel/ never imports devices/. */
const EDU_WORKER = new URL('../../devices/edu/edu-worker.ts', import.meta.url);

export interface EduOptions {
  /** Descriptor queue depth (power of two in [2, 4096]); default 256. */
  queueDepth?: number;
  /** Enable DeviceOp.CRASH / DeviceOp.STALL (tests). */
  testHooks?: boolean;
  /** Hang timeout in ms; default DEVICE_HANG_TIMEOUT_MS. */
  hangTimeoutMs?: number;
}

/** A probed edu function: its struct device (IOMMU requester) and its queue. */
export interface Edu {
  readonly dev: Device;
  readonly host: DeviceHost;
}

/** One submitted command. `done` never rejects. */
export interface EduJob {
  fence: DmaFence;
  done: Promise<DeviceCompletion>;
}

/**
 * Probe an edu function on `kernel`: add device `name` behind the IOMMU (its own DMA domain)
 * and start its worker. Called by: host boot, tests. Thread: kernel.
 * Throws: EEXIST/EINVAL from HostKernel.addDevice; EINVAL naming a bad option; ENODEV.
 */
export function eduProbe(kernel: HostKernel, name = 'edu0', opts: EduOptions = {}): Edu {
  const dev = kernel.addDevice(name);
  if (dev.iommuId === undefined) throw err('ENODEV', `eduProbe(${name}): device has no IOMMU requester id`);
  const host = deviceHostSpawn({
    name,
    entry: EDU_WORKER,
    iommu: kernel.iommu,
    iommuId: dev.iommuId,
    queueDepth: opts.queueDepth,
    testHooks: opts.testHooks,
    hangTimeoutMs: opts.hangTimeoutMs,
  });
  return { dev, host };
}

/**
 * Submit any command (including runtime opcodes and deliberately bad ones) as an EduJob.
 * Throws: as DeviceHost.submit (ENODEV, EBUSY, EINVAL naming a cmd field).
 */
export function eduSubmit(edu: Edu, cmd: DeviceCmd): EduJob {
  let resolve!: (c: DeviceCompletion) => void;
  const done = new Promise<DeviceCompletion>((r) => {
    resolve = r;
  });
  const fence = edu.host.submit(cmd, resolve);
  return { fence, done };
}

/** COPY `len` bytes from IOVA `src` to IOVA `dst`. Throws: EINVAL naming len; as eduSubmit. */
export function eduCopy(edu: Edu, src: number, dst: number, len: number): EduJob {
  checkLen('eduCopy', len);
  return eduSubmit(edu, { opcode: EduOp.COPY, src, dst, len });
}

/** FILL `len` bytes at IOVA `dst` with `value` (0..255). Throws: EINVAL naming len or value. */
export function eduFill(edu: Edu, dst: number, len: number, value: number): EduJob {
  checkLen('eduFill', len);
  if (!(Number.isInteger(value) && value >= 0 && value <= 0xff)) {
    throw err('EINVAL', `eduFill: value ${value} must be a byte (0..255)`);
  }
  return eduSubmit(edu, { opcode: EduOp.FILL, dst, len, arg0: value });
}

/**
 * CHECKSUM `len` bytes at IOVA `src`: the completion's `result` is their CRC-32 (zlib.crc32).
 * Throws: EINVAL naming len; as eduSubmit.
 */
export function eduChecksum(edu: Edu, src: number, len: number): EduJob {
  checkLen('eduChecksum', len);
  return eduSubmit(edu, { opcode: EduOp.CHECKSUM, src, len });
}

/** Remove the function: drain its queue and stop its worker (DeviceHost.close). Idempotent. */
export function eduRemove(edu: Edu): Promise<void> {
  return edu.host.close();
}

// The driver refuses what it knows the engine would refuse; raw misprogramming goes through
// eduSubmit, so the engine's own checks stay testable.
function checkLen(fn: string, len: number): void {
  if (!(Number.isInteger(len) && len > 0 && len <= EDU_MAX_LEN)) {
    throw err('EINVAL', `${fn}: len ${len} must be an integer in [1, ${EDU_MAX_LEN}]`);
  }
}

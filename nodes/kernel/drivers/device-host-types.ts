/**
 * What a driver passes to and gets back from a DeviceHost (device-host.ts), plus the argument
 * checks and the one descriptor encoder. Kept apart so drivers and tests can import the types
 * without the host machinery.
 *
 * Thread: kernel (main thread).
 */
import { err } from '../../../common/errno.ts';
import { type DeviceInit, Sqe } from '../../fabric/device-queue-layout.ts';
import { ringPutU64 } from '../../fabric/ring-layout.ts';
import type { Iommu } from '../iommu/iommu.ts';

/**
 * One job as the driver describes it; encoded into one Sqe. Fields a command does not use may
 * be left out (0). The device validates meaning (opcode, lengths, addresses); the kernel only
 * checks that each value fits its descriptor word, so misprogramming reaches the hardware.
 */
export interface DeviceCmd {
  /** u32: a model opcode (1..0xef) or a DeviceOp. */
  opcode: number;
  /** u32. */
  flags?: number;
  /** Bytes, u32. */
  len?: number;
  /** IOVA or bus address, integer in [0, 2^53). */
  src?: number;
  dst?: number;
  /** 32-bit opcode-specific arguments (signed or unsigned). */
  arg0?: number;
  arg1?: number;
}

/** A job's completion: what the device wrote to its Cqe, or what the kernel made up for it. */
export interface DeviceCompletion {
  /** The job's fence seqno. */
  seqno: number;
  /** 0 or a negative errno. */
  status: number;
  /** Cqe.RESULT (0 on error). */
  result: number;
  opcode: number;
  /** True when the kernel failed the job (crash, destroy, hang) instead of the device. */
  synthetic: boolean;
}

/** Completion callback. Runs on the kernel thread from the interrupt watcher; must not throw. */
export type DeviceCompletionFn = (c: DeviceCompletion) => void;

/** How the worker ended. */
export interface DeviceExit {
  code: number;
  /** True if it exited without being asked (not by close() or destroy()). */
  crashed: boolean;
  /** The uncaught error the worker emitted, if any. */
  error: Error | null;
}

export interface DeviceHostOptions {
  /** dev_name(), used in every message. */
  name: string;
  /** The device model's worker entry (a nodes/devices/<model>/<model>-worker.ts URL). */
  entry: URL;
  /** The host IOMMU and the device's requester id (Device.iommuId from HostKernel.addDevice). */
  iommu: Iommu;
  iommuId: number;
  /** SQ and CQ slots and the in-flight limit: a power of two in [2, 4096]. Default 256. */
  queueDepth?: number;
  /** Let the device accept DeviceOp.CRASH and DeviceOp.STALL. Default false. */
  testHooks?: boolean;
  /** Hang timeout in ms (Infinity: never). Default DEVICE_HANG_TIMEOUT_MS. */
  hangTimeoutMs?: number;
  /** Model parameters passed through DeviceInit.params. */
  params?: DeviceInit['params'];
}

const TWO32 = 2 ** 32;
const TWO53 = 2 ** 53;

/**
 * Check that every field of `cmd` fits its descriptor word.
 * Called by: DeviceHost.submit/submitBatch. Throws: EINVAL naming the field.
 */
export function checkDeviceCmd(fn: string, cmd: DeviceCmd): void {
  if (typeof cmd !== 'object' || cmd === null) throw err('EINVAL', `${fn}: cmd must be an object`);
  const u32 = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v < TWO32)) {
      throw err('EINVAL', `${fn}: cmd.${name} ${v} must be an integer in [0, 2^32)`);
    }
  };
  const word = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= -(2 ** 31) && v < TWO32)) {
      throw err('EINVAL', `${fn}: cmd.${name} ${v} must be a 32-bit integer`);
    }
  };
  const addr = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v < TWO53)) {
      throw err('EINVAL', `${fn}: cmd.${name} ${v} must be an integer in [0, 2^53)`);
    }
  };
  if (cmd.opcode === undefined) throw err('EINVAL', `${fn}: cmd.opcode missing`);
  u32('opcode', cmd.opcode);
  u32('flags', cmd.flags);
  u32('len', cmd.len);
  addr('src', cmd.src);
  addr('dst', cmd.dst);
  word('arg0', cmd.arg0);
  word('arg1', cmd.arg1);
}

/**
 * Encode `cmd` with fence `seqno` into the SQ slot at word `base` (plain stores; the ring's
 * commit publishes them). Called by: DeviceHost after checkDeviceCmd().
 */
export function writeSqe(w: Int32Array, base: number, cmd: DeviceCmd, seqno: number): void {
  w[base + Sqe.OPCODE] = cmd.opcode | 0;
  w[base + Sqe.FLAGS] = (cmd.flags ?? 0) | 0;
  w[base + Sqe.SEQNO] = seqno | 0;
  w[base + Sqe.LEN] = (cmd.len ?? 0) | 0;
  ringPutU64(w, base + Sqe.SRC_LO, cmd.src ?? 0);
  ringPutU64(w, base + Sqe.DST_LO, cmd.dst ?? 0);
  w[base + Sqe.ARG0] = (cmd.arg0 ?? 0) | 0;
  w[base + Sqe.ARG1] = (cmd.arg1 ?? 0) | 0;
}

/**
 * Validate DeviceHostOptions in one place (piscina's option checks).
 * Called by: the DeviceHost constructor. Throws: EINVAL naming `opts.<field>`.
 */
export function checkHostOptions(opts: DeviceHostOptions): void {
  const fn = 'deviceHostSpawn';
  if (typeof opts !== 'object' || opts === null) throw err('EINVAL', `${fn}: opts must be an object`);
  if (typeof opts.name !== 'string' || opts.name === '') {
    throw err('EINVAL', `${fn}: opts.name must be a non-empty string`);
  }
  if (!(opts.entry instanceof URL)) throw err('EINVAL', `${fn}(${opts.name}): opts.entry must be a URL`);
  if (typeof opts.iommu !== 'object' || opts.iommu === null) {
    throw err('EINVAL', `${fn}(${opts.name}): opts.iommu missing`);
  }
  if (!Number.isInteger(opts.iommuId) || opts.iommuId < 1) {
    throw err('EINVAL', `${fn}(${opts.name}): opts.iommuId ${opts.iommuId} must be a positive integer`);
  }
  const d = opts.queueDepth;
  if (d !== undefined && !(Number.isInteger(d) && d >= 2 && d <= 4096 && (d & (d - 1)) === 0)) {
    throw err('EINVAL', `${fn}(${opts.name}): opts.queueDepth ${d} must be a power of two in [2, 4096]`);
  }
  const h = opts.hangTimeoutMs;
  if (h !== undefined && !(h > 0)) {
    throw err('EINVAL', `${fn}(${opts.name}): opts.hangTimeoutMs ${h} must be > 0 ms (Infinity: never)`);
  }
  if (h !== undefined && Number.isFinite(h) && h > 0x7fff_ffff) {
    throw err('EINVAL', `${fn}(${opts.name}): opts.hangTimeoutMs ${h} must be below 2^31 ms or Infinity`);
  }
}

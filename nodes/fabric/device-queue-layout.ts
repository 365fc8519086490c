/**
 * The device contract in shared memory: one control block, one submission ring (SQ, kernel ->
 * device) and one completion ring (CQ, device -> kernel) per device queue, plus a hardware fence
 * timeline (fence/hw-fence-layout.ts). This is what both halves of a device agree on: the
 * driver half (nodes/kernel/drivers/device-host.ts, main thread) and the hardware half
 * (nodes/devices/device-runtime.ts, a worker). Neither imports the other; both import this.
 *
 * Control block (DevCtl, 48 words, three 64-byte lines):
 *   line 0  MAGIC, VERSION, STATE (device writes), STOP (kernel writes), counters (device writes)
 *   line 1  SQ doorbell (kernel rings, device sleeps on it)      DoorbellWord at DevCtl.SQ_DB
 *   line 2  CQ doorbell = the interrupt (device rings, kernel's waitAsync watcher sleeps on it)
 *
 * Submission entry (Sqe, one 64-byte ring slot): OPCODE, FLAGS, SEQNO (the fence seqno of the
 * job, echoed in its completion), LEN (bytes, u32), SRC and DST (u64 as lo/hi word pairs), two
 * opcode-specific ARGs. Completion entry (Cqe): SEQNO, STATUS (0 or a negative errno), RESULT
 * (u64), OPCODE echoed. Word 15 of both is the ring's SEQ ownership word.
 *
 * Opcodes 1..0xef belong to the device model; 0 and 0xf0..0xff are the runtime's (DeviceOp).
 */
import type { DmaCtxDescriptor } from './dma.ts';
import { DOORBELL_WORDS } from './doorbell.ts';
import type { HwFenceDesc } from './fence/hw-fence-layout.ts';
import { layoutCheck } from './layout.ts';
import { RING_SLOT_WORDS, RingSlot } from './ring-layout.ts';

export const DEV_CTL_MAGIC = 0x44435452; // 'DCTR'
export const DEV_CTL_VERSION = 1;

export const DevCtl = {
  MAGIC: 0,
  VERSION: 1,
  /** DeviceState, written by the device; the kernel waits on it for RUNNING. */
  STATE: 2,
  /** DeviceStop, written by the kernel; then it notifies STOP and rings the SQ doorbell with force. */
  STOP: 3,
  /** Descriptors the device has completed (statistics, device writes). */
  DONE: 4,
  /** Of those, completed with an error status. */
  ERRORS: 5,
  /** Base of the SQ doorbell (COUNT, NEED_WAKEUP). */
  SQ_DB: 16,
  SQ_DB_NEED_WAKEUP: 17,
  /** Base of the CQ doorbell: the device's interrupt line. */
  CQ_DB: 32,
  CQ_DB_NEED_WAKEUP: 33,
} as const;
export const DEV_CTL_WORDS = 48;

layoutCheck('DevCtl', DevCtl, DEV_CTL_WORDS, 192);
if (DevCtl.SQ_DB_NEED_WAKEUP - DevCtl.SQ_DB + 1 !== DOORBELL_WORDS) {
  throw new Error('layout DevCtl: the SQ doorbell must span DOORBELL_WORDS words');
}

/** Device lifecycle as the device reports it in DevCtl.STATE. */
export const DeviceState = {
  /** Worker not yet running its loop. */
  RESET: 0,
  RUNNING: 1,
  /** Left its loop after a stop request; the worker exits 0 next. */
  STOPPED: 2,
} as const;
export type DeviceState = (typeof DeviceState)[keyof typeof DeviceState];

/** Stop requests in DevCtl.STOP. */
export const DeviceStop = {
  NONE: 0,
  /** Finish every posted descriptor, then stop (close()). */
  DRAIN: 1,
  /** Stop at the next descriptor boundary; write no completion or fence value after that. */
  ABORT: 2,
} as const;
export type DeviceStop = (typeof DeviceStop)[keyof typeof DeviceStop];

export const Sqe = {
  OPCODE: 0,
  FLAGS: 1,
  /** Fence seqno of this job (u32); the completion echoes it. */
  SEQNO: 2,
  /** Length in bytes (u32). */
  LEN: 3,
  SRC_LO: 4,
  SRC_HI: 5,
  DST_LO: 6,
  DST_HI: 7,
  ARG0: 8,
  ARG1: 9,
  /** The ring's ownership word (ring-layout.ts). */
  RING_SEQ: RingSlot.SEQ,
} as const;

export const Cqe = {
  SEQNO: 0,
  /** 0 or a negative errno. */
  STATUS: 1,
  RESULT_LO: 2,
  RESULT_HI: 3,
  OPCODE: 4,
  RING_SEQ: RingSlot.SEQ,
} as const;

layoutCheck('Sqe', Sqe, RING_SLOT_WORDS, 64);
layoutCheck('Cqe', Cqe, RING_SLOT_WORDS, 64);

/**
 * Runtime opcodes, handled by the device runtime before the model sees a descriptor.
 * CRASH and STALL are test hooks: refused with -EOPNOTSUPP unless DeviceInit.testHooks.
 */
export const DeviceOp = {
  /** Complete with status 0 (fence and ring round trip without DMA). */
  NOP: 0,
  /** Keep the engine busy ARG0 ms in bounded sleeps (an abort ends it), then complete with 0. */
  STALL: 0xfe,
  /** ARG0 = CrashMode: make the worker die mid-queue. */
  CRASH: 0xff,
} as const;
export type DeviceOp = (typeof DeviceOp)[keyof typeof DeviceOp];

/** Highest opcode a device model may define. */
export const DEVICE_OP_MODEL_MAX = 0xef;

/** How DeviceOp.CRASH kills the worker. */
export const CrashMode = {
  /** Throw out of the device loop: the worker emits 'error', then exits 1. */
  THROW: 0,
  /** process.exit(ARG1 || 7) inside the worker: 'exit' with that code, no 'error'. */
  EXIT: 1,
} as const;
export type CrashMode = (typeof CrashMode)[keyof typeof CrashMode];

/** workerData of every device worker. Structured-cloneable; dma.port goes in transferList. */
export interface DeviceInit {
  /** dev_name(), for messages. */
  name: string;
  /** Control block (devCtlCreate). */
  ctl: SharedArrayBuffer;
  /** Submission ring (ringCreate). */
  sq: SharedArrayBuffer;
  /** Completion ring, at least as many slots as sq. */
  cq: SharedArrayBuffer;
  /** The queue's hardware fence timeline. */
  fence: HwFenceDesc;
  /** The device's DMA translation context (iommuDeviceDmaCtx). */
  dma: DmaCtxDescriptor;
  /** Accept DeviceOp.CRASH and DeviceOp.STALL. */
  testHooks: boolean;
  /** Model-specific parameters. */
  params?: Record<string, number | string | boolean>;
}

/**
 * Allocate a control block in RESET state with no stop request.
 * Called by: the kernel driver, main thread.
 */
export function devCtlCreate(): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(DEV_CTL_WORDS * 4);
  const w = new Int32Array(sab);
  w[DevCtl.VERSION] = DEV_CTL_VERSION;
  // publish the header last, as every layout here does.
  Atomics.store(w, DevCtl.MAGIC, DEV_CTL_MAGIC);
  return sab;
}

/** Check a control block; Throws: RangeError (a setup bug). */
export function devCtlCheck(sab: SharedArrayBuffer): Int32Array {
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < DEV_CTL_WORDS * 4) {
    throw new RangeError('devCtl: sab is not a device control block');
  }
  const w = new Int32Array(sab);
  if (Atomics.load(w, DevCtl.MAGIC) !== DEV_CTL_MAGIC || w[DevCtl.VERSION] !== DEV_CTL_VERSION) {
    throw new RangeError('devCtl: sab has no control block header (magic/version mismatch)');
  }
  return w;
}

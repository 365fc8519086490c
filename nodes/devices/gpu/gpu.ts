/**
 * The GPU device model: a copy engine (copy-engine.ts) and a compute block (compute.ts) behind
 * one descriptor queue. Command set and errors: fabric/gpu-layout.ts. The model checks what the
 * hardware would refuse (lengths, FILL widths, flag bits, opcodes) and returns an errno for the
 * completion; nothing here throws.
 *
 * One queue serves both engines, in submission order: the driver's scheduler decides what goes
 * on the ring and when (nodes/kernel/gpu/gpu-sched.ts), so a job on the ring never waits for a
 * fence and the hardware never blocks on the kernel.
 *
 * Runs inside the device worker; imports only fabric/, common/ and the runtime.
 */
import { Errno } from '../../../common/errno.ts';
import { GPU_FILL_WIDTHS, GPU_MAX_LEN, GPU_OP_FLAGS, GpuOp } from '../../fabric/gpu-layout.ts';
import type { DeviceCommand, DeviceModel, DeviceRuntime } from '../device-runtime.ts';
import { GpuCompute } from './compute.ts';
import { GpuCopyEngine } from './copy-engine.ts';

/** The GPU as a DeviceModel. One per worker (the engines' staging buffers are the GPU's). */
export class GpuModel implements DeviceModel {
  readonly name = 'gpu';
  readonly copyEngine = new GpuCopyEngine();
  readonly compute = new GpuCompute();

  /**
   * Execute one GPU command. Called by: DeviceRuntime.drain(), device worker.
   * Returns 0 or the completion's negative errno (see fabric/gpu-layout.ts).
   */
  execute(rt: DeviceRuntime, cmd: DeviceCommand): number {
    const op = cmd.opcode as GpuOp;
    const allowed = GPU_OP_FLAGS[op];
    if (allowed === undefined) return -Errno.EOPNOTSUPP;
    if ((cmd.flags & ~allowed) !== 0) return -Errno.EINVAL;
    if (!(cmd.len > 0 && cmd.len <= GPU_MAX_LEN)) return -Errno.EINVAL;
    switch (op) {
      case GpuOp.COPY:
        return this.copyEngine.copy(rt, cmd);
      case GpuOp.FILL:
        if (!GPU_FILL_WIDTHS.includes(cmd.arg1)) return -Errno.EINVAL;
        return this.compute.fill(rt, cmd);
      case GpuOp.CHECKSUM:
        return this.compute.checksum(rt, cmd);
      default:
        return -Errno.EOPNOTSUPP;
    }
  }
}

// The GPU model's own checks on the test thread, without a kernel: argument errors are
// completions, and a DMA the IOMMU refuses (no domain attached: BLOCKED) is -EFAULT plus a
// fault record. Data paths through a real IOMMU domain and worker: nodes/kernel/gpu/*.test.ts.
import { describe, expect, it } from 'vitest';
import { Errno } from '../../../common/errno.ts';
import { GPU_MAX_LEN, GpuOp } from '../../fabric/gpu-layout.ts';
import { IommuFaultReason } from '../../fabric/iommu-layout.ts';
import { DeviceRuntime } from '../device-runtime.ts';
import { deviceRig } from '../fixtures/rig.ts';
import { GpuModel } from './gpu.ts';

describe('gpu model', () => {
  it('gpu - bad lengths, fill widths and opcodes complete with errors before any DMA', () => {
    const rig = deviceRig();
    const rt = new DeviceRuntime(rig.init);
    rig.post(
      { opcode: GpuOp.COPY, seqno: 1, len: 0 },
      { opcode: GpuOp.CHECKSUM, seqno: 2, len: GPU_MAX_LEN + 1 },
      { opcode: GpuOp.FILL, seqno: 3, len: 16, arg1: 3 },
      { opcode: GpuOp.FILL, seqno: 4, len: 16, arg1: 0 },
      { opcode: 0x42, seqno: 5, len: 16 },
    );
    const model = new GpuModel();
    expect(rt.drain(model)).toBe(5);
    expect(rig.reap().map((c) => c.status)).toEqual([
      -Errno.EINVAL,
      -Errno.EINVAL,
      -Errno.EINVAL,
      -Errno.EINVAL,
      -Errno.EOPNOTSUPP,
    ]);
    expect(rig.faults()).toEqual([]);
    expect([model.copyEngine.copies, model.compute.fills, model.compute.checksums]).toEqual([0, 0, 0]);
  });

  it('gpu - a GPU VA with no IOMMU domain attached faults BLOCKED and completes with -EFAULT', () => {
    const rig = deviceRig();
    const rt = new DeviceRuntime(rig.init);
    rig.post(
      { opcode: GpuOp.FILL, seqno: 1, dst: 0x2000, len: 64, arg0: 0x01020304, arg1: 4 },
      { opcode: GpuOp.CHECKSUM, seqno: 2, src: 0x3000, len: 32 },
    );
    expect(rt.drain(new GpuModel())).toBe(2);
    expect(rig.reap().map((c) => c.status)).toEqual([-Errno.EFAULT, -Errno.EFAULT]);
    const f = rig.faults();
    expect(f).toHaveLength(2);
    expect(f[0]).toMatchObject({
      deviceId: 7,
      address: 0x2000,
      reason: IommuFaultReason.BLOCKED,
      length: 64,
    });
  });
});

// The edu model's own checks on the test thread, without a kernel: argument errors are
// completions, and a DMA the IOMMU refuses (no domain attached: BLOCKED) is -EFAULT plus a
// fault record. Data paths through a real IOMMU domain and worker: kernel/drivers/edu.test.ts.
import { describe, expect, it } from 'vitest';
import { Errno } from '../../../common/errno.ts';
import { EDU_MAX_LEN, EduOp } from '../../fabric/edu-layout.ts';
import { IommuFaultReason } from '../../fabric/iommu-layout.ts';
import { DeviceRuntime } from '../device-runtime.ts';
import { deviceRig } from '../fixtures/rig.ts';
import { EduModel } from './edu.ts';

describe('edu model', () => {
  it('edu - bad lengths, fill values and opcodes complete with errors before any DMA', () => {
    const rig = deviceRig();
    const rt = new DeviceRuntime(rig.init);
    rig.post(
      { opcode: EduOp.COPY, seqno: 1, len: 0 },
      { opcode: EduOp.CHECKSUM, seqno: 2, len: EDU_MAX_LEN + 1 },
      { opcode: EduOp.FILL, seqno: 3, len: 16, arg0: 256 },
      { opcode: 0x42, seqno: 4, len: 16 },
    );
    expect(rt.drain(new EduModel())).toBe(4);
    expect(rig.reap().map((c) => c.status)).toEqual([
      -Errno.EINVAL,
      -Errno.EINVAL,
      -Errno.EINVAL,
      -Errno.EOPNOTSUPP,
    ]);
    expect(rig.faults()).toEqual([]);
  });

  it('edu - a DMA with no IOMMU domain attached faults BLOCKED and completes with -EFAULT', () => {
    const rig = deviceRig();
    const rt = new DeviceRuntime(rig.init);
    rig.post({ opcode: EduOp.FILL, seqno: 1, dst: 0x1000, len: 64, arg0: 1 });
    expect(rt.drain(new EduModel())).toBe(1);
    expect(rig.reap()[0].status).toBe(-Errno.EFAULT);
    const f = rig.faults();
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({
      deviceId: 7,
      address: 0x1000,
      reason: IommuFaultReason.BLOCKED,
      length: 64,
    });
  });
});

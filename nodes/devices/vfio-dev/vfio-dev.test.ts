// The vfio-dev model's own checks on the test thread, without a kernel: FILL and CHECKSUM on a
// BAR (the rig's RAM region stands in for BAR 0), and every argument error as a completion.
// The model in a real worker behind a HostKernel: kernel/vfio/vfio-dev.test.ts.
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Errno } from '../../../common/errno.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import { dmaTph } from '../../fabric/dma.ts';
import { tphStatsCount, tphStatsCreate } from '../../fabric/phys-map-layout.ts';
import { VFIO_DEV_MAX_LEN, VfioDevOp, vfioDevBarParam } from '../../fabric/vfio-dev-layout.ts';
import { DeviceRuntime } from '../device-runtime.ts';
import { deviceRig } from '../fixtures/rig.ts';
import { VfioDevModel } from './vfio-dev.ts';

function rigWithBar0() {
  const rig = deviceRig();
  // The rig's RAM region (id 1, 4 pages) plays BAR 0.
  rig.init.params = { [vfioDevBarParam(0)]: 1 };
  const bar = new Uint8Array(rig.init.dma.phys.regions[0].sab);
  return { rig, bar, rt: new DeviceRuntime(rig.init), model: new VfioDevModel(rig.init) };
}

describe('vfio-dev model', () => {
  it('vfio - device fill writes its BAR and checksum returns the CRC-32 of the range', () => {
    const { rig, bar, rt, model } = rigWithBar0();
    for (let i = 0; i < PAGE_SIZE; i++) bar[PAGE_SIZE + i] = (i * 13) & 0xff;
    rig.post(
      { opcode: VfioDevOp.FILL, seqno: 1, dst: 100, len: 50, arg0: 0, arg1: 0xa5 },
      { opcode: VfioDevOp.CHECKSUM, seqno: 2, src: PAGE_SIZE, len: PAGE_SIZE, arg0: 0 },
    );
    expect(rt.drain(model)).toBe(2);
    const [fill, sum] = rig.reap();
    expect(fill.status).toBe(0);
    expect([bar[99], bar[100], bar[149], bar[150]]).toEqual([0, 0xa5, 0xa5, 0]);
    expect(sum.status).toBe(0);
    expect(sum.result).toBe(crc32(bar.subarray(PAGE_SIZE, 2 * PAGE_SIZE)));
    expect(model.stats).toEqual({ fills: 1, checksums: 1, bytes: 50 + PAGE_SIZE });
    expect(rig.faults()).toEqual([]); // local BAR access is not a DMA
  });

  it('vfio - device commands naming a missing BAR, a range outside it or a bad value fail EINVAL', () => {
    const { rig, rt, model } = rigWithBar0();
    const size = 4 * PAGE_SIZE;
    rig.post(
      { opcode: VfioDevOp.CHECKSUM, seqno: 1, src: 0, len: 64, arg0: 1 }, // BAR 1 absent
      { opcode: VfioDevOp.CHECKSUM, seqno: 2, src: 0, len: 64, arg0: 6 }, // no BAR 6 in PCI
      { opcode: VfioDevOp.CHECKSUM, seqno: 3, src: size - 8, len: 16, arg0: 0 }, // leaves the BAR
      { opcode: VfioDevOp.CHECKSUM, seqno: 4, src: 0, len: 0, arg0: 0 },
      { opcode: VfioDevOp.FILL, seqno: 5, dst: 0, len: 16, arg0: 0, arg1: 256 },
      { opcode: VfioDevOp.FILL, seqno: 6, dst: 0, len: VFIO_DEV_MAX_LEN + 1, arg0: 0 },
      { opcode: 0x42, seqno: 7, len: 16 },
    );
    expect(rt.drain(model)).toBe(7);
    expect(rig.reap().map((c) => c.status)).toEqual([...Array(6).fill(-Errno.EINVAL), -Errno.EOPNOTSUPP]);
  });

  it('tph - the model reads the hint statistics of a BAR whose window has a block, and null for one without', () => {
    const rig = deviceRig();
    rig.init.params = { [vfioDevBarParam(0)]: 1 };
    const sab = tphStatsCreate();
    rig.init.dma.phys.windows[0].tphStats = sab;
    const model = new VfioDevModel(rig.init);
    // what the routing point does when a peer's hinted run lands in the window
    tphStatsCount(new Int32Array(sab), dmaTph(2, 0x2a), 3000);
    const s = model.tphStats(0);
    expect([s?.hinted, s?.st[0x2a], s?.ph[2]]).toEqual(Array(3).fill({ runs: 1, bytes: 3000 }));
    expect(model.tphStats(1)).toBeNull();
    rig.init.dma.phys.windows[0].tphStats = undefined;
    expect(new VfioDevModel(rig.init).tphStats(0)).toBeNull();
  });
});

// The device runtime on the test thread (drain() and run() never wait when work or a stop is
// already there): completion and fence protocol, misprogramming as error completions, the
// test hooks' gate, ABORT and DRAIN. Real workers: nodes/kernel/drivers/*.test.ts.
import { describe, expect, it } from 'vitest';
import { Errno } from '../../common/errno.ts';
import { DeviceOp, DeviceState, DeviceStop, DevCtl } from '../fabric/device-queue-layout.ts';
import { doorbellRead } from '../fabric/doorbell.ts';
import { HwFenceTimeline } from '../fabric/fence/hw-fence.ts';
import { type DeviceCommand, type DeviceModel, DeviceRuntime } from './device-runtime.ts';
import { deviceRig } from './fixtures/rig.ts';

/** Opcode 1: result = arg0 * 2. Opcode 2: throws. Opcode 3: returns a positive status. */
const model: DeviceModel = {
  name: 'fake',
  execute(_rt, cmd: DeviceCommand) {
    if (cmd.opcode === 1) {
      cmd.result = cmd.arg0 * 2;
      return 0;
    }
    if (cmd.opcode === 2) throw new Error('model bug');
    if (cmd.opcode === 3) return 5;
    return -Errno.EOPNOTSUPP;
  },
};

describe('device-runtime', () => {
  it('device-runtime - a batch completes in order with one fence store and one interrupt', () => {
    const rig = deviceRig();
    const rt = new DeviceRuntime(rig.init);
    rig.post(...[1, 2, 3, 4].map((s) => ({ opcode: 1, seqno: s, arg0: s * 10 })));
    expect(rt.drain(model)).toBe(4);
    expect(rig.reap()).toEqual([1, 2, 3, 4].map((s) => ({ seqno: s, status: 0, result: s * 20, opcode: 1 })));
    const hw = new HwFenceTimeline(rig.init.fence);
    expect(hw.read()).toBe(4);
    // one store for the batch: only the last seqno has its own ring entry.
    expect(hw.timestampOf(4)).toBeGreaterThan(0);
    expect(hw.timestampOf(2)).toBe(-1);
    expect(doorbellRead(rig.ctl, DevCtl.CQ_DB)).toBe(1);
    expect(Atomics.load(rig.ctl, DevCtl.DONE)).toBe(4);
    expect(rt.drain(model)).toBe(0);
    expect(doorbellRead(rig.ctl, DevCtl.CQ_DB)).toBe(1);
  });

  it('device-runtime - misprogramming becomes error completions and error fences, never a throw', () => {
    const rig = deviceRig();
    const rt = new DeviceRuntime(rig.init);
    rig.post(
      { opcode: 0x77, seqno: 1 }, // unknown to the model
      { opcode: 0xf5, seqno: 2 }, // reserved runtime range
      { opcode: 2, seqno: 3 }, // the model throws
      { opcode: 3, seqno: 4 }, // the model returns a positive status
      { opcode: 1, seqno: 5, arg0: 1 },
    );
    expect(rt.drain(model)).toBe(5);
    const c = rig.reap();
    expect(c.map((x) => x.status)).toEqual([-Errno.EOPNOTSUPP, -Errno.EOPNOTSUPP, -Errno.EIO, -Errno.EIO, 0]);
    const hw = new HwFenceTimeline(rig.init.fence);
    expect([1, 2, 3, 4, 5].map((s) => hw.errorOf(s))).toEqual([
      -Errno.EOPNOTSUPP,
      -Errno.EOPNOTSUPP,
      -Errno.EIO,
      -Errno.EIO,
      0,
    ]);
    expect(hw.read()).toBe(5);
    expect(Atomics.load(rig.ctl, DevCtl.ERRORS)).toBe(4);
  });

  it('device-runtime - CRASH and STALL are refused with -EOPNOTSUPP unless testHooks is set', () => {
    const rig = deviceRig({ testHooks: false });
    const rt = new DeviceRuntime(rig.init);
    rig.post({ opcode: DeviceOp.CRASH, seqno: 1 }, { opcode: DeviceOp.STALL, seqno: 2, arg0: 10_000 });
    expect(rt.drain(model)).toBe(2);
    expect(rig.reap().map((x) => x.status)).toEqual([-Errno.EOPNOTSUPP, -Errno.EOPNOTSUPP]);
    const hooked = deviceRig({ testHooks: true });
    hooked.post({ opcode: DeviceOp.NOP, seqno: 1 }, { opcode: DeviceOp.STALL, seqno: 2, arg0: 1 });
    expect(new DeviceRuntime(hooked.init).drain(model)).toBe(2);
    expect(hooked.reap().map((x) => x.status)).toEqual([0, 0]);
  });

  it('device-runtime - after ABORT no completion, fence value or interrupt is written', () => {
    const rig = deviceRig();
    const rt = new DeviceRuntime(rig.init);
    Atomics.store(rig.ctl, DevCtl.STOP, DeviceStop.ABORT);
    rig.post({ opcode: 1, seqno: 1 });
    expect(rt.drain(model)).toBe(0);
    expect(rig.reap()).toEqual([]);
    expect(new HwFenceTimeline(rig.init.fence).read()).toBe(0);
    expect(doorbellRead(rig.ctl, DevCtl.CQ_DB)).toBe(0);
  });

  it('device-runtime - a DRAIN stop finishes posted work, then run() returns with STATE = STOPPED', () => {
    const rig = deviceRig();
    rig.post({ opcode: 1, seqno: 1, arg0: 2 }, { opcode: 1, seqno: 2, arg0: 3 });
    Atomics.store(rig.ctl, DevCtl.STOP, DeviceStop.DRAIN);
    new DeviceRuntime(rig.init).run(model);
    expect(rig.reap().map((x) => x.result)).toEqual([4, 6]);
    expect(Atomics.load(rig.ctl, DevCtl.STATE)).toBe(DeviceState.STOPPED);
  });

  it('device-runtime - bad queue memory is refused at attach (a setup bug, not a completion)', () => {
    const rig = deviceRig();
    expect(() => new DeviceRuntime({ ...rig.init, sq: new SharedArrayBuffer(64) })).toThrow(RangeError);
    expect(() => new DeviceRuntime({ ...rig.init, ctl: new SharedArrayBuffer(192) })).toThrow(/magic/);
  });
});

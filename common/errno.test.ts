import { describe, expect, it } from 'vitest';
import { EmuError, Errno, errnoName, isNegErrno } from './errno.ts';

describe('errno', () => {
  it('errno - EmuError carries code, negative errno and a message naming the object', () => {
    const e = new EmuError('EINVAL', 'dmaBufExport: exp_info.ops missing');
    expect(e.code).toBe('EINVAL');
    expect(e.errno).toBe(-22);
    expect(e.message).toBe('EINVAL: dmaBufExport: exp_info.ops missing');
    expect(e).toBeInstanceOf(EmuError);
    expect(e).toBeInstanceOf(Error);
  });

  it('errno - wire form round-trips through structured clone with its cause', () => {
    const inner = new EmuError('EFAULT', 'iova 0x1000 not mapped');
    const e = new EmuError('EIO', 'rdma write failed', { cause: inner });
    const back = EmuError.fromWire(structuredClone(e.toWire()));
    expect(back).toBeInstanceOf(EmuError);
    expect(back.code).toBe('EIO');
    expect(back.message).toBe(e.message);
    expect((back.cause as EmuError).code).toBe('EFAULT');
  });

  it('errno - name lookup and negative-errno check', () => {
    expect(errnoName(-Errno.ENODEV)).toBe('ENODEV');
    expect(errnoName(-9999)).toBeUndefined();
    expect(isNegErrno(-5)).toBe(true);
    expect(isNegErrno(5)).toBe(false);
    expect(isNegErrno(-9999)).toBe(false);
  });
});

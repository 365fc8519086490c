import { describe, expect, it } from 'vitest';
import { FaultRingProducer, faultRingCreate, faultRingPop, formatFault } from './iommu-fault-ring.ts';
import {
  DmaAccess,
  FAULT_RING_HDR_WORDS,
  FAULT_SLOT_WORDS,
  FaultRingHdr,
  FaultSlot,
  IommuFaultReason,
} from './iommu-layout.ts';
import { layoutCheck } from './layout.ts';

describe('fault-ring', () => {
  it('fault-ring - a record round-trips every field, including a 52-bit address', () => {
    const sab = faultRingCreate(4);
    const p = new FaultRingProducer(sab);
    const addr = 2 ** 52 - 4096 + 0x123;
    expect(
      p.append(0x1234, 7, addr, DmaAccess.WRITE, true, IommuFaultReason.UNSUPPORTED_REQUEST, 2 ** 40),
    ).toBe(true);
    const w = new Int32Array(sab);
    const r = faultRingPop(w);
    expect(r).toEqual({
      deviceId: 0x1234,
      domainId: 7,
      address: addr,
      access: DmaAccess.WRITE,
      bus: true,
      reason: IommuFaultReason.UNSUPPORTED_REQUEST,
      length: 0x7fffffff,
    });
    expect(formatFault(r!)).toMatch(/^dev 4660 dom 7 write bus 0xffffffffff123 len 2147483647 reason 4$/);
    expect(faultRingPop(w)).toBeNull();
  });

  it('fault-ring - a full ring drops and counts overflow, and frees slots as the consumer drains', () => {
    const sab = faultRingCreate(2);
    const p = new FaultRingProducer(sab);
    const w = new Int32Array(sab);
    const add = (a: number) => p.append(1, 1, a, DmaAccess.READ, false, IommuFaultReason.NOT_PRESENT, 1);
    expect([add(1), add(2), add(3), add(4)]).toEqual([true, true, false, false]);
    expect(p.overflow).toBe(2);
    expect(faultRingPop(w)?.address).toBe(1);
    expect(add(5)).toBe(true);
    expect([faultRingPop(w)?.address, faultRingPop(w)?.address, faultRingPop(w)]).toEqual([2, 5, null]);
    expect(Atomics.load(w, FaultRingHdr.SIGNAL)).toBe(3);
  });

  it('fault-ring - positions keep working across the 2^31 wrap of HEAD and TAIL', () => {
    const cap = 4;
    const sab = faultRingCreate(cap);
    const w = new Int32Array(sab);
    const start = 0x7ffffffe; // two appends before HEAD wraps negative
    w[FaultRingHdr.HEAD] = start;
    w[FaultRingHdr.TAIL] = start;
    for (let i = 0; i < cap; i++) {
      const pos = (start + i) | 0;
      w[FAULT_RING_HDR_WORDS + (pos & (cap - 1)) * FAULT_SLOT_WORDS + FaultSlot.SEQ] = pos;
    }
    const p = new FaultRingProducer(sab);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < cap; i++) expect(p.append(1, 1, round * 10 + i, 0, false, 1, 1)).toBe(true);
      expect(p.append(1, 1, 99, 0, false, 1, 1)).toBe(false);
      for (let i = 0; i < cap; i++) expect(faultRingPop(w)?.address).toBe(round * 10 + i);
    }
    expect(Atomics.load(w, FaultRingHdr.HEAD)).toBeLessThan(0);
  });

  it('fault-ring - a bad capacity or an uninitialised SAB is refused', () => {
    expect(() => faultRingCreate(3)).toThrow(RangeError);
    expect(() => faultRingCreate(1)).toThrow(/power of two/);
    expect(() => new FaultRingProducer(new SharedArrayBuffer(64))).toThrow(/not an initialised fault ring/);
  });

  it('layout - the size check rejects overlapping fields, out-of-range fields and wrong sizes', () => {
    expect(() => layoutCheck('ok', { A: 0, B: 1 }, 2, 8)).not.toThrow();
    expect(() => layoutCheck('x', { A: 0, B: 0 }, 2, 8)).toThrow(/fields A and B share word 0/);
    expect(() => layoutCheck('x', { A: 2 }, 2, 8)).toThrow(/field A at word 2 is outside 2 words/);
    expect(() => layoutCheck('x', { A: 0 }, 3, 8)).toThrow(/3 words is 12 bytes, expected 8/);
  });
});

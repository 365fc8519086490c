// The shared-memory wire (fabric/wire.ts): packets and their payload cross from one end to the
// other in order, the payload ring wraps without splitting a payload, a full link is a value
// (-1) rather than a wait, and a flush rings the receiving port's doorbell once per batch.
import { describe, expect, it } from 'vitest';
import { doorbellRead } from './doorbell.ts';
import { shmWireCreatePair, WireOp, WirePkt, wireLinkOpen } from './wire.ts';

function pair(opts: { slots?: number; dataBytes?: number } = {}) {
  const wakeA = new SharedArrayBuffer(8);
  const wakeB = new SharedArrayBuffer(8);
  const [da, db] = shmWireCreatePair({ sab: wakeA, index: 0 }, { sab: wakeB, index: 0 }, opts);
  return {
    a: wireLinkOpen(da),
    b: wireLinkOpen(db),
    wakeA: new Int32Array(wakeA),
    wakeB: new Int32Array(wakeB),
  };
}

describe('wire', () => {
  it('mlx5 - wire: packets and payloads arrive in order at the other end; a flush rings the peer once', () => {
    const { a, b, wakeA, wakeB } = pair();
    for (let i = 0; i < 3; i++) {
      const s = a.txClaim(100 + i);
      expect(s).toBeGreaterThanOrEqual(0);
      a.txData.fill(i + 1, a.txDataOff, a.txDataOff + 100 + i);
      a.txWords[s + WirePkt.OP] = WireOp.WRITE;
      a.txWords[s + WirePkt.PSN] = 10 + i;
      a.txCommit();
    }
    expect(doorbellRead(wakeB, 0)).toBe(0); // commit publishes; only the flush wakes the peer
    a.txFlush();
    a.txFlush(); // nothing new: no second ring
    expect(doorbellRead(wakeB, 0)).toBe(1);
    expect(doorbellRead(wakeA, 0)).toBe(0);
    for (let i = 0; i < 3; i++) {
      const s = b.rxPeek();
      expect(b.rxWords[s + WirePkt.PSN]).toBe(10 + i);
      const len = b.rxWords[s + WirePkt.LEN];
      const off = b.rxWords[s + WirePkt.DATA_OFF];
      expect(len).toBe(100 + i);
      expect(b.rxData.subarray(off, off + len).every((x) => x === i + 1)).toBe(true);
      b.rxRelease();
    }
    expect(b.rxPeek()).toBe(-1);
  });

  it('mlx5 - wire: a full payload ring or packet ring refuses with -1 until the receiver releases; payloads never wrap', () => {
    const { a, b } = pair({ slots: 4, dataBytes: 4096 });
    expect(a.maxPayload).toBe(1024);
    expect(a.txClaim(1025)).toBe(-1);
    const offs: number[] = [];
    for (let i = 0; i < 3; i++) {
      expect(a.txClaim(1000)).toBeGreaterThanOrEqual(0);
      offs.push(a.txDataOff);
      a.txCommit();
    }
    expect(a.txClaim(1000)).toBeGreaterThanOrEqual(0); // 4th payload fits (3000 + 1000 <= 4096)
    a.txCommit();
    expect(a.txClaim(0)).toBe(-1); // 4 slots in flight
    b.rxRelease();
    b.rxRelease();
    // 1000 bytes would cross the end (offset 4000): it starts at 0 instead, which is free again.
    expect(a.txClaim(1000)).toBeGreaterThanOrEqual(0);
    expect(a.txDataOff).toBe(0);
    expect(offs).toEqual([0, 1000, 2000]);
  });
});

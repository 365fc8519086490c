// The fixed-slot ring and the doorbell on one thread: ownership by SEQ, full and empty as
// values, u32 wrap-around, batched posting with one doorbell, and the layout checks. The
// cross-thread path runs in ring.bench.test.ts and through real device workers in
// nodes/kernel/drivers.
import { describe, expect, it } from 'vitest';
import { DoorbellWord, doorbellRead, doorbellRing } from './doorbell.ts';
import { RingConsumer, RingProducer, ringOccupancy } from './ring.ts';
import {
  RING_PAYLOAD_WORDS,
  RING_SLOT_WORDS,
  RingHdr,
  RingSlot,
  ringBytes,
  ringCheck,
  ringCreate,
  ringGetU64,
  ringPutU64,
  ringSlotBase,
} from './ring-layout.ts';

function pair(slots: number) {
  const sab = ringCreate(slots);
  return { sab, p: new RingProducer(sab), c: new RingConsumer(sab) };
}

/** Consume everything, returning word 0 of each message. */
function drain(c: RingConsumer): number[] {
  const out: number[] = [];
  for (let s = c.peek(); s >= 0; s = c.peek()) {
    out.push(c.words[s]);
    c.release();
  }
  return out;
}

describe('ring', () => {
  it('ring - a slot is invisible until its SEQ is stored, then read with its payload', () => {
    const { p, c } = pair(4);
    const s = p.claim();
    expect(s).toBe(ringSlotBase(0));
    p.words[s] = 11;
    p.words[s + RING_PAYLOAD_WORDS - 1] = 99;
    expect(c.peek()).toBe(-1);
    p.commit();
    const r = c.peek();
    expect(r).toBe(s);
    expect([c.words[r], c.words[r + RING_PAYLOAD_WORDS - 1]]).toEqual([11, 99]);
    expect(Atomics.load(c.words, r + RingSlot.SEQ)).toBe(1);
    c.release();
    expect(c.peek()).toBe(-1);
    expect(Atomics.load(c.words, RingHdr.TAIL)).toBe(1);
  });

  it('ring - a full ring refuses claim and post without blocking until the consumer releases', () => {
    const { p, c } = pair(4);
    for (let i = 0; i < 4; i++) expect(p.post([i])).toBe(true);
    expect(p.space).toBe(0);
    expect(p.claim()).toBe(-1);
    expect(p.post([4])).toBe(false);
    expect(() => p.commit()).toThrow(RangeError);
    expect(c.peek()).toBeGreaterThanOrEqual(0);
    c.release();
    expect(p.space).toBe(1);
    expect(p.post([4])).toBe(true);
    expect(drain(c)).toEqual([1, 2, 3, 4]);
    expect(c.peek()).toBe(-1);
  });

  it('ring - positions wrap past 2^32 and a stale SEQ from an earlier lap is never taken as new', () => {
    const sab = ringCreate(4);
    const w = new Int32Array(sab);
    // start both sides three messages before the u32 wrap.
    w[RingHdr.HEAD] = -3;
    w[RingHdr.TAIL] = -3;
    const p = new RingProducer(sab);
    const c = new RingConsumer(sab);
    expect(p.position).toBe(2 ** 32 - 3);
    const got: number[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 3; i++) expect(p.post([round * 3 + i])).toBe(true);
      got.push(...drain(c));
      // every slot now holds a SEQ of a consumed position: nothing may look published.
      expect(c.peek()).toBe(-1);
    }
    expect(got).toEqual(Array.from({ length: 15 }, (_, i) => i));
    expect(c.position).toBe(12);
  });

  it('ring - a batch of N slots is published with one HEAD flush and one doorbell ring', () => {
    const { sab, p, c } = pair(64);
    const shared = new Int32Array(new SharedArrayBuffer(8));
    for (let i = 0; i < 32; i++) {
      const s = p.claim();
      p.words[s] = i;
      p.commit();
    }
    expect(ringOccupancy(sab)).toBe(0); // HEAD not flushed yet; SEQ already published
    expect(c.pending()).toBe(32);
    p.flush();
    expect(ringOccupancy(sab)).toBe(32);
    expect(doorbellRing(shared, 0)).toBe(false); // nobody asked for a wake-up: no notify
    expect(doorbellRead(shared, 0)).toBe(1);
    expect(drain(c)).toEqual(Array.from({ length: 32 }, (_, i) => i));
    expect(ringOccupancy(sab)).toBe(0);
  });

  it('doorbell - the ringer notifies only while the sleeper has NEED_WAKEUP set, or when forced', () => {
    const w = new Int32Array(new SharedArrayBuffer(8));
    expect(doorbellRing(w, 0)).toBe(false);
    Atomics.store(w, DoorbellWord.NEED_WAKEUP, 1);
    expect(doorbellRing(w, 0)).toBe(true);
    Atomics.store(w, DoorbellWord.NEED_WAKEUP, 0);
    expect(doorbellRing(w, 0, true)).toBe(true);
    expect(doorbellRead(w, 0)).toBe(3);
  });

  it('ring - 64-bit fields round-trip every address up to 2^52 and beyond 2^32', () => {
    const w = new Int32Array(2);
    for (const v of [0, 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 45 + 12345, 2 ** 52 - 1, 2 ** 53 - 1]) {
      ringPutU64(w, 0, v);
      expect(ringGetU64(w, 0)).toBe(v);
    }
  });

  it('ring - layout: 64-byte slots, sizes checked, foreign memory refused', () => {
    expect(RING_SLOT_WORDS * 4).toBe(64);
    expect(ringBytes(8)).toBe(192 + 8 * 64);
    for (const bad of [0, 1, 3, 6, 1 << 17, 2.5]) expect(() => ringCreate(bad)).toThrow(RangeError);
    expect(ringCheck(ringCreate(8))).toBe(8);
    expect(() => new RingProducer(new SharedArrayBuffer(4096))).toThrow(/magic/);
    expect(() => new RingConsumer(new SharedArrayBuffer(8))).toThrow(/too small/);
  });
});

/**
 * Fixed-slot SPSC descriptor rings over SharedArrayBuffer (layout and ownership rule in
 * ring-layout.ts). Used both ways between the kernel and a device: the kernel produces
 * submission descriptors that the device consumes, and the device produces completion entries
 * that the kernel consumes.
 *
 * Roles are fixed: exactly one RingProducer and one RingConsumer per ring, each used by one
 * thread (ringbuf.js: "cannot change roles, except with external synchronization"). Neither
 * side ever waits here: a full ring is claim() === -1, an empty one peek() === -1. Waking the
 * other side is the doorbell's job (doorbell.ts), so a batch of N descriptors costs N slot
 * publications and one doorbell:
 *
 *   for (const d of batch) { const s = p.claim(); if (s < 0) break; fill(p.words, s, d); p.commit(); }
 *   p.flush(); doorbellRing(ctl, DB);
 *
 * Zero-copy: claim() and peek() return the word index of the slot inside `words` (an Int32Array
 * over the whole SAB); the caller reads or writes payload words at base + field offset. Only
 * RingSlot.SEQ and the header counters are accessed with Atomics.
 */
import {
  RING_PAYLOAD_WORDS,
  RingHdr,
  type RingMem,
  RingSlot,
  ringCheck,
  ringSlotBase,
  ringWords,
} from './ring-layout.ts';

/** Producer side of one ring. One thread only. */
export class RingProducer {
  /** The whole ring SAB as words; slot payloads are written here at claim()'s index. */
  readonly words: Int32Array;
  readonly slots: number;
  private readonly mask: number;
  // next position to fill (u32 as a JS number, wrapped with | 0 on use)
  private head: number;
  // TAIL as last loaded: free space is recomputed only when this says the ring is full.
  private tailCache: number;

  /** Attach to `sab` (ringCreate). Starts at the ring's published HEAD. Throws: RangeError. */
  constructor(sab: RingMem) {
    this.slots = ringCheck(sab);
    this.mask = this.slots - 1;
    this.words = ringWords(sab);
    this.head = Atomics.load(this.words, RingHdr.HEAD) | 0;
    this.tailCache = Atomics.load(this.words, RingHdr.TAIL) | 0;
  }

  /** Next position to be published (u32). */
  get position(): number {
    return this.head >>> 0;
  }

  /** Free slots. Exact for the producer, except that the consumer may have freed more since. */
  get space(): number {
    this.tailCache = Atomics.load(this.words, RingHdr.TAIL);
    return this.slots - ((this.head - this.tailCache) | 0);
  }

  /** TAIL as this producer last loaded it (a device model producing from wasm starts from it). */
  get cachedTail(): number {
    return this.tailCache;
  }

  /**
   * Take the counters back after a producer on the same thread (a wasm device model: the mlx5
   * HCA's mlx5-fast.ts) published slots from `position` on: its head and the TAIL it loaded.
   */
  resume(head: number, tailCache: number): void {
    this.head = head | 0;
    this.tailCache = tailCache | 0;
  }

  /**
   * Word index of the next free slot, or -1 if the ring is full. Calling it again before
   * commit() returns the same slot. Never waits.
   */
  claim(): number {
    if (((this.head - this.tailCache) | 0) >= this.slots) {
      // acquire: the consumer stored TAIL after it finished reading those slots.
      this.tailCache = Atomics.load(this.words, RingHdr.TAIL);
      if (((this.head - this.tailCache) | 0) >= this.slots) return -1;
    }
    return ringSlotBase(this.head & this.mask);
  }

  /**
   * Publish the slot claim() returned. Its payload must be written. Throws nothing; calling it
   * without a successful claim() is a producer bug that would overwrite an unread slot, so it is
   * checked: RangeError.
   */
  commit(): void {
    if (((this.head - this.tailCache) | 0) >= this.slots) {
      throw new RangeError('RingProducer.commit: no claimed slot (ring full)');
    }
    const base = ringSlotBase(this.head & this.mask);
    this.head = (this.head + 1) | 0;
    // publish: payload words were plain stores; a consumer that loads this SEQ sees them.
    Atomics.store(this.words, base + RingSlot.SEQ, this.head);
  }

  /**
   * Copy `payload` (at most RING_PAYLOAD_WORDS words) into the next slot and publish it.
   * Returns false if the ring is full (nothing written). Convenience over claim/commit.
   */
  post(payload: ArrayLike<number>): boolean {
    const base = this.claim();
    if (base < 0) return false;
    const n = Math.min(payload.length, RING_PAYLOAD_WORDS);
    const w = this.words;
    for (let i = 0; i < n; i++) w[base + i] = payload[i];
    this.commit();
    return true;
  }

  /**
   * Store HEAD (the published position) for occupancy queries. Call once per batch, before the
   * doorbell. Consumers do not need it: SEQ already published every slot.
   */
  flush(): void {
    Atomics.store(this.words, RingHdr.HEAD, this.head);
  }
}

/** Consumer side of one ring. One thread only. */
export class RingConsumer {
  /** The whole ring SAB as words; peek()'s index points into it. */
  readonly words: Int32Array;
  readonly slots: number;
  private readonly mask: number;
  // next position to read (u32 as a JS number, wrapped with | 0)
  private tail: number;

  /** Attach to `sab` (ringCreate). Starts at the ring's TAIL. Throws: RangeError. */
  constructor(sab: RingMem) {
    this.slots = ringCheck(sab);
    this.mask = this.slots - 1;
    this.words = ringWords(sab);
    this.tail = Atomics.load(this.words, RingHdr.TAIL) | 0;
  }

  /** Next position to be consumed (u32). */
  get position(): number {
    return this.tail >>> 0;
  }

  /**
   * Word index of the oldest published, unconsumed slot, or -1 if there is none. Never waits.
   * The slot stays the consumer's (and peek() keeps returning it) until release().
   */
  peek(): number {
    const base = ringSlotBase(this.tail & this.mask);
    // acquire: SEQ first; the payload words read after this load are the producer's.
    return Atomics.load(this.words, base + RingSlot.SEQ) === ((this.tail + 1) | 0) ? base : -1;
  }

  /** Hand the slot peek() returned back to the producer. Only after peek() returned >= 0. */
  release(): void {
    this.tail = (this.tail + 1) | 0;
    // release: every payload read of the slot happened before the producer may reuse it.
    Atomics.store(this.words, RingHdr.TAIL, this.tail);
  }

  /**
   * Slots published and not yet consumed, counted by walking SEQ words from the tail. May be
   * stale: the producer can publish more at any time. Diagnostics and tests only.
   */
  pending(): number {
    let n = 0;
    for (let t = this.tail; n < this.slots; t = (t + 1) | 0, n++) {
      const base = ringSlotBase(t & this.mask);
      if (Atomics.load(this.words, base + RingSlot.SEQ) !== ((t + 1) | 0)) break;
    }
    return n;
  }
}

/**
 * Occupancy as both counters say: published HEAD minus TAIL. Any thread; stale by nature.
 * Called by: diagnostics and tests.
 */
export function ringOccupancy(sab: RingMem): number {
  const w = ringWords(sab);
  return (Atomics.load(w, RingHdr.HEAD) - Atomics.load(w, RingHdr.TAIL)) | 0;
}

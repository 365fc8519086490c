/**
 * Descriptor ring memory: the shared-memory contract of a fixed-slot single-producer
 * single-consumer ring (SimBricks' 64-byte message queues, ringbuf.js's header words). One
 * SharedArrayBuffer per ring:
 *
 *   [RingHdr, 48 words: three 64-byte lines][slot 0][slot 1]...[slot SLOTS-1]
 *   slot = 16 words (64 bytes): payload words 0..14, then RingSlot.SEQ (word 15)
 *
 * Ownership: slot i is the producer's until it stores SEQ = position + 1 for the position it
 * fills (position counts every slot ever published, u32, wrapping). The consumer at position t
 * owns slot t & (SLOTS - 1) once it loads SEQ === (t + 1) | 0, and hands it back by storing
 * TAIL = t + 1. A stale SEQ from an earlier lap is t + 1 - k*SLOTS, never t + 1, so SEQ alone
 * says "filled for this lap"; no per-slot reset is needed. SEQ is the only word read with
 * Atomics.load; payload words are plain reads ordered by it.
 *
 * HEAD is the producer's published position (stored once per flush, for occupancy queries and
 * diagnostics); TAIL is the consumer's. They sit on their own 64-byte lines so the two threads
 * do not bounce one line per message. The producer reads TAIL only when its cached copy says
 * the ring is full.
 *
 * Nothing here imports kernel or device code: both sides attach to the same SAB.
 */
import { layoutCheck } from './layout.ts';
import { type PhysArenaDescriptor, physArenaCtlAlloc } from './phys-arena.ts';

export const RING_MAGIC = 0x52494e47; // 'RING'
export const RING_VERSION = 1;

export const RingHdr = {
  MAGIC: 0,
  VERSION: 1,
  /** Slots in the ring, a power of two. */
  SLOTS: 2,
  /** Words per slot (RING_SLOT_WORDS). */
  SLOT_WORDS: 3,
  /** RING_IN_ARENA when the ring lives in a host arena (ringCreate), else 0. */
  FLAGS: 4,
  /** Producer position as of its last flush (u32 stored as i32). */
  HEAD: 16,
  /** Consumer position: every slot before it is free again (u32 stored as i32). */
  TAIL: 32,
} as const;
export const RING_HDR_WORDS = 48;
/** RingHdr.FLAGS: the ring is a window of a host arena (a wasm device model can reach it). */
export const RING_IN_ARENA = 1;

/** Words per slot: 64 bytes, as SimBricks' SIMBRICKS_PROTO_MSG_SZCHECK asserts. */
export const RING_SLOT_WORDS = 16;
/** Payload words per slot (everything before SEQ). */
export const RING_PAYLOAD_WORDS = 15;

export const RingSlot = {
  /** Ownership word: (position + 1) | 0 once the slot holds that position's message. Last. */
  SEQ: 15,
} as const;

export const RING_MIN_SLOTS = 2;
export const RING_MAX_SLOTS = 1 << 16;

layoutCheck('RingHdr', RingHdr, RING_HDR_WORDS, 192);
layoutCheck('RingSlot', RingSlot, RING_SLOT_WORDS, 64);

/** Bytes of a ring SAB with `slots` slots. */
export function ringBytes(slots: number): number {
  return (RING_HDR_WORDS + slots * RING_SLOT_WORDS) * 4;
}

/** Word index of slot `index`'s first word. */
export function ringSlotBase(index: number): number {
  return RING_HDR_WORDS + index * RING_SLOT_WORDS;
}

/**
 * Allocate an empty ring of `slots` slots (a power of two in [2, 65536]); with `arena`, in that
 * host arena (64-byte aligned slots a wasm device model can reach) when it has room, else in a
 * SharedArrayBuffer of its own. Called by: the kernel driver that owns the queue, main thread.
 * Throws: RangeError for a bad size (a setup bug, not an errno).
 */
export function ringCreate(slots: number): SharedArrayBuffer;
export function ringCreate(slots: number, arena: PhysArenaDescriptor | null): RingMem;
export function ringCreate(slots: number, arena: PhysArenaDescriptor | null = null): RingMem {
  if (
    !Number.isInteger(slots) ||
    slots < RING_MIN_SLOTS ||
    slots > RING_MAX_SLOTS ||
    (slots & (slots - 1)) !== 0
  ) {
    throw new RangeError(`ringCreate: slots ${slots} must be a power of two in [2, 65536]`);
  }
  const inArena = arena !== null ? physArenaCtlAlloc(arena, ringBytes(slots)) : null;
  const mem = inArena ?? new SharedArrayBuffer(ringBytes(slots));
  const w = ringWords(mem);
  w[RingHdr.VERSION] = RING_VERSION;
  w[RingHdr.SLOTS] = slots;
  w[RingHdr.SLOT_WORDS] = RING_SLOT_WORDS;
  w[RingHdr.FLAGS] = inArena !== null ? RING_IN_ARENA : 0;
  // publish the header last: a side that loads MAGIC sees the sizes (slots start zeroed).
  Atomics.store(w, RingHdr.MAGIC, RING_MAGIC);
  return mem;
}

/**
 * Ring memory: a SharedArrayBuffer of its own, or a window of a host arena (an Int32Array over
 * the arena's memory: 64-byte aligned, and reachable by wasm device code; phys-arena.ts). Both
 * are structured-cloneable: a window posted to a worker shares the same memory.
 */
export type RingMem = SharedArrayBuffer | Int32Array;

/** The words of ring memory, word 0 = the header's MAGIC. */
export function ringWords(mem: RingMem): Int32Array {
  return mem instanceof Int32Array ? mem : new Int32Array(mem);
}

/**
 * Check that `mem` is ring memory and return its slot count.
 * Called by: RingProducer/RingConsumer constructors on either thread. Throws: RangeError.
 */
export function ringCheck(mem: RingMem): number {
  const ok =
    (mem instanceof SharedArrayBuffer ||
      (mem instanceof Int32Array && mem.buffer instanceof SharedArrayBuffer)) &&
    mem.byteLength >= RING_HDR_WORDS * 4;
  if (!ok) throw new RangeError('ring: sab is not ring memory (not shared memory or too small)');
  const w = ringWords(mem);
  // pairs with the MAGIC store in ringCreate: the size words below are initialised.
  if (Atomics.load(w, RingHdr.MAGIC) !== RING_MAGIC || w[RingHdr.VERSION] !== RING_VERSION) {
    throw new RangeError('ring: sab has no ring header (magic/version mismatch)');
  }
  const slots = w[RingHdr.SLOTS];
  if (w[RingHdr.SLOT_WORDS] !== RING_SLOT_WORDS || mem.byteLength < ringBytes(slots)) {
    throw new RangeError(`ring: sab is ${mem.byteLength} bytes, header says ${slots} slots`);
  }
  return slots;
}

const TWO32 = 2 ** 32;

/**
 * Store a 52-bit address (or any safe integer below 2^53) as two words, low then high.
 * Plain stores: the slot's SEQ store publishes them.
 */
export function ringPutU64(w: Int32Array, at: number, value: number): void {
  // no `%` on a double: V8 calls fmod for it (~15 ns), per WQE and CQE on the hot path.
  const hi = Math.floor(value / TWO32);
  w[at] = (value - hi * TWO32) | 0;
  w[at + 1] = hi | 0;
}

/** Read back what ringPutU64 stored (the high word is taken as unsigned). */
export function ringGetU64(w: Int32Array, at: number): number {
  return (w[at + 1] >>> 0) * TWO32 + (w[at] >>> 0);
}

/**
 * IOMMU fault ring: the producer side (device workers and the kernel's own DMA calls append)
 * and the single-consumer side (the kernel's IommuFaultLog drains). Layout in iommu-layout.ts.
 *
 * Producers never wait: a full ring drops the record and counts OVERFLOW. The claim is a
 * compareExchange on HEAD, retried only when another producer won the same position, so the
 * append is lock-free and bounded by the number of concurrent producers.
 */
import { hex } from './page.ts';
import {
  type DmaAccess,
  FAULT_ACCESS_BUS,
  FAULT_RING_HDR_WORDS,
  FAULT_RING_MAGIC,
  FAULT_SLOT_WORDS,
  FaultRingHdr,
  FaultSlot,
  faultRingBytes,
  type IommuFaultReason,
} from './iommu-layout.ts';

const TWO32 = 2 ** 32;

/** One decoded fault. `address` is the IOVA (or the bus address when `bus` is true). */
export interface IommuFaultRecord {
  deviceId: number;
  /** Domain the device was attached to; 0 for raw bus accesses or no domain. */
  domainId: number;
  address: number;
  access: DmaAccess;
  /** True for a raw bus-address access (P2P without IOMMU). */
  bus: boolean;
  reason: IommuFaultReason;
  /** Bytes the access tried to move. */
  length: number;
}

/**
 * Allocate and initialise a ring of `capacity` slots (a power of two, 2..2^20).
 * Called by: the kernel (IommuFaultLog) once per IOMMU. Throws: RangeError on a bad capacity.
 */
export function faultRingCreate(capacity: number): SharedArrayBuffer {
  if (
    !Number.isInteger(capacity) ||
    capacity < 2 ||
    capacity > 1 << 20 ||
    (capacity & (capacity - 1)) !== 0
  ) {
    throw new RangeError(`faultRingCreate: capacity must be a power of two in [2, 2^20], got ${capacity}`);
  }
  const sab = new SharedArrayBuffer(faultRingBytes(capacity));
  const w = new Int32Array(sab);
  for (let i = 0; i < capacity; i++) w[FAULT_RING_HDR_WORDS + i * FAULT_SLOT_WORDS + FaultSlot.SEQ] = i;
  w[FaultRingHdr.CAPACITY] = capacity;
  // publish: MAGIC last, after the slot sequences are in place.
  Atomics.store(w, FaultRingHdr.MAGIC, FAULT_RING_MAGIC);
  return sab;
}

/** Producer handle over a ring SAB; one per thread (holds only views). */
export class FaultRingProducer {
  readonly words: Int32Array;
  private readonly mask: number;

  constructor(sab: SharedArrayBuffer) {
    this.words = new Int32Array(sab);
    // pairs with the MAGIC store in faultRingCreate: the capacity and slots are initialised.
    if (Atomics.load(this.words, FaultRingHdr.MAGIC) !== FAULT_RING_MAGIC) {
      throw new Error('FaultRingProducer: SAB is not an initialised fault ring');
    }
    this.mask = this.words[FaultRingHdr.CAPACITY] - 1;
  }

  /**
   * Append one fault. Returns false (and counts OVERFLOW) if the ring is full. Never throws,
   * never waits. Called by: dma.ts on a translation fault, from any thread.
   */
  append(
    deviceId: number,
    domainId: number,
    address: number,
    access: DmaAccess,
    bus: boolean,
    reason: IommuFaultReason,
    length: number,
  ): boolean {
    const w = this.words;
    let pos: number;
    let slot: number;
    for (;;) {
      pos = Atomics.load(w, FaultRingHdr.HEAD);
      slot = FAULT_RING_HDR_WORDS + (pos & this.mask) * FAULT_SLOT_WORDS;
      // the slot is free for `pos` once the consumer stored SEQ = pos (acquire its reads).
      const dif = (Atomics.load(w, slot + FaultSlot.SEQ) - pos) | 0;
      if (dif === 0) {
        // claim position pos; losing the race means another producer took it: reload HEAD.
        if (Atomics.compareExchange(w, FaultRingHdr.HEAD, pos, (pos + 1) | 0) === pos) break;
      } else if (dif < 0) {
        // the consumer is a whole lap behind: drop, count, never wait.
        Atomics.add(w, FaultRingHdr.OVERFLOW, 1);
        return false;
      }
    }
    w[slot + FaultSlot.DEVICE_ID] = deviceId;
    w[slot + FaultSlot.DOMAIN_ID] = domainId;
    w[slot + FaultSlot.ADDR_LO] = (address % TWO32) | 0;
    w[slot + FaultSlot.ADDR_HI] = Math.floor(address / TWO32);
    w[slot + FaultSlot.ACCESS] = access | (bus ? FAULT_ACCESS_BUS : 0);
    w[slot + FaultSlot.REASON] = reason;
    w[slot + FaultSlot.LENGTH] = Math.min(length, 0x7fffffff);
    // publish the payload: the consumer loads SEQ == pos + 1 before reading the fields.
    Atomics.store(w, slot + FaultSlot.SEQ, (pos + 1) | 0);
    // wake a kernel waiting in Atomics.waitAsync on SIGNAL (after publishing, so it finds the record).
    Atomics.add(w, FaultRingHdr.SIGNAL, 1);
    Atomics.notify(w, FaultRingHdr.SIGNAL);
    return true;
  }

  /** Records dropped so far (may lag concurrent producers). */
  get overflow(): number {
    return Atomics.load(this.words, FaultRingHdr.OVERFLOW);
  }
}

/**
 * Take the oldest published record, or null if none is ready (empty, or the oldest claimed slot
 * is still being written). Single consumer only. Called by: IommuFaultLog.drain() (kernel).
 */
export function faultRingPop(w: Int32Array): IommuFaultRecord | null {
  const cap = w[FaultRingHdr.CAPACITY];
  const pos = Atomics.load(w, FaultRingHdr.TAIL);
  const slot = FAULT_RING_HDR_WORDS + (pos & (cap - 1)) * FAULT_SLOT_WORDS;
  // acquire: SEQ == pos + 1 means the producer's field writes are visible.
  if (((Atomics.load(w, slot + FaultSlot.SEQ) - pos - 1) | 0) !== 0) return null;
  const access = w[slot + FaultSlot.ACCESS];
  const rec: IommuFaultRecord = {
    deviceId: w[slot + FaultSlot.DEVICE_ID],
    domainId: w[slot + FaultSlot.DOMAIN_ID],
    address: w[slot + FaultSlot.ADDR_HI] * TWO32 + (w[slot + FaultSlot.ADDR_LO] >>> 0),
    access: (access & 1) as DmaAccess,
    bus: (access & FAULT_ACCESS_BUS) !== 0,
    reason: w[slot + FaultSlot.REASON] as IommuFaultReason,
    length: w[slot + FaultSlot.LENGTH],
  };
  // release the slot for the producer one lap ahead, after the fields were read.
  Atomics.store(w, slot + FaultSlot.SEQ, (pos + cap) | 0);
  Atomics.store(w, FaultRingHdr.TAIL, (pos + 1) | 0);
  return rec;
}

/** One-line form for logs and error messages. */
export function formatFault(r: IommuFaultRecord): string {
  const dir = r.access === 1 ? 'write' : 'read';
  const space = r.bus ? 'bus' : 'iova';
  return `dev ${r.deviceId} dom ${r.domainId} ${dir} ${space} ${hex(r.address)} len ${r.length} reason ${r.reason}`;
}

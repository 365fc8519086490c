/**
 * IommuFaultLog: the kernel (consumer) side of an IOMMU's fault ring (Linux: the fault
 * reporting queue drained by the IOMMU driver's interrupt handler, iommu_report_device_fault).
 *
 * Device workers append records from the DMA path (fabric/dma.ts) without waiting; the kernel
 * drains them here, keeps a bounded history, counts them and emits the `iommuFault` trace
 * point for each. Records the ring had to drop are counted in `overflow`, never waited for.
 *
 * Thread: kernel (main thread) only: the ring has a single consumer. waitForFault() uses
 * Atomics.waitAsync, so the main thread never blocks.
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import { type IommuFaultRecord, faultRingCreate, faultRingPop } from '../../fabric/iommu-fault-ring.ts';
import { FaultRingHdr, IommuFaultReason } from '../../fabric/iommu-layout.ts';

export type { IommuFaultRecord } from '../../fabric/iommu-fault-ring.ts';
export { DmaAccess, IommuFaultReason } from '../../fabric/iommu-layout.ts';

/** Name of a fault reason, for messages and traces. */
export function iommuFaultReasonName(reason: number): string {
  for (const [name, v] of Object.entries(IommuFaultReason)) if (v === reason) return name;
  return `UNKNOWN(${reason})`;
}

export class IommuFaultLog {
  /** The ring SAB handed to every device DMA ctx of this IOMMU. */
  readonly sab: SharedArrayBuffer;
  /** Ring slots (a power of two). */
  readonly capacity: number;
  /** Most recent drained records, oldest first, at most `historyLimit`. */
  readonly records: IommuFaultRecord[] = [];
  readonly historyLimit: number;
  private readonly words: Int32Array;
  private drained = 0;

  /**
   * Called by: the Iommu constructor. Throws: EINVAL naming capacity (power of two in
   * [2, 2^20]) or historyLimit (positive integer).
   */
  constructor(capacity = 256, historyLimit = 1024) {
    if (
      !Number.isInteger(capacity) ||
      capacity < 2 ||
      capacity > 1 << 20 ||
      (capacity & (capacity - 1)) !== 0
    ) {
      throw err('EINVAL', `IommuFaultLog: capacity must be a power of two in [2, 2^20], got ${capacity}`);
    }
    if (!Number.isInteger(historyLimit) || historyLimit < 1) {
      throw err('EINVAL', `IommuFaultLog: historyLimit must be a positive integer, got ${historyLimit}`);
    }
    this.capacity = capacity;
    this.historyLimit = historyLimit;
    this.sab = faultRingCreate(capacity);
    this.words = new Int32Array(this.sab);
  }

  /** Faults drained so far (the counter; history may hold fewer). */
  get count(): number {
    return this.drained;
  }

  /** Faults dropped by producers because the ring was full. */
  get overflow(): number {
    return Atomics.load(this.words, FaultRingHdr.OVERFLOW);
  }

  /**
   * Take every published record from the ring, append them to `records` (trimming the oldest)
   * and trace each. Returns the new records. Called by: the IOMMU fault handler, tests.
   */
  drain(): IommuFaultRecord[] {
    const out: IommuFaultRecord[] = [];
    for (let r = faultRingPop(this.words); r !== null; r = faultRingPop(this.words)) {
      out.push(r);
      const rec = r;
      trace('iommuFault', () => ({ ...rec, reasonName: iommuFaultReasonName(rec.reason) }));
    }
    this.drained += out.length;
    this.records.push(...out);
    if (this.records.length > this.historyLimit)
      this.records.splice(0, this.records.length - this.historyLimit);
    return out;
  }

  /**
   * Resolve 'fault' once a record is pending (or already is), 'timed-out' after `ms`.
   * Never blocks the main thread (Atomics.waitAsync). Does not drain.
   */
  waitForFault(ms: number): Promise<'fault' | 'timed-out'> {
    // load SIGNAL before checking the ring: a record published after this load moves SIGNAL.
    const seen = Atomics.load(this.words, FaultRingHdr.SIGNAL);
    if (this.pending()) return Promise.resolve('fault');
    const r = Atomics.waitAsync(this.words, FaultRingHdr.SIGNAL, seen, ms);
    const map = (v: 'ok' | 'not-equal' | 'timed-out') => (v === 'timed-out' ? 'timed-out' : 'fault');
    return r.async ? r.value.then(map) : Promise.resolve(map(r.value));
  }

  /** True if the ring holds records not yet drained (head moved past tail). */
  pending(): boolean {
    return Atomics.load(this.words, FaultRingHdr.HEAD) !== Atomics.load(this.words, FaultRingHdr.TAIL);
  }
}

/**
 * The device DMA path: every DMA a device makes passes through dmaRoute(), the single routing
 * point where a TLP analyzer or a DMA sanitizer hooks in (DmaCtx.hook, one null check per run).
 *
 * Device side only: imports fabric/ and common/, never nodes/kernel/. A worker receives a
 * DmaCtxDescriptor from the kernel (iommuDeviceDmaCtx(), passed in workerData with its port in
 * transferList) and builds `new DmaCtx(desc)`. From then on it translates on its own:
 *   - IOVA accesses walk the attached domain's shared page table (iommu-layout.ts) per page,
 *     merge physically contiguous pages into runs and copy each run with one
 *     TypedArray.prototype.set (copyWithin on SABs is several times slower);
 *   - bus accesses (P2P without IOMMU) resolve the bus address against BAR windows only.
 * Kernel updates (newly attached domain, new BAR windows) arrive on the ctx's port before the
 * shared word that announces them moves; dmaCtxSync() drains them synchronously.
 *
 * No IOTLB is modelled: every page is translated at access time, so an unmap is seen by the
 * next translation. A run already translated may still be copied after a concurrent unmap,
 * like a TLP in flight before the invalidation completes.
 *
 * Errors never throw: each entry returns DmaStatus.OK (0) or a negative errno. A translation
 * fault or unsupported request is appended to the IOMMU fault ring before returning; bytes of
 * earlier runs have already landed (hardware does not roll back completed TLPs).
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Errno } from '../../common/errno.ts';
import { FaultRingProducer } from './iommu-fault-ring.ts';
import {
  DevCtx,
  DmaAccess,
  IommuDomainType,
  IommuFaultReason,
  LEAF_ENTRIES,
  LEAF_SHIFT,
  LEAF_WORDS,
  PGTABLE_HDR_WORDS,
  PgtableHdr,
  PTE_PFN_HI_MASK,
  PTE_PFN_HI_SHIFT,
  PTE_PRESENT,
  PTE_READ,
  PTE_WRITE,
  Pte,
} from './iommu-layout.ts';
import { MAX_ADDR, PAGE_SIZE } from './page.ts';
import { PhysMapView } from './phys-map.ts';
import { type PhysMapDescriptor, type PhysMapUpdate, PhysWindowKind } from './phys-map-layout.ts';

/** Return values of the dma* entries: 0 or a negative errno. */
export const DmaStatus = {
  OK: 0,
  /** Translation fault (NOT_PRESENT, PERM, BLOCKED); recorded in the fault ring. */
  EFAULT: -Errno.EFAULT,
  /** Unsupported request: the address hits no window (or a raw bus access hits RAM); recorded. */
  EIO: -Errno.EIO,
  /** Bad arguments from the device model itself (range, buffer bounds); not recorded. */
  EINVAL: -Errno.EINVAL,
} as const;
export type DmaStatus = (typeof DmaStatus)[keyof typeof DmaStatus];

/** What a routed access does. */
export const DmaOp = { READ: 0, WRITE: 1, FILL: 2 } as const;
export type DmaOp = (typeof DmaOp)[keyof typeof DmaOp];

/**
 * Hook at the routing point, called once per contiguous run before its copy.
 * `addr` is the run's IOVA (or bus address when `bus`), `phys` its physical/bus target.
 * Return 0 to let the run proceed, or a negative errno to stop the DMA with that status.
 */
export type DmaHook = (
  ctx: DmaCtx,
  op: DmaOp,
  addr: number,
  phys: number,
  length: number,
  bus: boolean,
) => number;

/** A domain's table as it crosses to a worker. */
export interface DmaDomainDescriptor {
  id: number;
  type: IommuDomainType;
  /** The domain's page table SAB (growable); header only for IDENTITY and BLOCKED. */
  sab: SharedArrayBuffer;
}

/** Posted to a device's ctx port before the device context entry names the domain. */
export interface DmaDomainUpdate {
  type: 'domain';
  domain: DmaDomainDescriptor;
}
export type DmaCtxUpdate = PhysMapUpdate | DmaDomainUpdate;

/** Everything a worker needs to DMA. Structured-cloneable; `port` must go in transferList. */
export interface DmaCtxDescriptor {
  deviceId: number;
  /** Device context entry (DevCtx words). */
  devCtx: SharedArrayBuffer;
  phys: PhysMapDescriptor;
  /** Domains known at hand-off (at least the attached one). */
  domains: DmaDomainDescriptor[];
  faultRing: SharedArrayBuffer;
  /** Update port (DmaCtxUpdate messages); null: the ctx never sees later updates. */
  port: MessagePort | null;
}

/** Reader state of one domain table. */
class DomainTables {
  readonly id: number;
  readonly type: IommuDomainType;
  readonly sab: SharedArrayBuffer;
  /** Fixed-length view (fast); rebuilt when a leaf lies past its end. */
  words: Int32Array;
  readonly dirWords: number;
  /** First IOVA beyond the aperture. */
  readonly limit: number;

  constructor(d: DmaDomainDescriptor) {
    this.id = d.id;
    this.type = d.type;
    this.sab = d.sab;
    this.words = new Int32Array(d.sab, 0, d.sab.byteLength >> 2);
    this.dirWords = this.words[PgtableHdr.DIR_WORDS];
    this.limit = 2 ** this.words[PgtableHdr.APERTURE_BITS];
  }
}

/** Per-device translation context, owned by the device's thread. */
export class DmaCtx {
  readonly deviceId: number;
  readonly phys: PhysMapView;
  readonly faults: FaultRingProducer;
  /** Routing-point hook (TLP analyzer, sanitizer); null costs one comparison per run. */
  hook: DmaHook | null = null;
  /** Faults this ctx recorded (or tried to: overflowed records count too). */
  faultCount = 0;
  readonly devCtx: Int32Array;
  readonly port: MessagePort | null;
  /** Attached domain as last synced; null = none or BLOCKED. */
  dom: DomainTables | null = null;
  domId = 0;
  private readonly domains = new Map<number, DomainTables>();

  constructor(desc: DmaCtxDescriptor) {
    this.deviceId = desc.deviceId;
    this.devCtx = new Int32Array(desc.devCtx);
    this.port = desc.port;
    this.phys = new PhysMapView(desc.phys);
    this.faults = new FaultRingProducer(desc.faultRing);
    for (const d of desc.domains) this.domains.set(d.id, new DomainTables(d));
    this.sync();
  }

  /** True once this ctx has the tables of domain `id` (tests and diagnostics). */
  knownDomain(id: number): boolean {
    return this.domains.has(id);
  }

  /**
   * Pull pending kernel updates from the port and re-read the attached domain. Never waits
   * (receiveMessageOnPort). Called by: dmaCtxSync().
   */
  sync(): void {
    const port = this.port;
    if (port !== null) {
      for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
        const msg = m.message as DmaCtxUpdate;
        if (msg.type === 'phys-map') this.phys.apply(msg.map);
        else if (msg.type === 'domain' && !this.domains.has(msg.domain.id)) {
          this.domains.set(msg.domain.id, new DomainTables(msg.domain));
        }
      }
    }
    // the kernel posted the domain before storing its id here, so the lookup below finds it.
    const id = Atomics.load(this.devCtx, DevCtx.DOMAIN_ID);
    const dom = this.domains.get(id);
    this.domId = id;
    this.dom = dom !== undefined && dom.type !== IommuDomainType.BLOCKED ? dom : null;
  }

  /** Close the update port. Idempotent. */
  close(): void {
    this.port?.close();
  }
}

/**
 * Pick up kernel updates (attached domain, phys map). Called by: dmaRoute() when the context
 * entry or the phys map generation moved; device code may call it at any time.
 */
export function dmaCtxSync(ctx: DmaCtx): void {
  ctx.sync();
}

// Hot-path constants as module locals. If a loader transpiles this module to CommonJS (tsx
// loading it from a CJS entry), every imported binding becomes a getter call: measured 3x slower
// per page. Module-local consts cost nothing either way.
const kPage = PAGE_SIZE;
const kMaxAddr = MAX_ADDR;
const kHdr = PGTABLE_HDR_WORDS;
const kLeafShift = LEAF_SHIFT;
const kLeafWords = LEAF_WORDS;
const kLeafMask = LEAF_ENTRIES - 1;
const kCtl = Pte.CTL;
const kPfnLo = Pte.PFN_LO;
const kPresent = PTE_PRESENT;
const kNeedRead = PTE_READ;
const kNeedWrite = PTE_WRITE;
const kPfnHiShift = PTE_PFN_HI_SHIFT;
const kPfnHiMask = PTE_PFN_HI_MASK;
const kNotPresent = IommuFaultReason.NOT_PRESENT;
const kPerm = IommuFaultReason.PERM;
const kBlocked = IommuFaultReason.BLOCKED;
const kUnsupported = IommuFaultReason.UNSUPPORTED_REQUEST;
const kDomainWord = DevCtx.DOMAIN_ID;
const kAccessRead = DmaAccess.READ;
const kAccessWrite = DmaAccess.WRITE;
const kIdentity = IommuDomainType.IDENTITY;
const kBar = PhysWindowKind.BAR;

/**
 * Translate one IOVA through a paging domain: the physical address (>= 0), or the negated
 * IommuFaultReason. Allocation-free; a few Atomics.load per call.
 */
function translate(t: DomainTables, iova: number, need: number): number {
  if (iova >= t.limit) return -kNotPresent;
  // aperture <= 2^40, so the IOVA pfn is < 2^28 and fits int32 arithmetic.
  const pfn = (iova / kPage) | 0;
  let w = t.words;
  // directory slots change only 0 -> n; loading n makes the leaf's bytes (grown first) visible.
  const leaf = Atomics.load(w, kHdr + (pfn >>> kLeafShift));
  if (leaf === 0) return -kNotPresent;
  const e = kHdr + t.dirWords + (leaf - 1) * kLeafWords + ((pfn & kLeafMask) << 1);
  if (e + kPfnLo >= w.length) {
    // the table grew since this view was made (slow path, once per growth).
    w = t.words = new Int32Array(t.sab, 0, t.sab.byteLength >> 2);
    if (e + kPfnLo >= w.length) return -kNotPresent; // unreachable with a well-behaved kernel; never throw
  }
  for (;;) {
    // seqlock read: CTL, then PFN_LO, then CTL again; a changed CTL means a concurrent (un)map.
    const ctl = Atomics.load(w, e + kCtl);
    if ((ctl & kPresent) === 0) return -kNotPresent;
    if ((ctl & need) === 0) return -kPerm;
    const lo = Atomics.load(w, e + kPfnLo);
    if (Atomics.load(w, e + kCtl) !== ctl) continue;
    const hi = (ctl >>> kPfnHiShift) & kPfnHiMask;
    return hi * 2 ** 44 + (lo >>> 0) * kPage + (iova % kPage);
  }
}

function fault(
  ctx: DmaCtx,
  addr: number,
  access: DmaAccess,
  bus: boolean,
  reason: number,
  len: number,
): number {
  ctx.faultCount++;
  ctx.faults.append(ctx.deviceId, bus ? 0 : ctx.domId, addr, access, bus, reason as IommuFaultReason, len);
  return reason === kUnsupported ? DmaStatus.EIO : DmaStatus.EFAULT;
}

/**
 * The routing point. `buf` is the device-local buffer (source for WRITE, destination for READ,
 * null for FILL). Returns DmaStatus.OK or a negative errno; never throws for device input.
 */
function dmaRoute(
  ctx: DmaCtx,
  op: DmaOp,
  bus: boolean,
  addr: number,
  buf: Uint8Array | null,
  bufOff: number,
  length: number,
  value: number,
): number {
  if (length === 0) return DmaStatus.OK;
  if (
    !(
      Number.isInteger(addr) &&
      addr >= 0 &&
      Number.isInteger(length) &&
      length > 0 &&
      addr + length <= kMaxAddr
    )
  ) {
    return DmaStatus.EINVAL;
  }
  if (buf !== null && !(Number.isInteger(bufOff) && bufOff >= 0 && bufOff + length <= buf.length)) {
    return DmaStatus.EINVAL;
  }
  // pick up kernel updates: two Atomics.load per DMA, not per page.
  if (Atomics.load(ctx.devCtx, kDomainWord) !== ctx.domId || ctx.phys.stale) dmaCtxSync(ctx);
  const access = op === DmaOp.READ ? kAccessRead : kAccessWrite;
  const need = op === DmaOp.READ ? kNeedRead : kNeedWrite;
  const pv = ctx.phys;
  const dom = ctx.dom;
  const paging = !bus && dom !== null && dom.type !== kIdentity;
  const hook = ctx.hook;
  let done = 0;
  let nextAddr = -1; // a translation already done for the page at nextAddr (merge look-ahead)
  let nextPhys = -1;
  while (done < length) {
    const a = addr + done;
    let p: number;
    let run: number;
    if (!paging) {
      if (!bus && dom === null) return fault(ctx, a, access, bus, kBlocked, length - done);
      p = a; // bus address, or IDENTITY: iova == phys; the window clamp below splits the run
      run = length - done;
    } else {
      p = a === nextAddr ? nextPhys : translate(dom, a, need);
      nextAddr = -1;
      if (p < 0) return fault(ctx, a, access, bus, -p, length - done);
      run = Math.min(kPage - (a % kPage), length - done);
      // merge following pages while they are physically contiguous
      while (done + run < length) {
        const np = translate(dom, a + run, need);
        if (np !== p + run) {
          nextAddr = a + run;
          nextPhys = np;
          break;
        }
        run += Math.min(kPage, length - done - run);
      }
    }
    const wi = bus ? pv.findBus(p) : pv.findPhys(p);
    if (wi < 0 || (bus && pv.kind[wi] !== kBar)) {
      return fault(ctx, a, access, bus, kUnsupported, length - done);
    }
    const wStart = bus ? pv.busStart[wi] : pv.start[wi];
    const wEnd = bus ? pv.busEnd[wi] : pv.end[wi];
    if (p + run > wEnd) run = wEnd - p; // the rest starts a new run in the next window (or faults)
    const off = pv.regionOffset[wi] + (p - wStart);
    const mem = pv.bytes[wi];
    if (hook !== null) {
      const s = hook(ctx, op, a, p, run, bus);
      if (s !== 0) return s;
    }
    if (op === DmaOp.WRITE) mem.set(buf!.subarray(bufOff + done, bufOff + done + run), off);
    else if (op === DmaOp.READ) buf!.set(mem.subarray(off, off + run), bufOff + done);
    else mem.fill(value, off, off + run);
    done += run;
  }
  return DmaStatus.OK;
}

/**
 * Device reads `length` bytes at `iova` (through its IOMMU domain) into `dst[dstOff..]`.
 * Called by: device workers (and kernel tests). Needs IOMMU_READ on every page.
 * Returns: DmaStatus.OK, EFAULT (translation fault, recorded), EIO (no target, recorded), EINVAL.
 */
export function dmaRead(ctx: DmaCtx, iova: number, length: number, dst: Uint8Array, dstOff = 0): number {
  return dmaRoute(ctx, DmaOp.READ, false, iova, dst, dstOff, length, 0);
}

/** Device writes `src[srcOff..srcOff+length)` at `iova`. Needs IOMMU_WRITE. Same returns as dmaRead. */
export function dmaWrite(ctx: DmaCtx, iova: number, src: Uint8Array, srcOff: number, length: number): number {
  return dmaRoute(ctx, DmaOp.WRITE, false, iova, src, srcOff, length, 0);
}

/** Device writes `length` bytes of `value` (0..255) at `iova`. Needs IOMMU_WRITE. */
export function dmaFill(ctx: DmaCtx, iova: number, value: number, length: number): number {
  return dmaRoute(ctx, DmaOp.FILL, false, iova, null, 0, length, value);
}

/**
 * Peer-to-peer read by raw bus address (PCI_P2PDMA_MAP_BUS_ADDR: no IOMMU on the path). Only
 * BAR windows answer; anything else is an unsupported request (EIO, recorded).
 */
export function dmaReadBus(
  ctx: DmaCtx,
  busAddr: number,
  length: number,
  dst: Uint8Array,
  dstOff = 0,
): number {
  return dmaRoute(ctx, DmaOp.READ, true, busAddr, dst, dstOff, length, 0);
}

/** Peer-to-peer write by raw bus address into a BAR window. Same returns as dmaReadBus. */
export function dmaWriteBus(
  ctx: DmaCtx,
  busAddr: number,
  src: Uint8Array,
  srcOff: number,
  length: number,
): number {
  return dmaRoute(ctx, DmaOp.WRITE, true, busAddr, src, srcOff, length, 0);
}

/**
 * One side of a dmaCopy(): the routing state of a DMA in progress, resolved run by run. Two of
 * these live at module level and are reused, so a copy allocates nothing (the hot path of an
 * RDMA NIC moving a message between two memory regions).
 */
class RunCursor {
  ctx: DmaCtx | null = null;
  op: DmaOp = DmaOp.READ;
  bus = false;
  paging = false;
  dom: DomainTables | null = null;
  access: DmaAccess = kAccessRead;
  need = kNeedRead;
  // merge look-ahead: a translation already done for the page at nextAddr
  nextAddr = -1;
  nextPhys = -1;
  /** Outputs of next(): window bytes, offset of the run in them, its length. */
  mem: Uint8Array = new Uint8Array(0);
  off = 0;
  run = 0;

  begin(ctx: DmaCtx, op: DmaOp, bus: boolean): void {
    // pick up kernel updates: two Atomics.load per side and DMA, not per page (as dmaRoute).
    if (Atomics.load(ctx.devCtx, kDomainWord) !== ctx.domId || ctx.phys.stale) dmaCtxSync(ctx);
    this.ctx = ctx;
    this.op = op;
    this.bus = bus;
    this.dom = ctx.dom;
    this.paging = !bus && ctx.dom !== null && ctx.dom.type !== kIdentity;
    this.access = op === DmaOp.READ ? kAccessRead : kAccessWrite;
    this.need = op === DmaOp.READ ? kNeedRead : kNeedWrite;
    this.nextAddr = -1;
  }

  /**
   * Resolve the run at `a` of at most `max` bytes (same rules as dmaRoute: page walk with
   * merging, window clamp, hook). Returns 0 with mem/off/run set, or the fault status (recorded).
   */
  next(a: number, max: number): number {
    const ctx = this.ctx!;
    const dom = this.dom;
    let p: number;
    let run: number;
    if (!this.paging) {
      if (!this.bus && dom === null) return fault(ctx, a, this.access, false, kBlocked, max);
      p = a;
      run = max;
    } else {
      p = a === this.nextAddr ? this.nextPhys : translate(dom!, a, this.need);
      this.nextAddr = -1;
      if (p < 0) return fault(ctx, a, this.access, false, -p, max);
      run = Math.min(kPage - (a % kPage), max);
      if (run < max) run = mergeLeaf(this, dom!, a, p, run, max);
    }
    const pv = ctx.phys;
    const bus = this.bus;
    const wi = bus ? pv.findBus(p) : pv.findPhys(p);
    if (wi < 0 || (bus && pv.kind[wi] !== kBar)) return fault(ctx, a, this.access, bus, kUnsupported, max);
    const wStart = bus ? pv.busStart[wi] : pv.start[wi];
    const wEnd = bus ? pv.busEnd[wi] : pv.end[wi];
    if (p + run > wEnd) {
      run = wEnd - p;
      this.nextAddr = -1; // the look-ahead belonged to the clamped-off tail
    }
    const hook = ctx.hook;
    if (hook !== null) {
      const s = hook(ctx, this.op, a, p, run, bus);
      if (s !== 0) return s;
    }
    this.mem = pv.bytes[wi];
    this.off = pv.regionOffset[wi] + (p - wStart);
    this.run = run;
    return DmaStatus.OK;
  }

  end(): void {
    this.ctx = null;
    this.dom = null;
  }
}

/**
 * Extend the run [a, a + run) -> p while the following pages are physically contiguous, walking
 * the PTEs of the current leaf directly (same seqlock read as translate(), without the per-page
 * division and directory lookup); a new leaf goes through translate(). A page that breaks the
 * run is left in the cursor's look-ahead. Returns the run length.
 */
function mergeLeaf(c: RunCursor, dom: DomainTables, a: number, p: number, run: number, max: number): number {
  const need = c.need;
  let next = a + run; // page aligned from here on
  let pfn = (next / kPage) | 0;
  let e = -1;
  let w = dom.words;
  while (run < max) {
    let np: number;
    if ((pfn & kLeafMask) === 0 || e < 0 || next >= dom.limit) {
      np = translate(dom, next, need);
      w = dom.words;
      // the PTE index of this page, to continue in its leaf
      const leaf = next < dom.limit ? Atomics.load(w, kHdr + (pfn >>> kLeafShift)) : 0;
      e = leaf === 0 ? -1 : kHdr + dom.dirWords + (leaf - 1) * kLeafWords + ((pfn & kLeafMask) << 1);
    } else {
      e += 2;
      np = -kNotPresent;
      for (;;) {
        if (e + kPfnLo >= w.length) {
          np = translate(dom, next, need);
          break;
        }
        const ctl = Atomics.load(w, e + kCtl);
        if ((ctl & kPresent) === 0) break;
        if ((ctl & need) === 0) {
          np = -kPerm;
          break;
        }
        const lo = Atomics.load(w, e + kPfnLo);
        if (Atomics.load(w, e + kCtl) !== ctl) continue;
        np = ((ctl >>> kPfnHiShift) & kPfnHiMask) * 2 ** 44 + (lo >>> 0) * kPage;
        break;
      }
    }
    if (np !== p + run) {
      c.nextAddr = next;
      c.nextPhys = np;
      break;
    }
    run += Math.min(kPage, max - run);
    next += kPage;
    pfn++;
  }
  return run;
}

const srcCursor = new RunCursor();
/** Up to this many bytes dmaCopy copies with a loop instead of subarray + set (measured: faster). */
const kSmallCopy = 64;
const dstCursor = new RunCursor();

/**
 * Device-to-memory-to-memory copy with no intermediate buffer: `length` bytes from `srcAddr`
 * (through `srcCtx`: its IOMMU domain, or a bus address when `srcBus`) to `dstAddr` (through
 * `dstCtx`, or a bus address when `dstBus`). Both sides are translated by the same rules as
 * dmaRead/dmaWrite (a READ needs IOMMU_READ, the WRITE side IOMMU_WRITE) and pass the same
 * routing point: the hook sees each source run as a READ and each destination run as a WRITE.
 * The bytes move with one TypedArray.prototype.set per pair of overlapping runs.
 *
 * Called by: device workers that move data between two memory regions (an RDMA NIC's loopback
 * WRITE/READ between two MRs). Thread: the device's. Not re-entrant (shared cursors): a hook
 * must not start another dmaCopy.
 * Returns: DmaStatus.OK, EFAULT/EIO (a translation fault on either side, recorded in that side's
 * fault ring; bytes of earlier runs have landed), EINVAL (bad range). Never throws.
 */
export function dmaCopy(
  srcCtx: DmaCtx,
  srcAddr: number,
  srcBus: boolean,
  dstCtx: DmaCtx,
  dstAddr: number,
  dstBus: boolean,
  length: number,
): number {
  if (length === 0) return DmaStatus.OK;
  if (
    !(
      Number.isInteger(length) &&
      length > 0 &&
      Number.isInteger(srcAddr) &&
      srcAddr >= 0 &&
      srcAddr + length <= kMaxAddr &&
      Number.isInteger(dstAddr) &&
      dstAddr >= 0 &&
      dstAddr + length <= kMaxAddr
    )
  ) {
    return DmaStatus.EINVAL;
  }
  const s = srcCursor;
  const d = dstCursor;
  s.begin(srcCtx, DmaOp.READ, srcBus);
  d.begin(dstCtx, DmaOp.WRITE, dstBus);
  let done = 0;
  let sLeft = 0; // bytes left of the current source run, at s.mem[sOff]
  let sOff = 0;
  let dLeft = 0;
  let dOff = 0;
  let status: number = DmaStatus.OK;
  while (done < length) {
    if (sLeft === 0) {
      status = s.next(srcAddr + done, length - done);
      if (status !== 0) break;
      sLeft = s.run;
      sOff = s.off;
    }
    if (dLeft === 0) {
      status = d.next(dstAddr + done, length - done);
      if (status !== 0) break;
      dLeft = d.run;
      dOff = d.off;
    }
    const n = sLeft < dLeft ? sLeft : dLeft;
    if (n <= kSmallCopy) {
      // a few bytes (doorbell-sized messages): a loop beats creating a subarray for set().
      const sm = s.mem;
      const dm = d.mem;
      for (let i = 0; i < n; i++) dm[dOff + i] = sm[sOff + i];
    } else d.mem.set(s.mem.subarray(sOff, sOff + n), dOff);
    sLeft -= n;
    sOff += n;
    dLeft -= n;
    dOff += n;
    done += n;
  }
  s.end();
  d.end();
  return status;
}

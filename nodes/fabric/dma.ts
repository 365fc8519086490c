/**
 * The device DMA path: every DMA a device makes passes through one routing point, RunCursor.next()
 * below, where a TLP analyzer or a DMA sanitizer hooks in (DmaCtx.hook, one null check per run).
 *
 * Device side only: imports fabric/ and common/, never nodes/kernel/. A worker receives a
 * DmaCtxDescriptor from the kernel (iommuDeviceDmaCtx(), passed in workerData with its port in
 * transferList) and builds `new DmaCtx(desc)`. From then on it translates on its own:
 *   - IOVA accesses translate through the device's IOTLB (fabric/iotlb.ts), which walks the
 *     attached domain's shared page table on a miss; physically contiguous pages merge into
 *     runs and each run is copied with one call: the host arena's memory.copy when both ends
 *     are regions of one arena (fabric/phys-arena.ts; a memmove, 2-4x `set` on shared memory),
 *     else one TypedArray.prototype.set (dmaCopyBytes);
 *   - bus accesses (P2P without IOMMU) resolve the bus address against BAR windows only.
 * Kernel updates (newly attached domain, new BAR windows) arrive on the ctx's port before the
 * kernel bumps DevCtx.INVAL; the device loads INVAL before each run and, when it moved, drains
 * the port, re-reads the attached domain and flushes its IOTLB (dmaCtxSync()). So an unmap, a
 * detach or a new window is seen by the next run (strict invalidation, DOC: IOTLB). A run
 * already translated may still be copied after a concurrent unmap, like a TLP in flight before
 * the invalidation completes.
 *
 * TPH (kernel-semantics §4.6 scenario 6): a device that stamps TLP Processing Hints sets
 * DmaCtx.tph (dmaTph(ph, st), 0 = none) around its calls, or gives dmaCopyTph a hint per side.
 * Every run of the DMA carries that hint, and the hook sees it. A window with a hint statistics
 * block (a TPH completer's BAR; DOC: TPH hints in fabric/phys-map-layout.ts) counts each run that
 * lands in it, hinted or not, with Atomics.add. Other windows cost one null check per run,
 * whatever the hint: no Atomics, no allocation, no call.
 *
 * Errors never throw: each entry returns DmaStatus.OK (0) or a negative errno. A translation
 * fault or unsupported request is appended to the IOMMU fault ring before returning; bytes of
 * earlier runs have already landed (hardware does not roll back completed TLPs).
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Errno } from '../../common/errno.ts';
import { FaultRingProducer } from './iommu-fault-ring.ts';
import type { PhysArenaCopy } from './phys-arena.ts';
import { type DmaDomainDescriptor, DomainTables, Iotlb, iotlbLookup } from './iotlb.ts';
import { DevCtx, DmaAccess, IommuDomainType, IommuFaultReason, PTE_READ, PTE_WRITE } from './iommu-layout.ts';
import { MAX_ADDR, PAGE_SIZE } from './page.ts';
import { PhysMapView } from './phys-map.ts';
import {
  type PhysMapDescriptor,
  type PhysMapUpdate,
  PhysWindowKind,
  tphStatsCount,
} from './phys-map-layout.ts';

export { DMA_TPH_NONE, dmaTph, dmaTphPh, dmaTphSt } from './phys-map-layout.ts';

export type { DmaDomainDescriptor } from './iotlb.ts';

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
 * `addr` is the run's IOVA (or bus address when `bus`), `phys` its physical/bus target, `tph` the
 * TLP Processing Hint the run carries (dmaTph() packing; 0 = none).
 * Return 0 to let the run proceed, or a negative errno to stop the DMA with that status.
 * A hook may start DMAs of its own (the cursors are stacked), and may unmap: the next run sees it.
 */
export type DmaHook = (
  ctx: DmaCtx,
  op: DmaOp,
  addr: number,
  phys: number,
  length: number,
  bus: boolean,
  tph: number,
) => number;

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
  /** The device's DevCtx entry: its own SAB, or a window of the host arena. */
  devCtx: SharedArrayBuffer | Int32Array;
  phys: PhysMapDescriptor;
  /** Domains known at hand-off (at least the attached one). */
  domains: DmaDomainDescriptor[];
  faultRing: SharedArrayBuffer;
  /** Update port (DmaCtxUpdate messages); null: the ctx never sees later updates. */
  port: MessagePort | null;
}

/** Per-device translation context, owned by the device's thread. */
export class DmaCtx {
  readonly deviceId: number;
  readonly phys: PhysMapView;
  readonly faults: FaultRingProducer;
  /** Routing-point hook (TLP analyzer, sanitizer); null costs one comparison per run. */
  hook: DmaHook | null = null;
  /**
   * The TPH hint (dmaTph(ph, st); 0 = none) of the DMAs this ctx starts from now on: a device
   * sets it before its dma* calls and clears it after. dmaCopyTph overrides it per side.
   */
  tph = 0;
  /** Faults this ctx recorded (or tried to: overflowed records count too). */
  faultCount = 0;
  readonly devCtx: Int32Array;
  readonly port: MessagePort | null;
  /** The device's translation cache (flushed by sync()). */
  readonly iotlb = new Iotlb();
  /** Attached domain as last synced; null = none or BLOCKED. */
  dom: DomainTables | null = null;
  domId = 0;
  /** DevCtx.INVAL as of the last sync(). */
  inval = 0;
  private readonly domains = new Map<number, DomainTables>();

  constructor(desc: DmaCtxDescriptor) {
    this.deviceId = desc.deviceId;
    this.devCtx = desc.devCtx instanceof Int32Array ? desc.devCtx : new Int32Array(desc.devCtx);
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
   * Pull pending kernel updates from the port, re-read the attached domain and flush the IOTLB.
   * Never waits (receiveMessageOnPort). Called by: dmaCtxSync().
   */
  sync(): void {
    // INVAL first: a bump after this load makes the next run sync again.
    this.inval = Atomics.load(this.devCtx, DevCtx.INVAL);
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
    this.iotlb.flush();
  }

  /** Close the update port. Idempotent. */
  close(): void {
    this.port?.close();
  }
}

/**
 * Pick up kernel updates (attached domain, phys map) and flush the IOTLB. Called by: the routing
 * point when DevCtx.INVAL moved; device code may call it at any time.
 */
export function dmaCtxSync(ctx: DmaCtx): void {
  ctx.sync();
}

// Hot-path constants as module locals. If a loader transpiles this module to CommonJS (tsx
// loading it from a CJS entry), every imported binding becomes a getter call: measured 3x slower
// per page. Module-local consts cost nothing either way.
const kPage = PAGE_SIZE;
const kMaxAddr = MAX_ADDR;
const kInvalWord = DevCtx.INVAL;
const kNeedRead = PTE_READ;
const kNeedWrite = PTE_WRITE;
const kNotPresent = IommuFaultReason.NOT_PRESENT;
const kPerm = IommuFaultReason.PERM;
const kBlocked = IommuFaultReason.BLOCKED;
const kUnsupported = IommuFaultReason.UNSUPPORTED_REQUEST;
const kAccessRead = DmaAccess.READ;
const kAccessWrite = DmaAccess.WRITE;
const kIdentity = IommuDomainType.IDENTITY;
const kBar = PhysWindowKind.BAR;
/** Up to this many bytes a run is copied with a loop instead of subarray + set (measured: faster). */
const kSmallCopy = 16;

/**
 * Move n bytes of one resolved run to another: a loop for a few bytes; the arena's memory.copy
 * when both are in one arena (fabric/phys-arena.ts: memmove speed); `set` otherwise.
 * The last kSmallCopy bytes land last, as a device's in-order posted writes do: memmove picks
 * its own block order, so they are stored after it (a poller of a buffer's last byte, like
 * perftest's ib_write_lat, then sees the whole message where stores are seen in program order,
 * as on x86; `set` gave no more on weaker machines). An overlapping copy inside one region
 * is one memmove (no order to keep).
 * Called by: dmaCopyTph, and device caches copying between DmaRunRecords (mlx5 mkeys).
 */
export function dmaCopyBytes(
  src: Uint8Array,
  srcArena: PhysArenaCopy | null,
  sOff: number,
  dst: Uint8Array,
  dstArena: PhysArenaCopy | null,
  dOff: number,
  n: number,
): void {
  if (n <= kSmallCopy) for (let i = 0; i < n; i++) dst[dOff + i] = src[sOff + i];
  else if (srcArena !== null && srcArena === dstArena) {
    const d = dst.byteOffset + dOff;
    const s = src.byteOffset + sOff;
    if (d - s < n && s - d < n) srcArena(d, s, n);
    else {
      const head = n - kSmallCopy;
      srcArena(d, s, head);
      for (let i = head; i < n; i++) dst[dOff + i] = src[sOff + i];
    }
  } else dst.set(src.subarray(sOff, sOff + n), dOff);
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
 * One side of a DMA in progress, resolved run by run: the routing point. Cursors are reused
 * from a stack (cursorGet/cursorPut), so a DMA allocates nothing and a hook may start its own.
 */
class RunCursor {
  ctx: DmaCtx | null = null;
  op: DmaOp = DmaOp.READ;
  bus = false;
  access: DmaAccess = kAccessRead;
  need = kNeedRead;
  /** The hint every run of this DMA carries (0: none). */
  tph = 0;
  /** Outputs of next(): window bytes, offset of the run in them, its length. */
  mem: Uint8Array = new Uint8Array(0);
  /** The arena copy of mem's region (PhysMapView.arena), null when it has a SAB of its own. */
  arena: PhysArenaCopy | null = null;
  off = 0;
  run = 0;
  /** Bytes contiguous from the run's start in its window and IOMMU extent (>= run). */
  span = 0;
  /** The last run had no hook and no hint statistics: only its bytes moved (DmaRunRecord). */
  plain = false;

  begin(ctx: DmaCtx, op: DmaOp, bus: boolean, tph: number): void {
    this.ctx = ctx;
    this.op = op;
    this.bus = bus;
    this.tph = tph;
    this.access = op === DmaOp.READ ? kAccessRead : kAccessWrite;
    this.need = op === DmaOp.READ ? kNeedRead : kNeedWrite;
  }

  /**
   * Resolve the run at `a` of at most `max` bytes: invalidation check (one Atomics.load; skipped
   * with `checked` when the caller loaded INVAL of this ctx for the run it pairs this one with),
   * translation through the IOTLB with merging of physically contiguous extents, the window
   * clamp, the hook, then the target window's hint statistics (only windows that have a block:
   * one null check for the others). Returns 0 with mem/off/run set, or the fault status (recorded).
   */
  next(a: number, max: number, checked = false): number {
    const ctx = this.ctx!;
    if (!checked && Atomics.load(ctx.devCtx, kInvalWord) !== ctx.inval) ctx.sync();
    const dom = ctx.dom;
    const bus = this.bus;
    let p: number;
    let run: number;
    let span: number; // contiguous from p (>= run): how far a cached translation may reach
    if (bus || dom === null || dom.type === kIdentity) {
      if (!bus && dom === null) return fault(ctx, a, this.access, false, kBlocked, max);
      p = a; // bus address, or IDENTITY: iova == phys; the window clamp below splits the run
      run = max;
      span = Number.POSITIVE_INFINITY;
    } else {
      if (a >= dom.limit) return fault(ctx, a, this.access, false, kNotPresent, max);
      const tlb = ctx.iotlb;
      const need = this.need;
      // a - floor(a / page) * page, not a % page: `%` on a double (an IOVA >= 2^31) is an fmod call.
      const pageBase = Math.floor(a / kPage) * kPage;
      const inPage = a - pageBase;
      // aperture <= 2^40, so the IOVA pfn is < 2^28 and fits int32 arithmetic.
      let pfn = (pageBase / kPage) | 0;
      let sl = iotlbLookup(tlb, dom, pfn, Math.ceil((inPage + max) / kPage));
      if (sl < 0) return fault(ctx, a, this.access, false, -sl, max);
      if ((tlb.perm[sl] & need) === 0) return fault(ctx, a, this.access, false, kPerm, max);
      p = tlb.phys[sl] + inPage;
      run = tlb.pages[sl] * kPage - inPage;
      // merge the following extents while they continue physically with the same permission
      while (run < max) {
        const np = pfn + tlb.pages[sl];
        if (np * kPage >= dom.limit) break;
        const s2 = iotlbLookup(tlb, dom, np, Math.ceil((max - run) / kPage));
        if (s2 < 0 || (tlb.perm[s2] & need) === 0 || tlb.phys[s2] !== p + run) break;
        pfn = np;
        sl = s2;
        run += tlb.pages[s2] * kPage;
      }
      span = run;
      if (run > max) run = max;
    }
    const pv = ctx.phys;
    const wi = bus ? pv.findBus(p) : pv.findPhys(p);
    if (wi < 0 || (bus && pv.kind[wi] !== kBar)) return fault(ctx, a, this.access, bus, kUnsupported, max);
    const wStart = bus ? pv.busStart[wi] : pv.start[wi];
    const wEnd = bus ? pv.busEnd[wi] : pv.end[wi];
    if (p + run > wEnd) run = wEnd - p; // the rest starts a new run in the next window (or faults)
    this.span = Math.min(span, wEnd - p);
    // the run's target is fixed before the hook: a hook that syncs this ctx (its own DMA after an
    // INVAL bump) replaces the phys map view's arrays, and `wi` would then name another window.
    this.mem = pv.bytes[wi];
    this.arena = pv.arena[wi];
    this.off = pv.regionOffset[wi] + (p - wStart);
    this.run = run;
    const stats = pv.tphStats[wi];
    const hook = ctx.hook;
    this.plain = stats === null && hook === null;
    if (hook !== null) {
      const s = hook(ctx, this.op, a, p, run, bus, this.tph);
      if (s !== 0) return s;
    }
    // the run lands: a completer that keeps hint statistics counts it (per run, not per TLP).
    if (stats !== null) tphStatsCount(stats, this.tph, run);
    return DmaStatus.OK;
  }
}

const cursors: RunCursor[] = [new RunCursor(), new RunCursor()];
let depth = 0;

function cursorGet(): RunCursor {
  if (depth === cursors.length) cursors.push(new RunCursor());
  return cursors[depth++];
}

function validRange(addr: number, length: number): boolean {
  return (
    Number.isInteger(addr) && addr >= 0 && Number.isInteger(length) && length > 0 && addr + length <= kMaxAddr
  );
}

/**
 * One device access between a device-local buffer and memory. `buf` is the source for WRITE, the
 * destination for READ, null for FILL. Returns DmaStatus.OK or a negative errno; never throws
 * for device input.
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
  first: DmaRunRecord | null = null,
): number {
  if (length === 0) return DmaStatus.OK;
  if (!validRange(addr, length)) return DmaStatus.EINVAL;
  if (buf !== null && !(Number.isInteger(bufOff) && bufOff >= 0 && bufOff + length <= buf.length)) {
    return DmaStatus.EINVAL;
  }
  const c = cursorGet();
  let status: number = DmaStatus.OK;
  try {
    c.begin(ctx, op, bus, ctx.tph);
    for (let done = 0; done < length; ) {
      status = c.next(addr + done, length - done);
      if (status !== 0) break;
      const n = c.run;
      const mem = c.mem;
      const off = c.off;
      const at = bufOff + done;
      if (done === 0 && first !== null) record(first, c, off);
      if (op === DmaOp.FILL) mem.fill(value, off, off + n);
      else if (n <= kSmallCopy) {
        // a few bytes (doorbell-sized messages): a loop beats creating a subarray for set().
        const b = buf!;
        if (op === DmaOp.WRITE) for (let i = 0; i < n; i++) mem[off + i] = b[at + i];
        else for (let i = 0; i < n; i++) b[at + i] = mem[off + i];
      } else if (op === DmaOp.WRITE) mem.set(buf!.subarray(at, at + n), off);
      else buf!.set(mem.subarray(off, off + n), at);
      done += n;
    }
  } finally {
    depth--;
  }
  return status;
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

/**
 * dmaRead/dmaWrite (`write`) or their bus-address forms (`bus`) in one call, recording where the
 * first run went in `first` (DmaRunRecord). Same returns as dmaRead.
 */
export function dmaXfer(
  ctx: DmaCtx,
  write: boolean,
  bus: boolean,
  addr: number,
  buf: Uint8Array,
  bufOff: number,
  length: number,
  first: DmaRunRecord | null,
): number {
  return dmaRoute(ctx, write ? DmaOp.WRITE : DmaOp.READ, bus, addr, buf, bufOff, length, 0, first);
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
 * Device-to-memory-to-memory copy with no intermediate buffer: `length` bytes from `srcAddr`
 * (through `srcCtx`: its IOMMU domain, or a bus address when `srcBus`) to `dstAddr` (through
 * `dstCtx`, or a bus address when `dstBus`). Both sides are translated by the same rules as
 * dmaRead/dmaWrite (a READ needs IOMMU_READ, the WRITE side IOMMU_WRITE) and pass the same
 * routing point: the hook sees each source run as a READ and each destination run as a WRITE.
 * The bytes move with one TypedArray.prototype.set per pair of overlapping runs.
 *
 * Called by: device workers that move data between two memory regions (an RDMA NIC's loopback
 * WRITE/READ between two MRs). Thread: the device's.
 * Each side carries its ctx's tph hint (dmaCopyTph gives each side its own).
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
  return dmaCopyTph(srcCtx, srcAddr, srcBus, dstCtx, dstAddr, dstBus, length, srcCtx.tph, dstCtx.tph);
}

/**
 * Where the first run of one side of a DMA went, for a device that caches translations above
 * the DMA layer (mlx5's mkey translation cache): `mem[off..off + run)` are the bytes at the DMA's
 * address and on, as far as they stay contiguous in one window under one IOMMU extent (merged
 * extents included), which may be further than the DMA went. Valid while the context's DevCtx INVAL word still reads `inval` (the IOTLB's rule),
 * and only if `plain` (no hook or hint statistics on the run, which a cached access would skip).
 * Filled by dmaCopyTph and dmaXfer when given one; meaningful only when they return OK.
 */
export interface DmaRunRecord {
  mem: Uint8Array;
  /** mem's arena copy (dmaCopyBytes); null: its own SAB. */
  arena: PhysArenaCopy | null;
  off: number;
  run: number;
  inval: number;
  plain: boolean;
}

/** An empty DmaRunRecord. */
export function dmaRunRecord(): DmaRunRecord {
  return { mem: new Uint8Array(0), arena: null, off: 0, run: 0, inval: 0, plain: false };
}

function record(r: DmaRunRecord, c: RunCursor, off: number): void {
  r.mem = c.mem;
  r.arena = c.arena;
  r.off = off;
  // the whole contiguous span, not just this DMA's share: the next access a little further on
  // (a stream through one buffer) then hits the device's cache as well.
  r.run = c.span;
  r.inval = c.ctx!.inval;
  r.plain = c.plain;
}

/**
 * dmaCopy with the TPH hint of each side given (dmaTph(); 0 = none): `srcTph` on the reads,
 * `dstTph` on the writes, so one device can read through one mkey's hint and write through
 * another's (an RDMA NIC's loopback between two MRs). With `sFirst` / `dFirst`, records where the
 * first source / destination run went (DmaRunRecord). Same returns as dmaCopy.
 */
export function dmaCopyTph(
  srcCtx: DmaCtx,
  srcAddr: number,
  srcBus: boolean,
  dstCtx: DmaCtx,
  dstAddr: number,
  dstBus: boolean,
  length: number,
  srcTph: number,
  dstTph: number,
  sFirst: DmaRunRecord | null = null,
  dFirst: DmaRunRecord | null = null,
): number {
  if (length === 0) return DmaStatus.OK;
  if (!validRange(srcAddr, length) || !validRange(dstAddr, length)) return DmaStatus.EINVAL;
  const s = cursorGet();
  const d = cursorGet();
  let status: number = DmaStatus.OK;
  // one device on both sides (a NIC's loopback): a destination run resolved right after a source
  // run needs no INVAL load of its own, unless something in between could order it after a
  // kernel change: a hook (it may unmap), or a table walk on the source side (a PTE it read may
  // have been mapped after an unmap the destination's cached entry predates).
  const shared = srcCtx === dstCtx;
  const tlb = srcCtx.iotlb;
  try {
    s.begin(srcCtx, DmaOp.READ, srcBus, srcTph);
    d.begin(dstCtx, DmaOp.WRITE, dstBus, dstTph);
    let done = 0;
    let sLeft = 0; // bytes left of the current source run, at s.mem[sOff]
    let sOff = 0;
    let dLeft = 0;
    let dOff = 0;
    while (done < length) {
      let fresh = false; // INVAL of srcCtx loaded for this pair of runs
      if (sLeft === 0) {
        const walks = tlb.misses;
        status = s.next(srcAddr + done, length - done);
        if (status !== 0) break;
        sLeft = s.run;
        sOff = s.off;
        fresh = shared && srcCtx.hook === null && tlb.misses === walks;
      }
      if (dLeft === 0) {
        status = d.next(dstAddr + done, length - done, fresh);
        if (status !== 0) break;
        dLeft = d.run;
        dOff = d.off;
      }
      if (done === 0) {
        if (sFirst !== null) record(sFirst, s, sOff);
        if (dFirst !== null) record(dFirst, d, dOff);
      }
      const n = sLeft < dLeft ? sLeft : dLeft;
      dmaCopyBytes(s.mem, s.arena, sOff, d.mem, d.arena, dOff, n);
      sLeft -= n;
      sOff += n;
      dLeft -= n;
      dOff += n;
      done += n;
    }
  } finally {
    depth -= 2;
  }
  return status;
}

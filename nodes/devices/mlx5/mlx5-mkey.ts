/**
 * The HCA's memory-key engine: checks lkeys/rkeys against the mkey table and moves message
 * bytes through an mkey's translation runs (fabric/mlx5-layout.ts DOC: mkeys) with the device's
 * DMA context. Every access is announced (the ACTIVE word, DOC: zap) in pieces of at most
 * MLX5_DMA_CHUNK bytes, so a kernel zap or dereg waits for at most one piece.
 *
 * A zapped ODP mkey raises a page fault (one event queue entry per fault, FAULT = PENDING) and
 * the access reports a fault: responders answer RNR, requesters stall until the kernel has
 * re-mapped (XLT = PRESENT, FAULT = NONE). A fault the kernel could not resolve (FAULT =
 * FAILED) fails the next access once, then the next access faults again.
 *
 * TPH (fabric/mlx5-layout.ts DOC: TPH stamping): every DMA through an mkey with TPH_EN carries
 * {TH = 1, PH, ST of its ST table entry}, set on the DMA context around the dma* calls (dmaCopy
 * gets each side's hint), so the routing point and its hook see it.
 *
 * Runs in the device worker; imports only fabric/ and common/.
 */
import {
  type DmaCtx,
  type DmaRunRecord,
  dmaCopyBytes,
  dmaCopyTph,
  dmaRunRecord,
  dmaXfer,
  dmaTph,
} from '../../fabric/dma.ts';
import type { PhysArenaCopy } from '../../fabric/phys-arena.ts';
import { FastSide, type Mlx5Fast } from './mlx5-fast.ts';
import { doorbellRing } from '../../fabric/doorbell.ts';
import {
  hcaMkeyBase,
  hcaStBase,
  MLX5_DMA_CHUNK,
  MLX5_MAX_MKEY,
  MLX5_MTT_BUS,
  Mlx5Ctl,
  Mlx5Eqe,
  Mlx5EqeFlags,
  Mlx5EqeType,
  Mlx5Fault,
  Mlx5Mkey,
  Mlx5MkeyFlags,
  Mlx5MkeyState,
  Mlx5MttRun,
  Mlx5Xlt,
  mlx5ActiveWord,
  mlx5KeyIndex,
  mttRunBase,
} from '../../fabric/mlx5-layout.ts';
import { DevCtx } from '../../fabric/iommu-layout.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import type { RingProducer } from '../../fabric/ring.ts';
import { ringPutU64 } from '../../fabric/ring-layout.ts';

/** Outcome of a key check or a transfer. */
export const Xfer = {
  OK: 0,
  /** The source (resp. destination) mkey is faulting: retry once the kernel re-mapped it. */
  SRC_FAULT: 1,
  DST_FAULT: 2,
  /** The source (resp. destination) key is invalid, revoked, out of bounds or not permitted. */
  SRC_ERR: 3,
  DST_ERR: 4,
  /** The IOMMU refused a translated address (fault recorded in the IOMMU fault ring). */
  DMA_ERR: 5,
} as const;
export type Xfer = (typeof Xfer)[keyof typeof Xfer];

const kChunk = MLX5_DMA_CHUNK;
const kInvalWord = DevCtx.INVAL;
const kPage = PAGE_SIZE;
const TWO32 = 2 ** 32;

/** One side's current run: DMA address, bus flag, bytes left in the run. */
class RunPos {
  addr = 0;
  bus = false;
  left = 0;
  hint = 0;
}

/**
 * DOC: translation cache
 * The last run each side of a loopback copy went through, from iova straight to the bytes:
 * iova [i0, i1) of mkey `idx` is mem[off0 + (iova - i0)]. A copy that falls inside both sides'
 * entries skips the MTT lookups and the DMA routing point (about 0.14 us of an 8-byte copy's
 * 0.2 us). Valid while, inside the announced access (after usable() loaded XLT = PRESENT):
 *  - the mkey's XLT_GEN still reads `gen` (the kernel programs a new MTT only while zapped, then
 *    bumps it before PRESENT; a zap waits for our access, so it cannot change under us);
 *  - DevCtx INVAL still reads `inval` (the IOTLB's rule: unmaps, domain and phys-map changes);
 *  - neither side has a TPH hint, and the runs had no DMA hook and no hint statistics (those
 *    must see every run: DmaFirstRuns.plain).
 * Filled from the first runs of a successful general copy (dmaCopyTph's `first`), for free.
 */
class XltCache {
  idx = -1;
  gen = 0;
  inval = 0;
  i0 = 0;
  i1 = 0;
  mem: Uint8Array = new Uint8Array(0);
  arena: PhysArenaCopy | null = null;
  off0 = 0;
}

export class MkeyEngine {
  readonly hca: Int32Array;
  readonly dma: DmaCtx;
  private readonly mttSab: SharedArrayBuffer;
  private mtt: Int32Array;
  private readonly eq: RingProducer;
  /** mkey index of the last access that reported a fault (a stalled requester watches it). */
  faultIdx = 0;
  /** Sequence of the next announced access (DOC: zap); the wasm path (mlx5-fast.ts) continues it. */
  seq = 0;
  /** The wasm data path, when the HCA has one: the translation cache is mirrored into it. */
  fast: Mlx5Fast | null = null;
  private readonly s = new RunPos();
  private readonly d = new RunPos();
  /** DOC: translation cache (source side, destination side). */
  private readonly cs = new XltCache();
  private readonly cd = new XltCache();
  private readonly sRec: DmaRunRecord = dmaRunRecord();
  private readonly dRec: DmaRunRecord = dmaRunRecord();

  constructor(hca: Int32Array, mttSab: SharedArrayBuffer, dma: DmaCtx, eq: RingProducer) {
    this.hca = hca;
    this.dma = dma;
    this.mttSab = mttSab;
    this.mtt = new Int32Array(mttSab, 0, mttSab.byteLength >> 2);
    this.eq = eq;
  }

  /**
   * Static check of `key` for [iova, iova + len) with `access` bits (IbvAccess; 0 for a local
   * read) on protection domain `pd`. Returns true if usable by key, PD, bounds and permission.
   * The translation state is checked at transfer time.
   */
  check(key: number, pd: number, iova: number, len: number, access: number): boolean {
    const idx = mlx5KeyIndex(key);
    if (idx === 0 || idx >= MLX5_MAX_MKEY) return false;
    const h = this.hca;
    const b = hcaMkeyBase(idx);
    // a plain read: the WQE naming the key was published after the key (SEQ load ordered it),
    // and usable() re-checks the key (XLT, then STATE) with Atomics once the access is announced.
    if (h[b + Mlx5Mkey.STATE] !== Mlx5MkeyState.VALID) return false;
    if (h[b + Mlx5Mkey.KEY] !== (key | 0) || h[b + Mlx5Mkey.PD] !== pd) return false;
    if ((h[b + Mlx5Mkey.ACCESS] & access) !== access) return false;
    const start = (h[b + Mlx5Mkey.IOVA_HI] >>> 0) * TWO32 + (h[b + Mlx5Mkey.IOVA_LO] >>> 0);
    const size = (h[b + Mlx5Mkey.LEN_HI] >>> 0) * TWO32 + (h[b + Mlx5Mkey.LEN_LO] >>> 0);
    return iova >= start && iova + len <= start + size;
  }

  /** Copy `len` bytes from key `sk` at `sIova` to key `dk` at `dIova` (loopback data path). */
  mrToMr(sk: number, sIova: number, dk: number, dIova: number, len: number, qpn: number): Xfer {
    const si = mlx5KeyIndex(sk);
    const di = mlx5KeyIndex(dk);
    const h = this.hca;
    let r: Xfer = Xfer.OK;
    for (let done = 0; done < len && r === Xfer.OK; ) {
      const n = Math.min(kChunk, len - done);
      Atomics.store(h, Mlx5Ctl.ACTIVE, mlx5ActiveWord(si, di, this.seq++));
      r =
        this.usable(si, sk, qpn, sIova + done, n, true, false) ||
        this.usable(di, dk, qpn, dIova + done, n, false, true);
      if (r === Xfer.OK) r = this.copyMr(si, sIova + done, di, dIova + done, n);
      // the announced access is over: a waiting zap may return now.
      Atomics.store(h, Mlx5Ctl.ACTIVE, 0);
      done += n;
    }
    return r;
  }

  /** Write `len` bytes of `buf` at `off` into key `dk` at `dIova` (wire receive, inline data). */
  bytesToMr(
    buf: Uint8Array,
    off: number,
    dk: number,
    dIova: number,
    len: number,
    qpn: number,
    requester: boolean,
  ): Xfer {
    return this.mrBytes(true, dk, dIova, buf, off, len, qpn, requester);
  }

  /** Read `len` bytes of key `sk` at `sIova` into `buf` at `off` (wire send, READ response). */
  mrToBytes(
    sk: number,
    sIova: number,
    buf: Uint8Array,
    off: number,
    len: number,
    qpn: number,
    requester: boolean,
  ): Xfer {
    return this.mrBytes(false, sk, sIova, buf, off, len, qpn, requester);
  }

  // One side of a transfer between an mkey and a device-local buffer: into the mkey (`write`,
  // reported as the destination) or out of it (the source).
  private mrBytes(
    write: boolean,
    key: number,
    iova: number,
    buf: Uint8Array,
    off: number,
    len: number,
    qpn: number,
    requester: boolean,
  ): Xfer {
    const idx = mlx5KeyIndex(key);
    const h = this.hca;
    const p = write ? this.d : this.s;
    let r: Xfer = Xfer.OK;
    for (let done = 0; done < len && r === Xfer.OK; ) {
      const n = Math.min(kChunk, len - done);
      const seq = this.seq++;
      Atomics.store(h, Mlx5Ctl.ACTIVE, write ? mlx5ActiveWord(-1, idx, seq) : mlx5ActiveWord(idx, -1, seq));
      r = this.usable(idx, key, qpn, iova + done, n, requester, write);
      const tph = r === Xfer.OK ? this.tphOf(idx) : 0;
      const c = write ? this.cd : this.cs;
      if (r === Xfer.OK && tph === 0) {
        const at = this.hit(c, idx, iova + done, n, Atomics.load(this.dma.devCtx, kInvalWord));
        if (at >= 0) {
          if (write) dmaCopyBytes(buf, null, off + done, c.mem, c.arena, at, n);
          else dmaCopyBytes(c.mem, c.arena, at, buf, null, off + done, n);
          Atomics.store(h, Mlx5Ctl.ACTIVE, 0);
          done += n;
          continue;
        }
      }
      this.dma.tph = tph;
      const rec = write ? this.dRec : this.sRec;
      const gen = h[hcaMkeyBase(idx) + Mlx5Mkey.XLT_GEN];
      for (let o = 0; r === Xfer.OK && o < n; ) {
        if (!this.runAt(idx, iova + done + o, p)) r = write ? Xfer.DST_ERR : Xfer.SRC_ERR;
        else {
          const m = Math.min(p.left, n - o);
          const mttLeft = p.left;
          const first = tph === 0 && o === 0 ? rec : null;
          if (dmaXfer(this.dma, write, p.bus, p.addr, buf, off + done + o, m, first) !== 0) r = Xfer.DMA_ERR;
          else if (first !== null) this.fill(c, idx, gen, iova + done, mttLeft, first);
          o += m;
        }
      }
      this.dma.tph = 0;
      Atomics.store(h, Mlx5Ctl.ACTIVE, 0);
      done += n;
    }
    return r;
  }

  /**
   * The TPH hint of a DMA through mkey `idx` (DOC: TPH stamping): dmaTph(PH, ST of the mkey's ST
   * entry) when the mkey has TPH on and the function's requester is enabled, else 0. Inside an
   * announced access, after usable() loaded the mkey's XLT/STATE (the TPH words and the ST entry
   * were stored before it was published).
   */
  tphOf(idx: number): number {
    const h = this.hca;
    const b = hcaMkeyBase(idx);
    if (h[b + Mlx5Mkey.TPH_EN] === 0 || Atomics.load(h, Mlx5Ctl.TPH_REQ_EN) === 0) return 0;
    const i = h[b + Mlx5Mkey.TPH_ST_INDEX] & 0xff;
    return dmaTph(h[b + Mlx5Mkey.TPH_PH], i === 0 ? 0 : Atomics.load(h, hcaStBase(i)));
  }

  /** True once the page fault of mkey `idx` is no longer pending (resolved or failed). */
  faultSettled(idx: number): boolean {
    return Atomics.load(this.hca, hcaMkeyBase(idx) + Mlx5Mkey.FAULT) !== Mlx5Fault.PENDING;
  }

  // Inside an announced access, after usable() passed for both mkeys.
  private copyMr(si: number, sIova: number, di: number, dIova: number, n: number): Xfer {
    const s = this.s;
    const d = this.d;
    const sTph = this.tphOf(si);
    const dTph = this.tphOf(di);
    const cacheable = sTph === 0 && dTph === 0;
    if (cacheable) {
      const inval = Atomics.load(this.dma.devCtx, kInvalWord);
      const so = this.hit(this.cs, si, sIova, n, inval);
      const dOff = so < 0 ? -1 : this.hit(this.cd, di, dIova, n, inval);
      if (dOff >= 0) {
        dmaCopyBytes(this.cs.mem, this.cs.arena, so, this.cd.mem, this.cd.arena, dOff, n);
        return Xfer.OK;
      }
    }
    const sGen = this.hca[hcaMkeyBase(si) + Mlx5Mkey.XLT_GEN];
    const dGen = this.hca[hcaMkeyBase(di) + Mlx5Mkey.XLT_GEN];
    for (let o = 0; o < n; ) {
      if (!this.runAt(si, sIova + o, s)) return Xfer.SRC_ERR;
      if (!this.runAt(di, dIova + o, d)) return Xfer.DST_ERR;
      const m = Math.min(s.left, d.left, n - o);
      const rec = cacheable && o === 0;
      const sLeft = s.left;
      const dLeft = d.left;
      const sr = rec ? this.sRec : null;
      const dr = rec ? this.dRec : null;
      if (dmaCopyTph(this.dma, s.addr, s.bus, this.dma, d.addr, d.bus, m, sTph, dTph, sr, dr) !== 0)
        return Xfer.DMA_ERR;
      if (rec) {
        this.fill(this.cs, si, sGen, sIova, sLeft, this.sRec);
        this.fill(this.cd, di, dGen, dIova, dLeft, this.dRec);
      }
      o += m;
    }
    return Xfer.OK;
  }

  /**
   * DOC: translation cache. Where [iova, iova + n) of mkey `idx` starts in `c.mem` if `c` holds it
   * and is still valid under DevCtx INVAL `inval`, else -1. Inside the announced access, after
   * usable() loaded XLT = PRESENT for `idx`.
   */
  private hit(c: XltCache, idx: number, iova: number, n: number, inval: number): number {
    if (c.idx !== idx || iova < c.i0 || iova + n > c.i1 || c.inval !== inval) return -1;
    if (this.hca[hcaMkeyBase(idx) + Mlx5Mkey.XLT_GEN] !== c.gen || this.dma.hook !== null) return -1;
    return c.off0 + (iova - c.i0);
  }

  // DOC: translation cache. After a successful access whose first run `r` started at `iova` with
  // `mttLeft` bytes left in its MTT run: the entry reaches as far as both runs go.
  // `gen` is the XLT_GEN read before the MTT lookup of the access (a zap that gave up waiting for
  // us and re-mapped meanwhile must not label the old translation with its new generation).
  private fill(c: XltCache, idx: number, gen: number, iova: number, mttLeft: number, r: DmaRunRecord): void {
    const f = this.fast;
    const side = c === this.cs ? FastSide.SRC : FastSide.DST;
    if (!r.plain) {
      c.idx = -1;
      f?.cacheClear(side);
      return;
    }
    c.idx = idx;
    c.gen = gen;
    c.inval = r.inval;
    c.i0 = iova;
    c.i1 = iova + Math.min(mttLeft, r.run);
    c.mem = r.mem;
    c.arena = r.arena;
    c.off0 = r.off;
    if (f === null) return;
    // mirrored only for memory the wasm path reaches: a region of its own arena.
    if (r.arena === f.copy) f.cacheSet(side, idx, gen, c.inval, r.mem.byteOffset + r.off, c.i0, c.i1);
    else f.cacheClear(side);
  }

  /**
   * Is mkey `idx` (checked earlier with `key`) usable right now? Inside an announced access
   * only. `src` selects which fault/error value is reported. Raises the page fault of a zapped
   * ODP mkey (once: FAULT NONE -> PENDING, one event).
   */
  private usable(
    idx: number,
    key: number,
    qpn: number,
    addr: number,
    len: number,
    requester: boolean,
    dst: boolean,
  ): Xfer {
    const h = this.hca;
    const b = hcaMkeyBase(idx);
    const err = dst ? Xfer.DST_ERR : Xfer.SRC_ERR;
    // XLT after the ACTIVE store: a zap, dereg or revoke either sees our announcement or we see
    // it. PRESENT implies STATE VALID (the kernel clears XLT before STATE leaves VALID), so the
    // usual case costs one Atomics.load.
    if (Atomics.load(h, b + Mlx5Mkey.XLT) === Mlx5Xlt.PRESENT && h[b + Mlx5Mkey.KEY] === (key | 0))
      return Xfer.OK;
    if (Atomics.load(h, b + Mlx5Mkey.STATE) !== Mlx5MkeyState.VALID || h[b + Mlx5Mkey.KEY] !== (key | 0))
      return err;
    if (Atomics.load(h, b + Mlx5Mkey.XLT) === Mlx5Xlt.PRESENT) return Xfer.OK;
    if ((h[b + Mlx5Mkey.FLAGS] & Mlx5MkeyFlags.ODP) === 0) return err;
    const f = Atomics.load(h, b + Mlx5Mkey.FAULT);
    if (f === Mlx5Fault.FAILED) {
      // the kernel could not map it: fail this access, let the next one fault again.
      Atomics.compareExchange(h, b + Mlx5Mkey.FAULT, Mlx5Fault.FAILED, Mlx5Fault.NONE);
      return err;
    }
    if (f === Mlx5Fault.NONE) this.raiseFault(idx, qpn, addr, len, requester, dst);
    this.faultIdx = idx;
    return dst ? Xfer.DST_FAULT : Xfer.SRC_FAULT;
  }

  private raiseFault(
    idx: number,
    qpn: number,
    addr: number,
    len: number,
    requester: boolean,
    write: boolean,
  ): void {
    const eq = this.eq;
    const s = eq.claim();
    if (s < 0) return; // EQ full: the next access raises it again
    const h = this.hca;
    if (
      Atomics.compareExchange(h, hcaMkeyBase(idx) + Mlx5Mkey.FAULT, Mlx5Fault.NONE, Mlx5Fault.PENDING) !==
      Mlx5Fault.NONE
    )
      return;
    const w = eq.words;
    w[s + Mlx5Eqe.TYPE] = Mlx5EqeType.PAGE_FAULT;
    w[s + Mlx5Eqe.MKEY_INDEX] = idx;
    w[s + Mlx5Eqe.QPN] = qpn;
    ringPutU64(w, s + Mlx5Eqe.ADDR_LO, addr);
    w[s + Mlx5Eqe.LEN] = len;
    w[s + Mlx5Eqe.FLAGS] = (requester ? Mlx5EqeFlags.REQUESTER : 0) | (write ? Mlx5EqeFlags.WRITE : 0);
    eq.commit();
    eq.flush();
    Atomics.add(h, Mlx5Ctl.STAT_PAGE_FAULTS, 1);
    // the interrupt: the EQE above is published before it.
    doorbellRing(h, Mlx5Ctl.EQ_DB);
  }

  /** Point `p` at the run holding MR address `iova` of mkey `idx`; false if no run covers it. */
  private runAt(idx: number, iova: number, p: RunPos): boolean {
    const h = this.hca;
    const b = hcaMkeyBase(idx);
    const start = (h[b + Mlx5Mkey.IOVA_HI] >>> 0) * TWO32 + (h[b + Mlx5Mkey.IOVA_LO] >>> 0);
    const pos = h[b + Mlx5Mkey.PAGE_OFF] + (iova - start);
    const page = Math.floor(pos / kPage);
    const base = h[b + Mlx5Mkey.MTT_BASE];
    const nent = h[b + Mlx5Mkey.MTT_NENT];
    let w = this.mtt;
    if (mttRunBase(base + nent) > w.length) {
      // the kernel grew the MTT since this view was made (slow path, once per growth).
      w = this.mtt = new Int32Array(this.mttSab, 0, this.mttSab.byteLength >> 2);
      if (mttRunBase(base + nent) > w.length) return false;
    }
    // sequential access: the run of the last lookup, or the one after it; else binary search.
    let i = p.hint < nent ? p.hint : 0;
    if (!this.runHas(w, base + i, page)) {
      if (i + 1 < nent && this.runHas(w, base + i + 1, page)) i++;
      else i = this.runSearch(w, base, nent, page);
      if (i < 0) return false;
    }
    p.hint = i;
    const r = mttRunBase(base + i);
    const lo = w[r + Mlx5MttRun.DMA_LO];
    const runStart = w[r + Mlx5MttRun.START_PAGE];
    const dmaBase = (w[r + Mlx5MttRun.DMA_HI] >>> 0) * TWO32 + ((lo & ~(kPage - 1)) >>> 0);
    p.bus = (lo & MLX5_MTT_BUS) !== 0;
    p.addr = dmaBase + (pos - runStart * kPage);
    p.left = (runStart + w[r + Mlx5MttRun.PAGES]) * kPage - pos;
    return true;
  }

  private runSearch(w: Int32Array, base: number, nent: number, page: number): number {
    let lo = 0;
    let hi = nent - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = mttRunBase(base + mid);
      const rs = w[r + Mlx5MttRun.START_PAGE];
      if (page < rs) hi = mid - 1;
      else if (page >= rs + w[r + Mlx5MttRun.PAGES]) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  private runHas(w: Int32Array, entry: number, page: number): boolean {
    const r = mttRunBase(entry);
    const rs = w[r + Mlx5MttRun.START_PAGE];
    return page >= rs && page < rs + w[r + Mlx5MttRun.PAGES];
  }
}

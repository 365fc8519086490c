/**
 * mlx5_ib memory regions (mr.c, odp.c, kernel-semantics §7.3): mkeys, their translation runs,
 * and the three dma-buf flows.
 *
 *  - host memory (ibv_reg_mr): pinned user pages mapped once (umem.ts); never zapped.
 *  - ODP dma-buf (ibv_reg_dmabuf_mr): dynamic umem; the mkey is created ODP with its translation
 *    zapped, then prefaulted under the resv lock (rule 8). The invalidate callback (resv held)
 *    zaps synchronously — XLT = ZAPPED and a bounded wait until no device access announced
 *    before the zap is still running (fabric/mlx5-layout.ts DOC: zap) — then unmaps (rule 9).
 *    The device's next access raises a page fault; mlx5PageFault takes the lock, maps again,
 *    waits for the KERNEL fences, programs the runs and clears the fault (rule 10); meanwhile
 *    responders answer RNR and requesters stall (rule 13).
 *  - pinned (mlx5dv DATA_DIRECT): pinned umem, registered NOT revocable (rule 28 sentinel).
 *  - pinned revocable: pinned umem whose invalidate revokes for good: mkey STATE = REVOKED (zap
 *    wait as above), then the umem is unmapped and unpinned. Later accesses fail:
 *    IBV_WC_REM_ACCESS_ERR at a requester using it remotely, IBV_WC_LOC_PROT_ERR locally.
 * A dma-buf MR also asks its exporter for TPH (dmabufMrTph; mlx5-st.ts DOC: TPH on the HCA).
 * Deregistration revokes the mkey first (under the resv lock for ODP, so it cannot race an
 * invalidate), then releases the umem (rule 12).
 *
 * Thread: kernel. Lock: the invalidate callbacks run with the resv lock held by the exporter.
 */
import { EmuError, err } from '../../../../common/errno.ts';
import { trace } from '../../../../common/trace.ts';
import { IbvAccess } from '../../../fabric/mlx5-ib-abi.ts';
import {
  hcaMkeyBase,
  MLX5_MAX_MKEY,
  MLX5_MTT_BUS,
  Mlx5Ctl,
  Mlx5Fault,
  Mlx5Mkey,
  Mlx5MkeyFlags,
  Mlx5MkeyState,
  Mlx5MttRun,
  Mlx5Xlt,
  MLX5_MKC_PCIE_TPH_NO_STEERING_TAG_INDEX,
  mlx5ActiveNames,
  mlx5KeyIndex,
  mttRunBase,
} from '../../../fabric/mlx5-layout.ts';
import { PAGE_SIZE } from '../../../fabric/page.ts';
import type { DmaBuf } from '../../dma-buf/dma-buf.ts';
import { dmaResvLock, dmaResvUnlock } from '../../dma-buf/dma-resv.ts';
import { dmaBufGetTph } from '../../dma-buf/dma-buf-tph.ts';
import { PciTphReqType, pciTphStEntry, pcieTphGetReqType } from '../../pci/tph.ts';
import { runInTask } from '../../locking/task.ts';
import { IbMr, IbMrMode, type IbPd } from '../ib-core.ts';
import { ibUmemGet, type IbUmem, type UserPages } from '../umem.ts';
import {
  type IbUmemDmabuf,
  ibUmemDmabufGet,
  ibUmemDmabufGetPinned,
  ibUmemDmabufGetPinnedRevocableAndLock,
  ibUmemDmabufMapPages,
  ibUmemDmabufRelease,
  ibUmemDmabufRevoke,
  ibUmemDmabufSetRevokeLocked,
  ibUmemDmabufUnmapPages,
  type UmemRun,
} from '../umem-dmabuf.ts';
import type { Mlx5Dev } from './mlx5-ib.ts';
import { mlx5StAllocIndex, mlx5StDeallocIndex } from './mlx5-st.ts';

/** Longest the kernel waits for an announced device access to end after a zap (ms). */
export const MLX5_ZAP_WAIT_MS = 500;

const TWO32 = 2 ** 32;
const WRITE_BITS =
  IbvAccess.IBV_ACCESS_LOCAL_WRITE | IbvAccess.IBV_ACCESS_REMOTE_WRITE | IbvAccess.IBV_ACCESS_REMOTE_ATOMIC;

/** The driver's MR: an mkey and what backs it. */
export class Mlx5Mr {
  readonly d: Mlx5Dev;
  readonly index: number;
  readonly key: number;
  readonly mode: IbMrMode;
  umem: IbUmem | IbUmemDmabuf | null = null;
  mttBase = 0;
  mttCap = 0;
  faulting = false;
  dead = false;
  /** releaseMr() ran: the index, MTT range and umem are gone (it runs once). */
  released = false;
  /** Page faults resolved (diagnostics and tests). */
  faults = 0;
  /** TPH recorded in the mkey (dma-buf MRs whose exporter gave a tag); null: TPH off. */
  tph: { ph: number; stIndex: number; tag: number } | null = null;

  constructor(d: Mlx5Dev, mode: IbMrMode) {
    this.d = d;
    this.mode = mode;
    this.index = mkeyIndexAlloc(d);
    d.variants[this.index] = (d.variants[this.index] + 1) & 0xff;
    this.key = (this.index << 8) | d.variants[this.index] | 0;
  }
}

function mkeyIndexAlloc(d: Mlx5Dev): number {
  for (let i = 1; i < MLX5_MAX_MKEY; i++) {
    const idx = ((d.nextMkey + i - 2) % (MLX5_MAX_MKEY - 1)) + 1;
    if (!d.mrs.has(idx) && Atomics.load(d.hca, hcaMkeyBase(idx) + Mlx5Mkey.STATE) === Mlx5MkeyState.FREE) {
      d.nextMkey = idx + 1;
      return idx;
    }
  }
  throw err('ENOSPC', `${d.name}: no free mkey (max_mr ${MLX5_MAX_MKEY - 1})`);
}

// First-fit MTT range of `n` runs; grows the MTT SAB (the device re-views it on growth).
function mttAlloc(d: Mlx5Dev, n: number): number {
  for (let i = 0; i < d.mttFree.length; i++) {
    const [start, count] = d.mttFree[i];
    if (count < n) continue;
    if (count === n) d.mttFree.splice(i, 1);
    else d.mttFree[i] = [start + n, count - n];
    return start;
  }
  const base = d.mttTop;
  const need = mttRunBase(base + n) * 4;
  if (need > d.mttSab.maxByteLength) throw err('ENOMEM', `${d.name}: MTT exhausted (${n} runs more)`);
  if (need > d.mttSab.byteLength)
    d.mttSab.grow(Math.min(d.mttSab.maxByteLength, Math.max(need, d.mttSab.byteLength * 2)));
  d.mttTop += n;
  return base;
}

function mttFree(d: Mlx5Dev, base: number, n: number): void {
  if (n > 0) d.mttFree.push([base, n]);
}

// Write the mkey context; STATE = VALID is stored last (publish).
function mkeyCreate(
  d: Mlx5Dev,
  mr: Mlx5Mr,
  pdn: number,
  r: { iova: number; length: number; access: number },
  pageOff: number,
  odp: boolean,
): void {
  const h = d.hca;
  const b = hcaMkeyBase(mr.index);
  h[b + Mlx5Mkey.KEY] = mr.key;
  h[b + Mlx5Mkey.PD] = pdn;
  h[b + Mlx5Mkey.ACCESS] = r.access;
  h[b + Mlx5Mkey.IOVA_LO] = (r.iova % TWO32) | 0;
  h[b + Mlx5Mkey.IOVA_HI] = Math.floor(r.iova / TWO32) | 0;
  h[b + Mlx5Mkey.LEN_LO] = (r.length % TWO32) | 0;
  h[b + Mlx5Mkey.LEN_HI] = Math.floor(r.length / TWO32) | 0;
  h[b + Mlx5Mkey.FLAGS] = odp ? Mlx5MkeyFlags.ODP : 0;
  h[b + Mlx5Mkey.MTT_BASE] = mr.mttBase;
  h[b + Mlx5Mkey.MTT_CAP] = mr.mttCap;
  h[b + Mlx5Mkey.MTT_NENT] = 0;
  h[b + Mlx5Mkey.PAGE_OFF] = pageOff;
  h[b + Mlx5Mkey.TPH_EN] = mr.tph ? 1 : 0;
  h[b + Mlx5Mkey.TPH_PH] = mr.tph ? mr.tph.ph : 0;
  h[b + Mlx5Mkey.TPH_ST_INDEX] = mr.tph ? mr.tph.stIndex : MLX5_MKC_PCIE_TPH_NO_STEERING_TAG_INDEX;
  Atomics.store(h, b + Mlx5Mkey.FAULT, Mlx5Fault.NONE);
  Atomics.store(h, b + Mlx5Mkey.XLT, Mlx5Xlt.ZAPPED);
  // publish: the device checks STATE first; everything above is visible once it reads VALID.
  Atomics.store(h, b + Mlx5Mkey.STATE, Mlx5MkeyState.VALID);
}

/** UMR "enable": write the runs, then XLT = PRESENT (publish). Only while zapped or new. */
function mttProgram(d: Mlx5Dev, mr: Mlx5Mr, runs: readonly UmemRun[]): void {
  if (runs.length > mr.mttCap)
    throw err('ENOMEM', `${d.name}: mkey 0x${mr.key.toString(16)} needs ${runs.length} runs`);
  const w = new Int32Array(d.mttSab, 0, mttRunBase(mr.mttBase + runs.length));
  let page = 0;
  runs.forEach((r, i) => {
    const at = mttRunBase(mr.mttBase + i);
    w[at + Mlx5MttRun.START_PAGE] = page;
    w[at + Mlx5MttRun.DMA_LO] = (r.addr % TWO32) | (r.bus ? MLX5_MTT_BUS : 0) | 0;
    w[at + Mlx5MttRun.DMA_HI] = Math.floor(r.addr / TWO32) | 0;
    w[at + Mlx5MttRun.PAGES] = r.pages;
    page += r.pages;
  });
  const b = hcaMkeyBase(mr.index);
  d.hca[b + Mlx5Mkey.MTT_NENT] = runs.length;
  // a new translation: the device's cached one (keyed on the generation) is stale from now.
  d.hca[b + Mlx5Mkey.XLT_GEN] = (d.hca[b + Mlx5Mkey.XLT_GEN] + 1) | 0;
  // publish: the runs above are visible to a device that loads PRESENT.
  Atomics.store(d.hca, b + Mlx5Mkey.XLT, Mlx5Xlt.PRESENT);
}

/**
 * UMR with MLX5_IB_UPD_XLT_ZAP (`zap`), or mkey revoke/destroy: make the translation unusable,
 * then wait (bounded) until no device access announced before it is running. Synchronous.
 */
export function mlx5MkeyZap(d: Mlx5Dev, mr: Mlx5Mr, how: 'zap' | 'revoke' | 'free'): void {
  const h = d.hca;
  const b = hcaMkeyBase(mr.index);
  // XLT first in every case: the device takes PRESENT as STATE VALID too (DOC: zap).
  Atomics.store(h, b + Mlx5Mkey.XLT, Mlx5Xlt.ZAPPED);
  if (how !== 'zap')
    Atomics.store(h, b + Mlx5Mkey.STATE, how === 'revoke' ? Mlx5MkeyState.REVOKED : Mlx5MkeyState.FREE);
  Atomics.add(h, b + Mlx5Mkey.ZAPS, 1);
  // a load after the store above: see DOC: zap in fabric/mlx5-layout.ts for why this suffices.
  const seen = Atomics.load(h, Mlx5Ctl.ACTIVE);
  if (!mlx5ActiveNames(seen, mr.index)) return;
  const end = performance.now() + MLX5_ZAP_WAIT_MS;
  // any change of ACTIVE ends the access we saw (its end stores 0, the next one a new sequence).
  while (Atomics.load(h, Mlx5Ctl.ACTIVE) === seen) {
    // a dead device finishes nothing more; a live one finishes one MLX5_DMA_CHUNK at most.
    if (!d.host.alive || performance.now() > end) {
      trace('rdmaZapTimeout', () => ({ dev: d.name, key: mr.key, alive: d.host.alive }));
      return;
    }
  }
}

function writable(access: number): boolean {
  return (access & WRITE_BITS) !== 0;
}

/** mlx5_ib_reg_user_mr. Throws: umem errors (EFAULT, ENOSPC), ENOSPC/ENOMEM (mkeys, MTT). */
export function mlx5RegUserMr(
  d: Mlx5Dev,
  pd: IbPd,
  mem: UserPages,
  addr: number,
  length: number,
  access: number,
): IbMr {
  const umem = ibUmemGet(d.dev, mem, addr, length, writable(access));
  let mr: Mlx5Mr | null = null;
  try {
    mr = new Mlx5Mr(d, IbMrMode.HOST);
    mr.umem = umem;
    mr.mttCap = umem.runs.length;
    mr.mttBase = mttAlloc(d, mr.mttCap);
    mkeyCreate(d, mr, pd.pdn, { iova: addr, length, access }, umem.pageOffset, false);
    mttProgram(d, mr, umem.runs);
  } catch (e) {
    umem.release();
    throw e;
  }
  d.mrs.set(mr.index, mr);
  trace('rdmaMrReg', () => ({ dev: d.name, key: mr.key, mode: 'host', length }));
  return new IbMr(pd, mr.key, { iova: addr, length, access, mode: IbMrMode.HOST, priv: mr });
}

/**
 * mlx5_ib_reg_user_mr_dmabuf in `mode` ODP, PINNED or PINNED_REVOCABLE (see the file comment).
 * Lock: resv not held. Throws: umem and exporter errors; the prefault's errors for ODP.
 */
export async function mlx5RegDmabufMr(
  d: Mlx5Dev,
  pd: IbPd,
  dmabuf: DmaBuf,
  r: { offset: number; length: number; iova: number; access: number; mode: IbMrMode },
): Promise<IbMr> {
  const mr = new Mlx5Mr(d, r.mode);
  const pageOff = r.offset % PAGE_SIZE;
  mr.mttCap = Math.ceil((pageOff + r.length) / PAGE_SIZE);
  mr.mttBase = mttAlloc(d, mr.mttCap);
  // reserve the index before any await: a concurrent registration must not take it.
  d.mrs.set(mr.index, mr);
  const w = writable(r.access);
  try {
    mr.tph = dmabufMrTph(d, dmabuf);
    if (r.mode === IbMrMode.ODP) {
      const umem = await ibUmemDmabufGet(d.dev, r.offset, r.length, dmabuf, w, {
        invalidate: (u) => odpInvalidate(d, mr, u),
      });
      mr.umem = umem;
      umem.priv = mr;
      mkeyCreate(d, mr, pd.pdn, r, pageOff, true);
      await prefault(d, mr, umem);
    } else if (r.mode === IbMrMode.PINNED) {
      const umem = await ibUmemDmabufGetPinned(d.dev, r.offset, r.length, dmabuf, w);
      mr.umem = umem;
      umem.priv = mr;
      mkeyCreate(d, mr, pd.pdn, r, pageOff, false);
      mttProgram(d, mr, umem.runs!);
    } else {
      const umem = await ibUmemDmabufGetPinnedRevocableAndLock(d.dev, r.offset, r.length, dmabuf, w);
      mr.umem = umem;
      umem.priv = mr;
      try {
        mkeyCreate(d, mr, pd.pdn, r, pageOff, false);
        mttProgram(d, mr, umem.runs!);
        ibUmemDmabufSetRevokeLocked(umem, { invalidate: (u) => revocableInvalidate(d, mr, u) });
      } finally {
        dmaResvUnlock(dmabuf.resv);
      }
    }
  } catch (e) {
    await releaseMr(d, mr);
    throw e;
  }
  trace('rdmaMrReg', () => ({
    dev: d.name,
    key: mr.key,
    mode: r.mode,
    length: r.length,
    buf: String(dmabuf),
  }));
  return new IbMr(pd, mr.key, { iova: r.iova, length: r.length, access: r.access, mode: r.mode, priv: mr });
}

/**
 * The TPH an mkey of a dma-buf MR gets (kernel-semantics §4.4 importer side, scenario 4): with TPH
 * enabled on the HCA, ask the exporter for a tag of the width of the HCA's requester type and
 * put it in an ST table index; EOPNOTSUPP (no tag, or none of that width) means no TPH. Every
 * dma-buf MR mode takes part, ODP included (docs/tph.md: rule 8 rejects ODP of user memory with
 * a DMA handle, which this emulator has no path for). Read once: a tag set later does not change
 * the mkey (rule 13). Throws: dmaBufGetTph's other errors; mlx5StAllocIndex's (table full, a
 * failed ST write).
 */
function dmabufMrTph(d: Mlx5Dev, dmabuf: DmaBuf): Mlx5Mr['tph'] {
  const st = d.st;
  if (!st || pcieTphGetReqType(d.dev) === PciTphReqType.DISABLE) return null;
  let t: { steeringTag: number; ph: number };
  try {
    t = dmaBufGetTph(dmabuf, st.stWidth);
  } catch (e) {
    if (e instanceof EmuError && e.code === 'EOPNOTSUPP') return null;
    throw e;
  }
  const stIndex = mlx5StAllocIndex(st, d.dev, t.steeringTag);
  return { ph: t.ph, stIndex, tag: t.steeringTag };
}

/**
 * The TPH fields of the mkey `key` of `d` as the device would read them, with the tag its ST
 * index names (null for index 0). Diagnostics and tests. Throws: EINVAL (no such mkey).
 */
export function mlx5MkeyTph(
  d: Mlx5Dev,
  key: number,
): { en: boolean; ph: number; stIndex: number; tag: number | null } {
  const idx = mlx5KeyIndex(key);
  const b = hcaMkeyBase(idx);
  if (idx <= 0 || idx >= MLX5_MAX_MKEY || d.hca[b + Mlx5Mkey.KEY] !== (key | 0))
    throw err('EINVAL', `mlx5_mkey_tph: key 0x${(key >>> 0).toString(16)} is not an mkey of ${d.name}`);
  const stIndex = d.hca[b + Mlx5Mkey.TPH_ST_INDEX];
  return {
    en: d.hca[b + Mlx5Mkey.TPH_EN] === 1,
    ph: d.hca[b + Mlx5Mkey.TPH_PH],
    stIndex,
    tag: stIndex === MLX5_MKC_PCIE_TPH_NO_STEERING_TAG_INDEX ? null : (pciTphStEntry(d.dev, stIndex) ?? null),
  };
}

// Rule 8: map the whole range and enable the translation before registration returns.
async function prefault(d: Mlx5Dev, mr: Mlx5Mr, umem: IbUmemDmabuf): Promise<void> {
  const resv = umem.dmabuf.resv;
  await dmaResvLock(resv, null);
  try {
    // a dereg (device removal) may have zapped and freed the mkey while we waited for the lock:
    // XLT must never go PRESENT again under STATE FREE (the device reads PRESENT as VALID).
    if (mr.dead)
      throw err('ENODEV', `${d.name}: mkey 0x${mr.key.toString(16)} went away during registration`);
    await ibUmemDmabufMapPages(umem);
    mttProgram(d, mr, umem.runs!);
  } finally {
    dmaResvUnlock(resv);
  }
}

// mlx5_ib_dmabuf_invalidate_cb: resv held by the exporter. Zap, then unmap (rule 9).
function odpInvalidate(d: Mlx5Dev, mr: Mlx5Mr, umem: IbUmemDmabuf): void {
  if (umem.sgt === null || mr.dead) return; // nothing mapped (rule 22: tolerate)
  mlx5MkeyZap(d, mr, 'zap');
  trace('rdmaInvalidate', () => ({ dev: d.name, key: mr.key, mode: 'odp' }));
  ibUmemDmabufUnmapPages(umem).catch((e) =>
    trace('rdmaInvalidate', () => ({ dev: d.name, key: mr.key, error: String(e) })),
  );
}

// Pinned revocable: an invalidate is a revoke (rule 27); never mapped again.
function revocableInvalidate(d: Mlx5Dev, mr: Mlx5Mr, umem: IbUmemDmabuf): void {
  if (umem.revoked || mr.dead) return;
  mlx5MkeyZap(d, mr, 'revoke');
  trace('rdmaInvalidate', () => ({ dev: d.name, key: mr.key, mode: 'pinned-revocable' }));
  ibUmemDmabufRevoke(umem).catch((e) =>
    trace('rdmaInvalidate', () => ({ dev: d.name, key: mr.key, error: String(e) })),
  );
}

/**
 * pagefault_dmabuf_mr: the device raised a fault on mkey `idx` (EQ handler, kernel thread).
 * Resolved asynchronously in its own task; the device is woken when FAULT leaves PENDING.
 */
export function mlx5PageFault(d: Mlx5Dev, idx: number): void {
  const mr = d.mrs.get(idx);
  const faultWord = hcaMkeyBase(idx) + Mlx5Mkey.FAULT;
  if (!mr || mr.mode !== IbMrMode.ODP || mr.dead || !mr.umem) {
    // not an ODP MR (any more): the access fails on its key check.
    Atomics.store(d.hca, faultWord, Mlx5Fault.FAILED);
    d.kick();
    return;
  }
  if (mr.faulting) return;
  mr.faulting = true;
  void runInTask(`${d.name}:page-fault`, () => resolveFault(d, mr, mr.umem as IbUmemDmabuf));
}

async function resolveFault(d: Mlx5Dev, mr: Mlx5Mr, umem: IbUmemDmabuf): Promise<void> {
  const resv = umem.dmabuf.resv;
  let error: unknown = null;
  try {
    await dmaResvLock(resv, null);
    try {
      if (mr.dead) throw err('ENOENT', 'mkey deregistered');
      await ibUmemDmabufMapPages(umem);
      mttProgram(d, mr, umem.runs!);
    } finally {
      dmaResvUnlock(resv);
    }
  } catch (e) {
    error = e;
  }
  mr.faulting = false;
  mr.faults++;
  // the fault is settled either way; FAILED makes the next access fail once (exporter revoked).
  Atomics.store(
    d.hca,
    hcaMkeyBase(mr.index) + Mlx5Mkey.FAULT,
    error === null ? Mlx5Fault.NONE : Mlx5Fault.FAILED,
  );
  trace('rdmaPageFault', () => ({ dev: d.name, key: mr.key, error: error === null ? null : String(error) }));
  d.kick();
}

/** mlx5_ib_dereg_mr (rule 12). Idempotent. Lock: resv not held. */
export async function mlx5DeregMr(d: Mlx5Dev, mr: Mlx5Mr): Promise<void> {
  if (mr.dead) return;
  mr.dead = true;
  const umem = mr.umem;
  if (umem !== null && 'dmabuf' in umem && mr.mode === IbMrMode.ODP) {
    // under the lock so the revoke cannot race an invalidate.
    await dmaResvLock(umem.dmabuf.resv, null);
    try {
      mlx5MkeyZap(d, mr, 'free');
    } finally {
      dmaResvUnlock(umem.dmabuf.resv);
    }
  } else mlx5MkeyZap(d, mr, 'free');
  await releaseMr(d, mr);
  trace('rdmaMrDereg', () => ({ dev: d.name, key: mr.key }));
}

// Free the mkey's resources (umem, MTT range, index). The mkey must be FREE or never published.
async function releaseMr(d: Mlx5Dev, mr: Mlx5Mr): Promise<void> {
  // a registration failing after a concurrent dereg (device removal) got here first.
  if (mr.released) return;
  mr.released = true;
  mr.dead = true;
  Atomics.store(d.hca, hcaMkeyBase(mr.index) + Mlx5Mkey.XLT, Mlx5Xlt.ZAPPED);
  Atomics.store(d.hca, hcaMkeyBase(mr.index) + Mlx5Mkey.STATE, Mlx5MkeyState.FREE);
  const umem = mr.umem;
  mr.umem = null;
  const tph = mr.tph;
  mr.tph = null;
  // the mkey is FREE: nothing points at the index any more (§4.2's 2026 fix: never leak it).
  if (tph) mlx5StDeallocIndex(d.st, d.dev, tph.stIndex);
  try {
    if (umem !== null) {
      if ('dmabuf' in umem) await ibUmemDmabufRelease(umem);
      else umem.release();
    }
  } finally {
    mttFree(d, mr.mttBase, mr.mttCap);
    d.mrs.delete(mr.index);
  }
}

/** Deregister every MR of `d` (device removal). */
export async function mlx5MrReleaseAll(d: Mlx5Dev): Promise<void> {
  for (const mr of [...d.mrs.values()]) await runInTask(`${d.name}:remove`, () => mlx5DeregMr(d, mr));
}

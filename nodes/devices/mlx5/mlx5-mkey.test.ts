// The HCA's mkey engine on the test thread, over hand-built shared memory (an HCA context, an
// MTT, an event queue and a DMA context whose only target is a BAR reached by bus address):
// key checks, MR-to-MR copies through translation runs, the ACTIVE word of a zap, and
// the ODP page-fault handshake (one event per fault, FAILED fails one access).
import { describe, expect, it } from 'vitest';
import { DmaCtx, type DmaCtxDescriptor } from '../../fabric/dma.ts';
import { faultRingCreate } from '../../fabric/iommu-fault-ring.ts';
import { DEV_CTX_WORDS, DevCtx } from '../../fabric/iommu-layout.ts';
import { IbvAccess } from '../../fabric/mlx5-ib-abi.ts';
import {
  hcaCreate,
  hcaMkeyBase,
  MLX5_DMA_CHUNK,
  MLX5_MTT_BUS,
  Mlx5Ctl,
  Mlx5Eqe,
  Mlx5EqeType,
  Mlx5Fault,
  Mlx5Mkey,
  Mlx5MkeyFlags,
  Mlx5MkeyState,
  Mlx5MttRun,
  Mlx5Xlt,
  mttCreate,
  mlx5ActiveNames,
  mttRunBase,
} from '../../fabric/mlx5-layout.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import {
  MemRegionKind,
  PHYS_MAP_CTL_BYTES,
  PhysMapCtl,
  PhysWindowKind,
} from '../../fabric/phys-map-layout.ts';
import { RingConsumer, RingProducer } from '../../fabric/ring.ts';
import { ringCreate } from '../../fabric/ring-layout.ts';
import { MkeyEngine, Xfer } from './mlx5-mkey.ts';

const BAR = 2 ** 40;
const PAGES = 2048; // 8 MiB of BAR

function rig() {
  const ctl = new SharedArrayBuffer(PHYS_MAP_CTL_BYTES);
  Atomics.store(new Int32Array(ctl), PhysMapCtl.GEN, 1);
  const bar = {
    id: 1,
    name: 'vram',
    kind: MemRegionKind.BAR,
    size: PAGES * PAGE_SIZE,
    sab: new SharedArrayBuffer(PAGES * PAGE_SIZE),
  };
  const desc: DmaCtxDescriptor = {
    deviceId: 3,
    devCtx: new SharedArrayBuffer(DEV_CTX_WORDS * 4),
    phys: {
      ctl,
      gen: 1,
      regions: [bar],
      windows: [
        {
          name: 'vram',
          kind: PhysWindowKind.BAR,
          phys: BAR,
          size: bar.size,
          busOffset: 0,
          regionId: 1,
          regionOffset: 0,
        },
      ],
    },
    domains: [],
    faultRing: faultRingCreate(8),
    port: null,
  };
  const hca = hcaCreate();
  const mtt = mttCreate(64);
  const eqSab = ringCreate(8);
  const eng = new MkeyEngine(hca, mtt, new DmaCtx(desc), new RingProducer(eqSab));
  let nextRun = 0;
  /** Install mkey `idx` (key idx << 8 | 1) over `runs` of [BAR page, pages]. */
  const mkey = (
    idx: number,
    iova: number,
    runs: [number, number][],
    o: { odp?: boolean; access?: number; pd?: number } = {},
  ) => {
    const m = new Int32Array(mtt);
    let page = 0;
    const base = nextRun;
    for (const [p, n] of runs) {
      const r = mttRunBase(nextRun++);
      m[r + Mlx5MttRun.START_PAGE] = page;
      m[r + Mlx5MttRun.DMA_LO] = ((BAR + p * PAGE_SIZE) % 2 ** 32) | MLX5_MTT_BUS;
      m[r + Mlx5MttRun.DMA_HI] = Math.floor((BAR + p * PAGE_SIZE) / 2 ** 32);
      m[r + Mlx5MttRun.PAGES] = n;
      page += n;
    }
    const b = hcaMkeyBase(idx);
    hca[b + Mlx5Mkey.KEY] = (idx << 8) | 1;
    hca[b + Mlx5Mkey.PD] = o.pd ?? 1;
    hca[b + Mlx5Mkey.ACCESS] =
      o.access ?? IbvAccess.IBV_ACCESS_LOCAL_WRITE | IbvAccess.IBV_ACCESS_REMOTE_WRITE;
    hca[b + Mlx5Mkey.IOVA_LO] = iova;
    hca[b + Mlx5Mkey.LEN_LO] = page * PAGE_SIZE;
    hca[b + Mlx5Mkey.FLAGS] = o.odp ? Mlx5MkeyFlags.ODP : 0;
    hca[b + Mlx5Mkey.MTT_BASE] = base;
    hca[b + Mlx5Mkey.MTT_NENT] = runs.length;
    Atomics.store(hca, b + Mlx5Mkey.XLT, Mlx5Xlt.PRESENT);
    Atomics.store(hca, b + Mlx5Mkey.STATE, Mlx5MkeyState.VALID);
    return (idx << 8) | 1;
  };
  /** The kernel's re-map of mkey `idx` (zapped meanwhile): its first run now starts at BAR page `p`. */
  const remap = (idx: number, p: number) => {
    const b = hcaMkeyBase(idx);
    Atomics.store(hca, b + Mlx5Mkey.XLT, Mlx5Xlt.ZAPPED);
    const r = mttRunBase(hca[b + Mlx5Mkey.MTT_BASE]);
    const m = new Int32Array(mtt);
    m[r + Mlx5MttRun.DMA_LO] = ((BAR + p * PAGE_SIZE) % 2 ** 32) | MLX5_MTT_BUS;
    m[r + Mlx5MttRun.DMA_HI] = Math.floor((BAR + p * PAGE_SIZE) / 2 ** 32);
    hca[b + Mlx5Mkey.XLT_GEN] = (hca[b + Mlx5Mkey.XLT_GEN] + 1) | 0;
    Atomics.store(hca, b + Mlx5Mkey.XLT, Mlx5Xlt.PRESENT);
  };
  return { eng, hca, mkey, remap, vram: new Uint8Array(bar.sab), eq: new RingConsumer(eqSab) };
}

describe('mlx5 mkey engine', () => {
  it('mlx5 - key checks: state, key variant, PD, access bits and bounds', () => {
    const { eng, hca, mkey } = rig();
    const k = mkey(5, 0x10000, [[0, 4]], { access: IbvAccess.IBV_ACCESS_REMOTE_READ });
    const R = IbvAccess.IBV_ACCESS_REMOTE_READ;
    expect(eng.check(k, 1, 0x10000, 4 * PAGE_SIZE, R)).toBe(true);
    expect(eng.check(k ^ 1, 1, 0x10000, 8, R)).toBe(false); // stale variant
    expect(eng.check(k, 2, 0x10000, 8, R)).toBe(false); // another PD
    expect(eng.check(k, 1, 0x10000, 8, IbvAccess.IBV_ACCESS_REMOTE_WRITE)).toBe(false);
    expect(eng.check(k, 1, 0x10000 + 4 * PAGE_SIZE - 4, 8, R)).toBe(false); // past the end
    expect(eng.check(k, 1, 0xfff0, 32, R)).toBe(false); // before the start
    expect(eng.check(7 << 8, 1, 0, 8, 0)).toBe(false); // never created
    Atomics.store(hca, hcaMkeyBase(5) + Mlx5Mkey.STATE, Mlx5MkeyState.REVOKED);
    expect(eng.check(k, 1, 0x10000, 8, R)).toBe(false);
  });

  it('mlx5 - an MR-to-MR copy follows both run lists, announces each chunk and leaves the ACTIVE word clear', () => {
    const { eng, hca, mkey, vram } = rig();
    // source: pages 0-1 then 10-13; destination: pages 100-102 then 300-399.
    const s = mkey(1, 0x1000, [
      [0, 2],
      [10, 4],
    ]);
    const d = mkey(2, 0x80_0000, [
      [100, 3],
      [300, 100],
    ]);
    for (let i = 0; i < 6 * PAGE_SIZE; i++)
      vram[(i < 2 * PAGE_SIZE ? 0 : 8 * PAGE_SIZE) + i] = (i * 7) & 0xff;
    // every DMA run happens inside an announced access: collect what ACTIVE said during each.
    const seen: number[] = [];
    eng.dma.hook = () => {
      const w = Atomics.load(hca, Mlx5Ctl.ACTIVE);
      if (seen.at(-1) !== w) seen.push(w);
      return 0;
    };
    expect(eng.mrToMr(s, 0x1000 + 100, d, 0x80_0000 + 5, 5 * PAGE_SIZE, 9)).toBe(Xfer.OK);
    for (let i = 0; i < 5 * PAGE_SIZE; i++) {
      const at = 5 + i < 3 * PAGE_SIZE ? 100 * PAGE_SIZE + 5 + i : 300 * PAGE_SIZE + 5 + i - 3 * PAGE_SIZE;
      if (vram[at] !== ((100 + i) * 7) % 256) throw new Error(`byte ${i}`);
    }
    // one piece, announced once, naming both keys
    expect(seen).toHaveLength(1);
    expect(mlx5ActiveNames(seen[0], 1) && mlx5ActiveNames(seen[0], 2)).toBe(true);
    expect(mlx5ActiveNames(seen[0], 3)).toBe(false);
    expect(Atomics.load(hca, Mlx5Ctl.ACTIVE)).toBe(0);
    expect(eng.mrToMr(s, 0x1000, d, 0x80_0000, 6 * PAGE_SIZE, 9)).toBe(Xfer.OK);
    const big = mkey(3, 0, [[1000, 512]]);
    expect(eng.mrToMr(big, 0, d, 0x80_0000, 1 << 20, 9)).toBe(Xfer.DST_ERR); // d has only 103 pages... beyond its runs
    seen.length = 0;
    expect(eng.mrToMr(d, 0x80_0000, big, 0, 103 * PAGE_SIZE, 9)).toBe(Xfer.OK);
    // one announcement per MLX5_DMA_CHUNK piece, each a new word (the sequence moves)
    expect(seen).toHaveLength(Math.ceil((103 * PAGE_SIZE) / MLX5_DMA_CHUNK));
    expect(new Set(seen).size).toBe(seen.length);
    expect(Atomics.load(hca, Mlx5Ctl.ACTIVE)).toBe(0);
  });

  it('mlx5 - translation cache: a repeated copy stays right after a re-map (XLT_GEN), an INVAL bump goes through the routing point, a DMA hook sees every run', () => {
    const { eng, mkey, remap, vram } = rig();
    const s = mkey(1, 0x1000, [[0, 1]]);
    const d = mkey(2, 0x2000, [[100, 1]]);
    const at = (page: number) => vram.subarray(page * PAGE_SIZE + 8, page * PAGE_SIZE + 16);
    const copy = (v: number) => {
      vram.fill(v, 8, 16);
      expect(eng.mrToMr(s, 0x1008, d, 0x2008, 8, 9)).toBe(Xfer.OK);
    };
    copy(1);
    copy(2); // the same iovas again: from the cache
    expect([...at(100)]).toEqual(Array(8).fill(2));
    // the destination re-mapped to page 200 between two copies (XLT read PRESENT both times).
    remap(2, 200);
    copy(3);
    expect([...at(200)]).toEqual(Array(8).fill(3));
    expect([...at(100)]).toEqual(Array(8).fill(2));
    copy(4);
    expect([...at(200)]).toEqual(Array(8).fill(4));
    // the kernel moved INVAL (an unmap, a domain or phys-map change): the next copy resolves
    // through the routing point, which picks the change up.
    const inval = Atomics.add(eng.dma.devCtx, DevCtx.INVAL, 1) + 1;
    copy(5);
    expect(eng.dma.inval).toBe(inval);
    expect([...at(200)]).toEqual(Array(8).fill(5));
    // a hook (fault injection, routing) sees the run of every copy, the cached one's too.
    let runs = 0;
    eng.dma.hook = () => {
      runs++;
      return 0;
    };
    copy(6);
    copy(7);
    expect(runs).toBe(4); // two copies, a read run and a write run each
    expect([...at(200)]).toEqual(Array(8).fill(7));
    eng.dma.hook = null;
    // one side to or from a device buffer (inline data, the wire), same cache: after a re-map
    // of the destination the write lands in the new page, and a read of it sees that page.
    const buf = new Uint8Array(8);
    for (const [page, v] of [
      [200, 8],
      [200, 9],
      [300, 10],
      [300, 11],
    ]) {
      if (page === 300 && v === 10) remap(2, 300);
      expect(eng.bytesToMr(buf.fill(v), 0, d, 0x2008, 8, 9, false)).toBe(Xfer.OK);
      expect([...at(page)]).toEqual(Array(8).fill(v));
      expect(eng.mrToBytes(d, 0x2008, buf.fill(0), 0, 8, 9, false)).toBe(Xfer.OK);
      expect([...buf]).toEqual(Array(8).fill(v));
    }
    expect([...at(200)]).toEqual(Array(8).fill(9));
  });

  it('mlx5 - a zapped ODP mkey raises one page fault and reports it until settled; FAILED fails one access, then it faults again', () => {
    const { eng, hca, mkey, eq } = rig();
    const s = mkey(1, 0, [[0, 1]]);
    const d = mkey(4, 0x4000, [[8, 2]], { odp: true });
    const b = hcaMkeyBase(4);
    Atomics.store(hca, b + Mlx5Mkey.XLT, Mlx5Xlt.ZAPPED);
    expect(eng.mrToMr(s, 0, d, 0x4000, 64, 12)).toBe(Xfer.DST_FAULT);
    expect(eng.mrToMr(s, 0, d, 0x4000, 64, 12)).toBe(Xfer.DST_FAULT);
    expect(Atomics.load(hca, b + Mlx5Mkey.FAULT)).toBe(Mlx5Fault.PENDING);
    const e = eq.peek();
    expect([eq.words[e + Mlx5Eqe.TYPE], eq.words[e + Mlx5Eqe.MKEY_INDEX], eq.words[e + Mlx5Eqe.QPN]]).toEqual(
      [Mlx5EqeType.PAGE_FAULT, 4, 12],
    );
    eq.release();
    expect(eq.peek()).toBe(-1); // one event for one fault
    expect(eng.faultSettled(4)).toBe(false);
    Atomics.store(hca, b + Mlx5Mkey.FAULT, Mlx5Fault.FAILED);
    expect(eng.faultSettled(4)).toBe(true);
    expect(eng.mrToBytes(d, 0x4000, new Uint8Array(64), 0, 64, 12, true)).toBe(Xfer.SRC_ERR);
    expect(eng.bytesToMr(new Uint8Array(64), 0, d, 0x4000, 64, 12, false)).toBe(Xfer.DST_FAULT); // faults again
    expect(eq.peek()).toBeGreaterThanOrEqual(0);
    // a non-ODP mkey with no translation is simply an error.
    const p = mkey(6, 0, [[20, 1]]);
    Atomics.store(hca, hcaMkeyBase(6) + Mlx5Mkey.XLT, Mlx5Xlt.ZAPPED);
    expect(eng.mrToMr(p, 0, s, 0, 8, 1)).toBe(Xfer.SRC_ERR);
    expect(Atomics.load(hca, Mlx5Ctl.STAT_PAGE_FAULTS)).toBe(2);
  });
});

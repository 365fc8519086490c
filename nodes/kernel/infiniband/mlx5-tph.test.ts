// mlx5 as the importer of the 2026 dma-buf TPH series (kernel-semantics §4.3 rules 6-8, §4.4,
// §4.5 rules 12-14, §4.6 scenarios 4-5): TPH enabled at probe, get_tph at dma-buf MR
// registration, ST table indices shared and released, the mkey's pcie_tph_* words.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { parseTopology } from '../../../topology/load.ts';
import { bootHostFromTopology } from '../../host.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { Mlx5Mkey } from '../../fabric/mlx5-layout.ts';
import {
  ibvAllocPd,
  ibvDeregMr,
  type IbvMr,
  type IbvPd,
  ibvRegDmabufMr,
  ibvRegMr,
  Mlx5dvRegDmabufAccess,
  mlx5dvRegDmabufMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import {
  O_RDWR,
  PciTphCompleter,
  vfioDeviceFeatureDmaBuf,
  vfioDeviceFeatureDmaBufTph,
  vfioDeviceOpen,
} from '../../uapi/vfio.ts';
import {
  type PciTphCap,
  PciTphLoc,
  PciTphReqType,
  PciTphStMode,
  pciTphOf,
  pciTphStEntry,
  pcieTphSetStEntry,
} from '../pci/tph.ts';
import { vfioPciProbe } from '../vfio/vfio-pci.ts';
import { ALL_ACCESS, MS, mockBuf, type RdmaHost, rdmaHost, START_MS } from './fixtures/rdma-host.ts';
import { trackRdmaHost, trackVfio, vfioRdmaTeardown } from './fixtures/vfio-rdma.ts';
import { type Mlx5Options, mlx5Remove } from './mlx5/mlx5-ib.ts';
import { mlx5MkeyTph } from './mlx5/mlx5-mr.ts';

const BAR = 64 << 10;
const PAGE = 4096;
/** A TPH capability mlx5 can use: device-specific mode, ST table in the capability. */
const capDs = (o: Partial<PciTphCap> = {}): PciTphCap => ({
  modes: [PciTphStMode.NS, PciTphStMode.DS],
  extSt: false,
  stTable: PciTphLoc.CAP,
  stSize: 64,
  ...o,
});

afterEach(vfioRdmaTeardown);

interface TphHost {
  h: RdmaHost;
  pd: IbvPd;
  devFd: number;
  /** A fresh VFIO dma-buf of `pages` pages of BAR0 at page `at`. */
  buf(at?: number, pages?: number): Promise<number>;
  /** VFIO_DEVICE_FEATURE_DMA_BUF_TPH on `fd`. */
  setTph(fd: number, steering_tag: number, ph: number): Promise<void>;
  /** ODP dma-buf MR over all of `fd`. */
  reg(fd: number, pages?: number): Promise<IbvMr>;
  tph(mr: IbvMr): ReturnType<typeof mlx5MkeyTph>;
}

/** One mlx5 HCA (options `nic`) and a VFIO function completing `completer` tags, one kernel. */
async function tphHost(
  nic: Mlx5Options,
  completer: PciTphCompleter = PciTphCompleter.TPH_ONLY,
): Promise<TphHost> {
  const h = await rdmaHost({ nic });
  trackRdmaHost(h);
  const vdev = vfioPciProbe(h.kernel, 'vfio0', { bars: [{ size: BAR }], tphCompleter: completer });
  trackVfio(vdev);
  const devFd = vfioDeviceOpen(h.proc, 'vfio0');
  const pd = ibvAllocPd(h.ctxs[0]);
  const t: TphHost = {
    h,
    pd,
    devFd,
    buf: (at = 0, pages = 1) =>
      withDeadline(
        vfioDeviceFeatureDmaBuf(h.proc, devFd, {
          region_index: 0,
          open_flags: O_RDWR,
          flags: 0,
          nr_ranges: 1,
          dma_ranges: [{ offset: at * PAGE, length: pages * PAGE }],
        }),
        MS,
        'export',
      ),
    setTph: (fd, steering_tag, ph) =>
      withDeadline(
        vfioDeviceFeatureDmaBufTph(h.proc, devFd, { dmabuf_fd: fd, steering_tag, ph }),
        MS,
        'tph set',
      ),
    reg: (fd, pages = 1) =>
      withDeadline(ibvRegDmabufMr(pd, 0, pages * PAGE, 0, fd, ALL_ACCESS), MS, 'reg mr'),
    tph: (mr) => mlx5MkeyTph(h.nics[0], mr.lkey),
  };
  return t;
}

describe('mlx5 TPH importer', () => {
  it('mlx5 - probe enables TPH in device-specific mode with the requester type lowered to the root port', async () => {
    const ext = await tphHost({ tph: capDs({ extSt: true }) });
    const t = pciTphOf(ext.h.nics[0].dev)!;
    expect([t.enabled, t.mode, t.reqType]).toEqual([true, PciTphStMode.DS, PciTphReqType.EXT_TPH]);
    expect(ext.h.nics[0].st?.stWidth).toBe(16);
    const lowered = await tphHost({ tph: capDs({ extSt: true }), tphCompleter: PciTphReqType.TPH_ONLY });
    expect(pciTphOf(lowered.h.nics[0].dev)!.reqType).toBe(PciTphReqType.TPH_ONLY);
    expect(lowered.h.nics[0].st?.stWidth).toBe(8);
    // what `tph: true` means in a topology (ST table in MSI-X): st.c keeps TPH off
    const msix = await tphHost({ tph: capDs({ stTable: PciTphLoc.MSIX }) });
    expect([pciTphOf(msix.h.nics[0].dev)!.enabled, msix.h.nics[0].st]).toEqual([false, null]);
    const none = await tphHost({});
    expect([pciTphOf(none.h.nics[0].dev)!.enabled, none.h.nics[0].st]).toEqual([false, null]);
  });

  it('mlx5 - a dma-buf MR of a VFIO buffer with TPH set (ST 0x2a, PH 2) gets an mkey with TPH on, PH 2 and an ST index holding 0x2a', async () => {
    const x = await tphHost({ tph: capDs() });
    const fd = await x.buf();
    await x.setTph(fd, 0x2a, 2);
    const odp = await x.reg(fd);
    const pinned = await withDeadline(
      mlx5dvRegDmabufMr(x.pd, 0, PAGE, 0, fd, ALL_ACCESS, Mlx5dvRegDmabufAccess.P2PEMU_PINNED_REVOCABLE),
      MS,
      'reg pinned revocable',
    );
    for (const mr of [odp, pinned]) {
      const tph = x.tph(mr);
      expect(tph).toEqual({ en: true, ph: 2, stIndex: tph.stIndex, tag: 0x2a });
      expect(tph.stIndex).toBeGreaterThanOrEqual(1);
      expect(pciTphStEntry(x.h.nics[0].dev, tph.stIndex)).toBe(0x2a);
    }
    // a host-memory MR has no exporter to ask: TPH off, index 0
    const mem = mmapAnonymous(x.h.proc, PAGE);
    const host = ibvRegMr(x.pd, mem.addr, PAGE, ALL_ACCESS);
    expect(x.tph(host)).toEqual({ en: false, ph: 0, stIndex: 0, tag: null });
    expect(x.h.nics[0].hca.length).toBeGreaterThan(Mlx5Mkey.TPH_ST_INDEX);
  });

  it('mlx5 - an extended-ST requester asks for a 16-bit tag: with only an 8-bit tag set, get_tph is EOPNOTSUPP and the MR registers without TPH', async () => {
    const x = await tphHost({ tph: capDs({ extSt: true }) }, PciTphCompleter.TPH_ONLY);
    expect(x.h.nics[0].st?.stWidth).toBe(16);
    const fd = await x.buf();
    await x.setTph(fd, 0x2a, 2); // an 8-bit tag: the VFIO function completes TPH_ONLY
    const mr = await x.reg(fd);
    expect(x.tph(mr)).toEqual({ en: false, ph: 0, stIndex: 0, tag: null });
    expect(x.h.nics[0].st?.entries.size).toBe(0);
    // the 16-bit namespace works when the exporter has a 16-bit tag
    const y = await tphHost({ tph: capDs({ extSt: true }) }, PciTphCompleter.EXT_TPH);
    const fd16 = await y.buf();
    await y.setTph(fd16, 0x1234, 1);
    expect(y.tph(await y.reg(fd16))).toMatchObject({ en: true, ph: 1, tag: 0x1234 });
  });

  it('mlx5 - TPH set after the import leaves the registered MR unchanged; a later MR gets it', async () => {
    const x = await tphHost({ tph: capDs() });
    const fd = await x.buf();
    const before = await x.reg(fd);
    await x.setTph(fd, 0x2a, 3);
    expect(x.tph(before)).toEqual({ en: false, ph: 0, stIndex: 0, tag: null });
    const after = await x.reg(fd);
    expect(x.tph(after)).toMatchObject({ en: true, ph: 3, tag: 0x2a });
    expect(x.tph(before).en).toBe(false);
  });

  it('mlx5 - two MRs with the same tag share one ST index, freed only after both deregs', async () => {
    const x = await tphHost({ tph: capDs() });
    const st = x.h.nics[0].st!;
    const [a, b, c] = [await x.buf(0), await x.buf(1), await x.buf(2)];
    await x.setTph(a, 0x2a, 2);
    await x.setTph(b, 0x2a, 1); // same tag, another PH: the index is per tag
    await x.setTph(c, 0x33, 2);
    const [ma, mb, mc] = [await x.reg(a), await x.reg(b), await x.reg(c)];
    const ia = x.tph(ma).stIndex;
    expect(x.tph(mb)).toMatchObject({ stIndex: ia, ph: 1, tag: 0x2a });
    expect(x.tph(mc).stIndex).not.toBe(ia);
    expect(st.entries.get(ia)).toEqual({ tag: 0x2a, refs: 2 });
    await withDeadline(ibvDeregMr(ma), MS, 'dereg a');
    expect(st.entries.get(ia)).toEqual({ tag: 0x2a, refs: 1 });
    await withDeadline(ibvDeregMr(mb), MS, 'dereg b');
    expect(st.entries.has(ia)).toBe(false);
    await withDeadline(ibvDeregMr(mc), MS, 'dereg c');
    expect(st.entries.size).toBe(0);
    // the freed index is taken again by a new tag
    const d = await x.buf(3);
    await x.setTph(d, 0x44, 0);
    expect(x.tph(await x.reg(d))).toMatchObject({ stIndex: ia, tag: 0x44 });
  });

  it('mlx5 - a full ST table fails the registration ENOSPC without leaking the mkey or an index', async () => {
    const x = await tphHost({ tph: capDs({ stSize: 3 }) }); // indices 1 and 2
    const fds = [await x.buf(0), await x.buf(1), await x.buf(2)];
    for (const [i, fd] of fds.entries()) await x.setTph(fd, 0x10 + i, 2);
    await x.reg(fds[0]);
    await x.reg(fds[1]);
    const mrs = x.h.nics[0].mrs.size;
    expect((await expectCode(x.reg(fds[2]), 'ENOSPC')).message).toMatch(/ST table of mlx5_0 is full/);
    expect([x.h.nics[0].mrs.size, x.h.nics[0].st!.entries.size]).toEqual([mrs, 2]);
  });

  it('mlx5 - without TPH on the HCA, or from an exporter without get_tph, a dma-buf MR registers without TPH', async () => {
    const off = await tphHost({});
    const fd = await off.buf();
    await off.setTph(fd, 0x2a, 2);
    expect(off.tph(await off.reg(fd))).toEqual({ en: false, ph: 0, stIndex: 0, tag: null });
    const on = await tphHost({ tph: capDs() });
    const mock = mockBuf(on.h, 4 * PAGE);
    expect(on.tph(await on.reg(mock.fd))).toEqual({ en: false, ph: 0, stIndex: 0, tag: null });
  });

  it('mlx5 - once a failed ST write has turned TPH off on the function, dma-buf MRs register without TPH', async () => {
    const x = await tphHost({ tph: capDs({ stSize: 4 }) });
    const fd = await x.buf();
    await x.setTph(fd, 0x2a, 2);
    const dev = x.h.nics[0].dev;
    expect(() => pcieTphSetStEntry(dev, 4, 0x2a)).toThrow(/ENXIO/); // a write past the table
    expect(pciTphOf(dev)!.enabled).toBe(false);
    expect(x.tph(await x.reg(fd))).toEqual({ en: false, ph: 0, stIndex: 0, tag: null });
    expect(x.h.nics[0].st!.entries.size).toBe(0);
  });

  it('mlx5 - a topology NIC boots with the TPH capability its entry gives; tph: true (ST table in MSI-X) leaves TPH off', async () => {
    const text = readFileSync(
      new URL('../../../topology/examples/single-host.yaml', import.meta.url),
      'utf8',
    );
    // nic0 gets a capability-located ST table; nic1 keeps `tph: true`
    const edited = text.replace(
      'tph: true',
      'tph: { modes: [device-specific], stTable: capability, stSize: 16, extendedSt: true }',
    );
    const host = await withDeadline(
      bootHostFromTopology(parseTopology(edited), {
        ramBytes: 32 << 20,
        deviceMemoryCap: 1 << 20,
        nic: { tphCompleter: PciTphReqType.TPH_ONLY },
      }),
      START_MS,
      'boot single-host',
    );
    try {
      const [nic0, nic1] = [host.nics.get('nic0')!, host.nics.get('nic1')!];
      expect(pciTphOf(nic0.dev)).toMatchObject({
        enabled: true,
        mode: PciTphStMode.DS,
        reqType: PciTphReqType.TPH_ONLY,
      });
      expect(nic0.st?.max).toBe(15);
      expect([pciTphOf(nic1.dev)!.cap?.stTable, pciTphOf(nic1.dev)!.enabled, nic1.st]).toEqual([
        PciTphLoc.MSIX,
        false,
        null,
      ]);
    } finally {
      await withDeadline(host.shutdown(), START_MS, 'shutdown');
    }
  });

  it('mlx5 - removing the HCA releases the ST indices of the MRs left and its TPH state', async () => {
    const x = await tphHost({ tph: capDs() });
    const fd = await x.buf();
    await x.setTph(fd, 0x2a, 2);
    await x.reg(fd);
    const nic = x.h.nics[0];
    const st = nic.st!;
    expect(st.entries.size).toBe(1);
    await withDeadline(mlx5Remove(nic), START_MS, 'remove');
    expect([st.entries.size, nic.st, pciTphOf(nic.dev)]).toEqual([0, null, null]);
  });
});
